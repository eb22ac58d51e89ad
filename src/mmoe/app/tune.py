"""`mmoe tune` on any table: an Optuna search over the model family, its shape, the numeric
encoding, the learning rate, dropout and weight decay, judged by the combined validation
score (the mean task skill that training itself keeps the best epoch by), with unpromising
trials pruned on their per-epoch validation history; the best trial is written as a config
file that `mmoe train --config` reuses.

Trial 0 is the run as given (the defaults, or the config's settings), so the result is never
worse on validation than not tuning. The rows are read once; the encoder is fitted once per
numeric encoding tried.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from .. import _checks
from .._fileio import write_text
from ..config import ModelConfig
from ..data.encoders import TableEncoder
from ..data.table import TensorTable
from ..diagnostics import GateHealthWarning
from ..train import Trainer
from .config_file import config_text
from .fit import build_for, for_rows
from .spec import RunSpec
from .tables import encode_frames, read_run_frames

FAMILIES = ("mmoe", "ple", "shared_bottom")
_UNITS = (16, 32, 64, 128)


@dataclass(frozen=True)
class TuneResult:
    """The study's outcome: the best combined validation score, the trials run (pruned
    ones included), the best run spec and the config file written."""

    value: float
    trials: int
    pruned: int
    spec: RunSpec
    path: Path | None


def parse_budget(text: str | float | int) -> float:
    """Seconds from ``90``, ``90s``, ``10m`` or ``1h``.

    Example:
        >>> parse_budget("10m"), parse_budget("90s"), parse_budget(30)
        (600.0, 90.0, 30.0)
    """
    units = {"s": 1, "m": 60, "h": 3600}
    raw = str(text).strip().lower()
    scale = units.get(raw[-1:], None)
    number = raw[:-1] if scale else raw
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise ValueError(f"--budget must be a duration like 600, 90s, 10m or 1h, got "
                         f"{text!r}") from None
    _checks.check(math.isfinite(seconds) and seconds > 0, f"--budget must be positive, got "
                  f"{text!r}")
    return seconds


def suggest(trial: Any, base: RunSpec, families: tuple[str, ...]) -> RunSpec:
    """The run spec of one trial: ``base`` with the searched settings replaced."""
    name = trial.suggest_categorical("model", list(families))
    experts = trial.suggest_int("num_experts", 2, 12) if name != "shared_bottom" else 1
    units = trial.suggest_categorical("expert_units", list(_UNITS))
    model = replace(base.model if base.model.name == name else ModelConfig(name=name),
                    num_experts=experts, expert_units=(units,),
                    tower_units=(trial.suggest_categorical("tower_units", [8, 16, 32]),),
                    dropout=trial.suggest_float("dropout", 0.0, 0.3))
    training = replace(base.training,
                       lr=trial.suggest_float("lr", 3e-4, 1e-2, log=True),
                       weight_decay=trial.suggest_categorical("weight_decay",
                                                              [0.0, 1e-5, 1e-4, 1e-3]))
    return replace(base, model=model, training=training,
                   numeric_encoding=trial.suggest_categorical(
                       "numeric_encoding", ["ple", "quantile", "standard"]),
                   embedding_dim=trial.suggest_categorical("embedding_dim", [4, 8, 16]))


def _as_given(base: RunSpec, families: tuple[str, ...]) -> dict[str, Any]:
    """Trial 0's parameters: the run as given."""
    m, t = base.model, base.training
    params = {"model": m.name if m.name in families else families[0],
              "expert_units": m.expert_units[0] if m.expert_units[0] in _UNITS else 32,
              "tower_units": m.tower_units[0] if m.tower_units and m.tower_units[0]
              in (8, 16, 32) else 16,
              "dropout": m.dropout, "lr": min(max(t.lr, 3e-4), 1e-2),
              "weight_decay": t.weight_decay if t.weight_decay in (0.0, 1e-5, 1e-4, 1e-3)
              else 0.0,
              "numeric_encoding": "ple" if base.numeric_encoding == "auto"
              else base.numeric_encoding,
              "embedding_dim": base.embedding_dim if base.embedding_dim in (4, 8, 16) else 8}
    if params["model"] != "shared_bottom":
        params["num_experts"] = min(max(m.num_experts, 2), 12)
    return params


def optuna_module() -> Any:
    """Optuna, or one line saying how to install it."""
    try:
        import optuna
    except ImportError as err:
        raise ValueError("`mmoe tune` needs Optuna: pip install 'mmoe[tune]' "
                         "(or pip install optuna)") from err
    return optuna


