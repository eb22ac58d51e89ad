"""Ali-CCP (Alibaba Click and Conversion Prediction; Ma et al., SIGIR 2018, the ESMM data)
from its published files to Parquet shards with stated feature specs.

Published (https://tianchi.aliyun.com/dataset/408): ``sample_train.tar.gz`` and
``sample_test.tar.gz``, each holding ``sample_skeleton_{train,test}.csv`` (one line per
impression) and ``common_features_{train,test}.csv`` (features shared by many impressions,
mostly the user's):

- skeleton: ``sample_id,click,buy,common_feature_index,feature_count,features``
- common features: ``common_feature_index,feature_count,features``
- features: entries ``FIELD \\x01 FEATURE_ID \\x03 VALUE`` joined by ``\\x02``; a field may
  repeat (a user's 14-day behaviour lists); feature ids are global (one id space over all
  fields, so a category id in ``206`` and in ``109_14`` differ: tables are not shared).

Each row here: ``sample_id``; one column per field of :data:`FIELDS` (an int64 feature id, or
for the list fields a ``list<int64>`` of at most ``max_len`` ids in file order; the values
after ``\\x03``, counts for the behaviour lists and 1 elsewhere, are dropped); the labels
``click`` and ``purchase`` (the published ``buy``). The handful of impressions with a purchase
but no click (a known defect of the release) are dropped and counted. Validation: a stable
hash of ``sample_id`` holds out ``valid_fraction`` of the training file; test: the test file.
Either split may be read from its archive or, when present, from the extracted CSV files.
Memory: the common features of one file are held (at most ``max_len`` ids per list).
"""

from __future__ import annotations

import contextlib
import os
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ... import _checks
from ..fetch import recorded_checksums
from .public import Layout, in_valid, write_splits

ARCHIVES = {"train": "sample_train.tar.gz", "test": "sample_test.tar.gz"}
BLOCK = 100_000  # impressions per Arrow table


@dataclass(frozen=True)
class Field:
    """One feature field: its id in the files, its column here, whether it holds a list."""

    id: str
    column: str
    is_list: bool
    meaning: str


#: the fields of the ESMM paper's data description, in the column order written here
FIELDS: tuple[Field, ...] = (
    Field("101", "user_id", False, "user id"),
    Field("121", "user_profile", False, "user profile category"),
    Field("122", "user_group", False, "user group"),
    Field("124", "user_gender", False, "gender"),
    Field("125", "user_age", False, "age band"),
    Field("126", "user_consumption_1", False, "consumption level I"),
    Field("127", "user_consumption_2", False, "consumption level II"),
    Field("128", "user_occupation", False, "whether the user works"),
    Field("129", "user_geography", False, "geography"),
    Field("109_14", "user_categories", True, "categories the user acted on, 14 days"),
    Field("110_14", "user_shops", True, "shops the user acted on, 14 days"),
    Field("127_14", "user_brands", True, "brands the user acted on, 14 days"),
    Field("150_14", "user_intentions", True, "intention nodes the user acted on, 14 days"),
    Field("205", "item_id", False, "item id"),
    Field("206", "item_category", False, "the item's category"),
    Field("207", "item_shop", False, "the item's shop"),
    Field("210", "item_intentions", True, "the item's intention nodes"),
    Field("216", "item_brand", False, "the item's brand"),
    Field("508", "user_item_category", False, "combination of 109_14 and 206"),
    Field("509", "user_item_shop", False, "combination of 110_14 and 207"),
    Field("702", "user_item_brand", False, "combination of 127_14 and 216"),
    Field("853", "user_item_intention", False, "combination of 150_14 and 210"),
    Field("301", "position", False, "a categorical expression of the position"),
)
_BY_ID = {f.id.encode(): f for f in FIELDS}

LAYOUT = Layout(
    name="ali-ccp",
    source="Ali-CCP (https://tianchi.aliyun.com/dataset/408), converted by mmoe data fetch ali-ccp",
    tasks=("click:binary:1", "purchase:binary:1:after=click"),
    ids=tuple(f.column for f in FIELDS if not f.is_list),
    sequences=tuple(f.column for f in FIELDS if f.is_list),
    exclude=("sample_id",),
    group_by="user_id",
)


