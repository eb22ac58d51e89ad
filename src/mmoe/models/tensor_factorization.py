"""Tensor-Factorization baseline (paper §6.1; Yang and Hospedales, ICLR 2017, Tucker form):
each hidden layer's per-task weights, stacked into a tensor W (I x O x T), are a Tucker product

    W = S ×1 U1 ×2 U2 ×3 U3,   W(i, o, t) = sum_abc S(a, b, c) U1(i, a) U2(o, b) U3(t, c)

with core S (r1 x r2 x r3) and factors U1 (I x r1), U2 (O x r2), U3 (T x r3) shared by all
tasks. Ranks below the full sizes force the tasks' weights into shared subspaces.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .. import _checks
from ..config import ModelConfig
from ..nn import StackedLinear
from ._options import read_options
from .protocol import Backbone, BackboneOut

TF_DEFAULTS = {"ranks": (8, 8, 2)}


def _leading_basis(a: torch.Tensor, rank: int) -> torch.Tensor:
    """First ``rank`` left singular vectors of ``a`` (n, m), via eigh of the n x n Gram."""
    _, evecs = torch.linalg.eigh(a.double() @ a.double().T)  # ascending eigenvalues
    return evecs.flip(1)[:, :rank].to(a.dtype).contiguous()  # (n, rank), orthonormal columns


class TuckerLinear(nn.Module):
    """T per-task ``Linear(I, O)`` layers whose stacked weight tensor is Tucker-factorised.

    Initialisation: draw the T weights exactly as ``StackedLinear(T, I, O)`` (and so
    :class:`SingleTask`) would under the same seed, then take their truncated higher-order SVD
    (U_n = leading left singular vectors of the mode-n unfolding, S = W ×1 U1ᵀ ×2 U2ᵀ ×3 U3ᵀ).
    This follows Yang and Hospedales, who initialise from the SVD of per-task weights; at full
    ranks the factorised layer starts equal to the single-task layer. The bias is per task and
    not factorised.

    Args:
        num_tasks: T.
        in_features: I.
        out_features: O.
        ranks: (r1, r2, r3); each is capped at its mode's size (I, O, T).

    Shapes: input (B, I) shared or (T, B, I) -> (T, B, O); ``weight()`` (T, I, O).

    Example:
        >>> layer = TuckerLinear(2, 10, 16, (4, 4, 1))
        >>> layer(torch.randn(3, 10)).shape, layer.core.shape
        (torch.Size([2, 3, 16]), torch.Size([4, 4, 1]))
    """

    def __init__(self, num_tasks: int, in_features: int, out_features: int,
                 ranks: Sequence[int]):
        super().__init__()
        r1, r2, r3 = (min(r, n) for r, n in zip(ranks, (in_features, out_features, num_tasks),
                                                 strict=True))
        init = StackedLinear(num_tasks, in_features, out_features)  # single-task's RNG draws
        w = init.weight.detach().permute(1, 2, 0)  # (I, O, T)
        u1 = _leading_basis(w.reshape(in_features, -1), r1)  # mode-1 unfolding (I, O*T)
        u2 = _leading_basis(w.permute(1, 0, 2).reshape(out_features, -1), r2)  # (O, I*T)
        u3 = _leading_basis(w.permute(2, 0, 1).reshape(num_tasks, -1), r3)  # (T, I*O)
        core = torch.einsum("iot,ia,ob,tc->abc", w, u1, u2, u3)  # S = W ×n U_nᵀ, (r1, r2, r3)
        self.core = nn.Parameter(core)  # S (r1, r2, r3)
        self.u1, self.u2, self.u3 = (nn.Parameter(u) for u in (u1, u2, u3))
        self.bias = nn.Parameter(init.bias.detach().clone())  # (T, O)

    def weight(self) -> torch.Tensor:
        """Materialised per-task weights (T, I, O): W = S ×1 U1 ×2 U2 ×3 U3."""
        return torch.einsum("abc,ia,ob,tc->tio", self.core, self.u1, self.u2, self.u3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight()  # (T, I, O)
        if x.dim() == 2:
            y = torch.einsum("bi,tio->tbo", x, w)  # shared input, (T, B, O)
        else:
            y = torch.bmm(x, w)  # (T, B, I) @ (T, I, O) -> (T, B, O)
        return y + self.bias.unsqueeze(1)  # (T, 1, O)


class TensorFactorization(Backbone):
    """Per-task ReLU networks whose every layer is a :class:`TuckerLinear`.

    Args:
        in_features: input width d.
        units: hidden widths (one Tucker-factorised layer per entry).
        num_tasks: T.
        ranks: (r1, r2, r3) for every layer, each capped at the layer's sizes.
        dropout: dropout after each hidden layer.

    Shapes: x (B, d) -> h (T, B, units[-1]).

    Example:
        >>> TensorFactorization(10, (16,), 2, (4, 4, 1))(torch.randn(3, 10)).h.shape
        torch.Size([2, 3, 16])
    """

    def __init__(self, in_features: int, units: tuple[int, ...], num_tasks: int,
                 ranks: Sequence[int] = TF_DEFAULTS["ranks"], dropout: float = 0.0):
        super().__init__()
        widths = (in_features, *units)
        self.layers = nn.ModuleList(
            TuckerLinear(num_tasks, i, o, ranks)
            for i, o in zip(widths[:-1], widths[1:], strict=True)
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_features = widths[-1]

    def forward(self, x: torch.Tensor) -> BackboneOut:
        h = x  # (B, d) first, then (T, B, units[l])
        for layer in self.layers:  # loop over depth
            h = self.dropout(torch.relu(layer(h)))  # relu(W_t h_t + b_t), (T, B, units[l])
        return BackboneOut(h)


def build_tensor_factorization(cfg: ModelConfig, d: int, num_tasks: int) -> TensorFactorization:
    """Registry builder; option ``ranks`` = (r1, r2, r3), default (8, 8, 2), each capped at its
    mode's size (input width, hidden width, T) so one triple fits every layer."""
    ranks = read_options(cfg, TF_DEFAULTS)["ranks"]
    ok = (isinstance(ranks, (list, tuple)) and len(ranks) == 3
          and all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in ranks))
    _checks.check(ok, f"model '{cfg.name}': option 'ranks' must be three integers >= 1 "
                      f"(r1 input, r2 hidden, r3 task), got {ranks!r}")
    return TensorFactorization(d, cfg.expert_units, num_tasks, tuple(ranks), cfg.dropout)
