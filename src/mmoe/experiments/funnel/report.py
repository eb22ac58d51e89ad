"""The funnel experiment's report: each model's test metrics (mean ± std over seeds) beside
the oracle, the claims of the ESMM and AITM papers checked with paired differences (same
seeds) and 95% t-intervals, and a figure of every model's AUC gap to the oracle."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats

from ..._fileio import AtomicFile

OUTPUTS = {"click": "click (all rows)",
           "purchase": "purchase given click (clicked rows)",
           "click_and_purchase": "click and purchase (all rows)",
           "cvr_entire_space": "CVR on every impression (vs true q)"}
#: (claim, source, model A, model B, output): A's AUC above B's
CLAIMS = [
    ("ESMM's CVR ranks every impression better than a CVR model trained on clicked rows",
     "ESMM, Ma et al. 2018, Table 2 (CVR AUC)", "esmm", "single_task", "cvr_entire_space"),
    ("the same over MMoE experts", "ESMM's head over any bottom", "esmm_mmoe", "mmoe",
     "cvr_entire_space"),
    ("ESMM's pCTCVR ranks better than the product of a click and a clicked-rows CVR model",
     "ESMM, Table 2 (CTCVR AUC)", "esmm", "single_task", "click_and_purchase"),
    ("AITM's conversion (click and purchase) AUC is above ESMM's",
     "AITM, Xi et al. 2021, Table 3", "aitm", "esmm", "click_and_purchase"),
    ("MMoE's purchase-given-click AUC is above Shared-Bottom's", "MMoE, Ma et al. 2018",
     "mmoe", "shared_bottom", "purchase"),
]


def _values(results: dict, model: str, output: str, metric: str = "auc") -> np.ndarray:
    return np.array([r["test"][output].get(metric, math.nan) for r in results["runs"]
                     if r["model"] == model])


def paired(results: dict, a: str, b: str, output: str) -> dict | None:
    """Paired AUC difference a - b over the seeds both ran: mean, std, 95% t-interval."""
    seeds = {r["seed"] for r in results["runs"] if r["model"] == a} & \
        {r["seed"] for r in results["runs"] if r["model"] == b}
    if not seeds:
        return None
    auc = {(r["model"], r["seed"]): r["test"][output]["auc"] for r in results["runs"]}
    d = np.array([auc[(a, s)] - auc[(b, s)] for s in sorted(seeds)])
    half = (stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
            if len(d) > 1 else math.inf)
    return {"n": len(d), "mean": float(d.mean()), "low": float(d.mean() - half),
            "high": float(d.mean() + half), "wins": int((d > 0).sum())}


def _table(results: dict) -> list[str]:
    models = list(dict.fromkeys(r["model"] for r in results["runs"]))
    lines = []
    for output, title in OUTPUTS.items():
        metrics = ["auc", "calibration"] if output == "cvr_entire_space" else \
            ["auc", "gauc", "calibration"]
        lines += [f"### {title}", "",
                  "| model | " + " | ".join(metrics) + " | AUC gap to oracle |",
                  "|---|" + "---:|" * (len(metrics) + 1)]
        oracle = results["oracle"][output]
        lines.append("| oracle (true probabilities) | " + " | ".join(
            f"{oracle[m]:.4f}" for m in metrics) + " | 0 |")
        for model in models:
            cells = []
            for m in metrics:
                v = _values(results, model, output, m)
                cells.append(f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0:.4f}")
            gap = _values(results, model, output).mean() - oracle["auc"]
            lines.append(f"| {model} | " + " | ".join(cells) + f" | {gap:+.4f} |")
        lines.append("")
    return lines


def claims(results: dict) -> list[dict]:
    """Each claim with its paired difference; ``holds`` when the 95% interval lies above 0,
    ``contradicted`` when it lies below, else undecided."""
    out = []
    for text, source, a, b, output in CLAIMS:
        diff = paired(results, a, b, output)
        if diff is None:
            continue
        verdict = ("holds" if diff["low"] > 0 else "contradicted" if diff["high"] < 0
                   else "undecided")
        out.append({"claim": text, "source": source, "a": a, "b": b, "output": output,
                    **diff, "verdict": verdict})
    return out


def figure(results: dict, path: Path) -> None:
    """Bars: each model's mean AUC gap to the oracle per output, std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in results["runs"]))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        gaps = [_values(results, model, o) - results["oracle"][o]["auc"] for o in OUTPUTS]
        ax.bar(np.arange(len(OUTPUTS)) + i * width, [g.mean() for g in gaps], width,
               yerr=[g.std(ddof=1) if len(g) > 1 else 0 for g in gaps], label=model)
    ax.set_xticks(np.arange(len(OUTPUTS)) + 0.4 - width / 2)
    ax.set_xticklabels([t.split(" (")[0] for t in OUTPUTS.values()])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("test AUC - oracle AUC")
    ax.set_title("Funnel models against the true probabilities (mean ± std over seeds)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    with AtomicFile(path) as f:
        fig.savefig(f.handle, format="png", dpi=110)
    plt.close(fig)


def write_report(results: dict, out: Path) -> None:
    """``report.md`` and ``funnel.png`` in ``out``."""
    cfg = results["config"]
    figure(results, out / "funnel.png")
    lines = ["# Funnel models on the generated impression log", "",
             f"{cfg['train_rows']:,} training and {cfg['test_rows']:,} test impressions "
             f"({cfg['world']['users']:,} users, {cfg['world']['items']:,} items unless --data "
             f"was given), {cfg['runs']} seeds per model from {cfg['world']['seed']}, "
             f"{cfg['epochs']} epochs "
             "(best validation click AUC kept), batch "
             f"{cfg['batch_size']}, Adam lr {cfg['lr']}. Tasks: {', '.join(cfg['tasks'])}. "
             "Plain models learn purchase on clicked rows only; esmm, esmm_mmoe and aitm on "
             "every impression. Regenerate: `mmoe reproduce funnel --out DIR`.", "",
             "![AUC gap to the oracle](funnel.png)", "", *_table(results),
             "## Claims", "",
             "Paired over seeds (same seed, same data order): mean AUC difference A - B, its "
             "95% t-interval and the seeds where A won. A claim holds when the interval "
             "lies above 0.", "",
             "| claim | source | A - B | mean | 95% interval | A won | verdict |",
             "|---|---|---|---:|---|---:|---|"]
    for c in claims(results):
        lines.append(f"| {c['claim']} | {c['source']} | {c['a']} - {c['b']} ({c['output']}) "
                     f"| {c['mean']:+.4f} | [{c['low']:+.4f}, {c['high']:+.4f}] | "
                     f"{c['wins']}/{c['n']} | {c['verdict']} |")
    with AtomicFile(out / "report.md", binary=False) as f:
        f.handle.write("\n".join(lines) + "\n")
