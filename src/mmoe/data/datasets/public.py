"""What the public recommender data sets share on their way from their published files to
Parquet: ``train/``, ``valid/`` and ``test/`` shards that appear at once, a validation split by
a stable hash (the same rows on every machine), distinct values counted on the training rows,
and an ``mmoe.toml`` stating every input column's feature spec from those counts (ids with
more than :data:`~mmoe.data.inference.HASH_ABOVE` values hashed into
:func:`~mmoe.config.default_buckets` buckets, the others given a vocabulary), so
`mmoe train --config DIR/mmoe.toml` infers nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tomli_w

from ... import _checks
from ..._fileio import AtomicFile, atomic_dir, write_json
from ..ids import id_keys, stable_hash
from ..inference import sized
from ..writers import ParquetShards

SPLITS = ("train", "valid", "test")
_SCALE = 1_000_000


def in_valid(keys: pa.Array | pa.ChunkedArray, fraction: float) -> np.ndarray:
    """Which rows go to validation: those whose key's stable hash falls in the first
    ``fraction`` of the hash range (all rows of one key go together).

    Args:
        keys: (N,) one key per row (a sample or session id).
        fraction: the share of keys held out, in [0, 1).

    Returns:
        (N,) bool.

    Example:
        >>> mask = in_valid(pa.array([str(i) for i in range(10_000)]), 0.1)
        >>> bool(0.08 < mask.mean() < 0.12)
        True
    """
    text, _ = id_keys(keys)
    return (stable_hash(text) % np.uint64(_SCALE)) < np.uint64(round(fraction * _SCALE))


@dataclass
class Distinct:
    """Distinct values of some columns over the tables added (a list column: of its
    elements), and the longest list.

    Example:
        >>> d = Distinct(["u", "h"])
        >>> d.add(pa.table({"u": [1, 1, 2], "h": [[5, 6], [], None]}))
        >>> d.counts(), d.longest["h"]
        ({'u': 2, 'h': 2}, 2)
    """

    columns: Sequence[str]
    values: dict[str, set] = field(init=False)
    longest: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.values = {c: set() for c in self.columns}
        self.longest = dict.fromkeys(self.columns, 0)

    def add(self, table: pa.Table) -> None:
        for name in self.columns:
            column = table[name]
            if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
                lengths = pc.list_value_length(column).fill_null(0)
                self.longest[name] = max(self.longest[name], int(pc.max(lengths).as_py() or 0))
                column = pc.list_flatten(column)
            self.values[name].update(pc.unique(column.drop_null()).to_pylist())

    def counts(self) -> dict[str, int]:
        return {name: len(values) for name, values in self.values.items()}


def feature_specs(distinct: Distinct, ids: Iterable[str], sequences: Iterable[str] = (),
                  max_len: int = 50) -> dict[str, dict[str, Any]]:
    """``[features.NAME]`` tables for id and sequence columns from their training counts.

    Example:
        >>> d = Distinct(["g", "u", "h"])
        >>> d.add(pa.table({"g": [1, 2], "u": list(range(2)), "h": [[1, 2, 3], [4]]}))
        >>> d.values["u"] = set(range(5000))
        >>> specs = feature_specs(d, ["g", "u"], ["h"])
        >>> specs["g"], specs["u"], specs["h"]
        ({'kind': 'categorical'}, {'kind': 'hashed', 'buckets': 16384}, \
{'kind': 'sequence', 'max_len': 3})
    """
    counts = distinct.counts()
    specs: dict[str, dict[str, Any]] = {name: sized("id", counts[name]) for name in ids}
    for name in sequences:
        spec = sized("sequence", counts[name])
        specs[name] = {"kind": "sequence", "max_len": max(1, min(max_len, distinct.longest[name])),
                       **({"buckets": spec["buckets"]} if spec["buckets"] else {})}
    return specs


@dataclass(frozen=True)
class Layout:
    """What a converted data set's ``mmoe.toml`` says beyond the feature specs.

    Args:
        name: the data set's name in messages.
        source: where it comes from (the file's first comment).
        tasks: task strings (``COLUMN:KIND[:POSITIVE][:after=TASK]``).
        ids: id columns (hashed or given a vocabulary by their training counts).
        sequences: list columns.
        exclude: columns that are not inputs (keys, row numbers).
        group_by: the column that per-group metrics (GAUC) group rows by.
    """

    name: str
    source: str
    tasks: tuple[str, ...]
    ids: tuple[str, ...]
    sequences: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    group_by: str | None = None


def config_text(layout: Layout, specs: dict[str, dict[str, Any]]) -> str:
    """``mmoe.toml`` of a converted data set (relative paths: the file sits beside the splits).

    Example:
        >>> text = config_text(Layout("x", "x", ("click:binary:1",), ("u",), group_by="u"),
        ...                    {"u": {"kind": "categorical"}})
        >>> import tomllib
        >>> tomllib.loads(text)["features"]["u"], tomllib.loads(text)["columns"]
        ({'kind': 'categorical'}, {'group_by': 'u'})
    """
    columns: dict[str, Any] = {}
    if layout.exclude:
        columns["exclude"] = list(layout.exclude)
    if layout.group_by:
        columns["group_by"] = layout.group_by
    doc = {"tasks": list(layout.tasks), "data": {"train": "train", "valid": "valid"},
           "columns": columns, "features": specs}
    group = f" --group-by {layout.group_by}" if layout.group_by else ""
    return (f"# {layout.source}\n# mmoe train --config THIS_FILE --out MODEL\n"
            f"# mmoe evaluate MODEL THIS_DIR/test{group}\n" + tomli_w.dumps(doc))


def write_splits(out: str | os.PathLike, blocks: Iterator[tuple[str, pa.Table]],
                 layout: Layout, info: Callable[[], dict[str, Any]], *, shard_rows: int = 1_000_000,
                 max_len: int = 50, progress: Callable[[int], None] | None = None) -> Path:
    """Write a converted data set to directory ``out`` (created whole, atomically).

    Args:
        out: the directory to create (must not exist, or be empty).
        blocks: ``(split, table)`` pairs in order, split one of :data:`SPLITS`.
        layout: the tasks and column roles.
        info: called once every block is written: what to record in ``dataset.json``
            (source files, their sha256, what the conversion dropped), beside the rows per
            split and the distinct values of the training rows.
        shard_rows: rows per Parquet file.
        max_len: the most ids a sequence spec keeps per row.
        progress: called with the rows of each block written.

    Returns:
        ``out``, holding ``train/``, ``valid/``, ``test/``, ``mmoe.toml`` and ``dataset.json``.

    Example:
        >>> t = pa.table({"u": [1, 2, 3], "click": [0, 1, 0]})
        >>> out = write_splits(tmp_path / "d", iter([("train", t), ("valid", t), ("test", t)]),
        ...                    Layout("x", "x", ("click:binary:1",), ("u",)), dict)
        >>> sorted(p.name for p in out.iterdir())
        ['dataset.json', 'mmoe.toml', 'test', 'train', 'valid']
    """
    distinct = Distinct([*layout.ids, *layout.sequences])
    rows = dict.fromkeys(SPLITS, 0)
    with atomic_dir(out) as stage:
        shards = {name: ParquetShards(stage / name, shard_rows) for name in SPLITS}
        for split, table in blocks:
            shards[split].add(table)
            rows[split] += table.num_rows
            if split == "train":
                distinct.add(table)
            if progress is not None:
                progress(table.num_rows)
        for name in SPLITS:
            shards[name].close()
            _checks.check(rows[name] > 0, f"{layout.name}: the {name} split came out empty; "
                          "read more rows (or a smaller validation share)")
        specs = feature_specs(distinct, layout.ids, layout.sequences, max_len)
        write_json(stage / "dataset.json", {**info(), "rows": rows,
                                            "distinct_in_train": distinct.counts()})
        with AtomicFile(stage / "mmoe.toml") as f:
            f.handle.write(config_text(layout, specs).encode())
    return Path(out)
