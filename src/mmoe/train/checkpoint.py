"""Self-describing checkpoints, written atomically and loaded without running pickled code.

A checkpoint is one file written with ``torch.save`` holding only tensors, numbers and strings
(model description, trainer state and extras are JSON strings), so it loads with
``torch.load(weights_only=True)``: a file that would need arbitrary unpickling is refused.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .._fileio import AtomicFile
from .._version import __version__
from ..models import MultiTaskModel, model_from_description

FORMAT = "mmoe-checkpoint"
FORMAT_VERSION = 1


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through the atomic writer: a kill at any moment leaves either the old
    file or the new one, never half of one."""
    with AtomicFile(path) as f:
        torch.save(obj, f.handle)
    return Path(path)


def save_checkpoint(path: str | os.PathLike, model: MultiTaskModel, *,
                    optimizer: torch.optim.Optimizer | None = None,
                    trainer: dict[str, Any] | None = None,
                    tensors: dict[str, Any] | None = None,
                    extras: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically.

    Args:
        path: the file to write.
        model: the model (its description and weights are saved).
        optimizer: optimizer whose state is saved (for resuming).
        trainer: JSON-able trainer state (epoch, step, history, ...).
        tensors: trainer tensors (RNG state, best weights), nested dicts of tensors.
        extras: JSON-able extras (e.g. the fitted encoder).

    Returns:
        The path written.
    """
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mmoe_version": __version__,
        "model": json.dumps(model.describe()),
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "trainer": json.dumps(trainer or {}),
        "tensors": tensors or {},
        "extras": json.dumps(extras or {}),
    }
    return atomic_save(payload, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint; JSON fields come back decoded.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is truncated, corrupted, not an mmoe checkpoint, needs pickled
            code to load, or comes from an incompatible format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        with warnings.catch_warnings():  # torch's advice to retry unsafely is not ours
            warnings.simplefilter("ignore")
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, bad magic, unpickling refused...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "Weights only load failed" in first:  # torch's text suggests the unsafe retry
            first = ("it holds pickled objects that would run code when loaded (refused; "
                     "mmoe never writes such files: do not load it from an untrusted source)")
        raise ValueError(f"checkpoint '{path}' cannot be read safely (truncated, corrupted or "
                         f"not an mmoe checkpoint): {first}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f"'{path}' is not an mmoe checkpoint")
    if raw.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"checkpoint '{path}' has format version {raw.get('format_version')} "
                         f"(written by mmoe {raw.get('mmoe_version')}); this mmoe {__version__} "
                         f"reads version {FORMAT_VERSION}: retrain or use that version")
    try:
        for key in ("model", "trainer", "extras"):
            raw[key] = json.loads(raw[key])
    except (TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"checkpoint '{path}' has a corrupted '{key}' field: {err}") from None
    return raw


def load_model(path: str | os.PathLike) -> tuple[MultiTaskModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint with its weights (strict), in eval mode.

    Returns:
        ``(model, extras)``.

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> path = save_checkpoint(tmp_path / "c.pt", build_model("mmoe", 3, [TaskSpec("y")]),
        ...                        extras={"note": "hi"})
        >>> model, extras = load_model(path)
        >>> extras, model.training
        ({'note': 'hi'}, False)
    """
    ckpt = load_checkpoint(path)
    try:
        model = model_from_description(ckpt["model"])
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"checkpoint '{path}' does not match its model description: "
                         f"{first}") from None
    return model.eval(), ckpt["extras"]
