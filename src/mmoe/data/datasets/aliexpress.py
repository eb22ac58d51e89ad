"""AliExpress (Li et al., CIKM 2020; the search logs of four countries) from its published
files to Parquet shards with stated feature specs, one data set per country.

Published (https://tianchi.aliyun.com/dataset/74690): ``AliExpress_{NL,ES,FR,US}.zip``, each
holding ``train.csv`` and ``test.csv`` with the header ``search_id, categorical_1 ..
categorical_16, numerical_1 .. numerical_63, click, conversion`` (integer-coded categories,
numbers already scaled). Each country here: the same columns with ``conversion`` named
``purchase`` (declared ``after = "click"``), the categorical columns as int64 ids (a
vocabulary, or hashed beyond the threshold, by their training counts), the numerical ones
float32, ``search_id`` kept out of the inputs and used to group rows for per-search GAUC.
Validation: a stable hash of ``search_id`` holds out ``valid_fraction`` of the searches of
``train.csv``; test: ``test.csv``. Conversions without a click are dropped and counted.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ... import _checks
from ..fetch import ALIEXPRESS_COUNTRIES, recorded_checksums
from .public import Layout, in_valid, write_splits

CATEGORICAL = tuple(f"categorical_{i}" for i in range(1, 17))
NUMERICAL = tuple(f"numerical_{i}" for i in range(1, 64))
HEADER = ("search_id", *CATEGORICAL, *NUMERICAL, "click", "conversion")
BLOCK_BYTES = 1 << 24  # CSV bytes parsed at once


def archive_name(country: str) -> str:
    """The published file of one country.

    Example:
        >>> archive_name("NL")
        'AliExpress_NL.zip'
    """
    _checks.one_of(country, ALIEXPRESS_COUNTRIES, "AliExpress country")
    return f"AliExpress_{country}.zip"


def layout(country: str) -> Layout:
    """Tasks and column roles of one country's data set."""
    return Layout(
        name=f"aliexpress {country}",
        source=f"AliExpress {country} (https://tianchi.aliyun.com/dataset/74690), converted by "
               "mmoe data fetch aliexpress",
        tasks=("click:binary:1", "purchase:binary:1:after=click"),
        ids=CATEGORICAL, exclude=("search_id",), group_by="search_id")


@contextlib.contextmanager
def _member(archive: Path, name: str) -> Iterator[IO[bytes]]:
    """``name`` (in any folder of the zip) streamed out of ``archive``."""
    if not archive.is_file():
        raise FileNotFoundError(f"aliexpress: {archive} not found; run `mmoe data fetch "
                                f"aliexpress --data-dir {archive.parent}`")
    try:
        with zipfile.ZipFile(archive) as zf:
            found = [i for i in zf.infolist()
                     if Path(i.filename).name == name and not i.is_dir()
                     and not Path(i.filename).name.startswith("._")]
            _checks.check(len(found) == 1, f"aliexpress: {archive} holds "
                          f"{len(found) or 'no'} file(s) named {name}; expected one")
            with zf.open(found[0]) as handle:
                yield handle
    except zipfile.BadZipFile as err:
        raise ValueError(f"aliexpress: {archive} is not a readable zip ({err}); delete it and "
                         "fetch it again") from err


