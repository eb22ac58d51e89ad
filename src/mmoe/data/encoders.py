"""TableEncoder: DataFrame columns -> a TensorTable, fitted on the training data only.

Numeric columns are encoded by :mod:`mmoe.data.numeric` (standardised, quantile-normal or
piecewise-linear, fitted on the training rows); a numeric column with missing values in
training also gets a ``<column>__missing`` indicator, and a missing value encodes as zeros.
Categorical columns map to codes 1..K by their training vocabulary;
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
from ..config import FeatureSpec, InputSpec, TaskSpec
from .columns import (
    fail_at,
    float32,
    label_values,
    mean_std,
    require,
    to_numeric,
    value_key,
    value_keys,
    vocab_codes,
)
from .inference import infer_specs
from .lookups import LookupEncoder
from .numeric import NUMERIC_ENCODINGS, NumericEncoding, choose_encoding, fit_numeric
from .saved_encoder import KEYS as _KEYS
from .saved_encoder import all_str as _all_str
from .saved_encoder import check as _check
from .saved_encoder import names as _names
from .saved_encoder import pairs as _pairs
from .saved_encoder import show as _show
from .saved_encoder import task as _task
from .table import RowError, TensorTable  # noqa: F401  (RowError: part of this API)

#: distinct numeric labels above which a multiclass task is taken for a mistyped regression
MAX_CLASSES = 100
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


def _some(values: Sequence[str], shown: int = 8) -> str:
    """The first ``shown`` values, and how many more.

    Example:
        >>> _some(list("abcdefghij"), 3)
        "'a', 'b', 'c' and 7 more"
    """
    head = ", ".join(repr(v) for v in values[:shown])
    return head + (f" and {len(values) - shown} more" if len(values) > shown else "")


class TableEncoder:
    """Fit on a training DataFrame; turn any DataFrame with the same columns into tensors.

    Columns with tables of their own (hashed ids, sequences, categorical columns with their
    own width, ``min_count`` or a shared table) are encoded by a
    :class:`~mmoe.data.lookups.LookupEncoder` into the table's ``ids``.

    Args:
        tasks: the tasks; each reads its label from ``task.column``.
        numeric: numeric input columns (``None``: inferred, :mod:`mmoe.data.inference`).
        categorical: categorical input columns (``None``: inferred).
        features: a :class:`~mmoe.config.FeatureSpec` per column stated exactly (any kind).
        weight_column: optional column of per-row sample weights.
        exclude: columns never used as inputs (ids, leaks).
        min_count: categories seen fewer times in training map to the OOV code.
        scale_regression: standardise regression labels with training statistics (the
            model then learns z-scores); :meth:`unscale` maps its outputs back.
        numeric_encoding: how numeric columns are encoded (:data:`NUMERIC_ENCODINGS`, or
            ``auto``: :func:`choose_encoding` from the training values); a column's
            ``FeatureSpec(kind="numeric", encoding=...)`` overrides it.

    Example:
        >>> df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "c": ["x", "y", "x"], "y": [0, 1, 1]})
        >>> enc = TableEncoder([TaskSpec("y", "binary")]).fit(df)
        >>> enc.numeric, enc.categorical, enc.transform(df).labels.squeeze(1).tolist()
        (['a'], ['c'], [0.0, 1.0, 1.0])
    """

    def __init__(self, tasks: Sequence[TaskSpec], numeric: Sequence[str] | None = None,
                 categorical: Sequence[str] | None = None, weight_column: str | None = None,
                 exclude: Sequence[str] = (), min_count: int = 1,
                 scale_regression: bool = False, features: Sequence[FeatureSpec] = (),
                 numeric_encoding: str = "auto"):
        self.tasks = tuple(tasks)
        _checks.check(len(self.tasks) >= 1, "at least one task is needed")
        self.numeric = list(numeric) if numeric is not None else None
        self.categorical = list(categorical) if categorical is not None else None
        self.weight_column = weight_column
        self.exclude = list(exclude)
        self.min_count = _checks.positive_int(min_count, "min_count")
        self.stats: dict[str, tuple[float, float]] = {}  # column -> (mean, std)
        _checks.one_of(numeric_encoding, ("auto", *NUMERIC_ENCODINGS), "numeric encoding")
        self.numeric_encoding = numeric_encoding
        self.encodings: dict[str, NumericEncoding] = {}  # numeric column -> fitted encoding
        self.indicators: list[str] = []  # numeric columns with a missing-value indicator
        self.vocab: dict[str, list[str]] = {}  # column -> categories, code = 1 + index
        self.scale_regression = bool(scale_regression)
        self.label_stats: dict[str, tuple[float, float]] = {}  # regression task -> (mean, std)
        self.features = tuple(features)
        self.lookup: LookupEncoder | None = None  # fitted with the rest
        self.fitted = False

    # ---- fitting -------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame) -> TableEncoder:
        """Learn column types, statistics, vocabularies and label values from ``df``."""
        _checks.check(len(df) > 0, "the training data has no rows")
        self._check_roles()
        reserved = {t.column for t in self.tasks} | set(self.exclude) | {self.weight_column}
        specs = list(self.features)
        if self.numeric is None or self.categorical is None:
            # undeclared columns are inferred; declared ones keep their type
            declared = set(self.numeric or ()) | set(self.categorical or ()) | {
                s.name for s in specs}
            free = [c for c in df.columns if c not in reserved and c not in declared]
            specs += [replace(s, min_count=self.min_count)
                      for s in infer_specs(df, free, known=specs)]
        self._split(specs)
        both = set(self.numeric) & set(self.categorical)
        _checks.check(not both, f"column(s) {sorted(both)} declared both numeric and categorical")
        _checks.check(bool(self.numeric or self.categorical or self.lookup),
                      "no input columns left besides the labels; add feature columns")
        if self.lookup is not None:
            self.lookup.fit(df)
        asked = {s.name: s.encoding for s in specs if s.kind == "numeric" and s.encoding}
        for col in self.numeric:
            values = to_numeric(require(df, col, "numeric"), col)
            kind = asked.get(col, self.numeric_encoding)
            self.encodings[col] = fit_numeric(
                values, choose_encoding(values) if kind == "auto" else kind)
            self.stats[col] = (self.encodings[col].mean, self.encodings[col].std)
            if np.isnan(values).any():
                self.indicators.append(col)
        for col in self.categorical:
            counts = value_keys(require(df, col, "categorical").dropna()).value_counts()
            self.vocab[col] = sorted(counts[counts >= self.min_count].index.tolist())
        self.tasks = tuple(
            self._fit_task(task, require(df, task.column, f"task '{task.name}': label"))
            for task in self.tasks)
        if self.scale_regression:
            for task in self.tasks:
                if task.kind == "regression":
                    y = label_values(df[task.column], task.column)
                    self.label_stats[task.name] = mean_std(y)
        self.fitted = True
        return self

    def _split(self, specs: Sequence[FeatureSpec]) -> None:
        """Numeric and plain categorical specs join those lists; the rest are lookups (a
        categorical column with its own width or ``min_count``, sharing or shared)."""
        names = [*(self.numeric or ()), *(self.categorical or ()), *(s.name for s in specs)]
        twice = sorted({c for c in names if names.count(c) > 1})
        _checks.check(not twice, f"column(s) {twice} declared twice (as numeric, categorical "
                      "or a feature); declare each once")
        shared = {s.share for s in specs}
        plain = {s.name for s in specs if s.kind == "categorical" and s.name not in shared
                 and s == FeatureSpec(s.name, "categorical", min_count=self.min_count)}
        self.numeric = list(self.numeric or ()) + [s.name for s in specs if s.kind == "numeric"]
        self.categorical = list(self.categorical or ()) + [s.name for s in specs
                                                           if s.name in plain]
        moved = [c for c in self.categorical if c in shared]  # a declared column others share
        self.categorical = [c for c in self.categorical if c not in shared]
        lookups = [FeatureSpec(c, "categorical", min_count=self.min_count) for c in moved]
        lookups += [s for s in specs if s.kind != "numeric" and s.name not in plain]
        self.lookup = LookupEncoder(lookups) if lookups else None

    def specs(self) -> list[FeatureSpec]:
        """Every input column's spec as fitted (numeric, categorical, then the lookups)."""
        _checks.check(self.fitted, "the encoder is not fitted; call fit(train_df) first")
        return ([FeatureSpec(c, "numeric") for c in self.numeric]
                + [FeatureSpec(c, "categorical", min_count=self.min_count)
                   for c in self.categorical]
                + (list(self.lookup.specs.values()) if self.lookup else []))

    def _check_roles(self) -> None:
        """No label, weight or excluded column is also declared an input."""
        roles = {c: "excluded (an id or --exclude column)" for c in self.exclude}
        roles[self.weight_column] = "the sample-weight column"
        roles.update({t.column: f"the label of task '{t.name}'" for t in self.tasks})
        for kind, columns in (("numeric", self.numeric), ("categorical", self.categorical),
                              ("feature", [s.name for s in self.features])):
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
            label_values(series, task.column)
            return task
        keys = sorted(set(present.map(value_key)))
        if task.kind == "multiclass":
            classes = tuple(value_key(c) for c in task.classes) if task.classes else tuple(keys)
            unknown = sorted(set(keys) - set(classes))
            _checks.check(not unknown, f"task '{task.name}': column '{task.column}' has values "
                          f"{unknown[:5]} not among the declared classes {list(classes)}")
            _checks.check(len(classes) >= 2, f"task '{task.name}': a multiclass task needs at "
                          f"least 2 classes, column '{task.column}' has {len(classes)}")
            numbers = pd.to_numeric(present, errors="coerce")
            _checks.check(task.classes or len(classes) <= MAX_CLASSES or numbers.isna().any(),
                          f"task '{task.name}': column '{task.column}' holds {len(classes)} "
                          "distinct numbers, too many for classes; a numeric target is a "
                          f"regression: --task {task.column}:regression")
            return replace(task, classes=classes)
        _checks.check(len(keys) == 2, f"task '{task.name}': binary labels must have 2 distinct "
                      f"values, column '{task.column}' has {len(keys)} ({', '.join(keys[:5])})")
        if task.positive is not None:
            positive = value_key(task.positive)
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
            raw = {c: to_numeric(require(df, c, "numeric"), c) for c in self.numeric}
            cols = [float32(self.encodings[c].transform(raw[c]), c, df.index)
                    for c in self.numeric]  # missing -> zeros
            cols += [np.isnan(raw[c]).astype(np.float32)[:, None] for c in self.indicators]
            numeric = torch.from_numpy(np.concatenate(cols, axis=1))
        categorical = None
        if self.categorical:
            codes = [vocab_codes(require(df, c, "categorical"), self.vocab[c]) + 1
                     for c in self.categorical]  # unseen and missing: -1 + 1 = 0 (OOV)
            categorical = torch.from_numpy(np.stack(codes, axis=1))
        ids = None if self.lookup is None else torch.from_numpy(self.lookup.transform(df))
        y = self._labels(df) if labels else None
        weights = None
        if self.weight_column is not None and (labels or self.weight_column in df.columns):
            w = to_numeric(require(df, self.weight_column, "sample-weight"), self.weight_column)
            with np.errstate(invalid="ignore"):
                bad = ~(np.isfinite(w) & (w >= 0))
            if bad.any():
                fail_at(df.index, bad, f"sample-weight column '{self.weight_column}': value "
                         f"{w[bad][0]}", "; weights must be finite and >= 0")
            weights = torch.from_numpy(float32(w, self.weight_column, df.index))
        return TensorTable(numeric, categorical, y, weights, ids)

    def _labels(self, df: pd.DataFrame) -> torch.Tensor:
        out = np.full((len(df), len(self.tasks)), np.nan, dtype=np.float32)
        for t, task in enumerate(self.tasks):
            series = require(df, task.column, f"task '{task.name}': label")
            if task.kind == "regression":
                mean, std = self.label_stats.get(task.name, (0.0, 1.0))
                with np.errstate(over="ignore", invalid="ignore"):
                    out[:, t] = float32((label_values(series, task.column) - mean) / std,
                                         task.column, df.index)
                continue
            codes = vocab_codes(series, task.classes)
            unknown = (codes < 0) & series.notna().to_numpy()
            if unknown.any():
                fail_at(df.index, unknown, f"task '{task.name}': label value "
                         f"{_show(series[unknown].iloc[0])} in column '{task.column}'",
                         f" is not one of the {len(task.classes)} classes seen in training "
                         f"({_some(task.classes)})")
            out[:, t] = np.where(codes >= 0, codes, np.nan)
        self._check_funnel(df, out)
        return torch.from_numpy(out)

    def _check_funnel(self, df: pd.DataFrame, labels: np.ndarray) -> None:
        """A funnel step (``after``) may be positive only where the step before it is."""
        names = [t.name for t in self.tasks]
        for t, task in enumerate(self.tasks):
            if task.after is None or task.after not in names:
                continue
            s = names.index(task.after)
            bad = (labels[:, t] == 1) & (labels[:, s] == 0)
            if bad.any():
                fail_at(df.index, bad, f"task '{task.name}' follows '{task.after}', but "
                         f"{int(bad.sum())} row(s) have a positive '{task.column}' with a "
                         f"negative '{self.tasks[s].column}', the first", "; a later funnel "
                         "step needs the earlier one (fix the labels or drop after=)")

    def unscale(self, task_name: str, values: np.ndarray) -> np.ndarray:
        """A regression task's model outputs (or encoded labels) in the label's original
        scale; identity for unscaled tasks."""
        mean, std = self.label_stats.get(task_name, (0.0, 1.0))
        return values * std + mean

    # ---- description ---------------------------------------------------------------------
    def input_spec(self, embedding_dim: int = 8) -> InputSpec:
        """The model's inputs: numeric columns (+ missing indicators), categorical sizes
        (``embedding_dim`` wide), the lookups (at least ``embedding_dim`` wide)."""
        _checks.check(self.fitted, "the encoder is not fitted; call fit(train_df) first")
        return InputSpec(
            numeric=tuple(name for c in self.numeric for name in self._input_names(c))
            + tuple(f"{c}__missing" for c in self.indicators),
            categorical=tuple((c, len(self.vocab[c]) + 1) for c in self.categorical),
            embedding_dim=embedding_dim,
            lookups=self.lookup.lookups(embedding_dim) if self.lookup else (),
            periodic=tuple(c for c in self.numeric if self.encodings[c].kind == "periodic"))

    def _input_names(self, column: str) -> list[str]:
        width = self.encodings[column].width
        return [column] if width == 1 else [f"{column}__ple{j}" for j in range(width)]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (saved with the model)."""
        return {"tasks": [t.to_dict() for t in self.tasks], "numeric": self.numeric,
                "categorical": self.categorical, "weight_column": self.weight_column,
                "exclude": self.exclude, "min_count": self.min_count,
                "stats": {k: list(v) for k, v in self.stats.items()},
                "encodings": {k: v.to_dict() for k, v in self.encodings.items()},
                "indicators": self.indicators, "vocab": self.vocab,
                "label_stats": {k: list(v) for k, v in self.label_stats.items()},
                **({"lookups": self.lookup.to_dict()} if self.lookup else {})}

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
               and all(isinstance(v, list) and _all_str(v) and len(set(v)) == len(v)
                       for v in vocab.values()),
               "'vocab' must map each categorical column to a list of distinct values")
        _check(set(indicators) <= set(numeric), "'indicators' must name numeric columns")
        enc = cls(tasks, numeric, categorical, weight, exclude, min_count)
        enc.stats = _pairs(data["stats"], "stats", set(numeric), every=True)
        saved = data.get("encodings", {})  # absent: written before encodings, standardised
        _check(isinstance(saved, dict) and set(saved) <= set(numeric),
               "'encodings' must map numeric columns to their encodings")
        enc.encodings = {c: NumericEncoding.from_dict(saved[c], c) if c in saved
                         else NumericEncoding("standard", *enc.stats[c]) for c in numeric}
        enc.indicators, enc.vocab = indicators, {k: list(v) for k, v in vocab.items()}
        enc.label_stats = _pairs(data.get("label_stats", {}), "label_stats",
                                 {t.name for t in tasks if t.kind == "regression"}, every=False)
        enc.scale_regression = bool(enc.label_stats)
        if "lookups" in data:
            enc.lookup = LookupEncoder.from_dict(data["lookups"])
            enc.features = tuple(enc.lookup.specs.values())
        enc.fitted = True
        return enc
