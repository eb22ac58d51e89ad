"""A user's table as the model sees it: files read with errors that name them (and the line
of a bad value), the encoder for a run, the columns a run names checked against the file, the
run's training and validation rows (whole or streamed), a seeded validation hold-out, and
regression values back in the label's units.

Rows keep their position in the file as their index through the hold-out and the stream's
chunks, so an error in any of them names the file's own line (:func:`in_file`)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import _checks
from ..config import InputSpec
from ..config.inputs import cross_width
from ..data.encoders import TableEncoder
from ..data.files import where_in_file
from ..data.ids import group_codes
from ..data.readers import iter_table, read_table
from ..data.table import RowError, TensorTable
from ..models import MultiTaskModel
from ..train.optim import TABLE_OPTIMIZERS
from .spec import RunSpec


@contextlib.contextmanager
def in_file(path: str | os.PathLike) -> Iterator[None]:
    """Prefix data errors raised inside the block with the file they concern; an error at a
    row (:class:`~mmoe.data.table.RowError`, rows indexed by their position in the file) names
    the file's own line (CSV) or row index (Parquet).

    Example:
        >>> with in_file("t.csv"):
        ...     raise ValueError("column 'a' is missing")
        Traceback (most recent call last):
        ...
        ValueError: file 't.csv': column 'a' is missing
        >>> _ = open("u.csv", "w").write("a\\n1\\n2\\nx\\n")
        >>> with in_file("u.csv"):
        ...     raise RowError("column 'a': non-numeric value 'x'", 2)
        Traceback (most recent call last):
        ...
        ValueError: file 'u.csv': column 'a': non-numeric value 'x' at line 4
    """
    try:
        yield
    except RowError as err:
        located = err.located(where_in_file(path, err.row)) if isinstance(err.row, int) \
            else str(err)
        raise ValueError(f"file '{path}': {located}") from None
    except ValueError as err:
        msg = str(err)
        if str(path) in msg:
            raise
        raise ValueError(f"file '{path}': {msg}") from None


def make_encoder(spec: RunSpec) -> TableEncoder:
    """An unfitted encoder for ``spec``'s tasks and columns (regression labels standardised).

    Example:
        >>> from mmoe.app.spec import build_run_spec
        >>> make_encoder(build_run_spec(train="t.csv", tasks=["y:regression"])).scale_regression
        True
    """
    return TableEncoder(spec.tasks, numeric=spec.numeric, categorical=spec.categorical,
                        weight_column=spec.weight_column,
                        exclude=tuple(spec.id_columns) + tuple(spec.exclude),
                        scale_regression=True, features=spec.features,
                        numeric_encoding=spec.numeric_encoding)


def text_columns(spec: RunSpec | dict[str, Any]) -> tuple[str, ...]:
    """Columns a CSV reader must read as text: the declared categorical ones and every
    declared feature with a table (ids keep every digit: an int64 id beyond 2^53 would not
    survive a float). ``spec`` may be a saved ``config.json``.

    Example:
        >>> from mmoe.app.spec import build_run_spec
        >>> text_columns(build_run_spec(train="t.csv", tasks=["y:binary"], categorical=["c"],
        ...                             features=["user:hashed", "age:numeric"]))
        ('c', 'user')
    """
    if isinstance(spec, RunSpec):
        spec = spec.to_dict()
    features = spec.get("features") or {}
    _checks.check(isinstance(features, dict) and isinstance(spec.get("columns", {}), dict),
                  "the run's config: 'features' and 'columns' must be tables")
    return tuple(spec.get("columns", {}).get("categorical") or ()) + tuple(
        name for name, f in features.items() if isinstance(f, dict)
        and f.get("kind") in ("categorical", "hashed", "sequence"))


def with_groups(table: TensorTable, df: pd.DataFrame, column: str | None) -> TensorTable:
    """``table`` with each row's group (``column``'s value, for per-group metrics); as it is
    without a column.

    Example:
        >>> t = with_groups(TensorTable.from_arrays(np.zeros((3, 1))),
        ...                 pd.DataFrame({"user": ["a", "b", "a"]}), "user")
        >>> t.groups[0] == t.groups[2], t.groups[0] == t.groups[1]
        (tensor(True), tensor(False))
    """
    if column is None:
        return table
    _checks.check(column in df.columns, f"--group-by column '{column}' is not in the data; "
                  "fix the name")
    return dataclasses.replace(table, groups=torch.from_numpy(group_codes(df[column])))


def feature_table(encoder: TableEncoder, embedding_dim: int = 8, wide: bool = False,
                  cross: bool = False, table_optimizer: str = "adagrad") -> str:
    """The fitted input columns as `mmoe train` prints them: kind, width in x, and the
    numeric encoding or the embedding table; with the model's ``wide`` and ``cross``
    settings, the products' width in x and the wide weights' memory.

    Example:
        >>> from mmoe.config import FeatureSpec, TaskSpec
        >>> df = pd.DataFrame({"a": [1.0, 2.0, 4.0], "user_id": ["u1", "u2", "u2"],
        ...                    "y": [0, 1, 1]})
        >>> enc = TableEncoder([TaskSpec("y")], features=[FeatureSpec("user_id", "hashed",
        ...                                                           buckets=64)]).fit(df)
        >>> print(feature_table(enc))
        column   kind     width  encoding / table
        -------  -------  -----  ------------------------------------------
        a        numeric  2      piecewise-linear, 2 bins
        user_id  hashed   17     user_id: 65 rows x 17 (hashed, 64 buckets)
        x is 19 wide; embedding tables 0.0 MB, 0.0 MB in training with the optimizer's state
    """
    spec = encoder.input_spec(embedding_dim)
    lookups = {lk.name: lk for lk in spec.lookups}
    rows = []
    for f in encoder.specs():
        lk = lookups.get(f.name)
        if f.kind == "numeric":
            enc = encoder.encodings[f.name]
            width = enc.width
            table = {"standard": "standardised", "quantile": "quantile-normal",
                     "ple": f"piecewise-linear, {enc.width} bins"}[enc.kind]
        elif lk is None:
            width = embedding_dim
            table = f"{f.name}: {len(encoder.vocab[f.name]) + 1} rows x {embedding_dim}"
        else:
            owner = encoder.lookup.owner(f.name)
            how = (f"hashed, {owner.buckets} buckets" if encoder.lookup.hashes(owner)
                   else f"vocabulary, min_count {owner.min_count}")
            if f.kind == "sequence":
                how += f"; last {f.max_len} ids, {f.pooling}"
            width, table = lk.dim, f"{lk.table}: {lk.rows} rows x {lk.dim} ({how})"
        rows.append([f.name, f.kind, str(width), table])
    header = ["column", "kind", "width", "encoding / table"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, ["-" * w for w in widths], *rows]]
    crossed = cross_width([lk.dim for lk in spec.lookups]) if cross else 0
    products = f" ({crossed} of them the ids' products)" if crossed else ""
    outputs = sum(t.out_dim for t in encoder.tasks) if wide else 0
    return "\n".join([*lines, f"x is {spec.width + crossed} wide{products}; "
                               f"{_table_memory(spec, outputs, table_optimizer)}"])


def _table_memory(spec: InputSpec, wide_outputs: int = 0,
                  table_optimizer: str = "adagrad") -> str:
    """The embedding tables' memory (with the wide weights, ``wide_outputs`` per table row):
    weights, and in training the optimizer's state too: Adam's two moments for the categorical
    columns' embeddings, the tables' optimizer's for the lookup tables (their embeddings and
    wide weights, each a table of its own)."""
    shapes = [shape for rows, dim in {lk.table: (lk.rows, lk.dim) for lk in spec.lookups}.values()
              for shape in [(rows, dim)] + ([(rows, wide_outputs)] if wide_outputs else [])]
    lookups = sum(rows * dim for rows, dim in shapes)
    state = sum(TABLE_OPTIMIZERS[table_optimizer].state_floats(*shape) for shape in shapes)
    categorical = sum(c for _, c in spec.categorical) * spec.embedding_dim
    mb = (lookups + categorical) * 4 / 2**20
    training = (lookups + state + 3 * categorical) * 4 / 2**20
    return (f"embedding tables {mb:,.1f} MB, {training:,.1f} MB in training with the "
            "optimizer's state")


def check_columns(spec: RunSpec, columns: Sequence[str]) -> None:
    """Fail unless every column ``spec`` names (``--id``, ``--exclude``, ``--weight``,
    ``--numeric``, ``--categorical``) is in the file: a misspelt name is an error, not a
    column silently used as an input.

    Args:
        spec: the run.
        columns: the training file's columns.

    Returns:
        Nothing; a ``ValueError`` naming the flag and the column when one is missing.

    Example:
        >>> from mmoe.app.spec import build_run_spec
        >>> check_columns(build_run_spec(train="t.csv", tasks=["y:binary"], id_columns=["uid"]),
        ...               ["user_id", "x", "y"])
        Traceback (most recent call last):
        ...
        ValueError: --id column 'uid' is not in the file (columns: user_id, x, y); fix the name
    """
    named = [("--id", c) for c in spec.id_columns] + [("--exclude", c) for c in spec.exclude]
    named += [("--weight", spec.weight_column)] if spec.weight_column else []
    named += [("--numeric", c) for c in spec.numeric or ()]
    named += [("--categorical", c) for c in spec.categorical or ()]
    named += [("--feature", f.name) for f in spec.features]
    named += [("--group-by", spec.group_by)] if spec.group_by else []
    for flag, column in named:
        _checks.check(column in columns, f"{flag} column '{column}' is not in the file (columns:"
                      f" {', '.join(map(str, list(columns)[:12]))}"
                      f"{', ...' if len(columns) > 12 else ''}); fix the name")


def holdout(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random split (train, valid) of ``df``, ``fraction`` of it for validation.
    Both parts keep ``df``'s index (for a file read by :mod:`mmoe.data.readers`: each row's
    position in the file, so errors name the file's line).

    Example:
        >>> train, valid = holdout(pd.DataFrame({"a": range(10)}), 0.2, seed=0)
        >>> len(train), len(valid), valid.index.tolist()
        (8, 2, [4, 6])
    """
    _checks.check(len(df) >= 2, f"the training file has {len(df)} row(s); at least 2 are needed "
                  "to hold out validation rows (or pass --valid FILE)")
    order = np.random.default_rng(seed).permutation(len(df))
    n_valid = min(max(1, round(fraction * len(df))), len(df) - 1)
    return df.iloc[np.sort(order[n_valid:])], df.iloc[np.sort(order[:n_valid])]