def run_study(objective: Callable[[Any], float], *, sampler: Any, trials: int | None,
              timeout: float | None, first: dict[str, Any] | None = None, pruner: Any = None,
              name: str | None = None, catch: tuple[type[Exception], ...] = ()) -> Any:
    """The Optuna study every mmoe tuner runs (`mmoe tune` on a table, and on census): the
    objective maximised by ``sampler`` for ``trials`` trials or ``timeout`` seconds,
    ``first`` (a setting's parameters) as trial 0, Optuna's own logging quiet, and the
    trials' gate-health warnings too (a trial's gates are the study's to judge, by its
    score, not the user's to mend; the best setting trained again warns as any run does).

    Example:
        >>> optuna = optuna_module()
        >>> study = run_study(lambda t: -(t.suggest_float("x", -1, 1) - 0.5) ** 2,
        ...                   sampler=optuna.samplers.TPESampler(seed=0), trials=3,
        ...                   timeout=None, first={"x": 0.5})
        >>> study.best_params, len(study.trials)
        ({'x': 0.5}, 3)
    """
    optuna = optuna_module()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner,
                                study_name=name)
    if first is not None:
        study.enqueue_trial(first)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GateHealthWarning)
        study.optimize(objective, n_trials=trials, timeout=timeout, catch=catch)
    return study


def tune_table(base: RunSpec, budget: float, *, trials: int | None = None, seed: int = 0,
               families: tuple[str, ...] = FAMILIES, out: str | os.PathLike | None = None,
               command: str = "", log: Callable[[str], None] = lambda line: None
               ) -> TuneResult:
    """Search ``base`` 's settings for ``budget`` seconds (or ``trials`` trials).

    Args:
        base: the run to tune (tasks, files, columns, and the settings of trial 0).
        budget: seconds; no trial starts after them.
        trials: at most this many trials (``None``: as many as the budget allows).
        seed: the sampler's seed (training seeds stay ``base`` 's).
        families: the models searched.
        out: the config file to write (``None``: none).
        command: recorded in the file's header.
        log: called with one line per trial.

    Returns:
        The :class:`TuneResult`.
    """
    optuna = optuna_module()
    for name in families:
        _checks.one_of(name, FAMILIES, "tuned model family")
    _checks.check(not base.stream, "mmoe tune reads the files whole; drop --stream")
    frames = read_run_frames(base)
    rows = len(frames[0])
    base = for_rows(base, rows)  # trial 0: the defaults as mmoe train chooses them
    encoded: dict[str, tuple[TableEncoder, TensorTable, TensorTable]] = {}

    def objective(trial: Any) -> float:
        spec = for_rows(suggest(trial, base, families), rows)
        if spec.numeric_encoding not in encoded:
            encoded[spec.numeric_encoding] = encode_frames(spec, *frames)
        encoder, train, valid = encoded[spec.numeric_encoding]
        start = time.perf_counter()
        trainer = Trainer(build_for(spec, encoder), spec.training, progress=False)
        for record in trainer.iter_epochs(train, valid):
            trial.report(trainer.monitor.value(record["valid"]), record["epoch"] - 1)
            if trial.should_prune():
                log(f"trial {trial.number}: pruned at epoch {record['epoch']}")
                raise optuna.TrialPruned()
        score = trainer.result().best_score
        log(f"trial {trial.number}: {spec.model.name} combined validation score {score:.4f} "
            f"({time.perf_counter() - start:.0f} s)")
        return score

    study = run_study(objective, sampler=optuna.samplers.TPESampler(seed=seed), trials=trials,
                      timeout=budget, first=_as_given(base, families),
                      pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2),
                      catch=(ValueError,))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    _checks.check(bool(done), "no trial finished within the budget; give a larger --budget")
    best = study.best_trial
    spec = for_rows(suggest(optuna.trial.FixedTrial(best.params), base, families), rows)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    path = None
    if out is not None:
        members = spec.training.members(rows)
        header = (f"mmoe tune, {date.today().isoformat()}: best combined validation score "
                  f"{best.value:.4f} (trial {best.number} of {len(study.trials)}, {pruned} "
                  f"pruned; Optuna TPE seed {seed}, median pruning, budget {budget:.0f} s)\n"
                  + (f"each trial is one model; mmoe train --config trains {members} (a seed "
                     "ensemble; ensemble = 1 in [training] for one)\n" if members > 1 else "")
                  + command).rstrip()
        path = write_text(out, config_text(spec, header))
    return TuneResult(best.value, len(study.trials), pruned, spec, path)
