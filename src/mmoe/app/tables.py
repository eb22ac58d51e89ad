"""A user's table as the model sees it: files read with errors that name them, the encoder
for a run, a seeded validation hold-out, and regression values back in the label's units."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import pandas as pd

from .. import _checks
from ..data.encoders import TableEncoder
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
