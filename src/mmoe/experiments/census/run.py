"""Reproduction of the paper's Census-Income experiments (Ma et al. 2018, §6.3, Tables 1-2).

Protocol, as in the paper: for each model, the hyperparameters come from a committed config
file (``configs/census_group{1,2}.toml``, chosen on validation data only); the model is then
trained R times from random initialisation (run r uses seed ``seed + r``). "Best" is the run
with the best *validation* main-task AUC, reported on the *test* split, next to the mean and
standard deviation of the test AUCs over the R runs. Every run ends with the weights of its
best validation epoch (the paper tuned the number of training steps on validation AUC too).

The data is encoded once per call (encoder fitted on the training split only). The (model,
run) jobs are independent: with ``jobs`` > 1 they are trained in that many worker processes
(each receives the encoded tables once), every run with ``threads`` intra-op threads (1 is
fastest for these tiny models: more threads cost more in synchronisation than they gain, and
two single-threaded runs use 2 cores better than one two-threaded run). A run depends only on
its seed, so the results are the same for any ``jobs``.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ... import _checks
from ..._progress import progress_bar
from ..._version import __version__, git_commit
from ...config import InputSpec, TaskSpec, TrainConfig
from ...data.datasets.census import CensusData, label_correlation, load_census
from ...data.encoders import TableEncoder
from ...data.table import TensorTable
from ...models import build_model
from ...train import Trainer, evaluate_model
from ...train.distributed import env_rank, env_world
from .config import (
    DEFAULT_RUNS,
    PAPER,
    REFERENCE_MMOE,
    ModelSetup,
    default_config_path,
    read_config,
    resolve_models,
)
from .report import summarize, targets, write_outputs


def _aucs(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    return {task: float(m["auc"]) for task, m in metrics.items()}


# ---- data -----------------------------------------------------------------------------------
@dataclass
class CensusTables:
    """Census-Income encoded once: the data, the fitted encoder and the three tensor tables."""

    data: CensusData
    encoder: TableEncoder
    train: TensorTable
    valid: TensorTable
    test: TensorTable
    seconds: float

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        """Tasks with their label values resolved (main task first)."""
        return self.encoder.tasks

    def input_spec(self, embedding_dim: int) -> InputSpec:
        """The models' inputs with categorical embeddings of width ``embedding_dim``."""
        return self.encoder.input_spec(embedding_dim)


def prepare(group: int, data_dir: str | Path | None = None, nrows: int | None = None,
            split_seed: int = 0) -> CensusTables:
    """Load group ``group`` and encode it (encoder fitted on the training split only).

    Args:
        group: 1 (income; marital) or 2 (education; marital).
        data_dir: directory of the two ``.gz`` files (``None``: ``$MMOE_DATA_DIR``, else the
            user cache dir).
        nrows: read only the first ``nrows`` rows of each file (quick checks).
        split_seed: seed of the 1:1 validation/test split.

    Example:
        >>> tables = prepare(1, census_dir, nrows=2000)
        >>> [t.name for t in tables.tasks]
        ['income', 'marital']
    """
    start = time.perf_counter()
    data = load_census(data_dir, group=group, seed=split_seed, nrows=nrows)
    enc = TableEncoder(data.tasks, numeric=data.numeric, categorical=data.categorical,
                       numeric_encoding="standard")  # the protocol's: standardised
    enc.fit(data.train)
    train, valid, test = (enc.transform(df) for df in (data.train, data.valid, data.test))
    return CensusTables(data, enc, train, valid, test, time.perf_counter() - start)


