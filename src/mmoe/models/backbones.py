"""Backbones of the paper's model family: what sits between the encoded input x (B, d) and
the task towers. Each returns ``(h, gates)``: h (T, B, k), one input per task tower, and the
gate weights (G, B, E) where the model has gates, else ``None``.

Backbones with ``accepts_encoded = True`` only apply linear maps to x first, so they also take
the encoder's unmaterialised :class:`~mmoe.nn.EncodedInput` (the first layer is then folded
into the embedding lookups when that is cheaper).
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn import EncodedInput, Gates, StackedMLP, mix_experts, shared_input_linear


class SharedBottom(nn.Module):
    """One network f shared by all tasks: y_k = h^k(f(x))   (paper §4.1, Shared-Bottom).

    Shapes: x (B, d) -> h (T, B, units[-1]) (the same tensor for every task, no copy).
    """

    accepts_encoded = True

    def __init__(self, in_features: int, units: tuple[int, ...], num_tasks: int,
                 dropout: float = 0.0):
        super().__init__()
        self.num_tasks = num_tasks
        self.bottom = StackedMLP(1, in_features, units, dropout)
        self.out_features = self.bottom.out_features

    def forward(self, x: torch.Tensor | EncodedInput) -> tuple[torch.Tensor, None]:
        h = self.bottom(x)  # (1, B, k)
        return h.expand(self.num_tasks, -1, -1), None  # (T, B, k)


class SingleTask(nn.Module):
    """An independent network per task, nothing shared: y_k = h^k(f_k(x)).

    The T networks are stacked and computed in one batched matmul per layer.
    Shapes: x (B, d) -> h (T, B, units[-1]).
    """

    accepts_encoded = True

    def __init__(self, in_features: int, units: tuple[int, ...], num_tasks: int,
                 dropout: float = 0.0):
        super().__init__()
        self.nets = StackedMLP(num_tasks, in_features, units, dropout)
        self.out_features = self.nets.out_features

    def forward(self, x: torch.Tensor | EncodedInput) -> tuple[torch.Tensor, None]:
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

    The experts' first layer and the gates read the same x: one product computes both.
    """

    accepts_encoded = True

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

    def forward(self, x: torch.Tensor | EncodedInput) -> tuple[torch.Tensor, torch.Tensor]:
        # [W_1 .. W_E | W_g1 .. W_gG] in one product: (E, B, H0) and (G, B, E)
        first, logits = shared_input_linear(x, [self.experts.layers[0], self.gates.linear])
        gates = self.gates.from_logits(logits)  # g^k(x) = softmax(W_gk x): (G, B, E)
        if self.experts.only_relu_after_first:  # f_i(x) = relu(first_i): fused into the mixing
            h = mix_experts(gates, first, relu=True)  # f^k(x) = sum_i g^k(x)_i f_i(x)
        else:
            experts = self.experts.after_first(first)  # f_i(x): (E, B, H)
            h = mix_experts(gates, experts)  # f^k(x) = sum_i g^k(x)_i f_i(x), (G, B, H)
        return h.expand(self.num_tasks, -1, -1), gates  # (T, B, H)
