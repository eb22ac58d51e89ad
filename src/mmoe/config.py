"""Frozen configuration objects: what a task is, what the inputs are, how a model is shaped
and how it is trained. Everything here is plain data (JSON round-trips via ``to_dict`` /
``from_dict``) and validated once, in ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal

from . import _checks

TaskKind = Literal["binary", "regression", "multiclass"]
TASK_KINDS: tuple[str, ...] = ("binary", "regression", "multiclass")
LOSS_WEIGHTINGS: tuple[str, ...] = ("static", "uncertainty", "gradnorm", "pcgrad")
ON_NONFINITE: tuple[str, ...] = ("stop", "skip")
MAX_SEED = 2**32 - 1
MAX_THREADS = 4096


def shown(text: Any) -> str:
    """``text`` for a one-line message.

    Args:
        text: a name from the user (a key, a column, a task).

    Returns:
        ``text`` as it is when printable, else with its line breaks and control characters
        escaped.

    Example:
        >>> shown("income"), shown("a\\nb")
        ('income', 'a\\\\nb')
    """
    text = str(text)
    return text if text.isprintable() else repr(text)[1:-1]


def _number(value: Any, name: str, low: float = 0.0, high: float = math.inf,
            high_open: bool = False, low_open: bool = False) -> float:
    """``value`` if it is a finite number (not a bool) in the range, else fail naming it."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        rule = (f"> {low:g}" if low_open else f">= {low:g}") if high == math.inf \
            else f"in {lo}{low:g}, {high:g}{hi}"
        _checks.fail(f"{name} must be a finite number {rule}, got {value!r}")
    return value


def _flag(value: Any, name: str) -> bool:
    """``value`` if it is a bool, else fail naming it."""
    _checks.check(isinstance(value, bool), f"{name} must be true or false, got {value!r}")
    return value


def _text(value: Any, name: str) -> str:
    """``value`` if it is a non-empty string, else fail naming it."""
    _checks.check(isinstance(value, str) and value != "",
                  f"{name} must be a non-empty string, got {value!r}")
    return value


