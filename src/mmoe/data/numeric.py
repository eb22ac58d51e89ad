"""How a numeric column becomes model inputs, fitted on the training rows only.

- ``standard``: (x − mean) / std, one input;
- ``quantile``: Φ⁻¹ of the value's rank among the training values (a quantile-normal
  transform: heavy tails and outliers land on a normal scale), one input;
- ``ple``: piecewise-linear encoding (Gorishniy et al., NeurIPS 2022, "On Embeddings for
  Numerical Features in Tabular Deep Learning", eq. 1): bin edges b_0 < ... < b_T from
  training quantiles (or, for a column with at most T + 1 distinct values, or whole numbers
  with at most :data:`CODES` of them, those values), and T inputs

      e_t(x) = clip((x − b_{t−1}) / (b_t − b_{t−1}), 0, 1),   t = 1..T,

  so the network sees where a value falls among the training values and can bend its
  response at every edge, as a tree splits;
- ``periodic``: (x − mean) / std here, one input, which the model embeds with learnt
  frequencies (Gorishniy et al. 2022, the "PLR" embedding: cos and sin of 2π c_j x, then a
  linear layer and a ReLU; :class:`mmoe.nn.PeriodicEmbedding`).

A missing value gives zeros (the training mean for ``standard``, the median for ``quantile``,
no bin for ``ple``); the column's missing indicator (:class:`~mmoe.data.encoders.TableEncoder`)
says it was missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtri

from .. import _checks
from ..config.features import NUMERIC_ENCODINGS
from .columns import mean_std

#: reference points of the quantile transform, and the default number of PLE bins
QUANTILES, PLE_BINS = 1000, 64
#: whole numbers with at most this many distinct values (codes: a school, a county) get
#: an edge per value whatever the number of bins, so no two codes share a bin: on the
#: tabular suite's validation splits, `Star`'s school id (79 codes) took its three tasks'
#: mean gap to boosting from -0.015 to -0.009 (three splits; docs/tabular.md)
CODES = 128
_CLIP = 1e-7  # the quantile transform's ranks stay inside (0, 1)


@dataclass(frozen=True)
class NumericEncoding:
    """One column's fitted encoding.

    Args:
        kind: ``standard``, ``quantile``, ``ple`` or ``periodic``.
        mean, std: ``standard``'s statistics.
        points: ``quantile``: the training quantiles at ranks 0..1 (``QUANTILES`` of them);
            ``ple``: the bin edges (strictly increasing).

    Example:
        >>> enc = fit_numeric(np.arange(8) / 2, "ple", bins=4)
        >>> enc.points, enc.width
        ((0.0, 0.875, 1.75, 2.625, 3.5), 4)
        >>> enc.transform(np.array([1.3125, np.nan])).tolist()
        [[1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
        >>> fit_numeric(np.array([0.0, 1.0, 1.0, 3.5]), "ple").points  # few values: their own
        (0.0, 1.0, 3.5)
        >>> fit_numeric(np.arange(100.0), "ple", bins=4).width  # 100 codes: an edge each
        99
    """

    kind: str
    mean: float = 0.0
    std: float = 1.0
    points: tuple[float, ...] = ()

    @property
    def width(self) -> int:
        """Inputs the column takes."""
        return max(1, len(self.points) - 1) if self.kind == "ple" else 1

    def transform(self, values: np.ndarray) -> np.ndarray:
        """(N,) floats with NaN for missing -> (N, width) float64, missing as zeros."""
        missing = np.isnan(values)
        if self.kind in ("standard", "periodic"):  # periodic: the model embeds the z-score
            with np.errstate(over="ignore", invalid="ignore"):
                out = ((values - self.mean) / self.std)[:, None]
        elif self.kind == "quantile":
            q = np.asarray(self.points)
            ranks = np.linspace(0.0, 1.0, len(q))
            # sklearn's rule for ties: the mean of the interpolations from below and above
            up = np.interp(values, q, ranks)
            down = -np.interp(-values, -q[::-1], -ranks[::-1])
            out = ndtri(np.clip(0.5 * (up + down), _CLIP, 1 - _CLIP))[:, None]
        else:
            edges = np.asarray(self.points)
            if len(edges) < 2:  # one distinct training value: nothing to place
                out = np.zeros((len(values), 1))
            else:
                with np.errstate(over="ignore"):  # a far value beyond the edges: clipped
                    if np.isinf(np.diff(edges)).any():  # edges further apart than a float64
                        edges, values = edges / 2, values / 2  # holds: halved (exactly)
                    out = np.clip((values[:, None] - edges[:-1]) / np.diff(edges), 0.0, 1.0)
        out[missing] = 0.0
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form (saved with the encoder)."""
        return {"kind": self.kind, "mean": self.mean, "std": self.std,
                "points": list(self.points)}

    @classmethod
    def from_dict(cls, data: Any, column: str) -> NumericEncoding:
        """Inverse of :meth:`to_dict`; content it cannot have written is one ``ValueError``."""
        ok = (isinstance(data, dict) and data.get("kind") in NUMERIC_ENCODINGS
              and all(_finite(data.get(k)) for k in ("mean", "std"))
              and isinstance(data.get("points"), list) and all(map(_finite, data["points"])))
        _checks.check(ok, f"encoder description: the encoding of numeric column '{column}' "
                      "is not one this version wrote")
        points = tuple(float(p) for p in data["points"])
        _checks.check(data["kind"] != "ple" or all(np.diff(points) > 0),
                      f"encoder description: the bin edges of '{column}' are not increasing")
        return cls(data["kind"], float(data["mean"]), float(data["std"]), points)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        bool(np.isfinite(value))


def fit_numeric(values: np.ndarray, kind: str, bins: int | None = None) -> NumericEncoding:
    """Fit ``kind`` on a column's training values (NaN for missing).

    Example:
        >>> enc = fit_numeric(np.exp(np.arange(100.0)), "quantile")
        >>> [round(float(v), 2) for v in enc.transform(np.exp(np.array([0.0, 99.0])))[:, 0]]
        [-5.2, 5.2]
    """
    _checks.one_of(kind, NUMERIC_ENCODINGS, "numeric encoding")
    mean, std = mean_std(values)
    finite = values[~np.isnan(values)]
    if kind in ("standard", "periodic") or finite.size == 0:
        return NumericEncoding(kind if finite.size else "standard", mean, std)
    if kind == "quantile":
        points = np.quantile(finite, np.linspace(0.0, 1.0, min(QUANTILES, finite.size)))
        return NumericEncoding("quantile", mean, std, tuple(map(float, points)))
    bins = _checks.positive_int(PLE_BINS if bins is None else bins, "PLE bins")
    distinct = np.unique(finite)
    # few distinct values (a flag, a count, a year, a code): each value is an edge of its own
    own = bins + 1 if np.any(np.mod(distinct, 1.0)) else max(bins + 1, CODES)
    edges = distinct if len(distinct) <= own else \
        np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)))
    return NumericEncoding("ple", mean, std, tuple(map(float, edges)))


def choose_encoding(values: np.ndarray) -> str:
    """The encoding ``auto`` picks for a column from its training values: ``ple`` for any
    column with two or more distinct values, ``standard`` for a constant one.

    Chosen on the validation splits of the tabular suite (benchmarks/tabular_suite.py, seven
    tables, 20 tasks; docs/tabular.md): the mean gap of mmoe's defaults to the best gradient
    boosting was -0.035 with every column standardised, -0.035 quantile-normal, -0.018 PLE
    with 16 bins, -0.009 with 64 bins (-0.003 with the learning rate 3e-3 too).

    Example:
        >>> choose_encoding(np.arange(100.0)), choose_encoding(np.ones(5))
        ('ple', 'standard')
    """
    finite = values[~np.isnan(values)]
    return "ple" if finite.size and finite.min() < finite.max() else "standard"
