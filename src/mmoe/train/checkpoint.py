"""Self-describing checkpoints, written atomically and loaded without running pickled code.

A checkpoint is one file written with ``torch.save`` holding only tensors, numbers and strings
(model description, trainer state and extras are JSON strings), so it loads with
``torch.load(weights_only=True)``: a file that would need arbitrary unpickling is refused.

A training checkpoint (:func:`save_training`) adds the optimizer, the RNG and the trainer
state; :func:`restore_training` checks every part of it against the run resuming it (its
structure, shapes, dtypes, finiteness and settings) before it uses any of it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from .._fileio import AtomicFile
from .._version import __version__
from ..config import TrainConfig
from ..models import MultiTaskModel, model_from_description

FORMAT = "mmoe-checkpoint"
FORMAT_VERSION = 1
#: the payload's fields and their types once the JSON strings are decoded
FIELDS = {"model": dict, "state_dict": dict, "optimizer": dict, "trainer": dict,
          "tensors": dict, "extras": dict}
#: settings that may change between a run and its resume: they change at most float rounding
#: (or, for stop_if_all_skipped, whether a run that learned nothing fails)
RESUMABLE_CHANGES = ("checkpoint_every", "threads", "on_nonfinite", "compile",
                     "stop_if_all_skipped")


def atomic_save(obj: Any, path: str | os.PathLike, then: str = "run again") -> Path:
    """``torch.save`` of ``obj`` through the atomic writer: a kill at any moment leaves either
    the old file at ``path`` or the new one, never half of one. A failed write (a full disk,
    a lost device) is one ``OSError`` line naming the file and ending with ``then`` (what to
    do once space is freed); the file there before, if any, is left whole.

    Returns:
        ``path``.

    Example:
        >>> atomic_save({"a": torch.zeros(2)}, tmp_path / "t.pt").name
        't.pt'
    """
    path = Path(path)
    try:
        with AtomicFile(path) as f:
            torch.save(obj, f.handle)
    except (OSError, RuntimeError) as err:  # torch reports a failed write as RuntimeError
        cause = err if isinstance(err, OSError) else err.__context__  # the OSError torch hid
        reason = getattr(cause, "strerror", None) or f"{err}".strip().split("\n")[0]
        free = shutil.disk_usage(path.parent).free if path.parent.is_dir() else 0
        kept = "the previous one there is kept, whole" if path.exists() else "none is there"
        raise OSError(f"cannot write '{path}' ({reason}; {free:,} bytes free there): {kept}; "
                      f"free some disk space (or choose another location) and {then}") from None
    return path


def save_checkpoint(path: str | os.PathLike, model: MultiTaskModel, *,
                    optimizer: torch.optim.Optimizer | None = None,
                    trainer: dict[str, Any] | None = None,
                    tensors: dict[str, Any] | None = None,
                    extras: dict[str, Any] | None = None, then: str = "run again") -> Path:
    """Write a checkpoint atomically.

    Args:
        path: the file to write.
        model: the model (its description and weights are saved).
        optimizer: optimizer whose state is saved (for resuming).
        trainer: JSON-able trainer state (epoch, step, history, ...).
        tensors: trainer tensors (RNG state, best weights), nested dicts of tensors.
        extras: JSON-able extras (e.g. the fitted encoder).
        then: what a failed write's message tells to do once disk space is freed.

    Returns:
        The path written.

    Raises:
        OSError: the write failed (one line; the file there before is left whole).
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
    return atomic_save(payload, path, then)


def load_checkpoint(path: str | os.PathLike,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint; JSON fields come back decoded; tensors on
    ``map_location`` (a checkpoint written on a GPU loads on a CPU-only machine).

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
            raw = torch.load(path, map_location=map_location, weights_only=True)
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
    missing = sorted(set(FIELDS) - set(raw))
    if missing:
        raise ValueError(f"checkpoint '{path}' has no {', '.join(missing)} field: it is not a "
                         "whole mmoe checkpoint (altered?)")
    try:
        for key in ("model", "trainer", "extras"):
            raw[key] = json.loads(raw[key])
    except (TypeError, ValueError, RecursionError) as err:
        raise ValueError(f"checkpoint '{path}' has a corrupted '{key}' field: "
                         f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
                         ) from None
    for key, kind in FIELDS.items():
        if not isinstance(raw[key], kind):
            raise ValueError(f"checkpoint '{path}' has a corrupted '{key}' field: a "
                             f"{type(raw[key]).__name__} where a table belongs")
    return raw


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"
               ) -> tuple[MultiTaskModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint with its weights (strict), in eval mode, on
    ``device`` (whatever device wrote it).

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
    ckpt = load_checkpoint(path, map_location=device)
    try:
        model = model_from_description(ckpt["model"]).to(device)
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"checkpoint '{path}' does not match its model description: "
                         f"{first}") from None
    return model.eval(), ckpt["extras"]


