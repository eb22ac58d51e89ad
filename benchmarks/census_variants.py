"""Census-Income group 1: do CGC, PLE, gate dropout and uncertainty weighting help MMoE?

Prints JSON: per variant, validation and test main-task (income) and marital AUC, mean over
seeds. Few epochs, one thread: a quick comparison, not the paper's tuned protocol.

    MMOE_DATA_DIR=../shared/data/census-income python benchmarks/census_variants.py --epochs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch

from mmoe import ModelConfig, TrainConfig, build_model
from mmoe.diagnostics import GateHealthWarning
from mmoe.experiments.census import prepare
from mmoe.train import Trainer, evaluate_model

BASE = {"num_experts": 8, "expert_units": (16,), "tower_units": (8,), "batch_norm": True}
VARIANTS = {
    "mmoe": ({"name": "mmoe"}, {}),
    "cgc": ({"name": "cgc"}, {}),
    "ple": ({"name": "ple"}, {}),
    "mmoe+gate_dropout0.1": ({"name": "mmoe", "gate_dropout": 0.1}, {}),
    "mmoe+uncertainty": ({"name": "mmoe"}, {"loss_weighting": "uncertainty"}),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tables = prepare(1, args.data_dir)
    spec = tables.input_spec(8)
    out = {}
    for name in args.variants.split(","):
        model_kw, train_kw = VARIANTS[name]
        runs = []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = build_model(ModelConfig(**{**BASE, **model_kw}), spec, tables.tasks)
            cfg = TrainConfig(epochs=args.epochs, batch_size=1024, lr=1e-3, seed=seed,
                              threads=1, **train_kw)
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", GateHealthWarning)
                fit = Trainer(model, cfg, progress=False).fit(tables.train, tables.valid)
            runs.append({
                "seed": seed, "best_epoch": fit.best_epoch,
                "valid": {t: m["auc"] for t, m in evaluate_model(model, tables.valid).items()},
                "test": {t: m["auc"] for t, m in evaluate_model(model, tables.test).items()},
                "seconds": time.perf_counter() - start,
                "gate_warnings": len(caught),
                "loss_weights": fit.history[-1].get("loss_weights"),
                "entropy": fit.history[-1].get("gates", {}).get("normalised_entropy"),
            })
        mean = {split: {t: statistics.mean(r[split][t] for r in runs) for t in runs[0][split]}
                for split in ("valid", "test")}
        out[name] = {"mean": mean, "runs": runs}
        print(json.dumps({name: mean}), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
