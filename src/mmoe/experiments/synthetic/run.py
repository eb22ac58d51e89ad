"""The synthetic task-relatedness study (Ma et al. 2018, §5), run end to end.

Shared-Bottom, OMoE and MMoE are trained on the §3.2 synthetic data at several task
correlations p, R independent runs each (fresh data and initialisation per run). All runs of
one model (every correlation x every run) are trained as one batched computation
(:mod:`mmoe.experiments.multirun`). The learning rate is chosen from a grid (the paper's
{1e-4, 1e-3, 1e-2}) on the median validation loss of separate pilot runs (their own seeds),
never on test data. The reported final loss is the held-out test MSE averaged over the two
tasks.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..._fileio import write_json, write_text
from ..._version import __version__, git_commit
from ...data.datasets.synthetic import generate, label_correlation_study
from ..multirun import train_runs
from .claims import check_claims, summarise
from .config import PAPER_FIG4, SyntheticConfig, build_synthetic_model
from .report import render_report, write_figures


def _chunks(members: list[tuple[float, int]], size: int) -> Iterator[list[tuple[float, int]]]:
    for s in range(0, len(members), size):
        yield members[s:s + size]


def _pilot(config: SyntheticConfig, progress: Callable[[int], None] | None
           ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Choose each model's lr on the MEDIAN validation loss of its pilot runs (over all p).

    The median, not the mean: a pilot run that gets stuck (a dead tower, loss ~1 against
    ~0.03) would otherwise decide the choice on its own; with 3 correlations x 1 pilot run
    one stuck pilot cannot move the median of 3. All (lr, correlation, pilot run)
    combinations of a model train as one batched computation (one learning rate per run);
    pilot runs see the same data at every lr.
    """
    if len(config.lr_grid) == 1:
        return {m: config.lr_grid[0] for m in config.models}, []
    members = [(lr, p, config.pilot_seed(ci, j)) for lr in config.lr_grid
               for ci, p in enumerate(config.correlations) for j in range(config.lr_runs)]
    val: dict[str, list[torch.Tensor]] = {m: [] for m in config.models}
    for part in _chunks(members, config.chunk):
        seeds = [s for _, _, s in part]
        _, data = generate([p for _, p, _ in part], seeds,
                           {"train": config.n_train, "val": config.n_val}, config.spec)
        for model in config.models:
            res = train_runs(partial(build_synthetic_model, model, config.d), seeds,
                             data["train"], {}, final_sets={"val": data["val"]},
                             steps=config.steps, batch_size=config.batch_size,
                             lr=[lr for lr, _, _ in part], progress=progress,
                             lr_schedule=config.lr_schedule, warmup=config.warmup)
            val[model].append(res.losses["val"])
    rows, chosen = [], {}
    lrs = torch.tensor([lr for lr, _, _ in members], dtype=torch.float64)
    corr = torch.tensor([p for _, p, _ in members], dtype=torch.float64)
    for model in config.models:
        v_all = torch.cat(val[model]).double()  # (len(members),)
        best = None
        for lr in config.lr_grid:
            v = v_all[lrs == lr]
            finite = bool(torch.isfinite(v).all())
            mean = float(v.mean()) if finite else math.inf
            median = float(v.median()) if finite else math.inf
            rows.append({"model": model, "lr": lr, "val_loss_mean": mean,
                         "val_loss_median": median,
                         "val_loss_by_correlation": {
                             str(p): float(v_all[(lrs == lr) & (corr == p)].mean())
                             for p in config.correlations}})
            if best is None or median < best[0]:
                best = (median, lr)
        chosen[model] = best[1]
    return chosen, rows


