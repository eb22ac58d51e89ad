"""A run spec as the TOML config file `mmoe train --config` reads (the inverse of
:func:`~mmoe.app.spec.build_run_spec`): what `mmoe tune` writes.

Every setting is written, so the file states the run whole and a later change of a default
does not change it; data paths are absolute, so the file works from any directory.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

import tomli_w

from .spec import RunSpec


def _plain(value: Any) -> Any:
    """Without ``None`` (TOML has no null): dropped from tables and lists; tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value if v is not None]
    return value


def config_text(spec: RunSpec, comment: str = "") -> str:
    """TOML text of ``spec``; ``comment`` lines go first, each prefixed with ``#``.

    Example:
        >>> from mmoe.app.spec import build_run_spec
        >>> spec = build_run_spec(train="/d/t.csv", tasks=["y:binary:yes"], lr=0.01)
        >>> path = tmp_path / "run.toml"
        >>> _ = path.write_text(config_text(spec, "tuned"))
        >>> build_run_spec(str(path)) == spec
        True
    """
    d = spec.to_dict()
    data = dict(d["data"])
    for key in ("train", "valid"):
        if data.get(key):
            data[key] = os.path.abspath(data[key])
    tasks = [{k: v for k, v in asdict(t).items() if k != "classes" or v} for t in spec.tasks]
    doc = {"tasks": tasks, "data": data, "columns": d["columns"], "features": d["features"],
           "model": d["model"], "training": d["training"]}
    head = "".join(f"# {line}".rstrip() + "\n" for line in comment.splitlines())
    return head + tomli_w.dumps(_plain(doc))


#: what each key of a config file means (the template's comments and docs/config.md)
KEY_HELP: dict[str, dict[str, str]] = {
    "data": {
        "train": "training file (CSV, Parquet, a folder of shards), relative to this file",
        "valid": "validation file (default: a held-out share of train)",
        "valid_fraction": "share of train held out when there is no valid file",
        "stream": "train batch by batch from the file (bounded memory)",
        "buffer_rows": "shuffle-buffer rows when streaming",
        "chunk_rows": "rows read at a time",
        "fit_rows": "rows the encoder is fitted on when streaming",
        "tensorboard": "write TensorBoard event files into the model directory",
    },
    "columns": {
        "id": "columns copied to predictions, never inputs",
        "weight": "per-row sample-weight column",
        "numeric": "columns to treat as numeric (default: inferred)",
        "categorical": "columns to treat as categorical (default: inferred)",
        "exclude": "columns never used as inputs",
        "group_by": "column grouping rows (users) for GAUC, NDCG@10 and MRR",
        "numeric_encoding": "auto (ple), standard, quantile, ple or periodic",
    },
    "model": {
        "name": "registered model (mmoe models lists them)",
        "expert_units": "hidden units of each expert (or of the shared bottom), per layer",
        "num_experts": "experts per bank",
        "tower_units": "hidden units of each task tower, per layer",
        "gate_bias": "a bias inside the gates' softmax",
        "dropout": "dropout in experts and towers (default: 0.1 for 10,001 to 500,000 training "
                   "rows, else 0)",
        "batch_norm": "batch norm on the encoded input",
        "hidden_norm": "batch norm in every hidden layer of experts and towers (recommender logs)",
        "wide": "a learnt bias per id (table row) and task, added to the logit (Wide & Deep)",
        "cross": "also feed the products of every two lookup columns of one width",
        "options": "the model's own options, a table (see mmoe models)",
        "gate_dropout": "gated models: drop each expert's gate weight with this probability "
                        "(default: as dropout)",
        "gate_balance": "gated models: weight of a load-balancing penalty on the gates",
        "embedding_dim": "width of each categorical embedding",
    },
    "training": {
        "epochs": "max epochs (default: from the rows, enough for ~4000 steps, 10 to 200)",
        "batch_size": "rows per step (default: the power of two nearest rows/64, 32 to 1024)",
        "lr": "Adam learning rate, the peak of the schedule",
        "lr_schedule": "cosine (5% warm-up, then cosine to zero) or constant",
        "warmup": "share of the steps spent warming up",
        "weight_decay": "Adam weight decay (L2 on all weights)",
        "seed": "seeds initialisation, shuffling and dropout",
        "monitor": "what picks the best epoch: combined (default), a task, or METRIC:TASK",
        "patience": "epochs without improvement before stopping (default: never)",
        "restore_best": "end with the weights of the best validation epoch",
        "checkpoint_every": "also checkpoint every N steps",
        "threads": "intra-op threads (default: 1 for small models)",
        "loss_weighting": "static, uncertainty, gradnorm or pcgrad (default: uncertainty for at "
                          "most 10,000 training rows whose tasks share layers, else static)",
        "gradnorm_alpha": "GradNorm's restoring-force exponent",
        "on_nonfinite": "a NaN/inf loss or gradient: stop or skip the step",
        "compile": "train through torch.compile",
        "precision": "fp32, bf16 or fp16 (autocast; loss and metrics in float32)",
        "stop_if_all_skipped": "stop when every step of an epoch was skipped",
        "table_optimizer": "lookup tables' (hashed ids, sequences) optimizer: adagrad or adam",
        "table_lr": "adagrad: the tables' learning rate",
        "table_lr_scale": "adam: the tables' learning rate / lr",
        "ensemble": "train K models from seeds seed..seed+K-1, predict with their mean logits "
                    "(default: 5 for at most 10,000 training rows, else 1)",
    },
}


def _value(value: Any) -> str:
    """One TOML value on one line."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": _plain(value)}).strip()[len("v = "):]


def template() -> str:
    """``mmoe config init``: a config file with every key, its default and what it means
    (keys without a default commented out); it parses to the defaults.

    Example:
        >>> import tomllib
        >>> sorted(tomllib.loads(template()))
        ['columns', 'data', 'model', 'tasks', 'training']
    """
    from .spec import build_run_spec

    defaults = build_run_spec(train="train.csv", tasks=["label:binary:yes"]).to_dict()
    lines = ["# mmoe train --config run.toml --out DIR   (flags given on the command line win)",
             "# Every key, its default and what it means; reference: docs/config.md.",
             "",
             "# one per task: COLUMN:KIND[:POSITIVE][:after=TASK], KIND binary | regression | "
             "multiclass",
             'tasks = ["label:binary:yes"]', ""]
    for section, keys in KEY_HELP.items():
        lines.append(f"[{section}]")
        width = max(len(k) + len(_value(defaults[section][k] if defaults[section][k]
                                        is not None else "")) for k in keys) + 4
        for key, meaning in keys.items():
            value = defaults[section][key]
            if isinstance(value, dict) and not value:
                lines.append(f"# {key} = {{}}".ljust(width + 2) + f"  # {meaning}")
                continue
            text = f"{key} = {_value(value)}" if value is not None else f"# {key} ="
            lines.append(text.ljust(width) + f"  # {meaning}")
        lines.append("")
    lines += ["# one table per column stated exactly (any number of them), e.g.",
              "# [features.history]",
              '# kind = "sequence"     # numeric | categorical | hashed | sequence',
              '# share = "item_id"     # read another column\'s table',
              "# max_len = 20          # sequences: the most recent ids kept",
              '# keys: kind, embedding_dim, min_count, buckets, max_len, pooling ("sum" | '
              '"mean"), delimiter, share, encoding (numeric: standard, quantile, ple, '
              'periodic)', ""]
    return "\n".join(lines)
