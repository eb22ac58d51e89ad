"""Training a seed ensemble (``mmoe train --ensemble K``): K models of the same settings from
seeds ``seed``, ``seed + 1``, ..., trained one after another on the same tables, then
predicting with the mean of their logits (:class:`mmoe.models.ensemble.SeedEnsemble`).

Kill and resume: each finished member is written (atomically) to ``member-<k>.pt`` beside the
run's checkpoint, with its training record; the member in training checkpoints like a single
run. ``--resume`` reloads the finished members and resumes the one in training.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..config.training import ENSEMBLE_ROWS
from ..models import MultiTaskModel
from ..models.ensemble import SeedEnsemble
from ..train import FitResult
from ..train.checkpoint import load_model, save_checkpoint
from ..train.distributed import env_rank
from .spec import RunSpec

#: trains one member: (its spec, its checkpoint file or None) -> (model, fit result)
MemberFit = Callable[[RunSpec, Path | None], tuple[MultiTaskModel, FitResult]]


def member_spec(spec: RunSpec, k: int) -> RunSpec:
    """Member ``k``'s spec: the run's, seeded ``seed + k``.

    Example:
        >>> from mmoe.app.spec import build_run_spec
        >>> member_spec(build_run_spec(train="t.csv", tasks=["y:binary"], seed=7), 2).training.seed
        9
    """
    return dataclasses.replace(spec, training=dataclasses.replace(
        spec.training, seed=spec.training.seed + k))


def _summary(result: FitResult) -> dict[str, Any]:
    """A member's kept epoch, monitor and best score (JSON: no NaN)."""
    return {"best_epoch": result.best_epoch, "monitor": result.monitor,
            "best_score": None if math.isnan(result.best_score) else result.best_score}


def _record(result: FitResult) -> dict[str, Any]:
    """A member's fit result as JSON-able data (kept with its weights)."""
    return {**_summary(result), "history": result.history,
            "stopped_early": result.stopped_early,
            "config": None if result.config is None else result.config.to_dict()}


def _result(record: dict[str, Any]) -> FitResult:
    """The inverse of :func:`_record`."""
    config = record.get("config")
    score = record.get("best_score")
    return FitResult(record["history"], record["best_epoch"],
                     math.nan if score is None else score, record["monitor"],
                     record["stopped_early"],
                     None if config is None else TrainConfig.from_dict(config))


def fit_members(spec: RunSpec, fit: MemberFit, rows: int | None,
                checkpoint: Path | None = None, resume: bool = False,
                announce: Callable[[str], None] | None = None
                ) -> tuple[MultiTaskModel | SeedEnsemble, FitResult]:
    """Train the run's members through ``fit`` (one model when one).

    Args:
        spec: the run.
        fit: trains one member (see :data:`MemberFit`).
        rows: the training rows (``None``: unknown), which size an ensemble left to the
            default (:meth:`~mmoe.config.TrainConfig.members`).
        checkpoint: the run's checkpoint file; finished members go beside it.
        resume: reload finished members and resume the one in training.
        announce: told, before training, how many models from which seeds an ensemble has.

    Returns:
        ``(model, fit result)``: for K >= 2 a :class:`SeedEnsemble` and the first member's
        fit result with every member's seed, kept epoch and score in ``members``.
    """
    k_total = spec.training.members(rows)
    if k_total == 1:
        return fit(spec, checkpoint)
    if announce is not None:
        first = spec.training.seed
        why = "as set" if spec.training.ensemble else \
            f"the default for at most {ENSEMBLE_ROWS:,} training rows; --ensemble 1 trains one"
        announce(f"a seed ensemble of {k_total} models, seeds {first}..{first + k_total - 1} "
                 f"({why})")
    members, results = [], []
    for k in range(k_total):
        done = None if checkpoint is None else checkpoint.with_name(f"member-{k}.pt")
        if resume and done is not None and done.is_file():
            model, extras = load_model(done)
            result = _result(extras["fit"])
        else:
            if announce is not None:
                announce(f"model {k + 1} of {k_total} (seed {spec.training.seed + k})")
            model, result = fit(member_spec(spec, k), checkpoint)
            if done is not None and env_rank() == 0:
                # the next member starts afresh; a kill between the two loses this member's
                # training, never mixes two members' states
                checkpoint.unlink(missing_ok=True)
                save_checkpoint(done, model, extras={"fit": _record(result)},
                                then="resume from it")
        members.append(model)
        results.append(result)
    summary = [{"seed": spec.training.seed + k, **_summary(r)} for k, r in enumerate(results)]
    return SeedEnsemble(members).eval(), dataclasses.replace(results[0], members=summary)
