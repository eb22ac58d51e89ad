"""Recommender benchmark on the generated funnel (mmoe data generate funnel): training
samples/s and test AUC / GAUC (per user) of mmoe's MMoE and, in the same run, torch-rechub's
and DeepCTR-Torch's MMoE on the same rows, a sparse logistic regression over the same columns
(the floor every model must clear) and the oracle (the true probabilities: the ceiling).

    python benchmarks/recsys_throughput.py --rows 1000000 --peers-python PEERS/bin/python \\
        --out docs/recsys/benchmark.json

The peers run in their own environment (benchmarks/requirements-peers.txt), never mmoe's, as
subprocesses (benchmarks/peers/recsys_peer.py). Matched configuration: every model reads the
same table rows (mmoe's hashing of user_id and item_id; history = the user's last clicked
items, mean-pooled through the item table), 16-wide embeddings for every id and categorical
column, the numeric columns standardised, MMoE with ``--experts`` experts of
``--expert-units``, towers of ``--tower-units``, batch ``--batch``, Adam lr ``--lr``, no
weight decay, ``--epochs`` epochs, ``--threads`` intra-op threads; mmoe's tables learn with
its default optimizer (row-wise Adagrad at ``--table-lr``; ``--table-optimizer adam``: lazy
Adam at ``--table-lr-scale`` x lr), the peers' with their dense Adam. Each library trains
through its own training call, its data loading included (``samples_per_s``);
``step_samples_per_s`` times the model's forward, backward and Adam step alone. A row
``NAME+FLAG...`` is mmoe's model NAME with those ``ModelConfig`` flags on: ``hidden_norm``
(batch norm in every hidden layer, as torch-rechub's MLPs have it), ``wide`` and ``cross`` (the
ids' wide terms and products: the same columns, terms the peers' MMoE does not offer).

``--out X.json`` also writes ``X.md``, the table docs/recsys.md shows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from scipy.special import logit
from sklearn.linear_model import LogisticRegression, SGDClassifier

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.app.oracle import oracle_metrics
from mmoe.config import FeatureSpec
from mmoe.data.datasets.funnel import ATTRIBUTE_COLUMNS, FunnelSpec, generate_funnel
from mmoe.data.encoders import TableEncoder
from mmoe.data.ids import group_codes
from mmoe.data.readers import read_table
from mmoe.metrics import evaluate
from mmoe.train import Trainer, predict_logits

TASKS = [TaskSpec("click", "binary", column="click", positive="1"),
         TaskSpec("purchase", "binary", column="purchase", positive="1")]
EXCLUDE = ["row", "p_click", "p_buy_given_click", "p_click_buy"]
NUMERIC = ["price", "position"]
CATEGORICAL = ["item_category", "device", "hour"]


def categorical_columns(df) -> list[str]:
    """The categorical columns of a funnel's table: the attributes where it has them."""
    return CATEGORICAL + [c for c in ATTRIBUTE_COLUMNS if c in df.columns]


def _encoder(args, train_df):
    """mmoe's encoder with the matched widths: every table ``--dim`` wide."""
    d = args.dim
    features = [FeatureSpec("user_id", "hashed", embedding_dim=d),
                FeatureSpec("item_id", "hashed", embedding_dim=d),
                FeatureSpec("history", "sequence", share="item_id", max_len=args.history_len)]
    return TableEncoder(TASKS, numeric=NUMERIC, categorical=categorical_columns(train_df),
                        exclude=EXCLUDE,
                        features=features, numeric_encoding="standard").fit(train_df)


