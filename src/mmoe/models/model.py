"""MultiTaskModel: encoder -> backbone -> towers, for every registered model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from .. import _checks
from ..config import InputSpec, ModelConfig, TaskSpec
from ..nn import FeatureEncoder, Towers, load_balance
from .protocol import BackboneOut, LinearInputBackbone
from .registry import get_entry


class ModelOutput(NamedTuple):
    """What ``model(..., parts=True)`` returns.

    Attributes:
        logits: (B, O) every task's logits side by side.
        gates: (G, B, E) gate weights, or ``None`` for a model without gates.
        aux_loss: the model's own term of the training objective (the backbone's auxiliary
            loss plus ``gate_balance`` times the gates' load-balancing penalty), or ``None``.
    """

    logits: torch.Tensor
    gates: torch.Tensor | None
    aux_loss: torch.Tensor | None


class MultiTaskModel(nn.Module):
    """A multi-task model: ``features --encoder--> x --backbone--> h --towers--> logits``.

    Args:
        config: the model's shape; ``config.name`` picks the backbone from the registry.
        inputs: the input columns (sizes only).
        tasks: the tasks; their order is the task axis of every output.

    Shapes:
        numeric (B, n_num) float, categorical (B, n_cat) long (or ``None``)
        -> logits (B, O), O = sum of the tasks' ``out_dim`` (= T without multiclass tasks).
        Task t's logits are ``logits[:, model.task_slices[t]]``. No sigmoid/softmax inside.
        With ``parts=True`` the forward returns a :class:`ModelOutput` (logits, gates and the
        auxiliary loss) instead.

    Example:
        >>> m = MultiTaskModel(ModelConfig("mmoe"), InputSpec.dense(10),
        ...                    (TaskSpec("a", "binary"), TaskSpec("b", "regression")))
        >>> m(torch.randn(4, 10)).shape
        torch.Size([4, 2])
    """

    def __init__(self, config: ModelConfig, inputs: InputSpec, tasks: Sequence[TaskSpec]):
        super().__init__()
        tasks = tuple(tasks)
        _checks.check(len(tasks) >= 1, "a model needs at least one task")
        names = [t.name for t in tasks]
        _checks.check(len(set(names)) == len(names), f"task names must be unique, got {names}")
        entry = get_entry(config.name)
        self.config, self.inputs, self.tasks = config, inputs, tasks
        self.encoder = FeatureEncoder(len(inputs.numeric),
                                      tuple(c for _, c in inputs.categorical),
                                      inputs.embedding_dim)
        width = self.encoder.out_features
        self.norm = nn.BatchNorm1d(width) if config.batch_norm else nn.Identity()
        extra = {"inputs": inputs} if entry.takes_inputs else {}
        self.backbone = entry.build(config, width, len(tasks), **extra)
        _checks.check(self.backbone.gated or (config.gate_dropout == 0
                                              and config.gate_balance == 0),
                      f"model '{config.name}' has no gates; gate_dropout and gate_balance apply "
                      "only to gated models (omoe, mmoe, cgc, ple, ...)")
        # the first layer may be folded into the embedding lookups (same values) when the
        # backbone starts with linear layers of x and no batch norm sits between
        self.folds_first_layer = (isinstance(self.backbone, LinearInputBackbone)
                                  and isinstance(self.norm, nn.Identity))
        self.towers = Towers(len(tasks), self.backbone.out_features, config.tower_units,
                             tuple(t.out_dim for t in tasks), config.dropout)

    @property
    def task_slices(self) -> tuple[slice, ...]:
        """Column slice of each task's logits in the (B, O) output."""
        return self.towers.slices

    def forward(self, numeric: torch.Tensor | None, categorical: torch.Tensor | None = None,
                *, parts: bool = False) -> torch.Tensor | ModelOutput:
        out = self._backbone(numeric, categorical)  # h (T, B, k), gates (G, B, E) | None
        logits = self.towers(out.h)  # (B, O)
        if not parts:
            return logits
        aux = out.aux_loss
        if self.training and self.config.gate_balance > 0:
            balance = self.config.gate_balance * load_balance(out.gates, self.backbone.gate_mask)
            aux = balance if aux is None else aux + balance
        return ModelOutput(logits, out.gates, aux)

    def _backbone(self, numeric: torch.Tensor | None, categorical: torch.Tensor | None
                  ) -> BackboneOut:
        """The backbone on x = norm(encoder(inputs)); while training a backbone that starts
        with linear layers, those are folded into the embedding lookups when that is cheaper
        (same values; evaluation and export stay plain)."""
        if (self.training and self.folds_first_layer and categorical is not None
                and self.encoder.folds(categorical.shape[0])):
            layers = self.backbone.input_layers()
            first = self.encoder.fold_linear(numeric, categorical,
                                             [layer.weight for layer in layers],
                                             [layer.bias for layer in layers])
            return self.backbone.from_inputs(first)
        return self.backbone(self.norm(self.encoder(numeric, categorical)))  # x (B, d)

    def shared_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters every task reads: encoder, input normalisation and
        backbone (the towers are each task's own)."""
        return [p for part in (self.encoder, self.norm, self.backbone)
                for p in part.parameters() if p.requires_grad]

    def last_shared_layer(self) -> list[nn.Parameter]:
        """The backbone's last shared layer (GradNorm's W), as the backbone declares it."""
        return self.backbone.last_shared_layer()

    def describe(self) -> dict[str, Any]:
        """JSON description sufficient to rebuild the model (see :func:`model_from_description`)."""
        return {"config": self.config.to_dict(), "inputs": self.inputs.to_dict(),
                "tasks": [t.to_dict() for t in self.tasks]}


def model_from_description(desc: dict[str, Any]) -> MultiTaskModel:
    """Rebuild an (untrained) model from :meth:`MultiTaskModel.describe`'s output."""
    return MultiTaskModel(ModelConfig.from_dict(desc["config"]),
                          InputSpec.from_dict(desc["inputs"]),
                          tuple(TaskSpec.from_dict(t) for t in desc["tasks"]))


def build_model(model: str | ModelConfig, inputs: InputSpec | int,
                tasks: Sequence[TaskSpec], **overrides: Any) -> MultiTaskModel:
    """Build a registered model by name.

    Args:
        model: a registered name (``"mmoe"``) or a full :class:`ModelConfig`.
        inputs: an :class:`InputSpec`, or an int d for a plain dense input of width d.
        tasks: the tasks.
        **overrides: ModelConfig fields, e.g. ``num_experts=4, expert_units=(32,)``.

    Returns:
        The model, freshly initialised from torch's global RNG.

    Example:
        >>> tasks = [TaskSpec("y1", "regression"), TaskSpec("y2", "regression")]
        >>> m = build_model("omoe", 20, tasks, num_experts=4)
        >>> m(torch.randn(3, 20)).shape
        torch.Size([3, 2])
    """
    if isinstance(model, str):
        config = ModelConfig(name=model, **overrides)
    else:
        config = ModelConfig.from_dict({**model.to_dict(), **overrides})
    spec = InputSpec.dense(inputs) if isinstance(inputs, int) else inputs
    return MultiTaskModel(config, spec, tasks)
