"""Read and write tables: CSV (plain or gzip) and Parquet, whole or in chunks, with pyarrow.

Every error names the file: a missing file, an empty one, an unknown extension or content
pyarrow cannot parse is one ``ValueError`` / ``FileNotFoundError`` line with the fix.

Chunked CSV reading infers column types from the first block, then reads every integer
column as float64 (a later block with a missing value or a decimal must not change its type)
and columns declared categorical as text, so every chunk of a file has the same types.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .. import _checks
from .._fileio import AtomicFile, Transaction

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.gzip", ".txt", ".txt.gz")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
DEFAULT_CHUNK_ROWS = 65_536
_BLOCK_BYTES = 1 << 20  # CSV read block: bounds the memory of one parsing step


def table_format(path: str | os.PathLike) -> str:
    """``"csv"`` or ``"parquet"`` from the file name; anything else is an error naming it.

    Example:
        >>> table_format("rows.csv.gz"), table_format("rows.parquet")
        ('csv', 'parquet')
    """
    name = Path(path).name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    _checks.fail(f"'{path}': unknown table format; use a .csv, .csv.gz or .parquet file")
    return ""  # unreachable


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"file '{path}' does not exist; check the path")
    _checks.check(path.is_file(), f"'{path}' is not a file")
    _checks.check(path.stat().st_size > 0, f"file '{path}' is empty; it needs a header row "
                  "and at least one data row")
    table_format(path)
    return path


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


_CSV_CONVERSION = re.compile(r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error "
                             r"to (\w+): invalid value '(.*)'")


def _unreadable(path: Path, err: BaseException) -> ValueError:
    kind = table_format(path)
    match = _CSV_CONVERSION.search(str(err))
    if match is not None and kind == "csv":
        col, row, _, value = match.groups()
        try:
            name = _csv_header(path)[int(col)]
        except (IndexError, pa.ArrowInvalid, OSError):
            name = f"#{col}"
        where = f" at line {row}" if row else ""
        return ValueError(f"file '{path}': column '{name}' has the non-numeric value {value!r}"
                          f"{where}; fix the value, or declare the column categorical "
                          f"(--categorical {name}) when training")
    return ValueError(f"file '{path}' cannot be read as {kind.upper()}: {_first_line(err)}; "
                      "check the file's format and extension")


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(split_blocks=True, self_destruct=True)


def _csv_convert(categorical: Sequence[str] = (),
                 column_types: dict[str, pa.DataType] | None = None) -> pacsv.ConvertOptions:
    types = {c: pa.string() for c in categorical}
    types.update(column_types or {})
    return pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)


def _check_columns(path: Path, have: Sequence[str], want: Sequence[str] | None) -> None:
    if want is None:
        return
    missing = [c for c in want if c not in have]
    if missing:
        shown = ", ".join(list(have)[:12]) + (", ..." if len(have) > 12 else "")
        _checks.fail(f"file '{path}': column(s) {', '.join(map(repr, missing))} not found "
                     f"(columns: {shown}); fix the column name or the file")


def read_table(path: str | os.PathLike, columns: Sequence[str] | None = None,
               categorical: Sequence[str] = ()) -> pd.DataFrame:
    """Read a whole CSV / CSV.gz / Parquet file into a DataFrame.

    Args:
        path: the file; the format comes from its extension.
        columns: read only these columns (all must exist); ``None``: all.
        categorical: columns read as text whatever their content (CSV; Parquet keeps its
            stored types and the encoder treats the column as categorical).

    Returns:
        The rows, missing values as NaN/None.

    Example:
        >>> demo.to_csv("rows.csv.gz", index=False)
        >>> df = read_table("rows.csv.gz", categorical=["city"])
        >>> df.shape, df["city"].dtype.kind
        ((400, 7), 'O')
    """
    path = _check_file(path)
    try:
        if table_format(path) == "parquet":
            pf = pq.ParquetFile(path)
            _check_columns(path, pf.schema_arrow.names, columns)
            table = pf.read(columns=list(columns) if columns is not None else None)
        else:
            header = _csv_header(path)
            _check_columns(path, header, columns)
            table = pacsv.read_csv(
                path, parse_options=_csv_parse(header), convert_options=_csv_convert(
                    [c for c in categorical if c in header]))
            if columns is not None:
                table = table.select(list(columns))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, EOFError) as err:
        raise _unreadable(path, err) from None
    _checks.check(table.num_rows > 0, f"file '{path}' has no data rows")
    return _to_pandas(table)


def _csv_parse(header: Sequence[str]) -> pacsv.ParseOptions:
    """In a one-column file an empty line is a missing value, not a line to skip (skipping
    it would silently drop the row)."""
    return pacsv.ParseOptions(ignore_empty_lines=len(header) > 1)


def _csv_header(path: Path) -> list[str]:
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES))
    return reader.schema.names


def _stable_csv_types(schema: pa.Schema, categorical: Sequence[str]) -> dict[str, pa.DataType]:
    """Types fixed for every chunk: integers (and all-null columns) widen to float64/text."""
    types: dict[str, pa.DataType] = {}
    for field in schema:
        if field.name in categorical:
            types[field.name] = pa.string()
        elif pa.types.is_integer(field.type) or pa.types.is_floating(field.type):
            types[field.name] = pa.float64()
        elif pa.types.is_null(field.type):
            types[field.name] = pa.string()
    return types


def iter_table(path: str | os.PathLike, chunk_rows: int = DEFAULT_CHUNK_ROWS,
               columns: Sequence[str] | None = None,
               categorical: Sequence[str] = ()) -> Iterator[pd.DataFrame]:
    """Yield a file's rows as DataFrames of at most ``chunk_rows`` rows, in file order.

    Memory is bounded by one chunk (and, for Parquet, one row group), not by the file.

    Args:
        path: CSV / CSV.gz / Parquet file.
        chunk_rows: rows per chunk.
        columns: read only these columns (all must exist).
        categorical: CSV columns read as text.

    Example:
        >>> demo.to_parquet("rows.parquet")
        >>> [len(c) for c in iter_table("rows.parquet", 150)]
        [150, 150, 100]
    """
    path = _check_file(path)
    _checks.positive_int(chunk_rows, "chunk_rows")
    any_rows = False
    try:
        if table_format(path) == "parquet":
            pf = pq.ParquetFile(path)
            _check_columns(path, pf.schema_arrow.names, columns)
            batches = pf.iter_batches(batch_size=chunk_rows,
                                      columns=list(columns) if columns is not None else None)
        else:
            header = _csv_header(path)
            _check_columns(path, header, columns)
            first = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
                                   parse_options=_csv_parse(header),
                                   convert_options=_csv_convert(categorical))
            types = _stable_csv_types(first.schema, categorical)
            reader = pacsv.open_csv(
                path, read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
                parse_options=_csv_parse(header), convert_options=pacsv.ConvertOptions(
                    column_types=types, strings_can_be_null=True,
                    include_columns=list(columns) if columns is not None else None))
            batches = _rebatch(reader, chunk_rows)
        for batch in batches:
            if batch.num_rows:
                any_rows = True
                yield _to_pandas(pa.Table.from_batches([batch]))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, EOFError) as err:
        raise _unreadable(path, err) from None
    _checks.check(any_rows, f"file '{path}' has no data rows")


def _rebatch(reader: Any, rows: int) -> Iterator[pa.RecordBatch]:
    """Regroup a CSV reader's blocks into batches of exactly ``rows`` rows (last: fewer)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in reader:
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending).combine_chunks()
            yield table.slice(0, rows).to_batches()[0]
            rest = table.slice(rows)
            pending = rest.to_batches() if rest.num_rows else []
            count = rest.num_rows
    if count:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


