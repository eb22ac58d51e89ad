"""Table files: which format a file is, and where a data row or a bad byte sits in it (the
line of a CSV file, header = line 1; the row index of a Parquet file), for errors that name
the place in the file the user can open."""

from __future__ import annotations

import csv
import gzip
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .. import _checks

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.gzip", ".txt", ".txt.gz")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


def table_format(path: str | os.PathLike) -> str:
    """``"csv"`` or ``"parquet"`` from the file name (a directory: Parquet shards); anything
    else is an error naming it.

    Example:
        >>> table_format("rows.csv.gz"), table_format("rows.parquet")
        ('csv', 'parquet')
    """
    if Path(path).is_dir():
        return "parquet"
    name = Path(path).name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    _checks.fail(f"'{path}': unknown table format; use a .csv, .csv.gz or .parquet file")
    return ""  # unreachable


def parquet_shards(path: str | os.PathLike) -> list[Path]:
    """The Parquet files of a directory of shards (``part-00000.parquet`` ...), in name order;
    a directory without any is an error.

    Example:
        >>> Path("shards").mkdir(); demo.to_parquet("shards/part-1.parquet")
        >>> [p.name for p in parquet_shards("shards")]
        ['part-1.parquet']
    """
    path = Path(path)
    shards = sorted(p for p in path.iterdir()
                    if p.is_file() and p.name.lower().endswith(PARQUET_SUFFIXES))
    _checks.check(bool(shards), f"directory '{path}' holds no Parquet files (*.parquet); pass "
                  "a CSV or Parquet file, or a directory of Parquet shards")
    return shards


def parquet_rows(path: str | os.PathLike) -> int | None:
    """The rows of a Parquet file or directory of shards, from their footers (no data read);
    ``None`` for a CSV file, whose rows are known only by reading it.

    Example:
        >>> demo.to_parquet("rows.parquet"); demo.to_csv("rows.csv")
        >>> parquet_rows("rows.parquet") == len(demo), parquet_rows("rows.csv")
        (True, None)
    """
    import pyarrow.parquet as pq

    if table_format(path) != "parquet":
        return None
    files = parquet_shards(path) if Path(path).is_dir() else [Path(path)]
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def check_file(path: str | os.PathLike) -> Path:
    """``path`` if it is a readable table: a non-empty CSV or Parquet file, or a directory of
    Parquet shards; else one error naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"file '{path}' does not exist; check the path")
    if path.is_dir():
        for shard in parquet_shards(path):
            check_file(shard)
        return path
    _checks.check(path.is_file(), f"'{path}' is not a file")
    _checks.check(path.stat().st_size > 0, f"file '{path}' is empty; it needs a header row "
                  "and at least one data row")
    table_format(path)
    return path


def gzip_compressed(path: Path) -> bool:
    return path.name.lower().endswith((".gz", ".gzip"))


def csv_input(path: Path) -> pa.NativeFile:
    return pa.input_stream(str(path), compression="gzip" if gzip_compressed(path) else None)


# ---- CSV lines, for errors: the records as pyarrow splits them --------------------------
def csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line, fields)`` of the header (line 1) and of each data record; empty lines are
    skipped where pyarrow skips them (files of several columns); bytes that are not UTF-8
    come back as surrogates (``surrogateescape``). Stops quietly at what csv cannot parse."""
    opener: Any = gzip.open if gzip_compressed(path) else open
    with opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader, last, width = csv.reader(f), 0, None
        try:
            for fields in reader:
                line, last = last + 1, reader.line_num
                if width is None:
                    width = len(fields)
                elif not fields and width > 1:
                    continue
                yield line, fields or [""]
        except csv.Error:
            return


def data_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    records = csv_records(path)
    next(records, None)
    return records


def where_in_file(path: str | os.PathLike, row: int) -> str:
    """Where the data row at position ``row`` is in its file.

    Args:
        path: the CSV / Parquet file the row was read from.
        row: the row's position among the data rows (0-based: the readers' index).

    Returns:
        ``"line N"`` for a CSV file (the header is line 1; empty lines count, as in an
        editor), ``"row index N"`` for a Parquet file, ``"row index N of SHARD"`` for a
        directory of shards.

    Example:
        >>> _ = Path("t.csv").write_text("a,b\\n1,2\\n\\n3,4\\n")
        >>> where_in_file("t.csv", 1), where_in_file("t.parquet", 1)
        ('line 4', 'row index 1')
    """
    path = Path(path)
    if path.is_dir():
        for shard in parquet_shards(path):
            rows = pq.ParquetFile(shard).metadata.num_rows
            if row < rows:
                return f"row index {row} of {shard.name}"
            row -= rows
        return f"row index {row}"
    if table_format(path) == "parquet":
        return f"row index {row}"
    try:
        for i, (line, _) in enumerate(data_records(path)):
            if i == row:
                return f"line {line}"
    except (OSError, EOFError):
        pass
    return f"line {row + 2}"


def text_error(path: Path, widths: bool = False) -> ValueError | None:
    """The error for the first line of ``path`` holding a byte that is not UTF-8 (at its
    column) or, with ``widths``, another number of fields than the header; ``None``: none."""
    names: list[str] | None = None
    try:
        for line, fields in csv_records(path):
            names = fields if names is None else names
            for j, field in enumerate(fields):
                try:
                    field.encode("utf-8")
                except UnicodeEncodeError as err:
                    byte = field[err.start].encode("utf-8", "surrogateescape")[0]
                    col = f"'{names[j]}'" if line > 1 and j < len(names) else f"#{j + 1}"
                    return ValueError(
                        f"file '{path}': line {line}, column {col} is not valid UTF-8 text "
                        f"(byte 0x{byte:02x}); save the file as UTF-8 (e.g. iconv -f latin1 "
                        "-t utf-8)")
            if widths and len(fields) != len(names):
                return ValueError(f"file '{path}': line {line} has {len(fields)} field(s) but "
                                  f"the header has {len(names)}; fix the line (a missing or "
                                  "extra delimiter or quote)")
    except (OSError, EOFError):
        pass
    return None


def bad_text(path: Path) -> ValueError:
    return text_error(path) or ValueError(f"file '{path}' is not valid UTF-8 text; save it "
                                           "as UTF-8")


_CSV_CONVERSION = re.compile(r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error "
                             r"to (\w+): invalid value '(.*)'")


def unreadable(path: Path, err: BaseException) -> ValueError:
    """A one-line error for what pyarrow could not read, at the CSV line where it can."""
    kind, text = table_format(path), str(err)
    if kind == "csv" and ("invalid UTF8" in text or "CSV parse error" in text):
        found = text_error(path, widths="CSV parse error" in text)
        if found is not None:
            return found
    match = _CSV_CONVERSION.search(text)
    if kind == "csv" and match is not None:
        col, value = int(match.group(1)), match.group(3)
        names = next(csv_records(path), (1, []))[1]
        name = names[col] if col < len(names) else f"#{col}"
        line = next((n for n, f in data_records(path) if col < len(f) and f[col] == value),
                    None)
        if line is None and text_error(path) is not None:  # the value is not UTF-8 text
            return bad_text(path)
        where = f" at line {line}" if line else ""
        return ValueError(f"file '{path}': column '{name}' has the non-numeric value {value!r}"
                          f"{where}; fix the value, or declare the column categorical "
                          f"(--categorical {name}) when training")
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return ValueError(f"file '{path}' cannot be read as {kind.upper()}: {first}; check the "
                      "file's format and extension")
