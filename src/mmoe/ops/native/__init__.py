"""The native CPU kernels (``kernels.cpp``) as torch ops with autograd: the fast path of
:mod:`mmoe.ops` on CPU once :func:`build` has loaded them. Each op's specification is its
function in :mod:`mmoe.ops.reference`; tests hold every op to it, values and gradients.

Ops (all CPU, float32/float64):

- ``fold_linear(numeric (B, n) | None, codes (B, C), offsets (C,), emb (V, D), column (V,),
  weights [(G_l, n + C·D, O_l)], biases [(G_l, O_l) | None]) -> [(G_l, B, O_l)] + [start
  (B + 1,), base (C,), rows (B·C,)]`` (the last three int32, read by the backward): the
  first layer of several stacked layers that read the encoder's output x, folded into the
  embedding lookups: for each group the table T[v] = emb[v] @ W_column[v] (V, O), the
  lookups' sum, the numeric product and the bias, written straight into each layer's
  (G, B, O) output; the backward scatters the outputs' gradients into the tables' rows in one
  loop. Lookups are taken relative to each column's most frequent code among the batch's
  first 128 rows (its base row, summed once for all rows), so only the others are gathered
  and scattered;
- ``grouped_linear(x (G, B, I), weight (G, I, O), bias (G, O) | None) -> (G, B, O)``: G small
  independent layers (towers, deeper expert layers), where a batched GEMM is slow for thin
  matrices;
- ``mix(gates (G, B, E), experts (E, B, H), relu) -> (G, B, H)``: the gate mixing of eq. 5,
  optionally of the experts' ReLU applied as they are read (one-layer experts: their
  activation is never materialised, and the backward masks the gradient in the same pass);
- ``take_rows(columns [(N, ...)], index (n,)) -> [(n, ...)]``: a batch's rows of every column
  of a table, prefetching rows ahead.

What each kernel gains is measured in docs/benchmarks/.
"""

from __future__ import annotations

import torch

from .loader import build, disabled, ready

__all__ = ["FoldLinear", "GroupedLinear", "Mix", "build", "disabled", "ready", "take_rows",
           "usable"]

_FLOATS = (torch.float32, torch.float64)


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the native ops apply to these tensors: CPU float32/float64, no functorch
    transform (vmap/grad: the torch paths carry the batching rules), not being traced for
    export, and the kernels built (:func:`build`)."""
    for t in tensors:  # a loop, not all(genexpr): called several times per training step
        if not t.is_cpu or t.dtype not in _FLOATS:
            return False
    return _may_run()


def _may_run() -> bool:
    """Whether a native op may run here, whatever its tensors: the kernels built, no functorch
    transform, no export tracing (under torch.compile: built, the fakes trace them)."""
    if torch.compiler.is_compiling():
        return ready()
    return (ready() and not torch.jit.is_tracing()
            and not torch._C._are_functorch_transforms_active())


def _ops():
    return torch.ops.mmoe_native


def take_rows(columns: list[torch.Tensor], index: torch.Tensor) -> list[torch.Tensor] | None:
    """``[c.index_select(0, index) for c in columns]`` in one native pass that prefetches rows
    ahead (a batch's rows of a large table), or ``None`` where the native op does not apply
    (not CPU, an index neither int64 nor int32, a gradient to track, a functorch transform,
    no kernels).

    Example:
        >>> table, index = [torch.arange(6).view(3, 2)], torch.tensor([2, 0])
        >>> rows = take_rows(table, index) if build() else None  # kernels built first
        >>> rows is None or rows[0].tolist() == [[4, 5], [0, 1]]
        True
    """
    if (not index.is_cpu or index.dtype not in (torch.int64, torch.int32)
            or any(not c.is_cpu or c.requires_grad for c in columns) or not _may_run()):
        return None
    return _ops().take_rows(columns, index)


class FoldLinear(torch.autograd.Function):
    """The folded first layer of L stacked layers that read the same encoded input
    x = [numeric, emb[codes[:, 0] + offsets[0]], ..., emb[codes[:, C-1] + offsets[C-1]]]
    (never materialised): ``out_l[g] = x @ weights[l][g] + biases[l][g]``.

    ``apply(numeric (B, n) | None, codes (B, C), offsets (C,), emb (V, D), column (V,), L,
    *weights (G_l, n + C·D, O_l), *biases (G_l, O_l) | None) -> L outputs (G_l, B, O_l)``.
    """

    @staticmethod
    def forward(ctx, numeric, codes, offsets, emb, column, num_layers, *params):
        weights, biases = list(params[:num_layers]), list(params[num_layers:])
        *outs, start, base, rows = _ops().fold_linear(numeric, codes, offsets, emb, column,
                                                      weights, biases)
        ctx.save_for_backward(numeric, start, base, rows, emb, column, *weights)
        ctx.has_bias = [b is not None for b in biases]
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        numeric, start, base, rows, emb, column, *weights = ctx.saved_tensors
        d_emb, d_weights, d_biases = _ops().fold_linear_backward(
            list(grads), numeric, start, base, rows, emb, column, weights)
        d_biases = [d if has else None for d, has in zip(d_biases, ctx.has_bias, strict=True)]
        return None, None, None, d_emb, None, None, *d_weights, *d_biases


class GroupedLinear(torch.autograd.Function):
    """out[g] = x[g] @ weight[g] + bias[g]: (G, B, I), (G, I, O), (G, O) | None -> (G, B, O)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _ops().grouped_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        d_x, d_weight, d_bias = _ops().grouped_linear_backward(grad, x, weight)
        return d_x, d_weight, d_bias if ctx.has_bias else None


class Mix(torch.autograd.Function):
    """out[g, b] = sum_e gates[g, b, e] * f(experts[e, b]), f = ReLU if ``relu`` else the
    identity: (G, B, E), (E, B, H), bool -> (G, B, H)."""

    @staticmethod
    def forward(ctx, gates: torch.Tensor, experts: torch.Tensor, relu: bool = False
                ) -> torch.Tensor:
        ctx.save_for_backward(gates, experts)
        ctx.relu = relu
        return _ops().mix(gates, experts, relu)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gates, experts = ctx.saved_tensors
        return *_ops().mix_backward(grad, gates, experts, ctx.relu), None
