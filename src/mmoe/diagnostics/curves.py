"""The learning-curve figure of a training run: each task's training loss and validation
metric per epoch, the epoch whose weights were kept marked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._fileio import write_figure

#: the validation metric drawn per task: scale-free, so the curve reads the same in any unit
_SHOWN = ("auc", "accuracy", "r2")


def learning_curves(history: list[dict[str, Any]], best_epoch: int, path: str | os.PathLike,
                    title: str = "") -> Path:
    """Write a PNG: training loss per task (left) and the validation AUC, accuracy or R² per
    task (right) against the epoch, with a dashed line at ``best_epoch``.

    Args:
        history: the run's per-epoch records (``epoch``, ``train_loss``, optional ``valid``).
        best_epoch: the epoch whose weights the model holds (0: none marked).
        path: the PNG to write (atomically).
        title: the figure's title.

    Returns:
        ``path``.

    Example:
        >>> h = [{"epoch": e, "train_loss": {"y": 1 / e}, "valid": {"y": {"auc": 0.6 + e / 20}}}
        ...      for e in (1, 2, 3)]
        >>> learning_curves(h, 3, tmp_path / "c.png").read_bytes()[:4]
        b'\\x89PNG'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (loss_ax, valid_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for task in (history[0]["train_loss"] if history else {}):
        loss_ax.plot(epochs, [r["train_loss"].get(task) for r in history], marker=".",
                     label=task)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss per task")
    for task in (history[0].get("valid") or {} if history else {}):
        metrics = history[0]["valid"][task]
        name = next((m for m in _SHOWN if m in metrics), None)
        if name is not None:
            valid_ax.plot(epochs, [(r.get("valid") or {}).get(task, {}).get(name)
                                   for r in history], marker=".", label=f"{task} {name}")
    valid_ax.set(xlabel="epoch", ylabel="validation metric",
                 title="validation AUC / accuracy / R²")
    for ax in (loss_ax, valid_ax):
        if best_epoch:
            ax.axvline(best_epoch, color="k", linestyle="--", linewidth=1,
                       label=f"kept: epoch {best_epoch}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return write_figure(fig, path)
