"""The specification of every op: plain torch, differentiated by autograd.

Each function here is what its op computes. The fast paths (:mod:`mmoe.ops.torch_paths`,
:mod:`mmoe.ops.native`) must give the same values and gradients up to float rounding, and the
tests hold them to it. Shapes: B batch, G groups, I input width, O output width, E experts,
H expert width, C categorical columns, D embedding width, V vocabulary rows.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def mix(gates: torch.Tensor, experts: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """Gate-weighted sum of expert outputs, one mixture per gate.

    f^k(x) = sum_i g^k(x)_i f_i(x)   (paper eq. 5)

    Args:
        gates: (G, B, E) gate weights.
        experts: (E, B, H) expert outputs, or with ``relu`` their pre-activations z_i
            (f_i(x) = relu(z_i)).
        relu: apply the experts' ReLU first.

    Returns:
        (G, B, H).

    Example:
        >>> mix(torch.tensor([[[0.25, 0.75]]]), torch.tensor([[[4.0]], [[8.0]]])).tolist()
        [[[7.0]]]
    """
    if relu:
        experts = torch.relu(experts)
    return (gates.unsqueeze(-1) * experts.transpose(0, 1).unsqueeze(0)).sum(2)  # (G, B, H)


def grouped_linear(x: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
    """G independent linear layers, one slice of x each: out[g] = x[g] @ weight[g] + bias[g].

    Args:
        x: (G, B, I).
        weight: (G, I, O).
        bias: (G, O) or ``None``.

    Returns:
        (G, B, O).

    Example:
        >>> grouped_linear(torch.ones(2, 1, 3), torch.ones(2, 3, 4)).shape
        torch.Size([2, 1, 4])
    """
    if bias is None:
        return torch.bmm(x, weight)  # (G, B, I) @ (G, I, O) -> (G, B, O)
    return torch.baddbmm(bias.unsqueeze(1), x, weight)  # + bias (G, 1, O)


def flat_weights(weights: list[torch.Tensor], biases: list[torch.Tensor | None]
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Stacked layers that read the same input, side by side as one layer.

    Args:
        weights: (G_l, I, O_l) per layer.
        biases: (G_l, O_l) or ``None`` per layer.

    Returns:
        ``(w (I, N), b (N,) or None)`` with N = sum of G_l·O_l; column block g of layer l is
        that group's weight; a layer without bias gets zeros (``None`` if no layer has one).

    Example:
        >>> w, b = flat_weights([torch.ones(2, 3, 4)], [None])
        >>> w.shape, b
        (torch.Size([3, 8]), None)
    """
    flat = [w.permute(1, 0, 2).reshape(w.shape[1], -1) for w in weights]  # (I, G_l·O_l)
    w = torch.cat(flat, dim=1) if len(flat) > 1 else flat[0]
    if all(b is None for b in biases):
        return w, None
    b = torch.cat([b.flatten() if b is not None else wl.new_zeros(wl.shape[0] * wl.shape[2])
                   for wl, b in zip(weights, biases, strict=True)])
    return w, b


