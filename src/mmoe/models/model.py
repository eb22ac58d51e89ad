"""MultiTaskModel: encoder -> backbone -> towers, for every registered model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .. import _checks
from ..config import InputSpec, ModelConfig, TaskSpec
from ..nn import EncodedInput, FeatureEncoder, Gates, Towers, load_balance
from .registry import get_entry


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
        gates = [m for m in self.backbone.modules() if isinstance(m, Gates)]
        _checks.check(bool(gates) or (config.gate_dropout == 0 and config.gate_balance == 0),
                      f"model '{config.name}' has no gates; gate_dropout and gate_balance apply "
                      "only to gated models (omoe, mmoe, cgc, ple, ...)")
        for gate in gates:
            gate.dropout = config.gate_dropout
        self._last_gates: torch.Tensor | None = None  # for the gate_balance penalty
        self.towers = Towers(len(tasks), self.backbone.out_features, config.tower_units,
                             tuple(t.out_dim for t in tasks), config.dropout)

    @property
    def task_slices(self) -> tuple[slice, ...]:
        """Column slice of each task's logits in the (B, O) output."""
        return self.towers.slices

    def forward_with_gates(self, numeric: torch.Tensor | None,
                           categorical: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, O) and gate weights (G, B, E), or ``None`` for models without gates."""
        h, gates = self.backbone(self._encode(numeric, categorical))  # (T, B, k), (G, B, E) | None
        if self.training and self.config.gate_balance > 0:
            self._last_gates = gates
        return self.towers(h), gates  # (B, O)

    def forward(self, numeric: torch.Tensor | None,
                categorical: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_with_gates(numeric, categorical)[0]

    def _encode(self, numeric: torch.Tensor | None, categorical: torch.Tensor | None
                ) -> torch.Tensor | EncodedInput:
        """x (B, d); unmaterialised while training a backbone that folds its first layer
        into the embedding lookups (same values; evaluation and export stay plain)."""
        if (self.training and categorical is not None and isinstance(self.norm, nn.Identity)
                and getattr(self.backbone, "accepts_encoded", False)
                and self.encoder.folds(categorical.shape[0])):
            return EncodedInput(self.encoder, numeric, categorical)
        return self.norm(self.encoder(numeric, categorical))  # (B, d)

    @property
    def gate_mask(self) -> torch.Tensor | None:
        """(G, E) bool: the experts each gate can see (CGC/PLE), or ``None`` (all of them)."""
        return getattr(self.backbone, "gate_mask", None)

    def penalty(self) -> torch.Tensor | None:
        """Extra loss term of the model itself (e.g. L2-constrained's alpha*||θ1-θ2||²), plus
        ``gate_balance`` times the load-balancing penalty of the last training batch's gates."""
        fn = getattr(self.backbone, "penalty", None)
        out = fn() if fn is not None else None
        if self._last_gates is not None:
            balance = self.config.gate_balance * load_balance(self._last_gates, self.gate_mask)
            self._last_gates = None
            out = balance if out is None else out + balance
        return out

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
