"""Hyperparameter search for the census experiment (paper §6.2) with Optuna.

The paper tuned every method with a Gaussian-process tuner on the main task's validation AUC:
learning rate and training steps for all; experts and units per expert for MMoE (at most 2048
hidden units per layer: experts x units <= 2048); hidden size and α for L2-Constrained; hidden
size and cross-stitch layer size for Cross-Stitch; the ranks r1, r2, r3 and hidden size for
Tensor-Factorization. We search the same quantities (Optuna's GP sampler when it is available,
else TPE), score each trial by its best-epoch validation main-task AUC (never test), and write
the best trial in the config-file format ``mmoe reproduce census --config`` reads. The study
runs through the one runner of `mmoe tune` (:func:`mmoe.app.tune.run_study`); the search
spaces and the objective are census's (the paper's protocol).

One protocol for every model (:func:`tune_all`): the same sampler and seed, the same number of
trials, the same training rows and validation split, trial 0 the committed setting, and the
same width rule, matched by parameter count as the paper's "at most 2048 hidden units per
layer (for MMoE: experts x units)": the hidden units of the first layer, summed over every
network that reads the input (the experts of a MoE or CGC/PLE level, the shared bottom, each
task's network), are at most ``max_units``. The first layer holds most of the weights (the
input is ~260 wide), so models of the same cap have about the same number of parameters.
"""

from __future__ import annotations

import datetime
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ... import _checks
from ...app.tune import optuna_module, run_study
from ...config import ModelConfig, TrainConfig
from .config import (
    ALL_MODELS,
    MOE_MODELS,
    PER_TASK_MODELS,
    PROTOCOL,
    ModelSetup,
    default_config_path,
    read_config,
    resolve_models,
    write_config,
)
from .run import CensusTables, prepare, train_one

MAX_UNITS = 2048  # paper §6.2: at most 2048 hidden units per layer (MoE: experts x units)
BATCH_SIZES = [1024, 2048, 4096]
EMBEDDING_DIMS = [4, 8, 16]
TOWER_UNITS = [4, 8, 16, 32]


def base_params(model: str, base: ModelSetup, max_epochs: int = 10) -> dict[str, Any] | None:
    """The Optuna parameters of ``base`` (the committed configuration), so it can be enqueued
    as trial 0: the search then never returns anything worse on validation than the committed
    setting. ``None`` when ``base`` lies outside the searched space."""
    m, t = base.model, base.train
    params: dict[str, Any] = {"lr": t.lr, "epochs": min(t.epochs, max_epochs),
                              "batch_size": t.batch_size, "embedding_dim": base.embedding_dim,
                              "tower_units": m.tower_units[0] if m.tower_units else None}
    if (params["batch_size"] not in BATCH_SIZES or params["embedding_dim"] not in EMBEDDING_DIMS
            or params["tower_units"] not in TOWER_UNITS or not m.expert_units):
        return None
    if model in MOE_MODELS:
        opts = dict(m.options or {})
        if model in ("cgc", "ple"):
            params.update(num_experts=opts.get("shared_experts", m.num_experts),
                          units_per_expert=m.expert_units[0],
                          task_experts=opts.get("task_experts", 0))
            if model == "ple":
                params["levels"] = opts.get("levels", 1)
        else:
            params.update(num_experts=m.num_experts, units_per_expert=m.expert_units[0])
    else:
        params["hidden_units"] = m.expert_units[0]
        opts = dict(m.options or {})
        if model == "l2_constrained":
            params["alpha"] = opts.get("alpha", 1e-3)
        elif model == "cross_stitch":
            params.update(stitch_layers=len(m.expert_units),
                          self_weight=opts.get("self_weight", 0.9))
        elif model == "tensor_factorization":
            r = list(opts.get("ranks", [8, 8, 2]))
            params.update(r1=r[0], r2=r[1], r3=r[2])
    return params


@dataclass
class TuneResult:
    """What :func:`tune` returns.

    Attributes:
        spec: the best trial's configuration.
        value: its validation main-task AUC.
        trials: number of finished trials.
        path: the config file written (``None`` when not written).
        history: per trial ``{"number", "value", "params"}``.
    """

    spec: ModelSetup
    value: float
    trials: int
    path: Path | None
    history: list[dict[str, Any]]