@dataclass
class _Tally:
    """What the conversion met, for ``dataset.json``: impressions dropped for a purchase
    without a click, impressions whose common features are missing, lines whose
    feature_count differs from their entries, entries of unknown fields, and extra values of
    fields that should hold one (the first is kept)."""

    purchase_without_click: int = 0
    missing_common: int = 0
    count_mismatch: int = 0
    unknown_fields: Counter = field(default_factory=Counter)
    repeated: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Counter) else v)
                for f in fields(self)}


def parse_features(text: bytes, max_len: int, tally: _Tally) -> dict[str, object]:
    """The known fields of one feature list: column -> feature id (the first, for a field
    that should hold one) or list of ids.

    Example:
        >>> parse_features(b"101\\x0112\\x031.0\\x02109_14\\x017\\x032\\x02109_14\\x019\\x031",
        ...                50, _Tally())
        {'user_id': 12, 'user_categories': [7, 9]}
    """
    row: dict[str, object] = {}
    for entry in text.split(b"\x02"):
        field_id, _, rest = entry.partition(b"\x01")
        feature = rest.partition(b"\x03")[0]
        if not feature:
            continue
        spec = _BY_ID.get(field_id)
        if spec is None:
            tally.unknown_fields[field_id.decode(errors="replace")] += 1
        elif spec.is_list:
            ids = row.setdefault(spec.column, [])
            if len(ids) < max_len:  # type: ignore[arg-type]
                ids.append(int(feature))  # type: ignore[union-attr]
        elif spec.column in row:
            tally.repeated[spec.column] += 1
        else:
            row[spec.column] = int(feature)
    return row


def _entries(text: bytes) -> int:
    return text.count(b"\x02") + 1 if text else 0


def _bad_line(path: str, number: int, what: str) -> ValueError:
    return ValueError(f"{path}, line {number}: {what}; Ali-CCP's published format is "
                      "'sample_id,click,buy,common_feature_index,feature_count,features' "
                      "(skeleton) and 'common_feature_index,feature_count,features' (common "
                      "features)")


@contextlib.contextmanager
def _member(directory: Path, split: str, name: str) -> Iterator[tuple[str, IO[bytes]]]:
    """The lines of ``name``: the extracted file when it is in ``directory``, else streamed
    out of the split's archive (nothing extracted to disk)."""
    plain = directory / name
    if plain.is_file():
        with open(plain, "rb") as f:
            yield str(plain), f
        return
    archive = directory / ARCHIVES[split]
    if not archive.is_file():
        raise FileNotFoundError(f"ali-ccp: neither {plain} nor {archive} exists; run `mmoe data "
                                f"fetch ali-ccp --data-dir {directory}`")
    try:
        with tarfile.open(archive, "r|gz") as tar:
            for info in tar:
                if info.isfile() and Path(info.name).name == name:
                    handle = tar.extractfile(info)
                    assert handle is not None
                    yield f"{archive}:{info.name}", handle
                    return
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"ali-ccp: {archive} is not a readable .tar.gz ({err}); delete it and "
                         "fetch it again") from err
    raise ValueError(f"ali-ccp: {archive} holds no {name}")


def read_common(directory: Path, split: str, max_len: int, tally: _Tally
                ) -> dict[bytes, dict[str, object]]:
    """common_feature_index -> the fields of its feature list."""
    common: dict[bytes, dict[str, object]] = {}
    with _member(directory, split, f"common_features_{split}.csv") as (where, lines):
        for number, line in enumerate(lines, 1):
            parts = line.rstrip(b"\r\n").split(b",", 2)
            if len(parts) != 3 or not parts[1].isdigit():
                raise _bad_line(where, number, f"expected 3 comma-separated fields, got "
                                f"{line[:80]!r}")
            if int(parts[1]) != _entries(parts[2]):
                tally.count_mismatch += 1
            row = parse_features(parts[2], max_len, tally)
            common[parts[0]] = {k: (np.asarray(v, dtype=np.int64) if isinstance(v, list) else v)
                                for k, v in row.items()}
    return common


