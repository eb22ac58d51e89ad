"""How MMoE training throughput scales with experts, tasks, batch size and threads.

On a generated 40-column table (30 numeric, 10 categorical), MMoE with 16 units per expert
and towers of 8; each sweep varies one axis from the base point (8 experts, 2 tasks, batch
1024, 1 thread). Every point is timed at 1 and 2 threads, interleaved, median of repeats.
Writes scaling.json, scaling.md (a table) and scaling.png (one panel per axis) to --out.

    python benchmarks/scaling.py --out results/scaling
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mmoe import InputSpec, TaskSpec, TrainConfig, build_model  # noqa: E402
from mmoe.data.table import TensorTable  # noqa: E402
from mmoe.train import Trainer  # noqa: E402

BASE = {"experts": 8, "tasks": 2, "batch": 1024}
SWEEPS = {"experts": [2, 4, 8, 16, 32, 64], "tasks": [2, 4, 8, 16],
          "batch": [64, 256, 1024, 4096, 8192]}


def make_table(rows: int, tasks: int, seed: int = 0) -> TensorTable:
    g = torch.Generator().manual_seed(seed)
    num = torch.randn(rows, 30, generator=g)
    cat = torch.randint(1, 21, (rows, 10), generator=g)
    w = torch.randn(30, tasks, generator=g)
    y = ((num @ w + 0.5 * torch.randn(rows, tasks, generator=g)) > 0).float()
    return TensorTable(num, cat, y)


def samples_per_s(table: TensorTable, experts: int, tasks: int, batch: int,
                  threads: int) -> float:
    inputs = InputSpec(numeric=tuple(f"n{i}" for i in range(30)),
                       categorical=tuple((f"c{i}", 21) for i in range(10)))
    torch.manual_seed(0)
    model = build_model("mmoe", inputs, [TaskSpec(f"t{i}") for i in range(tasks)],
                        num_experts=experts, expert_units=(16,), tower_units=(8,))
    cfg = TrainConfig(epochs=1, batch_size=batch, threads=threads)
    start = time.perf_counter()
    Trainer(model, cfg, progress=False).fit(table)
    return len(table) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=32768)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="results/scaling")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for axis, values in SWEEPS.items():
        for value in values:
            point = {**BASE, axis: value}
            table = make_table(args.rows, point["tasks"])
            times: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(args.repeats):
                for threads in (1, 2):  # interleaved
                    times[threads].append(samples_per_s(table, point["experts"],
                                                        point["tasks"], point["batch"],
                                                        threads))
            row = {"axis": axis, **point,
                   "samples_per_s_1_thread": statistics.median(times[1]),
                   "samples_per_s_2_threads": statistics.median(times[2])}
            rows.append(row)
            print(json.dumps(row), flush=True)
    (out / "scaling.json").write_text(json.dumps({"rows": args.rows, "points": rows}, indent=2))
    lines = ["| axis | experts | tasks | batch | samples/s (1 thread) | samples/s (2 threads) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['axis']} | {r['experts']} | {r['tasks']} | {r['batch']} | "
              f"{r['samples_per_s_1_thread']:,.0f} | {r['samples_per_s_2_threads']:,.0f} |"
              for r in rows]
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, axis in zip(axes, SWEEPS, strict=True):
        pts = [r for r in rows if r["axis"] == axis]
        xs = np.array([r[axis] for r in pts])
        for threads, key in ((1, "samples_per_s_1_thread"), (2, "samples_per_s_2_threads")):
            ax.plot(xs, [r[key] for r in pts], marker="o", label=f"{threads} thread(s)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(axis)
        ax.set_ylabel("training samples/s")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("MMoE training throughput (16 units per expert, towers of 8)")
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=120)
    print(f"wrote {out}/scaling.json, scaling.md, scaling.png")


if __name__ == "__main__":
    main()
