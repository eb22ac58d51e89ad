"""The gate heatmap: tasks x experts, mean gate weight per cell."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from .._fileio import write_figure


def gate_heatmap(utilisation: pd.DataFrame, path: str | os.PathLike,
                 title: str = "mean gate weight") -> Path:
    """Write a heatmap PNG of mean gate weights, one row per task gate and one column per
    expert, with the value in each cell (NaN cells, experts a gate cannot see, stay blank).

    Args:
        utilisation: gates (rows) x experts (columns), values in [0, 1].
        path: the PNG to write (atomically).
        title: the figure's title.

    Returns:
        ``path``.

    Example:
        >>> frame = pd.DataFrame({"e0": [0.7, 0.2], "e1": [0.3, 0.8]}, index=["a", "b"])
        >>> gate_heatmap(frame, tmp_path / "g.png").read_bytes()[:4]
        b'\\x89PNG'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = utilisation.shape
    values = utilisation.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * cols, 1.2 + 0.5 * rows))
    image = ax.imshow(values, cmap="viridis", vmin=0.0,
                      vmax=max(float(pd.Series(values.ravel()).max()), 1e-9), aspect="auto")
    ax.set_xticks(range(cols), [str(c) for c in utilisation.columns], rotation=45, ha="right")
    ax.set_yticks(range(rows), [str(r) for r in utilisation.index])
    for i in range(rows):
        for j in range(cols):
            if not math.isnan(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="w")
    ax.set_xlabel("expert")
    ax.set_ylabel("task gate")
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return write_figure(fig, path, dpi=120)
