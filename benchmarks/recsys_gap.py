"""Where a model's gap to the oracle lies on the generated funnel: the test rows split into
quartiles of how many training impressions their user (and, apart, their item) had, and in
each the AUC of the true probabilities (the oracle) beside the model's.

    mmoe data generate funnel --rows 1000000 --out funnel
    mmoe train --config funnel/mmoe.toml --out runs/funnel
    mmoe predict runs/funnel funnel/test --out test_pred.parquet
    python benchmarks/recsys_gap.py --data funnel --predictions test_pred.parquet \\
        --out docs/recsys/gap.md

A gap that shrinks as a user's impressions grow is what the data cannot tell (a user seen a
few times has latents no model can learn, the oracle reads them); one that stays where the
data is plentiful is the model's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

#: task -> (label column, the oracle's column, the prediction's column)
TASKS = {"click": ("click", "p_click", "click"),
         "purchase": ("purchase", "p_click_buy", "purchase")}


def gap_rows(data: Path, predictions: pd.DataFrame, by: str) -> list[dict]:
    """One row per quartile of the training impressions of each test row's ``by``."""
    counts = pd.read_parquet(data / "train", columns=[by])[by].value_counts()
    test = pd.read_parquet(data / "test", columns=[by] + [c for t in TASKS.values()
                                                          for c in t[:2]])
    seen = test[by].map(counts).fillna(0).to_numpy()
    edges = np.quantile(seen, [0, 0.25, 0.5, 0.75, 1.0])
    quartile = np.clip(np.searchsorted(edges[1:-1], seen, side="right"), 0, 3)
    rows = []
    for q in range(4):
        mask = quartile == q
        row = {"by": by, "impressions": f"{seen[mask].min():.0f}-{seen[mask].max():.0f}",
               "rows": int(mask.sum())}
        for task, (label, oracle, pred) in TASKS.items():
            y = test[label].to_numpy()[mask]
            row[task] = (roc_auc_score(y, test[oracle].to_numpy()[mask]),
                         roc_auc_score(y, predictions[pred].to_numpy()[mask]))
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| test rows whose | training impressions | rows | click oracle | model | gap | "
             "purchase oracle | model | gap |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = [f"{o:.4f} | {m:.4f} | {o - m:.4f}" for o, m in (r["click"], r["purchase"])]
        lines.append(f"| {r['by']} | {r['impressions']} | {r['rows']:,} | {cells[0]} | "
                     f"{cells[1]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="mmoe data generate funnel's DIR")
    ap.add_argument("--predictions", type=Path, required=True,
                    help="mmoe predict's output on DIR/test (same rows, same order)")
    ap.add_argument("--out", type=Path, help="a Markdown file for the table")
    args = ap.parse_args()
    predictions = pd.read_parquet(args.predictions)
    rows = gap_rows(args.data, predictions, "user_id") + gap_rows(args.data, predictions,
                                                                  "item_id")
    text = markdown(rows)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
