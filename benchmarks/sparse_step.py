"""One training step's time with a hashed id table of 100k rows against one of 10M rows:
with sparse updates (MixedOptimizer: only the rows a batch used move; the tables by row-wise
Adagrad, mmoe's default, and by lazy Adam) the step must not grow with the table (target:
ratio <= 1.3x). A dense Adam over the same model is measured beside it, the way a library
without sparse updates trains (its step grows with the table).

Model: MMoE (4 experts of [64, 32], towers of 16, 2 tasks) over a numeric column, a user id
table of ROWS x 16, an item table of 100k x 16 and a 10-id history reading the item table;
batch 1024 with fresh random ids each step. Rounds alternate the table sizes; each round
reports the median of its steps after a warm-up, and the ratio is the median over rounds.

    python benchmarks/sparse_step.py --out docs/recsys/sparse_step.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.config import InputSpec, Lookup
from mmoe.train.optim import LeanAdam, optimizer_for

BATCH, DIM, ITEMS = 1024, 16, 100_001


def step_seconds(rows: int, mode: str, steps: int, seed: int = 0) -> float:
    """Median seconds of forward + backward + optimizer step over ``steps`` steps."""
    inputs = InputSpec(numeric=("a",), lookups=(
        Lookup("user", "user", rows, DIM), Lookup("item", "item", ITEMS, DIM),
        Lookup("history", "item", ITEMS, DIM, slots=10)))
    torch.manual_seed(seed)
    model = build_model("mmoe", inputs, [TaskSpec("click"), TaskSpec("buy")], num_experts=4,
                        expert_units=(64, 32), tower_units=(16,))
    sparse = mode != "dense"
    if sparse:  # mode: the tables' optimizer, adagrad or adam
        opt = optimizer_for(model, nn.Module(), TrainConfig(lr=1e-3, table_optimizer=mode))
    else:  # every row of every table moves each step
        opt = LeanAdam([p for p in model.parameters()], lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(steps):
        ids = torch.cat([torch.randint(1, rows, (BATCH, 1), generator=gen),
                         torch.randint(0, ITEMS, (BATCH, 11), generator=gen)], 1)
        numeric = torch.randn(BATCH, 1, generator=gen)
        labels = (torch.rand(BATCH, 2, generator=gen) < 0.2).float()
        start = time.perf_counter()
        loss = nn.functional.binary_cross_entropy_with_logits(model(numeric, None, ids), labels)
        opt.zero_grad()
        loss.backward()
        if not sparse:  # the whole table's gradient, as a dense embedding's backward gives
            for table in model.sparse_parameters():
                table.grad = table.grad.to_dense()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[steps // 4:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--large", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result: dict = {"config": vars(args) | {"out": str(args.out)}}
    modes = (("adagrad", args.steps), ("adam", args.steps), ("dense", 12))
    for mode, steps in modes:
        rounds = []
        for r in range(args.rounds if mode != "dense" else 2):
            small = step_seconds(args.small + 1, mode, steps, seed=r)
            large = step_seconds(args.large + 1, mode, steps, seed=r)
            rounds.append({"small_ms": 1e3 * small, "large_ms": 1e3 * large,
                           "ratio": large / small})
            print(mode, json.dumps(rounds[-1]), flush=True)
        result[mode] = {"rounds": rounds,
                        "median_ratio": statistics.median(r["ratio"] for r in rounds),
                        "median_small_ms": statistics.median(r["small_ms"] for r in rounds),
                        "median_large_ms": statistics.median(r["large_ms"] for r in rounds)}
    print(json.dumps({m: {k: v for k, v in result[m].items() if k != "rounds"}
                      for m, _ in modes}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
