"""What the model's inputs are, as sizes (models never see DataFrames)."""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from .. import _checks
from ._fields import _int_range, _Serializable, _text, shown
from .features import MAX_ROWS, POOLINGS

#: a periodic column's embedding: k learnt frequencies initialised from N(0, σ²), d outputs.
#: k and d are the defaults of Gorishniy et al.'s rtdl_num_embeddings; its σ = 0.01 left a
#: z-scored column almost constant (cos ≈ 1) and learnt nothing in 20 epochs at lr 3e-3 on a
#: sin(3x) task, so σ was chosen on the tabular suite's validation splits: 0.3 (mean gap to
#: boosting -0.012) over 0.1 (-0.021); docs/tabular.md
PERIODIC_FREQUENCIES, PERIODIC_DIM, PERIODIC_SIGMA = 48, 24, 0.3


@dataclass(frozen=True)
class Lookup(_Serializable):
    """A column looked up in an embedding table: an id (one slot) or a sequence of ids
    (``slots`` of them), pooled into one ``dim``-wide vector.

    Args:
        name: the column.
        table: the table's name (the column's own name, or the column whose table it shares).
        rows: rows of the table; row 0 is padding (a missing id, an unused slot: zeros).
        dim: the table's width.
        slots: ids per row (1 for an id, ``max_len`` for a sequence).
        pooling: ``sum`` or ``mean`` over the ids present.

    Example:
        >>> Lookup("history", "item_id", rows=1025, dim=16, slots=10).pooling
        'mean'
    """

    name: str
    table: str
    rows: int
    dim: int
    slots: int = 1
    pooling: str = "mean"

    def __post_init__(self) -> None:
        _text(self.name, "lookup name")
        _text(self.table, f"lookup '{shown(self.name)}': table")
        _int_range(self.rows, f"lookup '{shown(self.name)}': rows", 2, MAX_ROWS)
        _int_range(self.dim, f"lookup '{shown(self.name)}': dim", 1, 4096)
        _int_range(self.slots, f"lookup '{shown(self.name)}': slots", 1, 4096)
        _checks.one_of(self.pooling, POOLINGS, f"lookup '{shown(self.name)}': pooling")


def cross_pairs(dims: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """The lookups ``ModelConfig.cross`` multiplies: every two of one width (indices into
    ``dims``, the lookups' widths).

    Example:
        >>> cross_pairs([16, 16, 8, 16])
        ((0, 1), (0, 3), (1, 3))
    """
    return tuple((i, j) for i, j in itertools.combinations(range(len(dims)), 2)
                 if dims[i] == dims[j])


def cross_width(dims: Sequence[int]) -> int:
    """The inputs :func:`cross_pairs` adds to x: each product is as wide as its two lookups.

    Example:
        >>> cross_width([16, 16, 8, 16])
        48
    """
    return sum(dims[i] for i, _ in cross_pairs(dims))


@dataclass(frozen=True)
class InputSpec(_Serializable):
    """The model's input columns, as sizes (models never see DataFrames).

    Args:
        numeric: names of the numeric input columns (already standardised by the data layer).
        categorical: ``(name, cardinality)`` per categorical column; index 0 is reserved for
            out-of-vocabulary and missing values, so cardinality counts it.
        embedding_dim: width of each categorical column's embedding.
        lookups: columns with tables of their own (hashed ids, sequences, categorical columns
            of another width or sharing a table), in the order of their slots in the model's
            ``ids`` input.
        periodic: numeric columns the model embeds with learnt frequencies (each becomes
            :data:`PERIODIC_DIM` inputs; :class:`mmoe.nn.PeriodicEmbedding`).

    Example:
        >>> InputSpec.dense(100).width
        100
        >>> InputSpec(numeric=("a",), lookups=(Lookup("user", "user", 1025, 16),)).width
        17
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[tuple[str, int], ...] = ()
    embedding_dim: int = 8
    lookups: tuple[Lookup, ...] = ()
    periodic: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _checks.check(isinstance(self.numeric, list | tuple)
                      and all(isinstance(n, str) for n in self.numeric),
                      f"numeric must be a list of column names, got {self.numeric!r}")
        object.__setattr__(self, "numeric", tuple(self.numeric))
        _checks.check(isinstance(self.categorical, list | tuple) and all(
            isinstance(c, list | tuple) and len(c) == 2 and isinstance(c[1], numbers.Integral)
            and not isinstance(c[1], bool) for c in self.categorical),
            f"categorical must be a list of (column, cardinality) pairs, got "
            f"{self.categorical!r}")
        object.__setattr__(self, "categorical",
                           tuple((str(n), int(c)) for n, c in self.categorical))
        _checks.positive_int(self.embedding_dim, "embedding_dim")
        _checks.check(isinstance(self.lookups, list | tuple),
                      f"lookups must be a list, got {self.lookups!r}")
        object.__setattr__(self, "lookups", tuple(
            lk if isinstance(lk, Lookup) else Lookup.from_dict(lk) for lk in self.lookups))
        _checks.check(self.numeric or self.categorical or self.lookups,
                      "the model needs at least one input column")
        _checks.check(isinstance(self.periodic, list | tuple)
                      and all(p in self.numeric for p in self.periodic),
                      f"periodic must name numeric columns, got {self.periodic!r}")
        object.__setattr__(self, "periodic", tuple(self.periodic))
        tables: dict[str, tuple[int, int]] = {}
        for lk in self.lookups:
            shape = tables.setdefault(lk.table, (lk.rows, lk.dim))
            _checks.check(shape == (lk.rows, lk.dim), f"lookup '{shown(lk.name)}' shares table "
                          f"'{shown(lk.table)}' but gives it another shape "
                          f"({lk.rows}, {lk.dim}) than {shape}")
        for name, card in self.categorical:
            _checks.check(card >= 1,
                          f"column '{shown(name)}': cardinality must be >= 1, got {card}")

    @classmethod
    def dense(cls, d: int, prefix: str = "x") -> InputSpec:
        """A plain dense input of ``d`` numeric features named ``x0 .. x{d-1}``."""
        _checks.positive_int(d, "input dimension")
        return cls(numeric=tuple(f"{prefix}{i}" for i in range(d)))

    @property
    def width(self) -> int:
        """Width d of the encoded input vector."""
        return (self.numeric_width + len(self.categorical) * self.embedding_dim
                + sum(lk.dim for lk in self.lookups))

    @property
    def numeric_width(self) -> int:
        """Inputs the numeric columns take once the periodic ones are embedded."""
        return len(self.numeric) + (PERIODIC_DIM - 1) * len(self.periodic)

    @property
    def slots(self) -> int:
        """Columns of the model's ``ids`` input (the lookups' slots side by side)."""
        return sum(lk.slots for lk in self.lookups)
