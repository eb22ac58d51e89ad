"""How a model is shaped."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
        dropout: dropout after each hidden layer of experts and towers; ``None``: chosen
            from the training rows (:meth:`for_rows`).
        batch_norm: batch normalisation of the encoded input.
        hidden_norm: batch normalisation of every hidden layer of the MLPs (experts, shared
            bottoms, per-task networks, towers) before its ReLU, as torch-rechub's MLPs have
            it; the categorical embeddings then start at the lookup tables' small scale
            (:class:`mmoe.models.MultiTaskModel`; docs/recsys.md says why).
        options: model-specific extras (for example ``{"alpha": 1e-3}`` for L2-constrained);
            each model documents and validates its own.
        gate_dropout: gated models: in training, drop each expert's gate weight with this
            probability and renormalise (Zhao et al. 2019); ``None``: chosen from the
            training rows (:meth:`for_rows`).
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
    dropout: float | None = None
    batch_norm: bool = False
    hidden_norm: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    gate_dropout: float | None = None
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
        if self.dropout is not None:
            _number(self.dropout, "dropout", high=1.0, high_open=True)
        _flag(self.batch_norm, "batch_norm")
        _flag(self.hidden_norm, "hidden_norm")
        _checks.check(isinstance(self.options, dict),
                      f"options must be a table of model-specific settings, got {self.options!r}")
        object.__setattr__(self, "options", dict(self.options))
        if self.gate_dropout is not None:
            _number(self.gate_dropout, "gate_dropout", high=1.0, high_open=True)
        _number(self.gate_balance, "gate_balance")
        _flag(self.wide, "wide")
        _flag(self.cross, "cross")

    @property
    def normalises_batches(self) -> bool:
        """Whether training statistics come from the batch (``batch_norm`` or
        ``hidden_norm``): a batch of one row cannot be trained on."""
        return self.batch_norm or self.hidden_norm

    def for_rows(self, rows: int | None, gated: bool) -> ModelConfig:
        """This config with the ``None`` dropout and gate dropout chosen for ``rows`` training
        rows (``None``: unknown, as for a CSV stream; ``gated``: the model has gates):
        :data:`MEDIUM_DROPOUT` in the experts and towers and on the gates for a table of more
        than :data:`MEDIUM_ROWS` ``[0]`` and at most ``[1]`` rows, none otherwise.

        On such a table a model passes over every row many times (the default 4,000 steps:
        63 epochs of ``diamonds``' 32,364 rows, 21 of census's 199,523) and MMoE, with several
        experts' weights to fit where a network per task has one, overfits first (``diamonds``:
        kept epoch 41 of 63, the single-task MLP's 56). On the tabular suite's two such tables
        (three splits, two network seeds: 36 task-runs) the two dropouts raised MMoE's mean
        validation score by +0.0009 and +0.0017 and put it at or above the single-task MLP
        (with dropout too) on 29 task-runs instead of 17; on Census-Income (two seeds) income
        AUC rose by +0.0011 and +0.0003 on validation (docs/tabular.md). On the 1M-row
        recommender log it moved the validation numbers both ways (purchase GAUC -0.005), so
        the band stops below it; on tables of at most 10,000 rows, which get a seed ensemble
        and learnt task weights (:meth:`~mmoe.config.TrainConfig.members`), it did not help
        MMoE.

        Example:
            >>> [(c.dropout, c.gate_dropout) for c in (
            ...     ModelConfig().for_rows(r, gated=True) for r in (10_000, 30_000, 10**6, None))]
            [(0.0, 0.0), (0.1, 0.1), (0.0, 0.0), (0.0, 0.0)]
            >>> ModelConfig("single_task").for_rows(30_000, gated=False).gate_dropout
            0.0
            >>> ModelConfig(dropout=0.3).for_rows(30_000, gated=True).dropout
            0.3
        """
        low, high = MEDIUM_ROWS
        p = MEDIUM_DROPOUT if rows is not None and low < rows <= high else 0.0
        return replace(self, dropout=p if self.dropout is None else self.dropout,
                       gate_dropout=(p if gated else 0.0) if self.gate_dropout is None
                       else self.gate_dropout)


#: a table of more than MEDIUM_ROWS[0] and at most MEDIUM_ROWS[1] training rows gets dropout
#: MEDIUM_DROPOUT in its experts and towers and on its gates by default (ModelConfig.for_rows)
MEDIUM_ROWS = (10_000, 500_000)
MEDIUM_DROPOUT = 0.1
