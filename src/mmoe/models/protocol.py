"""What every backbone is: the module between the encoded input x (B, d) and the task towers.

A backbone returns what it computes, :class:`BackboneOut`: the towers' inputs h, the gate
weights where it has gates, and any auxiliary loss term of its own (L2-Constrained's parameter
tie). Nothing is stashed on a module to be read back later. It declares itself the rest that
other parts need: whether it has gates (``gated``), which experts each gate can see
(``gate_mask``), the experts' names (``expert_names``) and its last shared layer
(:meth:`Backbone.last_shared_layer`, for GradNorm).

A :class:`LinearInputBackbone` starts with stacked linear layers of x; the model may compute
those folded into the embedding lookups (:meth:`mmoe.nn.FeatureEncoder.fold_linear`) and hand
their outputs to :meth:`LinearInputBackbone.from_inputs`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..nn import StackedLinear, shared_input_linear


class BackboneOut(NamedTuple):
    """A backbone's output.

    Attributes:
        h: (T, B, k) one input per task tower.
        gates: (G, B, E) gate weights, or ``None`` for a backbone without gates.
        aux_loss: a scalar added to the training objective, or ``None``.
    """

    h: torch.Tensor
    gates: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None


class Backbone(nn.Module):
    """Base class of the backbones.

    Subclasses set ``out_features`` (k) and implement :meth:`forward`; gated ones set
    ``gated = True`` and may override ``gate_mask`` and ``expert_names``.
    """

    out_features: int
    #: the backbone has softmax gates (gate_dropout, gate_balance and gate health apply)
    gated: bool = False
    #: (G, E) bool, the experts each gate can see; ``None``: all of them
    gate_mask: torch.Tensor | None = None
    #: one name per expert (gate-health reports); ``None``: ``e0, e1, ...``
    expert_names: list[str] | None = None
    #: the tasks share layers of the backbone (False: a network per task, as Single-Task;
    #: the default loss weighting is then static, :meth:`TrainConfig.weighting_for`)
    shares_layers: bool = True

    def named_experts(self, tasks: list[str]) -> list[str] | None:
        """One name per expert for reports and figures, knowing the tasks' names (a
        backbone with task-owned experts names them after their task); by default
        ``expert_names``."""
        return self.expert_names

    def forward(self, x: torch.Tensor) -> BackboneOut:
        """x (B, d) -> :class:`BackboneOut`."""
        raise NotImplementedError

    def last_shared_layer(self) -> list[nn.Parameter]:
        """The weights of the last layer the tasks share (GradNorm's W); by default every
        trainable parameter of the backbone."""
        return [p for p in self.parameters() if p.requires_grad]


class LinearInputBackbone(Backbone):
    """A backbone whose first step is stacked linear layers that all read x.

    ``forward(x)`` is ``from_inputs(shared_input_linear(x, input_layers()))``; the model may
    instead compute those layers' outputs folded into the embedding lookups.
    """

    def input_layers(self) -> list[StackedLinear]:
        """The stacked layers applied to x first."""
        raise NotImplementedError

    def from_inputs(self, first: list[torch.Tensor]) -> BackboneOut:
        """The rest of the backbone, from the input layers' outputs (G_l, B, O_l)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> BackboneOut:
        return self.from_inputs(shared_input_linear(x, self.input_layers()))
