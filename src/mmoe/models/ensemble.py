"""A seed ensemble: K models of one architecture trained from K seeds, predicting together.

Averaging independently trained networks is the cheapest reliable gain on tabular data
(Gorishniy et al., 2021, report ensembles of 5 ahead of every single model they tune); it
costs K times the training and prediction time. The ensemble has the interface of a
:class:`~mmoe.models.MultiTaskModel` (tasks, task slices, outputs, describe), so prediction,
evaluation, export and serving take it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .. import _checks
from ..config import InputSpec, ModelConfig, TaskSpec
from .model import ModelOutput, MultiTaskModel


class SeedEnsemble(nn.Module):
    """K members of one architecture; the logits are the mean of the members' logits.

    The mean of logits (not of probabilities) keeps the model's contract (logits out, no
    sigmoid inside) and is what an exported graph computes; for a binary task it is the
    logit of the members' normalised geometric-mean odds, for regression the mean prediction.

    Args:
        members: the trained members (same config, inputs and tasks).

    Shapes:
        as :class:`~mmoe.models.MultiTaskModel`: inputs -> (B, O) logits. With
        ``parts=True``: the mean logits, the first member's gates (each member has its own
        experts, so gates do not average) and no auxiliary loss.

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> tasks = [TaskSpec("y", "regression")]
        >>> a, b = build_model("mmoe", 3, tasks), build_model("mmoe", 3, tasks)
        >>> x = torch.randn(4, 3)
        >>> bool(torch.allclose(SeedEnsemble([a, b]).eval()(x), (a(x) + b(x)) / 2))
        True
    """

    def __init__(self, members: Sequence[MultiTaskModel]):
        super().__init__()
        members = list(members)
        _checks.check(len(members) >= 2, f"an ensemble needs at least 2 members, got "
                      f"{len(members)}")
        first = members[0].describe()
        _checks.check(all(m.describe() == first for m in members[1:]),
                      "ensemble members must share their config, inputs and tasks")
        self.members = nn.ModuleList(members)

    # the members' common description, read by prediction, export and the trainer
    @property
    def config(self) -> ModelConfig:
        return self.members[0].config

    @property
    def inputs(self) -> InputSpec:
        return self.members[0].inputs

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        return self.members[0].tasks

    @property
    def task_slices(self) -> tuple[slice, ...]:
        return self.members[0].task_slices

    @property
    def encoder(self) -> nn.Module:
        return self.members[0].encoder

    @property
    def backbone(self) -> nn.Module:
        return self.members[0].backbone

    @property
    def funnel(self) -> nn.Module:
        return self.members[0].funnel

    def outputs(self, logits: Any, labels: Any = None) -> Any:
        """As :meth:`MultiTaskModel.outputs` (the members share their heads)."""
        return self.members[0].outputs(logits, labels)

    def forward(self, numeric: torch.Tensor | None, categorical: torch.Tensor | None = None,
                ids: torch.Tensor | None = None, *, parts: bool = False
                ) -> torch.Tensor | ModelOutput:
        outs = [m(numeric, categorical, ids, parts=parts) for m in self.members]
        logits = [o if not parts else o.logits for o in outs]  # K of (B, O)
        # added one by one: a row's mean does not depend on its place in the batch (a
        # reduction over a stacked (K, B, O) does, in its last bits)
        mean = sum(logits[1:], logits[0]) / len(logits)
        return mean if not parts else ModelOutput(mean, outs[0].gates, None)

    def describe(self) -> dict[str, Any]:
        """JSON description: the members' common one and their number."""
        return {**self.members[0].describe(), "members": len(self.members)}