def run_synthetic(config: SyntheticConfig, out: str | Path,
                  progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run the synthetic study and write ``results.json``, the figures and ``report.md``.

    Args:
        config: the settings.
        out: output directory (created).
        progress: called with the number of batched steps just done (see
            :func:`planned_steps` for the total).

    Returns:
        The results (the content of ``results.json``).

    Example:
        >>> cfg = SyntheticConfig(runs=2, steps=5, lr_grid=(1e-3,), n_train=256, n_val=64,
        ...                       n_test=64, eval_every=5, fig2_trials=2, fig2_n=100)
        >>> res = run_synthetic(cfg, tmp_path)
        >>> len(res["runs"]), sorted(p.name for p in tmp_path.iterdir())[-2:]
        (18, ['report.md', 'results.json'])
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        start = time.perf_counter()
        fig2 = label_correlation_study([i / 20 for i in range(21)], config.spec,
                                       n=config.fig2_n, trials=config.fig2_trials,
                                       seed=config.seed)
        lrs, pilot_rows = _pilot(config, progress)
        members = [(p, config.main_seed(ci, r)) for ci, p in enumerate(config.correlations)
                   for r in range(config.runs)]
        runs: list[dict[str, Any]] = []
        curves: dict[str, dict[float, list[torch.Tensor]]] = {m: {} for m in config.models}
        speed: dict[str, list[float]] = {m: [] for m in config.models}
        curve_steps: list[int] = []
        for part in _chunks(members, config.chunk):
            corr = [p for p, _ in part]
            seeds = [s for _, s in part]
            _, data = generate(corr, seeds, {"train": config.n_train, "val": config.n_val,
                                             "test": config.n_test}, config.spec)
            for model in config.models:
                res = train_runs(partial(build_synthetic_model, model, config.d), seeds,
                                 data["train"], {"test": data["test"]},
                                 final_sets={"val": data["val"]}, steps=config.steps,
                                 batch_size=config.batch_size, lr=lrs[model],
                                 eval_every=config.eval_every, progress=progress,
                                 lr_schedule=config.lr_schedule, warmup=config.warmup)
                speed[model].append(res.run_steps_per_second)
                curve_steps = res.curve_steps
                for i, (p, s) in enumerate(part):
                    runs.append({"model": model, "correlation": p, "seed": s,
                                 "lr": lrs[model], "final_loss": float(res.losses["test"][i]),
                                 "val_loss": float(res.losses["val"][i])})
                    curves[model].setdefault(p, []).append(res.curves["test"][i])
        wall = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous_threads)

    summary = summarise(runs, config)
    curve_rows = []
    for model in config.models:
        for p in config.correlations:
            c = torch.stack(curves[model][p])  # (R, K)
            curve_rows.append({"model": model, "correlation": p,
                               "mean": c.mean(0).tolist(),
                               "std": (c.std(0) if c.shape[0] > 1 else c[0] * 0).tolist()})
    results: dict[str, Any] = {
        "experiment": "synthetic",
        "config": asdict(config),
        "seeds": {"main": {str(p): [config.main_seed(ci, r) for r in range(config.runs)]
                           for ci, p in enumerate(config.correlations)},
                  "pilot": {str(p): [config.pilot_seed(ci, j)
                                     for j in range(config.lr_runs)]
                            for ci, p in enumerate(config.correlations)}
                  if len(config.lr_grid) > 1 else {}},
        "version": __version__,
        "git_commit": git_commit(),
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "threads": config.threads or previous_threads},
        "chosen_lr": lrs,
        "lr_selection": pilot_rows,
        "summary": summary,
        "claims": check_claims(summary, runs),
        "paper_fig4": [{"model": m, "correlation": p, "final_loss": v}
                       for p, row in PAPER_FIG4.items() for m, v in row.items()],
        "speed": {"wall_seconds": wall,
                  "run_steps_per_second": {m: sum(v) / len(v) for m, v in speed.items()}},
        "curves": {"steps": curve_steps, "split": "test", "rows": curve_rows},
        "label_correlation": fig2,
        "runs": runs,
    }
    figures = write_figures(results, out)
    results["figures"] = figures
    write_json(out / "results.json", results, indent=1)
    write_text(out / "report.md", render_report(results))
    return results
