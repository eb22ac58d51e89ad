"""What a run reads from a table: its inputs and how each is encoded, its labels and their
classes, and the columns it keeps out of the inputs. `mmoe train` prints it before training
and saves it as ``schema.json`` in the model directory; `mmoe describe DIR` shows it with the
model's size, training settings, metrics and versions.
"""

from __future__ import annotations

import os
from typing import Any

from ..data.encoders import TableEncoder
from .tables import feature_table


def schema(encoder: TableEncoder, config: dict[str, Any]) -> dict[str, Any]:
    """The schema of a fitted run: ``config`` is the run's settings (``RunSpec.to_dict()`` or
    a model directory's ``config.json``).

    Example:
        >>> import pandas as pd
        >>> from mmoe.config import TaskSpec
        >>> df = pd.DataFrame({"a": [1.0, 2.0], "uid": ["u", "v"], "y": ["no", "yes"]})
        >>> enc = TableEncoder([TaskSpec("y", positive="yes")], exclude=["uid"]).fit(df)
        >>> s = schema(enc, {"columns": {"id": ["uid"]}})
        >>> s["tasks"][0]["classes"], s["not_inputs"]
        (['no', 'yes'], {'uid': 'id'})
    """
    cols = config.get("columns") or {}
    inputs = [{"column": f.name, "kind": f.kind,
               **({"encoding": encoder.encodings[f.name].kind,
                   "width": encoder.encodings[f.name].width} if f.kind == "numeric" else {})}
              for f in encoder.specs()]
    roles: dict[str, str] = {}
    for column in cols.get("id") or ():
        roles[column] = "id"
    for column in encoder.exclude:
        roles.setdefault(column, "excluded")
    if encoder.weight_column:
        roles[encoder.weight_column] = "sample weight"
    if cols.get("group_by"):
        roles.setdefault(cols["group_by"], "groups rows for GAUC")
    tasks = [{"name": t.name, "column": t.column, "kind": t.kind,
              **({"classes": list(t.classes)} if t.classes else {}),
              **({"positive": t.positive} if t.kind == "binary" else {}),
              **({"after": t.after} if t.after else {})} for t in encoder.tasks]
    return {"inputs": inputs, "tasks": tasks, "not_inputs": roles}


def tasks_text(info: dict[str, Any]) -> str:
    """The labels and the columns kept out of the inputs, as `mmoe train` prints them.

    Example:
        >>> print(tasks_text({"tasks": [{"name": "y", "column": "y", "kind": "binary",
        ...                              "classes": ["no", "yes"], "positive": "yes"}],
        ...                   "not_inputs": {"uid": "id"}}))
        task  label column  kind    classes
        ----  ------------  ------  ------------------------
        y     y             binary  positive 'yes' (vs 'no')
        not inputs: uid (id)
    """
    rows = []
    for t in info["tasks"]:
        classes = t.get("classes") or []
        if t["kind"] == "binary" and len(classes) == 2:
            other = next(c for c in classes if c != t.get("positive"))
            what = f"positive {t.get('positive')!r} (vs {other!r})"
        elif t["kind"] == "multiclass":
            shown = ", ".join(map(str, classes[:8])) + (" ..." if len(classes) > 8 else "")
            what = f"{len(classes)} classes: {shown}"
        else:
            what = ""
        if t.get("after"):
            what = f"{what}; follows {t['after']}".strip("; ")
        rows.append([t["name"], t["column"], t["kind"], what])
    header = ["task", "label column", "kind", "classes"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, ["-" * w for w in widths], *rows]]
    roles = info.get("not_inputs") or {}
    if roles:
        lines.append("not inputs: " + ", ".join(f"{c} ({r})" for c, r in roles.items()))
    return "\n".join(lines)


def schema_text(encoder: TableEncoder, config: dict[str, Any], embedding_dim: int) -> str:
    """The inputs' table and the tasks' table."""
    model, training = config.get("model") or {}, config.get("training") or {}
    return (feature_table(encoder, embedding_dim, bool(model.get("wide")),
                          bool(model.get("cross")),
                          # a run saved before row-wise Adagrad trained its tables by Adam
                          training.get("table_optimizer", "adam"))
            + "\n" + tasks_text(schema(encoder, config)))


def describe_model_dir(path: str | os.PathLike) -> str:
    """What `mmoe describe DIR` prints: versions, the model and its size, how it was trained,
    the schema, and the validation metrics of the weights kept.

    Example:
        >>> text = describe_model_dir(model_dir)
        >>> [line.split(":")[0] for line in text.splitlines()[:3]]
        ['model directory', 'model', 'training']
    """
    from ..train.model_dir import load_model_dir, read_manifest
    from .predict import format_metrics

    md = load_model_dir(path)
    manifest, cfg, metrics = read_manifest(path), md.config, md.metrics
    m, t = cfg.get("model", {}), cfg.get("training", {})
    params = sum(p.numel() for p in md.model.parameters())
    shape = (f"{m.get('num_experts')} experts x {tuple(m.get('expert_units') or ())}, "
             f"towers {tuple(m.get('tower_units') or ())}")
    lines = [
        f"model directory: {path} (mmoe {manifest.get('mmoe_version')}, git "
        f"{cfg.get('git_commit') or 'unknown'}, format {manifest.get('format_version')})",
        f"model: {m.get('name')}, {params:,} parameters; {shape}; embedding width "
        f"{m.get('embedding_dim')}",
        f"training: {metrics.get('epochs_run', len(metrics.get('history', [])))} epochs run "
        f"of {t.get('epochs')}, best epoch {metrics.get('best_epoch')} by "
        f"{metrics.get('monitor') or 'the first task'}; batch {t.get('batch_size')}, lr "
        f"{t.get('lr')} ({t.get('lr_schedule', 'constant')}), weight decay "
        f"{t.get('weight_decay')}, seed {t.get('seed')}; data {cfg.get('data', {}).get('train')}",
        "",
        schema_text(md.encoder, cfg, int(m.get("embedding_dim") or 8)),
        "",
        f"validation metrics ({metrics.get('valid_rows')} rows):",
        format_metrics(metrics.get("valid", {})),
    ]
    return "\n".join(lines)
