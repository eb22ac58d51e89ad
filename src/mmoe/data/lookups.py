"""LookupEncoder: the columns looked up in embedding tables of their own (hashed ids,
sequences, categorical columns with their own width or a shared table) -> the model's ``ids``
input, (N, S) int64 table rows side by side, row 0 padding.

Each table belongs to one column, its *owner*; a column with ``share = OWNER`` encodes its
values exactly as the owner does (same hash and buckets, or same vocabulary) and looks them up
in the owner's table. A vocabulary (categorical owners, and sequences with ``buckets = 0``) is
built from the owner's training values and those of every column sharing it, keeping values
seen at least the owner's ``min_count`` times; rows: 0 padding, 1 out of vocabulary, 2 + index.
A hashed table has ``buckets + 1`` rows (:mod:`mmoe.data.ids`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import _checks
from ..config import FeatureSpec, Lookup, default_buckets, default_width, shown
from .ids import hashed_rows, id_keys, recent_slots, sequence_cells, vocabulary_rows

#: feature kinds that become lookups
LOOKUP_KINDS = ("categorical", "hashed", "sequence")


def column_keys(series: pd.Series | pa.Array, spec: FeatureSpec
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The ids of one column: ``(keys (M,), present (M,), lengths (N,) or None)``; a sequence
    column's ids are flattened row after row (``lengths`` ids per row), an id column has one
    per row (M = N, ``lengths`` None)."""
    if spec.kind != "sequence":
        keys, present = id_keys(series)
        return keys, present, None
    flat, lengths = sequence_cells(series, spec.delimiter)
    keys, present = id_keys(flat)
    return keys, present, lengths


