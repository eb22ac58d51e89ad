"""Feature encoder: numeric columns and categorical embeddings into one dense vector, and the
same encoding kept unmaterialised (:class:`EncodedInput`) so a first linear layer can be folded
into the embedding lookups."""

from __future__ import annotations

import torch
from torch import nn

from .. import native


class FeatureEncoder(nn.Module):
    """Concatenate numeric inputs with one embedding per categorical column.

    Numeric columns arrive standardised (the data layer fits the statistics on the training
    data). Categorical columns arrive as integer codes in ``[0, cardinality)``, code 0 being
    out-of-vocabulary or missing. All categorical columns share one embedding table with a
    per-column offset, so encoding is a single lookup whatever the number of columns.

    Args:
        num_numeric: number of numeric columns.
        cardinalities: codes per categorical column (including the OOV code 0).
        embedding_dim: width of every embedding.

    Shapes:
        numeric (B, num_numeric) float, categorical (B, len(cardinalities)) long
        -> (B, num_numeric + len(cardinalities) * embedding_dim).

    Example:
        >>> enc = FeatureEncoder(3, (5, 2), embedding_dim=4)
        >>> enc(torch.randn(6, 3), torch.zeros(6, 2, dtype=torch.long)).shape
        torch.Size([6, 11])
    """

    def __init__(self, num_numeric: int, cardinalities: tuple[int, ...] = (),
                 embedding_dim: int = 8):
        super().__init__()
        self.num_numeric = num_numeric
        self.num_categorical = len(cardinalities)
        self.embedding_dim = embedding_dim
        self.out_features = num_numeric + len(cardinalities) * embedding_dim
        if cardinalities:
            offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
            self.register_buffer("offsets", offsets, persistent=False)  # (n_cat,)
            # Column-major padded layout of the vocabulary for the folded table (see linear):
            # slot (c, j) holds column c's j-th code, or row 0 past its cardinality.
            longest = max(cardinalities)
            j = torch.arange(longest)
            valid = j[None, :] < torch.tensor(cardinalities)[:, None]  # (C, Vmax)
            slots = torch.where(valid, offsets[:, None] + j[None, :], 0)
            self.register_buffer("padded_rows", slots.flatten(), persistent=False)  # (C*Vmax,)
            self.register_buffer("slot_of_row", valid.flatten().nonzero().squeeze(1),
                                 persistent=False)  # (V,) slot of each vocabulary row
            self.register_buffer("column_of_row", torch.repeat_interleave(
                torch.arange(len(cardinalities)), torch.tensor(cardinalities)),
                persistent=False)  # (V,) the column each vocabulary row belongs to
            # Columns with few codes get their table gradient from one one-hot product
            # (see _GatherSum.backward); the others by index_add.
            cards = torch.tensor(cardinalities)
            small = (cards <= ONE_HOT_MAX_CODES).nonzero().squeeze(1)  # (Cs,)
            self.register_buffer("small_cols", small, persistent=False)
            self.register_buffer("small_offsets", torch.cat(  # start of each in the block
                [torch.zeros(1, dtype=torch.long), cards[small].cumsum(0)[:-1]]),
                persistent=False)
            self.register_buffer("small_rows", torch.cat(  # (Vs,) their vocabulary rows
                [torch.arange(offsets[c], offsets[c] + cards[c]) for c in small.tolist()]
                or [torch.zeros(0, dtype=torch.long)]), persistent=False)
            self.register_buffer("large_cols", (cards > ONE_HOT_MAX_CODES).nonzero().squeeze(1),
                                 persistent=False)
            self.embedding = nn.Embedding(sum(cardinalities), embedding_dim)
        else:
            self.embedding = None

    def forward(self, numeric: torch.Tensor | None,
                categorical: torch.Tensor | None = None) -> torch.Tensor:
        parts = []
        if self.num_numeric:
            parts.append(numeric)  # (B, n_num)
        if self.embedding is not None:
            # index_select rather than nn.Embedding's forward: same values, and its backward
            # (index_add) is several times faster on CPU than embedding_dense_backward.
            rows = (categorical + self.offsets).flatten()  # (B * n_cat,)
            emb = self.embedding.weight.index_select(0, rows)  # (B * n_cat, D)
            parts.append(emb.view(categorical.shape[0], -1))  # (B, n_cat * D)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def folds(self, batch_rows: int) -> bool:
        """Whether :meth:`linear` folds the weight into the embeddings for this batch size:
        when the vocabulary V is at most half the B·n_cat lookups, building the folded table
        (V·D·N) and gathering (B·n_cat·N) is cheaper than the (B, n_cat·D) x (n_cat·D, N)
        product (B·n_cat·D·N), forward and backward."""
        return (self.embedding is not None
                and 2 * self.embedding.num_embeddings <= batch_rows * self.num_categorical)

    def linear(self, numeric: torch.Tensor | None, categorical: torch.Tensor | None,
               weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``forward(numeric, categorical) @ weight + bias`` without materialising the
        encoding.

        With x = [x_num, e_1, ..., e_C] (e_c = E[c-th code]) and weight split into W_num and
        per-column blocks W_c (D, N):

            x @ W = x_num @ W_num + sum_c E_c[code_c] @ W_c = x_num @ W_num + sum_c T_c[code_c]

        with the folded table T_c = E_c @ W_c (V_c, N): one small product per vocabulary row
        and a gather-sum per input row instead of a (B, C·D) x (C·D, N) product. The
        gradients reach E and W through T (exactly the same values as the unfolded product,
        up to float rounding).

        Args:
            numeric: (B, n_num) or ``None``.
            categorical: (B, n_cat) codes.
            weight: (n_num + n_cat·D, N).
            bias: (N,) or ``None``.

        Returns:
            (B, N).
        """
        if not self.folds(categorical.shape[0] if categorical is not None else 0):
            x = self(numeric, categorical)
            return x @ weight if bias is None else torch.addmm(bias, x, weight)
        emb = self.embedding.weight  # (V, D)
        n_num, d, c = self.num_numeric, self.embedding_dim, self.num_categorical
        w_cat = weight[n_num:].view(c, d, -1)  # (C, D, N)
        # T_c = E_c @ W_c for every column in one bmm over the padded vocabulary
        padded = emb.index_select(0, self.padded_rows).view(c, -1, d)
        table = torch.bmm(padded, w_cat).flatten(0, 1).index_select(0, self.slot_of_row)
        rows = categorical + self.offsets  # (B, C) rows of the table
        split = (categorical.index_select(1, self.small_cols) + self.small_offsets,
                 self.small_rows, rows.index_select(1, self.large_cols))
        out = gather_sum(table, rows, split)  # (V, N) -> (B, N)
        if n_num:
            out = torch.addmm(out, numeric, weight[:n_num])
        return out if bias is None else out + bias

    def grouped_linear(self, numeric: torch.Tensor | None, categorical: torch.Tensor,
                       weights: list[torch.Tensor], biases: list[torch.Tensor | None]
                       ) -> list[torch.Tensor] | None:
        """Several stacked layers applied to x = ``forward(numeric, categorical)`` in one
        native op (:class:`mmoe.native.FoldLinear`): ``x @ w[g] + b[g]`` for every group g of
        every layer, folded as in :meth:`linear`, each output written in its layer's layout.
        ``None`` where that op does not apply (no native kernels, or no folding for this
        batch): the caller then uses :meth:`linear` on the layers' weights side by side.

        Args:
            numeric: (B, n_num) or ``None``.
            categorical: (B, n_cat) codes.
            weights: (G_l, n_num + n_cat·D, O_l) per layer.
            biases: (G_l, O_l) or ``None`` per layer.

        Returns:
            (G_l, B, O_l) per layer, or ``None``.
        """
        emb = self.embedding.weight if self.embedding is not None else None
        if (emb is None or not self.folds(categorical.shape[0])
                or not native.usable(emb, *weights)):
            return None
        return list(native.FoldLinear.apply(numeric if self.num_numeric else None, categorical,
                                            self.offsets, emb, self.column_of_row, len(weights),
                                            *weights, *biases))


ONE_HOT_MAX_CODES = 16  # columns with at most this many codes: one-hot product in backward


class _GatherSum(torch.autograd.Function):
    """out[b] = sum_c table[rows[b, c]]. Backward: dtable = S^T grad with S (B, V) the
    lookups' one-hot matrix, by one index_add per column, or (columns with few codes) one
    (V_small, B) x (B, N) product of their one-hot block: the CPU backward of
    ``embedding_bag`` is several times slower than either. (The native fold_linear does the
    same scatter in one loop.)"""

    @staticmethod
    def forward(ctx, table: torch.Tensor, rows: torch.Tensor,
                split: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        ctx.save_for_backward(rows, *(split or ()))
        ctx.num_rows = table.shape[0]
        return nn.functional.embedding_bag(rows, table, mode="sum")  # (B, N)

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
    """Sum of table rows per input row: table (V, N), rows (B, C) -> (B, N).

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


class EncodedInput:
    """The encoder's inputs for one batch, kept until a layer needs x = encoder(inputs).

    ``linear(weight)`` is ``encoder(numeric, categorical) @ weight`` computed by
    :meth:`FeatureEncoder.linear` (folded into the lookups when that is cheaper). Backbones
    whose first operation is a linear map of x accept it in place of x.
    """

    def __init__(self, encoder: FeatureEncoder, numeric: torch.Tensor | None,
                 categorical: torch.Tensor | None):
        self.encoder, self.numeric, self.categorical = encoder, numeric, categorical

    def linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d) @ weight (d, N) + bias (N,) -> (B, N)."""
        return self.encoder.linear(self.numeric, self.categorical, weight, bias)

    def grouped_linear(self, weights: list[torch.Tensor], biases: list[torch.Tensor | None]
                       ) -> list[torch.Tensor] | None:
        """:meth:`FeatureEncoder.grouped_linear` of this batch: (G_l, B, O_l) per layer, or
        ``None`` where the native op does not apply."""
        return self.encoder.grouped_linear(self.numeric, self.categorical, weights, biases)
