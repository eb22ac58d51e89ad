"""Inspect a trained model's gates: which experts each task uses, as a table and a heatmap.

``mmoe inspect MODEL_DIR --data FILE --out DIR`` writes into DIR:

- ``gates.png``: heatmap, tasks x experts, mean gate weight;
- ``gates.csv`` / ``gates.md``: the same numbers plus each gate's entropy;
- ``experts.csv``: per-expert utilisation (mean over the tasks' gates that can see it);
- ``gate_health.json``: the numbers and the warnings (polarised gates, dead experts).

DIR is written as one directory transaction (:func:`mmoe._fileio.atomic_dir`): the five files
appear together or not at all. DIR may be new, empty, or an earlier gate report (replaced
whole); a directory holding anything else is refused, never replaced.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from .. import _checks
from .._fileio import atomic_dir, write_json, write_text
from ..data.readers import read_table
from ..data.table import TensorTable
from ..diagnostics import gate_heatmap, utilisation_frame
from ..models import MultiTaskModel
from ..train.evaluation import gate_health_of
from ..train.model_dir import load_model_dir, own_files
from .tables import in_file


def gate_report(model: MultiTaskModel, table: TensorTable) -> pd.DataFrame:
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
        >>> import torch
        >>> from mmoe import TaskSpec, build_model
        >>> model = build_model("mmoe", 3, [TaskSpec("y"), TaskSpec("z")], num_experts=2)
        >>> report = gate_report(model, TensorTable.from_arrays(torch.randn(20, 3)))
        >>> report.index.tolist(), report.columns.tolist()
        (['y', 'z'], ['e0', 'e1', 'entropy', 'normalised_entropy'])
    """
    health = gate_health_of(model, table)
    _checks.check(health is not None,
                  f"model '{model.config.name}' has no gates to inspect; gated models are "
                  "omoe, mmoe, cgc, ple, feature_mmoe and mixed_mmoe")
    frame = utilisation_frame(health)
    frame["entropy"] = pd.Series(health["entropy"])
    frame["normalised_entropy"] = pd.Series(health["normalised_entropy"])
    frame.index.name = "task"
    frame.attrs["warnings"] = health["warnings"]
    return frame


def expert_utilisation(report: pd.DataFrame) -> pd.Series:
    """Per-expert utilisation: its mean gate weight averaged over the gates that see it."""
    experts = report.drop(columns=["entropy", "normalised_entropy"])
    return experts.mean(axis=0, skipna=True).rename("utilisation")


#: the files of a gate report, by role
REPORT_FILES = {"heatmap": "gates.png", "table": "gates.csv", "markdown": "gates.md",
                "experts": "experts.csv", "json": "gate_health.json"}


def check_report_dir(out: str | os.PathLike) -> Path:
    """Fail unless ``out`` can take a gate report: a new path, an empty directory, or an
    earlier gate report (only its files), which is replaced whole.

    Args:
        out: the report directory.

    Returns:
        ``out`` as a Path.

    Example:
        >>> check_report_dir("gates").name
        'gates'
    """
    out = Path(out)
    if out.is_dir():
        for entry in sorted(out.iterdir()):
            _checks.check(entry.name in REPORT_FILES.values() and entry.is_file(),
                          f"--out '{out}' holds '{entry.name}', which mmoe inspect did not "
                          "write; the report replaces its directory whole: give a new or "
                          "empty directory")
    else:
        _checks.check(not os.path.lexists(out), f"--out '{out}' exists and is not a "
                      "directory; give a new or empty directory")
    return out


def write_gate_report(report: pd.DataFrame, out: str | os.PathLike) -> dict[str, Path]:
    """Write ``gates.png``, ``gates.csv``, ``gates.md``, ``experts.csv`` and
    ``gate_health.json`` as the directory ``out``, all at once (see :func:`check_report_dir`).

    Args:
        report: from :func:`gate_report`.
        out: the report directory.

    Returns:
        The five paths by role: heatmap, table, markdown, experts, json.

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> model = build_model("omoe", 3, [TaskSpec("y")], num_experts=2)
        >>> report = gate_report(model, TensorTable.from_arrays(torch.randn(8, 3)))
        >>> sorted(p.name for p in write_gate_report(report, "gates").values())[:2]
        ['experts.csv', 'gate_health.json']
    """
    out = check_report_dir(out)
    with atomic_dir(out, replace=check_report_dir) as stage:
        _write_report_files(report, stage)
    return {role: out / name for role, name in REPORT_FILES.items()}


def _write_report_files(report: pd.DataFrame, stage: Path) -> None:
    """The five files of the report, into ``stage``."""
    paths = {role: stage / name for role, name in REPORT_FILES.items()}
    utilisation = report.drop(columns=["entropy", "normalised_entropy"])
    gate_heatmap(utilisation, paths["heatmap"])
    write_text(paths["table"], report.to_csv(float_format="%.6f"))
    write_text(paths["markdown"], _markdown(report))
    write_text(paths["experts"], expert_utilisation(report).to_csv(index_label="expert",
                                                                   float_format="%.6f"))
    data: dict[str, Any] = {
        "utilisation": {t: {e: float(v) for e, v in row.items() if not math.isnan(v)}
                        for t, row in report.drop(columns=["entropy", "normalised_entropy"])
                        .iterrows()},
        "entropy": report["entropy"].to_dict(),
        "normalised_entropy": report["normalised_entropy"].to_dict(),
        "warnings": list(report.attrs.get("warnings", [])),
    }
    write_json(paths["json"], data, default=None)


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
    not needed), written as the directory ``out``.

    ``out`` must be none of the inputs (the data file, the model directory and its files) and
    new, empty or an earlier gate report: checked before any work.

    Example:
        >>> report, paths = inspect_model_dir(model_dir, model_data, "gates")
        >>> sorted(p.name for p in paths.values())
        ['experts.csv', 'gate_health.json', 'gates.csv', 'gates.md', 'gates.png']
    """
    _checks.output_apart(out, [data, *own_files(model_dir)])
    check_report_dir(out)
    _checks.writable_dir(out)
    md = load_model_dir(model_dir)
    with in_file(data):  # errors name the file's line
        frame = read_table(data, categorical=md.encoder.categorical or ())
        table = md.encoder.transform(frame, labels=False)
    report = gate_report(md.model, table)
    return report, write_gate_report(report, out)
