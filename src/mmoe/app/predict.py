"""Evaluate and predict with a trained model on a user's table (the library behind
`mmoe evaluate` and `mmoe predict`): regression in the label's units, multiclass as labels and
probabilities, ids kept as they were read, files read and written in chunks."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .. import _checks
from .._progress import progress_bar
from ..data.encoders import TableEncoder
from ..data.files import parquet_rows, table_format
from ..data.readers import DEFAULT_CHUNK_ROWS, iter_table
from ..data.table import TensorTable
from ..data.writers import TableWriter
from ..metrics import evaluate, task_outputs
from ..models import MultiTaskModel
from ..train.evaluation import health, model_pass, predict_logits
from ..train.model_dir import ModelDir, load_model_dir, own_files
from .tables import in_file, original_scale, text_columns, with_groups


def evaluate_table(model: MultiTaskModel, encoder: TableEncoder, table: TensorTable,
                   gates: bool = False) -> tuple[dict[str, dict[str, float]],
                                                 dict[str, Any] | None]:
    """Per-task metrics on a labelled table (regression in the label's original scale) and,
    with ``gates``, the gate health from the same pass (``None`` without gates)."""
    logits, usage = model_pass(model, table, gates=gates)
    lg, labels = original_scale(encoder, model, logits.numpy(), table.labels.numpy())
    weights = None if table.weights is None else table.weights.numpy()
    groups = None if table.groups is None else table.groups.numpy()
    view = model.outputs(lg, labels)
    metrics = evaluate(view.tasks, view.slices, view.logits, view.labels, weights, groups=groups)
    return metrics, None if usage is None else health(model, usage)


def predict_frame(model: MultiTaskModel, encoder: TableEncoder, df: pd.DataFrame,
                  id_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Predictions for ``df``: id columns, then one column per task named as the task.

    binary: P(positive class), and ``<task>_label``, the positive class where that is at
    least 0.5, else the negative one; regression: the value in the label's scale; multiclass:
    the predicted class label plus ``<task>_proba_<class>`` columns; a funnel task
    (``after``): its conditional probability, plus ``<earlier>_and_<task>``, the joint.

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> df = pd.DataFrame({"uid": ["a", "b"], "x": [0.0, 1.0], "y": [0, 1]})
        >>> enc = TableEncoder([TaskSpec("y")], exclude=["uid"]).fit(df)
        >>> predict_frame(build_model("mmoe", enc.input_spec(), enc.tasks), enc, df,
        ...               ("uid",)).columns.tolist()
        ['uid', 'y', 'y_label']
    """
    table = encoder.transform(df, labels=False)
    logits, _ = original_scale(encoder, model, predict_logits(model, table).numpy())
    out: dict[str, Any] = {c: df[c].array for c in id_columns}  # values and type as read
    view = model.outputs(logits)
    for task, cols in zip(view.tasks, view.slices, strict=True):
        if task.kind == "regression":
            out[task.name] = view.logits[:, cols][:, 0]
        elif task.kind == "binary":
            out[task.name] = task_outputs(task, view.logits[:, cols])
            if task.classes:  # the label at the 0.5 threshold, as the data spells it
                out[f"{task.name}_label"] = np.asarray(task.classes, dtype=object)[
                    (out[task.name] >= 0.5).astype(int)]
        else:
            proba = task_outputs(task, view.logits[:, cols])  # (N, C)
            out[task.name] = np.asarray(task.classes, dtype=object)[proba.argmax(1)]
            for j, cls in enumerate(task.classes):
                out[f"{task.name}_proba_{cls}"] = proba[:, j]
    return pd.DataFrame(out)


def _declared_categorical(md: ModelDir) -> tuple[str, ...]:
    """Columns read as text at training (declared categorical, features with tables)."""
    return text_columns(md.config)


def evaluate_dir(model_dir: str | os.PathLike, path: str | os.PathLike,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS, group_by: str | None = None,
                 k: int = 10) -> dict[str, dict[str, float]]:
    """Per-task metrics of a model directory on a labelled file (regression in label scale);
    with ``group_by`` (a column, e.g. the user) also GAUC, NDCG@k and MRR over its groups.

    Example:
        >>> metrics = evaluate_dir(model_dir, model_data)
        >>> sorted(metrics), metrics["clicked"]["auc"] > 0.5
        (['clicked', 'hours'], True)
        >>> by_city = evaluate_dir(model_dir, model_data, group_by="city")["clicked"]
        >>> by_city["gauc"] > 0.5, by_city["gauc_skipped"]
        (True, 0)
    """
    md = load_model_dir(model_dir)
    logits, labels, weights, groups = [], [], [], []
    with in_file(path):
        for chunk in iter_table(path, chunk_rows, categorical=_declared_categorical(md)):
            table = with_groups(md.encoder.transform(chunk), chunk, group_by)
            logits.append(predict_logits(md.model, table).numpy())
            labels.append(table.labels.numpy())
            if table.weights is not None:
                weights.append(table.weights.numpy())
            if table.groups is not None:
                groups.append(table.groups.numpy())
    lg, lb = original_scale(md.encoder, md.model, np.concatenate(logits), np.concatenate(labels))
    w = np.concatenate(weights) if weights else None
    view = md.model.outputs(lg, lb)
    return evaluate(view.tasks, view.slices, view.logits, view.labels, w,
                    groups=np.concatenate(groups) if groups else None, k=k)


COUNTS = ("_groups", "_skipped")  # metrics that count (printed as integers)


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per task, one column per metric (counts as integers).

    Example:
        >>> print(format_metrics({"y": {"n": 10.0, "auc": 0.75}}))
        task  n   auc
        ----  --  ------
        y     10  0.7500
    """
    names = sorted({m for res in metrics.values() for m in res if m != "n"})
    header = ["task", "n", *names]
    rows = [[task, str(int(res.get("n", 0)))]
            + [("" if m not in res else f"{res[m]:.0f}" if m.endswith(COUNTS)
                else f"{res[m]:.4f}") for m in names]
            for task, res in metrics.items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def predict_file(model_dir: str | os.PathLike, path: str | os.PathLike,
                 out: str | os.PathLike, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 progress: bool | None = None) -> int:
    """Predict every row of ``path`` into ``out`` (CSV or Parquet by extension), in chunks.

    The id columns the model was trained with are copied when the file has them, as they
    were read: a CSV id's text (``003000`` stays ``003000``), a Parquet id's type. In a
    Parquet file written from a CSV file, an id column whose every value is an integer
    written plainly (no '+', no leading zero, within int64) is int64, other ids are text.
    ``out`` is written atomically: a failure leaves any existing ``out`` as it was.

    Progress: a bar on a terminal (``progress`` None), else a log line every 10 s
    (:func:`mmoe._progress.progress_bar`).

    Returns:
        The number of rows written.

    Example:
        >>> predict_file(model_dir, model_data, "preds.parquet")
        400
        >>> pd.read_parquet("preds.parquet").columns.tolist()
        ['user_id', 'clicked', 'clicked_label', 'hours']
    """
    _checks.output_apart(out, [path, *own_files(model_dir)])  # never over an input
    md: ModelDir = load_model_dir(model_dir)
    ids = tuple(md.config.get("columns", {}).get("id", []) or ())
    with in_file(path):
        ints = _integer_ids(path, ids, chunk_rows) \
            if table_format(path) == "csv" and table_format(out) == "parquet" else ()
    total = parquet_rows(path)  # None for CSV: rows counted as they come
    with (TableWriter(out) as writer, in_file(path),
          progress_bar(total, f"predict {os.path.basename(path)}", "row", progress, 10) as bar):
        for chunk in iter_table(path, chunk_rows, categorical=_declared_categorical(md),
                                raw=ids):
            for c in ints:
                chunk[c] = pd.arrays.ArrowExtensionArray(_as_int64(pa.array(chunk[c].array)))
            present = tuple(c for c in ids if c in chunk.columns)
            writer.write(predict_frame(md.model, md.encoder, chunk, present))
            bar.update(len(chunk))
    return writer.rows


_PLAIN_INTEGER = r"^(0|-?[1-9][0-9]{0,18})?$"  # "" is a missing id


def _as_int64(text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Plainly written integers (see :data:`_PLAIN_INTEGER`) as int64, "" as missing."""
    return pc.cast(pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text),
                   pa.int64())


def _integer_ids(path: str | os.PathLike, ids: tuple[str, ...],
                 chunk_rows: int) -> tuple[str, ...]:
    """The CSV id columns whose every value is a plainly written int64 (one pass over them)."""
    have = next(iter_table(path, 1)).columns if ids else ()
    ints = [c for c in ids if c in have]
    for chunk in iter_table(path, chunk_rows, columns=ints, raw=ints) if ints else ():
        ints = [c for c in ints if _plain_integers(pa.array(chunk[c].array))]
        if not ints:
            break
    return tuple(ints)


def _plain_integers(text: pa.Array | pa.ChunkedArray) -> bool:
    """Whether every value is a plainly written integer that fits int64."""
    if not pc.all(pc.match_substring_regex(text, _PLAIN_INTEGER)).as_py():
        return False
    try:
        _as_int64(text)
    except pa.ArrowInvalid:  # beyond int64
        return False
    return True
