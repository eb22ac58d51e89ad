"""The raw columns of a model directory's inputs as the raw-column ONNX graph reads them
(:mod:`mmoe.app.export_raw`): which inputs it takes and of what type, the feeds for a
DataFrame read as `mmoe predict` reads it, sample rows to check a graph on, and a graph's
answers as `mmoe predict`'s columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data.columns import require, to_numeric, value_keys
from ..data.encoders import TableEncoder
from ..data.ids import id_keys, sequence_cells


def raw_inputs(encoder: TableEncoder) -> list[tuple[str, str]]:
    """The raw graph's inputs in order: (column, ``double``, ``string`` or ``sequence``: a
    string of ids joined by the column's delimiter)."""
    lookups = list(encoder.lookup.specs.values()) if encoder.lookup else []
    return [(c, "double") for c in encoder.numeric] + \
        [(c, "string") for c in encoder.categorical] + \
        [(s.name, "sequence" if s.kind == "sequence" else "string") for s in lookups]


def raw_feeds(encoder: TableEncoder, df: pd.DataFrame) -> dict[str, np.ndarray]:
    """The raw graph's inputs from a DataFrame, as `mmoe predict` reads it: numeric columns
    as float64 (NaN missing), the others as mmoe's text keys (``""`` missing).

    Example:
        >>> from mmoe import TaskSpec
        >>> enc = TableEncoder([TaskSpec("y")]).fit(pd.DataFrame(
        ...     {"a": [1.0, 2.0], "c": ["x", "y"], "y": [0, 1]}))
        >>> {k: v.tolist() for k, v in raw_feeds(enc, pd.DataFrame({"a": [None],
        ...                                                          "c": [3.0]})).items()}
        {'a': [nan], 'c': ['3']}
    """
    feeds: dict[str, np.ndarray] = {}
    for col, kind in raw_inputs(encoder):
        series = require(df, col, "numeric" if kind == "double" else "categorical")
        if kind == "double":
            feeds[col] = np.asarray(to_numeric(series, col), dtype=np.float64)
        elif kind == "sequence":
            feeds[col] = _joined_ids(series, encoder.lookup.specs[col].delimiter)
        elif col in encoder.categorical:
            feeds[col] = value_keys(series).fillna("").to_numpy(dtype=object).astype(str)
        else:
            feeds[col] = id_keys(series)[0].astype(str)
    return feeds


def _joined_ids(series: pd.Series, delimiter: str) -> np.ndarray:
    """A sequence column as the raw graph reads it: each row's ids, as mmoe keys them,
    joined by ``delimiter`` (a list cell or a text cell alike; ``""`` for none)."""
    flat, lengths = sequence_cells(series, delimiter)
    keys = id_keys(flat)[0].tolist()
    ends = np.cumsum(lengths)
    return np.asarray([delimiter.join(keys[e - n:e]) for e, n in zip(ends, lengths,
                                                                      strict=True)],
                      dtype=object).astype(str)


def raw_sample_frame(encoder: TableEncoder, rows: int = 64, seed: int = 0) -> pd.DataFrame:
    """Rows to check a raw graph on: numbers around each column's training values and beyond
    (a tenth missing), categories from the vocabularies plus unseen and missing ones."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for col in encoder.numeric:
        enc = encoder.encodings[col]
        points = np.asarray(enc.points) if enc.points else np.array([enc.mean])
        lo, hi = points.min() - enc.std, points.max() + enc.std
        values = np.where(rng.random(rows) < 0.5, rng.choice(points, rows),
                          rng.uniform(lo, hi, rows))
        cols[col] = np.where(rng.random(rows) < 0.1, np.nan, values)
    vocabs = {c: encoder.vocab[c] for c in encoder.categorical}
    if encoder.lookup is not None:
        vocabs |= {n: encoder.lookup.vocab[encoder.lookup.owner(n).name]
                   for n in encoder.lookup.specs}
    for col, vocab in vocabs.items():
        pool = np.asarray(list(vocab) + ["__unseen__"], dtype=object)
        spec = encoder.lookup.specs.get(col) if encoder.lookup is not None else None
        if spec is not None and spec.kind == "sequence":  # 0 to 2 max_len ids per row
            values = np.asarray([spec.delimiter.join(rng.choice(pool, rng.integers(
                0, 2 * spec.max_len + 1))) for _ in range(rows)], dtype=object)
        else:
            values = pool[rng.integers(0, len(pool), rows)]
        cols[col] = np.where(rng.random(rows) < 0.1, None, values)
    return pd.DataFrame(cols)


def run_graph(session: Any, encoder: TableEncoder, feeds: dict[str, np.ndarray]
              ) -> dict[str, np.ndarray]:
    """A raw graph's answers for ``feeds``, as `mmoe predict`'s columns (ids aside): a
    multiclass task's ``<task>_proba`` (B, C) spread into ``<task>_proba_<class>`` columns."""
    names = [o.name for o in session.get_outputs()]
    classes = {t.name: t.classes for t in encoder.tasks if t.kind == "multiclass"}
    out: dict[str, np.ndarray] = {}
    for name, value in zip(names, session.run(names, feeds), strict=True):
        task = name.removesuffix("_proba")
        if name.endswith("_proba") and task in classes:
            out.update({f"{task}_proba_{c}": value[:, j] for j, c in enumerate(classes[task])})
        else:
            out[name] = value
    return out


def raw_outputs(session: Any, encoder: TableEncoder, df: pd.DataFrame) -> pd.DataFrame:
    """A raw graph's answers for ``df``, as `mmoe predict`'s columns (ids aside)."""
    return pd.DataFrame(run_graph(session, encoder, raw_feeds(encoder, df)))
