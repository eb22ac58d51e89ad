"""Census MMoE training steps with LeanAdam (the Trainer's optimizer) against torch's
``Adam(fused=True)``: the same batches, the two arms interleaved in one process, medians of
repeats, and the weights compared at the end (they must be equal bit for bit).

    python benchmarks/optimizer_step.py --data-dir ../shared/data/census-income \
        --out results/optimizer_step.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from census_throughput import _model, _tables

from mmoe import TrainConfig
from mmoe.train import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--out", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(1)
    enc, train, _ = _tables(args.data_dir)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    batches = [train.take(order[i * 1024:(i + 1) * 1024]) for i in range(args.batches)]
    arms = {}
    for name in ("LeanAdam", "torch Adam(fused=True)"):
        model = _model("mmoe", enc, 0).train()
        trainer = Trainer(model, TrainConfig(batch_size=1024, lr=1e-3))
        if name != "LeanAdam":
            trainer.optimizer = torch.optim.Adam(trainer._params, lr=1e-3, fused=True)
        arms[name] = (model, trainer)

    def run(trainer: Trainer) -> float:
        start = time.perf_counter()
        for batch in batches:
            trainer._step(batch)
        return (time.perf_counter() - start) / len(batches) * 1e3

    for _, trainer in arms.values():
        run(trainer)  # warm-up: optimizer states, caches
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.repeats):
        for name, (_, trainer) in arms.items():
            times[name].append(run(trainer))
    lean, ref = times.values()
    ratios = [b / a for a, b in zip(lean, ref, strict=True)]
    for name, ts in times.items():
        print(f"{name:24s} {statistics.median(ts):.2f} ms/step (median of {args.repeats})")
    print(f"speed-up {statistics.median(ratios):.3f}x (median of interleaved ratios, "
          f"{min(ratios):.3f}-{max(ratios):.3f})")
    (a, _), (b, _) = arms.values()
    same = all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    print("weights equal bit for bit:", same)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(
            {"ms_per_step": times, "speedup_median": statistics.median(ratios),
             "speedups": ratios, "weights_equal": same}, indent=2))


if __name__ == "__main__":
    main()
