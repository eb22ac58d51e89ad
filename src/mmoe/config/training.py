"""How a model is trained."""

from __future__ import annotations

from dataclasses import dataclass

from .. import _checks
from ._fields import (
    LOSS_WEIGHTINGS,
    MAX_SEED,
    MAX_THREADS,
    ON_NONFINITE,
    _flag,
    _int_range,
    _number,
    _Serializable,
    _text,
)


@dataclass(frozen=True)
class TrainConfig(_Serializable):
    """How a model is trained.

    Args:
        epochs: passes over the training data.
        batch_size: rows per optimisation step.
        lr: Adam learning rate.
        weight_decay: Adam weight decay (L2 on all weights).
        seed: seeds initialisation, shuffling and dropout; CPU runs are bit-reproducible.
        monitor: what drives early stopping and best-model selection: a task (default: the
            first) judged by its primary metric (binary AUC, multiclass accuracy: higher is
            better; regression MSE: lower is better), or ``METRIC:TASK`` for another of its
            validation metrics, e.g. ``gauc:click`` (with a group-by column).
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