def _int_range(value: Any, name: str, low: int, high: int) -> int:
    """``value`` as an int if it is an integer (numpy's too, not a bool) in [low, high], else
    fail naming it."""
    _checks.check(isinstance(value, numbers.Integral) and not isinstance(value, bool)
                  and low <= value <= high,
                  f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _units(value: Any, name: str, allow_empty: bool = False) -> tuple[int, ...]:
    """Layer widths: a list or tuple of positive ints."""
    _checks.check(isinstance(value, list | tuple), f"{name} must be a list of layer widths "
                  f"(positive integers, e.g. [32, 16]), got {value!r}")
    return _checks.units(value, name, allow_empty=allow_empty)


def _to_tuples(value: Any) -> Any:
    """JSON gives lists; configs hold tuples (hashable, immutable)."""
    if isinstance(value, list):
        return tuple(_to_tuples(v) for v in value)
    return value


def _scalar(value: Any) -> bool:
    """A label value: a string, a bool or a finite number (numpy's too)."""
    return isinstance(value, str | bool | numbers.Integral) or (
        isinstance(value, numbers.Real) and math.isfinite(value))


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of this config."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Inverse of :meth:`to_dict`; unknown or missing keys are an error naming the key."""
        _checks.check(isinstance(data, dict), f"{cls.__name__} needs a table of settings, got "
                      f"{type(data).__name__}")
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(map(str, set(data) - names))
        _checks.check(not unknown, f"{cls.__name__}: unknown field(s) "
                      f"{', '.join(map(shown, unknown))}")
        missing = [f.name for f in fields(cls)  # type: ignore[arg-type]
                   if f.default is MISSING and f.default_factory is MISSING
                   and f.name not in data]
        _checks.check(not missing, f"{cls.__name__}: missing field {', '.join(missing)}")
        return cls(**{k: _to_tuples(v) for k, v in data.items()})


@dataclass(frozen=True)
class TaskSpec(_Serializable):
    """One prediction task.

    Args:
        name: task name used in outputs, logs and files.
        kind: ``binary`` (BCE on one logit), ``regression`` (MSE on one output) or
            ``multiclass`` (cross-entropy over ``len(classes)`` logits).
        column: label column in the data (defaults to ``name``).
        classes: multiclass: the class labels, in logit order (empty: learnt from the
            training data by the encoder). Binary: ``(negative, positive)``, set by the encoder.
        positive: binary: the label value counted as the positive class (else 1/true).
        weight: the task's weight in the summed loss.

    Example:
        >>> TaskSpec("income", "binary", column="income_50k", positive="50000+.").out_dim
        1
    """

    name: str
    kind: TaskKind = "binary"
    column: str | None = None
    classes: tuple[Any, ...] = ()
    positive: Any = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        _checks.check(isinstance(self.name, str) and self.name != "" and self.name.isprintable(),
                      f"task name must be a non-empty printable string, got {self.name!r}")
        where = f"task '{self.name}'"
        _checks.check(isinstance(self.kind, str), f"{where}: kind must be one of "
                      f"{', '.join(TASK_KINDS)}; got {self.kind!r}")
        _checks.one_of(self.kind, TASK_KINDS, f"{where}: kind")
        if self.column is None:
            object.__setattr__(self, "column", self.name)
        _text(self.column, f"{where}: column")
        _checks.check(isinstance(self.classes, list | tuple)
                      and all(_scalar(c) for c in self.classes),
                      f"{where}: classes must be a list of strings or numbers, got "
                      f"{self.classes!r}")
        object.__setattr__(self, "classes", tuple(self.classes))
        _checks.check(self.positive is None or _scalar(self.positive),
                      f"{where}: positive must be a string or a number, got {self.positive!r}")
        _number(self.weight, f"{where}: weight")
        if self.kind == "multiclass" and self.classes:  # empty: learnt from the training data
            _checks.check(len(set(self.classes)) == len(self.classes) >= 2,
                          f"task '{self.name}': a multiclass task needs at least 2 distinct "
                          f"classes, got {list(self.classes)}")

    @property
    def out_dim(self) -> int:
        """Number of logits the task's tower produces."""
        if self.kind != "multiclass":
            return 1
        _checks.check(bool(self.classes), f"task '{self.name}': multiclass classes are not known "
                      "yet; fit an encoder on the training data or pass classes=(...)")
        return len(self.classes)


@dataclass(frozen=True)
class InputSpec(_Serializable):
    """The model's input columns, as sizes (models never see DataFrames).

    Args:
        numeric: names of the numeric input columns (already standardised by the data layer).
        categorical: ``(name, cardinality)`` per categorical column; index 0 is reserved for
            out-of-vocabulary and missing values, so cardinality counts it.
        embedding_dim: width of each categorical column's embedding.

    Example:
        >>> InputSpec.dense(100).width
        100
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[tuple[str, int], ...] = ()
    embedding_dim: int = 8

    def __post_init__(self) -> None:
        _checks.check(isinstance(self.numeric, list | tuple)
                      and all(isinstance(n, str) for n in self.numeric),
                      f"numeric must be a list of column names, got {self.numeric!r}")
        object.__setattr__(self, "numeric", tuple(self.numeric))
        _checks.check(isinstance(self.categorical, list | tuple) and all(
            isinstance(c, list | tuple) and len(c) == 2 and isinstance(c[1], numbers.Integral)
            and not isinstance(c[1], bool) for c in self.categorical),
            f"categorical must be a list of (column, cardinality) pairs, got "
            f"{self.categorical!r}")
        object.__setattr__(self, "categorical",
                           tuple((str(n), int(c)) for n, c in self.categorical))
        _checks.positive_int(self.embedding_dim, "embedding_dim")
        _checks.check(self.numeric or self.categorical, "the model needs at least one input column")
        for name, card in self.categorical:
            _checks.check(card >= 1,
                          f"column '{shown(name)}': cardinality must be >= 1, got {card}")

    @classmethod
    def dense(cls, d: int, prefix: str = "x") -> InputSpec:
        """A plain dense input of ``d`` numeric features named ``x0 .. x{d-1}``."""
        _checks.positive_int(d, "input dimension")
        return cls(numeric=tuple(f"{prefix}{i}" for i in range(d)))

    @property
    def width(self) -> int:
        """Width d of the encoded input vector."""
        return len(self.numeric) + len(self.categorical) * self.embedding_dim


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
        options: model-specific extras (for example ``{"alpha": 1e-3}`` for L2-constrained);
            each model documents and validates its own.
        gate_dropout: gated models: in training, drop each expert's gate weight with this
            probability and renormalise (Zhao et al. 2019).
        gate_balance: gated models: coefficient of a load-balancing penalty, the squared
            coefficient of variation of each gate's batch-mean expert weights.
    """

    name: str = "mmoe"
    expert_units: tuple[int, ...] = (16,)
    num_experts: int = 8
    tower_units: tuple[int, ...] = (8,)
    gate_bias: bool = False
    dropout: float = 0.0
    batch_norm: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    gate_dropout: float = 0.0
    gate_balance: float = 0.0

    def __post_init__(self) -> None:
        _text(self.name, "name")
        object.__setattr__(self, "expert_units", _units(self.expert_units, "expert_units"))
        object.__setattr__(self, "tower_units",
                           _units(self.tower_units, "tower_units", allow_empty=True))
        _checks.positive_int(self.num_experts, "num_experts")
        _flag(self.gate_bias, "gate_bias")
        _number(self.dropout, "dropout", high=1.0, high_open=True)
        _flag(self.batch_norm, "batch_norm")
        _checks.check(isinstance(self.options, dict),
                      f"options must be a table of model-specific settings, got {self.options!r}")
        object.__setattr__(self, "options", dict(self.options))
        _number(self.gate_dropout, "gate_dropout", high=1.0, high_open=True)
        _number(self.gate_balance, "gate_balance")


@dataclass(frozen=True)
class TrainConfig(_Serializable):
    """How a model is trained.

    Args:
        epochs: passes over the training data.
        batch_size: rows per optimisation step.
        lr: Adam learning rate.
        weight_decay: Adam weight decay (L2 on all weights).
        seed: seeds initialisation, shuffling and dropout; CPU runs are bit-reproducible.
        monitor: task whose validation metric drives early stopping and best-model selection
            (default: the first task). Binary/multiclass use AUC/accuracy (higher is better),
            regression uses MSE (lower is better).
        patience: epochs without improvement before stopping (``None``: never stop early).
        restore_best: end with the weights of the best validation epoch.
        checkpoint_every: write a checkpoint every N steps (``None``: at each epoch end).
        threads: intra-op threads (``None``: 1 for models under a million parameters,
            whose matmuls are too small to split, else torch's setting).
        loss_weighting: how per-task losses become one objective (:mod:`mmoe.weighting`):
            ``static`` (``TaskSpec.weight``), ``uncertainty`` (Kendall et al. 2018),
            ``gradnorm`` (Chen et al. 2018) or ``pcgrad`` (Yu et al. 2020, a gradient rule).
        gradnorm_alpha: GradNorm's restoring-force exponent alpha.
        on_nonfinite: a step whose per-task loss or gradient norm is NaN/inf: ``stop`` raises
            (the last checkpoint stays the last good one), ``skip`` drops the step without
            updating weights and counts it in the history (``skipped_steps``).
        compile: train through ``torch.compile`` (inductor). Each process pays a compile
            (seconds to tens of seconds, once per batch shape); it can pay off on long runs of
            models whose steps are many small torch ops, not on the census MMoE, whose native
            kernels leave it nothing to fuse (0.95x eager: docs/benchmarks/census_throughput.md).
            Without a C++ compiler training stays eager, with a warning.
        stop_if_all_skipped: with ``on_nonfinite='skip'``, stop with ``NonFiniteError`` at
            the end of an epoch whose every step was skipped (the model learned nothing in
            it) instead of carrying on; ``mmoe train`` turns it on.
    """

    epochs: int = 10
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    monitor: str | None = None
    patience: int | None = None
    restore_best: bool = True
    checkpoint_every: int | None = None
    threads: int | None = None
    loss_weighting: str = "static"
    gradnorm_alpha: float = 1.5
    on_nonfinite: str = "stop"
    compile: bool = False
    stop_if_all_skipped: bool = False

    def __post_init__(self) -> None:
        _checks.positive_int(self.epochs, "epochs")
        _checks.positive_int(self.batch_size, "batch_size")
        _number(self.lr, "lr", low_open=True)
        _number(self.weight_decay, "weight_decay")
        object.__setattr__(self, "seed", _int_range(self.seed, "seed", 0, MAX_SEED))
        if self.monitor is not None:
            _text(self.monitor, "monitor")
        if self.patience is not None:
            _checks.positive_int(self.patience, "patience")
        _flag(self.restore_best, "restore_best")
        if self.checkpoint_every is not None:
            _checks.positive_int(self.checkpoint_every, "checkpoint_every")
        if self.threads is not None:
            object.__setattr__(self, "threads", _int_range(self.threads, "threads", 1,
                                                           MAX_THREADS))
        _checks.check(isinstance(self.loss_weighting, str), "loss_weighting must be one of "
                      f"{', '.join(LOSS_WEIGHTINGS)}; got {self.loss_weighting!r}")
        _checks.one_of(self.loss_weighting, LOSS_WEIGHTINGS, "loss_weighting")
        _number(self.gradnorm_alpha, "gradnorm_alpha")
        _checks.check(isinstance(self.on_nonfinite, str), "on_nonfinite must be one of "
                      f"{', '.join(ON_NONFINITE)}; got {self.on_nonfinite!r}")
        _checks.one_of(self.on_nonfinite, ON_NONFINITE, "on_nonfinite")
        _flag(self.compile, "compile")
        _flag(self.stop_if_all_skipped, "stop_if_all_skipped")
