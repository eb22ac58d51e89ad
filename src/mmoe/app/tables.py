"""A user's table as the model sees it: files read with errors that name them, the encoder
for a run, the run's training and validation rows (whole or streamed), a seeded validation
hold-out, and regression values back in the label's units."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from .. import _checks
from ..data.encoders import TableEncoder
from ..data.readers import iter_table, read_table
from ..data.table import TensorTable
from ..models import MultiTaskModel
from .spec import RunSpec


@contextlib.contextmanager
def in_file(path: str | os.PathLike) -> Iterator[None]:
    """Prefix data errors raised inside the block with the file they concern.

    Example:
        >>> with in_file("t.csv"):
        ...     raise ValueError("column 'a' is missing")
        Traceback (most recent call last):
        ...
        ValueError: file 't.csv': column 'a' is missing
    """
    try:
        yield
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
                        scale_regression=True)


def holdout(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random split (train, valid) of ``df``, ``fraction`` of it for validation.

    Example:
        >>> train, valid = holdout(pd.DataFrame({"a": range(10)}), 0.2, seed=0)
        >>> len(train), len(valid)
        (8, 2)
    """
    _checks.check(len(df) >= 2, f"the training file has {len(df)} row(s); at least 2 are needed "
                  "to hold out validation rows (or pass --valid FILE)")
    order = np.random.default_rng(seed).permutation(len(df))
    n_valid = min(max(1, round(fraction * len(df))), len(df) - 1)
    valid = df.iloc[np.sort(order[:n_valid])].reset_index(drop=True)
    train = df.iloc[np.sort(order[n_valid:])].reset_index(drop=True)
    return train, valid


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
    with in_file(spec.train):
        df = read_table(spec.train, categorical=spec.categorical or ())
    if spec.valid:
        train_df = df
        with in_file(spec.valid):
            valid_df = read_table(spec.valid, categorical=spec.categorical or ())
    else:
        train_df, valid_df = holdout(df, spec.valid_fraction, spec.training.seed)
    del df
    encoder = make_encoder(spec)
    with in_file(spec.train):
        encoder.fit(train_df)
        train = encoder.transform(train_df)
    with in_file(spec.valid or spec.train):
        valid = encoder.transform(valid_df)
    return encoder, train, valid


def _head(path: str, rows: int, spec: RunSpec) -> pd.DataFrame:
    """The first ``rows`` rows of a file, read in chunks."""
    parts, have = [], 0
    for chunk in iter_table(path, min(spec.chunk_rows, rows), None,
                            categorical=spec.categorical or ()):
        parts.append(chunk.iloc[: rows - have])
        have += len(parts[-1])
        if have >= rows:
            break
    return pd.concat(parts, ignore_index=True)


def stream_run_tables(spec: RunSpec) -> tuple[TableEncoder, Callable[[], Iterator[TensorTable]],
                                              TensorTable]:
    """The run's training file as a stream of encoded chunks: ``(encoder, chunks, valid)``,
    ``chunks()`` reading the file again at each call (one epoch).

    The encoder is fitted on the first ``fit_rows`` rows. Without a validation file every
    k-th of those rows (k = 1/valid_fraction) is held out and skipped in training.
    """
    with in_file(spec.train):
        head = _head(spec.train, spec.fit_rows, spec)
        keep = [c for c in head.columns if c not in spec.id_columns
                and c not in spec.exclude]  # only the columns the model reads
    every = max(2, round(1 / spec.valid_fraction))
    holdout_rows = 0
    if spec.valid:
        with in_file(spec.valid):
            valid_df = read_table(spec.valid, categorical=spec.categorical or ())
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
        valid = encoder.transform(valid_df)

    def chunks() -> Iterator[TensorTable]:
        offset = 0
        with in_file(spec.train):
            for chunk in iter_table(spec.train, spec.chunk_rows, keep,
                                    categorical=spec.categorical or ()):
                index = np.arange(offset, offset + len(chunk))
                offset += len(chunk)
                if holdout_rows and index[0] < holdout_rows:
                    drop = (index < holdout_rows) & (index % every == 0)
                    chunk = chunk[~drop]
                if len(chunk):
                    yield encoder.transform(chunk)

    return encoder, chunks, valid