def prepare(args, data: Path, work: Path):
    """Read and encode the splits once; write the arrays the peers read."""
    frames = {s: read_table(data / s) for s in ("train", "valid", "test")}
    enc = _encoder(args, frames["train"])
    tables = {s: enc.transform(df) for s, df in frames.items()}
    groups = {s: group_codes(df["user_id"]) for s, df in frames.items()}
    lookups = {lk.name: lk for lk in enc.input_spec(args.dim).lookups}
    names = [lk.name for lk in enc.input_spec(args.dim).lookups]
    slot = dict(zip(names, np.cumsum([0] + [lookups[n].slots for n in names]), strict=False))
    arrays = {}
    for s, t in tables.items():
        ids = t.ids.numpy()
        arrays[f"{s}_user"] = ids[:, slot["user_id"]]
        arrays[f"{s}_item"] = ids[:, slot["item_id"]]
        arrays[f"{s}_history"] = ids[:, slot["history"]:slot["history"] + args.history_len]
        arrays[f"{s}_categorical"] = t.categorical.numpy()
        arrays[f"{s}_numeric"] = t.numeric.numpy()
        arrays[f"{s}_labels"] = t.labels.numpy().astype(np.int64)
    config = {"dim": args.dim, "user_rows": lookups["user_id"].rows,
              "item_rows": lookups["item_id"].rows, "history_len": args.history_len,
              "categorical": enc.categorical,
              "categorical_rows": [len(enc.vocab[c]) + 1 for c in enc.categorical],
              "numeric": NUMERIC, "experts": args.experts,
              "expert_units": list(args.expert_units), "tower_units": list(args.tower_units),
              "batch": args.batch, "lr": args.lr, "epochs": args.epochs, "seed": args.seed,
              "threads": args.threads, "scratch": str(work) + "/"}
    np.savez(work / "encoded.npz", config=json.dumps(config), **arrays)
    return enc, tables, groups, arrays, config


