"""Per-task towers h^k: stacked MLPs ending in each task's logits."""

from __future__ import annotations

import torch
from torch import nn

from .stacked import StackedLinear, StackedMLP


class Towers(nn.Module):
    """T task towers computed together; returns the logits of all tasks side by side.

    Args:
        num_tasks: T.
        in_features: width k of each task's input h^k.
        units: hidden widths of each tower (ReLU); empty for a linear head.
        out_dims: logits per task (1 for binary/regression, C for a C-class task).
        dropout: dropout after each hidden layer.

    Shapes:
        input (T, B, k) or (B, k) shared -> logits (B, O), O = sum(out_dims); task t's logits
        are columns ``slices[t]``. With only binary/regression tasks O = T.

    Tasks with fewer logits than the widest one use the first ``out_dims[t]`` columns of a
    stacked output layer; the unused columns are never read (so they get zero gradient).

    Example:
        >>> Towers(2, 16, (8,), (1, 1))(torch.randn(2, 5, 16)).shape
        torch.Size([5, 2])
    """

    def __init__(self, num_tasks: int, in_features: int, units: tuple[int, ...],
                 out_dims: tuple[int, ...], dropout: float = 0.0):
        super().__init__()
        self.hidden = StackedMLP(num_tasks, in_features, units, dropout) if units else None
        width = units[-1] if units else in_features
        widest = max(out_dims)
        self.out = StackedLinear(num_tasks, width, widest)
        # Column t*widest + j of the flattened (B, T*widest) output is logit j of task t.
        index = [t * widest + j for t, c in enumerate(out_dims) for j in range(c)]
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)
        starts = [sum(out_dims[:t]) for t in range(len(out_dims))]
        self.slices = tuple(slice(s, s + c) for s, c in zip(starts, out_dims, strict=True))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.hidden is not None:
            h = self.hidden(h)  # (T, B, units[-1])
        y = self.out(h)  # (T, B, C_max)
        y = y.transpose(0, 1).reshape(y.shape[1], -1)  # (B, T*C_max)
        if y.shape[1] == self.index.numel():
            return y
        return y.index_select(1, self.index)  # (B, O)
