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
existing ``DIR`` is only replaced (``overwrite=True``) once the new one is complete, and only
if it is a model directory mmoe wrote holding nothing else. Loading verifies the manifest's
format, version and checksums, reads only the plain relative names it lists (nothing outside
the directory, no symbolic link) and checks the types of what commands read from
``config.json`` and ``metrics.json``; a directory failing any of that is refused in one line.
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


def _show(value: Any, limit: int = 60) -> str:
    """A value from a file, quoted on one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _read_json(path: Path, name: str) -> Any:
    """``path / name`` parsed; a file that is not JSON (or nested too deeply to parse) is
    corruption."""
    try:
        return json.loads((path / name).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _corrupted(path, f"{name} is not valid JSON ({err})") from None
    except RecursionError:
        raise _corrupted(path, f"{name} is not valid JSON (nested too deeply)") from None


def _check_replaceable(out: Path) -> None:
    """Fail unless ``out`` is a model directory mmoe wrote and holds nothing else: its
    manifest, the files the manifest lists and the folders holding them."""
    try:
        manifest = _read_json(out, MANIFEST) if (out / MANIFEST).is_file() else None
    except ValueError:
        manifest = None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not (isinstance(manifest, dict) and manifest.get("format") == FORMAT
            and isinstance(files, dict)):
        _checks.fail(f"--out '{out}' is not a model directory written by mmoe (no valid "
                     f"{MANIFEST}); --overwrite replaces only those: choose another directory, "
                     "or move its files away yourself")
    ours = {MANIFEST, *files}
    ours |= {parent.as_posix() for name in files for parent in Path(name).parents}
    for root, folders, names in os.walk(out):
        for name in sorted(folders + names):
            rel = (Path(root) / name).relative_to(out).as_posix()
            _checks.check(rel in ours, f"--out '{out}' holds {_show(rel)}, which mmoe did not "
                          "write; --overwrite replaces only a model directory holding nothing "
                          "else: move it out or choose another --out")


def check_output_dir(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Fail early (before any training) unless ``out`` can take a new model directory: a new
    path, an empty directory, or with ``overwrite`` a model directory mmoe wrote that holds
    nothing else (a folder of the user's is never replaced).

    Args:
        out: the directory to write; a symbolic link to a directory stands for that
            directory, any other link is refused.
        overwrite: allow replacing a model directory.

    Returns:
        The directory to write (a link resolved).

    Example:
        >>> check_output_dir("new").name
        'new'
        >>> check_output_dir(model_dir, overwrite=True) == model_dir
        True
    """
    out = Path(out)
    if out.is_symlink():
        target = Path(os.path.realpath(out))
        _checks.check(target.is_dir(), f"--out '{out}' is a symbolic link to '{target}', which "
                      f"is {'not a directory' if target.exists() else 'missing'}; give a "
                      "directory, or a path that does not exist yet")
        out = target
    if not out.exists():
        return out
    _checks.check(out.is_dir(), f"--out '{out}' exists and is not a directory; choose "
                  "another path")
    _checks.check(not os.path.ismount(out), f"--out '{out}' is a mount point, which cannot "
                  "be replaced by a rename; give a path inside it")
    if any(out.iterdir()):
        _checks.check(overwrite, f"--out '{out}' already exists and is not empty; choose "
                      "another directory or pass --overwrite to replace it")
        _check_replaceable(out)
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
        overwrite: replace an existing model directory once the new one is complete (only
            one mmoe wrote, holding nothing else: see :func:`check_output_dir`).

    Returns:
        The directory written (``out``, a symbolic link resolved).

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> enc = TableEncoder([TaskSpec("clicked")], exclude=["user_id"]).fit(demo)
        >>> model = build_model("mmoe", enc.input_spec(), enc.tasks)
        >>> save_model_dir("m", model, enc, {"note": "demo"}, {}).name
        'm'
    """
    out = check_output_dir(out, overwrite)
    with atomic_dir(out, replace=_check_replaceable if overwrite else False) as stage:
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
    what = " ".join(what.split())
    what = what if len(what) <= 300 else what[:300] + "..."
    return ValueError(f"model directory '{path}' is corrupted: {what}; retrain it with "
                      "`mmoe train ... --out DIR` or restore it from a backup")


def _plain_name(name: str) -> bool:
    """A relative name of a file inside a directory: ``a/b.txt``, never ``..``, ``/x``."""
    return (bool(name) and not name.startswith("/") and "\\" not in name and "\0" not in name
            and all(part not in ("", ".", "..") for part in name.split("/")))


def _listed_file(path: Path, name: str) -> Path:
    """The file ``name`` of the manifest, checked to be a plain file inside ``path``."""
    if not _plain_name(name):
        raise _corrupted(path, f"{MANIFEST} lists {_show(name)}, which is not a plain file "
                         "name inside the directory")
    file = path / name
    if any(p.is_symlink() for p in [file, *file.parents][: name.count("/") + 1]):
        raise _corrupted(path, f"{MANIFEST} lists {_show(name)}, which is reached through a "
                         "symbolic link (mmoe writes none)")
    if not file.is_file():
        raise _corrupted(path, f"file {_show(name)} is missing")
    return file


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Validate a model directory's manifest and checksums; returns the manifest.

    Every listed name must be a plain relative name of a regular file inside the directory
    (no ``..``, absolute path or symbolic link), so nothing outside it is ever read.

    Args:
        path: the model directory.

    Returns:
        The manifest.

    Raises:
        FileNotFoundError: no such directory.
        ValueError: not a model directory, another format version, or corrupted.

    Example:
        >>> sorted(read_manifest(model_dir)["files"])[:2]
        ['config.json', 'encoder.json']
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory '{path}' does not exist; train one with "
                                "`mmoe train ... --out DIR`")
    if not (path / MANIFEST).is_file():
        _checks.fail(f"'{path}' is not an mmoe model directory (no {MANIFEST}); train one "
                     "with `mmoe train ... --out DIR`")
    manifest = _read_json(path, MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _corrupted(path, f"{MANIFEST} does not describe an mmoe model directory")
    version = manifest.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        _checks.fail(f"model directory '{path}' has format version {_show(version)} (written by "
                     f"mmoe {_show(manifest.get('mmoe_version'))}); this mmoe {__version__} "
                     f"reads version {FORMAT_VERSION}: retrain the model with this version or "
                     "use that one")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise _corrupted(path, f"{MANIFEST} lists no files")
    for name in ("model.pt", "config.json", "encoder.json", "metrics.json"):
        if name not in files:
            raise _corrupted(path, f"{MANIFEST} does not list '{name}'")
    for name, digest in files.items():
        file = _listed_file(path, name)
        if not isinstance(digest, str) or sha256_file(file) != digest:
            raise _corrupted(path, f"file {_show(name)} does not match its checksum")
    return manifest


def own_files(path: str | os.PathLike) -> list[Path]:
    """What a command reading the model directory ``path`` must never overwrite: the
    directory, its manifest and the files the manifest lists (plain names only; the standard
    files when the manifest cannot be read).

    Args:
        path: the model directory.

    Returns:
        The directory, then its files.

    Example:
        >>> sorted(p.name for p in own_files(model_dir))[:3]
        ['config.json', 'encoder.json', 'gates.png']
    """
    path = Path(path)
    try:
        files = _read_json(path, MANIFEST).get("files")
        names = [n for n in files if isinstance(n, str) and _plain_name(n)]
    except (OSError, ValueError, AttributeError, TypeError):
        names = ["model.pt", "config.json", "encoder.json", "metrics.json", "gates.png"]
    return [path, path / MANIFEST, *(path / n for n in names)]


def _check_config(path: Path, config: Any, metrics: Any) -> None:
    """The parts of ``config.json`` and ``metrics.json`` that commands read have their
    types."""
    if not isinstance(config, dict):
        raise _corrupted(path, f"config.json holds {type(config).__name__}, not an object")
    columns = config.get("columns", {})
    if not isinstance(columns, dict):
        raise _corrupted(path, "config.json: 'columns' is not an object")
    for key in ("id", "categorical", "numeric", "exclude"):
        names = columns.get(key)
        if names is not None and not (isinstance(names, list)
                                      and all(isinstance(n, str) for n in names)):
            raise _corrupted(path, f"config.json: columns.{key} is {_show(names)}, not a list "
                             "of column names")
    if not isinstance(metrics, dict):
        raise _corrupted(path, f"metrics.json holds {type(metrics).__name__}, not an object")


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
    config, metrics = _read_json(path, "config.json"), _read_json(path, "metrics.json")
    _check_config(path, config, metrics)
    state = _read_json(path, "encoder.json")
    try:
        encoder = TableEncoder.from_dict(state)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as err:
        raise _corrupted(path, f"encoder.json: {type(err).__name__}: {err}") from None
    model, _ = load_model(path / "model.pt")
    names = [t.name for t in encoder.tasks]
    if [t.name for t in model.tasks] != names:
        raise _corrupted(path, "model.pt and encoder.json disagree on the tasks")
    return ModelDir(path, model, encoder, config, metrics)
