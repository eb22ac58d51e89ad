"""The Trainer: one loop over an epoch source (a table in memory or a stream), Adam, one
validation pass per epoch (metrics and gate health together), early stopping, atomic
checkpoints and exact resume.

Determinism: epoch e's order is a pure function of (seed, e) (see :mod:`.epochs`), and the
global torch RNG (dropout) is seeded once and saved in every checkpoint, so on CPU a run
resumed from any checkpoint ends with bit-identical weights to one that never stopped.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import _checks, ops
from ..config import TrainConfig
from ..config.training import lr_factor
from ..data.table import TensorTable
from ..diagnostics import warn_gates
from ..metrics import monitored
from ..models import MultiTaskModel
from ..models.model import allocation_errors, check_memory, compiled
from ..objectives import MultiTaskLoss, make_weighting, safe_denominator
from .checkpoint import fresh_state, restore_training, save_training
from .distributed import all_reduce_sum, average_grads, barrier, setup, sync_sparse_grads, wrap
from .epoch_log import LOG, epoch_line
from .epochs import EpochSource, InMemoryEpochs
from .evaluation import validate
from .optim import TABLE_OPTIMIZERS, optimizer_for
from .precision import Precision
from .prefetch import device_resident, on_device, prefetched

SMALL_MODEL_PARAMS = 1_000_000  # below this, train on one intra-op thread by default


class NonFiniteError(ValueError):
    """A step's loss or gradient was NaN/inf and ``on_nonfinite`` is ``stop``."""


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: one dict per epoch: ``epoch``, ``step``, ``train_loss`` {task: loss},
            ``valid`` {task: {metric: value}} (when validation data was given), ``seconds``,
            ``samples_per_s``.
        best_epoch: epoch (1-based) whose weights the model holds at the end (the best
            validation epoch with ``restore_best``, else the last one).
        best_score: the best value of the monitored metric (NaN without validation).
        monitor: ``"combined"`` or ``"task/metric"``, what was monitored.
        stopped_early: whether early stopping ended training.
        config: the training settings as run (epochs and batch size chosen for the rows).
        members: a seed ensemble's members (seed, kept epoch, monitor, best score), whose
            first member the rest describes; empty for one model.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = math.nan
    monitor: str = ""
    stopped_early: bool = False
    config: TrainConfig | None = None
    members: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Trains one model; checkpoints to ``checkpoint`` (if given) and resumes from it.

    Args:
        model: the model to train (in place).
        config: training settings.
        checkpoint: file to write checkpoints to (``None``: no checkpoints).
        extras: JSON-able data stored in every checkpoint (e.g. the fitted encoder).
        progress: show a progress bar (default: when stderr is a terminal, on rank 0).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``. Under ``torchrun`` with
            more than one process, training is data-parallel (see :mod:`.distributed`).

    Creating a Trainer builds (or loads) the native CPU kernels (:func:`mmoe.ops.build_native`).

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> model = build_model("mmoe", 3, [TaskSpec("y", "regression")], num_experts=2)
        >>> data = TensorTable.from_arrays(torch.randn(64, 3), torch.randn(64))
        >>> result = Trainer(model, TrainConfig(epochs=2, batch_size=16)).fit(data, data)
        >>> [r["epoch"] for r in result.history], sorted(result.history[-1]["valid"]["y"])
        ([1, 2], ['mse', 'n', 'r2'])
    """

    def __init__(self, model: MultiTaskModel, config: TrainConfig = TrainConfig(), *,
                 checkpoint: str | os.PathLike | None = None,
                 extras: dict[str, Any] | None = None, progress: bool | None = None,
                 device: str = "auto"):
        self.ctx = setup(device)
        ops.build_native()  # here, never from inside a forward
        model.to(self.ctx.device)
        self.model, self.config = model, config
        if self.ctx.device.type == "cpu":  # gradients and Adam's two moments: 3 more copies
            check_memory(model.config, model.inputs, model.tasks, 3,
                         f"training model '{model.config.name}'", _table_copies(model, config))
        self.net = wrap(model, self.ctx)  # DDP across ranks, else the model itself
        if config.compile:
            self.net = compiled(self.net)
        _checks.check(not (self.ctx.distributed
                           and config.loss_weighting in ("gradnorm", "pcgrad")),
                      f"loss_weighting '{config.loss_weighting}' needs per-task gradients and "
                      "does not run data-parallel; use static or uncertainty under torchrun")
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.extras = extras or {}
        self.progress = self.ctx.is_main and (sys.stderr.isatty() if progress is None
                                              else progress)
        self.loss_fn = MultiTaskLoss(model.tasks, model.task_slices, model.funnel.joint)
        # static, uncertainty, gradnorm, pcgrad; the default (None) is chosen from the rows at
        # fit (static until then; a learnt weighting's parameters then join the optimizer)
        self._use_weighting(config)
        self.optimizer = optimizer_for(model, self.weighting, config)
        self.precision = Precision(config.precision, self.ctx.device)  # autocast, fp16 scaler
        names = [t.name for t in model.tasks]
        # the combined score, a task (its primary metric) or METRIC:TASK, e.g. gauc:click
        self.monitor = monitored(config.monitor, model.tasks)
        self._params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self._tables = model.sparse_parameters()
        self._unit_scale = torch.ones(1, device=self.ctx.device)  # the check's scale: 1
        # skip must not let a bad batch into batch-norm running statistics either
        self._buffers = (list(model.buffers()) if config.on_nonfinite == "skip"
                         and model.config.normalises_batches else [])
        # Trainer state: everything resume needs besides model/optimizer weights.
        self.state: dict[str, Any] = fresh_state(len(names), config)
        self.best_weights: dict[str, torch.Tensor] | None = None
        self._saved_step: int | None = None  # global step of the checkpoint on disk, if any
        self._last_skip = ""  # why the last skipped step was skipped
        self._gates_warned: set[str] = set()  # gate-health problems warned about: each once

    # ---- checkpoints ---------------------------------------------------------------------
    def save(self) -> None:
        """Write the current state to the checkpoint file (atomic; rank 0 only). Weights
        that are no longer finite are never written: the last good checkpoint stays."""
        if self.checkpoint is None:
            return
        self._check_weights()
        if self.precision.scaler is not None:
            self.state["loss_scale"] = self.precision.state_dict()
        if self.ctx.is_main:
            save_training(self.checkpoint, self.model, self.optimizer, self.weighting,
                          self.state, self.best_weights, self.extras)
        self._saved_step = self.state["global_step"]
        barrier(self.ctx)  # the other ranks wait until rank 0 has written it

    def restore(self, steps: int | None = None) -> bool:
        """Load model, optimizer, RNG and trainer state from the checkpoint, if one exists,
        after checking every part of it against this run (``steps``: steps per epoch of the
        training data, when known); see :func:`.checkpoint.restore_training`."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return False
        self.state, self.best_weights = restore_training(
            self.checkpoint, self.model, self.optimizer, self.weighting, self.config,
            self.state, steps)
        self.precision.load_state_dict(self.state.get("loss_scale", {}))
        self._saved_step = self.state["global_step"]
        return True

    # ---- training ------------------------------------------------------------------------
    def fit(self, train: TensorTable | EpochSource, valid: TensorTable | None = None,
            resume: bool = False) -> FitResult:
        """Train for ``config.epochs`` epochs (or until early stopping).

        Args:
            train: labelled training rows, or an epoch source (:mod:`.epochs`: a stream).
            valid: labelled validation rows for per-epoch metrics and early stopping.
            resume: continue from the checkpoint file when it exists.
        """
        for _ in self.iter_epochs(train, valid, resume):
            pass
        return self.result()

    def iter_epochs(self, train: TensorTable | EpochSource, valid: TensorTable | None = None,
                    resume: bool = False) -> Iterator[dict[str, Any]]:
        """Like :meth:`fit`, one epoch at a time: yields each epoch's history record, so a
        caller can interleave work (or stop) between epochs. Best weights are restored when
        the last epoch is done."""
        source = self._source(train)
        cfg = self.config  # epochs and batch size now chosen for the rows
        self.state["config"] = cfg.to_dict()
        self._steps = source.steps  # None for a stream: the schedule moves once per epoch
        if not (resume and self.restore(source.steps)):
            torch.manual_seed(cfg.seed)  # dropout stream; init is the caller's (build_model)
        st = self.state
        caller_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads())
        try:
            while st["epoch"] < cfg.epochs and not st["stopped_early"]:
                with allocation_errors(lambda: f"at step {st['global_step'] + 1}; lower "
                                       f"batch_size or the model's size{self._kept()}"):
                    rows, seconds = self._train_epoch(source)
                    self._end_epoch(valid, rows, seconds)
                yield st["history"][-1]
        finally:
            torch.set_num_threads(caller_threads)  # training's choice stays inside training
        if cfg.restore_best and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)

    def _use_weighting(self, config: TrainConfig) -> None:
        """The loss weighting ``config`` names, on the run's device (its task weights
        multiply the losses there), and its learnt parameters (none for static)."""
        self.weighting = make_weighting(config, self.model).to(self.ctx.device)
        self._learnt = list(self.weighting.parameters())

    def _source(self, train: TensorTable | EpochSource) -> EpochSource:
        """The epoch source of ``train``, checked against the model and the settings."""
        tasks = self.model.tasks
        in_memory = isinstance(train, TensorTable)
        rows = len(train) if in_memory else train.rows
        # a stream's batches are cut by its maker: from config.for_rows(None) (batch 1024)
        self.config = cfg = self.config.for_rows(rows if in_memory else None)
        if cfg.loss_weighting is None:  # the default, from the rows: uncertainty or static
            self.config = cfg = replace(cfg, loss_weighting=cfg.weighting_for(
                rows, len(tasks), self.model.backbone.shares_layers))
            self._use_weighting(cfg)
            if self._learnt:  # uncertainty's log-variances
                self.optimizer.extend(self._learnt)  # where optimizer_for puts a set one's
                self._params += self._learnt
        if in_memory:
            _checks.check(train.labels is not None, "training data needs labels")
            _checks.check(train.labels.shape[1] == len(tasks),
                          f"labels have {train.labels.shape[1]} columns for {len(tasks)} tasks")
            train = InMemoryEpochs(device_resident(train, self.ctx.device), cfg.batch_size,
                                   cfg.seed, drop_single_row=self.model.config.normalises_batches)
        _checks.check(train.distributable or self.ctx.world == 1,
                      "streaming training runs in one process; drop --stream for "
                      "distributed training")
        _checks.check(train.resumable_mid_epoch or cfg.checkpoint_every is None,
                      "streaming training checkpoints at epoch ends only; unset "
                      "checkpoint_every")
        return train

    def threads(self) -> int:
        """Intra-op threads for training: ``config.threads``, else 1 for a small model (its
        matmuls are too small to split: docs/benchmarks/), else torch's current setting."""
        if self.config.threads:
            return self.config.threads
        params = sum(p.numel() for p in self.model.parameters())
        return 1 if params < SMALL_MODEL_PARAMS else torch.get_num_threads()

    def result(self) -> FitResult:
        """The :class:`FitResult` of the training so far."""
        st = self.state
        held = st["best_epoch"] if self.config.restore_best or not st["history"] else \
            st["history"][-1]["epoch"]  # without restore_best the model keeps the last weights
        return FitResult(st["history"], held,
                         math.nan if st["best_score"] is None else st["best_score"],
                         self.monitor.name, st["stopped_early"], self.config)

    def _train_epoch(self, source: EpochSource) -> tuple[int, float]:
        """Run the epoch's remaining steps; returns (rows trained now, seconds)."""
        cfg, st, ctx = self.config, self.state, self.ctx
        base = torch.tensor(st["loss_sum"], dtype=torch.float64)  # all ranks, this epoch so far
        loss_sum = torch.zeros_like(base)  # this rank, since `base`
        self.model.train()
        start, done = time.perf_counter(), 0
        bar = tqdm(total=source.steps, initial=st["step_in_epoch"], disable=not self.progress,
                   desc=f"epoch {st['epoch'] + 1}/{cfg.epochs}", unit="step", leave=False)
        batches = source.batches(st["epoch"], st["step_in_epoch"], ctx)
        if not on_device(source, ctx.device):  # a GPU fed from the host: prepared ahead
            batches = prefetched(batches, ctx.device)
        for batch in batches:
            table = batch.table if ctx.device.type == "cpu" else \
                batch.table.to(ctx.device, non_blocking=True)  # prefetched: there already
            task_losses = self._step(table)
            if task_losses is not None:
                loss_sum += task_losses * batch.rows / ctx.world
                st["rows"] += batch.rows
                done += batch.rows
            st["step_in_epoch"], st["global_step"] = (st["step_in_epoch"] + 1,
                                                      st["global_step"] + 1)
            bar.update()
            if cfg.checkpoint_every and st["global_step"] % cfg.checkpoint_every == 0:
                st["loss_sum"] = (base + all_reduce_sum(loss_sum.clone(), ctx)).tolist()
                self.save()
        bar.close()
        st["loss_sum"] = (base + all_reduce_sum(loss_sum, ctx)).tolist()
        return done, time.perf_counter() - start

    def _step(self, batch: TensorTable) -> torch.Tensor | None:
        """One optimisation step on a batch already on the device. Returns the per-task
        losses (T,) on the CPU, or ``None`` when the step had a non-finite loss or gradient
        and was skipped."""
        saved = [b.clone() for b in self._buffers]  # only for skip with batch norm
        with self.precision.autocast():  # fp32: nothing
            out = self.net(*batch.inputs(), parts=True)  # logits (B, O), gates, aux_loss
        # the loss in float32 whatever the precision of the forward pass
        num, den = self.loss_fn.parts(out.logits.float(), batch.labels, batch.weights)
        # Normalise by the global batch's label mass; DDP averages the ranks' gradients,
        # hence the factor world: the step equals a single process's on the whole batch.
        den = all_reduce_sum(den.detach(), self.ctx)
        task_losses = num / safe_denominator(den)
        if self.ctx.world > 1:
            task_losses = task_losses * self.ctx.world
        self.optimizer.zero_grad(set_to_none=True)
        aux = None if out.aux_loss is None else self.precision.scale(out.aux_loss.float())
        # static: sum λ_t L_t (+ aux), scaled under fp16
        self.weighting.backward(self.precision.scale(task_losses), aux)
        sync_sparse_grads(self._tables, self.ctx)  # DDP syncs the dense gradients
        average_grads(self._learnt, self.ctx)  # learnt task weights: outside DDP's model
        self.precision.unscale(self.optimizer)  # fp16: true-scale gradients, infs recorded
        # Non-finite check with one host read per step (the losses are read anyway): one
        # kernel flags a non-finite element in any gradient (GradScaler's check, at scale 1).
        grads = [p.grad._values() if p.grad.is_sparse else p.grad  # a table: its rows
                 for p in self._params if p.grad is not None]
        flag = torch.zeros(1, device=task_losses.device)
        if grads:
            torch._amp_foreach_non_finite_check_and_unscale_(grads, flag, self._unit_scale)
        values = torch.cat([task_losses.detach(), flag.to(task_losses.dtype)])  # (T+1,)
        *losses, flagged = values.tolist()
        finite = not flagged and all(math.isfinite(v) for v in losses)
        if self.ctx.distributed:  # every rank takes the same decision
            flag = torch.tensor([0.0 if finite else 1.0], device=self.ctx.device)
            finite = float(all_reduce_sum(flag, self.ctx)) == 0.0
        if not finite:
            self.precision.skip()  # fp16: the scale halves after an overflow
            if self.precision.scaler is not None and all(map(math.isfinite, losses)):
                return None  # fp16 overflow of finite losses: a skipped step, not an error
            self._nonfinite(losses, grads, saved)
            return None
        self._schedule()
        self.precision.step(self.optimizer)
        self.weighting.after_step()
        return values[:-1].cpu()

    def _nonfinite(self, losses: list[float], grads: list[torch.Tensor],
                   saved: list[torch.Tensor]) -> None:
        """Stop with an error naming the task(s), or skip the step (no weight update); weights
        that are no longer finite stop training either way (no later step can succeed)."""
        st, names = self.state, [t.name for t in self.model.tasks]
        bad = [f"'{n}' ({v})" for n, v in zip(names, losses, strict=True)
               if not math.isfinite(v)]
        norm = torch.nn.utils.get_total_norm(grads).item() if grads else 0.0
        what = (f"loss of task {', '.join(bad)}" if bad else
                f"gradient (norm {norm}; every task loss is finite)")
        where = f"non-finite {what} at step {st['global_step'] + 1} (epoch {st['epoch'] + 1})"
        self.optimizer.zero_grad(set_to_none=True)
        self._check_weights(where)
        if self.config.on_nonfinite == "skip":
            for buf, old in zip(self._buffers, saved, strict=True):
                buf.copy_(old)
            st["skipped_steps"] = st.get("skipped_steps", 0) + 1
            self._last_skip = where
            return
        raise NonFiniteError(f"{where}: training stopped{self._kept()}. Lower the learning "
                             "rate, check the data for extreme values, or skip such steps "
                             "with on_nonfinite='skip' (--on-nonfinite skip)")

    def _kept(self) -> str:
        """What a stopped run leaves to resume from, for the end of its message: true to
        whether a checkpoint was written (or restored) by this run."""
        if self.checkpoint is None:
            return ""
        if self._saved_step is None:
            return "; no checkpoint of this run had been written yet: none to resume from"
        return (f"; the last good checkpoint, of step {self._saved_step}, is kept in "
                f"'{self.checkpoint}' (resume from it)")

    def _check_weights(self, where: str = "") -> None:
        """Stop when a weight is NaN/inf: an update overflowed, and no later step can train
        (nor may such weights be checkpointed)."""
        if not all(bool(torch.isfinite(p).all()) for p in self._params):
            raise NonFiniteError(f"{where or 'at step ' + str(self.state['global_step'])}: the "
                                 f"model's weights are no longer finite (an update overflowed: "
                                 f"lr {self.config.lr:g} is too large here), so no step can "
                                 f"succeed; training stopped{self._kept()}. Lower the "
                                 "learning rate")

    def _schedule(self) -> None:
        """Set every parameter group's learning rate for the coming step
        (:func:`~mmoe.config.training.lr_factor`): by step over the planned steps, or on a
        stream, whose steps are not known in advance, by epoch. Set at every step, whatever
        the schedule, so the rate never comes from a loaded checkpoint."""
        cfg, st = self.config, self.state
        if self._steps:
            factor = lr_factor(cfg, st["global_step"], cfg.epochs * self._steps)
        else:
            factor = lr_factor(cfg, st["epoch"], cfg.epochs)
        self.optimizer.schedule(cfg, factor)  # the tables at their own rate

    def _end_epoch(self, valid: TensorTable | None, done: int, seconds: float) -> None:
        st, names = self.state, [t.name for t in self.model.tasks]
        self._check_weights()  # before validation: name the cause, not its NaN metrics
        if self.config.stop_if_all_skipped and 0 < st["step_in_epoch"] == st["skipped_steps"]:
            raise NonFiniteError(f"every step of epoch {st['epoch'] + 1} was skipped (the "
                                 f"last: {self._last_skip}): the model learned nothing in it; "
                                 f"training stopped{self._kept()}. Lower the learning rate or "
                                 "check the data for extreme values")
        rows = max(st["rows"], 1)
        record: dict[str, Any] = {
            "epoch": st["epoch"] + 1, "step": st["global_step"],
            "train_loss": dict(zip(names, (s / rows if st["rows"] else math.nan  # all skipped
                                           for s in st["loss_sum"]), strict=True)),
            "seconds": seconds, "samples_per_s": done / seconds if seconds > 0 else None}
        if (weights := self.weighting.describe()) is not None:
            record["loss_weights"] = weights
        if self.config.on_nonfinite == "skip":
            record["skipped_steps"] = st.get("skipped_steps", 0)
        if valid is not None:
            record["valid"], gates = validate(self.model, valid, self.ctx)
            if gates is not None:  # None for models without gates
                record["gates"] = gates
                # each problem warned once per run (every epoch's are in its record)
                if self.ctx.is_main:
                    warn_gates(gates["warnings"], self._gates_warned)
            self._track_best(self.monitor.value(record["valid"]))
        else:
            st["best_epoch"] = st["epoch"] + 1
        st["history"].append(record)
        st["epoch"] += 1
        st["step_in_epoch"], st["loss_sum"], st["rows"] = 0, [0.0] * len(names), 0
        st["skipped_steps"] = 0
        if self.ctx.is_main:
            line = epoch_line(record, self.config.epochs, self.monitor.name, st["best_score"],
                              st["best_epoch"])
            if self.progress:  # beside the progress bar
                tqdm.write(line)
            else:  # a log, a scheduler, a pipe: logging routes it (the CLI: to stderr)
                LOG.info(line)
        self.save()

    def _track_best(self, score: float) -> None:
        st, best = self.state, self.state["best_score"]
        if best is None or (not math.isnan(score) and (
                score > best if self.monitor.higher_is_better else score < best)):
            st["best_score"], st["best_epoch"], st["bad_epochs"] = score, st["epoch"] + 1, 0
            if self.config.restore_best:
                self.best_weights = copy.deepcopy(self.model.state_dict())
        else:
            st["bad_epochs"] += 1
            patience = self.config.patience
            st["stopped_early"] = patience is not None and st["bad_epochs"] >= patience


def fit(model: MultiTaskModel, train: TensorTable | EpochSource, valid: TensorTable | None = None,
        config: TrainConfig = TrainConfig(), **kwargs: Any) -> FitResult:
    """Train ``model`` in place (see :class:`Trainer` for ``checkpoint``, ``extras``,
    ``progress`` and ``resume``).

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> model = build_model("shared_bottom", 3, [TaskSpec("y", "regression")])
        >>> data = TensorTable.from_arrays(torch.randn(32, 3), torch.randn(32))
        >>> fit(model, data, data, TrainConfig(epochs=1)).best_epoch
        1
    """
    resume = kwargs.pop("resume", False)
    return Trainer(model, config, **kwargs).fit(train, valid, resume=resume)


def _table_copies(model: MultiTaskModel, config: TrainConfig) -> float:
    """Copies of the lookup tables that training adds (their gradients are a batch's rows):
    their optimizer's state over their cells."""
    tables = model.sparse_parameters()
    state = sum(TABLE_OPTIMIZERS[config.table_optimizer].state_floats(*t.shape)
                for t in tables)  # (rows, dim) each
    return state / max(1, sum(t.numel() for t in tables))
