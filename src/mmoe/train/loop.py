"""The training loop: whole-batch index slices over column tensors, Adam, per-epoch
validation, early stopping, atomic checkpoints and exact resume.

Determinism: epoch e's shuffle is ``randperm(N)`` from a generator seeded with (seed, e), and
the global torch RNG (dropout) is seeded once and saved in every checkpoint, so on CPU a run
resumed from any checkpoint ends with bit-identical weights to one that never stopped.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import _checks
from ..config import TrainConfig
from ..data.table import TensorTable
from ..metrics import evaluate, primary_metric, task_outputs
from ..models import MultiTaskModel
from ..gate_health import gate_health
from ..objectives import MultiTaskLoss
from ..weighting import make_weighting
from .checkpoint import load_checkpoint, save_checkpoint

EVAL_BATCH = 16384


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: one dict per epoch: ``epoch``, ``step``, ``train_loss`` {task: loss},
            ``valid`` {task: {metric: value}} (when validation data was given), ``seconds``,
            ``samples_per_s``.
        best_epoch: epoch (1-based) whose weights the model holds at the end.
        best_score: the monitored metric at ``best_epoch`` (NaN without validation).
        monitor: ``"task/metric"`` that was monitored.
        stopped_early: whether early stopping ended training.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = math.nan
    monitor: str = ""
    stopped_early: bool = False


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The row order of one epoch: a pure function of (seed, epoch), so resume can rebuild it."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


@torch.inference_mode()
def predict_logits(model: MultiTaskModel, table: TensorTable,
                   batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Logits (N, O) in eval mode, in batches. The model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    out = [model(*table.take(slice(i, i + batch_size)).inputs())
           for i in range(0, len(table), batch_size)]
    model.train(was_training)
    return torch.cat(out)


def predict(model: MultiTaskModel, table: TensorTable,
            batch_size: int = EVAL_BATCH) -> dict[str, np.ndarray]:
    """Per-task predictions by task name: binary P(positive) (N,), regression value (N,),
    multiclass P(class) (N, C).

    Example:
        >>> preds = predict(model, table)  # doctest: +SKIP
        >>> preds["income"][:3]  # doctest: +SKIP
    """
    logits = predict_logits(model, table, batch_size).numpy()
    return {t.name: task_outputs(t, logits[:, s])
            for t, s in zip(model.tasks, model.task_slices, strict=True)}


def evaluate_model(model: MultiTaskModel, table: TensorTable) -> dict[str, dict[str, float]]:
    """Per-task metrics of ``model`` on a labelled table."""
    _checks.check(table.labels is not None, "evaluation needs labels")
    logits = predict_logits(model, table).numpy()
    weights = None if table.weights is None else table.weights.numpy()
    return evaluate(model.tasks, model.task_slices, logits, table.labels.numpy(), weights)


class Trainer:
    """Trains one model; checkpoints to ``checkpoint`` (if given) and resumes from it.

    Args:
        model: the model to train (in place).
        config: training settings.
        checkpoint: file to write checkpoints to (``None``: no checkpoints).
        extras: JSON-able data stored in every checkpoint (e.g. the fitted encoder).
        progress: show a progress bar (default: when stderr is a terminal).
    """

    def __init__(self, model: MultiTaskModel, config: TrainConfig = TrainConfig(), *,
                 checkpoint: str | os.PathLike | None = None,
                 extras: dict[str, Any] | None = None, progress: bool | None = None):
        self.model, self.config = model, config
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.extras = extras or {}
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.loss_fn = MultiTaskLoss(model.tasks, model.task_slices)
        self.weighting = make_weighting(config, model)  # static, uncertainty, gradnorm, pcgrad
        self.optimizer = torch.optim.Adam([*model.parameters(), *self.weighting.parameters()],
                                          lr=config.lr, weight_decay=config.weight_decay)
        names = [t.name for t in model.tasks]
        monitor = config.monitor or names[0]
        _checks.check(monitor in names, f"monitor task '{monitor}' is not one of {names}")
        self.monitor_task = model.tasks[names.index(monitor)]
        self.metric, self.higher_is_better = primary_metric(self.monitor_task)
        # Trainer state: everything resume needs besides model/optimizer weights.
        self.state: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0,
                                      "history": [], "best_score": None, "best_epoch": 0,
                                      "bad_epochs": 0, "stopped_early": False,
                                      "loss_sum": [0.0] * len(names), "rows": 0,
                                      "config": config.to_dict()}
        self.best_weights: dict[str, torch.Tensor] | None = None

    # ---- checkpoints ---------------------------------------------------------------------
    def save(self) -> None:
        """Write the current state to the checkpoint file (atomic)."""
        if self.checkpoint is None:
            return
        tensors = {"rng": torch.get_rng_state()}
        if self.best_weights is not None:
            tensors["best_weights"] = self.best_weights
        if self.weighting.state_dict():
            tensors["weighting"] = self.weighting.state_dict()
        save_checkpoint(self.checkpoint, self.model, optimizer=self.optimizer,
                        trainer=self.state, tensors=tensors, extras=self.extras)

    def restore(self) -> bool:
        """Load model, optimizer, RNG and trainer state from the checkpoint, if one exists."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return False
        ckpt = load_checkpoint(self.checkpoint)
        saved = ckpt["trainer"].get("config", {})
        _checks.check(saved == self.config.to_dict(),
                      f"checkpoint '{self.checkpoint}' was written with different training "
                      f"settings {saved}; resume with the same settings or start a new run")
        self.model.load_state_dict(ckpt["state_dict"], strict=True)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.state = ckpt["trainer"]
        torch.set_rng_state(ckpt["tensors"]["rng"])
        self.best_weights = ckpt["tensors"].get("best_weights")
        if "weighting" in ckpt["tensors"]:
            self.weighting.load_state_dict(ckpt["tensors"]["weighting"])
        return True

    # ---- training ------------------------------------------------------------------------
    def fit(self, train: TensorTable, valid: TensorTable | None = None,
            resume: bool = False) -> FitResult:
        """Train for ``config.epochs`` epochs (or until early stopping).

        Args:
            train: labelled training rows.
            valid: labelled validation rows for per-epoch metrics and early stopping.
            resume: continue from the checkpoint file when it exists.
        """
        cfg = self.config
        _checks.check(train.labels is not None, "training data needs labels")
        _checks.check(len(train) > 0, "the training data has no rows")
        _checks.check(train.labels.shape[1] == len(self.model.tasks),
                      f"labels have {train.labels.shape[1]} columns for "
                      f"{len(self.model.tasks)} tasks")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if not (resume and self.restore()):
            torch.manual_seed(cfg.seed)  # dropout stream; init is the caller's (build_model)
        n, bs = len(train), cfg.batch_size
        steps = math.ceil(n / bs)
        if self.model.config.batch_norm and n > 1 and n % bs == 1:
            steps -= 1  # batch norm cannot train on a last batch of one row: drop that row
        st = self.state
        while st["epoch"] < cfg.epochs and not st["stopped_early"]:
            rows, seconds = self._train_epoch(train, steps)
            self._end_epoch(valid, rows, seconds)
        if cfg.restore_best and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        return FitResult(st["history"], st["best_epoch"],
                         math.nan if st["best_score"] is None else st["best_score"],
                         f"{self.monitor_task.name}/{self.metric}", st["stopped_early"])

    def _train_epoch(self, train: TensorTable, steps: int) -> tuple[int, float]:
        """Run the epoch's remaining steps; returns (rows trained now, seconds)."""
        cfg, st, model = self.config, self.state, self.model
        # One gather per epoch; every batch is then a zero-copy view of the shuffled table.
        shuffled = train.take(epoch_permutation(len(train), cfg.seed, st["epoch"]))
        loss_sum = torch.tensor(st["loss_sum"], dtype=torch.float64)
        model.train()
        start, done = time.perf_counter(), 0
        bar = tqdm(total=steps, initial=st["step_in_epoch"], disable=not self.progress,
                   desc=f"epoch {st['epoch'] + 1}/{cfg.epochs}", unit="step", leave=False)
        for b in range(st["step_in_epoch"], steps):
            batch = shuffled.take(slice(b * cfg.batch_size, (b + 1) * cfg.batch_size))
            task_losses = self.loss_fn(model(*batch.inputs()), batch.labels, batch.weights)
            self.optimizer.zero_grad(set_to_none=True)
            self.weighting.backward(task_losses, model.penalty())  # static: (sum λ_t L_t).backward()
            self.optimizer.step()
            self.weighting.after_step()
            rows = len(batch)
            loss_sum += task_losses.detach().double() * rows
            st["rows"] += rows
            done += rows
            st["step_in_epoch"], st["global_step"] = b + 1, st["global_step"] + 1
            bar.update()
            if cfg.checkpoint_every and st["global_step"] % cfg.checkpoint_every == 0:
                st["loss_sum"] = loss_sum.tolist()
                self.save()
        bar.close()
        st["loss_sum"] = loss_sum.tolist()
        return done, time.perf_counter() - start

    def _end_epoch(self, valid: TensorTable | None, done: int, seconds: float) -> None:
        st, names = self.state, [t.name for t in self.model.tasks]
        rows = max(st["rows"], 1)
        record: dict[str, Any] = {
            "epoch": st["epoch"] + 1, "step": st["global_step"],
            "train_loss": dict(zip(names, (s / rows for s in st["loss_sum"]), strict=True)),
            "seconds": seconds, "samples_per_s": done / seconds if seconds > 0 else None}
        if (weights := self.weighting.describe()) is not None:
            record["loss_weights"] = weights
        if valid is not None:
            record["valid"] = evaluate_model(self.model, valid)
            gates = gate_health(self.model, valid, warn=True)  # None for models without gates
            if gates is not None:
                record["gates"] = gates
            self._track_best(record["valid"][self.monitor_task.name].get(self.metric, math.nan))
        else:
            st["best_epoch"] = st["epoch"] + 1
        st["history"].append(record)
        st["epoch"] += 1
        st["step_in_epoch"], st["loss_sum"], st["rows"] = 0, [0.0] * len(names), 0
        if self.progress:
            tqdm.write(_format_record(record))
        self.save()

    def _track_best(self, score: float) -> None:
        st = self.state
        best = st["best_score"]
        better = best is None or (not math.isnan(score) and (
            score > best if self.higher_is_better else score < best))
        if better:
            st["best_score"], st["best_epoch"], st["bad_epochs"] = score, st["epoch"] + 1, 0
            if self.config.restore_best:
                self.best_weights = copy.deepcopy(self.model.state_dict())
        else:
            st["bad_epochs"] += 1
            patience = self.config.patience
            st["stopped_early"] = patience is not None and st["bad_epochs"] >= patience


def _format_record(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']}"]
    parts += [f"loss[{k}]={v:.4f}" for k, v in record["train_loss"].items()]
    for task, metrics in record.get("valid", {}).items():
        parts += [f"{task}.{m}={v:.4f}" for m, v in metrics.items() if m != "n"]
    return "  ".join(parts)


def fit(model: MultiTaskModel, train: TensorTable, valid: TensorTable | None = None,
        config: TrainConfig = TrainConfig(), **kwargs: Any) -> FitResult:
    """Train ``model`` in place (see :class:`Trainer` for ``checkpoint``, ``extras``,
    ``progress`` and ``resume``).

    Example:
        >>> result = fit(model, train_table, valid_table, TrainConfig(epochs=5))  # doctest: +SKIP
        >>> result.history[-1]["valid"]["income"]["auc"]  # doctest: +SKIP
    """
    resume = kwargs.pop("resume", False)
    return Trainer(model, config, **kwargs).fit(train, valid, resume=resume)
