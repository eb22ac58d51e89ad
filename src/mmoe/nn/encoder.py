"""Feature encoder: numeric columns, categorical embeddings and pooled table lookups (hashed ids,
sequences) into one dense vector x, optionally with the lookups' pairwise products, and the same
encoding folded into a first linear layer (x never materialised) when it holds no lookups."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .. import ops
from ..ops import reference

#: std of the lookup tables' initial rows. Most rows of an id table are seen a few times in
#: training; started at N(0, 1) (nn.Embedding's default) they keep noise of the size of a
#: learnt signal and the model fits it (click AUC 0.759 vs 0.806 on 100k generated funnel
#: rows, benchmarks/recsys_throughput.py); near zero, a rare id adds little until it is
#: learnt. torch-rechub and DeepCTR start at 1e-4.
TABLE_INIT_STD = 0.01


def pool_lookups(ids: torch.Tensor, tables: Sequence[torch.Tensor],
                 layout: Sequence[tuple[int, int, int, str]]) -> list[torch.Tensor]:
    """Each lookup ``(table, start, stop, pooling)`` of ``layout``: its slots of ``ids`` (B, S)
    pooled in ``tables[table]`` (V, D) -> (B, D), with sparse gradients."""
    return [ops.pooled_lookup(ids[:, start:stop], tables[t], pooling, sparse=True)
            for t, start, stop, pooling in layout]


class FeatureEncoder(nn.Module):
    """Concatenate numeric inputs, one embedding per categorical column and one pooled
    lookup per table column.

    Numeric columns arrive standardised (the data layer fits the statistics on the training
    data). Categorical columns arrive as integer codes in ``[0, cardinality)``, code 0 being
    out-of-vocabulary or missing. All categorical columns share one embedding table with a
    per-column offset, so encoding is a single lookup whatever the number of columns.

    Lookups (hashed ids, sequences, categorical columns of their own width) arrive side by side
    in ``ids`` (B, S), each lookup its ``slots`` columns, id 0 being padding; each reads its
    table (a table shared by several lookups is one parameter) and pools the ids present
    (:func:`mmoe.ops.pooled_lookup`); tables start at N(0, :data:`TABLE_INIT_STD`²), the
    categorical embedding at N(0, 1) (scaled to the tables' start under
    ``ModelConfig.hidden_norm``). Tables get sparse gradients (the rows a batch used):
    :meth:`sparse_parameters` lists them for an optimizer that takes sparse gradients.

    With ``cross``, x also holds the element-wise product e_i ⊙ e_j of the pooled lookups i
    and j of each pair (``ModelConfig.cross``: every two of one width): the pairwise
    interactions of a factorisation machine, <e_i, e_j> = sum_k (e_i ⊙ e_j)_k, kept per
    dimension (NCF's generalised matrix factorisation, He et al. 2017), so each task's layers
    can weigh the dimensions their own way. A network over concatenated embeddings learns such
    dot products poorly (Rendle et al., RecSys 2020); a user's history times the candidate
    item is the click signal of a recommender log.

    Args:
        num_numeric: number of numeric columns.
        cardinalities: codes per categorical column (including the OOV code 0).
        embedding_dim: width of every categorical embedding.
        lookups: the table columns (``mmoe.config.Lookup``: name, table, rows, dim, slots,
            pooling), in the order of their slots.
        cross: ``(i, j)`` pairs of lookups of one width whose product x also holds.

    Shapes:
        numeric (B, num_numeric) float, categorical (B, len(cardinalities)) long, ids (B, S)
        long -> (B, num_numeric + len(cardinalities) * embedding_dim + sum of lookup dims
        [+ the crossed pairs' dims]).

    Example:
        >>> enc = FeatureEncoder(3, (5, 2), embedding_dim=4)
        >>> enc(torch.randn(6, 3), torch.zeros(6, 2, dtype=torch.long)).shape
        torch.Size([6, 11])
    """

    def __init__(self, num_numeric: int, cardinalities: tuple[int, ...] = (),
                 embedding_dim: int = 8, lookups: tuple = (),
                 cross: Sequence[tuple[int, int]] = ()):
        super().__init__()
        self.num_numeric = num_numeric
        self.num_categorical = len(cardinalities)
        self.embedding_dim = embedding_dim
        if cardinalities:
            for name, index in ops.fold_layout(cardinalities)._asdict().items():
                self.register_buffer(name, index, persistent=False)  # moves with the module
            self.embedding = nn.Embedding(sum(cardinalities), embedding_dim)
        else:
            self.embedding = None
        # tables in order of first use, named t0, t1, ... (column names need not be valid keys)
        table_of = {lk.table: None for lk in lookups}
        self.tables = nn.ParameterList(
            nn.Parameter(TABLE_INIT_STD * torch.randn(
                next(lk.rows for lk in lookups if lk.table == name),
                next(lk.dim for lk in lookups if lk.table == name)))
            for name in table_of)  # (rows, dim) each, N(0, TABLE_INIT_STD^2)
        index = {name: i for i, name in enumerate(table_of)}
        starts = [sum(lk.slots for lk in lookups[:j]) for j in range(len(lookups))]
        self.lookups = tuple((index[lk.table], start, start + lk.slots, lk.pooling)
                             for lk, start in zip(lookups, starts, strict=True))
        dims = [lk.dim for lk in lookups]
        self.cross = tuple((int(i), int(j)) for i, j in cross)
        self.out_features = (num_numeric + len(cardinalities) * embedding_dim
                             + sum(dims) + sum(dims[i] for i, _ in self.cross))

    def forward(self, numeric: torch.Tensor | None, categorical: torch.Tensor | None = None,
                ids: torch.Tensor | None = None) -> torch.Tensor:
        parts = []
        if self.embedding is not None:
            parts.append(reference.encode(numeric if self.num_numeric else None, categorical,
                                          self.offsets, self.embedding.weight))  # (B, d)
        elif self.num_numeric:
            parts.append(reference.encode(numeric, None, None, None))  # (B, n_num)
        pooled = pool_lookups(ids, self.tables, self.lookups)  # (B, dim) each
        parts += pooled + [pooled[i] * pooled[j] for i, j in self.cross]  # e_i ⊙ e_j (B, dim)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The lookup tables, whose gradients are sparse (only the rows a batch used)."""
        return list(self.tables)

    def folds(self, batch_rows: int) -> bool:
        """Whether :meth:`fold_linear` pays for this batch size: when the vocabulary V is at
        most half the B·n_cat lookups, building the folded table (V·D·N) and gathering
        (B·n_cat·N) is cheaper than the (B, n_cat·D) x (n_cat·D, N) product (B·n_cat·D·N),
        forward and backward."""
        return (self.embedding is not None and not self.lookups
                and 2 * self.embedding.num_embeddings <= batch_rows * self.num_categorical)

    def layout(self) -> ops.FoldLayout:
        """The categorical columns' rows in the embedding table (see :class:`ops.FoldLayout`)."""
        return ops.FoldLayout(*(getattr(self, name) for name in ops.FoldLayout._fields))

    def fold_linear(self, numeric: torch.Tensor | None, categorical: torch.Tensor,
                    weights: list[torch.Tensor], biases: list[torch.Tensor | None]
                    ) -> list[torch.Tensor]:
        """Stacked layers applied to x = ``forward(numeric, categorical)`` without
        materialising x (:func:`mmoe.ops.fold_linear`): the same values as
        ``shared_input_linear(x, layers)`` up to float rounding.

        Args:
            numeric: (B, n_num) or ``None``.
            categorical: (B, n_cat) codes.
            weights: (G_l, d, O_l) per layer.
            biases: (G_l, O_l) or ``None`` per layer.

        Returns:
            (G_l, B, O_l) per layer.

        Example:
            >>> enc = FeatureEncoder(1, (3,), embedding_dim=2)
            >>> w = torch.randn(4, 3, 5)
            >>> x = (torch.randn(6, 1), torch.randint(0, 3, (6, 1)))
            >>> folded = enc.fold_linear(*x, [w], [None])[0]
            >>> bool(torch.allclose(folded, (enc(*x) @ w).detach(), atol=1e-6))
            True
        """
        return ops.fold_linear(numeric if self.num_numeric else None, categorical,
                               self.layout(), self.embedding.weight, weights, biases)