def suggest(trial: Any, model: str, base: ModelSetup, max_epochs: int = 10,
            max_units: int = MAX_UNITS, num_tasks: int = 2) -> ModelSetup:
    """Draw one configuration of ``model`` from ``trial`` (an ``optuna.Trial``).

    Every distribution is fixed (the same range in every trial) so the GP sampler can model it
    jointly; the width rule (the first layer's hidden units summed over the networks reading
    the input at most ``max_units``, itself at most the paper's 2048) is applied by capping
    the units drawn.
    """
    cap = min(max_units, MAX_UNITS)
    lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    epochs = trial.suggest_int("epochs", min(2, max_epochs), max_epochs)
    # Batches of 1024-4096 rows: smaller ones cost several times the CPU time per epoch at the
    # same validation AUC in the manual probes (configs/census_group*.toml).
    batch_size = trial.suggest_categorical("batch_size", BATCH_SIZES)
    emb = trial.suggest_categorical("embedding_dim", EMBEDDING_DIMS)
    tower = trial.suggest_categorical("tower_units", TOWER_UNITS)
    fields: dict[str, Any] = {"tower_units": (tower,), "batch_norm": True, "options": {}}
    if model in MOE_MODELS:
        experts = trial.suggest_int("num_experts", 2, 16)
        units = trial.suggest_int("units_per_expert", 4, 256, log=True)
        if model in ("cgc", "ple"):  # experts = the shared ones; each task owns task_experts
            fields["options"] = {"task_experts": trial.suggest_int("task_experts", 0, 4),
                                 "shared_experts": experts}
            if model == "ple":
                fields["options"]["levels"] = trial.suggest_int("levels", 1, 3)
        networks = _networks(model, experts, fields["options"], num_tasks)
        fields.update(num_experts=networks, expert_units=(max(1, min(units, cap // networks)),))
    else:
        hidden = trial.suggest_int("hidden_units", 16, 512, log=True)
        hidden = max(1, min(hidden, cap // _networks(model, 1, {}, num_tasks)))
        fields["expert_units"] = (hidden,)
        if model == "l2_constrained":
            fields["options"] = {"alpha": trial.suggest_float("alpha", 1e-6, 1e-1, log=True)}
        elif model == "cross_stitch":
            # The cross-stitch layer size: width of the stitched per-task layers (a second
            # stitched layer of that width when two layers are drawn).
            layers = trial.suggest_int("stitch_layers", 1, 2)
            fields["expert_units"] = (hidden,) * layers
            fields["options"] = {"self_weight": trial.suggest_float("self_weight", 0.5, 1.0)}
        elif model == "tensor_factorization":
            fields["options"] = {"ranks": [trial.suggest_int("r1", 1, 64, log=True),
                                           trial.suggest_int("r2", 1, 64, log=True),
                                           trial.suggest_int("r3", 1, 2)]}
    cfg = ModelConfig.from_dict({**base.model.to_dict(), **fields, "name": model})
    train = TrainConfig.from_dict({**base.train.to_dict(), "lr": lr, "epochs": epochs,
                                   "batch_size": batch_size})
    return ModelSetup(cfg, train, emb)


def first_layer_units(spec: ModelSetup, num_tasks: int = 2) -> int:
    """Hidden units of the first layer summed over the networks reading the input (the
    quantity the width rule caps).

    Example:
        >>> first_layer_units(read_config(default_config_path(1))["single_task"])  # 2 x 256
        512
    """
    m = spec.model
    return m.expert_units[0] * _networks(m.name, m.num_experts, dict(m.options or {}),
                                         num_tasks)


def _networks(model: str, experts: int, options: dict[str, Any], num_tasks: int) -> int:
    """How many networks read the input: a MoE's experts (CGC/PLE: the shared ones plus each
    task's own), one per task for the per-task models, one shared bottom."""
    if model in MOE_MODELS:
        return (options["shared_experts"] + num_tasks * options["task_experts"]
                if "task_experts" in options else experts)
    return num_tasks if model in PER_TASK_MODELS else 1


def tune(model: str, group: int = 1, trials: int = 20, *, data_dir: str | Path | None = None,
         out: str | Path | None = None, nrows: int | None = None, seed: int = 0,
         threads: int | None = 1, timeout: float | None = None, sampler: str = "auto",
         max_epochs: int = 10, max_units: int = MAX_UNITS,
         tables: CensusTables | None = None,
         log: Callable[[str], None] | None = None) -> TuneResult:
    """Search ``model``'s hyperparameters on census group ``group``.

    Args:
        model: a registered model name (any of the paper's seven, or cgc/ple).
        group: 1 or 2.
        trials: number of Optuna trials.
        data_dir: the Census-Income files (``None``: ``$MMOE_DATA_DIR``, else the user cache).
        out: config file to write the best configuration to (``None``: not written).
        nrows: read only the first ``nrows`` rows of each file (quick checks).
        seed: seed of the sampler and of every trial's training run.
        threads: intra-op threads per trial.
        timeout: stop starting new trials after this many seconds.
        sampler: ``"gp"`` (the paper's choice), ``"tpe"``, or ``"auto"`` (GP if available).
        max_epochs: upper end of the epochs range searched (best epoch kept by validation).
        max_units: cap on experts x units per expert for MoE models (at most the paper's
            2048; smaller caps bound the CPU time of a trial).
        tables: already prepared data (skips loading).
        log: called with one line per finished trial.

    Returns:
        :class:`TuneResult`.

    Example:
        >>> res = tune("mmoe", 1, trials=1, data_dir=census_dir, nrows=2000, max_epochs=1,
        ...            out="mmoe_g1.toml")
        >>> res.trials, 0.5 < res.value <= 1, res.path.name
        (1, True, 'mmoe_g1.toml')
    """
    optuna = optuna_module()
    (model,) = resolve_models([model])
    _checks.one_of(group, (1, 2), "census group")
    _checks.positive_int(trials, "trials")
    _checks.one_of(sampler, ("auto", "gp", "tpe"), "sampler")
    _checks.positive_int(max_epochs, "max_epochs")
    _checks.positive_int(max_units, "max_units")
    committed = read_config(default_config_path(group), group)
    base = committed.get(model, ModelSetup(ModelConfig(name=model, batch_norm=True),
                                        TrainConfig.from_dict({**PROTOCOL, "epochs": 5})))
    if tables is None:
        tables = prepare(group, data_dir, nrows=nrows)
    main = tables.tasks[0].name
    if sampler == "tpe" or (sampler == "auto" and not hasattr(optuna.samplers, "GPSampler")):
        chosen = optuna.samplers.TPESampler(seed=seed)
    else:
        chosen = optuna.samplers.GPSampler(seed=seed)
    specs: dict[int, ModelSetup] = {}
    # trial 0 = the committed configuration
    start = base_params(model, base, max_epochs) if model in committed else None

    def objective(trial: Any) -> float:
        spec = suggest(trial, model, base, max_epochs, max_units, len(tables.tasks))
        specs[trial.number] = spec
        run = train_one(tables, spec, seed, threads, evaluate_test=False)
        value = run["valid"][main]
        if log is not None:
            log(f"{model} trial {trial.number}: valid {main} AUC {value:.4f} "
                f"({run['seconds']:.0f}s) {trial.params}")
        return value

    study = run_study(objective, sampler=chosen, trials=trials, timeout=timeout, first=start,
                      name=f"census_g{group}_{model}")
    best = study.best_trial
    command = _command(model, group, trials, seed, sampler, max_epochs, max_units, nrows,
                       timeout)
    record = {"trials": len(study.trials), "best_trial": best.number,
              "best_valid_auc": round(float(best.value), 6),
              "trial0_valid_auc": (None if study.trials[0].value is None
                                   else round(float(study.trials[0].value), 6)),
              "sampler": type(chosen).__name__, "seed": seed,
              "train_rows": len(tables.train), "date": datetime.date.today().isoformat(),
              "command": command}
    spec = replace(specs[best.number], study=record)
    path = None
    if out is not None:
        comment = (f"Written by `{command}`: best of {len(study.trials)} Optuna trials "
                   f"({type(chosen).__name__}, seed {seed}) by validation {main} AUC = "
                   f"{best.value:.4f}.")
        path = write_config(out, group, {model: spec}, comment)
    history = [{"number": t.number, "value": t.value, "params": t.params}
               for t in study.trials]
    return TuneResult(spec, float(best.value), len(study.trials), path, history)


def _command(model: str, group: int, trials: int, seed: int, sampler: str, max_epochs: int,
             max_units: int, nrows: int | None, timeout: float | None) -> str:
    """The `mmoe tune` command of one model's study (recorded with its result)."""
    return (f"mmoe tune --model {model} --group {group} --trials {trials} --seed {seed}"
            f" --sampler {sampler} --max-epochs {max_epochs} --max-units {max_units}"
            f"{f' --nrows {nrows}' if nrows else ''}"
            f"{f' --timeout {timeout:g}' if timeout else ''}")


def tune_all(models: Sequence[str] = ALL_MODELS, group: int = 1, trials: int = 16, *,
             data_dir: str | Path | None = None, out: str | Path | None = None,
             nrows: int | None = None, seed: int = 0, threads: int | None = 1,
             sampler: str = "auto", max_epochs: int = 10, max_units: int = MAX_UNITS,
             tables: CensusTables | None = None,
             log: Callable[[str], None] | None = None) -> dict[str, TuneResult]:
    """Tune every model of ``models`` under one protocol (:func:`tune` with the same trials,
    sampler, seed, rows and width rule for each) and write them to one config file, each
    model's ``[models.NAME.study]`` table recording its study.

    Args:
        models: registered model names (default: the paper's seven, CGC and PLE).
        group, trials, data_dir, nrows, seed, threads, sampler, max_epochs, max_units,
        tables, log: as :func:`tune` (no timeout: every model gets the same trials).
        out: the config file to write (``None``: not written); rewritten after each model,
            so a stopped run keeps the models already tuned, and a rerun with the same
            protocol skips them (their recorded command is this run's).

    Returns:
        model name -> :class:`TuneResult`.

    Example:
        >>> res = tune_all(["shared_bottom", "mmoe"], 1, trials=1, data_dir=census_dir,
        ...                nrows=2000, max_epochs=1, out="g1.toml")
        >>> sorted(read_config("g1.toml")), res["mmoe"].spec.study["trials"]
        (['mmoe', 'shared_bottom'], 1)
    """
    models = resolve_models(models)
    if tables is None:
        tables = prepare(group, data_dir, nrows=nrows)
    done = read_config(out, group) if out is not None and Path(out).is_file() else {}
    results: dict[str, TuneResult] = {}
    for name in models:
        command = _command(name, group, trials, seed, sampler, max_epochs, max_units, nrows,
                           None)
        kept = done.get(name)
        if kept is not None and (kept.study or {}).get("command") == command:
            results[name] = TuneResult(kept, kept.study["best_valid_auc"],
                                       kept.study["trials"], Path(out), [])
            if log is not None:
                log(f"{name}: kept from {out} (tuned by the same protocol)")
            continue
        results[name] = tune(name, group, trials, nrows=nrows, seed=seed, threads=threads,
                             sampler=sampler, max_epochs=max_epochs, max_units=max_units,
                             tables=tables, log=log)
        if out is not None:
            main = tables.tasks[0].name
            comment = (f"Census group {group}: every model tuned under one protocol by "
                       f"`mmoe tune --model all --group {group} --trials {trials} --seed "
                       f"{seed} --max-epochs {max_epochs} --max-units {max_units}"
                       f"{f' --nrows {nrows}' if nrows else ''}`: {trials} Optuna trials "
                       f"each, the same sampler, seed, training rows and validation split, "
                       f"trial 0 the previously committed setting, the first layer's hidden "
                       f"units summed over its networks <= {max_units} (matched parameter "
                       f"counts); objective: the best epoch's validation {main} AUC, never "
                       "test. Each model's [models.NAME.study] table records its study.")
            write_config(out, group, {n: r.spec for n, r in results.items()},
                         textwrap.fill(comment, 92))
    return results
