"""Per-task evaluation metrics, computed with scikit-learn on labelled rows only.

binary: ROC AUC, log-loss and calibration (mean prediction / observed rate), and with groups
(e.g. users) GAUC, NDCG@k and MRR over them (:mod:`.groups`); regression: MSE and R²;
multiclass: accuracy and log-loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, softmax
from sklearn import metrics as skm

from .. import _checks
from ..config import TaskSpec
from .groups import calibration, gauc, mrr, ndcg_at_k

#: metric each kind is judged by, and whether higher is better
PRIMARY: dict[str, tuple[str, bool]] = {
    "binary": ("auc", True),
    "regression": ("mse", False),
    "multiclass": ("accuracy", True),
}


#: metrics where lower is better (every other metric: higher is better)
LOWER_IS_BETTER = {"mse", "logloss"}


def primary_metric(task: TaskSpec) -> tuple[str, bool]:
    """``(metric name, higher_is_better)`` used for early stopping and model selection."""
    return PRIMARY[task.kind]


def task_skill(task: TaskSpec, metrics: dict[str, float]) -> float:
    """A task's validation result on one scale, 0 for chance and 1 for perfect: binary
    2·AUC − 1 (Gini), multiclass (accuracy − 1/C) / (1 − 1/C), regression R².

    Example:
        >>> task_skill(TaskSpec("y"), {"auc": 0.75})
        0.5
        >>> task_skill(TaskSpec("c", "multiclass", classes=("a", "b", "c", "d")),
        ...            {"accuracy": 0.625})
        0.5
    """
    if task.kind == "binary":
        return 2.0 * metrics.get("auc", math.nan) - 1.0
    if task.kind == "multiclass":
        chance = 1.0 / max(2, len(task.classes or ()))
        return (metrics.get("accuracy", math.nan) - chance) / (1.0 - chance)
    return metrics.get("r2", math.nan)


def combined_score(valid: dict[str, dict[str, float]], tasks: Sequence[TaskSpec]) -> float:
    """The mean over tasks of :func:`task_skill`: one number in which every task weighs alike,
    whatever its kind or its label's scale (tasks without a finite skill are left out; NaN
    when none has one).

    Example:
        >>> combined_score({"y": {"auc": 0.75}, "v": {"r2": 0.3}},
        ...                [TaskSpec("y"), TaskSpec("v", "regression")])
        0.4
    """
    skills = [v for t in tasks if math.isfinite(v := task_skill(t, valid.get(t.name, {})))]
    return sum(skills) / len(skills) if skills else math.nan


@dataclass(frozen=True)
class Monitor:
    """What early stopping and model selection watch: one task's metric, or (``task`` None)
    the :func:`combined_score` of all tasks."""

    task: TaskSpec | None
    metric: str
    higher_is_better: bool
    tasks: tuple[TaskSpec, ...]

    @property
    def name(self) -> str:
        return "combined" if self.task is None else f"{self.task.name}/{self.metric}"

    def value(self, valid: dict[str, dict[str, float]]) -> float:
        """The watched number in an epoch's validation metrics."""
        if self.task is None:
            return combined_score(valid, self.tasks)
        return valid[self.task.name].get(self.metric, math.nan)


def monitored(monitor: str | None, tasks: Sequence[TaskSpec]) -> Monitor:
    """What early stopping and model selection watch: ``None`` or ``combined`` (the
    combined score of all tasks), a task name (its primary metric), or ``METRIC:TASK`` (e.g.
    ``gauc:click``).

    Example:
        >>> tasks = [TaskSpec("click"), TaskSpec("spend", "regression")]
        >>> [(m.name, m.higher_is_better) for m in (monitored(None, tasks),
        ...  monitored("gauc:click", tasks), monitored("spend", tasks))]
        [('combined', True), ('click/gauc', True), ('spend/mse', False)]
    """
    tasks = tuple(tasks)
    if monitor is None or monitor == "combined":
        return Monitor(None, "combined", True, tasks)
    names = [t.name for t in tasks]
    metric, _, name = monitor.rpartition(":")
    _checks.check(name in names, f"monitor task '{name}' is not one of {names} (or "
                  "'combined', the mean skill of all tasks)")
    task = tasks[names.index(name)]
    metric = metric or PRIMARY[task.kind][0]
    return Monitor(task, metric, metric not in LOWER_IS_BETTER, tasks)


def task_outputs(task: TaskSpec, logits: np.ndarray) -> np.ndarray:
    """Logits of one task -> its prediction: P(positive) (N,), value (N,), or P(class) (N, C)."""
    if task.kind == "binary":
        return expit(logits[:, 0])
    if task.kind == "regression":
        return logits[:, 0]
    return softmax(logits, axis=1)