# ---- training checkpoints: the trainer's save and its checked restore ----------------------
#: what a checkpoint written before the learning-rate schedules and the tables' own learning
#: rate, then the tables' Adagrad, existed trained with
BEFORE_SCHEDULES = {"lr_schedule": "constant", "warmup": 0.0, "table_lr_scale": 1.0,
                    "table_optimizer": "adam"}


def fresh_state(num_tasks: int, config: TrainConfig) -> dict[str, Any]:
    """The (JSON-able) trainer state of a run of ``num_tasks`` tasks under ``config`` before
    it starts: what resume needs besides the weights.

    Example:
        >>> fresh_state(2, TrainConfig())["loss_sum"]
        [0.0, 0.0]
    """
    return {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "history": [],
            "best_score": None, "best_epoch": 0, "bad_epochs": 0, "stopped_early": False,
            "loss_sum": [0.0] * num_tasks, "rows": 0, "skipped_steps": 0,
            "config": config.to_dict()}


def save_training(path: str | os.PathLike, model: MultiTaskModel,
                  optimizer: torch.optim.Optimizer, weighting: torch.nn.Module,
                  state: dict[str, Any], best_weights: dict[str, torch.Tensor] | None,
                  extras: dict[str, Any]) -> Path:
    """Write (atomically, at ``path``) what resuming a training needs: the ``model`` 's
    weights, the ``optimizer``, the global RNG, the trainer ``state`` (JSON-able), the
    ``best_weights`` (if kept), the loss ``weighting`` 's state and JSON-able ``extras``.

    Returns:
        The path written.

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> model = build_model("mmoe", 3, [TaskSpec("y")])
        >>> path = save_training(tmp_path / "c.pt", model, torch.optim.Adam(model.parameters()),
        ...                      torch.nn.Module(), {"epoch": 0}, None, {})
        >>> sorted(load_checkpoint(path)["tensors"])
        ['rng']
    """
    tensors: dict[str, Any] = {"rng": torch.get_rng_state()}
    if best_weights is not None:
        tensors["best_weights"] = best_weights
    if weighting.state_dict():
        tensors["weighting"] = weighting.state_dict()
    return save_checkpoint(path, model, optimizer=optimizer, trainer=state, tensors=tensors,
                           extras=extras, then="resume from it")


