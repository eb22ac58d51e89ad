"""The paper's model family (§4): Single-Task, Shared-Bottom, and the mixtures of experts
OMoE (one gate) and MMoE (a gate per task). All three start with stacked linear layers of x,
so the model may fold those into the embedding lookups (:class:`LinearInputBackbone`).
"""

from __future__ import annotations

import torch

from ..nn import Gates, StackedLinear, StackedMLP, mix_experts
from .protocol import BackboneOut, LinearInputBackbone


class _TaskNetworks(LinearInputBackbone):
    """G stacked MLPs on x and no gates: G = 1 shared by all tasks, or one per task (G = T).

    Shapes: x (B, d) -> h (T, B, units[-1]) (G = 1: the same tensor for every task, no copy).
    """

    def __init__(self, num_tasks: int):
        super().__init__()
        self.num_tasks = num_tasks

    def networks(self) -> StackedMLP:
        """The stacked MLPs."""
        raise NotImplementedError

    def input_layers(self) -> list[StackedLinear]:
        return [self.networks().layers[0]]

    def from_inputs(self, first: list[torch.Tensor]) -> BackboneOut:
        h = self.networks().after_first(first[0])  # (G, B, k)
        return BackboneOut(h if h.shape[0] == self.num_tasks  # (T, B, k)
                           else h.expand(self.num_tasks, -1, -1))


class SharedBottom(_TaskNetworks):
    """One network f shared by all tasks: y_k = h^k(f(x))   (paper §4.1, Shared-Bottom).

    Example:
        >>> SharedBottom(10, (16,), num_tasks=2)(torch.randn(4, 10)).h.shape
        torch.Size([2, 4, 16])
    """

    def __init__(self, in_features: int, units: tuple[int, ...], num_tasks: int,
                 dropout: float = 0.0):
        super().__init__(num_tasks)
        self.bottom = StackedMLP(1, in_features, units, dropout)  # f
        self.out_features = self.bottom.out_features

    def networks(self) -> StackedMLP:
        return self.bottom

    def last_shared_layer(self) -> list[torch.nn.Parameter]:
        return [self.bottom.layers[-1].weight]


class SingleTask(_TaskNetworks):
    """An independent network per task, nothing shared: y_k = h^k(f_k(x)); the T networks
    are stacked and computed in one batched matmul per layer.

    Example:
        >>> [p.shape for p in SingleTask(10, (16,), num_tasks=3).parameters()]
        [torch.Size([3, 10, 16]), torch.Size([3, 16])]
    """

    shares_layers = False

    def __init__(self, in_features: int, units: tuple[int, ...], num_tasks: int,
                 dropout: float = 0.0):
        super().__init__(num_tasks)
        self.nets = StackedMLP(num_tasks, in_features, units, dropout)  # f_k
        self.out_features = self.nets.out_features

    def networks(self) -> StackedMLP:
        return self.nets


class MixtureOfExperts(LinearInputBackbone):
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
        gate_dropout: gate dropout probability in training (see :class:`~mmoe.nn.Gates`).

    Shapes: x (B, d) -> h (T, B, units[-1]), gates (G, B, E).

    The experts' first layer and the gates read the same x: one product computes both.

    Example:
        >>> out = MixtureOfExperts(10, (16,), num_experts=4, num_gates=2, num_tasks=2)(
        ...     torch.randn(3, 10))
        >>> out.h.shape, out.gates.shape
        (torch.Size([2, 3, 16]), torch.Size([2, 3, 4]))
    """

    gated = True

    def __init__(self, in_features: int, units: tuple[int, ...], num_experts: int,
                 num_gates: int, num_tasks: int, gate_bias: bool = False, dropout: float = 0.0,
                 gate_dropout: float = 0.0):
        super().__init__()
        if num_gates not in (1, num_tasks):
            raise ValueError(f"num_gates must be 1 (OMoE) or the number of tasks {num_tasks} "
                             f"(MMoE), got {num_gates}")
        self.num_tasks = num_tasks
        self.experts = StackedMLP(num_experts, in_features, units, dropout)  # f_i
        self.gates = Gates(in_features, num_experts, num_gates, bias=gate_bias,
                           dropout=gate_dropout)  # g^k
        self.out_features = self.experts.out_features

    def input_layers(self) -> list[StackedLinear]:
        # [W_1 .. W_E | W_g1 .. W_gG] in one product: (E, B, H0) and (G, B, E)
        return [self.experts.layers[0], self.gates.linear]

    def from_inputs(self, first: list[torch.Tensor]) -> BackboneOut:
        z, logits = first  # first expert layer (E, B, H0), gate logits (G, B, E)
        gates = self.gates.from_logits(logits)  # g^k(x) = softmax(W_gk x): (G, B, E)
        if self.experts.only_relu_after_first:  # f_i(x) = relu(z_i): fused into the mixing
            h = mix_experts(gates, z, relu=True)  # f^k(x) = sum_i g^k(x)_i f_i(x)
        else:
            experts = self.experts.after_first(z)  # f_i(x): (E, B, H)
            h = mix_experts(gates, experts)  # f^k(x) = sum_i g^k(x)_i f_i(x), (G, B, H)
        return BackboneOut(h.expand(self.num_tasks, -1, -1), gates)  # (T, B, H)

    def last_shared_layer(self) -> list[torch.nn.Parameter]:
        return [self.experts.layers[-1].weight]
