"""Check that two source trees give bit-identical results: the paper's synthetic study, one
census run of every group-1 model, and `mmoe train` / `predict` / `evaluate` on a fixed file
(in memory and streamed), at the same seeds.

    python benchmarks/check_identical.py --base REV --data-dir ../shared/data/census-income \
        --work results/identical

``REV`` (and ``--head REV2``, else this working tree) is checked out into a git worktree under
``--work`` and run with the same Python (``PYTHONPATH=<tree>/src``). Each side's outputs are
kept under ``--work/<side>``; a side whose outputs exist is not run again (``--fresh`` reruns
both). Compared: every number
of ``results.json`` / ``metrics.json`` (timings, paths and the git commit left out), every
tensor of the trained models (``torch.equal``), and the prediction and evaluation files byte
for byte. ``--quick`` shrinks every job (seconds instead of minutes) for a smoke check.
Prints one JSON object; exit code 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
# results.json / metrics.json keys that measure time or name paths and commits
VOLATILE = {"seconds", "speed", "git_commit", "timings", "config_files", "samples_per_s",
            "wall_seconds", "run_steps_per_second", "data_seconds"}


def fixed_table(path: Path, rows: int = 6000, seed: int = 0) -> Path:
    """A deterministic mixed table: numeric (with gaps), categorical, three task kinds."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows).astype(float)
    age[rng.random(rows) < 0.05] = np.nan
    city = rng.choice(["paris", "lyon", "nice", "lille", "brest"], rows)
    plan = rng.choice(["a", "b", "c"], rows)
    spend = rng.gamma(2.0, 50.0, rows)
    score = np.nan_to_num(age, nan=40) / 10 + (city == "paris") * 2 + rng.normal(0, 1, rows)
    pd.DataFrame({
        "user_id": [f"u{i:06d}" for i in range(rows)], "age": age, "city": city, "plan": plan,
        "spend": spend,
        "clicked": (spend + rng.normal(0, 30, rows) > 100).astype(int),
        "hours": score + rng.normal(0, 0.5, rows),
        "segment": np.where(score > 8, "high", np.where(score > 5, "mid", "low")),
    }).to_csv(path, index=False)
    return path


def jobs(data_dir: str, table: Path, quick: bool) -> dict[str, list[list[str]]]:
    """The commands each side runs (``{out}`` is that side's output folder)."""
    synth = ["reproduce", "synthetic", "--out", "{out}/synthetic", "--no-progress"]
    census = ["reproduce", "census", "--group", "1", "--runs", "1", "--data-dir", data_dir,
              "--out", "{out}/census"]
    train = ["train", "--train", str(table), "--task", "clicked:binary", "--task",
             "hours:regression", "--task", "segment:multiclass", "--id", "user_id",
             "--epochs", "3", "--batch-size", "256"]
    if quick:
        synth += ["--runs", "2", "--steps", "40", "--lr", "0.01", "--n-train", "2000"]
        census += ["--nrows", "4000", "--epochs", "1", "--models", "mmoe,shared_bottom"]
    return {
        "synthetic": [synth],
        "census": [census],
        "train": [train + ["--out", "{out}/model"],
                  ["predict", "{out}/model", str(table), "--out", "{out}/preds.csv"],
                  ["evaluate", "{out}/model", str(table), "--json", "{out}/eval.json"]],
        "train_stream": [train + ["--stream", "--buffer-rows", "2048", "--out",
                                  "{out}/model_stream"]],
    }


def run_side(src: Path, out: Path, commands: dict[str, list[list[str]]]) -> None:
    """Run every job with ``src`` first on the path; a job whose folder exists is skipped."""
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}
    for name, steps in commands.items():
        done = out / f".{name}.done"
        if done.exists():
            continue
        for step in steps:
            argv = [a.replace("{out}", str(out)) for a in step]
            print(f"[{out.name}] mmoe {' '.join(argv)}", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, "-m", "mmoe", *argv], env=env, check=True,
                           cwd=out)
        done.touch()


def _strip(value):
    """JSON with the volatile keys removed, recursively."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _diff_json(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}/{k}: only in {'base' if k in a else 'head'}"
               for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += _diff_json(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _diff_json(x, y, f"{where}[{i}]")]
    same = a == b or (isinstance(a, float) and isinstance(b, float) and np.isnan(a)
                      and np.isnan(b))
    return [] if same else [f"{where}: {a!r} != {b!r}"]


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def compare(base: Path, head: Path) -> dict[str, list[str]]:
    """Differences per output (empty lists: identical)."""
    report: dict[str, list[str]] = {}
    for rel in ("synthetic/results.json", "census/results.json", "model/metrics.json",
                "model_stream/metrics.json", "eval.json"):
        a, b = base / rel, head / rel
        if not (a.exists() and b.exists()):
            report[rel] = ["missing"]
            continue
        report[rel] = _diff_json(_strip(json.loads(a.read_text())),
                                 _strip(json.loads(b.read_text())))
    for rel in ("model/model.pt", "model_stream/model.pt"):
        sa, sb = _state(base / rel), _state(head / rel)
        report[rel] = ([f"keys differ: {sorted(set(sa) ^ set(sb))}"] if set(sa) != set(sb)
                       else [k for k in sa if not torch.equal(sa[k], sb[k])])
    same = (base / "preds.csv").read_bytes() == (head / "preds.csv").read_bytes()
    report["preds.csv"] = [] if same else ["bytes differ"]
    return report


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
                    help="git revision to check (default: this working tree)")
    ap.add_argument("--data-dir", default=os.environ.get("MMOE_DATA_DIR"))
    ap.add_argument("--work", default="results/identical")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--only", choices=("base", "head"), help="run one side, compare nothing")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    if args.fresh:
        shutil.rmtree(work / "base", ignore_errors=True)
        shutil.rmtree(work / "head", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    sides = {"base": checkout(args.base, work / "base-tree") / "src",
             "head": (checkout(args.head, work / "head-tree") if args.head else ROOT) / "src"}
    table = work / "fixed.csv"
    if not table.exists():
        fixed_table(table)
    commands = jobs(args.data_dir, table, args.quick)
    for side, src in sides.items():
        if args.only in (None, side):
            (work / side).mkdir(exist_ok=True)
            run_side(src, work / side, commands)
    if args.only:
        return
    report = compare(work / "base", work / "head")
    identical = not any(report.values())
    print(json.dumps({"base": args.base, "identical": identical, "differences": report},
                     indent=1))
    sys.exit(0 if identical else 1)


if __name__ == "__main__":
    main()
