"""How a model is trained.

The defaults are the ones `mmoe train`, a config file and the estimator use, chosen by
measurement on the validation splits of the tabular suite (benchmarks/tabular_suite.py,
docs/tabular.md): epochs and batch size from the number of training rows
(:meth:`TrainConfig.for_rows`), a linear warm-up then a cosine decay of the learning rate,
and early stopping on the combined validation score (:func:`mmoe.metrics.combined_score`)
with the best epoch's weights restored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

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
        epochs: passes over the training data (``None``: from the number of rows, see
            :meth:`for_rows`).
        batch_size: rows per optimisation step (``None``: from the number of rows).
        lr: Adam learning rate (the peak of the schedule).
        lr_schedule: ``cosine``: a linear warm-up over the first ``warmup`` share of the
            planned steps, then a cosine decay to zero at the last planned step;
            ``constant``: ``lr`` throughout.
        warmup: share of the planned steps spent warming up (``cosine`` only).
        weight_decay: Adam weight decay (L2 on all weights).
        seed: seeds initialisation, shuffling and dropout; CPU runs are bit-reproducible.
        monitor: what drives early stopping and best-model selection: ``None``, the
            combined score (the mean over tasks of each task's skill, so that tasks weigh
            alike: :func:`mmoe.metrics.combined_score`); a task judged by its primary metric
            (binary AUC, multiclass accuracy: higher is better; regression MSE: lower is
            better); or ``METRIC:TASK`` for another of its validation metrics, e.g.
            ``gauc:click`` (with a group-by column).
        patience: epochs without improvement before stopping (``None``: never stop early).
        restore_best: end with the weights of the best validation epoch.
        checkpoint_every: write a checkpoint every N steps (``None``: at each epoch end).
        threads: intra-op threads (``None``: 1 for models under a million parameters,
            whose matmuls are too small to split, else torch's setting).
        loss_weighting: how per-task losses become one objective (:mod:`mmoe.weighting`):
            ``static`` (``TaskSpec.weight``), ``uncertainty`` (Kendall et al. 2018),
            ``gradnorm`` (Chen et al. 2018) or ``pcgrad`` (Yu et al. 2020, a gradient rule);
            ``None``: chosen from the training rows (:meth:`weighting_for`: ``uncertainty``
            on a small table, else ``static``).
        gradnorm_alpha: GradNorm's restoring-force exponent alpha.
        on_nonfinite: a step whose per-task loss or gradient norm is NaN/inf: ``stop`` raises
            (the last checkpoint stays the last good one), ``skip`` drops the step without
            updating weights and counts it in the history (``skipped_steps``).
        compile: train through ``torch.compile`` (inductor). Each process pays a compile
            (seconds to tens of seconds, once per batch shape); it can pay off on long runs of
            models whose steps are many small torch ops, not on the census MMoE, whose native
            kernels leave it nothing to fuse (0.95x eager: docs/benchmarks/census_throughput.md).
            Without a C++ compiler training stays eager, with a warning.
        precision: ``fp32``; ``bf16`` or ``fp16``: the forward pass under autocast (matmuls in
            half precision, the loss and the metrics in float32), with ``fp16`` a gradient
            scaler (a step whose scaled gradients overflow is skipped and the scale halved).
        stop_if_all_skipped: with ``on_nonfinite='skip'``, stop with ``NonFiniteError`` at
            the end of an epoch whose every step was skipped (the model learned nothing in
            it) instead of carrying on; ``mmoe train`` turns it on.
        table_optimizer: how the lookup tables (hashed ids, sequences: the rows updated
            sparsely) learn; a step moves only the rows its batch used either way.
            ``adagrad`` (the default): row-wise Adagrad with a starting accumulator
            (:class:`mmoe.train.optim.RowAdagrad`: one float of state per row), whose first
            steps on a row are in proportion to its gradient. ``adam``: lazy Adam (torch's
            ``SparseAdam``) at ``table_lr_scale`` x ``lr``, two moments per table cell (the
            default before): Adam divides each cell's step by its gradient's running size, so
            a row seen once or twice takes a full-size step in the sign of a gradient that is
            mostly noise. Chosen on the generated funnel's validation split (1M impressions,
            MMoE, two seeds: click AUC +0.005, purchase AUC +0.006 and GAUC +0.005 over lazy
            Adam at 10 x lr; docs/recsys.md).
        table_lr: with ``table_optimizer = "adagrad"``, the tables' learning rate (a row's
            first steps move it by ``table_lr`` / sqrt(10) times its gradient summed over the
            batch's rows, so the rate does not change with the batch size), following the
            schedule of ``lr``.
        table_lr_scale: with ``table_optimizer = "adam"``, the tables' learning rate as a
            multiple of ``lr``. Lazy Adam moves a row only on the steps whose batch uses it,
            while dense Adam keeps moving it along its decaying momentum, about 1/(1 - β1) =
            10 times as far in all; a rare id, seen a few times, is learnt too slowly at
            ``lr`` (10 was chosen on the generated funnel's validation split: purchase GAUC
            +0.005, click AUC +0.004 over 1, 3 in between; docs/recsys.md).
        ensemble: train this many models of the same settings from seeds ``seed``,
            ``seed + 1``, ... and predict with the mean of their logits
            (:class:`mmoe.models.ensemble.SeedEnsemble`; ``mmoe train`` and the estimator);
            K times the training and prediction time. ``None``: from the number of rows
            (:meth:`members`: five for a table of at most 10,000 training rows, else one).
    """

    epochs: int | None = None
    batch_size: int | None = None
    lr: float = 3e-3
    lr_schedule: str = "cosine"
    warmup: float = 0.05
    weight_decay: float = 0.0
    seed: int = 0
    monitor: str | None = None
    patience: int | None = None
    restore_best: bool = True
    checkpoint_every: int | None = None
    threads: int | None = None
    loss_weighting: str | None = None
    gradnorm_alpha: float = 1.5
    on_nonfinite: str = "stop"
    compile: bool = False
    precision: str = "fp32"
    stop_if_all_skipped: bool = False
    table_optimizer: str = "adagrad"
    table_lr: float = 3.0
    table_lr_scale: float = 10.0
    ensemble: int | None = None

    def __post_init__(self) -> None:
        if self.epochs is not None:
            _checks.positive_int(self.epochs, "epochs")
        if self.batch_size is not None:
            _checks.positive_int(self.batch_size, "batch_size")
        _number(self.lr, "lr", low_open=True)
        _checks.check(isinstance(self.lr_schedule, str), "lr_schedule must be one of "
                      f"{', '.join(LR_SCHEDULES)}; got {self.lr_schedule!r}")
        _checks.one_of(self.lr_schedule, LR_SCHEDULES, "lr_schedule")
        _checks.check(isinstance(self.warmup, int | float) and not isinstance(self.warmup, bool)
                      and 0 <= self.warmup < 1, f"warmup must be a share of the steps in "
                      f"[0, 1), got {self.warmup!r}")
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
        if self.loss_weighting is not None:
            _checks.check(isinstance(self.loss_weighting, str), "loss_weighting must be one of "
                          f"{', '.join(LOSS_WEIGHTINGS)}; got {self.loss_weighting!r}")
            _checks.one_of(self.loss_weighting, LOSS_WEIGHTINGS, "loss_weighting")
        _number(self.gradnorm_alpha, "gradnorm_alpha")
        _checks.check(isinstance(self.on_nonfinite, str), "on_nonfinite must be one of "
                      f"{', '.join(ON_NONFINITE)}; got {self.on_nonfinite!r}")
        _checks.one_of(self.on_nonfinite, ON_NONFINITE, "on_nonfinite")
        _flag(self.compile, "compile")
        _checks.check(isinstance(self.precision, str), "precision must be one of "
                      f"{', '.join(PRECISIONS)}; got {self.precision!r}")
        _checks.one_of(self.precision, PRECISIONS, "precision")
        _checks.check(isinstance(self.table_optimizer, str), "table_optimizer must be one of "
                      f"{', '.join(TABLE_OPTIMIZERS)}; got {self.table_optimizer!r}")
        _checks.one_of(self.table_optimizer, TABLE_OPTIMIZERS, "table_optimizer")
        _number(self.table_lr, "table_lr", low_open=True)
        _number(self.table_lr_scale, "table_lr_scale", low_open=True)
        if self.ensemble is not None:
            object.__setattr__(self, "ensemble", _int_range(self.ensemble, "ensemble", 1, 64))
            last = self.seed + self.ensemble - 1
            _checks.check(last <= MAX_SEED, f"the ensemble's seeds {self.seed}..{last} exceed "
                          f"{MAX_SEED}; choose a smaller seed")
        _checks.check(self.precision != "fp16" or self.loss_weighting in (None, "static"),
                      f"precision fp16 scales the summed loss, which only static loss "
                      f"weighting is; with loss_weighting '{self.loss_weighting}' use bf16 or "
                      "fp32")
        _flag(self.stop_if_all_skipped, "stop_if_all_skipped")

    def members(self, rows: int | None) -> int:
        """The seed ensemble's size for ``rows`` training rows (``None``: unknown, as for a CSV
        stream): ``ensemble`` when set, else :data:`AUTO_ENSEMBLE` for a table of at most
        :data:`ENSEMBLE_ROWS` rows (fewer when the seeds would pass ``MAX_SEED``) and one model
        for a larger one.

        On a small table one network's seed moves a test score by a few hundredths, and five
        networks train in under two minutes on two cores: on the tabular suite's three
        validation splits five seeds put two to five more tasks within the margin of gradient
        boosting and lifted the mean gap from about -0.004 to +0.002 (docs/tabular.md). A
        larger table gains less for five times a longer time.

        Example:
            >>> [TrainConfig().members(r) for r in (500, 10_000, 10_001, None)]
            [5, 5, 1, 1]
            >>> TrainConfig(ensemble=1).members(500)
            1
        """
        if self.ensemble is not None:
            return self.ensemble
        small = rows is not None and rows <= ENSEMBLE_ROWS
        return min(AUTO_ENSEMBLE, MAX_SEED - self.seed + 1) if small else 1

    def weighting_for(self, rows: int | None, tasks: int, shared: bool = True) -> str:
        """The loss weighting of a run on ``rows`` training rows (``None``: unknown, a stream)
        of ``tasks`` tasks (``shared``: sharing layers of the model): ``loss_weighting`` when
        set, else ``uncertainty`` for a table of at most :data:`WEIGHTING_ROWS` rows with two
        tasks or more that share layers, and ``static`` otherwise: a larger table, a stream,
        one task, a network per task (Single-Task) or ``fp16`` (its scaler scales the losses
        but not the log-variances' own term). Under torchrun the ranks average the weights'
        gradients, so two ranks learn what one process does.

        On a small table the tasks pull the shared experts apart; a learnt weight per task
        (Kendall et al. 2018: 1 / (2 L_t) at its optimum, so each task's loss counts alike
        whatever its units) raised the defaults' mean validation score over PCGrad (the
        previous default) by +0.0007, +0.0010 and +0.0008 on the tabular suite's three
        splits (29 of 42 task-splits better), and costs nothing per step where PCGrad needs
        a backward pass per task (docs/tabular.md). On the larger tables it moved the score
        both ways (+0.0018, -0.0003, +0.0007), so they keep the summed loss.

        Example:
            >>> [TrainConfig().weighting_for(r, 3) for r in (500, 10_001, None)]
            ['uncertainty', 'static', 'static']
            >>> [TrainConfig().weighting_for(500, 1),
            ...  TrainConfig().weighting_for(500, 3, shared=False),
            ...  TrainConfig(precision="fp16").weighting_for(500, 3)]
            ['static', 'static', 'static']
            >>> TrainConfig(loss_weighting="pcgrad").weighting_for(500, 3)
            'pcgrad'
        """
        if self.loss_weighting is not None:
            return self.loss_weighting
        small = rows is not None and rows <= WEIGHTING_ROWS
        scaled = self.precision == "fp16"
        return "uncertainty" if small and tasks > 1 and shared and not scaled else "static"

    def for_rows(self, rows: int | None) -> TrainConfig:
        """This config with the ``None`` epochs, batch size and ensemble chosen for ``rows``
        training rows (``None``: unknown, as for a stream: batch 1024, 10 epochs, one model).

        Batch: the power of two nearest rows / 64, within [32, 1024] (small tables get more
        steps per epoch). Epochs: enough for :data:`TARGET_STEPS` steps, within
        [:data:`MIN_EPOCHS`, :data:`MAX_EPOCHS`].

        Example:
            >>> [(c.batch_size, c.epochs, c.ensemble)
            ...  for c in map(TrainConfig().for_rows, (500, 30_000, 10**7))]
            [(32, 200, 5), (512, 68, 1), (1024, 10, 1)]
            >>> fixed = TrainConfig(epochs=3, batch_size=64, ensemble=1)
            >>> fixed.for_rows(500) == fixed
            True
        """
        batch = self.batch_size
        if batch is None:
            batch = 1024 if rows is None else \
                int(min(1024, max(32, 2 ** round(math.log2(max(rows, 1) / 64)))))
        epochs = self.epochs
        if epochs is None:
            steps = None if rows is None else math.ceil(rows / batch)
            epochs = MIN_EPOCHS if steps is None else \
                int(min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(TARGET_STEPS / steps))))
        return replace(self, epochs=epochs, batch_size=batch, ensemble=self.members(rows))


