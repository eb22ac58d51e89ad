"""TableEncoder: DataFrame columns -> a TensorTable, fitted on the training data only.

Numeric columns are standardised with training statistics; a numeric column with missing
values in training also gets a ``<column>__missing`` indicator, and missing values are imputed
with the training mean. Categorical columns map to codes 1..K by their training vocabulary;
unseen and missing values map to 0 (out of vocabulary). Labels are validated per task kind.

A bad value is a :class:`RowError` naming the row by the frame's index label; the readers
index rows by their position in the file, so the caller that knows the file can name its
line (``mmoe.app.tables.in_file``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import _checks
from ..config import InputSpec, TaskSpec
from .saved_encoder import KEYS as _KEYS
from .saved_encoder import all_str as _all_str
from .saved_encoder import check as _check
from .saved_encoder import names as _names
from .saved_encoder import pairs as _pairs
from .saved_encoder import show as _show
from .saved_encoder import task as _task
from .table import RowError, TensorTable

_F32_MAX = float(np.finfo(np.float32).max)
#: largest regression label: the metrics square errors in float32, so beyond sqrt(max) even
#: one label's squared error overflows
_LABEL_MAX = float(np.sqrt(_F32_MAX))
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


def _fail_at(index: pd.Index, bad: np.ndarray, head: str, tail: str) -> None:
    """Raise a :class:`RowError` at the first row where ``bad`` holds, named by ``index``."""
    label = index[int(np.flatnonzero(bad)[0])]
    raise RowError(head, label.item() if isinstance(label, np.generic) else label, tail)


def _key(value: Any) -> str:
    """Canonical text of a label or category value, so 1, 1.0 and '1' match across readers."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _keys(series: pd.Series) -> pd.Series:
    """``_key`` of every value (missing stays missing). A text column holds only strings, so
    ``_key`` is computed once per distinct value, not once per row."""
    if pd.api.types.is_string_dtype(series.dtype):
        uniques = series.dropna().unique()
        return series.map(dict(zip(uniques, (_key(u) for u in uniques), strict=True)))
    return series.map(_key, na_action="ignore")


def _codes(series: pd.Series, values: Sequence[str]) -> np.ndarray:
    """Index of each value's key in ``values``; -1 for missing or unknown values."""
    keys = _keys(series)
    return pd.Index(list(values)).get_indexer(keys).astype(np.int64)


def _shown(columns: Sequence[Any]) -> str:
    """The first dozen column names, for a message."""
    return ", ".join(map(str, list(columns)[:12])) + (", ..." if len(columns) > 12 else "")


def _require(df: pd.DataFrame, column: str, role: str) -> pd.Series:
    if column not in df.columns:
        _checks.fail(f"{role} column '{column}' is not in the data (columns: "
                     f"{_shown(df.columns)}); fix the name")
    return df[column]


def _to_numeric(series: pd.Series, column: str) -> np.ndarray:
    """Floats with NaN for missing; text that is not a number is an error naming the column."""
    values = pd.to_numeric(series, errors="coerce")
    bad = (values.isna() & series.notna() & (series.astype(str).str.strip() != "")).to_numpy()
    if bad.any():
        value = series.iloc[int(np.flatnonzero(bad)[0])]
        _fail_at(series.index, bad, f"column '{column}': non-numeric value {_show(value)}",
                 " in a numeric column; fix the value or declare the column categorical")
    out = values.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(out).any():
        value = out[np.isinf(out)][0]
        _fail_at(series.index, np.isinf(out), f"column '{column}': infinite value {value}",
                 "; replace it with a finite number or leave it empty (missing)")
    return out


def _float32(values: np.ndarray, column: str, index: pd.Index) -> np.ndarray:
    """``values`` as float32; a value float32 cannot hold is an error, not a silent inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isnan(values) & ~(np.abs(values) <= _F32_MAX)
    if bad.any():
        _fail_at(index, bad, f"column '{column}': value {values[bad][0]}",
                 " is too large for the model's float32 arithmetic after encoding; rescale "
                 "the column")
    return values.astype(np.float32)


def _label_values(series: pd.Series, column: str) -> np.ndarray:
    """A regression label column as floats; a label whose squared error would overflow the
    metrics is an error at encoding, not an inf after training."""
    y = _to_numeric(series, column)
    with np.errstate(invalid="ignore"):
        big = np.abs(y) > _LABEL_MAX
    if big.any():
        _fail_at(series.index, big, f"column '{column}': regression label {y[big][0]}",
                 f" is beyond +-{_LABEL_MAX:.3g}, where squared errors overflow; rescale "
                 "the column (e.g. divide it by a power of 10)")
    return y


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and std of the non-missing values without overflow (scaled by max |v|)."""
    finite = values[~np.isnan(values)]
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    if scale == 0.0:
        return 0.0, 1.0
    unit = finite / scale
    std = float(unit.std()) * scale
    return float(unit.mean()) * scale, std if std > 0 else 1.0