def restore_training(path: str | os.PathLike, model: MultiTaskModel,
                     optimizer: torch.optim.Optimizer, weighting: torch.nn.Module,
                     config: TrainConfig, fresh: dict[str, Any], steps: int | None
                     ) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Check the training checkpoint at ``path`` against the run resuming it, then load it
    into ``model``, ``optimizer``, ``weighting`` and torch's RNG. All is checked before any is
    used (a refused checkpoint changes nothing): the settings (``config``), the trainer state
    (the keys of ``fresh``, types, counters consistent with each other and with ``steps`` per
    epoch when known), the model description, each weight's name, shape, dtype and
    finiteness, the optimizer's groups, hyperparameters and moments, and the RNG state.

    Returns:
        ``(trainer state, best weights or None)``; a refusal is one ``ValueError`` line
        naming the checkpoint and what in it does not fit the run.
    """
    ckpt = load_checkpoint(path)
    saved = ckpt["trainer"].get("config", {})
    _require(isinstance(saved, dict), path, "its trainer state's 'config' is not a table")

    def outcome(cfg: dict[str, Any]) -> dict[str, Any]:
        # keys added later: the behaviour of the runs written before them
        full = {**TrainConfig().to_dict(), **BEFORE_SCHEDULES, **cfg}
        return {k: v for k, v in full.items() if k not in RESUMABLE_CHANGES}

    if outcome(saved) != outcome(config.to_dict()):
        raise ValueError(f"checkpoint '{path}' was written with different training settings "
                         f"{saved}; resume with the same settings or start a new run")
    state = _checked_state(ckpt["trainer"], fresh, config, [t.name for t in model.tasks],
                           steps, path)
    _require(ckpt["model"] == json.loads(json.dumps(model.describe())), path,
             "it was written for another model (its description differs from this run's)")
    _check_tensors(ckpt["state_dict"], model.state_dict(), "weight", path)
    tensors, expected = ckpt["tensors"], weighting.state_dict()
    unknown = sorted(map(str, set(tensors) - {"rng", "best_weights", "weighting"}))
    _require(not unknown and bool(expected) == ("weighting" in tensors), path,
             f"its tensors {sorted(map(str, tensors))} are not this run's")
    rng = tensors.get("rng")
    _require(isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8
             and rng.shape == torch.get_rng_state().shape, path,
             "its RNG state is missing or not the CPU generator's byte state")
    try:
        torch.Generator().set_state(rng)  # a scratch generator: validates the state
    except RuntimeError as err:
        _require(False, path, f"its RNG state is invalid ({str(err).splitlines()[0]})")
    best = tensors.get("best_weights")
    if best is not None:
        _check_tensors(best, model.state_dict(), "best weight", path)
    if expected:  # GradNorm's initial losses are NaN until its first step
        _check_tensors(tensors["weighting"], expected, "loss-weighting tensor", path, False)
    _check_optimizer(ckpt["optimizer"], optimizer, state["global_step"], path)
    model.load_state_dict(ckpt["state_dict"], strict=True)
    optimizer.load_state_dict(ckpt["optimizer"])  # moves state to the params' device
    if expected:
        weighting.load_state_dict(tensors["weighting"])
    torch.set_rng_state(rng)
    return state, best


def _require(ok: bool, path: str | os.PathLike, what: str) -> None:
    """Refuse a checkpoint that cannot be resumed, saying why in one line."""
    if not ok:
        raise ValueError(f"checkpoint '{path}' cannot be resumed: {what}; it was altered or "
                         "written by another run: start over without it (--overwrite)")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(value: Any) -> bool:
    return isinstance(value, dict) and all(_is_number(v) for v in value.values())


#: what each key of the trainer state, and of a history record, must hold
_STATE = {"epoch": _is_count, "step_in_epoch": _is_count, "global_step": _is_count,
          "best_epoch": _is_count, "bad_epochs": _is_count, "rows": _is_count,
          "skipped_steps": _is_count, "stopped_early": lambda v: isinstance(v, bool),
          "best_score": lambda v: v is None or _is_number(v),
          "loss_sum": lambda v: isinstance(v, list) and all(
              _is_number(x) and math.isfinite(x) for x in v),
          "history": lambda v: isinstance(v, list), "config": lambda v: isinstance(v, dict),
          "loss_scale": lambda v: isinstance(v, dict) and all(map(_is_number, v.values()))}
_RECORD = {"epoch": _is_count, "step": _is_count, "train_loss": _numbers, "seconds": _is_number,
           "samples_per_s": lambda v: v is None or _is_number(v), "skipped_steps": _is_count,
           "valid": lambda v: isinstance(v, dict) and all(map(_numbers, v.values())),
           "gates": lambda v: isinstance(v, dict), "loss_weights": _numbers}


def _malformed(table: dict[str, Any], rules: dict[str, Any]) -> list[str]:
    return [str(k) for k, v in table.items() if k not in rules or not rules[k](v)]


def _checked_state(st: dict[str, Any], fresh: dict[str, Any], config: TrainConfig,
                   names: list[str], steps: int | None, path: str | os.PathLike
                   ) -> dict[str, Any]:
    """The saved trainer state, after checking its keys, types and counters."""
    missing = sorted(set(fresh) - set(st) - {"skipped_steps"})  # skipped_steps came later
    bad = missing + _malformed(st, _STATE)
    _require(not bad, path, f"its trainer state has missing or malformed key(s) {bad}")
    epoch, step, total = st["epoch"], st["step_in_epoch"], st["global_step"]
    _require(epoch <= config.epochs and len(st["history"]) == epoch, path,
             f"its trainer state is at epoch {epoch} with {len(st['history'])} epochs of "
             f"history, for a run of {config.epochs} epochs")
    if steps is not None:  # a stream's epochs have no known length (it resumes at their end)
        _require(step <= steps and total == epoch * steps + step, path,
                 f"its trainer state is at step {step} of epoch {epoch + 1} (global step "
                 f"{total}), which this run's {steps} steps per epoch cannot reach (other "
                 "data?)")
    _require(total >= step and st["best_epoch"] <= epoch and st["bad_epochs"] <= epoch
             and st.get("skipped_steps", 0) <= step and len(st["loss_sum"]) == len(names),
             path, "its trainer state's counters contradict each other")
    for i, record in enumerate(st["history"], 1):
        bad = _malformed(record, _RECORD) if isinstance(record, dict) else ["(not a table)"]
        _require(not bad and record.get("epoch") == i and record.get("step", 0) <= total
                 and sorted(record.get("train_loss", {})) == sorted(names)
                 and set(record.get("valid", {})) <= set(names), path,
                 f"history record {i} is malformed {bad or '(epoch, step or tasks)'}")
    return {**fresh, **st, "config": config.to_dict()}


def _check_tensors(found: Any, expected: dict[str, torch.Tensor], what: str,
                   path: str | os.PathLike, finite: bool = True) -> None:
    """``found`` holds exactly ``expected`` 's names with their shapes and dtypes (and, with
    ``finite``, no NaN or inf)."""
    _require(isinstance(found, dict), path, f"its {what}s are not a table of tensors")
    odd = sorted(map(str, set(found) ^ set(expected)))
    _require(not odd, path, f"its {what}s do not match the model's (differing: {odd[:3]})")
    for name, ref in expected.items():
        t = found[name]
        _require(isinstance(t, torch.Tensor) and t.layout == torch.strided
                 and t.shape == ref.shape and t.dtype == ref.dtype, path,
                 f"{what} '{name}' is not a dense {tuple(ref.shape)} {ref.dtype} tensor")
        _require(not finite or not t.is_floating_point() or bool(torch.isfinite(t).all()),
                 path, f"{what} '{name}' holds NaN or inf values")


def _same(a: Any, b: Any) -> bool:
    """Equal hyperparameters: same numbers, same flags, sequences element by element."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(map(_same, a, b))
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and not isinstance(a, torch.Tensor) and a == b