def split_groups(y: torch.Tensor, weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """The (B, N) output of :func:`flat_weights`'s layer back as one (G_l, B, O_l) per layer."""
    widths = [w.shape[0] * w.shape[2] for w in weights]
    return [part.view(part.shape[0], w.shape[0], w.shape[2]).transpose(0, 1)
            for w, part in zip(weights, y.split(widths, dim=1), strict=True)]  # (G, B, O)


def linear_groups(x: torch.Tensor, weights: list[torch.Tensor],
                  biases: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """Several stacked layers applied to the same input in one product.

    All groups of all layers read x, so their weights go side by side into one (I, N) matrix
    (:func:`flat_weights`): one GEMM for, e.g., every expert's first layer and every gate.

    Args:
        x: (B, I).
        weights: (G_l, I, O_l) per layer.
        biases: (G_l, O_l) or ``None`` per layer.

    Returns:
        One (G_l, B, O_l) per layer: ``x @ weights[l][g] + biases[l][g]``.

    Example:
        >>> [y.shape for y in linear_groups(torch.ones(5, 3), [torch.ones(2, 3, 4)], [None])]
        [torch.Size([2, 5, 4])]
    """
    w, b = flat_weights(weights, biases)
    y = x @ w if b is None else torch.addmm(b, x, w)  # (B, N)
    return split_groups(y, weights)


def encode(numeric: torch.Tensor | None, codes: torch.Tensor | None,
           offsets: torch.Tensor | None, emb: torch.Tensor | None) -> torch.Tensor:
    """The encoded input x = [numeric, emb[codes[:, 0] + offsets[0]], ..., emb[codes[:, C-1]
    + offsets[C-1]]]: all columns' embeddings live in one table, column c's rows from
    ``offsets[c]`` on.

    Args:
        numeric: (B, n) or ``None``.
        codes: (B, C) int64 or ``None``.
        offsets: (C,) first table row of each column.
        emb: (V, D) the embedding table.

    Returns:
        (B, n + C·D).

    Example:
        >>> encode(torch.ones(2, 1), torch.tensor([[0], [1]]), torch.tensor([0]),
        ...        torch.tensor([[5.0], [7.0]])).tolist()
        [[1.0, 5.0], [1.0, 7.0]]
    """
    parts = []
    if numeric is not None:
        parts.append(numeric)  # (B, n)
    if codes is not None:
        # index_select rather than nn.Embedding's forward: same values, and its backward
        # (index_add) is much faster on CPU than embedding_dense_backward
        rows = (codes + offsets).flatten()  # (B * C,)
        parts.append(emb.index_select(0, rows).view(codes.shape[0], -1))  # (B, C * D)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def fold_linear(numeric: torch.Tensor | None, codes: torch.Tensor, offsets: torch.Tensor,
                emb: torch.Tensor, weights: list[torch.Tensor],
                biases: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """Stacked layers applied to the encoded input: ``linear_groups(encode(...), ...)``.

    The fast paths never materialise x: with weight blocks W_c (D, N) per categorical column,
    x @ W = numeric @ W_num + sum_c T_c[code_c] with the folded tables T_c = E_c @ W_c.

    Args:
        numeric: (B, n) or ``None``.
        codes: (B, C) int64.
        offsets: (C,).
        emb: (V, D).
        weights: (G_l, n + C·D, O_l) per layer.
        biases: (G_l, O_l) or ``None`` per layer.

    Returns:
        (G_l, B, O_l) per layer.

    Example:
        >>> out = fold_linear(None, torch.tensor([[1]]), torch.tensor([0]),
        ...                   torch.tensor([[1.0], [2.0]]), [torch.full((1, 1, 3), 2.0)], [None])
        >>> out[0].tolist()
        [[[4.0, 4.0, 4.0]]]
    """
    return linear_groups(encode(numeric, codes, offsets, emb), weights, biases)


def gather_sum(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Sum of table rows per input row: out[b] = sum_c table[rows[b, c]].

    Args:
        table: (V, N).
        rows: (B, C) int64.

    Returns:
        (B, N).

    Example:
        >>> gather_sum(torch.eye(3), torch.tensor([[0, 2], [1, 1]])).tolist()
        [[1.0, 0.0, 1.0], [0.0, 2.0, 0.0]]
    """
    return F.embedding_bag(rows, table, mode="sum")


def pooled_lookup(ids: torch.Tensor, weight: torch.Tensor, pooling: str = "mean"
                  ) -> torch.Tensor:
    """Each row's ids looked up in a table and pooled, id 0 being padding (never counted).

    out[b] = sum_j [ids[b, j] != 0] weight[ids[b, j]]  (``sum``), divided by the number of
    ids present (``mean``; a row without ids gives zeros).

    Args:
        ids: (B, L) int64, 0 = padding.
        weight: (V, D) the table.
        pooling: ``sum`` or ``mean``.

    Returns:
        (B, D).

    Example:
        >>> table = torch.tensor([[9.0], [1.0], [3.0]])
        >>> pooled_lookup(torch.tensor([[1, 2], [2, 0], [0, 0]]), table).tolist()
        [[2.0], [3.0], [0.0]]
    """
    present = (ids != 0).unsqueeze(-1).to(weight.dtype)  # (B, L, 1)
    total = (F.embedding(ids, weight) * present).sum(1)  # (B, D)
    if pooling == "sum":
        return total
    return total / present.sum(1).clamp_min(1.0)


def take_rows(columns: list[torch.Tensor], index: torch.Tensor) -> list[torch.Tensor]:
    """The rows at ``index`` of every column: ``[c.index_select(0, index) for c in columns]``.

    Example:
        >>> take_rows([torch.arange(6).view(3, 2)], torch.tensor([2, 0]))[0].tolist()
        [[4, 5], [0, 1]]
    """
    return [c.index_select(0, index) for c in columns]
