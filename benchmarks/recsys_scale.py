"""Scale on two cores: generate a funnel of ``--rows`` impressions (default 10M rows, 1M users,
200k items), train mmoe's MMoE on it with `mmoe train --stream` (one epoch), evaluate on the
test split per user, and report each step's peak RSS and wall time beside the oracle.

    python benchmarks/recsys_scale.py --work /tmp/recsys-scale --out docs/recsys/scale.json

Every step is a fresh process; its peak RSS comes from getrusage(RUSAGE_CHILDREN) in a
wrapper process that runs only that one child. ``--data`` reuses a generated directory.
``--generate-only`` measures the generator alone (e.g. ``--rows 100000000``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

WRAPPER = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")


def measured(cmd: list[str], log: Path) -> dict:
    """Run ``cmd`` (its output to ``log``); its wall seconds and peak RSS (MiB)."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], stdout=subprocess.PIPE,
                              stderr=out, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed; see {log}")
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": int(lines[-1]) / 1024,
            "output": lines[:-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="directory for data and models")
    ap.add_argument("--data", type=Path, help="a generated funnel directory to reuse")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    mmoe = [sys.executable, "-m", "mmoe"]
    result: dict = {"config": {k: str(v) for k, v in vars(args).items()}}
    data = args.data
    if data is None:
        data = args.work / f"funnel-{args.rows}"
        result["generate"] = measured(
            [*mmoe, "data", "generate", "funnel", "--rows", str(args.rows), "--users",
             str(args.users), "--items", str(args.items), "--out", str(data)],
            args.work / "generate.log")
        print(json.dumps(result["generate"]), flush=True)
    if not args.generate_only:
        model = args.work / "model"
        result["train"] = measured(
            [*mmoe, "train", "--config", str(data / "mmoe.toml"), "--stream", "--epochs",
             str(args.epochs), "--threads", str(args.threads), "--overwrite", "--out",
             str(model)], args.work / "train.log")
        print(json.dumps(result["train"]), flush=True)
        result["evaluate"] = measured(
            [*mmoe, "evaluate", str(model), str(data / "test"), "--group-by", "user_id",
             "--json", "-"], args.work / "evaluate.log")
        result["test"] = json.loads("\n".join(result["evaluate"].pop("output")))
        metrics = json.loads((model / "metrics.json").read_text())
        result["samples_per_s"] = metrics.get("samples_per_s")
        result["oracle"] = json.loads((data / "oracle.json").read_text())["test"]
        print(json.dumps({k: result[k] for k in ("test", "oracle")}, indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
