"""What an undeclared input column is, read from its training values (`mmoe train` prints the
result; a config's ``[features.NAME]`` tables state it exactly instead):

- a list column (Parquet ``list<...>``), or text whose cells mostly hold the delimiter
  (``12|7|93``): ``sequence`` of at most the longest training list's ids (and at most 20),
  hashed when its ids have more than :data:`HASH_ABOVE` distinct values; a sequence whose ids
  are mostly (:data:`SHARE_OVERLAP`) values of an id column shares that column's table (a
  history of clicked items reads the item table);
- text or booleans: ``categorical``, or ``hashed`` beyond :data:`HASH_ABOVE` distinct values;
- integers in a column named like an id (``user_id``, ``itemId``, ``sku_ids``):
  ``categorical``, or ``hashed`` beyond :data:`HASH_ABOVE` distinct values;
- other numbers: ``numeric``.

Hashed columns get :func:`~mmoe.config.default_buckets` of their distinct values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa

from ..config import FeatureSpec, default_buckets
from .lookups import column_keys

#: distinct values above which an id column is hashed rather than given a vocabulary
HASH_ABOVE = 1000
#: share of a sequence's distinct ids that must be values of an id column for it to share
#: that column's table
SHARE_OVERLAP = 0.5
#: share of non-empty text cells holding the delimiter that makes a text column a sequence
DELIMITED = 0.5
#: ``id`` / ``ids`` as a word at the end (``user_id``, ``SKU IDS``, ``id``) or camelCase
#: (``itemId``, ``userID``); not words that merely end in "id" (``valid``, ``android``)
_ID_NAME = re.compile(r"(?:^|[_\W])(?i:ids?)$|[a-z0-9](?:Id|ID)s?$")
_SAMPLE = 10_000


def id_like(name: str) -> bool:
    """Whether a column's name reads as an id (``user_id``, ``itemId``, ``id``).

    Example:
        >>> [id_like(n) for n in ("user_id", "itemId", "ID", "sku_ids", "valid", "android")]
        [True, True, True, True, False, False]
    """
    return bool(_ID_NAME.search(str(name)))


def _is_list(series: pd.Series) -> bool:
    dtype = series.dtype
    return isinstance(dtype, pd.ArrowDtype) and (pa.types.is_list(dtype.pyarrow_dtype)
                                                 or pa.types.is_large_list(dtype.pyarrow_dtype))


def _delimited(series: pd.Series, delimiter: str) -> bool:
    """Text cells that mostly hold ``delimiter``: a sequence written in CSV."""
    text = series.dropna().astype(str)
    text = text[text.str.strip() != ""].iloc[:_SAMPLE]
    return len(text) > 0 and float(text.str.contains(delimiter, regex=False).mean()) >= DELIMITED


def _integers(series: pd.Series) -> bool:
    """Numbers that are all whole (CSV chunks read integers as float64)."""
    if pd.api.types.is_integer_dtype(series.dtype):
        return True
    values = series.dropna().to_numpy(dtype=np.float64, na_value=np.nan)
    return values.size > 0 and bool(np.all(np.mod(values, 1.0) == 0.0))


def _distinct(series: pd.Series, spec: FeatureSpec) -> set[str]:
    keys, present, _ = column_keys(series, spec)
    return set(np.unique(keys[present]).tolist())


def infer_kind(series: pd.Series, delimiter: str = "|") -> str:
    """The feature kind of one column (see the module docstring).

    Example:
        >>> infer_kind(pd.Series(["a|b", "c"])), infer_kind(pd.Series([1.5, 2.0]))
        ('sequence', 'numeric')
        >>> infer_kind(pd.Series(range(2000), name="user_id"))
        'hashed'
    """
    if _is_list(series):
        return "sequence"
    many = series.nunique(dropna=True) > HASH_ABOVE
    if pd.api.types.is_bool_dtype(series.dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(series.dtype):
        if id_like(series.name) and _integers(series):
            return "hashed" if many else "categorical"
        return "numeric"
    if _delimited(series, delimiter):
        return "sequence"
    return "hashed" if many else "categorical"


def sized(kind: str, distinct: int) -> dict[str, object]:
    """The kind and table size of an id or sequence column with ``distinct`` training values:
    hashed into :func:`~mmoe.config.default_buckets` buckets beyond :data:`HASH_ABOVE` of
    them, else a vocabulary (``categorical``, or a sequence with ``buckets = 0``).

    Example:
        >>> sized("id", 50), sized("id", 5000), sized("sequence", 5000)
        ({'kind': 'categorical'}, {'kind': 'hashed', 'buckets': 16384}, \
{'kind': 'sequence', 'buckets': 16384})
    """
    many = distinct > HASH_ABOVE
    if kind == "sequence":
        return {"kind": "sequence", "buckets": default_buckets(distinct) if many else 0}
    return {"kind": "hashed", "buckets": default_buckets(distinct)} if many else \
        {"kind": "categorical"}


def infer_specs(df: pd.DataFrame, columns: Sequence[str],
                known: Sequence[FeatureSpec] = ()) -> list[FeatureSpec]:
    """Feature specs of the undeclared input ``columns`` of the training rows ``df``.

    Args:
        df: training rows.
        columns: the columns to infer.
        known: declared specs, candidates for an inferred sequence to share.

    Example:
        >>> df = pd.DataFrame({"item_id": np.arange(3000) % 1500,
        ...                    "history": ["1|2", "3", ""] * 1000, "price": 1.0})
        >>> [(s.name, s.kind, s.buckets, s.share)
        ...  for s in infer_specs(df, ["item_id", "history", "price"])]
        [('item_id', 'hashed', 4096, None), ('history', 'sequence', 0, 'item_id'), \
('price', 'numeric', 0, None)]
    """
    specs: list[FeatureSpec] = []
    for name in columns:
        spec = FeatureSpec(name, infer_kind(df[name]))
        if spec.kind == "hashed":
            spec = replace(spec, buckets=default_buckets(len(_distinct(df[name], spec))))
        elif spec.kind == "sequence":
            keys, present, lengths = column_keys(df[name], spec)
            spec = replace(spec, **sized("sequence", len(np.unique(keys[present]))),
                           max_len=int(min(spec.max_len, max(1, lengths.max(initial=1)))))
        specs.append(spec)
    owners = [s for s in [*known, *specs] if s.kind in ("hashed", "categorical")
              and s.share is None and s.name in df.columns]
    owner_keys = {s.name: _distinct(df[s.name], s) for s in owners}
    return [_shared(df, s, owner_keys) if s.kind == "sequence" else s for s in specs]


def _shared(df: pd.DataFrame, spec: FeatureSpec, owner_keys: dict[str, set[str]]
            ) -> FeatureSpec:
    """``spec`` sharing the id column most of its ids are values of, if any."""
    ids = _distinct(df[spec.name], spec)
    if not ids or not owner_keys:
        return spec
    best = max(owner_keys, key=lambda name: len(ids & owner_keys[name]))
    if len(ids & owner_keys[best]) < SHARE_OVERLAP * len(ids):
        return spec
    return replace(spec, buckets=0, share=best)
