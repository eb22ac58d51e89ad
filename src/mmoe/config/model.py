"""How a model is shaped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import _checks
from ._fields import _flag, _number, _Serializable, _text, _units


@dataclass(frozen=True)
class ModelConfig(_Serializable):
    """Shape of a model from the registry (see :func:`mmoe.models.available_models`).

    Args:
        name: registered model name (``single_task``, ``shared_bottom``, ``omoe``, ``mmoe``...).
        expert_units: hidden widths of each expert (MoE models) or of the shared bottom /
            per-task network (Shared-Bottom, Single-Task).
        num_experts: number of experts E (MoE models).
        tower_units: hidden widths of each task tower (may be empty: a linear head).
        gate_bias: add a bias to the gates (the paper's eq. 5 has none).
        dropout: dropout after each hidden layer of experts and towers.
        batch_norm: batch normalisation of the encoded input.
        hidden_norm: batch normalisation of every hidden layer of the MLPs (experts, shared
            bottoms, per-task networks, towers) before its ReLU, as torch-rechub's MLPs have
            it; the categorical embeddings then start at the lookup tables' small scale
            (:class:`mmoe.models.MultiTaskModel`; docs/recsys.md says why).
        options: model-specific extras (for example ``{"alpha": 1e-3}`` for L2-constrained);
            each model documents and validates its own.
        gate_dropout: gated models: in training, drop each expert's gate weight with this
            probability and renormalise (Zhao et al. 2019).
        gate_balance: gated models: coefficient of a load-balancing penalty, the squared
            coefficient of variation of each gate's batch-mean expert weights.
        wide: the lookup columns (hashed ids, sequences) also get a learnt bias per table row
            and per task, added to the task's logit (Wide & Deep's wide part;
            :class:`mmoe.nn.WideTerms`).
        cross: the input also holds the element-wise product of every two lookup columns of
            one width (a user's history times the candidate item; :class:`mmoe.nn.FeatureEncoder`).
    """

    name: str = "mmoe"
    expert_units: tuple[int, ...] = (16,)
    num_experts: int = 8
    tower_units: tuple[int, ...] = (8,)
    gate_bias: bool = False
    dropout: float = 0.0
    batch_norm: bool = False
    hidden_norm: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    gate_dropout: float = 0.0
    gate_balance: float = 0.0
    wide: bool = False
    cross: bool = False

    def __post_init__(self) -> None:
        _text(self.name, "name")
        object.__setattr__(self, "expert_units", _units(self.expert_units, "expert_units"))
        object.__setattr__(self, "tower_units",
                           _units(self.tower_units, "tower_units", allow_empty=True))
        _checks.positive_int(self.num_experts, "num_experts")
        _flag(self.gate_bias, "gate_bias")
        _number(self.dropout, "dropout", high=1.0, high_open=True)
        _flag(self.batch_norm, "batch_norm")
        _flag(self.hidden_norm, "hidden_norm")
        _checks.check(isinstance(self.options, dict),
                      f"options must be a table of model-specific settings, got {self.options!r}")
        object.__setattr__(self, "options", dict(self.options))
        _number(self.gate_dropout, "gate_dropout", high=1.0, high_open=True)
        _number(self.gate_balance, "gate_balance")
        _flag(self.wide, "wide")
        _flag(self.cross, "cross")

    @property
    def normalises_batches(self) -> bool:
        """Whether training statistics come from the batch (``batch_norm`` or
        ``hidden_norm``): a batch of one row cannot be trained on."""
        return self.batch_norm or self.hidden_norm
