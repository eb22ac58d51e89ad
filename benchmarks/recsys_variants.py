"""Validation AUC / GAUC of variants of mmoe's and torch-rechub's MMoE on a generated funnel
(mmoe data generate funnel), at the matched configuration of
benchmarks/recsys_throughput.py: the ablations behind ``ModelConfig.hidden_norm``
(docs/recsys.md, "Batch norm in the hidden layers").

    python benchmarks/recsys_variants.py --data DIR --epochs 1 --seeds 0 1 \\
        --mmoe "mmoe" "mmoe|lr=0.003" "mmoe+hidden_norm|lr=0.003" \\
        --rechub base lr0.003 nobn_expert --peers-python PEERS/bin/python

An mmoe variant is ``MODEL[+FLAG...][|KEY=VALUE,...]``: ModelConfig flags after ``+``; after
``|`` TrainConfig fields (``lr=0.003``, ``lr_schedule=constant``) or ``cat_scale=X``, the
categorical embedding's start multiplied by X after the model is built (the same draws).
A torch-rechub variant (benchmarks/peers/rechub_variants.py, run in the peers' environment)
is ``+``-joined words: ``base``, ``nobn`` (no batch norm anywhere), ``nobn_expert`` (none in
the experts and towers), ``nobn_gate`` (none in the gates), ``init<STD>`` (embeddings start
at N(0, STD²) instead of 1e-4), ``lr<LR>``. Prints each variant's mean over the seeds:
click AUC, click GAUC, purchase AUC, purchase GAUC (validation split only: for choosing).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import recsys_throughput as rt  # noqa: E402

from mmoe import TrainConfig  # noqa: E402
from mmoe.train import predict_logits  # noqa: E402

KEYS = ("click AUC", "click GAUC", "purchase AUC", "purchase GAUC")


def _four(probs, labels, groups) -> list[float]:
    m = rt.metrics_of(probs, labels, groups)
    return [m["click"]["auc"], m["click"]["gauc"], m["purchase"]["auc"], m["purchase"]["gauc"]]


def run_mmoe(variant: str, seed: int, args, enc, tables, groups) -> list[float]:
    """mmoe's variant trained on train, scored on valid."""
    name, _, settings = variant.partition("|")
    training = {}
    for item in filter(None, settings.split(",")):
        key, value = item.split("=")
        training[key] = value if key == "lr_schedule" else json.loads(value)
    model, _, _ = rt.train_mmoe(name, args, enc, tables, seed, **training)
    probs = torch.sigmoid(predict_logits(model, tables["valid"])).numpy()
    return _four(probs, tables["valid"].labels.numpy(), groups["valid"])


def run_rechub(variant: str, seed: int, args, work: Path, tables, groups) -> list[float]:
    """torch-rechub's variant in the peers' environment, scored here on valid."""
    out = work / f"rechub-{variant}-{seed}.npy"
    subprocess.run([args.peers_python, str(Path(__file__).parent / "peers" /
                                           "rechub_variants.py"),
                    str(work / "encoded.npz"), variant, str(seed), str(out)], check=True)
    return _four(np.load(out), tables["valid"].labels.numpy(), groups["valid"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--mmoe", nargs="*", default=[], help="mmoe variants (see above)")
    ap.add_argument("--rechub", nargs="*", default=[], help="torch-rechub variants")
    ap.add_argument("--peers-python", help="python of the peers' environment")
    ap.add_argument("--lr", type=float, default=1e-3, help="every variant's lr unless it "
                    "sets its own")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, help="also write the means as JSON")
    a = ap.parse_args()
    args = argparse.Namespace(dim=16, history_len=10, experts=4, expert_units=[64, 32],
                              tower_units=[16], batch=1024, lr=a.lr, epochs=a.epochs,
                              seed=0, threads=a.threads,
                              table_optimizer=TrainConfig.table_optimizer,
                              table_lr=TrainConfig.table_lr,
                              table_lr_scale=TrainConfig.table_lr_scale)
    torch.set_num_threads(a.threads)
    means = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        enc, tables, groups, _, _ = rt.prepare(args, a.data, work)
        runs = [("mmoe", v) for v in a.mmoe] + [("torch-rechub", v) for v in a.rechub]
        for library, variant in runs:
            scores = []
            for seed in a.seeds:
                if library == "mmoe":
                    scores.append(run_mmoe(variant, seed, args, enc, tables, groups))
                else:
                    scores.append(run_rechub(variant, seed, a, work, tables, groups))
            mean = np.mean(scores, 0)
            means[f"{library} {variant}"] = dict(zip(KEYS, mean.round(4).tolist(),
                                                     strict=True))
            print(f"{library} {variant:50s} " + " ".join(f"{x:.4f}" for x in mean)
                  + f"  (seeds {a.seeds})", flush=True)
    if a.out:
        a.out.write_text(json.dumps({"data": str(a.data), "epochs": a.epochs,
                                     "seeds": a.seeds, "valid": means}, indent=2) + "\n")


if __name__ == "__main__":
    main()
