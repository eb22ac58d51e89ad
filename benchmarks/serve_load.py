"""Load on `mmoe serve` over loopback: requests/s, rows/s, p50/p99 latency, errors, and the
server's memory before and after 100k requests.

Starts the server as a subprocess (on a demo model it trains unless --model-dir is given),
then drives it with keep-alive HTTP/1.1 connections from an asyncio client (raw sockets,
requests encoded once) at each concurrency, for single-row and 1,000-row requests. Each
scenario stops by itself after --requests requests or --seconds seconds.

    python benchmarks/serve_load.py --out docs/serving/load.json   # ~3 min on 2 cores

Writes the JSON and a Markdown table beside it (load.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (uvicorn workers), in MB."""
    total = 0
    pids = [pid] + [int(p) for p in subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def demo_model(work: Path) -> Path:
    """A demo-table MMoE (three tasks, mixed columns), trained briefly."""
    mmoe = [sys.executable, "-m", "mmoe"]
    subprocess.run([*mmoe, "data", "generate", "table", "--out", str(work / "demo")], check=True)
    subprocess.run([*mmoe, "--quiet", "train", "--train", str(work / "demo" / "train.csv"),
                    "--valid", str(work / "demo" / "valid.csv"), "--task",
                    "churned:binary:yes", "--task", "spend:regression", "--task",
                    "segment:multiclass", "--id", "customer_id", "--epochs", "3",
                    "--out", str(work / "model")], check=True, stdout=subprocess.DEVNULL)
    return work / "model"


def request_bytes(rows: list[dict], port: int) -> bytes:
    body = json.dumps({"rows": rows}).encode()
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               payload: bytes) -> int:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return status


async def drive(port: int, payload: bytes, concurrency: int, requests: int,
                seconds: float) -> dict:
    """``concurrency`` connections sending ``payload`` back to back until ``requests`` are
    answered or ``seconds`` pass."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors, sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while sent < requests and time.perf_counter() < deadline:
            sent += 1
            t0 = time.perf_counter()
            try:
                status = await _one(reader, writer, payload)
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            latencies.append(time.perf_counter() - t0)
            errors += status != 200
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "errors": errors, "seconds": wall,
            "requests_per_s": len(latencies) / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                if b"200 OK" in s.recv(1000):
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("the server did not start")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def markdown(res: dict) -> str:
    lines = [f"Server: `mmoe serve --workers {res['workers']}` "
             f"({res['engine']}), {res['cpus']} CPUs, {res['python']}; client: asyncio, "
             "keep-alive, same machine.", "",
             "| rows/request | concurrency | requests | requests/s | rows/s | p50 ms | p99 ms "
             "| errors |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in res["scenarios"]:
        lines.append(f"| {s['rows']:,} | {s['concurrency']} | {s['requests']:,} | "
                     f"{s['requests_per_s']:,.0f} | {s['rows_per_s']:,.0f} | "
                     f"{s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['errors']} |")
    m = res["memory"]
    lines += ["", f"Server RSS: {m['start_mb']:.0f} MB after start and warm-up, "
              f"{m['end_mb']:.0f} MB after {m['requests']:,} more requests "
              f"({100 * (m['end_mb'] / m['start_mb'] - 1):+.1f}%)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", help="model to serve (default: train a demo model)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--requests", type=int, default=20_000, help="per scenario, at most")
    ap.add_argument("--seconds", type=float, default=15.0, help="per scenario, at most")
    ap.add_argument("--memory-requests", type=int, default=100_000)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--out", default="results/serve_load.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mmoe-serve-"))
    model = Path(args.model_dir) if args.model_dir else demo_model(work)
    demo = pd.read_csv(work / "demo" / "test.csv") if not args.model_dir else None
    port = free_port()
    log = open(work / "server.log", "w")  # noqa: SIM115 (open for the server's lifetime)
    proc = subprocess.Popen([sys.executable, "-m", "mmoe", "serve", str(model), "--port",
                             str(port), "--workers", str(args.workers)], stderr=log,
                            stdout=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_ready(port, proc)
        schema = json.loads(subprocess.run(
            ["curl", "-s", f"http://127.0.0.1:{port}/schema"], capture_output=True,
            text=True).stdout)
        inputs = [i["column"] for i in schema["inputs"]]
        if demo is None:
            raise SystemExit("--model-dir: give rows with --rows-file (not implemented)")
        records = json.loads(demo[inputs].to_json(orient="records"))
        payloads = {1: request_bytes(records[:1], port),
                    1000: request_bytes((records * 2)[:1000], port)}
        for payload in payloads.values():  # warm-up: every size of batch the runs will see
            asyncio.run(drive(port, payload, 32, 2000, 10))
        scenarios = []
        for rows, payload in payloads.items():
            for c in map(int, args.concurrency.split(",")):
                requests = args.requests if rows == 1 else max(200, args.requests // 20)
                r = asyncio.run(drive(port, payload, c, requests, args.seconds))
                r.update(rows=rows, concurrency=c, rows_per_s=r["requests_per_s"] * rows)
                scenarios.append(r)
                print(f"rows {rows:5d}  concurrency {c:3d}  {r['requests_per_s']:8.0f} req/s"
                      f"  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
                      f"  errors {r['errors']}", flush=True)
        start_mb = rss_mb(proc.pid)  # after every kind of request has run
        long = asyncio.run(drive(port, payloads[1], 32, args.memory_requests, 600))
        end_mb = rss_mb(proc.pid)
        res = {"workers": args.workers, "engine": schema.get("engine"),
               "cpus": os.cpu_count(), "python": platform.python_version(),
               "scenarios": scenarios,
               "memory": {"start_mb": start_mb, "end_mb": end_mb,
                          "requests": long["requests"], "errors": long["errors"]}}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
    res["shutdown_exit_code"] = proc.returncode
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