class LookupEncoder:
    """Fit the tables of the lookup columns; turn a DataFrame into their table rows.

    Args:
        specs: one :class:`~mmoe.config.FeatureSpec` per lookup column (kind categorical,
            hashed or sequence), in the order of their slots in ``ids``.

    Example:
        >>> df = pd.DataFrame({"item": [5, 7, 5], "history": ["7|5", "", "5"]})
        >>> enc = LookupEncoder([FeatureSpec("item", "hashed", buckets=1000),
        ...                      FeatureSpec("history", "sequence", share="item", max_len=3)])
        >>> [(lk.name, lk.table, lk.rows, lk.slots) for lk in enc.fit(df).lookups()]
        [('item', 'item', 1001, 1), ('history', 'item', 1001, 3)]
        >>> enc.transform(df)
        array([[290,  54, 290,   0],
               [ 54,   0,   0,   0],
               [290, 290,   0,   0]])
    """

    def __init__(self, specs: Sequence[FeatureSpec]):
        self.specs = {s.name: s for s in specs}
        _checks.check(len(self.specs) == len(specs), "a lookup column is given twice")
        for spec in self.specs.values():
            where = f"feature '{shown(spec.name)}'"
            _checks.one_of(spec.kind, LOOKUP_KINDS, f"{where}: kind")
            if spec.share is None:
                continue
            owner = self.specs.get(spec.share)
            _checks.check(owner is not None, f"{where}: share names '{shown(spec.share)}', "
                          "which is not a hashed, sequence or categorical column")
            _checks.check(owner.share is None, f"{where}: '{shown(spec.share)}' shares "
                          f"'{shown(owner.share)}'s table itself; share '{shown(owner.share)}'")
            _checks.check(spec.embedding_dim in (None, owner.embedding_dim),
                          f"{where}: its embedding_dim differs from that of '{shown(owner.name)}'"
                          " whose table it shares; leave it out")
            _checks.check(spec.buckets in (0, owner.buckets), f"{where}: its buckets differ "
                          f"from those of '{shown(owner.name)}' whose table it shares; leave "
                          "them out")
        self.vocab: dict[str, list[str]] = {}  # owner -> values, row = 2 + index
        self._index: dict[str, pd.Index] = {}
        self.fitted = False

    def owner(self, name: str) -> FeatureSpec:
        """The spec of the column whose table ``name`` looks up (its own or the shared one)."""
        spec = self.specs[name]
        return self.specs[spec.share] if spec.share else spec

    @staticmethod
    def hashes(owner: FeatureSpec) -> bool:
        """Whether ``owner``'s table is hashed (else it is a vocabulary)."""
        return owner.kind == "hashed" or owner.buckets > 0

    # ---- fitting -------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame) -> LookupEncoder:
        """Build the vocabulary tables from the training rows ``df`` (and choose the buckets
        of hashed columns without any: :func:`~mmoe.config.default_buckets`)."""
        for name in self.specs:
            _checks.check(name in df.columns, f"feature column '{shown(name)}' is not in the "
                          "data; fix the name")
        for owner in [s for s in self.specs.values() if s.share is None]:
            if self.hashes(owner) and owner.buckets > 0:
                continue
            users = [s for s in self.specs.values() if owner.name in (s.name, s.share)]
            counts = pd.concat([pd.Series(keys[present], dtype=object) for keys, present, _ in
                                (column_keys(df[s.name], s) for s in users)]).value_counts()
            if self.hashes(owner):
                self.specs[owner.name] = replace(owner, buckets=default_buckets(len(counts)))
            else:
                self.vocab[owner.name] = sorted(
                    counts[counts >= owner.min_count].index.tolist())
        self._index = {k: pd.Index(v) for k, v in self.vocab.items()}
        self.fitted = True
        return self

    # ---- description ---------------------------------------------------------------------
    def rows(self, owner: FeatureSpec) -> int:
        """Rows of ``owner``'s table (row 0 padding)."""
        return owner.buckets + 1 if self.hashes(owner) else len(self.vocab[owner.name]) + 2

    def lookups(self, base_width: int = 8) -> tuple[Lookup, ...]:
        """The model's lookups, one per column (:class:`~mmoe.config.Lookup`); a table
        without an ``embedding_dim`` gets :func:`~mmoe.config.default_width` of its rows, at
        least ``base_width``."""
        _checks.check(self.fitted, "the encoder is not fitted; call fit(train_df) first")
        out = []
        for spec in self.specs.values():
            owner = self.owner(spec.name)
            rows = self.rows(owner)
            dim = owner.embedding_dim or default_width(rows, base_width)
            sequence = spec.kind == "sequence"
            out.append(Lookup(spec.name, owner.name, rows, dim,
                              spec.max_len if sequence else 1,
                              spec.pooling if sequence else "sum"))
        return tuple(out)

    # ---- transforming --------------------------------------------------------------------
    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Table rows (N, S) of ``df``'s lookup columns side by side (S = the lookups'
        slots): ids outside a vocabulary get row 1, a missing id and unused sequence slots 0,
        a sequence keeps its last ``max_len`` ids, oldest first."""
        _checks.check(self.fitted, "the encoder is not fitted; call fit(train_df) first")
        parts = []
        for spec in self.specs.values():
            _checks.check(spec.name in df.columns, f"feature column '{shown(spec.name)}' is "
                          "not in the data; fix the name")
            owner = self.owner(spec.name)
            keys, present, lengths = column_keys(df[spec.name], spec)
            rows = (hashed_rows(keys, present, owner.buckets) if self.hashes(owner)
                    else vocabulary_rows(keys, present, self._index[owner.name]))
            parts.append(rows[:, None] if lengths is None
                         else recent_slots(rows, lengths, spec.max_len))
        return np.concatenate(parts, axis=1)

    # ---- saving --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON form (saved with the model)."""
        return {"specs": [s.to_dict() for s in self.specs.values()], "vocab": self.vocab}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LookupEncoder:
        """Inverse of :meth:`to_dict`; malformed content is one ``ValueError``."""
        _checks.check(isinstance(data, dict) and set(data) == {"specs", "vocab"}
                      and isinstance(data["specs"], list), "lookup encoder description: it "
                      "must be a table with specs and vocab")
        enc = cls([FeatureSpec.from_dict(s) for s in data["specs"]])
        _checks.check(all(s.buckets > 0 for s in enc.specs.values()
                          if s.share is None and enc.hashes(s)),
                      "lookup encoder description: a hashed table has no buckets")
        owners = {s.name for s in enc.specs.values() if s.share is None and not enc.hashes(s)}
        vocab = data["vocab"]
        _checks.check(isinstance(vocab, dict) and set(vocab) == owners and all(
            isinstance(v, list) and all(isinstance(u, str) for u in v) and len(set(v)) == len(v)
            for v in vocab.values()),
            "lookup encoder description: 'vocab' must map each vocabulary table to its "
            "distinct values")
        enc.vocab = {k: list(v) for k, v in vocab.items()}
        enc._index = {k: pd.Index(v) for k, v in enc.vocab.items()}
        enc.fitted = True
        return enc
