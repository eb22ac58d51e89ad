"""Funnel blocks: the logit of a product of probabilities (ESMM) and the adaptive information
transfer between consecutive tasks (AITM).

ESMM (Ma et al., SIGIR 2018, eq. 1-3): pCTCVR = pCTR * pCVR, trained with cross-entropy on
the click and click-and-purchase labels of every impression. The model keeps logits, so the
product is carried as the logit of a product:

    log p = log sigmoid(a) + log sigmoid(b),   logit(p) = log p - log(1 - p)

computed in the log domain (never 1 - p of a rounded p), so BCE-with-logits on it equals the
cross-entropy of the product exactly and stays finite for any a, b.

AITM (Xi et al., KDD 2021, eq. 1-6): for task t following task t-1,

    p_{t-1} = g_{t-1}(z_{t-1})                              (transfer of what t-1 learnt)
    w_u     = softmax_u( <h1(u), h2(u)> / sqrt(k) ),  u in {p_{t-1}, q_t}
    z_t     = sum_u w_u h3(u)                                (the tower's input)

with q_t the task's own representation, g an MLP and h1, h2, h3 linear maps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_LN2 = math.log(2.0)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler 2012); expm1(x) is taken
    as 2 tanh(x/2) / (1 - tanh(x/2)), the same value in operators that ONNX exports.

    Example:
        >>> round(float(log1mexp(torch.tensor(math.log(0.25), dtype=torch.float64))), 12)
        -0.287682072452
    """
    half = torch.tanh(x / 2)
    near = -2 * half / (1 - half)  # -expm1(x), for x close to 0
    return torch.where(x > -_LN2, torch.log(near), torch.log1p(-torch.exp(x)))


def product_logit(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The logit of sigmoid(a) * sigmoid(b), elementwise (ESMM's pCTCVR from its towers):
    p / (1 - p) = 1 / (e^-a + e^-b + e^-(a+b)), so logit(p) = -logsumexp(-a, -b, -a-b),
    exact and finite for any a, b.

    Shapes:
        a, b broadcastable -> their broadcast shape.

    Example:
        >>> float(torch.sigmoid(product_logit(torch.tensor(0.0), torch.tensor(0.0))))  # 1/4
        0.25
    """
    a, b = torch.broadcast_tensors(a, b)
    return -torch.logsumexp(torch.stack([-a, -b, -a - b]), dim=0)


def ratio_logit(joint: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """The logit of q = min(sigmoid(joint) / sigmoid(parent), 1): the conditional probability
    of a later funnel step from the joint's and the earlier step's logits, clipped where a
    model without the product's guarantee predicts the joint above the earlier step:
    logit(q) = softplus(-parent) + joint - log(1 - e^(joint - parent)).

    Example:
        >>> a = torch.tensor([0.3, -2.0], dtype=torch.float64)
        >>> ratio_logit(product_logit(a, torch.tensor(1.5)), a).round(decimals=12).tolist()
        [1.5, 1.5]
    """
    gap = (joint - parent).clamp_max(-torch.finfo(joint.dtype).eps)  # joint < parent: q < 1
    return F.softplus(-parent) + parent + gap - log1mexp(gap)


class InformationTransfer(nn.Module):
    """AITM's adaptive information transfer from task t-1 to task t (module docstring).

    Args:
        width: k, the width of z_{t-1} and q_t.

    Shapes:
        previous z_{t-1} (B, k), own q_t (B, k) -> z_t (B, k); :meth:`weights` (B, 2) the
        attention on (p_{t-1}, q_t).
    """

    def __init__(self, width: int):
        super().__init__()
        self.transfer = nn.Sequential(nn.Linear(width, width), nn.ReLU())  # g_{t-1}
        self.query = nn.Linear(width, width)  # h1
        self.key = nn.Linear(width, width)  # h2
        self.value = nn.Linear(width, width)  # h3
        self.scale = 1.0 / math.sqrt(width)

    def weights(self, u: torch.Tensor) -> torch.Tensor:
        """w_u = softmax_u(<h1(u), h2(u)> / sqrt(k)) over u (B, 2, k) -> (B, 2)."""
        return torch.softmax((self.query(u) * self.key(u)).sum(-1) * self.scale, dim=1)

    def forward(self, previous: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        u = torch.stack([self.transfer(previous), own], dim=1)  # (B, 2, k): p_{t-1}, q_t
        return (self.weights(u).unsqueeze(-1) * self.value(u)).sum(1)  # (B, k)