class TableWriter(Transaction):
    """Write DataFrames chunk by chunk to CSV or Parquet (by extension), atomically.

    Rows go to a temporary file beside ``path`` (:class:`mmoe._fileio.AtomicFile`);
    :meth:`commit` (or :meth:`close`) moves it over ``path``. Leaving the ``with`` block on an
    error deletes the temporary file and leaves any existing ``path`` untouched.

    Example:
        >>> with TableWriter(tmp_path / "out.parquet") as w:
        ...     for chunk in (pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [3]})):
        ...         w.write(chunk)
        >>> w.rows, read_table(tmp_path / "out.parquet")["a"].tolist()
        (3, [1, 2, 3])
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.format = table_format(self.path)
        if self.path.is_dir():
            _checks.fail(f"output '{self.path}' is a directory; give a file name")
        self._file = AtomicFile(self.path)
        self._file.handle.close()  # pyarrow writes the temporary file by name
        self.tmp = self._file.tmp
        self._writer: Any = None
        self._sink: Any = None
        self._schema: pa.Schema | None = None
        self.rows = 0

    def write(self, df: pd.DataFrame) -> None:
        """Append ``df``'s rows (same columns every call)."""
        table = pa.Table.from_pandas(df, preserve_index=False)
        if self._writer is None:
            self._schema = table.schema
            if self.format == "parquet":
                self._writer = pq.ParquetWriter(self.tmp, table.schema)
            else:
                self._sink = pa.CompressedOutputStream(str(self.tmp), "gzip") \
                    if self.path.name.lower().endswith((".gz", ".gzip")) \
                    else pa.OSFile(str(self.tmp), "wb")
                self._writer = pacsv.CSVWriter(self._sink, table.schema)
        else:
            table = table.cast(self._schema)
        self._writer.write_table(table)
        self.rows += len(df)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._sink is not None:
            self._sink.close()

    def commit(self) -> Path:
        """Finish the file and move it into place."""
        if self._writer is None:
            self.abort()
            _checks.fail(f"no rows were written to '{self.path}'")
        self._close_writer()
        return self._file.commit()

    def abort(self) -> None:
        """Drop the temporary file; ``path`` is left as it was."""
        try:
            self._close_writer()
        finally:
            self._file.abort()

    close = commit


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` to CSV / CSV.gz / Parquet by extension, atomically.

    Example:
        >>> write_table(pd.DataFrame({"a": [1]}), "a.csv").read_text().splitlines()
        ['"a"', '1']
    """
    with TableWriter(path) as writer:
        writer.write(df)
    return Path(path)
