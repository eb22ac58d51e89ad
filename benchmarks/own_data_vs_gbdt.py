"""Quality bar: `mmoe train` with default settings vs per-task gradient boosting
(sklearn HistGradientBoosting) on Census-Income with three binary tasks. Prints JSON.

Tasks: income > 50K, never married, holds a college degree; inputs: every other column
(education, marital status and income removed), mixed numeric/categorical with missing
values. Train = census-income.data; the test file is split 1:1 into validation (early
stopping for boosting, epoch monitoring for mmoe) and test (reported), as in the paper.

    python benchmarks/own_data_vs_gbdt.py [--data-dir ../shared/data/census-income]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from mmoe.app.fit import train_model_dir
from mmoe.app.predict import evaluate_dir
from mmoe.app.spec import build_run_spec
from mmoe.data.datasets.census import LABEL_EDUCATION, LABEL_INCOME, LABEL_MARITAL, load_census

TASKS = {"income": LABEL_INCOME, "marital": LABEL_MARITAL, "education": LABEL_EDUCATION}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=os.environ.get("MMOE_DATA_DIR"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_census(args.data_dir, group=1)
    inputs = list(data.numeric) + list(data.categorical)
    cols = inputs + list(TASKS.values())
    result: dict = {"data": "census-income (UCI KDD), 3 binary tasks",
                    "train_rows": len(data.train), "test_rows": len(data.test), "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name, frame in (("train", data.train), ("valid", data.valid), ("test", data.test)):
            frame[cols].to_parquet(d / f"{name}.parquet", index=False)
        spec = build_run_spec(train=str(d / "train.parquet"), valid=str(d / "valid.parquet"),
                              tasks=[f"{c}:binary" for c in TASKS.values()],
                              threads=args.threads)
        start = time.perf_counter()
        train_model_dir(spec, d / "model")
        result["mmoe_seconds"] = round(time.perf_counter() - start, 1)
        mmoe = evaluate_dir(d / "model", d / "test.parquet")

    def as_gbdt(frame: pd.DataFrame) -> pd.DataFrame:
        x = frame[inputs].copy()
        for c in data.categorical:
            x[c] = pd.Categorical(x[c], categories=sorted(data.train[c].dropna().unique()))
        return x

    xtr, xva, xte = as_gbdt(data.train), as_gbdt(data.valid), as_gbdt(data.test)
    start = time.perf_counter()
    for name, col in TASKS.items():
        gb = HistGradientBoostingClassifier(categorical_features="from_dtype",
                                            early_stopping=True, random_state=0)
        gb.fit(pd.concat([xtr, xva]), pd.concat([data.train[col], data.valid[col]]))
        auc_gb = roc_auc_score(data.test[col], gb.predict_proba(xte)[:, 1])
        auc_mm = mmoe[col]["auc"]
        result["tasks"][name] = {"mmoe_auc": round(auc_mm, 4), "gbdt_auc": round(auc_gb, 4),
                                 "gap_points": round(100 * (auc_gb - auc_mm), 2)}
    result["gbdt_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
