"""Column values checked and converted for the encoder: numbers (finite, float32-safe),
label and category keys (``1``, ``1.0`` and ``"1"`` are one value), codes in a vocabulary.
A bad value is a :class:`~mmoe.data.table.RowError` at its row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import _checks
from .saved_encoder import show
from .table import RowError

F32_MAX = float(np.finfo(np.float32).max)
#: largest regression label: the metrics square errors in float32, so beyond sqrt(max) even
#: one label's squared error overflows
LABEL_MAX = float(np.sqrt(F32_MAX))


def fail_at(index: pd.Index, bad: np.ndarray, head: str, tail: str) -> None:
    """Raise a :class:`RowError` at the first row where ``bad`` holds, named by ``index``."""
    label = index[int(np.flatnonzero(bad)[0])]
    raise RowError(head, label.item() if isinstance(label, np.generic) else label, tail)


def value_key(value: Any) -> str:
    """Canonical text of a label or category value, so 1, 1.0 and '1' match across readers."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def value_keys(series: pd.Series) -> pd.Series:
    """``value_key`` of every value (missing stays missing). A text column holds only
    strings, so ``value_key`` is computed once per distinct value, not once per row."""
    if pd.api.types.is_string_dtype(series.dtype):
        uniques = series.dropna().unique()
        return series.map(dict(zip(uniques, (value_key(u) for u in uniques), strict=True)))
    return series.map(value_key, na_action="ignore")


def vocab_codes(series: pd.Series, values: Sequence[str]) -> np.ndarray:
    """Index of each value's key in ``values``; -1 for missing or unknown values."""
    keys = value_keys(series)
    return pd.Index(list(values)).get_indexer(keys).astype(np.int64)


def shown(columns: Sequence[Any]) -> str:
    """The first dozen column names, for a message."""
    return ", ".join(map(str, list(columns)[:12])) + (", ..." if len(columns) > 12 else "")


def require(df: pd.DataFrame, column: str, role: str) -> pd.Series:
    if column not in df.columns:
        _checks.fail(f"{role} column '{column}' is not in the data (columns: "
                     f"{shown(df.columns)}); fix the name")
    return df[column]


def to_numeric(series: pd.Series, column: str) -> np.ndarray:
    """Floats with NaN for missing; text that is not a number is an error naming the column."""
    values = pd.to_numeric(series, errors="coerce")
    bad = (values.isna() & series.notna() & (series.astype(str).str.strip() != "")).to_numpy()
    if bad.any():
        value = series.iloc[int(np.flatnonzero(bad)[0])]
        fail_at(series.index, bad, f"column '{column}': non-numeric value {show(value)}",
                 " in a numeric column; fix the value or declare the column categorical")
    out = values.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(out).any():
        value = out[np.isinf(out)][0]
        fail_at(series.index, np.isinf(out), f"column '{column}': infinite value {value}",
                 "; replace it with a finite number or leave it empty (missing)")
    return out


def float32(values: np.ndarray, column: str, index: pd.Index) -> np.ndarray:
    """``values`` as float32; a value float32 cannot hold is an error, not a silent inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isnan(values) & ~(np.abs(values) <= F32_MAX)
    if bad.any():
        fail_at(index, bad, f"column '{column}': value {values[bad][0]}",
                 " is too large for the model's float32 arithmetic after encoding; rescale "
                 "the column")
    return values.astype(np.float32)


def label_values(series: pd.Series, column: str) -> np.ndarray:
    """A regression label column as floats; a label whose squared error would overflow the
    metrics is an error at encoding, not an inf after training."""
    y = to_numeric(series, column)
    with np.errstate(invalid="ignore"):
        big = np.abs(y) > LABEL_MAX
    if big.any():
        fail_at(series.index, big, f"column '{column}': regression label {y[big][0]}",
                 f" is beyond +-{LABEL_MAX:.3g}, where squared errors overflow; rescale "
                 "the column (e.g. divide it by a power of 10)")
    return y


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and std of the non-missing values without overflow (scaled by max |v|)."""
    finite = values[~np.isnan(values)]
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    if scale == 0.0:
        return 0.0, 1.0
    unit = finite / scale
    std = float(unit.std()) * scale
    return float(unit.mean()) * scale, std if std > 0 else 1.0
