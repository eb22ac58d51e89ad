"""Census MMoE training throughput of this tree against another revision, interleaved.

    python benchmarks/ab_census_throughput.py --base REV --data-dir ../shared/data/census-income

``REV`` (and ``--head REV2``, else this working tree) is checked out into a git worktree
under ``--work``. Rounds alternate the two trees
(A B, then B A, ...), each round one fresh process per tree training the census group-1 MMoE
at the matched configuration (8 experts x 16 units, towers of 8, embeddings of 8, batch 1024,
Adam 1e-3, 1 thread) for ``--epochs`` epochs; the first epoch of each process (kernel load,
allocator warm-up) is left out. Prints JSON: each tree's epoch seconds, the median epoch, and
the ratio head/base of throughput (base median epoch / head median epoch) over all epochs and
per round (>= 1: this tree is at least as fast).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs inside each process; works with the import paths of both trees.
CHILD = r"""
import json, sys, torch
try:
    from mmoe.data.datasets.census import load_census
except ImportError:
    from mmoe.data.census import load_census
from mmoe import TrainConfig, build_model
from mmoe.data.encoders import TableEncoder
from mmoe.train import Trainer

torch.set_num_threads(1)
data = load_census(sys.argv[1], group=1)
enc = TableEncoder(data.tasks, numeric=data.numeric, categorical=data.categorical,
                   numeric_encoding="standard").fit(data.train)
train = enc.transform(data.train)
torch.manual_seed(0)
model = build_model("mmoe", enc.input_spec(8), enc.tasks, num_experts=8, expert_units=(16,),
                    tower_units=(8,))
cfg = TrainConfig(epochs=int(sys.argv[2]), batch_size=1024, lr=1e-3, threads=1,
                  restore_best=False)
history = Trainer(model, cfg, progress=False).fit(train).history
print(json.dumps([h["seconds"] for h in history]))
"""


def epochs_of(src: Path, data_dir: str, epochs: int) -> list[float]:
    """Epoch seconds of one training process run with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", CHILD, data_dir, str(epochs)], env=env,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def checkout(rev: str, tree: Path) -> Path:
    """A git worktree of ``rev`` at ``tree`` (reused when it exists)."""
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                       check=True, capture_output=True)
    return tree


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("--head", default=None,
                    help="git revision to measure (default: this working tree)")
    ap.add_argument("--data-dir", default=os.environ.get("MMOE_DATA_DIR"))
    ap.add_argument("--work", default="results/ab_census")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    sides = {"base": checkout(args.base, work / "base-tree") / "src",
             "head": (checkout(args.head, work / "head-tree") if args.head else ROOT) / "src"}
    seconds: dict[str, list[list[float]]] = {"base": [], "head": []}
    for r in range(args.rounds):
        order = ("base", "head") if r % 2 == 0 else ("head", "base")
        for side in order:
            seconds[side].append(epochs_of(sides[side], args.data_dir, args.epochs)[1:])
            print(f"round {r + 1} {side}: {seconds[side][-1]}", file=sys.stderr, flush=True)
    medians = {side: statistics.median(s for run in runs for s in run)
               for side, runs in seconds.items()}
    per_round = [statistics.median(b) / statistics.median(h)
                 for b, h in zip(seconds["base"], seconds["head"], strict=True)]
    print(json.dumps({"base": args.base, "epoch_seconds": seconds,
                      "median_epoch_seconds": medians,
                      "throughput_ratio_head_over_base": medians["base"] / medians["head"],
                      "per_round_ratios": per_round,
                      "per_round_ratio_median": statistics.median(per_round)}, indent=1))


if __name__ == "__main__":
    main()
