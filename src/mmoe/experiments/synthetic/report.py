"""The study's report: the paper's Figs. 2, 4 and 5 and ``report.md``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ..._fileio import write_figure
from .claims import STUCK_FACTOR, intervals_text, settled, verdict
from .config import PAPER_FIG4

#: how the defaults were chosen: investigations and their measurements, quoted in the report
NOTES = Path(__file__).with_name("notes.md")

NAMES = {"shared_bottom": "Shared-Bottom", "omoe": "OMoE", "mmoe": "MMoE", "cgc": "CGC",
         "ple": "PLE"}
COLORS = {"shared_bottom": "tab:blue", "omoe": "tab:orange", "mmoe": "tab:green",
          "cgc": "tab:red", "ple": "tab:purple"}


def write_figures(results: dict[str, Any], out: Path) -> dict[str, str]:
    """Fig. 2 (label correlation), Fig. 4 (loss curves), Fig. 5 (final-loss histograms),
    written into ``out``; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {"label_correlation": "fig2_label_correlation.png",
             "loss_curves": "fig4_loss_curves.png", "final_loss_hist": "fig5_final_loss_hist.png"}
    cfg = results["config"]
    models, corrs = cfg["models"], cfg["correlations"]

    s = results["label_correlation"]
    mean, std = torch.tensor(s["mean"]), torch.tensor(s["std"])
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(s["cosine"], mean, color="k", label="measured mean")
    ax.fill_between(s["cosine"], mean - 2 * std, mean + 2 * std, color="k", alpha=0.15,
                    label="± 2 std")
    ax.plot([0.5, 0.8, 0.9, 0.95], [0.075, 0.195, 0.305, 0.445], "rx", label="paper (≈)")
    ax.set_xlabel("cosine similarity p of w1, w2")
    ax.set_ylabel("Pearson correlation of y1, y2")
    ax.set_title(f"Label correlation ({cfg['fig2_trials']} trials × {cfg['fig2_n']} points)")
    ax.legend()
    fig.tight_layout()
    write_figure(fig, out / files["label_correlation"])

    steps = results["curves"]["steps"]
    fig, axes = plt.subplots(1, len(corrs), figsize=(4 * len(corrs), 3.6), squeeze=False,
                             sharey=True)
    for j, p in enumerate(corrs):
        ax = axes[0, j]
        for row in results["curves"]["rows"]:
            if row["correlation"] == p:
                ax.plot(steps, row["mean"], color=COLORS[row["model"]], label=NAMES[row["model"]])
        ax.set_yscale("log")
        ax.set_title(f"correlation {p}")
        ax.set_xlabel("step")
    axes[0, 0].set_ylabel("mean test MSE (task mean)")
    axes[0, 0].legend()
    fig.tight_layout()
    write_figure(fig, out / files["loss_curves"])

    losses = torch.tensor([r["final_loss"] for r in results["runs"]], dtype=torch.float64)
    lo, hi = float(losses.min()), float(losses.max())
    hi = hi if hi > lo else lo * 1.01 + 1e-9
    log_bins = lo > 0  # stuck runs sit an order of magnitude above the mode: log-spaced bins
    bins = (torch.logspace(math.log10(lo), math.log10(hi), 31) if log_bins
            else torch.linspace(lo, hi, 31)).tolist()
    fig, axes = plt.subplots(len(models), len(corrs), figsize=(3.2 * len(corrs),
                             2.4 * len(models)), squeeze=False, sharex=True)
    for i, m in enumerate(models):
        for j, p in enumerate(corrs):
            v = [r["final_loss"] for r in results["runs"]
                 if r["model"] == m and r["correlation"] == p]
            ax = axes[i, j]
            ax.hist(v, bins=bins, color=COLORS[m])
            if log_bins:
                ax.set_xscale("log")
            ax.set_title(f"{NAMES[m]}, p = {p}", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("final test MSE (log scale)" if log_bins else "final test MSE")
    fig.tight_layout()
    write_figure(fig, out / files["final_loss_hist"])
    return files


def render_report(results: dict[str, Any]) -> str:
    """The Markdown report: settings and sources, tables, figures, the claims."""
    cfg = results["config"]
    sp = results["speed"]
    lines = [
        "# Synthetic task-relatedness study (Ma et al. 2018, §5)", "",
        f"mmoe {results['version']}, commit {results['git_commit'] or 'unknown'}, "
        f"torch {results['environment']['torch']}, {results['environment']['threads']} "
        "thread(s).", "",
        "## Settings", "",
        f"- data (paper §3.2): d = {cfg['d']} (paper §5), c = {cfg['c']} (PLE paper: 1), "
        f"m = {cfg['m']} (PLE paper: 10), α_i ~ N(0, {cfg.get('alpha_std', 1.0):g}²), "
        f"β_i ~ N(0, 1) (PLE paper: N(0, 1) both), noise σ = {cfg['sigma']} "
        "(the paper's N(0, 0.01) read as a variance); per run "
        f"{cfg['n_train']} training, {cfg['n_val']} validation and {cfg['n_test']} test rows "
        "(sizes not reported by the paper).",
        "- models (paper §5): OMoE and MMoE with 8 experts of one ReLU layer of 16 units, "
        "Shared-Bottom with one shared layer of 113 units; towers of 8 units; loss: MSE summed "
        "over the two tasks; Adam.",
        f"- {cfg['runs']} runs per (model, correlation) (paper: 200), each with its own data "
        "and initialisation, "
        + (f"paired across correlations and models (run r: seed {cfg['seed']} + r at every "
           "correlation, so run r's u1, u2, α, β, x, ε and initialisation are the same at "
           "every p and only p differs, as in the paper's Fig. 2; the three models share it "
           "too), " if cfg.get("paired", False) else
           f"independent across correlations (run r at the i-th correlation: seed "
           f"{cfg['seed']} + 10000·i + r), shared by the three models, ")
        + f"{cfg['steps']} steps of batch {cfg['batch_size']} (paper: ~10M steps; batch not "
        "reported), "
        + ("a constant learning rate." if cfg.get("lr_schedule", "constant") == "constant" else
           f"the learning rate warmed up linearly over the first {cfg['warmup']:.0%} of the "
           "steps, then decayed to zero along a cosine."),
        f"- learning rate chosen per model from {list(cfg['lr_grid'])} (paper's grid) on the "
        f"MEDIAN validation loss of {cfg['lr_runs']} pilot seed(s) at each correlation (their "
        "own seeds, never a main run's; the median so that one stuck pilot cannot decide): "
        f"{', '.join(f'{NAMES[m]} {v:g}' for m, v in results['chosen_lr'].items())}.",
        "- final loss: test MSE averaged over the two tasks, at the end of training.",
        f"- wall time {sp['wall_seconds']:.0f} s; runs × steps per second: "
        + ", ".join(f"{NAMES[m]} {v:.0f}" for m, v in sp["run_steps_per_second"].items())
        + " (all runs of a model trained as one batched computation).", "",
        "## Final loss (test MSE, mean over tasks)", "",
        "| model | correlation | mean | std | median | min | max | stuck runs | mean without "
        "stuck | runs | paper Fig. 4 (≈) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["summary"]:
        paper = PAPER_FIG4.get(r["correlation"], {}).get(r["model"])
        lines.append(f"| {NAMES[r['model']]} | {r['correlation']} | {r['final_loss_mean']:.4f} "
                     f"| {r['final_loss_std']:.4f} | {r['final_loss_median']:.4f} "
                     f"| {r['final_loss_min']:.4f} | {r.get('final_loss_max', math.nan):.4f} "
                     f"| {r.get('stuck_runs', '')} "
                     f"| {r.get('final_loss_mean_unstuck', math.nan):.4f} | {r['runs']} "
                     f"| {'' if paper is None else f'{paper:.3f}'} |")
    lines += ["", f"Stuck: final loss above {STUCK_FACTOR:g}x the median of all runs at that "
              "correlation (thresholds " + ", ".join(
                  f"p={r['correlation']}: {r['stuck_threshold']:.3f}"
                  for r in results["summary"] if r["model"] == results["summary"][0]["model"])
              + "). The required claims are on the means, which include the stuck runs."]
    lines += ["", "The paper's values are its end-of-training losses after ~10M steps, read off "
              "its Fig. 4 by eye (±0.01); absolute values depend on the unreported c, m, α, β, "
              "data sizes and loss definition, so compare the orderings, not the numbers.", "",
              "## Claims", "",
              "Each required claim with the bootstrap 95% confidence interval of every "
              "difference it rests on (seeds resampled, 2,000 draws; positive = the claimed "
              "direction). *Settled* when every interval excludes 0: the verdict would not "
              "change with other seeds; *open* otherwise.", "",
              "| claim | holds | measured | 95% CI of the differences | settled |",
              "|---|---|---|---|---|"]
    for c in results["claims"]:
        done = {None: "", True: "yes", False: "open"}[settled(c)]
        lines.append(f"| {c['claim']} | {verdict(c)} | {c['evidence']} | {intervals_text(c)} | "
                     f"{done} |")
    if results["lr_selection"]:
        lines += ["", "## Learning-rate selection (validation loss of the pilot runs)", "",
                  "| model | lr | median val loss (chooses) | mean val loss | by correlation |",
                  "|---|---|---|---|---|"]
        for r in results["lr_selection"]:
            by = ", ".join(f"{p}: {v:.4f}" for p, v in r["val_loss_by_correlation"].items())
            chosen = " (chosen)" if results["chosen_lr"].get(r["model"]) == r["lr"] else ""
            lines.append(f"| {NAMES[r['model']]} | {r['lr']:g}{chosen} "
                         f"| {r.get('val_loss_median', math.nan):.4f} "
                         f"| {r['val_loss_mean']:.4f} | {by} |")
    s = results["label_correlation"]
    at = {round(p, 4): (m, sd) for p, m, sd in zip(s["cosine"], s["mean"], s["std"], strict=True)}
    lines += ["", "## Label correlation vs cosine (paper Fig. 2)", "",
              "| cosine p | measured mean ± 2 std | paper (≈) |", "|---|---|---|"]
    for p, paper in ((0.5, 0.075), (0.8, 0.195), (0.9, 0.305), (0.95, 0.445), (1.0, None)):
        if p in at:
            m, sd = at[p]
            lines.append(f"| {p} | {m:.3f} ± {2 * sd:.3f} | {'' if paper is None else paper} |")
    lines += ["", "## Figures", "",
              f"![label correlation]({results['figures']['label_correlation']})", "",
              f"![loss curves]({results['figures']['loss_curves']})", "",
              f"![final-loss histograms]({results['figures']['final_loss_hist']})", ""]
    lines += ["## How the defaults were chosen", "", NOTES.read_text().strip(), ""]
    return "\n".join(lines)