def train_one(tables: CensusTables, spec: ModelSetup, seed: int, threads: int | None = 1,
              evaluate_test: bool = True) -> dict[str, Any]:
    """Train one model from a fresh initialisation (``torch.manual_seed(seed)``).

    Returns:
        ``{"seed", "best_epoch", "epochs_run", "seconds", "valid": {task: auc},
        "test": {task: auc}}`` (``test`` only with ``evaluate_test``); ``valid`` is measured
        on the weights kept at the end (the best validation epoch).
    """
    start = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = build_model(spec.model, tables.input_spec(spec.embedding_dim), tables.tasks)
    cfg = TrainConfig.from_dict({**spec.train.to_dict(), "seed": seed, "threads": threads,
                                 "monitor": tables.tasks[0].name, "restore_best": True})
    fit = Trainer(model, cfg, progress=False).fit(tables.train, tables.valid)
    out: dict[str, Any] = {"seed": seed, "best_epoch": fit.best_epoch,
                           "epochs_run": len(fit.history)}
    out["valid"] = _aucs(evaluate_model(model, tables.valid))
    if evaluate_test:
        out["test"] = _aucs(evaluate_model(model, tables.test))
    out["seconds"] = time.perf_counter() - start
    return out


def default_jobs() -> int:
    """Default number of parallel runs: ``min(2, CPU cores available to this process)``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


_WORKER_TABLES: CensusTables | None = None
_WORKER_THREADS: int | None = 1


def _worker_init(tables: CensusTables, threads: int | None) -> None:
    """Worker process start: keep the encoded tables (sent once per worker, not per run)."""
    global _WORKER_TABLES, _WORKER_THREADS
    _WORKER_TABLES, _WORKER_THREADS = tables, threads
    torch.set_num_threads(threads or 1)


def _worker_run(spec: ModelSetup, seed: int) -> dict[str, Any]:
    assert _WORKER_TABLES is not None
    return train_one(_WORKER_TABLES, spec, seed, _WORKER_THREADS)


@dataclass
class CensusResult:
    """What :func:`run_census` returns: the ``results.json`` content and the files written."""

    results: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


def run_census(group: int = 1, *, models: Sequence[str] | None = None,
               runs: int = DEFAULT_RUNS, data_dir: str | Path | None = None,
               out: str | Path | None = None, config: str | Path | None = None,
               seed: int = 0, threads: int | None = 1, epochs: int | None = None,
               nrows: int | None = None, progress: bool | None = None,
               jobs: int | None = None,
               log: Callable[[str], None] | None = None) -> CensusResult:
    """Reproduce the paper's Table 1 (group 1) or Table 2 (group 2).

    Args:
        group: 1 = (income; marital), 2 = (education; marital).
        models: registered model names (default: the paper's seven, CGC and PLE).
        runs: R runs per model from random initialisation (seeds ``seed .. seed + R - 1``).
        data_dir: the Census-Income files (``None``: ``$MMOE_DATA_DIR``, else the user cache).
        out: output directory for ``results.json``, ``report.md`` and the figure
            (``None``: nothing written).
        config: a config file whose ``[models.NAME]`` tables replace the committed ones
            (e.g. the output of ``mmoe tune``); models it lacks keep the committed settings.
        seed: first run seed.
        threads: intra-op threads per run (1 is fastest here).
        epochs: override every model's epochs (quick checks only).
        nrows: read only the first ``nrows`` rows of each file (quick checks only).
        progress: show a progress bar over runs (default: when stderr is a terminal).
        jobs: (model, run) jobs trained at once, each in its own worker process with
            ``threads`` threads (``None``: ``min(2, CPU cores)``). Results do not depend on it:
            every run is seeded by its own seed alone. Under ``torchrun`` (``WORLD_SIZE`` > 1)
            the ranks train each run together, data-parallel, one run after another (jobs
            1); rank 0 alone logs and writes.
        log: called with one line per finished model.

    Returns:
        :class:`CensusResult` with the results dict and the written files.

    Example:
        >>> res = run_census(1, models=["mmoe"], runs=1, data_dir=census_dir, nrows=2000,
        ...                  epochs=1, jobs=1, out="census_g1")
        >>> res.results["summary"][0]["model"], sorted(p.name for p in res.files.values())
        ('mmoe', ['main_auc.png', 'report.md', 'results.json'])
    """
    _checks.one_of(group, (1, 2), "census group")
    _checks.positive_int(runs, "runs")
    if epochs is not None:
        _checks.positive_int(epochs, "epochs")
    names = resolve_models(models)
    jobs = default_jobs() if jobs is None else _checks.positive_int(jobs, "jobs")
    world, main_rank = env_world(), env_rank() == 0
    if world > 1:  # torchrun: every run is data-parallel over the ranks (Trainer does DDP)
        jobs = 1
        if not main_rank:
            progress, log, out = False, None, None
    start = time.perf_counter()
    specs = read_config(default_config_path(group), group)
    if config is not None:
        specs = {**specs, **read_config(config, group)}
    missing = [n for n in names if n not in specs]
    _checks.check(not missing, f"no configuration for model(s) {', '.join(missing)} in "
                  f"{default_config_path(group)}; pass --config FILE (see `mmoe tune`)")
    specs = {n: specs[n] for n in names}
    if epochs is not None:
        specs = {n: replace(s, train=TrainConfig.from_dict({**s.train.to_dict(),
                                                            "epochs": epochs}))
                 for n, s in specs.items()}
    tables = prepare(group, data_dir, nrows=nrows)
    task_names = [t.name for t in tables.tasks]
    seeds = [seed + r for r in range(runs)]
    show = progress if progress is not None else None
    per_model: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    work = [(name, s) for name in names for s in seeds]

    def finished(name: str) -> None:
        if log is not None:
            row = summarize(name, per_model[name], task_names)
            log(f"{name}: {task_names[0]} AUC mean {row['main_auc_mean']:.4f} "
                f"(best-by-valid {row['main_auc_best']:.4f}), {row['seconds']:.0f}s")

    with progress_bar(len(work), f"census group {group}", "run", show) as bar:
        if jobs == 1:
            for name, s in work:
                bar.set_postfix_str(name)
                per_model[name].append(train_one(tables, specs[name], s, threads))
                bar.update()
                if len(per_model[name]) == runs:
                    finished(name)
        else:
            done: dict[tuple[str, int], dict[str, Any]] = {}
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init,
                                     initargs=(tables, threads)) as pool:
                futures = {pool.submit(_worker_run, specs[name], s): (name, s)
                           for name, s in work}
                for fut in as_completed(futures):
                    name, s = futures[fut]
                    done[name, s] = fut.result()
                    bar.set_postfix_str(name)
                    bar.update()
                    if sum(1 for (n, _) in done if n == name) == runs:
                        per_model[name] = [done[name, x] for x in seeds]
                        finished(name)
    summary = [summarize(n, per_model[n], task_names) for n in names]
    wall = time.perf_counter() - start
    corr = label_correlation(tables.data)
    results = {
        "experiment": "census", "group": group, "tasks": task_names,
        "summary": summary,
        "paper": {"table": f"Table {group}", "rows": PAPER[group],
                  "label_correlation": {1: 0.1768, 2: 0.2373}[group],
                  "runs": 400},
        "reference_mmoe_mean": REFERENCE_MMOE[group],
        "targets": targets(group, summary),
        "runs": {n: per_model[n] for n in names},
        "config": {n: specs[n].to_dict() for n in names},
        "config_files": [str(default_config_path(group))] + ([str(config)] if config else []),
        "seeds": seeds, "threads": threads, "jobs": jobs, "world_size": world,
        "epochs_override": epochs,
        "label_correlation": corr,
        "data": {"dir": str(data_dir) if data_dir else None, "nrows": nrows,
                 "rows": {"train": len(tables.train), "valid": len(tables.valid),
                          "test": len(tables.test)},
                 "split_seed": tables.data.seed,
                 "inputs": {"numeric": list(tables.data.numeric),
                            "categorical": list(tables.data.categorical)}},
        "version": __version__, "git_commit": git_commit(),
        "torch": torch.__version__, "python": platform.python_version(),
        "timings": {"data_seconds": tables.seconds,
                    "model_seconds": {r["model"]: r["seconds"] for r in summary},
                    "total_seconds": wall, "jobs": jobs},
    }
    result = CensusResult(results)
    if out is not None:
        result.files = write_outputs(results, out)
    return result
