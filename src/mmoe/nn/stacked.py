"""Stacked (grouped) linear layers and MLPs: G independent layers computed in one batched
matmul. Used for the expert bank (G = E experts), per-task networks and towers (G = T).

Shapes: G groups, B batch, I input width, O output width.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import ops


class StackedLinear(nn.Module):
    """G independent ``nn.Linear(I, O)`` layers with stacked weights.

    Args:
        groups: number of independent layers G.
        in_features: input width I.
        out_features: output width O.
        bias: add a per-group bias.

    Shapes:
        input (B, I) shared by all groups, or (G, B, I) one slice per group;
        output (G, B, O).

    Each slice is initialised exactly as ``nn.Linear`` does it (the same RNG draws, in the same
    order), so ``StackedLinear(G, I, O)`` made under a seed equals G ``nn.Linear(I, O)`` made
    one after another under that seed, with ``weight[g] == linear_g.weight.T``.

    Example:
        >>> layer = StackedLinear(8, 100, 16)
        >>> layer(torch.randn(32, 100)).shape
        torch.Size([8, 32, 16])
    """

    def __init__(self, groups: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.groups, self.in_features, self.out_features = groups, in_features, out_features
        self.weight = nn.Parameter(torch.empty(groups, in_features, out_features))  # (G, I, O)
        self.bias = nn.Parameter(torch.empty(groups, out_features)) if bias else None  # (G, O)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise each slice as ``nn.Linear.reset_parameters`` would."""
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        for g in range(self.groups):  # init only; forward never loops over groups
            w = torch.empty(self.out_features, self.in_features)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))  # nn.Linear's weight init
            self.weight[g].copy_(w.T)
            if self.bias is not None:
                nn.init.uniform_(self.bias[g], -bound, bound)  # nn.Linear's bias init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # (B, I) read by every group: one GEMM
            return ops.linear_groups(x, [self.weight], [self.bias])[0]
        return ops.grouped_linear(x, self.weight, self.bias)  # (G, B, I) -> (G, B, O)

    def extra_repr(self) -> str:
        return (f"groups={self.groups}, in_features={self.in_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


def shared_input_linear(x: torch.Tensor, layers: list[StackedLinear]) -> list[torch.Tensor]:
    """Several stacked layers applied to the same input x (B, I) in ONE product (e.g. every
    expert's first layer and every gate): one (G_l, B, O_l) output per layer, as each layer
    alone would give it (:func:`mmoe.ops.linear_groups`).

    Example:
        >>> a, b = StackedLinear(3, 10, 4), StackedLinear(2, 10, 5)
        >>> [y.shape for y in shared_input_linear(torch.randn(6, 10), [a, b])]
        [torch.Size([3, 6, 4]), torch.Size([2, 6, 5])]
    """
    return ops.linear_groups(x, [layer.weight for layer in layers],
                             [layer.bias for layer in layers])


class StackedMLP(nn.Module):
    """G independent MLPs with ReLU after every layer (and optional dropout); after
    :meth:`add_batch_norm`, batch normalisation of every layer's pre-activation.

    Args:
        groups: number of independent MLPs G (experts, or per-task networks).
        in_features: input width I.
        units: widths of the layers, e.g. ``(16,)`` for one ReLU layer of 16 units.
        dropout: dropout probability after each layer.

    Shapes:
        input (B, I) or (G, B, I); output (G, B, units[-1]).

    Example:
        >>> StackedMLP(8, 100, (16,))(torch.randn(4, 100)).shape
        torch.Size([8, 4, 16])
    """

    def __init__(self, groups: int, in_features: int, units: tuple[int, ...],
                 dropout: float = 0.0):
        super().__init__()
        widths = (in_features, *units)
        self.layers = nn.ModuleList(
            StackedLinear(groups, i, o) for i, o in zip(widths[:-1], widths[1:], strict=True)
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_features = widths[-1]
        self.norms: nn.ModuleList | None = None

    def add_batch_norm(self) -> None:
        """Normalise every layer's pre-activation z (G, B, O) over the batch, per group and
        unit, before its ReLU: relu(BN(W x + b)) (Ioffe & Szegedy 2015; torch-rechub's MLP
        layers, DeepCTR's with ``dnn_use_bn``). Adds no random draws, so the other weights
        stay as made."""
        self.norms = nn.ModuleList(nn.BatchNorm1d(layer.groups * layer.out_features)
                                   for layer in self.layers)

    def _activation(self, z: torch.Tensor, depth: int) -> torch.Tensor:
        """relu (after batch norm, when added) then dropout of layer ``depth``'s z (G, B, O)."""
        if self.norms is not None:
            g, b, o = z.shape  # BatchNorm1d over (B, G·O): statistics per group and unit
            z = self.norms[depth](z.transpose(0, 1).reshape(b, g * o))
            z = z.view(b, g, o).transpose(0, 1)
        return self.dropout(torch.relu(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_first(self.layers[0](x))

    def output_weights(self) -> list[nn.Parameter]:
        """The last layer's weight (G, I, O)."""
        return [self.layers[-1].weight]

    @property
    def only_relu_after_first(self) -> bool:
        """Whether :meth:`after_first` is just a ReLU (one layer, no dropout, no batch norm),
        which a caller may fuse into what it does next (:func:`mmoe.ops.mix` with
        ``relu=True``)."""
        return (len(self.layers) == 1 and isinstance(self.dropout, nn.Identity)
                and self.norms is None)

    def after_first(self, z: torch.Tensor) -> torch.Tensor:
        """The MLP given its first layer's pre-activation z (G, B, units[0]) (the first layer
        may have been computed elsewhere, e.g. folded into the embedding lookups)."""
        x = self._activation(z, 0)
        # list(...)[1:]: a ModuleList slice would build a new module at every step
        for depth, layer in enumerate(list(self.layers)[1:], 1):  # over depth, never groups
            x = self._activation(layer(x), depth)  # (G, B, units[l])
        return x
