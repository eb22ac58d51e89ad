"""Inspect a trained model's gates: which experts each task uses, as a table and a heatmap.

``mmoe inspect MODEL_DIR --data FILE --out DIR`` writes into DIR:

- ``gates.png``: heatmap, tasks x experts, mean gate weight;
- ``gates.csv`` / ``gates.md``: the same numbers plus each gate's entropy;
- ``experts.csv``: per-expert utilisation (mean over the tasks' gates that can see it);
- ``gate_health.json``: the numbers and the warnings (polarised gates, dead experts).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from . import _checks
from .data.table import TensorTable
from .gate_health import gate_health


def gate_report(model: nn.Module, table: TensorTable) -> pd.DataFrame:
    """Mean gate weight per task (rows) and expert (columns), plus each gate's entropy.

    Experts a gate cannot see (CGC/PLE) are NaN. Columns ``entropy`` (nats) and
    ``normalised_entropy`` (entropy / log of the visible experts: 1 = uniform) follow the
    experts.

    Args:
        model: a MultiTaskModel with gates.
        table: the rows to average over (labels not needed).

    Returns:
        DataFrame indexed by task (``all tasks`` for OMoE's single gate).

    Example:
        >>> gate_report(model, valid_table).round(2)  # doctest: +SKIP
                 e0    e1    e2  entropy  normalised_entropy
        income  0.61  0.30  0.09     0.87                0.79
    """
    health = gate_health(model, table)
    _checks.check(health is not None,
                  f"model '{model.config.name}' has no gates to inspect; gated models are "
                  "omoe, mmoe, cgc, ple, feature_mmoe and mixed_mmoe")
    frame = pd.DataFrame.from_dict(health["utilisation"], orient="index")
    frame["entropy"] = pd.Series(health["entropy"])
    frame["normalised_entropy"] = pd.Series(health["normalised_entropy"])
    frame.index.name = "task"
    frame.attrs["warnings"] = health["warnings"]
    return frame


def expert_utilisation(report: pd.DataFrame) -> pd.Series:
    """Per-expert utilisation: its mean gate weight averaged over the gates that see it."""
    experts = report.drop(columns=["entropy", "normalised_entropy"])
    return experts.mean(axis=0, skipna=True).rename("utilisation")


def plot_gate_heatmap(report: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Heatmap PNG of ``report``'s tasks x experts mean gate weights (annotated cells)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = report.drop(columns=["entropy", "normalised_entropy"])
    rows, cols = values.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * cols, 1.2 + 0.5 * rows))
    image = ax.imshow(values.to_numpy(dtype=float), cmap="viridis", vmin=0.0,
                      vmax=max(float(values.max().max()), 1e-9), aspect="auto")
    ax.set_xticks(range(cols), [str(c) for c in values.columns], rotation=45, ha="right")
    ax.set_yticks(range(rows), [str(r) for r in values.index])
    for i in range(rows):
        for j in range(cols):
            v = values.iat[i, j]
            if not math.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_xlabel("expert")
    ax.set_ylabel("task gate")
    ax.set_title("mean gate weight")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_gate_report(report: pd.DataFrame, out: str | os.PathLike) -> dict[str, Path]:
    """Write ``gates.png``, ``gates.csv``, ``gates.md``, ``experts.csv`` and
    ``gate_health.json`` into ``out`` (created if missing); returns the paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"heatmap": plot_gate_heatmap(report, out / "gates.png"),
             "table": out / "gates.csv", "markdown": out / "gates.md",
             "experts": out / "experts.csv", "json": out / "gate_health.json"}
    report.to_csv(paths["table"], float_format="%.6f")
    paths["markdown"].write_text(_markdown(report))
    expert_utilisation(report).to_csv(paths["experts"], index_label="expert",
                                      float_format="%.6f")
    data: dict[str, Any] = {
        "utilisation": {t: {e: float(v) for e, v in row.items() if not math.isnan(v)}
                        for t, row in report.drop(columns=["entropy", "normalised_entropy"])
                        .iterrows()},
        "entropy": report["entropy"].to_dict(),
        "normalised_entropy": report["normalised_entropy"].to_dict(),
        "warnings": list(report.attrs.get("warnings", [])),
    }
    paths["json"].write_text(json.dumps(data, indent=2) + "\n")
    return paths


def _markdown(report: pd.DataFrame) -> str:
    cols = [str(c) for c in report.columns]
    lines = ["| task | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for task, row in report.iterrows():
        cells = ["–" if math.isnan(v) else f"{v:.3f}" for v in row.to_numpy(dtype=float)]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    warnings = report.attrs.get("warnings", [])
    lines += ["", "Warnings:" if warnings else "No polarised gates or dead experts."]
    lines += [f"- {w}" for w in warnings]
    return "\n".join(lines) + "\n"


def inspect_model_dir(model_dir: str | os.PathLike, data: str | os.PathLike,
                      out: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Gate report of a model directory on a data file (CSV / CSV.gz / Parquet; labels are
    not needed), written into ``out``.

    Example:
        >>> report, paths = inspect_model_dir("runs/m1", "v.csv", "gates")  # doctest: +SKIP
    """
    from .data.readers import read_table
    from .train.model_dir import load_model_dir

    md = load_model_dir(model_dir)
    frame = read_table(data, categorical=md.encoder.categorical or ())
    report = gate_report(md.model, md.encoder.transform(frame, labels=False))
    return report, write_gate_report(report, out)
