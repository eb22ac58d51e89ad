"""A trained model as a directory a person can open, written atomically, loaded with checks.

Layout (``FORMAT_VERSION`` 1)::

    DIR/
      manifest.json   format, version, mmoe version, SHA-256 of every other file
      model.pt        weights + model description (a checkpoint, loaded weights_only)
      config.json     model, training and data settings the model was trained with
      encoder.json    the fitted TableEncoder (column types, statistics, vocabularies, labels)
      metrics.json    per-task validation metrics per epoch, final metrics, samples/s
      gates.png       gate utilisation (any further files written by the caller)

The directory is built under a temporary name beside ``DIR`` and renamed into place
(:func:`mmoe._fileio.atomic_dir`), so a kill leaves either no directory or a complete one; an
existing ``DIR`` is only replaced (``overwrite=True``) once the new one is complete. Loading
verifies the manifest's format, version and checksums and refuses a directory that fails any
of them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _checks
from .._fileio import atomic_dir, sha256_file, write_json
from .._version import __version__
from ..data.encoders import TableEncoder
from ..models import MultiTaskModel
from .checkpoint import load_model, save_checkpoint

FORMAT = "mmoe-model-dir"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass
class ModelDir:
    """A loaded model directory.

    Attributes:
        path: the directory.
        model: the model, in eval mode.
        encoder: the fitted encoder.
        config: the settings it was trained with (``config.json``).
        metrics: ``metrics.json``.
    """

    path: Path
    model: MultiTaskModel
    encoder: TableEncoder
    config: dict[str, Any]
    metrics: dict[str, Any]


def check_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Fail early (before any training) when ``out`` exists and may not be replaced."""
    out = Path(out)
    if out.exists():
        _checks.check(out.is_dir(), f"--out '{out}' exists and is not a directory; choose "
                      "another path")
        if any(out.iterdir()) and not overwrite:
            _checks.fail(f"--out '{out}' already exists and is not empty; choose another "
                         "directory or pass --overwrite to replace it")
    return out


def save_model_dir(out: str | os.PathLike, model: MultiTaskModel, encoder: TableEncoder,
                   config: dict[str, Any], metrics: dict[str, Any], *,
                   write_extra: Callable[[Path], None] | None = None,
                   overwrite: bool = False) -> Path:
    """Write a model directory atomically.

    Args:
        out: the directory to create (an empty existing directory is fine).
        model: the trained model.
        encoder: its fitted encoder.
        config: JSON-able settings (model, training, data).
        metrics: JSON-able metrics.
        write_extra: called with the staging directory to add files (figures, event files).
        overwrite: replace an existing non-empty ``out`` once the new directory is complete.

    Returns:
        ``out``.

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> enc = TableEncoder([TaskSpec("clicked")], exclude=["user_id"]).fit(demo)
        >>> model = build_model("mmoe", enc.input_spec(), enc.tasks)
        >>> save_model_dir("m", model, enc, {"note": "demo"}, {}).name
        'm'
    """
    out = check_output_dir(out, overwrite)
    with atomic_dir(out, replace=overwrite) as stage:
        save_checkpoint(stage / "model.pt", model, extras={"encoder": encoder.to_dict()})
        write_json(stage / "config.json", {"mmoe_version": __version__, **config})
        write_json(stage / "encoder.json", encoder.to_dict())
        write_json(stage / "metrics.json", metrics)
        if write_extra is not None:
            write_extra(stage)
        files = sorted(p for p in stage.rglob("*") if p.is_file())
        write_json(stage / MANIFEST, {
            "format": FORMAT, "format_version": FORMAT_VERSION, "mmoe_version": __version__,
            "files": {p.relative_to(stage).as_posix(): sha256_file(p) for p in files}})
    return out


def _corrupted(path: Path, what: str) -> ValueError:
    return ValueError(f"model directory '{path}' is corrupted: {what}; retrain it with "
                      "`mmoe train ... --out DIR` or restore it from a backup")


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Validate a model directory's manifest and checksums; returns the manifest."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory '{path}' does not exist; train one with "
                                "`mmoe train ... --out DIR`")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        _checks.fail(f"'{path}' is not an mmoe model directory (no {MANIFEST}); train one "
                     "with `mmoe train ... --out DIR`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _corrupted(path, f"{MANIFEST} is not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _corrupted(path, f"{MANIFEST} does not describe an mmoe model directory")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        _checks.fail(f"model directory '{path}' has format version {version} (written by mmoe "
                     f"{manifest.get('mmoe_version')}); this mmoe {__version__} reads version "
                     f"{FORMAT_VERSION}: retrain the model with this version or use that one")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise _corrupted(path, f"{MANIFEST} lists no files")
    for name in ("model.pt", "config.json", "encoder.json", "metrics.json"):
        if name not in files:
            raise _corrupted(path, f"{MANIFEST} does not list '{name}'")
    for name, digest in files.items():
        file = path / name
        if not file.is_file():
            raise _corrupted(path, f"file '{name}' is missing")
        if sha256_file(file) != digest:
            raise _corrupted(path, f"file '{name}' does not match its checksum")
    return manifest


def load_model_dir(path: str | os.PathLike) -> ModelDir:
    """Load and validate a model directory written by :func:`save_model_dir`.

    Raises:
        FileNotFoundError: no such directory.
        ValueError: not a model directory, another format version, or corrupted.

    Example:
        >>> md = load_model_dir(model_dir)
        >>> [t.name for t in md.model.tasks]
        ['clicked', 'hours']
    """
    path = Path(path)
    read_manifest(path)
    try:
        config = json.loads((path / "config.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text())
        encoder = TableEncoder.from_dict(json.loads((path / "encoder.json").read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise _corrupted(path, f"{type(err).__name__}: {err}") from None
    model, _ = load_model(path / "model.pt")
    names = [t.name for t in encoder.tasks]
    if [t.name for t in model.tasks] != names:
        raise _corrupted(path, "model.pt and encoder.json disagree on the tasks")
    return ModelDir(path, model, encoder, config, metrics)
