"""Gate remedies: gate dropout (Zhao et al., RecSys 2019) and a load-balancing penalty.

Both act on gate weights g (G, B, E) whose rows sum to 1 over the experts a gate can see.
"""

from __future__ import annotations

import torch


def _kept(scores: torch.Tensor, p: float, visible: torch.Tensor) -> torch.Tensor:
    """Gate dropout's mask m_e ~ Bernoulli(1 - p) over (G, B, E), restricted to the
    ``visible`` experts; a row with none of them kept keeps every expert."""
    keep = (torch.rand_like(scores) >= p) & visible
    return keep | ~keep.any(-1, keepdim=True)


def gate_dropout(gates: torch.Tensor, p: float) -> torch.Tensor:
    """Drop each expert's gate weight with probability ``p`` and renormalise each row.

    g'_e = m_e g_e / sum_j m_j g_j,  m_e ~ Bernoulli(1 - p)   (Zhao et al. 2019, §5.2)

    A row whose experts were all dropped keeps its weights (there is nothing to renormalise
    onto), and so does a row whose kept weights sum to less than the square root of the
    dtype's smallest normal number (a saturated gate whose other weights underflowed to zero:
    dividing by that sum would overflow the gradient). From logits,
    :func:`gate_dropout_softmax` computes the same without that limit. Uses the global torch
    RNG, like ``nn.Dropout``.

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
    kept = gates * _kept(gates, p, gates > 0)
    total = kept.sum(-1, keepdim=True)
    empty = total < torch.finfo(gates.dtype).tiny ** 0.5  # nothing left to renormalise onto
    return torch.where(empty, gates, kept) / torch.where(empty, gates.sum(-1, keepdim=True),
                                                         total)


def gate_dropout_softmax(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Softmax gate weights with gate dropout, from the gates' logits z = W_gk x.

    g'_e = m_e exp(z_e) / sum_j m_j exp(z_j) = softmax over the kept experts: the same as
    :func:`gate_dropout` on ``softmax(z)``, with the same mask for the same RNG state, but
    exact when the gate is saturated (the kept experts' weights underflow to zero in
    ``softmax(z)``; here they share the row by their logits, and the gradient stays finite).
    A logit of -inf is an expert the gate cannot see; a row with none of its visible experts
    kept keeps them all.

    Args:
        logits: (G, B, E) gate logits.
        p: drop probability in [0, 1); 0 gives ``softmax(logits)``.

    Returns:
        (G, B, E) weights, rows summing to 1.

    Example:
        >>> z = torch.tensor([[[0.0, -200.0, -200.0]]])  # softmax: (1, 0, 0) in float32
        >>> g = gate_dropout_softmax(z, 0.5)
        >>> bool(torch.allclose(g.sum(-1), torch.ones(1, 1)))
        True
    """
    if p <= 0:
        return torch.softmax(logits, dim=-1)
    keep = _kept(logits, p, ~torch.isneginf(logits))
    return torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)


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
