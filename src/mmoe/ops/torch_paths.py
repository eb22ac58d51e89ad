"""The torch fast paths: the same results as :mod:`mmoe.ops.reference` with hand-written
backwards or a folded computation that the plain formula would not choose. Used where the
native kernels are not built, and on every device other than the CPU.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F

from . import reference

#: columns with at most this many codes get their table gradient from one one-hot product
ONE_HOT_MAX_CODES = 16


class FoldLayout(NamedTuple):
    """Index tensors that describe the categorical columns' rows in one embedding table, for
    the folded first layer (:func:`fold_layout` builds them from the cardinalities).

    Attributes:
        offsets: (C,) first table row of each column.
        padded_rows: (C·Vmax,) slot (c, j) holds column c's j-th row, or row 0 past its
            cardinality (a column-major padded view of the vocabulary).
        slot_of_row: (V,) the padded slot of each table row.
        column_of_row: (V,) the column each table row belongs to.
        small_cols: (Cs,) columns with at most ``ONE_HOT_MAX_CODES`` codes.
        small_offsets: (Cs,) start of each of those in their one-hot block.
        small_rows: (Vs,) their table rows.
        large_cols: (Cl,) the other columns.
    """

    offsets: torch.Tensor
    padded_rows: torch.Tensor
    slot_of_row: torch.Tensor
    column_of_row: torch.Tensor
    small_cols: torch.Tensor
    small_offsets: torch.Tensor
    small_rows: torch.Tensor
    large_cols: torch.Tensor


def fold_layout(cardinalities: tuple[int, ...]) -> FoldLayout:
    """The :class:`FoldLayout` of categorical columns with these cardinalities.

    Example:
        >>> fold_layout((2, 3)).column_of_row.tolist()
        [0, 0, 1, 1, 1]
    """
    cards = torch.tensor(cardinalities)
    offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
    j = torch.arange(max(cardinalities))
    valid = j[None, :] < cards[:, None]  # (C, Vmax)
    slots = torch.where(valid, offsets[:, None] + j[None, :], 0)
    small = (cards <= ONE_HOT_MAX_CODES).nonzero().squeeze(1)  # (Cs,)
    return FoldLayout(
        offsets=offsets, padded_rows=slots.flatten(),
        slot_of_row=valid.flatten().nonzero().squeeze(1),
        column_of_row=torch.repeat_interleave(torch.arange(len(cardinalities)), cards),
        small_cols=small,
        small_offsets=torch.cat([torch.zeros(1, dtype=torch.long), cards[small].cumsum(0)[:-1]]),
        small_rows=torch.cat([torch.arange(offsets[c], offsets[c] + cards[c])
                              for c in small.tolist()] or [torch.zeros(0, dtype=torch.long)]),
        large_cols=(cards > ONE_HOT_MAX_CODES).nonzero().squeeze(1))


class Mix(torch.autograd.Function):
    """:func:`reference.mix` (without the ReLU) as broadcast products and sums, forward and
    backward: the einsum ``gbe,ebh->gbh`` is a batch of B tiny matmuls, slow on CPU."""

    generate_vmap_rule = True  # the synthetic study vmaps models over runs

    @staticmethod
    def forward(gates: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        return reference.mix(gates, experts)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gates, experts = ctx.saved_tensors  # (G, B, E), (E, B, H); grad (G, B, H)
        d_gates = (grad.unsqueeze(2) * experts.transpose(0, 1).unsqueeze(0)).sum(-1)
        d_experts = (gates.unsqueeze(-1) * grad.unsqueeze(2)).sum(0).transpose(0, 1)
        return d_gates, d_experts


class _GatherSum(torch.autograd.Function):
    """out[b] = sum_c table[rows[b, c]]. Backward: dtable = S^T grad with S (B, V) the
    lookups' one-hot matrix, by one index_add per column, or (columns with few codes) one
    (V_small, B) x (B, N) product of their one-hot block: the CPU backward of
    ``embedding_bag`` is several times slower than either."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, rows: torch.Tensor,
                split: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        ctx.save_for_backward(rows, *(split or ()))
        ctx.num_rows = table.shape[0]
        return F.embedding_bag(rows, table, mode="sum")  # (B, N)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        rows, *split = ctx.saved_tensors
        grad = grad.contiguous()  # (B, N)
        out = grad.new_zeros(ctx.num_rows, grad.shape[1])  # (V, N)
        if split:
            codes, small_rows, rows = split  # (B, Cs) block positions, (Vs,), (B, Cl)
            one_hot = grad.new_zeros(grad.shape[0], small_rows.numel())  # (B, Vs)
            one_hot.scatter_(1, codes, 1.0)
            out.index_copy_(0, small_rows, one_hot.t() @ grad)
        for column in rows.t().contiguous():  # index_adds of (B, N): loop over columns
            out.index_add_(0, column, grad)
        return out, None, None


def gather_sum(table: torch.Tensor, rows: torch.Tensor,
               split: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
               ) -> torch.Tensor:
    """:func:`reference.gather_sum` with a faster backward.

    Args:
        table: (V, N).
        rows: (B, C) rows of ``table`` to sum for each input row.
        split: optionally the same lookups split for the backward into columns with few
            codes, ``(codes (B, Cs) positions in their block, block_rows (Vs,) the table rows
            of the block, other_rows (B, Cl))``.

    Example:
        >>> gather_sum(torch.eye(3), torch.tensor([[0, 2], [1, 1]])).tolist()
        [[1.0, 0.0, 1.0], [0.0, 2.0, 0.0]]
    """
    return _GatherSum.apply(table, rows, split)


def fold_linear(numeric: torch.Tensor | None, codes: torch.Tensor, layout: FoldLayout,
                emb: torch.Tensor, weights: list[torch.Tensor],
                biases: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """:func:`reference.fold_linear` without materialising the encoded input.

    With the layers side by side as one weight W (I, N) (:func:`reference.flat_weights`) split
    into W_num and per-column blocks W_c (D, N):

        x @ W = x_num @ W_num + sum_c E_c[code_c] @ W_c = x_num @ W_num + sum_c T_c[code_c]

    with the folded table T_c = E_c @ W_c (V_c, N): one small product per vocabulary row and a
    gather-sum per input row instead of a (B, C·D) x (C·D, N) product. The gradients reach E
    and W through T.
    """
    w, bias = reference.flat_weights(weights, biases)  # (I, N), (N,)
    c, d = codes.shape[1], emb.shape[1]
    n_num = w.shape[0] - c * d
    w_cat = w[n_num:].view(c, d, -1)  # (C, D, N)
    # T_c = E_c @ W_c for every column in one bmm over the padded vocabulary
    padded = emb.index_select(0, layout.padded_rows).view(c, -1, d)
    table = torch.bmm(padded, w_cat).flatten(0, 1).index_select(0, layout.slot_of_row)  # (V, N)
    rows = codes + layout.offsets  # (B, C) rows of the table
    split = (codes.index_select(1, layout.small_cols) + layout.small_offsets,
             layout.small_rows, rows.index_select(1, layout.large_cols))
    out = gather_sum(table, rows, split)  # (B, N)
    if n_num:
        out = torch.addmm(out, numeric, w[:n_num])
    out = out if bias is None else out + bias
    return reference.split_groups(out, weights)