def _check_optimizer(found: dict[str, Any], optimizer: torch.optim.Optimizer,
                     global_step: int, path: str | os.PathLike) -> None:
    """The optimizer's groups (parameters, hyperparameters) are this run's and each saved
    state (Adam's step count and moments) fits its parameter."""
    ours, groups = optimizer.state_dict()["param_groups"], found.get("param_groups")
    _require(set(found) == {"state", "param_groups"} and isinstance(found["state"], dict)
             and isinstance(groups, list) and len(groups) == len(ours), path,
             "its optimizer state is not this run's Adam (groups or layout differ)")
    for i, (group, mine) in enumerate(zip(groups, ours, strict=True)):
        _require(isinstance(group, dict) and {"lr", "weight_decay"} <= set(group)
                 and isinstance(group.get("params"), list) and group["params"] == mine["params"],
                 path, f"optimizer group {i} does not hold this run's parameters")
        # lr: the schedule's value at the step saved (the config's lr is checked above)
        # rows: row-wise Adagrad's rows per batch, set with lr
        differ = sorted(str(k) for k in (set(group) | set(mine)) - {"params", "lr", "rows"}
                        if k not in group or k not in mine or not _same(group[k], mine[k]))
        _require(not differ, path, f"optimizer group {i} has other hyperparameters "
                 f"({', '.join(differ)}) than this run's settings")
    owners = [(p, g) for g in optimizer.param_groups for p in g["params"]]
    params = [p for p, _ in owners]
    rowwise = {i for i, (_, g) in enumerate(owners) if "initial_accumulator" in g}
    amsgrad = any(g.get("amsgrad") for g in optimizer.param_groups)
    keys = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if amsgrad else set())
    for index, st in found["state"].items():
        if _is_count(index) and index in rowwise:  # row-wise Adagrad: a sum per table row
            t, p = st.get("sum") if isinstance(st, dict) else None, params[index]
            _require(isinstance(st, dict) and set(st) == {"sum"} and isinstance(t, torch.Tensor)
                     and t.layout == torch.strided and t.shape == p.shape[:1]
                     and t.dtype == p.dtype and bool(torch.isfinite(t).all())
                     and (t.numel() == 0 or bool(t.min() > 0)), path,
                     f"its optimizer state for parameter {index} is not row-wise Adagrad's "
                     f"finite positive sum per row of a {tuple(p.shape)} {p.dtype} table")
            continue
        _require(_is_count(index) and index < len(params) and isinstance(st, dict)
                 and set(st) == keys, path, f"its optimizer state for parameter {index!r} is "
                 f"not Adam's {sorted(keys)} of a parameter of this run")
        step, p = st["step"], params[index]
        _require(isinstance(step, torch.Tensor) and step.numel() == 1
                 and step.dtype.is_floating_point and float(step).is_integer()
                 and 0 <= float(step) <= global_step,
                 path, f"the optimizer step count of parameter {index} is not a whole number "
                 f"in [0, {global_step}]")
        for key in sorted(keys - {"step"}):
            t = st[key]
            _require(isinstance(t, torch.Tensor) and t.layout == torch.strided
                     and t.shape == p.shape and t.dtype == p.dtype
                     and bool(torch.isfinite(t).all())
                     and (key == "exp_avg" or t.numel() == 0 or bool(t.min() >= 0)), path,
                     f"optimizer '{key}' of parameter {index} is not a finite "
                     f"{tuple(p.shape)} {p.dtype} tensor{'' if key == 'exp_avg' else ' >= 0'}")