#: what :meth:`TrainConfig.for_rows` aims at: optimisation steps in a run, and its bounds
TARGET_STEPS = 4000
MIN_EPOCHS, MAX_EPOCHS = 10, 200
#: the seed ensemble a table of at most ENSEMBLE_ROWS training rows gets by default
AUTO_ENSEMBLE, ENSEMBLE_ROWS = 5, 10_000
#: a table of at most WEIGHTING_ROWS training rows whose tasks share layers learns a weight
#: per task (uncertainty weighting) by default
WEIGHTING_ROWS = 10_000
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
TABLE_OPTIMIZERS: tuple[str, ...] = ("adagrad", "adam")


def lr_factor(config: TrainConfig, step: int, total: int) -> float:
    """The learning rate at ``step`` (0-based) of ``total`` planned steps, as a share of
    ``config.lr``.

    Example:
        >>> cfg = TrainConfig(warmup=0.1)
        >>> [round(lr_factor(cfg, s, 100), 3) for s in (0, 9, 10, 54, 99)]
        [0.1, 1.0, 1.0, 0.509, 0.0]
        >>> lr_factor(TrainConfig(lr_schedule="constant"), 50, 100)
        1.0
    """
    return schedule_factor(config.lr_schedule, config.warmup, step, total)


def schedule_factor(schedule: str, warmup: float, step: int, total: int) -> float:
    """:func:`lr_factor` for a schedule given by name (``constant`` or ``cosine``) and its
    warm-up share."""
    if schedule == "constant" or total <= 0:
        return 1.0
    warm = int(warmup * total)
    if step < warm:
        return (step + 1) / warm
    span = max(1, total - 1 - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / span)))
