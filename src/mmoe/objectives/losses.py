"""Per-task losses with missing-label masks and sample weights, outside the model.

For task t with per-row loss l_it, label mask m_it (0 where the label is missing) and sample
weight w_i, the task loss is the weighted mean over labelled rows

    L_t = sum_i m_it w_i l_it / sum_i m_it w_i        (0 when no row of the batch is labelled)

and the objective is sum_t lambda_t L_t with lambda_t = ``TaskSpec.weight``. A funnel task
(``TaskSpec(after=s)``) of a model whose logit is the conditional P(t | s) counts only the rows
where s happened (m_it = 0 where s's label is not 1); a funnel head's joint logit counts all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TaskSpec


class MultiTaskLoss(nn.Module):
    """Masked, weighted per-task losses: BCE-with-logits, MSE or cross-entropy by task kind.

    Args:
        tasks: the tasks, in the model's task order.
        slices: each task's column slice in the logits (``model.task_slices``).
        joint: the funnel tasks' logits are joints (``esmm``, ``aitm``: scored on every row)
            rather than conditionals (scored where the earlier task's label is 1).

    Shapes:
        logits (B, O), labels (B, T) with NaN = missing, weights (B,) or None
        -> per-task losses (T,).

    Example:
        >>> loss = MultiTaskLoss([TaskSpec("a", "regression")], (slice(0, 1),))
        >>> float(loss(torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [float("nan")]]))[0])
        1.0
    """

    def __init__(self, tasks: Sequence[TaskSpec], slices: Sequence[slice], joint: bool = False):
        super().__init__()
        self.tasks = tuple(tasks)
        names = [t.name for t in self.tasks]
        later = [(i, names.index(t.after)) for i, t in enumerate(self.tasks)
                 if t.after is not None and not joint]
        self.register_buffer("later", torch.tensor([t for t, _ in later], dtype=torch.long),
                             persistent=False)
        self.register_buffer("earlier", torch.tensor([s for _, s in later], dtype=torch.long),
                             persistent=False)
        kinds = [t.kind for t in self.tasks]
        # Single-logit tasks of one kind are computed together: one call for all of them.
        for kind in ("binary", "regression"):
            idx = [i for i, k in enumerate(kinds) if k == kind]
            self.register_buffer(f"{kind}_tasks", torch.tensor(idx, dtype=torch.long),
                                 persistent=False)
            self.register_buffer(f"{kind}_cols", torch.tensor(
                [slices[i].start for i in idx], dtype=torch.long), persistent=False)
        self.multiclass = [(i, slices[i]) for i, k in enumerate(kinds) if k == "multiclass"]
        # every task of one single-logit kind, logits in task order: no index ops needed
        self.one_kind = kinds[0] if len(set(kinds)) == 1 and kinds[0] != "multiclass" else None
        self.register_buffer("task_weights", torch.tensor([t.weight for t in self.tasks]),
                             persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        numerator, denominator = self.parts(logits, labels, weights)
        return numerator / safe_denominator(denominator)

    def parts(self, logits: torch.Tensor, labels: torch.Tensor,
              weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Numerator sum_i m_it w_i l_it and denominator sum_i m_it w_i per task, each (T,).

        Data-parallel training sums the denominators over ranks so that every rank's share
        of the loss is normalised by the global batch, which makes it exact.
        """
        mask = labels == labels  # (B, T) m_it: the label is not NaN
        if self.later.numel():  # conditional funnel tasks: only where the earlier step happened
            mask = mask.clone()
            mask[:, self.later] &= labels[:, self.earlier] == 1
        y = torch.nan_to_num(labels, nan=0.0)  # finite everywhere; masked rows never count
        if self.one_kind == "binary":
            per_row = F.binary_cross_entropy_with_logits(logits, y, reduction="none")  # (B, T)
        elif self.one_kind == "regression":
            per_row = (logits - y).square()
        else:
            per_row = self._mixed_kinds(logits, y)
        w = mask.to(logits.dtype)  # m_it
        if weights is not None:
            w = w * weights.unsqueeze(1)  # m_it w_i
        return (w * per_row).sum(0), w.sum(0)

    def _mixed_kinds(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-row losses l_it (B, T) when the tasks are of several kinds (or multiclass)."""
        per_row = torch.zeros_like(y)  # (B, T) loss l_it
        if self.binary_tasks.numel():
            per_row[:, self.binary_tasks] = F.binary_cross_entropy_with_logits(
                logits[:, self.binary_cols], y[:, self.binary_tasks], reduction="none")
        if self.regression_tasks.numel():
            per_row[:, self.regression_tasks] = (
                logits[:, self.regression_cols] - y[:, self.regression_tasks]).square()
        for t, cols in self.multiclass:
            per_row[:, t] = F.cross_entropy(logits[:, cols], y[:, t].long(), reduction="none")
        return per_row

    def combine(self, task_losses: torch.Tensor) -> torch.Tensor:
        """The objective sum_t lambda_t L_t from per-task losses (T,)."""
        return (self.task_weights * task_losses).sum()


def safe_denominator(total: torch.Tensor) -> torch.Tensor:
    """L_t = numerator / total with an all-missing batch giving 0 / tiny = 0, never NaN
    (totals are sums of non-negative weights: only 0 and denormals change)."""
    return total.clamp_min(torch.finfo(total.dtype).tiny)
