"""Fused operations, one dispatch each. Every op has a specification in
:mod:`~mmoe.ops.reference` (plain torch) and up to two fast paths that the tests hold to it:
a torch path (:mod:`~mmoe.ops.torch_paths`) and native CPU kernels (:mod:`~mmoe.ops.native`),
used once :func:`build_native` has loaded them.

========================  ===========================  ==================  ================
op                        what                         torch path          native kernel
========================  ===========================  ==================  ================
:func:`mix`               gate mixing (paper eq. 5)    custom backward     yes
:func:`grouped_linear`    G small layers, (G, B, I)    = reference         yes
:func:`linear_groups`     layers sharing x (B, I)      = reference         (one GEMM)
:func:`fold_linear`       first layer on embeddings    folded tables       yes
:func:`take_rows`         a batch's rows of a table    = reference         yes
:func:`pooled_lookup`     ids pooled from a table      embedding_bag       (torch's)
========================  ===========================  ==================  ================

This package imports no other part of mmoe.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from . import native, reference, torch_paths
from .native import build as build_native
from .native import ready as native_ready
from .reference import linear_groups
from .torch_paths import FoldLayout, fold_layout

__all__ = ["FoldLayout", "build_native", "fold_layout", "fold_linear", "grouped_linear",
           "linear_groups", "mix", "native_ready", "pooled_lookup", "take_rows"]


def mix(gates: torch.Tensor, experts: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """:func:`reference.mix`: (G, B, E), (E, B, H) -> (G, B, H), the gate-weighted sum of the
    experts (of their ReLU with ``relu``). Native kernel or the torch path's own backward when
    a gradient is needed; the plain formula otherwise (inference, export tracing).

    Example:
        >>> mix(torch.tensor([[[0.25, 0.75]]]), torch.tensor([[[4.0]], [[-8.0]]]),
        ...     relu=True).tolist()
        [[[1.0]]]
    """
    if (torch.is_grad_enabled() and (gates.requires_grad or experts.requires_grad)
            and not torch.jit.is_tracing()):  # export traces the plain expression
        if native.usable(gates, experts):
            return native.Mix.apply(gates, experts, relu)
        return torch_paths.Mix.apply(gates, torch.relu(experts) if relu else experts)
    if torch.jit.is_tracing():  # an exported graph: one batched (B, G, E) @ (B, E, H) matmul
        mixed = torch.relu(experts) if relu else experts
        return torch.matmul(gates.transpose(0, 1), mixed.transpose(0, 1)).transpose(0, 1)
    return reference.mix(gates, experts, relu)


def grouped_linear(x: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`reference.grouped_linear`: (G, B, I), (G, I, O), (G, O) -> (G, B, O).

    Example:
        >>> grouped_linear(torch.ones(2, 5, 3), torch.ones(2, 3, 4), torch.zeros(2, 4)).shape
        torch.Size([2, 5, 4])
    """
    if native.usable(x, weight):
        return native.GroupedLinear.apply(x, weight, bias)
    return reference.grouped_linear(x, weight, bias)


def fold_linear(numeric: torch.Tensor | None, codes: torch.Tensor, layout: FoldLayout,
                emb: torch.Tensor, weights: list[torch.Tensor],
                biases: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """:func:`reference.fold_linear` without materialising the encoded input: stacked layers
    (G_l, n + C·D, O_l) applied to x = [numeric, embeddings of codes (B, C)] -> (G_l, B, O_l)
    per layer. Worth it when the vocabulary V is small next to the B·C lookups.

    Example:
        >>> layout = fold_layout((2,))
        >>> out = fold_linear(None, torch.tensor([[1]]), layout, torch.tensor([[1.0], [2.0]]),
        ...                   [torch.full((1, 1, 3), 2.0)], [None])
        >>> out[0].tolist()
        [[[4.0, 4.0, 4.0]]]
    """
    if native.usable(emb, *weights):
        return list(native.FoldLinear.apply(numeric, codes, layout.offsets, emb,
                                            layout.column_of_row, len(weights),
                                            *weights, *biases))
    return torch_paths.fold_linear(numeric, codes, layout, emb, weights, biases)


def take_rows(columns: list[torch.Tensor], index: torch.Tensor) -> list[torch.Tensor]:
    """:func:`reference.take_rows`: the rows at ``index`` (int64/int32) of every column, by one
    native pass that prefetches rows ahead where it applies.

    Example:
        >>> take_rows([torch.arange(6).view(3, 2)], torch.tensor([2, 0]))[0].tolist()
        [[4, 5], [0, 1]]
    """
    rows = native.take_rows(columns, index)
    return rows if rows is not None else reference.take_rows(columns, index)


def pooled_lookup(ids: torch.Tensor, weight: torch.Tensor, pooling: str = "mean",
                  sparse: bool = False) -> torch.Tensor:
    """:func:`reference.pooled_lookup`: (B, L) ids (0 = padding) in a (V, D) table -> (B, D),
    by torch's ``embedding_bag`` (one kernel, and with ``sparse`` a gradient that holds only
    the rows the batch used); the plain formula when traced for export.

    Example:
        >>> table = torch.tensor([[9.0], [1.0], [3.0]])
        >>> pooled_lookup(torch.tensor([[1, 2], [2, 0], [0, 0]]), table, "sum").tolist()
        [[4.0], [3.0], [0.0]]
    """
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return reference.pooled_lookup(ids, weight, pooling)
    return F.embedding_bag(ids, weight, mode=pooling, padding_idx=0, sparse=sparse)