def metrics_of(probs: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict:
    """AUC, GAUC (per user) and log-loss of each task from probabilities (N, 2)."""
    p = np.clip(probs.astype(np.float64), 1e-300, np.nextafter(1.0, 0.0))
    res = evaluate(TASKS, [slice(0, 1), slice(1, 2)], logit(p), labels.astype(np.float64),
                   groups=groups)
    return {t: {k: res[t][k] for k in ("auc", "gauc", "logloss")} for t in res}


def train_mmoe(name, args, enc, tables, seed, cat_scale=None, **training):
    """mmoe's model ``name`` trained through its Trainer on the encoded train table: (model,
    fit result, seconds). A name like ``mmoe+wide+cross`` turns on those settings of the
    model; ``cat_scale``: the categorical embedding's start multiplied by it (the same
    draws); ``training``: TrainConfig fields over the benchmark's."""
    torch.manual_seed(seed)
    base, *extras = name.split("+")
    model = build_model(base, enc.input_spec(args.dim), enc.tasks, num_experts=args.experts,
                        expert_units=tuple(args.expert_units),
                        tower_units=tuple(args.tower_units), **dict.fromkeys(extras, True))
    if cat_scale is not None:
        with torch.no_grad():
            model.encoder.embedding.weight.mul_(cat_scale)
    cfg = TrainConfig(**{"epochs": args.epochs, "batch_size": args.batch, "lr": args.lr,
                         "seed": seed, "threads": args.threads, "restore_best": False,
                         "table_optimizer": args.table_optimizer, "table_lr": args.table_lr,
                         "table_lr_scale": args.table_lr_scale, **training})
    start = time.perf_counter()
    result = Trainer(model, cfg, progress=False).fit(tables["train"], None)
    return model, result, time.perf_counter() - start


def run_mmoe(name, args, enc, tables, groups):
    """mmoe's model ``name`` (see :func:`train_mmoe`): its speed, valid and test metrics."""
    model, result, seconds = train_mmoe(name, args, enc, tables, args.seed)
    rows = len(tables["train"]) * args.epochs
    train_seconds = sum(r["seconds"] for r in result.history)
    scores = {}
    for split in ("valid", "test"):  # valid: for choosing settings; test: for reporting
        probs = torch.sigmoid(predict_logits(model, tables[split])).numpy()
        scores[split] = metrics_of(probs, tables[split].labels.numpy(), groups[split])
    return {"library": f"mmoe {name}", "samples_per_s": rows / train_seconds,
            "wall_seconds": seconds, **scores}


def run_peer(which, args, work, tables, groups):
    out = work / f"{which}.json"
    proc = subprocess.run([args.peers_python, str(Path(__file__).parent / "peers" /
                                                   "recsys_peer.py"), which,
                           str(work / "encoded.npz"), str(out), args.peer_mode],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"library": which, "error": " | ".join(tail)}
    res = json.loads(out.read_text())
    if args.peer_mode == "full":
        probs = np.load(work / f"{which}.npy")
        res["test"] = metrics_of(probs, tables["test"].labels.numpy(), groups["test"])
    return res


def _one_hot(arrays, split, config):
    """The same columns as a sparse design matrix: one-hot ids and categories, the history
    as a mean multi-hot over the item rows, the standardised numbers."""
    n = len(arrays[f"{split}_labels"])
    blocks = []
    for key, rows in (("user", config["user_rows"]), ("item", config["item_rows"])):
        ids = arrays[f"{split}_{key}"]
        blocks.append(sp.csr_matrix((np.ones(n), (np.arange(n), ids)), shape=(n, rows)))
    hist = arrays[f"{split}_history"]
    count = np.maximum((hist > 0).sum(1, keepdims=True), 1)
    weight = (hist > 0) / count
    rows_ = np.repeat(np.arange(n), hist.shape[1])
    blocks.append(sp.csr_matrix((weight.ravel(), (rows_, hist.ravel())),
                                shape=(n, config["item_rows"])))
    for j, rows in enumerate(config["categorical_rows"]):
        ids = arrays[f"{split}_categorical"][:, j]
        blocks.append(sp.csr_matrix((np.ones(n), (np.arange(n), ids)), shape=(n, rows)))
    blocks.append(sp.csr_matrix(arrays[f"{split}_numeric"]))
    return sp.hstack(blocks, format="csr")


def _logistic(c: float, rows: int, solver: str):
    """liblinear (exact; hours on 10M rows and millions of columns) or averaged stochastic
    gradient descent on the same objective, L2 weight alpha = 1 / (C · rows) (on the 1M
    funnel: within 0.0015 AUC of liblinear's, docs/recsys.md)."""
    if solver == "liblinear":
        return LogisticRegression(C=c, solver="liblinear", max_iter=200)
    return SGDClassifier(loss="log_loss", alpha=1.0 / (c * rows), average=True, max_iter=50,
                         tol=1e-5, random_state=0)


def run_logistic(arrays, config, groups, cs=(0.01, 0.1, 1.0), solver="liblinear"):
    """A logistic regression per task over :func:`_one_hot`; C chosen on the valid AUC."""
    x = {s: _one_hot(arrays, s, config) for s in ("train", "valid", "test")}
    start = time.perf_counter()
    probs, chosen = [], []
    for t in range(2):
        best = None
        for c in cs:
            lr = _logistic(c, x["train"].shape[0], solver)
            lr.fit(x["train"], arrays["train_labels"][:, t])
            p = lr.predict_proba(x["valid"])[:, 1]
            valid = np.zeros((len(p), 2))
            valid[:, t] = p
            auc = metrics_of(np.where(valid > 0, valid, 0.5), arrays["valid_labels"],
                             groups["valid"])[TASKS[t].name]["auc"]
            if best is None or auc > best[0]:
                best = (auc, c, lr)
        chosen.append(best[1])
        probs.append(best[2].predict_proba(x["test"])[:, 1])
    name = "" if solver == "liblinear" else f", {solver}"
    return {"library": f"logistic regression (sparse{name}, C on valid)", "C": chosen,
            "wall_seconds": time.perf_counter() - start,
            "test": metrics_of(np.stack(probs, 1), arrays["test_labels"], groups["test"])}


def markdown(result) -> str:
    lines = ["| model | train samples/s | step-only samples/s | click AUC | click GAUC | "
             "purchase AUC | purchase GAUC |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['library']} | failed: {r['error'][:80]} | | | | | |")
            continue
        speed = f"{r['samples_per_s']:,.0f}" if r.get("samples_per_s") else ""
        step = f"{r['step_samples_per_s']:,.0f}" if r.get("step_samples_per_s") else ""
        t = r.get("test")
        quality = ("| not trained (step only) | | | " if t is None else
                   f"| {t['click']['auc']:.4f} | {t['click']['gauc']:.4f} | "
                   f"{t['purchase']['auc']:.4f} | {t['purchase']['gauc']:.4f} ")
        lines.append(f"| {r['library']} | {speed} | {step} {quality}|")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="a directory from mmoe data generate funnel "
                    "(default: generate one with --rows/--users/--items/--seed)")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=30_000)
    ap.add_argument("--items", type=int, default=8_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--history-len", type=int, default=10)
    ap.add_argument("--attribute-share", type=float, default=FunnelSpec.attribute_share)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--expert-units", type=int, nargs="+", default=[64, 32])
    ap.add_argument("--tower-units", type=int, nargs="+", default=[16])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=3e-3,
                    help="Adam's learning rate, every library's (mmoe's default)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--table-optimizer", choices=["adagrad", "adam"],
                    default=TrainConfig.table_optimizer,
                    help="mmoe's tables' optimizer (TrainConfig.table_optimizer)")
    ap.add_argument("--table-lr", type=float, default=TrainConfig.table_lr,
                    help="adagrad: mmoe's tables' learning rate")
    ap.add_argument("--table-lr-scale", type=float, default=TrainConfig.table_lr_scale,
                    help="adam: mmoe's tables' learning rate over lr")
    ap.add_argument("--peers-python", help="python of the peers' environment")
    ap.add_argument("--peers", nargs="*", default=["rechub", "deepctr"])
    ap.add_argument("--peer-mode", choices=["full", "step"], default="full",
                    help="step: time the peers' training step only (no epoch, no AUC), for "
                    "tables where their full epoch takes hours")
    ap.add_argument("--models", nargs="*",
                    default=["mmoe+hidden_norm", "shared_bottom+hidden_norm", "mmoe"],
                    help="mmoe's models; NAME+FLAG... turns on those ModelConfig flags "
                    "(hidden_norm, wide, cross)")
    ap.add_argument("--lr-cs", type=float, nargs="*", default=[0.01, 0.1, 1.0],
                    help="the logistic regression's C values tried (chosen on valid AUC); "
                    "none: no logistic regression")
    ap.add_argument("--lr-solver", choices=["liblinear", "sgd"], default="liblinear",
                    help="sgd: stochastic gradient descent on the same objective, for tables "
                    "where liblinear takes hours")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = args.data
        if data is None:
            data = generate_funnel(FunnelSpec(rows=args.rows, users=args.users,
                                              items=args.items, seed=args.seed,
                                              history_len=args.history_len,
                                              attribute_share=args.attribute_share),
                                   work / "funnel")
        enc, tables, groups, arrays, config = prepare(args, data, work)
        rows = [{"library": "oracle (true probabilities)",
                 "test": {t: {k: v[k] for k in ("auc", "gauc", "logloss")}
                          for t, v in oracle_metrics(data / "test").items()}}]
        print(markdown({"rows": rows}), flush=True)
        for name in args.models:
            rows.append(run_mmoe(name, args, enc, tables, groups))
            print(markdown({"rows": rows[-1:]}), flush=True)
        for which in args.peers if args.peers_python else []:
            rows.append(run_peer(which, args, work, tables, groups))
            print(markdown({"rows": rows[-1:]}), flush=True)
        if args.lr_cs:  # last: on 10M rows liblinear takes longest of all
            rows.insert(1, run_logistic(arrays, config, groups, tuple(args.lr_cs),
                                        args.lr_solver))
            print(markdown({"rows": rows[1:2]}), flush=True)
    result = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "train_rows": len(tables["train"]), "test_rows": len(tables["test"]),
              "torch": torch.__version__, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    sys.exit(main())
