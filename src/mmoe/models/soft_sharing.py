"""The paper's soft-parameter-sharing baselines (§6.1): every task keeps its own network and
sharing is encouraged (L2-Constrained) or learned (Cross-Stitch). Tensor-Factorization lives in
``tensor_factorization.py``.

Both backbones return h (T, B, k) and no gates; the T task networks are stacked and computed
with one batched matmul per layer, exactly as :class:`~mmoe.models.moe.SingleTask`.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import _checks
from ..config import ModelConfig
from ..nn import StackedLinear, StackedMLP
from ._options import read_options
from .protocol import Backbone, BackboneOut

L2_DEFAULTS = {"alpha": 1e-3}
CROSS_STITCH_DEFAULTS = {"self_weight": 0.9}


class L2Constrained(Backbone):
    """Separate task networks tied by a squared-distance penalty (paper §6.1, L2-Constrained;
    Duong et al. 2015).

    With two tasks the penalty is the paper's alpha * ||θ1 − θ2||². For T tasks we take all
    pairs, alpha * sum_{s<t} ||θ_s − θ_t||², computed as alpha * T * sum_t ||θ_t − θ̄||² (the
    same number, one pass over the tasks). θ_t is task t's backbone parameters, weights and
    biases of every layer; the towers are task-specific heads and are not tied. T = 1: zero.

    Args:
        in_features: input width d.
        units: widths of each task network's ReLU layers.
        num_tasks: T.
        alpha: penalty strength (>= 0).
        dropout: dropout after each hidden layer.

    Shapes: x (B, d) -> h (T, B, units[-1]); in training the penalty is the output's
    ``aux_loss`` (a scalar).

    Example:
        >>> net = L2Constrained(10, (16,), 2, alpha=0.1)
        >>> out = net(torch.randn(4, 10))
        >>> out.h.shape, out.aux_loss.shape
        (torch.Size([2, 4, 16]), torch.Size([]))
    """

    def __init__(self, in_features: int, units: tuple[int, ...], num_tasks: int,
                 alpha: float = L2_DEFAULTS["alpha"], dropout: float = 0.0):
        super().__init__()
        self.alpha, self.num_tasks = float(alpha), num_tasks
        self.nets = StackedMLP(num_tasks, in_features, units, dropout)  # θ_t = slice t
        self.out_features = self.nets.out_features

    def forward(self, x: torch.Tensor) -> BackboneOut:
        h = self.nets(x)  # (T, B, k)
        return BackboneOut(h, None, self.penalty() if self.training else None)

    def penalty(self) -> torch.Tensor:
        """alpha * sum_{s<t} ||θ_s − θ_t||²   (paper §6.1: alpha * ||θ1 − θ2||² for T = 2)."""
        spread = sum(((p - p.mean(0, keepdim=True)) ** 2).sum()  # sum_t ||θ_t − θ̄||²
                     for p in self.nets.parameters())  # each p is (T, ...)
        return self.alpha * self.num_tasks * spread


def stitch_init(num_tasks: int, self_weight: float) -> torch.Tensor:
    """Initial T x T cross-stitch matrix: ``self_weight`` on the diagonal, the rest split
    evenly off it so each row sums to 1.

    Misra et al. (2016, §5 "Initializing parameters of cross-stitch units") initialise the
    unit as a convex combination (α_S, α_D) with α_S + α_D = 1 and found (0.9, 0.1) best; for
    T > 2 we split α_D = 1 − α_S evenly over the T − 1 other tasks. T = 1: [[1]].

    Example:
        >>> stitch_init(2, 0.9)
        tensor([[0.9000, 0.1000],
                [0.1000, 0.9000]])
    """
    if num_tasks == 1:
        return torch.ones(1, 1)
    a = torch.full((num_tasks, num_tasks), (1.0 - self_weight) / (num_tasks - 1))
    return a.fill_diagonal_(self_weight)  # (T, T)


class CrossStitch(Backbone):
    """Per-task hidden layers with a learned T x T mixing after each one (Misra et al. 2016;
    paper §6.1, Cross-Stitch).

    After hidden layer l every task's activation becomes a linear combination of all tasks'
    activations: x̃_t = sum_s α^l_{ts} x_s, i.e. [x̃1; x̃2] = [[α11, α12], [α21, α22]]·[x1; x2]
    for two tasks. One scalar per task pair and layer, as in the paper's formula. Misra et al.
    train α with a 10²–10³ times larger learning rate; here α shares the model's learning rate.

    Args:
        in_features: input width d.
        units: widths of each task's ReLU layers; a cross-stitch unit follows every one.
        num_tasks: T.
        self_weight: initial diagonal of every mixing matrix (see :func:`stitch_init`).
        dropout: dropout after each hidden layer (before the mixing).

    Shapes: x (B, d) -> h (T, B, units[-1]); ``stitch[l]`` is (T, T), row t mixes into task t.

    Example:
        >>> CrossStitch(10, (16, 8), 3)(torch.randn(4, 10)).h.shape
        torch.Size([3, 4, 8])
    """

    def __init__(self, in_features: int, units: tuple[int, ...], num_tasks: int,
                 self_weight: float = CROSS_STITCH_DEFAULTS["self_weight"], dropout: float = 0.0):
        super().__init__()
        widths = (in_features, *units)
        self.layers = nn.ModuleList(
            StackedLinear(num_tasks, i, o) for i, o in zip(widths[:-1], widths[1:], strict=True)
        )
        self.stitch = nn.ParameterList(
            nn.Parameter(stitch_init(num_tasks, self_weight)) for _ in units  # α^l, (T, T)
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_features = widths[-1]

    def forward(self, x: torch.Tensor) -> BackboneOut:
        h = x  # (B, d) first, then (T, B, units[l])
        for layer, alpha in zip(self.layers, self.stitch, strict=True):  # loop over depth
            h = self.dropout(torch.relu(layer(h)))  # x_t = relu(W_t h_t + b_t), (T, B, H)
            h = torch.einsum("ts,sbh->tbh", alpha, h)  # x̃_t = sum_s α_ts x_s, (T, B, H)
        return BackboneOut(h)


def build_l2_constrained(cfg: ModelConfig, d: int, num_tasks: int) -> L2Constrained:
    """Registry builder; option ``alpha`` (default 1e-3, the paper tuned it per dataset)."""
    opts = read_options(cfg, L2_DEFAULTS)
    alpha = opts["alpha"]
    _checks.check(not isinstance(alpha, bool) and isinstance(alpha, (int, float)) and alpha >= 0,
                  f"model '{cfg.name}': option 'alpha' must be a number >= 0, got {alpha!r}")
    return L2Constrained(d, cfg.expert_units, num_tasks, alpha, cfg.dropout)


def build_cross_stitch(cfg: ModelConfig, d: int, num_tasks: int) -> CrossStitch:
    """Registry builder; layers from ``expert_units``, option ``self_weight`` (default 0.9)."""
    opts = read_options(cfg, CROSS_STITCH_DEFAULTS)
    w = opts["self_weight"]
    _checks.check(not isinstance(w, bool) and isinstance(w, (int, float)) and 0.0 <= w <= 1.0,
                  f"model '{cfg.name}': option 'self_weight' must be a number in [0, 1], "
                  f"got {w!r}")
    return CrossStitch(d, cfg.expert_units, num_tasks, float(w), cfg.dropout)
