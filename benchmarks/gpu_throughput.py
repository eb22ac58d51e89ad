"""Census MMoE training throughput on a GPU: mmoe at batch 1024 and 8192, and in the same run
torch-rechub's MMoE at batch 1024 on the same device (its own environment), with samples/s,
peak GPU memory and test AUC of both tasks; and mmoe's CPU-trained twin at the same seed and
config, whose test AUC the CUDA run must match within 0.002.

Prepared to run in one go when a GPU is lent (bounded by --time-limit), checked on the CPU
first (--device cpu, --nrows, --epochs 1):

    python benchmarks/gpu_throughput.py --data-dir D --peers-python PEERS/bin/python \\
        --out results/gpu_throughput.json

Matched configuration (as benchmarks/census_throughput.py): census group 1, every non-label
column as input (numeric standardised, categorical embeddings of 8), MMoE with 8 experts of
16 units and towers of 8, Adam lr 1e-3, no weight decay, ``--epochs`` epochs (samples/s: the
median epoch after the first). Writes the JSON and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from mmoe import TrainConfig, build_model
from mmoe.experiments.census import prepare
from mmoe.train import Trainer, predict_logits

EXPERTS, UNITS, TOWER, DIM, LR = 8, 16, 8, 8, 1e-3


def test_auc(probs: np.ndarray, labels: np.ndarray) -> list[float]:
    return [float(roc_auc_score(labels[:, t], probs[:, t])) for t in range(2)]


def run_mmoe(tables, batch: int, epochs: int, device: str, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = build_model("mmoe", tables.input_spec(DIM), tables.tasks, num_experts=EXPERTS,
                        expert_units=(UNITS,), tower_units=(TOWER,))
    cfg = TrainConfig(epochs=epochs, batch_size=batch, lr=LR, lr_schedule="constant",
                      seed=seed, restore_best=False)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    result = Trainer(model, cfg, progress=False, device=device).fit(tables.train, None)
    seconds = [r["seconds"] for r in result.history]
    kept = seconds[1:] or seconds
    probs = torch.sigmoid(predict_logits(model, tables.test)).numpy()
    return {"library": "mmoe", "device": device, "batch": batch, "epoch_seconds": seconds,
            "samples_per_s": len(tables.train) / float(np.median(kept)),
            "peak_gpu_mb": (torch.cuda.max_memory_allocated() / 2**20
                            if device.startswith("cuda") else None),
            "test_auc": test_auc(probs, tables.test.labels.numpy())}


def run_peer(tables, args, work: Path) -> dict:
    arrays = {}
    for split in ("train", "valid", "test"):
        t = getattr(tables, split)
        arrays[f"{split}_numeric"] = t.numeric.numpy()
        arrays[f"{split}_categorical"] = t.categorical.numpy()
        arrays[f"{split}_labels"] = t.labels.numpy().astype(np.int64)
    config = {"dim": DIM, "experts": EXPERTS, "expert_units": [UNITS], "tower_units": [TOWER],
              "categorical_rows": [c for _, c in tables.input_spec(DIM).categorical],
              "lr": LR, "batch": 1024, "epochs": args.epochs, "seed": 0, "threads": 1,
              "device": args.device, "scratch": str(work) + "/"}
    np.savez(work / "census.npz", config=json.dumps(config), **arrays)
    out = work / "peer.json"
    subprocess.run([args.peers_python, str(Path(__file__).parent / "peers" / "census_peer.py"),
                    str(work / "census.npz"), str(out)], check=True,
                   timeout=max(60, args.time_limit - (time.time() - args.started)))
    res = json.loads(out.read_text())
    probs = np.load(out.with_suffix(".npy"))
    res.update(device=args.device, batch=1024,
               test_auc=test_auc(probs, tables.test.labels.numpy()))
    return res


def markdown(res: dict) -> str:
    lines = [f"Census group 1, MMoE {EXPERTS}x{UNITS}, towers {TOWER}, {res['rows']:,} training "
             f"rows, {res['epochs']} epochs, device {res['device_name']}.", "",
             "| library | device | batch | samples/s | peak GPU MB | income AUC | marital AUC |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in res["runs"]:
        mem = "" if r.get("peak_gpu_mb") is None else f"{r['peak_gpu_mb']:,.0f}"
        lines.append(f"| {r['library']} | {r['device']} | {r['batch']} | "
                     f"{r['samples_per_s']:,.0f} | {mem} | {r['test_auc'][0]:.4f} | "
                     f"{r['test_auc'][1]:.4f} |")
    if res.get("ratio_vs_rechub") is not None:
        lines += ["", f"mmoe / torch-rechub at batch 1024: {res['ratio_vs_rechub']:.2f}x "
                  "(target >= 3x at the same AUC)"]
    if res.get("auc_gap_cuda_vs_cpu") is not None:
        lines += [f"CUDA vs CPU test income AUC at the same seed: "
                  f"{res['auc_gap_cuda_vs_cpu']:+.4f} (target within 0.002)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batches", default="1024,8192")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--nrows", type=int, default=None, help="first rows only (CPU checks)")
    ap.add_argument("--peers-python", help="python of the peers' environment")
    ap.add_argument("--no-cpu-twin", action="store_true", help="skip the CPU-trained twin")
    ap.add_argument("--time-limit", type=float, default=480.0, help="seconds for it all")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    args.started = time.time()
    tables = prepare(1, args.data_dir, nrows=args.nrows)
    runs = []
    for batch in map(int, args.batches.split(",")):
        runs.append(run_mmoe(tables, batch, args.epochs, args.device))
        print(json.dumps(runs[-1]), flush=True)
    res = {"rows": len(tables.train), "epochs": args.epochs, "runs": runs,
           "device_name": (torch.cuda.get_device_name() if args.device.startswith("cuda")
                           else "cpu"), "torch": torch.__version__}
    if args.peers_python:
        with tempfile.TemporaryDirectory() as work:
            runs.append(run_peer(tables, args, Path(work)))
        print(json.dumps(runs[-1]), flush=True)
        mine = next(r for r in runs if r["library"] == "mmoe" and r["batch"] == 1024)
        res["ratio_vs_rechub"] = mine["samples_per_s"] / runs[-1]["samples_per_s"]
    if not args.no_cpu_twin and args.device != "cpu":
        twin = run_mmoe(tables, 1024, args.epochs, "cpu")
        runs.append(twin)
        mine = next(r for r in runs if r["library"] == "mmoe" and r["batch"] == 1024)
        res["auc_gap_cuda_vs_cpu"] = mine["test_auc"][0] - twin["test_auc"][0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
