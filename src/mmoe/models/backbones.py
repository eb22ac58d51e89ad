"""Backbones of the paper's model family: what sits between the encoded input x (B, d) and
the task towers. Each returns ``(h, gates)``: h (T, B, k), one input per task tower, and the
gate weights (G, B, E) where the model has gates, else ``None``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn import Gates, StackedMLP, mix_experts


class SharedBottom(nn.Module):
    """One network f shared by all tasks: y_k = h^k(f(x))   (paper §4.1, Shared-Bottom).

    Shapes: x (B, d) -> h (T, B, units[-1]) (the same tensor for every task, no copy).
    """

    def __init__(self, in_features: int, units: tuple[int, ...], num_tasks: int,
                 dropout: float = 0.0):
        super().__init__()
        self.num_tasks = num_tasks
        self.bottom = StackedMLP(1, in_features, units, dropout)
        self.out_features = self.bottom.out_features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        h = self.bottom(x)  # (1, B, k)
        return h.expand(self.num_tasks, -1, -1), None  # (T, B, k)


class SingleTask(nn.Module):
    """An independent network per task, nothing shared: y_k = h^k(f_k(x)).

    The T networks are stacked and computed in one batched matmul per layer.
    Shapes: x (B, d) -> h (T, B, units[-1]).
    """

    def __init__(self, in_features: int, units: tuple[int, ...], num_tasks: int,
                 dropout: float = 0.0):
        super().__init__()
        self.nets = StackedMLP(num_tasks, in_features, units, dropout)
        self.out_features = self.nets.out_features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.nets(x), None  # (T, B, k)


class MixtureOfExperts(nn.Module):
    """E shared experts mixed by G softmax gates (paper §4.2-4.3).

    MMoE (G = T): f^k(x) = sum_i g^k(x)_i f_i(x), g^k(x) = softmax(W_gk x), y_k = h^k(f^k(x)).
    OMoE (G = 1): one gate g shared by all tasks, y_k = h^k(sum_i g(x)_i f_i(x)).

    Args:
        in_features: input width d.
        units: widths of each expert's ReLU layers.
        num_experts: E.
        num_gates: G, 1 (OMoE) or T (MMoE).
        num_tasks: T.
        gate_bias: bias inside the gates' softmax (the paper has none).
        dropout: dropout after each expert layer.

    Shapes: x (B, d) -> h (T, B, units[-1]), gates (G, B, E).
    """

    def __init__(self, in_features: int, units: tuple[int, ...], num_experts: int,
                 num_gates: int, num_tasks: int, gate_bias: bool = False, dropout: float = 0.0):
        super().__init__()
        if num_gates not in (1, num_tasks):
            raise ValueError(f"num_gates must be 1 (OMoE) or the number of tasks {num_tasks} "
                             f"(MMoE), got {num_gates}")
        self.num_tasks = num_tasks
        self.experts = StackedMLP(num_experts, in_features, units, dropout)  # f_i
        self.gates = Gates(in_features, num_experts, num_gates, bias=gate_bias)  # g^k
        self.out_features = self.experts.out_features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        experts = self.experts(x)  # (E, B, H)
        gates = self.gates(x)  # (G, B, E)
        h = mix_experts(gates, experts)  # f^k(x) = sum_i g^k(x)_i f_i(x), (G, B, H)
        return h.expand(self.num_tasks, -1, -1), gates  # (T, B, H)
