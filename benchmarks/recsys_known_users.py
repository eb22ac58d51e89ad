"""Where the oracle gap on the generated funnel comes from: `mmoe train` with the generated
config on the rows as written, and on the same rows with what the oracle reads and no log
holds, each user's and each item's true latent vector (a_u, b_i), added as numeric columns;
then `mmoe evaluate --group-by user_id` on the test split. docs/recsys/known_users.json was
measured on the world without attributes (``--attribute-share 0``), as below; on the default
world the attribute columns stay in every variant.

    mmoe data generate funnel --rows 1000000 --attribute-share 0 --out funnel
    mmoe data generate funnel --rows 1000000 --users 3000 --attribute-share 0 --out funnel-3k
    python benchmarks/recsys_known_users.py --data funnel --data funnel-3k --work /tmp/known \\
        --out docs/recsys/known_users.json

Variants (the same rows, splits, config and seed; only the columns differ):

- ``ids``: the log as written (hashed user and item ids, the clicked-items history, context);
- ``ids + a_u``: and the user's true latent vector;
- ``ids + a_u + b_i``: and the item's;
- ``a_u + b_i, no ids``: the true latents and the context alone: nothing left to estimate
  from the labels, so what separates it from the oracle is the network's approximation of
  the latents' products (r_c, r_p).

The steps between them split the gap: the users' latents, the items' latents, and the
network's own share.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mmoe.data.datasets.funnel import FunnelSpec, funnel_world, read_generator_info, split_rows

SPLITS = ("train", "valid", "test")
IDS = ("user_id", "item_id", "history")
#: variant -> (keeps the user latents, keeps the item latents, keeps the ids)
VARIANTS = {"ids": (False, False, True), "ids + a_u": (True, False, True),
            "ids + a_u + b_i": (True, True, True), "a_u + b_i, no ids": (True, True, False)}


def with_latents(data: Path, out: Path) -> list[str]:
    """Copy generated funnel ``data`` to ``out`` with each row's user and item latent vectors
    as columns ``user_latent_j`` and ``item_latent_j``; returns the suffixes j
    (``"0" .. "k-1"``)."""
    world = funnel_world(FunnelSpec(**read_generator_info(data)["spec"]))
    k = world.user_latent.shape[1]
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
        for shard in sorted((data / split).glob("*.parquet")):
            table = pq.read_table(shard)
            a = world.user_latent[table.column("user_id").to_numpy()]
            b = world.item_latent[table.column("item_id").to_numpy()]
            for j in range(k):
                table = (table.append_column(f"user_latent_{j}", pa.array(a[:, j]))
                         .append_column(f"item_latent_{j}", pa.array(b[:, j])))
            pq.write_table(table, out / split / shard.name)
    (out / "generator.json").write_bytes((data / "generator.json").read_bytes())
    return [str(j) for j in range(k)]


def variant_config(data: Path, out: Path, variant: str, dims: list[str]) -> Path:
    """The generated ``mmoe.toml`` of ``data`` with the columns ``variant`` leaves out added
    to ``exclude`` (and, without ids, their feature specs removed), written into ``out``."""
    users, items, ids = VARIANTS[variant]
    drop = ([f"user_latent_{j}" for j in dims if not users]
            + [f"item_latent_{j}" for j in dims if not items] + ([] if ids else list(IDS)))
    text = (data / "mmoe.toml").read_text()
    text = text.replace("exclude = [", "exclude = [" + "".join(f'"{c}", ' for c in drop), 1)
    if not ids:
        text = re.sub(r"\[features\.[^\]]+\]\n(?:[^\[\n][^\n]*\n)*\n?", "", text)
    path = out / (re.sub(r"\W+", "-", variant).strip("-") + ".toml")
    path.write_text(text)
    return path


def train_and_evaluate(config: Path, data: Path, run: Path, threads: int) -> dict:
    """`mmoe train --config CONFIG`, then the test metrics per user."""
    mmoe = [sys.executable, "-m", "mmoe"]
    subprocess.run([*mmoe, "train", "--config", str(config), "--out", str(run), "--threads",
                    str(threads)], check=True, stdout=subprocess.DEVNULL)
    proc = subprocess.run([*mmoe, "evaluate", str(run), str(data / "test"), "--group-by",
                           "user_id", "--json", "-"], check=True, stdout=subprocess.PIPE,
                          text=True)
    return json.loads(proc.stdout)


def markdown(rows: list[dict]) -> str:
    lines = ["| rows | users | items | training impressions per user | columns | click AUC | "
             "gap | purchase AUC | gap |", "|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        o = r["oracle"]
        for name, m in [("oracle (true probabilities)", o), *r["variants"].items()]:
            gaps = ["" if m is o else f"{o[t]['auc'] - m[t]['auc']:.4f}"
                    for t in ("click", "purchase")]
            lines.append(f"| {r['rows']:,} | {r['users']:,} | {r['items']:,} | "
                         f"{r['per_user']:.0f} | {name} | "
                         f"{m['click']['auc']:.4f} | {gaps[0]} | {m['purchase']['auc']:.4f} | "
                         f"{gaps[1]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, action="append", required=True,
                    help="a directory from mmoe data generate funnel (repeatable)")
    ap.add_argument("--work", type=Path, required=True, help="scratch directory (created)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True, help="JSON; a .md beside it")
    args = ap.parse_args()
    rows = []
    for i, data in enumerate(args.data):
        spec = read_generator_info(data)["spec"]
        copy = args.work / f"{i}-data"
        dims = with_latents(data, copy)
        start, stop = split_rows(FunnelSpec(**spec))["train"]
        row = {"data": data.name, "rows": spec["rows"], "users": spec["users"],
               "items": spec["items"], "per_user": (stop - start) / spec["users"],
               "oracle": json.loads((data / "oracle.json").read_text())["test"],
               "variants": {}}
        for variant in VARIANTS:
            config = variant_config(data, copy, variant, dims)
            row["variants"][variant] = train_and_evaluate(
                config, copy, args.work / f"{i}-{config.stem}", args.threads)
            print(f"{data.name} {variant}: click AUC "
                  f"{row['variants'][variant]['click']['auc']:.4f}", flush=True)
        rows.append(row)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))
    args.out.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
