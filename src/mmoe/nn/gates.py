"""Softmax gates over experts (paper eq. 5): g^k(x) = softmax(W_gk x), and the mixing of the
experts' outputs by them (``mix_experts``, the op :func:`mmoe.ops.mix`)."""

from __future__ import annotations

import torch
from torch import nn

from ..ops import mix as mix_experts
from .gate_tools import gate_dropout_softmax
from .stacked import StackedLinear


class Gates(nn.Module):
    """G softmax gates, each choosing a mixture of E experts from the input.

    One gate (G = 1) is the paper's OMoE; one per task (G = T) is MMoE.

    Args:
        in_features: input width d.
        num_experts: number of experts E.
        num_gates: number of gates G.
        bias: add a bias inside the softmax (the paper's formula has none).
        dropout: gate dropout probability p in training mode (see :func:`gate_dropout_softmax`).

    Shapes:
        input (B, d) -> gate weights (G, B, E), each row summing to 1.

    Example:
        >>> g = Gates(10, num_experts=4, num_gates=2)(torch.randn(3, 10))
        >>> g.shape, bool(torch.allclose(g.sum(-1), torch.ones(2, 3)))
        (torch.Size([2, 3, 4]), True)
    """

    def __init__(self, in_features: int, num_experts: int, num_gates: int, bias: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        self.num_experts, self.num_gates, self.dropout = num_experts, num_gates, dropout
        self.linear = StackedLinear(num_gates, in_features, num_experts, bias=bias)  # W_gk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_logits(self.linear(x))

    def from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Gate weights from the logits W_gk x (G, B, E)."""
        # g^k(x) = softmax(W_gk x), (G, B, E); in training over the experts gate dropout kept
        return gate_dropout_softmax(logits, self.dropout if self.training else 0.0)


__all__ = ["Gates", "mix_experts"]
