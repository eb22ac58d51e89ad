"""The wide part of Wide & Deep (Cheng et al., DLRS 2016) for the lookup columns: a learnt bias
per table row and per output, added to the towers' logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .encoder import pool_lookups


class WideTerms(nn.Module):
    """First-order terms of the lookup columns (hashed ids, sequences): each row r of each
    table has its own weights w_r (one per logit column), and

        wide(x)_o = sum over lookups l of pool_l(w_{r, o} for the rows r of l in x)

    (a logistic regression over the ids, the sequences pooled as the lookups are), added to
    the deep logits. A rare id's propensity (an item that sells, a user who clicks) is one
    weight learnt directly, not a direction of its embedding that the network must find. The
    weights start at zero (the model starts as without them) and get sparse gradients, like
    the tables.

    Args:
        rows: rows of each table, in the encoder's order.
        layout: ``(table, start, stop, pooling)`` per lookup (``FeatureEncoder.lookups``).
        outputs: logit columns O.

    Shapes:
        ids (B, S) long -> (B, O).

    Example:
        >>> wide = WideTerms([5], [(0, 0, 2, "sum")], outputs=3)
        >>> _ = wide.tables[0].data[2].fill_(1.0)
        >>> wide(torch.tensor([[2, 2], [2, 0], [0, 0]])).tolist()
        [[2.0, 2.0, 2.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    """

    def __init__(self, rows: Sequence[int], layout: Sequence[tuple[int, int, int, str]],
                 outputs: int):
        super().__init__()
        self.tables = nn.ParameterList(nn.Parameter(torch.zeros(r, outputs)) for r in rows)
        self.layout = tuple(layout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.stack(pool_lookups(ids, self.tables, self.layout)).sum(0)  # (B, O)