def rows(archive: Path, name: str, dropped: dict[str, int]) -> Iterator[pa.Table]:
    """The rows of ``name`` in ``archive`` as Arrow tables, typed and with ``purchase``."""
    types = {"search_id": pa.int64(), "click": pa.int8(), "conversion": pa.int8(),
             **dict.fromkeys(CATEGORICAL, pa.int64()),
             **dict.fromkeys(NUMERICAL, pa.float32())}
    where = f"{archive}:{name}"
    with _member(archive, name) as handle:
        try:
            reader = pacsv.open_csv(
                handle, read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
                convert_options=pacsv.ConvertOptions(column_types=types))
        except pa.ArrowInvalid as err:
            raise ValueError(f"aliexpress: {where} is not a readable CSV ({err})") from err
        got = tuple(reader.schema.names)
        if got != HEADER:
            _checks.fail(f"aliexpress: {where} does not have the published header (search_id, "
                         f"categorical_1..16, numerical_1..63, click, conversion): missing "
                         f"{_some(c for c in HEADER if c not in got)}, unexpected "
                         f"{_some(c for c in got if c not in HEADER)}")
        try:
            for batch in reader:
                yield _typed(pa.Table.from_batches([batch]), where, dropped)
        except pa.ArrowInvalid as err:
            raise ValueError(f"aliexpress: {where}: {err}") from err


def _some(names: Iterable[str], shown: int = 4) -> str:
    names = list(names)
    if not names:
        return "none"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _typed(table: pa.Table, where: str, dropped: dict[str, int]) -> pa.Table:
    click, conversion = table["click"], table["conversion"]
    for label, values in (("click", click), ("conversion", conversion)):
        binary = pc.all(pc.is_in(values, value_set=pa.array([0, 1], pa.int8()))).as_py()
        _checks.check(values.null_count == 0 and binary is not False,
                      f"aliexpress: {where}: column {label} holds values other than 0 and 1")
    orphan = pc.and_(pc.equal(conversion, 1), pc.equal(click, 0))
    dropped["purchase_without_click"] += int(pc.sum(orphan).as_py() or 0)
    table = table.filter(pc.invert(orphan))
    return table.rename_columns([*table.column_names[:-1], "purchase"])


def convert_aliexpress(directory: str | os.PathLike, out: str | os.PathLike,
                       countries: Sequence[str] = ALIEXPRESS_COUNTRIES, *,
                       valid_fraction: float = 0.1, shard_rows: int = 1_000_000,
                       progress: Callable[[int], None] | None = None) -> list[Path]:
    """Convert the published AliExpress files in ``directory`` to one Parquet data set per
    country, ``out/NL``, ``out/ES``, ...

    Args:
        directory: holds ``AliExpress_NL.zip`` etc.
        out: parent of the per-country directories (each created whole: ``train/``,
            ``valid/``, ``test/``, ``mmoe.toml``, ``dataset.json``).
        countries: which of NL, ES, FR, US.
        valid_fraction: share of the training searches held out for validation.
        shard_rows: rows per Parquet file.
        progress: called with the rows of each block converted.

    Returns:
        The per-country directories.
    """
    directory, out = Path(directory), Path(out)
    _checks.check(0 < valid_fraction < 1, f"valid_fraction must be in (0, 1), got "
                  f"{valid_fraction!r}")
    names = [archive_name(c) for c in countries]
    recorded = recorded_checksums(directory)
    created = not out.exists()
    try:
        return [_convert(directory / name, out / country, country, valid_fraction, shard_rows,
                         progress, recorded.get(name))
                for country, name in zip(countries, names, strict=True)]
    finally:  # a failure leaves no empty parent behind
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def _convert(archive: Path, out: Path, country: str, valid_fraction: float, shard_rows: int,
             progress: Callable[[int], None] | None, sha256: str | None) -> Path:
    dropped = {"purchase_without_click": 0}

    def blocks() -> Iterator[tuple[str, pa.Table]]:
        for table in rows(archive, "train.csv", dropped):
            held = pa.array(in_valid(table["search_id"], valid_fraction))
            yield "train", table.filter(pc.invert(held))
            yield "valid", table.filter(held)
        for table in rows(archive, "test.csv", dropped):
            yield "test", table

    return write_splits(out, blocks(), layout(country), lambda: {
        "data_set": f"aliexpress-{country}", "sha256": {archive.name: sha256},
        "valid_fraction": valid_fraction, "renamed": {"conversion": "purchase"},
        "met": dropped}, shard_rows=shard_rows, progress=progress)
