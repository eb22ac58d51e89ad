"""Training throughput of mmoe on a generated table.

A 200k-row table with 40 input columns (30 numeric, 10 categorical with 20 levels each) and
two binary tasks; MMoE with 8 experts x 16 units, towers of 8, batch 1024, Adam lr 1e-3.
Thread counts are interleaved (A B A B ...) and the median of the repeats is reported.

    python benchmarks/core_throughput.py --out results/core_throughput.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import pandas as pd
import torch

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.data.encoders import TableEncoder
from mmoe.train import Trainer


def make_table(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    num = rng.normal(size=(rows, 30))
    cat = rng.integers(0, 20, size=(rows, 10))
    logit = num[:, :5].sum(1) + (cat[:, 0] % 3) - 1
    df = pd.DataFrame(num, columns=[f"n{i}" for i in range(30)])
    for i in range(10):
        df[f"c{i}"] = cat[:, i].astype(str)
    df["y1"] = (logit + rng.normal(size=rows) > 0).astype(int)
    df["y2"] = (num[:, 3:8].sum(1) + rng.normal(size=rows) > 0).astype(int)
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tasks = [TaskSpec("y1"), TaskSpec("y2")]
    encoder = TableEncoder(tasks, numeric_encoding="standard").fit(df := make_table(args.rows))
    table = encoder.transform(df)
    threads = [int(t) for t in args.threads.split(",")]
    samples: dict[int, list[float]] = {t: [] for t in threads}
    for rep in range(args.repeats):
        for t in threads:  # interleaved so machine drift hits every setting alike
            torch.manual_seed(rep)
            model = build_model("mmoe", encoder.input_spec(), encoder.tasks, num_experts=8,
                                expert_units=(16,), tower_units=(8,))
            cfg = TrainConfig(epochs=1, batch_size=1024, lr=1e-3, threads=t, seed=rep)
            start = time.perf_counter()
            Trainer(model, cfg, progress=False).fit(table)
            samples[t].append(len(table) / (time.perf_counter() - start))
    result = {"rows": len(table), "columns": 40, "model": "mmoe 8x16, tower 8, batch 1024",
              "torch": torch.__version__,
              "samples_per_s": {str(t): {"median": statistics.median(v), "all": v}
                                for t, v in samples.items()}}
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
