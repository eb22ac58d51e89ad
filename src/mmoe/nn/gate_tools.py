"""Gate remedies: gate dropout (Zhao et al., RecSys 2019) and a load-balancing penalty.

Both act on gate weights g (G, B, E) whose rows sum to 1 over the experts a gate can see.
"""

from __future__ import annotations

import torch


def gate_dropout(gates: torch.Tensor, p: float) -> torch.Tensor:
    """Drop each expert's gate weight with probability ``p`` and renormalise each row.

    g'_e = m_e g_e / sum_j m_j g_j,  m_e ~ Bernoulli(1 - p)   (Zhao et al. 2019, §5.2)

    A row whose experts were all dropped keeps its weights (there is nothing to renormalise
    onto). Uses the global torch RNG, like ``nn.Dropout``.

    Args:
        gates: (G, B, E) gate weights, rows summing to 1.
        p: drop probability in [0, 1).

    Returns:
        (G, B, E) weights, rows summing to 1; ``gates`` itself when ``p == 0``.

    Example:
        >>> g = gate_dropout(torch.full((1, 4, 3), 1 / 3), 0.5)
        >>> bool(torch.allclose(g.sum(-1), torch.ones(1, 4)))
        True
    """
    if p <= 0:
        return gates
    keep = torch.rand_like(gates) >= p  # (G, B, E) m_e
    keep = keep | ~keep.any(-1, keepdim=True)  # all dropped: keep the row as it was
    kept = gates * keep
    return kept / kept.sum(-1, keepdim=True).clamp_min(torch.finfo(gates.dtype).tiny)


def load_balance(gates: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Squared coefficient of variation of each gate's mean expert weight, averaged over gates.

    For gate g with batch-mean weights u_ge over its n_g visible experts,
    CV²(u_g) = n_g * sum_e u_ge² - 1: 0 when the gate uses its experts equally on average,
    n_g - 1 when it always picks one (Shazeer et al. 2017's importance loss). Individual rows
    may still be sharp; only the average use is balanced.

    Args:
        gates: (G, B, E) gate weights.
        mask: (G, E) bool, the experts each gate can see (``None``: all).

    Returns:
        Scalar penalty.

    Example:
        >>> float(load_balance(torch.full((2, 5, 4), 0.25)))
        0.0
    """
    u = gates.mean(1)  # (G, E) mean weight u_ge
    n = (torch.full(u.shape[:1], u.shape[1], dtype=u.dtype, device=u.device) if mask is None
         else mask.sum(-1).to(u.dtype))  # (G,) visible experts n_g
    return (n * u.square().sum(-1) - 1).mean()