def _check_finite(task: TaskSpec, pred: np.ndarray, y: np.ndarray) -> None:
    """One line naming the task when its predictions or labels cannot be scored."""
    bad = ~np.isfinite(pred)
    rows = int((bad.any(axis=1) if bad.ndim == 2 else bad).sum())
    if rows:
        raise ValueError(f"task '{task.name}': {rows} of {len(pred)} predictions are not finite "
                         "(NaN or inf), so its metrics cannot be computed: the model's weights "
                         "or the input rows hold non-finite or extreme values (a learning rate "
                         "too large makes the weights overflow)")
    infinite = int(np.isinf(y).sum())
    if infinite:
        raise ValueError(f"task '{task.name}': {infinite} of {len(y)} labels are infinite; "
                         f"fix or drop those rows of column '{task.column}'")


def evaluate(tasks: Sequence[TaskSpec], slices: Sequence[slice], logits: np.ndarray,
             labels: np.ndarray, weights: np.ndarray | None = None,
             groups: np.ndarray | None = None, k: int = 10) -> dict[str, dict[str, float]]:
    """Metrics of every task on its labelled rows.

    Args:
        tasks: the tasks in model order.
        slices: each task's columns in ``logits``.
        logits: (N, O) model outputs.
        labels: (N, T) with NaN where missing. A task that follows another
            (``TaskSpec(after=...)``) is scored on the rows where that task's label is 1
            (its prediction is the conditional probability).
        weights: optional (N,) sample weights (rows of weight 0 are left out: they count
            for nothing, and ``n`` counts the rows scored).
        groups: optional (N,) group of each row (e.g. the user): binary tasks then also get
            ``gauc`` (with ``gauc_groups`` used and ``gauc_skipped`` one-class groups),
            ``ndcg@k`` and ``mrr`` over the groups.
        k: the cut-off of NDCG.

    Returns:
        ``{task name: {metric: value}}``; a metric that is undefined on the data (AUC with a
        single class present) is NaN.

    Raises:
        ValueError: a task's predictions on its labelled rows are not finite (NaN/inf: the
            model's weights or inputs hold non-finite or extreme values), or its labels are
            infinite; the message names the task.

    Example:
        >>> evaluate([TaskSpec("a", "regression")], [slice(0, 1)],
        ...          np.array([[1.0], [2.0]]), np.array([[1.0], [4.0]]))["a"]["mse"]
        2.0
    """
    _checks.positive_int(k, "k (the NDCG cut-off)")
    out: dict[str, dict[str, float]] = {}
    names = [task.name for task in tasks]
    for t, (task, cols) in enumerate(zip(tasks, slices, strict=True)):
        keep = ~np.isnan(labels[:, t])
        if task.after is not None:
            keep &= labels[:, names.index(task.after)] == 1
        if weights is not None:
            keep &= weights > 0
        y = labels[keep, t]
        w = None if weights is None else weights[keep]
        pred = task_outputs(task, logits[keep][:, cols])
        res: dict[str, float] = {"n": int(keep.sum())}
        if y.size == 0:
            out[task.name] = res
            continue
        _check_finite(task, pred, y)
        if task.kind == "binary":
            y = y.astype(int)
            both = len(np.unique(y)) == 2
            res["auc"] = float(skm.roc_auc_score(y, pred, sample_weight=w)) if both else math.nan
            res["logloss"] = float(skm.log_loss(y, pred, sample_weight=w, labels=[0, 1]))
            res["calibration"] = calibration(y, pred, w)
            if groups is not None:
                g = groups[keep]
                res["gauc"], used, skipped = gauc(g, y, pred)
                res["gauc_groups"], res["gauc_skipped"] = int(used), int(skipped)
                res[f"ndcg@{k}"] = ndcg_at_k(g, y, pred, k)[0]
                res["mrr"] = mrr(g, y, pred)[0]
        elif task.kind == "regression":
            res["mse"] = float(skm.mean_squared_error(y, pred, sample_weight=w))
            res["r2"] = float(skm.r2_score(y, pred, sample_weight=w)) if y.size > 1 else math.nan
        else:
            y = y.astype(int)
            res["accuracy"] = float(skm.accuracy_score(y, pred.argmax(1), sample_weight=w))
            res["logloss"] = float(skm.log_loss(y, pred, sample_weight=w,
                                                labels=list(range(pred.shape[1]))))
        out[task.name] = res
    return out
