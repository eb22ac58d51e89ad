"""Periodic embeddings of numeric columns (Gorishniy, Rubachev, Babenko, NeurIPS 2022, "On
Embeddings for Numerical Features in Tabular Deep Learning", the "PLR" embedding):

    v_j(x) = [cos(2π c_j x), sin(2π c_j x)] ∈ R^{2k},   c_j ∈ R^k learnt, c_j(0) ~ N(0, σ²)
    e_j(x) = ReLU(W_j v_j(x) + b_j) ∈ R^d

for each embedded column j (its own frequencies and linear layer).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PeriodicEmbedding(nn.Module):
    """Embed some numeric columns periodically; pass the others through.

    Args:
        num_numeric: numeric columns n.
        columns: indices of the embedded columns (p of them).
        frequencies: k per column.
        dim: output width d per column.
        sigma: std of the initial frequencies.

    Shapes:
        (B, n) -> (B, n − p + p·d): the other columns in order, then each embedded column's
        d outputs.

    Example:
        >>> emb = PeriodicEmbedding(3, (0, 2), frequencies=4, dim=5, sigma=0.1)
        >>> emb(torch.randn(7, 3)).shape
        torch.Size([7, 11])
    """

    def __init__(self, num_numeric: int, columns: tuple[int, ...], frequencies: int,
                 dim: int, sigma: float):
        super().__init__()
        self.register_buffer("embedded", torch.tensor(columns, dtype=torch.long),
                             persistent=False)
        self.register_buffer("plain", torch.tensor(
            [j for j in range(num_numeric) if j not in columns], dtype=torch.long),
            persistent=False)
        p = len(columns)
        self.frequencies = nn.Parameter(sigma * torch.randn(p, frequencies))  # c (p, k)
        bound = 1.0 / math.sqrt(2 * frequencies)  # nn.Linear's initialisation, per column
        self.weight = nn.Parameter(torch.empty(p, 2 * frequencies, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(p, dim).uniform_(-bound, bound))
        self.out_features = num_numeric - p + p * dim

    def forward(self, numeric: torch.Tensor) -> torch.Tensor:
        x = numeric.index_select(1, self.embedded)  # (B, p)
        angle = 2 * math.pi * x.unsqueeze(-1) * self.frequencies  # (B, p, k)
        v = torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)  # (B, p, 2k)
        e = torch.relu(torch.einsum("bpf,pfd->bpd", v, self.weight) + self.bias)  # (B, p, d)
        return torch.cat([numeric.index_select(1, self.plain), e.flatten(1)], dim=1)
