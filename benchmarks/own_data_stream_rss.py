"""Peak RSS of `mmoe train --stream` on 1x and 10x rows: prints JSON.

Each run is a fresh process; its peak RSS comes from getrusage(RUSAGE_CHILDREN) in a
wrapper process that runs only that one child. Files are Parquet with 50k-row row groups
(a Parquet reader holds one row group at a time, so the row-group size bounds memory too).

    python benchmarks/own_data_stream_rss.py [--rows 200000] [--factor 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

WRAPPER = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def write_rows(path: Path, rows: int, seed: int = 0, group: int = 50_000) -> None:
    """Mixed-type rows with missing values and two tasks, written group by group."""
    writer = None
    rng = np.random.default_rng(seed)
    for start in range(0, rows, group):
        n = min(group, rows - start)
        x = rng.normal(size=(n, 6))
        city = rng.choice(np.array(["a", "b", "c", "d", "e"]), n)
        y1 = np.where(x[:, 0] + x[:, 1] + (city == "a") > 0.5, "yes", "no")
        y2 = 100 + 30 * x[:, 2] - 20 * x[:, 3] + rng.normal(size=n)
        cols = {f"x{i}": np.where(rng.random(n) < 0.05, np.nan, x[:, i]) for i in range(6)}
        table = pa.table({**cols, "city": city, "buys": y1, "spend": y2})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def peak_rss_mb(train: Path, out: Path) -> float:
    cmd = [sys.executable, "-m", "mmoe", "train", "--train", str(train), "--task",
           "buys:binary:yes", "--task", "spend:regression", "--stream", "--epochs", "1",
           "--threads", "1", "--out", str(out)]
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True,
                          text=True, check=True)
    return int(proc.stdout.strip().splitlines()[-1]) / 1024  # KiB -> MiB (Linux)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--factor", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        small, big = d / "small.parquet", d / "big.parquet"
        write_rows(small, args.rows)
        write_rows(big, args.rows * args.factor)
        rss_small = peak_rss_mb(small, d / "m_small")
        rss_big = peak_rss_mb(big, d / "m_big")
    print(json.dumps({"rows_1x": args.rows, "rows_10x": args.rows * args.factor,
                      "peak_rss_mb_1x": round(rss_small, 1),
                      "peak_rss_mb_10x": round(rss_big, 1),
                      "ratio": round(rss_big / rss_small, 3)}))


if __name__ == "__main__":
    main()
