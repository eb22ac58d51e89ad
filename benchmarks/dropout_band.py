"""Where the default dropout should stop: `mmoe train` with dropout 0.1 in the experts and
towers and on the gates (``MEDIUM_DROPOUT``, the default for 10,001 to 500,000 training rows)
against the same run without, on tables above the tabular suite's, per network seed. Prints
JSON (validation and test AUC per task, and GAUC on a recommender log).

Both runs are stated in full, so the script measures the dropout on either side of the
band's end (``mmoe.config.model.MEDIUM_ROWS``).

    # Census-Income, the paper's group 1 tasks (199,523 training rows)
    python benchmarks/dropout_band.py census --data-dir ../shared/data/census-income \\
        --seeds 0,1 --models mmoe,single_task
    # a recommender log: a directory written by `mmoe data generate funnel` (1M rows)
    python benchmarks/dropout_band.py funnel --data-dir /tmp/f1m --seeds 0
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from mmoe import ModelConfig
from mmoe.app.fit import train_model_dir
from mmoe.app.predict import evaluate_dir
from mmoe.app.spec import build_run_spec
from mmoe.config.model import MEDIUM_DROPOUT
from mmoe.data.datasets.census import load_census
from mmoe.models.registry import is_gated


def census_spec(data_dir: str | None, work: Path) -> tuple[dict, Path, str | None]:
    """Census group 1 as Parquet files in ``work``: (spec flags, test file, group column)."""
    data = load_census(data_dir, group=1)
    cols = list(data.numeric) + list(data.categorical)
    for name, frame in (("train", data.train), ("valid", data.valid), ("test", data.test)):
        out = frame[cols].copy()
        for task in data.tasks:
            out[task.name] = frame[task.column]
        out.to_parquet(work / f"{name}.parquet", index=False)
    flags = {"train": str(work / "train.parquet"), "valid": str(work / "valid.parquet"),
             "tasks": [f"{t.name}:binary" for t in data.tasks]}
    return flags, work / "test.parquet", None


def funnel_spec(data_dir: str, work: Path) -> tuple[dict, Path, str | None]:
    """A generated recommender log: its own config file (``mmoe.toml``)."""
    return {"config_file": str(Path(data_dir) / "mmoe.toml")}, Path(data_dir) / "test", "user_id"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", choices=("census", "funnel"))
    ap.add_argument("--data-dir", default=os.environ.get("MMOE_DATA_DIR"))
    ap.add_argument("--seeds", default="0", help="comma-separated network seeds")
    ap.add_argument("--models", default="mmoe", help="comma-separated model names")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.data == "funnel" and not args.data_dir:
        ap.error("funnel needs --data-dir, a directory from `mmoe data generate funnel`")
    results: dict = {"data": args.data, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        flags, test, group = (census_spec(args.data_dir, work) if args.data == "census"
                              else funnel_spec(args.data_dir, work))
        config = flags.pop("config_file", None)
        for model in args.models.split(","):
            for seed in map(int, args.seeds.split(",")):
                gated = is_gated(ModelConfig(model))
                on = {"dropout": MEDIUM_DROPOUT, "gate_dropout": MEDIUM_DROPOUT if gated else 0.0}
                for label, extra in (("dropout", on), ("none", {"dropout": 0.0,
                                                                "gate_dropout": 0.0})):
                    spec = build_run_spec(config, model=model, seed=seed,
                                          threads=args.threads, **flags, **extra)
                    out = work / f"{model}-{seed}-{label}"
                    train_model_dir(spec, out, progress=False)
                    as_run = json.loads((out / "config.json").read_text())["model"]
                    valid = json.loads((out / "metrics.json").read_text())["valid"]
                    scores = {"valid": valid, "test": evaluate_dir(out, test, group_by=group)}
                    keep = {"auc", "gauc", "r2", "accuracy"}
                    results["runs"].append({
                        "model": model, "seed": seed, "run": label,
                        "dropout": as_run["dropout"], "gate_dropout": as_run["gate_dropout"],
                        **{split: {task: {k: round(v, 4) for k, v in m.items() if k in keep}
                                   for task, m in s.items()} for split, s in scores.items()}})
                    print(json.dumps(results["runs"][-1]), flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