def original_scale(encoder: TableEncoder, model: MultiTaskModel, logits: np.ndarray,
                   labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Regression outputs (and labels) back in the label's original scale; other tasks'
    columns unchanged. The inputs are not modified."""
    logits = logits.copy()
    labels = None if labels is None else labels.copy()
    for t, (task, cols) in enumerate(zip(model.tasks, model.task_slices, strict=True)):
        if task.kind == "regression":
            logits[:, cols] = encoder.unscale(task.name, logits[:, cols])
            if labels is not None:
                labels[:, t] = encoder.unscale(task.name, labels[:, t])
    return logits, labels


def read_run_tables(spec: RunSpec) -> tuple[TableEncoder, TensorTable, TensorTable]:
    """The run's files read whole and encoded: ``(encoder, train, valid)``. The encoder is
    fitted on the training rows only; without a validation file a seeded ``valid_fraction``
    of the training file is held out (:func:`holdout`)."""
    return encode_frames(spec, *read_run_frames(spec))


def encode_frames(spec: RunSpec, train_df: pd.DataFrame, valid_df: pd.DataFrame
                  ) -> tuple[TableEncoder, TensorTable, TensorTable]:
    """``(encoder, train, valid)``: the run's encoder fitted on ``train_df``, both encoded."""
    encoder = make_encoder(spec)
    with in_file(spec.train):
        encoder.fit(train_df)
        train = encoder.transform(train_df)
    with in_file(spec.valid or spec.train):
        valid = with_groups(encoder.transform(valid_df), valid_df, spec.group_by)
    return encoder, train, valid


def read_run_frames(spec: RunSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's training and validation rows as read (a held-out share of the training file
    without a validation file)."""
    with in_file(spec.train):
        df = read_table(spec.train, categorical=text_columns(spec))
        check_columns(spec, df.columns)
    if spec.valid:
        train_df = df
        with in_file(spec.valid):
            valid_df = read_table(spec.valid, categorical=text_columns(spec))
    else:
        train_df, valid_df = holdout(df, spec.valid_fraction, spec.training.seed)
    return train_df, valid_df


def _head(path: str, rows: int, spec: RunSpec) -> pd.DataFrame:
    """The first ``rows`` rows of a file, read in chunks."""
    parts, have = [], 0
    for chunk in iter_table(path, min(spec.chunk_rows, rows), None,
                            categorical=text_columns(spec)):
        parts.append(chunk.iloc[: rows - have])
        have += len(parts[-1])
        if have >= rows:
            break
    return pd.concat(parts)  # the index stays each row's position in the file


def stream_run_tables(spec: RunSpec) -> tuple[TableEncoder, Callable[[], Iterator[TensorTable]],
                                              TensorTable]:
    """The run's training file as a stream of encoded chunks: ``(encoder, chunks, valid)``,
    ``chunks()`` reading the file again at each call (one epoch).

    The encoder is fitted on the first ``fit_rows`` rows. Without a validation file every
    k-th of those rows (k = 1/valid_fraction) is held out and skipped in training.
    """
    with in_file(spec.train):
        head = _head(spec.train, spec.fit_rows, spec)
        check_columns(spec, head.columns)
        keep = [c for c in head.columns if c not in spec.id_columns
                and c not in spec.exclude]  # only the columns the model reads
    every = max(2, round(1 / spec.valid_fraction))
    holdout_rows = 0
    if spec.valid:
        with in_file(spec.valid):
            valid_df = read_table(spec.valid, categorical=text_columns(spec))
        fit_df = head
    else:
        _checks.check(len(head) >= 2, f"file '{spec.train}': too few rows to hold out "
                      "validation rows; pass --valid FILE")
        is_valid = np.arange(len(head)) % every == 0
        valid_df, fit_df = head[is_valid], head[~is_valid]
        holdout_rows = len(head)
    encoder = make_encoder(spec)
    with in_file(spec.train):
        encoder.fit(fit_df)
    with in_file(spec.valid or spec.train):
        valid = with_groups(encoder.transform(valid_df), valid_df, spec.group_by)

    def chunks() -> Iterator[TensorTable]:
        with in_file(spec.train):
            for chunk in iter_table(spec.train, spec.chunk_rows, keep,
                                    categorical=text_columns(spec)):
                index = chunk.index.to_numpy()  # each row's position in the file
                if holdout_rows and index[0] < holdout_rows:
                    drop = (index < holdout_rows) & (index % every == 0)
                    chunk = chunk[~drop]
                if len(chunk):
                    yield encoder.transform(chunk)

    return encoder, chunks, valid