class TableEncoder:
    """Fit on a training DataFrame; turn any DataFrame with the same columns into tensors.

    Args:
        tasks: the tasks; each reads its label from ``task.column``.
        numeric: numeric input columns (``None``: inferred from the dtypes).
        categorical: categorical input columns (``None``: inferred from the dtypes).
        weight_column: optional column of per-row sample weights.
        exclude: columns never used as inputs (ids, leaks).
        min_count: categories seen fewer times in training map to the OOV code.
        scale_regression: standardise regression labels with training statistics (the
            model then learns z-scores); :meth:`unscale` maps its outputs back.

    Example:
        >>> df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "c": ["x", "y", "x"], "y": [0, 1, 1]})
        >>> enc = TableEncoder([TaskSpec("y", "binary")]).fit(df)
        >>> enc.numeric, enc.categorical, enc.transform(df).labels.squeeze(1).tolist()
        (['a'], ['c'], [0.0, 1.0, 1.0])
    """

    def __init__(self, tasks: Sequence[TaskSpec], numeric: Sequence[str] | None = None,
                 categorical: Sequence[str] | None = None, weight_column: str | None = None,
                 exclude: Sequence[str] = (), min_count: int = 1,
                 scale_regression: bool = False):
        self.tasks = tuple(tasks)
        _checks.check(len(self.tasks) >= 1, "at least one task is needed")
        self.numeric = list(numeric) if numeric is not None else None
        self.categorical = list(categorical) if categorical is not None else None
        self.weight_column = weight_column
        self.exclude = list(exclude)
        self.min_count = _checks.positive_int(min_count, "min_count")
        self.stats: dict[str, tuple[float, float]] = {}  # column -> (mean, std)
        self.indicators: list[str] = []  # numeric columns with a missing-value indicator
        self.vocab: dict[str, list[str]] = {}  # column -> categories, code = 1 + index
        self.scale_regression = bool(scale_regression)
        self.label_stats: dict[str, tuple[float, float]] = {}  # regression task -> (mean, std)
        self.fitted = False

    # ---- fitting -------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame) -> TableEncoder:
        """Learn column types, statistics, vocabularies and label values from ``df``."""
        _checks.check(len(df) > 0, "the training data has no rows")
        self._check_roles()
        reserved = {t.column for t in self.tasks} | set(self.exclude) | {self.weight_column}
        if self.numeric is None or self.categorical is None:
            # undeclared columns take the type of their dtype; declared ones keep theirs
            declared = set(self.numeric or ()) | set(self.categorical or ())
            free = [c for c in df.columns if c not in reserved and c not in declared]
            guess = [c for c in free if pd.api.types.is_numeric_dtype(df[c])
                     and not pd.api.types.is_bool_dtype(df[c])]
            self.numeric = list(self.numeric or ()) + guess
            self.categorical = list(self.categorical or ()) + [c for c in free if c not in guess]
        both = set(self.numeric) & set(self.categorical)
        _checks.check(not both, f"column(s) {sorted(both)} declared both numeric and categorical")
        _checks.check(bool(self.numeric or self.categorical),
                      "no input columns left besides the labels; add feature columns")
        for col in self.numeric:
            values = _to_numeric(_require(df, col, "numeric"), col)
            self.stats[col] = _mean_std(values)
            if np.isnan(values).any():
                self.indicators.append(col)
        for col in self.categorical:
            counts = _keys(_require(df, col, "categorical").dropna()).value_counts()
            self.vocab[col] = sorted(counts[counts >= self.min_count].index.tolist())
        self.tasks = tuple(
            self._fit_task(task, _require(df, task.column, f"task '{task.name}': label"))
            for task in self.tasks)
        if self.scale_regression:
            for task in self.tasks:
                if task.kind == "regression":
                    y = _label_values(df[task.column], task.column)
                    self.label_stats[task.name] = _mean_std(y)
        self.fitted = True
        return self

    def _check_roles(self) -> None:
        """No label, weight or excluded column is also declared an input."""
        roles = {c: "excluded (an id or --exclude column)" for c in self.exclude}
        roles[self.weight_column] = "the sample-weight column"
        roles.update({t.column: f"the label of task '{t.name}'" for t in self.tasks})
        for kind, columns in (("numeric", self.numeric), ("categorical", self.categorical)):
            for col in [c for c in columns or () if c in roles]:
                _checks.fail(f"column '{col}' is {roles[col]} and cannot also be an input; "
                             f"remove it from the {kind} columns (--{kind})")

    @staticmethod
    def _fit_task(task: TaskSpec, series: pd.Series) -> TaskSpec:
        """Resolve a task's label values from training data (binary pair, multiclass classes)."""
        present = series.dropna()
        _checks.check(len(present) > 0,
                      f"task '{task.name}': column '{task.column}' has no labels in the "
                      "training data")
        if task.kind == "regression":
            _label_values(series, task.column)
            return task
        keys = sorted(set(present.map(_key)))
        if task.kind == "multiclass":
            classes = tuple(_key(c) for c in task.classes) if task.classes else tuple(keys)
            unknown = sorted(set(keys) - set(classes))
            _checks.check(not unknown, f"task '{task.name}': column '{task.column}' has values "
                          f"{unknown[:5]} not among the declared classes {list(classes)}")
            _checks.check(len(classes) >= 2, f"task '{task.name}': a multiclass task needs at "
                          f"least 2 classes, column '{task.column}' has {len(classes)}")
            return replace(task, classes=classes)
        _checks.check(len(keys) == 2, f"task '{task.name}': binary labels must have 2 distinct "
                      f"values, column '{task.column}' has {len(keys)} ({', '.join(keys[:5])})")
        if task.positive is not None:
            positive = _key(task.positive)
            _checks.check(positive in keys, f"task '{task.name}': positive value {positive!r} "
                          f"does not occur in column '{task.column}' (values: {', '.join(keys)})")
        elif set(map(str.lower, keys)) <= _TRUE | _FALSE and any(k.lower() in _TRUE for k in keys):
            positive = next(k for k in keys if k.lower() in _TRUE)
        else:
            _checks.fail(f"task '{task.name}': column '{task.column}' has values "
                         f"{', '.join(keys)}; name the positive one (e.g. "
                         f"--task {task.column}:binary:{keys[1]})")
        negative = next(k for k in keys if k != positive)
        return replace(task, positive=positive, classes=(negative, positive))

    # ---- transforming --------------------------------------------------------------------
    def transform(self, df: pd.DataFrame, labels: bool = True) -> TensorTable:
        """Encode ``df``; ``labels=False`` for data without label columns (prediction)."""
        _checks.check(self.fitted, "the encoder is not fitted; call fit(train_df) first")
        _checks.check(len(df) > 0, "the data has no rows")
        numeric = None
        if self.numeric:
            raw = {c: _to_numeric(_require(df, c, "numeric"), c) for c in self.numeric}
            with np.errstate(over="ignore", invalid="ignore"):
                cols = [_float32(np.nan_to_num((raw[c] - self.stats[c][0]) / self.stats[c][1],
                                               nan=0.0, posinf=np.inf, neginf=-np.inf), c,
                                 df.index)
                        for c in self.numeric]  # standardised; missing -> the training mean (0)
            cols += [np.isnan(raw[c]).astype(np.float32) for c in self.indicators]
            numeric = torch.from_numpy(np.stack(cols, axis=1))
        categorical = None
        if self.categorical:
            codes = [_codes(_require(df, c, "categorical"), self.vocab[c]) + 1
                     for c in self.categorical]  # unseen and missing: -1 + 1 = 0 (OOV)
            categorical = torch.from_numpy(np.stack(codes, axis=1))
        y = self._labels(df) if labels else None
        weights = None
        if self.weight_column is not None and (labels or self.weight_column in df.columns):
            w = _to_numeric(_require(df, self.weight_column, "sample-weight"), self.weight_column)
            with np.errstate(invalid="ignore"):
                bad = ~(np.isfinite(w) & (w >= 0))
            if bad.any():
                _fail_at(df.index, bad, f"sample-weight column '{self.weight_column}': value "
                         f"{w[bad][0]}", "; weights must be finite and >= 0")
            weights = torch.from_numpy(_float32(w, self.weight_column, df.index))
        return TensorTable(numeric, categorical, y, weights)

    def _labels(self, df: pd.DataFrame) -> torch.Tensor:
        out = np.full((len(df), len(self.tasks)), np.nan, dtype=np.float32)
        for t, task in enumerate(self.tasks):
            series = _require(df, task.column, f"task '{task.name}': label")
            if task.kind == "regression":
                mean, std = self.label_stats.get(task.name, (0.0, 1.0))
                with np.errstate(over="ignore", invalid="ignore"):
                    out[:, t] = _float32((_label_values(series, task.column) - mean) / std,
                                         task.column, df.index)
                continue
            codes = _codes(series, task.classes)
            unknown = (codes < 0) & series.notna().to_numpy()
            if unknown.any():
                _fail_at(df.index, unknown, f"task '{task.name}': label value "
                         f"{_show(series[unknown].iloc[0])} in column '{task.column}'",
                         f" is not one of {list(task.classes)}")
            out[:, t] = np.where(codes >= 0, codes, np.nan)
        return torch.from_numpy(out)

    def unscale(self, task_name: str, values: np.ndarray) -> np.ndarray:
        """A regression task's model outputs (or encoded labels) in the label's original
        scale; identity for unscaled tasks."""
        mean, std = self.label_stats.get(task_name, (0.0, 1.0))
        return values * std + mean

    # ---- description ---------------------------------------------------------------------
    def input_spec(self, embedding_dim: int = 8) -> InputSpec:
        """The model's inputs: numeric columns (+ missing indicators), categorical sizes."""
        _checks.check(self.fitted, "the encoder is not fitted; call fit(train_df) first")
        return InputSpec(
            numeric=tuple(self.numeric) + tuple(f"{c}__missing" for c in self.indicators),
            categorical=tuple((c, len(self.vocab[c]) + 1) for c in self.categorical),
            embedding_dim=embedding_dim)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (saved with the model)."""
        return {"tasks": [t.to_dict() for t in self.tasks], "numeric": self.numeric,
                "categorical": self.categorical, "weight_column": self.weight_column,
                "exclude": self.exclude, "min_count": self.min_count,
                "stats": {k: list(v) for k, v in self.stats.items()},
                "indicators": self.indicators, "vocab": self.vocab,
                "label_stats": {k: list(v) for k, v in self.label_stats.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TableEncoder:
        """Inverse of :meth:`to_dict`. Content :meth:`to_dict` cannot have written (a missing
        key, a wrong type, a nested structure, a non-finite statistic) is one ``ValueError``.

        Example:
            >>> TableEncoder.from_dict({"tasks": []})
            Traceback (most recent call last):
            ...
            ValueError: encoder description: it must be a table with tasks, numeric, ...
        """
        _check(isinstance(data, dict) and all(k in data for k in _KEYS),
               f"it must be a table with {', '.join(_KEYS)}")
        _check(isinstance(data["tasks"], list) and len(data["tasks"]) > 0,
               "'tasks' must be a non-empty list of tasks")
        tasks = [_task(t) for t in data["tasks"]]
        numeric, categorical, exclude, indicators = (
            _names(data[k], k) for k in ("numeric", "categorical", "exclude", "indicators"))
        weight, min_count, vocab = data["weight_column"], data["min_count"], data["vocab"]
        _check(isinstance(weight, str | None), "'weight_column' must be a column name or null")
        _check(type(min_count) is int and min_count >= 1, "'min_count' must be an integer >= 1")
        _check(isinstance(vocab, dict) and set(vocab) == set(categorical)
               and all(isinstance(v, list) and _all_str(v) for v in vocab.values()),
               "'vocab' must map each categorical column to a list of values")
        _check(set(indicators) <= set(numeric), "'indicators' must name numeric columns")
        enc = cls(tasks, numeric, categorical, weight, exclude, min_count)
        enc.stats = _pairs(data["stats"], "stats", set(numeric), every=True)
        enc.indicators, enc.vocab = indicators, {k: list(v) for k, v in vocab.items()}
        enc.label_stats = _pairs(data.get("label_stats", {}), "label_stats",
                                 {t.name for t in tasks if t.kind == "regression"}, every=False)
        enc.scale_regression = bool(enc.label_stats)
        enc.fitted = True
        return enc
