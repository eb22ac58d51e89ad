"""Training throughput on census-income group 1 for every registered model, and mmoe's MMoE
against a naive PyTorch MMoE (benchmarks/naive_reference.py) measured side by side.

Matched configuration: 8 experts x 16 units (bottom-style models: one layer of 16 units per
network), towers of 8, embeddings of 8, batch 1024, Adam lr 1e-3, all non-label columns as
inputs, 1 intra-op thread unless --threads. Each model runs in its own subprocess so its peak
RSS is its own. The MMoE-vs-naive ratio alternates epochs of A and B in one process and
takes the median of the per-epoch ratios; both then finish 5 epochs and report test AUC.

    python benchmarks/census_throughput.py --data-dir ../shared/data/census-income \
        --out results/census_throughput.json

``--out X.json`` also writes ``X.md``, the Markdown table copied to docs/benchmarks/.
``--compile`` trains mmoe's models through ``torch.compile`` (TrainConfig.compile); the first
epoch then carries the compile and is reported apart (``first_epoch_seconds``).
MMOE_NATIVE=0 measures the pure-torch path (no native kernels).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
from naive_reference import NaiveMMoE, RowDataset, predict, train_epoch  # noqa: E402

from mmoe import TrainConfig, available_models, build_model, ops  # noqa: E402
from mmoe.data.datasets.census import load_census  # noqa: E402
from mmoe.data.encoders import TableEncoder  # noqa: E402
from mmoe.train import Trainer, predict_logits  # noqa: E402

EPOCHS = 5


def _tables(data_dir):
    data = load_census(data_dir, group=1)
    enc = TableEncoder(data.tasks, numeric=data.numeric, categorical=data.categorical,
                       numeric_encoding="standard")
    enc.fit(data.train)
    return enc, enc.transform(data.train), enc.transform(data.test)


def _model(name, enc, seed):
    torch.manual_seed(seed)
    return build_model(name, enc.input_spec(8), enc.tasks, num_experts=8, expert_units=(16,),
                       tower_units=(8,))


def _auc(logits, table):
    y = table.labels.numpy()
    return [float(roc_auc_score(y[:, t], logits[:, t])) for t in range(y.shape[1])]


def one_model(name: str, data_dir: str, threads: int, compile_: bool = False) -> dict:
    """Train one registered model for 5 epochs; throughput, peak RSS, test AUC."""
    enc, train, test = _tables(data_dir)
    model = _model(name, enc, 0)
    cfg = TrainConfig(epochs=EPOCHS, batch_size=1024, lr=1e-3, threads=threads,
                      restore_best=False, compile=compile_)
    hist = Trainer(model, cfg, progress=False).fit(train).history
    logits = predict_logits(model, test).numpy()
    secs = [h["seconds"] for h in hist]
    return {"model": name, "samples_per_s": statistics.median(h["samples_per_s"] for h in hist),
            "seconds_per_epoch": statistics.median(secs), "first_epoch_seconds": secs[0],
            "test_auc": _auc(logits, test),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def versus_naive(data_dir: str, threads: int, compile_: bool = False) -> dict:
    """mmoe MMoE (A) vs the naive MMoE (B), epochs interleaved A B A B ..."""
    torch.set_num_threads(threads)
    enc, train, test = _tables(data_dir)
    fast = _model("mmoe", enc, 0)
    trainer = Trainer(fast, TrainConfig(epochs=EPOCHS, batch_size=1024, lr=1e-3,
                                        threads=threads, restore_best=False,
                                        compile=compile_), progress=False)
    epochs_a = trainer.iter_epochs(train)
    torch.manual_seed(0)
    naive = NaiveMMoE(train.numeric.shape[1], [c for _, c in enc.input_spec().categorical], 8,
                      8, 16, 8, 2)
    opt = torch.optim.Adam(naive.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(RowDataset(train.numeric, train.categorical,
                                                    train.labels), batch_size=1024, shuffle=True)
    a_sec, b_sec = [], []
    for _ in range(EPOCHS):
        a_sec.append(next(epochs_a)["seconds"])
        start = time.perf_counter()
        train_epoch(naive, loader, opt)
        b_sec.append(time.perf_counter() - start)
    ratios = [b / a for a, b in zip(a_sec, b_sec, strict=True)]
    if compile_:  # the first epoch carries the compile: reported, not in the medians
        ratios, a_med, b_med = ratios[1:], a_sec[1:], b_sec[1:]
    else:
        a_med, b_med = a_sec, b_sec
    fast_auc = _auc(predict_logits(fast, test).numpy(), test)
    naive_auc = _auc(predict(naive, test.numeric, test.categorical).numpy(), test)
    n = len(train)
    return {"rows": n, "mmoe_samples_per_s": n / statistics.median(a_med),
            "naive_samples_per_s": n / statistics.median(b_med),
            "mmoe_seconds_per_epoch": a_sec, "naive_seconds_per_epoch": b_sec,
            "speedup_median": statistics.median(ratios), "speedups": ratios,
            "mmoe_test_auc": fast_auc, "naive_test_auc": naive_auc,
            "auc_difference_income": fast_auc[0] - naive_auc[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default=",".join(available_models()))
    ap.add_argument("--compile", action="store_true", help="train mmoe's models compiled")
    ap.add_argument("--only", help=argparse.SUPPRESS)  # child process: one model
    args = ap.parse_args()
    if args.only:
        print(json.dumps(one_model(args.only, args.data_dir, args.threads, args.compile)))
        return
    result = {"threads": args.threads, "torch": torch.__version__, "compile": args.compile,
              "native_kernels": ops.build_native(),
              "versus_naive": versus_naive(args.data_dir, args.threads, args.compile),
              "models": []}
    print(json.dumps(result["versus_naive"], indent=2), flush=True)
    for name in args.models.split(","):
        cmd = [sys.executable, __file__, "--only", name, "--threads", str(args.threads)]
        cmd += ["--compile"] if args.compile else []
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        row = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                        text=True).stdout.strip().splitlines()[-1])
        result["models"].append(row)
        print(f"{name:22s} {row['samples_per_s']:10.0f} samples/s "
              f"{row['seconds_per_epoch']:6.2f} s/epoch  {row['peak_rss_mb']:7.0f} MB  "
              f"AUC {np.round(row['test_auc'], 4).tolist()}", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        Path(args.out).with_suffix(".md").write_text(markdown(result))


def markdown(result: dict) -> str:
    """The results as a Markdown table, with the MMoE-vs-naive ratio first."""
    v = result["versus_naive"]
    lines = [f"MMoE {v['mmoe_samples_per_s']:,.0f} samples/s against the naive reference's "
             f"{v['naive_samples_per_s']:,.0f}: {v['speedup_median']:.2f}x (median of "
             f"{len(v['speedups'])} interleaved epoch ratios, "
             f"{min(v['speedups']):.2f}-{max(v['speedups']):.2f}); test income AUC "
             f"{v['mmoe_test_auc'][0]:.4f} vs {v['naive_test_auc'][0]:.4f}; MMoE epochs "
             f"{', '.join(f'{x:.2f}' for x in v['mmoe_seconds_per_epoch'])} s. "
             f"{result['threads']} thread(s), torch {result['torch']}, native kernels "
             f"{'on' if result.get('native_kernels') else 'off'}, compile "
             f"{'on (first epoch apart)' if result.get('compile') else 'off'}.", "",
             "| model | samples/s | s/epoch (median) | first epoch (s) | peak RSS (MB) "
             "| test AUC (income, marital) |",
             "|---|---|---|---|---|---|"]
    for row in result["models"]:
        auc = ", ".join(f"{a:.4f}" for a in row["test_auc"])
        lines.append(f"| {row['model']} | {row['samples_per_s']:,.0f} | "
                     f"{row['seconds_per_epoch']:.2f} | {row.get('first_epoch_seconds', 0):.2f} "
                     f"| {row['peak_rss_mb']:.0f} | {auc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
