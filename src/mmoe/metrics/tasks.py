"""Per-task evaluation metrics, computed with scikit-learn on labelled rows only.

binary: ROC AUC, log-loss and calibration (mean prediction / observed rate), and with groups
(e.g. users) GAUC, NDCG@k and MRR over them (:mod:`.groups`); regression: MSE and R²;
multiclass: accuracy and log-loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def monitored(monitor: str | None, tasks: Sequence[TaskSpec]) -> tuple[TaskSpec, str, bool]:
    """What early stopping and model selection watch: ``monitor`` is a task name (its
    primary metric), ``METRIC:TASK`` (e.g. ``gauc:click``), or ``None`` (the first task's
    primary metric).

    Returns:
        ``(task, metric, higher_is_better)``.

    Example:
        >>> tasks = [TaskSpec("click"), TaskSpec("spend", "regression")]
        >>> [(t.name, m, h) for t, m, h in (monitored(None, tasks), monitored("gauc:click", tasks),
        ...                                 monitored("spend", tasks))]
        [('click', 'auc', True), ('click', 'gauc', True), ('spend', 'mse', False)]
    """
    names = [t.name for t in tasks]
    metric, _, name = (monitor or names[0]).rpartition(":")
    _checks.check(name in names, f"monitor task '{name}' is not one of {names}")
    task = tasks[names.index(name)]
    metric = metric or PRIMARY[task.kind][0]
    return task, metric, metric not in LOWER_IS_BETTER


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
        weights: optional (N,) sample weights.
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
        y = labels[keep, t]
        w = None if weights is None else weights[keep]
        pred = task_outputs(task, logits[keep][:, cols])
        res: dict[str, float] = {"n": float(keep.sum())}
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
                res["gauc_groups"], res["gauc_skipped"] = float(used), float(skipped)
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
