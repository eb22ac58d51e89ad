"""The line each epoch of training writes: to the progress bar's terminal, or through
``logging`` (logger ``mmoe.train``) when stderr is not a terminal, so a log file, a scheduler
or a pipe sees the run advance and a library user can route it."""

from __future__ import annotations

import logging
import math
from typing import Any

LOG = logging.getLogger("mmoe.train")


def epoch_line(record: dict[str, Any], epochs: int, monitor: str, best: float | None,
               best_epoch: int) -> str:
    """One line per epoch: its number, seconds, training loss, each task's primary validation
    metric in a scale-free form (AUC, accuracy, R²: the same number in any unit), the
    monitored score and the best so far.

    Example:
        >>> print(epoch_line({"epoch": 2, "seconds": 1.5, "train_loss": {"y": 0.41},
        ...                   "valid": {"y": {"auc": 0.81, "n": 9}}}, 10, "combined", 0.62, 2))
        epoch 2/10  1.5 s  loss 0.4100  valid y auc 0.8100  combined best 0.6200 (epoch 2)
    """
    parts = [f"epoch {record['epoch']}/{epochs}", f"{record.get('seconds', 0.0):.1f} s",
             "loss " + " ".join(f"{v:.4f}" for v in record["train_loss"].values())]
    valid = record.get("valid")
    if valid:
        shown = []
        for task, metrics in valid.items():
            name = next((m for m in ("auc", "accuracy", "r2") if m in metrics), None)
            if name is not None:
                shown.append(f"{task} {name} {metrics[name]:.4f}")
        parts.append("valid " + ", ".join(shown))
        if best is not None and math.isfinite(best):
            parts.append(f"{monitor} best {best:.4f} (epoch {best_epoch})")
    return "  ".join(parts)
