"""How each input column becomes part of x: a feature spec per column.

Specs are data, like tasks: inferred by `mmoe train` (and printed), stated exactly in a
config's ``[features.NAME]`` tables, saved with the model and applied the same way at predict,
export and serve time.

- ``numeric``: a number, standardised with the training mean and std (a missing value: the
  mean, plus a missing indicator);
- ``categorical``: a vocabulary of the training values seen at least ``min_count`` times; any
  other value gets the out-of-vocabulary embedding;
- ``hashed``: an id with too many values for a vocabulary (users, items): row
  ``1 + h(value) mod buckets`` of its table, h a stable 64-bit hash (SipHash-2-4 with a fixed
  key, the same in every process, machine and version);
- ``sequence``: a list of ids per row (a Parquet list, or a CSV cell ``12|7|93`` split at
  ``delimiter``): the last ``max_len`` ids (oldest first), each hashed (``buckets`` > 0) or
  looked up in a vocabulary, pooled by ``sum`` or ``mean`` over the ids present (an empty list
  gives zeros).

``share = "item_id"`` makes a column look up another column's table (a history of clicked
items reads the item table): its values are encoded exactly as that column's, and the two
share storage and gradients. ``embedding_dim`` (``None``: the default rule,
:func:`default_width`) sets a column's own width.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _checks
from ._fields import _int_range, _Serializable, _text, shown

FEATURE_KINDS: tuple[str, ...] = ("numeric", "categorical", "hashed", "sequence")
POOLINGS: tuple[str, ...] = ("sum", "mean")
NUMERIC_ENCODINGS: tuple[str, ...] = ("standard", "quantile", "ple", "periodic")
MAX_ROWS = 2**31 - 2  # rows of one table (int32 row indexes in the kernels)


def default_width(rows: int, base: int = 8) -> int:
    """The default embedding width of a hashed or sequence column with ``rows`` table rows:
    round(1.6 · rows^0.56) (the rule fast.ai uses), at least ``base`` and at most 32.

    Example:
        >>> default_width(50), default_width(145), default_width(1_000_000)
        (14, 26, 32)
    """
    return int(min(32, max(base, round(1.6 * rows ** 0.56))))


def default_buckets(distinct: int) -> int:
    """The default hash buckets of an id column with ``distinct`` values in the training
    data: the power of two at or above 2 · distinct, between 1024 and 2^22 (at most one row per
    two ids, so at least 3 ids in 5 have a row of their own: e^-0.5 of them).

    Example:
        >>> default_buckets(10), default_buckets(30_000), default_buckets(10**8)
        (1024, 65536, 4194304)
    """
    return int(min(2**22, max(1024, 1 << max(0, 2 * int(distinct) - 1).bit_length())))


@dataclass(frozen=True)
class FeatureSpec(_Serializable):
    """How one column becomes part of the model's input (see the module docstring).

    Args:
        name: the column.
        kind: ``numeric``, ``categorical``, ``hashed`` or ``sequence``.
        embedding_dim: the column's embedding width (``None``: the default rule).
        min_count: categorical and vocabulary sequences: values seen fewer times in training
            are out of vocabulary.
        buckets: hashed: hash buckets (0: :func:`default_buckets` of the training data's
            distinct values); sequence: > 0 hashes the ids, 0 builds a vocabulary.
        max_len: sequence: the most recent ids kept per row.
        pooling: sequence: ``sum`` or ``mean``.
        delimiter: sequence: the separator in a CSV cell.
        share: the column whose table (and encoding) this one uses.
        encoding: numeric: ``standard``, ``quantile`` or ``ple`` (:mod:`mmoe.data.numeric`;
            ``None``: chosen from the training values).

    Example:
        >>> FeatureSpec("history", "sequence", share="item_id", max_len=10).pooling
        'mean'
    """

    name: str
    kind: str = "numeric"
    embedding_dim: int | None = None
    min_count: int = 1
    buckets: int = 0
    max_len: int = 20
    pooling: str = "mean"
    delimiter: str = "|"
    share: str | None = None
    encoding: str | None = None

    def __post_init__(self) -> None:
        _text(self.name, "feature name")
        where = f"feature '{shown(self.name)}'"
        _checks.check(isinstance(self.kind, str), f"{where}: kind must be a string")
        _checks.one_of(self.kind, FEATURE_KINDS, f"{where}: kind")
        if self.embedding_dim is not None:
            _int_range(self.embedding_dim, f"{where}: embedding_dim", 1, 4096)
        _int_range(self.min_count, f"{where}: min_count", 1, 2**62)
        _int_range(self.buckets, f"{where}: buckets", 0, MAX_ROWS - 1)
        _int_range(self.max_len, f"{where}: max_len", 1, 4096)
        _checks.check(isinstance(self.pooling, str), f"{where}: pooling must be a string")
        _checks.one_of(self.pooling, POOLINGS, f"{where}: pooling")
        _text(self.delimiter, f"{where}: delimiter")
        if self.share is not None:
            _text(self.share, f"{where}: share")
            _checks.check(self.share != self.name, f"{where}: a column cannot share its own "
                          "table; name another column")
            _checks.check(self.kind in ("hashed", "sequence", "categorical"),
                          f"{where}: a {self.kind} column has no table to share")
        if self.encoding is not None:
            _checks.check(self.kind == "numeric", f"{where}: encoding applies to numeric "
                          "columns only")
            _checks.one_of(self.encoding, NUMERIC_ENCODINGS, f"{where}: encoding")
        _checks.check(self.kind in ("hashed", "sequence") or self.buckets == 0,
                      f"{where}: buckets apply to hashed and sequence columns only")

    @property
    def has_table(self) -> bool:
        """Whether the column is looked up in an embedding table of its own or shared."""
        return self.kind != "numeric"
