"""``X``, ``y`` and ``sample_weight`` as scikit-learn passes them, turned into the one
DataFrame (inputs, label columns, weights) that mmoe's encoder reads.

scikit-learn's tools hand an estimator NumPy arrays as often as DataFrames (a
``ColumnTransformer``'s output, ``cross_val_score`` on arrays): an array's columns are named
``x0, x1, ...``; a 1-D ``y`` is one task named ``y``, a 2-D one tasks ``y0, y1, ...``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_array

from .. import _checks
from ..config import TaskSpec
from ..data.columns import value_key

#: the hidden column that carries ``fit(..., sample_weight=...)``
WEIGHT_COLUMN = "__sample_weight__"


def str_columns(X: Any) -> bool:
    """Whether ``X`` is a DataFrame whose column names are all strings (scikit-learn's
    condition for ``feature_names_in_``)."""
    return isinstance(X, pd.DataFrame) and all(isinstance(c, str) for c in X.columns)


def as_frame(X: Any, columns: list[str] | None = None) -> pd.DataFrame:
    """``X`` as a DataFrame: a DataFrame with string column names as it is; anything else
    checked as scikit-learn checks a 2-D array (no sparse matrices, infinities or empty
    arrays; NaN allowed: mmoe imputes it) and named ``columns`` (default ``x0, x1, ...``).

    Example:
        >>> as_frame(np.array([[1.0, 2.0]])).columns.tolist()
        ['x0', 'x1']
    """
    if str_columns(X):
        _checks.check(len(X) > 0, f"Found array with 0 sample(s) (shape={X.shape}) while a "
                      "minimum of 1 is required.")
        return X
    index = X.index if isinstance(X, pd.DataFrame) else None
    arr = check_array(X, dtype=None, accept_sparse=False, ensure_all_finite="allow-nan",
                      input_name="X")
    names = columns if columns is not None else [f"x{i}" for i in range(arr.shape[1])]
    return pd.DataFrame(arr, columns=names, index=index).infer_objects()


def label_frame(y: Any, index: pd.Index) -> pd.DataFrame | None:
    """``y`` as label columns on ``index``: a DataFrame's columns, a Series as one column
    (its name, else ``y``), a 1-D array as ``y``, a 2-D one as ``y0, y1, ...``; ``None``
    stays ``None``.

    Example:
        >>> label_frame(np.array([[0, 1.5], [1, 2.5]]), pd.RangeIndex(2)).columns.tolist()
        ['y0', 'y1']
    """
    if y is None:
        return None
    if isinstance(y, pd.DataFrame):
        frame = y.set_axis([str(c) for c in y.columns], axis=1)
    elif isinstance(y, pd.Series):
        frame = y.to_frame("y" if y.name is None else str(y.name))
    else:
        arr = check_array(y, dtype=None, ensure_2d=False, ensure_all_finite="allow-nan",
                          input_name="y")
        if arr.ndim == 1 or arr.shape[1] == 1:
            frame = pd.DataFrame({"y": arr.reshape(len(arr))})
        else:
            frame = pd.DataFrame(arr, columns=[f"y{j}" for j in range(arr.shape[1])])
        frame = frame.infer_objects()
    _checks.check(len(frame) == len(index), f"Found input variables with inconsistent numbers "
                  f"of samples: X has {len(index)} rows, y has {len(frame)}")
    return frame.set_axis(index, axis=0)


def infer_task(column: str, labels: pd.Series) -> TaskSpec:
    """A task for a label column given without a kind, by scikit-learn's ``type_of_target``:
    two distinct values are binary (the greater one positive, as scikit-learn's
    ``classes_[1]``); more, a multiclass task unless the column holds floats (a regression);
    continuous values a regression.

    Example:
        >>> infer_task("y", pd.Series([0, 1, 1])).positive
        '1'
        >>> infer_task("v", pd.Series([0.5, 1.7, 2])).kind
        'regression'
    """
    present = labels.dropna()
    _checks.check(len(present) > 0, f"y column '{column}' has no labels")
    kind = type_of_target(present.to_numpy())
    if kind == "binary":
        return TaskSpec(column, "binary", positive=value_key(np.sort(present.unique())[-1]))
    if kind == "multiclass" and not pd.api.types.is_float_dtype(present.dtype):
        return TaskSpec(column, "multiclass")
    _checks.check(kind in ("continuous", "multiclass"), f"y column '{column}': cannot infer "
                  f"a task from {kind} values; name it in tasks=['{column}:KIND']")
    return TaskSpec(column, "regression")


def sample_weights(sample_weight: Any, rows: int) -> np.ndarray:
    """``sample_weight`` as float64 of shape ``(rows,)`` (a scalar: the same for every row).

    Example:
        >>> sample_weights(2, 3).tolist()
        [2.0, 2.0, 2.0]
    """
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(rows, float(w))
    _checks.check(w.shape == (rows,), f"sample_weight.shape == {w.shape}, expected ({rows},)")
    _checks.check(bool(np.isfinite(w).all() and (w >= 0).all()),
                  "sample_weight must be finite and >= 0")
    _checks.check(bool(w.sum() > 0), "sample_weight: every weight is zero; at least one must be "
                  "positive")
    return w


def original_classes(task: TaskSpec, labels: pd.Series) -> np.ndarray:
    """A classification task's classes in logit order as the label column spells them
    (``1``, not the text ``'1'`` that mmoe keys labels by).

    Example:
        >>> original_classes(TaskSpec("y", classes=("0", "1")), pd.Series([1, 0, 1])).tolist()
        [0, 1]
    """
    spelt = {value_key(v): v for v in labels.dropna().unique()}
    return np.asarray([spelt.get(k, k) for k in task.classes])