def impressions(directory: Path, split: str, max_len: int, tally: _Tally,
                max_rows: int | None = None) -> Iterator[pa.Table]:
    """The impressions of ``split`` as Arrow tables of :data:`BLOCK` rows (the last shorter)."""
    common = read_common(directory, split, max_len, tally)
    block: list[tuple[bytes, int, int, dict[str, object]]] = []
    with _member(directory, split, f"sample_skeleton_{split}.csv") as (where, lines):
        for number, line in enumerate(lines, 1):
            if max_rows is not None and number > max_rows:
                break
            parts = line.rstrip(b"\r\n").split(b",", 5)
            if len(parts) != 6 or parts[1] not in (b"0", b"1") or parts[2] not in (b"0", b"1"):
                raise _bad_line(where, number, f"expected 6 comma-separated fields with 0/1 "
                                f"labels, got {line[:80]!r}")
            click, buy = int(parts[1]), int(parts[2])
            if buy and not click:
                tally.purchase_without_click += 1
                continue
            if int(parts[4] or -1) != _entries(parts[5]):
                tally.count_mismatch += 1
            row = parse_features(parts[5], max_len, tally)
            shared = common.get(parts[3])
            if shared is None:
                tally.missing_common += 1
            else:
                row.update(shared)
            block.append((parts[0], click, buy, row))
            if len(block) == BLOCK:
                yield _table(block)
                block = []
    if block:
        yield _table(block)


def _table(block: list[tuple[bytes, int, int, dict[str, object]]]) -> pa.Table:
    columns: dict[str, pa.Array] = {
        "sample_id": pa.array([b[0].decode() for b in block], type=pa.string())}
    for spec in FIELDS:
        values = [b[3].get(spec.column) for b in block]
        columns[spec.column] = pa.array(
            values, type=pa.list_(pa.int64()) if spec.is_list else pa.int64())
    columns["click"] = pa.array([b[1] for b in block], type=pa.int8())
    columns["purchase"] = pa.array([b[2] for b in block], type=pa.int8())
    return pa.table(columns)


def convert_ali_ccp(directory: str | os.PathLike, out: str | os.PathLike, *,
                    max_rows: int | None = None, valid_fraction: float = 0.1,
                    max_len: int = 50, shard_rows: int = 1_000_000,
                    progress: Callable[[int], None] | None = None) -> Path:
    """Convert the published Ali-CCP files in ``directory`` to Parquet shards in ``out``.

    Args:
        directory: holds ``sample_train.tar.gz`` and ``sample_test.tar.gz`` (or their
            extracted CSV files).
        out: the directory to create: ``train/``, ``valid/``, ``test/``, ``mmoe.toml``,
            ``dataset.json``.
        max_rows: read at most this many impressions of each skeleton file (its first lines:
            a prefix, not a random sample); ``None``: all.
        valid_fraction: share of the training impressions held out for validation.
        max_len: the most ids kept per list field.
        shard_rows: rows per Parquet file.
        progress: called with the rows of each block converted.

    Returns:
        ``out``.
    """
    directory = Path(directory)
    _checks.check(0 < valid_fraction < 1, f"valid_fraction must be in (0, 1), got "
                  f"{valid_fraction!r}")
    if max_rows is not None:
        _checks.positive_int(max_rows, "max_rows")
    tally = _Tally()

    def blocks() -> Iterator[tuple[str, pa.Table]]:
        for table in impressions(directory, "train", max_len, tally, max_rows):
            held = pa.array(in_valid(table["sample_id"], valid_fraction))
            yield "train", table.filter(pc.invert(held))
            yield "valid", table.filter(held)
        for table in impressions(directory, "test", max_len, tally, max_rows):
            yield "test", table

    recorded = recorded_checksums(directory)
    return write_splits(out, blocks(), LAYOUT, lambda: {
        "data_set": "ali-ccp", "sha256": {n: recorded.get(n) for n in ARCHIVES.values()},
        "max_rows": max_rows, "valid_fraction": valid_fraction, "max_len": max_len,
        "fields": {f.column: {"field": f.id, "meaning": f.meaning} for f in FIELDS},
        "met": tally.as_dict()}, shard_rows=shard_rows, max_len=max_len, progress=progress)
