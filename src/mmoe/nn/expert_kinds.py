"""Expert kinds beyond the MLP, each stacked over n same-shaped experts (one batched op per
layer, never a loop over experts), and an MLP whose first layer sees a subset of the inputs.

Shapes: n experts, B batch, d input width, H output width.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .stacked import StackedLinear, StackedMLP


class InputMaskedMLP(StackedMLP):
    """G stacked MLPs where MLP g reads only the inputs with ``mask[g] = True``.

    The first layer's stacked weight (G, I, O) is multiplied by the mask (G, I, 1), so an
    input outside MLP g's subset has no effect on its output (and its weights no gradient).
    Those weights are initialised as ``nn.Linear`` would for the subset's fan-in.

    Args:
        mask: (G, I) bool, which inputs each MLP reads (at least one per MLP).
        in_features, units, dropout: as :class:`StackedMLP`.

    Shapes: input (B, I) -> (G, B, units[-1]).

    Example:
        >>> mask = torch.tensor([[True, False, False], [False, True, True]])
        >>> InputMaskedMLP(mask, 3, (4,))(torch.randn(5, 3)).shape
        torch.Size([2, 5, 4])
    """

    def __init__(self, mask: torch.Tensor, in_features: int, units: tuple[int, ...],
                 dropout: float = 0.0):
        super().__init__(mask.shape[0], in_features, units, dropout)
        mask = mask.to(torch.float32)
        self.register_buffer("mask", mask.unsqueeze(-1), persistent=False)  # (G, I, 1)
        with torch.no_grad():  # fan-in = the subset's size, as nn.Linear would use
            fan_in = mask.sum(1).clamp_min(1)  # (G,)
            self.layers[0].weight.mul_(torch.sqrt(in_features / fan_in)[:, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.layers[0]
        w = first.weight * self.mask  # (G, I, O), zero outside each subset
        g, i, o = w.shape
        y = (x @ w.permute(1, 0, 2).reshape(i, g * o)).view(x.shape[0], g, o).transpose(0, 1)
        return self.after_first(y + first.bias.unsqueeze(1))  # (G, B, units[-1])


class _ProjectedExperts(nn.Module):
    """n stacked experts f(x) = relu(W phi(x) + c): features phi(x) (n, B, k) of the input,
    projected to the common width H. Subclasses make their parameters, then ``proj`` (so
    that each expert kind keeps its own order of random draws), and define :meth:`features`.

    Shapes: x (B, d) -> (n, B, H).
    """

    proj: StackedLinear

    def project_to(self, num: int, width: int, out_features: int) -> None:
        """Create the projection W (n, k, H) from ``width`` features to ``out_features``."""
        self.proj = StackedLinear(num, width, out_features)
        self.out_features = out_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): (B, d) -> (n, B, k)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.proj(self.features(x)))  # (n, B, H)

    def output_weights(self) -> list[nn.Parameter]:
        """The output projection's weight (n, k, H)."""
        return [self.proj.weight]


class CrossExperts(_ProjectedExperts):
    """n stacked cross networks (DCN, Wang et al. 2017), each projected to width H with ReLU.

    x_{l+1} = x_0 (x_l . w_l) + b_l + x_l   (DCN eq. 3), then f(x) = relu(W x_L + c).

    Args: ``num`` experts n, ``in_features`` d, ``layers`` L cross layers, ``out_features`` H.

    Example:
        >>> CrossExperts(2, 6, 3, 4)(torch.randn(5, 6)).shape
        torch.Size([2, 5, 4])
    """

    def __init__(self, num: int, in_features: int, layers: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(layers, num, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(layers, num, in_features))  # (L, n, d)
        self.project_to(num, in_features, out_features)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x0 = x.unsqueeze(0)  # (1, B, d)
        xl = x0.expand(self.weight.shape[1], -1, -1)  # (n, B, d)
        for w, b in zip(self.weight, self.bias, strict=True):  # loop over depth only
            xl = x0 * (xl * w.unsqueeze(1)).sum(-1, keepdim=True) + b.unsqueeze(1) + xl
        return xl  # x_L: (n, B, d)


class FMExperts(_ProjectedExperts):
    """n stacked factorisation-machine experts: pairwise interactions, projected to width H.

    bi(x) = 1/2 ((x V)² - x² V²) = sum_{i<j} x_i x_j v_i ⊙ v_j   (Rendle 2010; the NFM
    bi-interaction), then f(x) = relu(W bi(x) + c). Every encoded input position is a
    feature (an embedding contributes its D positions).

    Args: ``num`` experts n, ``in_features`` d, ``factors`` k (the width of the factors v_i),
    ``out_features`` H.

    Example:
        >>> [p.shape for p in FMExperts(2, 6, 3, 4).parameters()][:2]
        [torch.Size([2, 6, 3]), torch.Size([2, 3, 4])]
    """

    def __init__(self, num: int, in_features: int, factors: int, out_features: int):
        super().__init__()
        self.factors = nn.Parameter(torch.randn(num, in_features, factors) * 0.1)  # (n, d, k)
        self.project_to(num, factors, out_features)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        v = self.factors
        n, d, k = v.shape
        xv = (x @ v.permute(1, 0, 2).reshape(d, n * k)).view(-1, n, k)  # (B, n, k)
        x2v2 = (x.square() @ v.square().permute(1, 0, 2).reshape(d, n * k)).view(-1, n, k)
        return 0.5 * (xv.square() - x2v2).transpose(0, 1)  # bi(x): (n, B, k)
