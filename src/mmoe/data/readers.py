"""Read tables: CSV (plain or gzip) and Parquet, whole or in chunks, with pyarrow (writing is
:mod:`.writers`; where a row sits in its file, :mod:`.files`).

Every error is one ``ValueError`` / ``FileNotFoundError`` line naming the file and the fix: a
missing, empty or unparsable file, an unknown extension, duplicate or empty column names, a
CSV header that looks like data, a nested Parquet column; in CSV (UTF-8, a BOM allowed) a byte
that is not UTF-8, a line with too many or too few fields or a non-number in a numeric column
at its line (the header is line 1). Frames are indexed by each row's position in its file
(chunks too) so later errors can name the line (:func:`where_in_file`); ``raw`` columns (ids)
come back as stored: CSV text as written, Parquet values in their own type.

Chunked CSV reading infers column types from the first block, then reads every integer
column as float64 (a later block with a missing value or a decimal must not change its type)
and columns declared categorical as text, so every chunk of a file has the same types.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .. import _checks
from .files import (
    bad_text,
    check_file,
    csv_input,
    parquet_shards,
    table_format,
    unreadable,
)

DEFAULT_CHUNK_ROWS = 65_536
_BLOCK_BYTES = 1 << 20  # CSV read block: bounds the memory of one parsing step
_NULLS = pa.array(pacsv.ConvertOptions().null_values, pa.string())
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, EOFError)


# ---- schema checks -------------------------------------------------------------------------
def _check_names(path: Path, names: Sequence[str], is_csv: bool) -> None:
    """Column names are non-empty and unique, and a CSV header does not look like data."""
    hint = " (does the file lack a header line?)" if is_csv else ""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        _checks.check(name.strip() != "", f"file '{path}': column {i + 1} has no name; name "
                      f"every column in the first line{hint}")
        _checks.check(name not in seen, f"file '{path}': column name '{name}' appears twice "
                      f"(columns {seen.get(name, 0) + 1} and {i + 1}); give each column its "
                      f"own name{hint}")
        seen[name] = i
    _checks.check(not (is_csv and all(_NUMBER.fullmatch(n.strip()) for n in names)),
                  f"file '{path}': the first line ({', '.join(names[:6])}) looks like data, "
                  "not a header; add a first line naming the columns")


def _check_columns(path: Path, have: Sequence[str], want: Sequence[str] | None) -> None:
    if want is None:
        return
    missing = [c for c in want if c not in have]
    if missing:
        shown = ", ".join(list(have)[:12]) + (", ..." if len(have) > 12 else "")
        _checks.fail(f"file '{path}': column(s) {', '.join(map(repr, missing))} not found "
                     f"(columns: {shown}); fix the column name or the file")


def _parquet_file(path: Path, columns: Sequence[str] | None) -> pq.ParquetFile:
    """The file, its column names checked; a nested column other than a list of numbers or
    text (a sequence column) read is an error naming it."""
    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    _check_names(path, schema.names, is_csv=False)
    _check_columns(path, schema.names, columns)
    for field in schema:
        _checks.check(not pa.types.is_nested(field.type) or _sequence_type(field.type) or (
            columns is not None and field.name not in columns),
            f"file '{path}': column '{field.name}' holds {field.type} values, which mmoe "
            "cannot read (numbers, text and lists of them only); drop or flatten the column")
    return pf


def _same_schema(path: Path, columns: Sequence[str] | None) -> list[Path]:
    """The Parquet files of ``path`` (itself, or a directory's shards), every shard with the
    first one's columns and types (those read)."""
    if not path.is_dir():
        return [path]
    shards = parquet_shards(path)
    first = pq.read_schema(shards[0])
    for shard in shards[1:]:
        schema = pq.read_schema(shard)
        names = columns if columns is not None else first.names
        _checks.check(schema.names == first.names or columns is not None, f"file '{shard}': its"
                      f" columns differ from those of '{shards[0].name}'; every shard of "
                      f"'{path}' needs the same columns")
        for name in names:
            a = first.field(name).type if name in first.names else None
            b = schema.field(name).type if name in schema.names else None
            _checks.check(a == b, f"file '{shard}': column '{name}' is {b} but {a} in "
                          f"'{shards[0].name}'; every shard of '{path}' needs the same types")
    return shards


def _sequence_type(kind: pa.DataType) -> bool:
    """A list of numbers or text: a sequence column."""
    return ((pa.types.is_list(kind) or pa.types.is_large_list(kind))
            and not pa.types.is_nested(kind.value_type))


def _csv_header(path: Path) -> list[str]:
    try:
        with csv_input(path) as src:
            names = pacsv.open_csv(src, read_options=pacsv.ReadOptions(
                block_size=_BLOCK_BYTES)).schema.names
    except UnicodeDecodeError:
        raise bad_text(path) from None
    _check_names(path, names, is_csv=True)
    return names


def _check_text(path: Path, schema: pa.Schema) -> None:
    """pyarrow reads a column holding bytes that are not UTF-8 as binary: an error."""
    if any(pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in schema):
        raise bad_text(path)


# ---- reading -------------------------------------------------------------------------------
def _csv_convert(header: Sequence[str], categorical: Sequence[str] = (),
                 raw: Sequence[str] = (), column_types: dict[str, pa.DataType] | None = None,
                 include: Sequence[str] | None = None) -> pacsv.ConvertOptions:
    """Declared categorical and raw columns read as text; with raw columns no text is read
    as missing here (:func:`_nulls_back` restores it outside them)."""
    types = {c: pa.string() for c in (*categorical, *raw) if c in header}
    types.update(column_types or {})
    return pacsv.ConvertOptions(column_types=types, strings_can_be_null=not raw,
                                include_columns=list(include) if include is not None else None)


def _nulls_back(table: pa.Table, raw: Sequence[str]) -> pa.Table:
    """Text columns other than ``raw`` with pyarrow's missing-value tokens as missing, as a
    read without raw columns gives them."""
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type) and field.name not in raw:
            column = table.column(i)
            table = table.set_column(i, field, pc.if_else(pc.is_in(column, _NULLS),
                                                          pa.scalar(None, pa.string()), column))
    return table


def _forget_pandas_types(table: pa.Table, names: Iterable[str]) -> pa.Table:
    """``table`` without pandas' stored dtypes of the columns ``names`` (pandas writes an
    Arrow-typed list column's dtype as text it cannot parse back)."""
    meta = table.schema.metadata or {}
    if b"pandas" not in meta:
        return table
    pandas_meta = json.loads(meta[b"pandas"])
    pandas_meta["columns"] = [c for c in pandas_meta.get("columns", [])
                              if c.get("name") not in set(names)]
    return table.replace_schema_metadata({**meta, b"pandas": json.dumps(pandas_meta).encode()})


def _frame(table: pa.Table, raw: Sequence[str], start: int, whole: bool) -> pd.DataFrame:
    """``table`` as a DataFrame indexed by file position from ``start``; raw columns keep
    their Arrow type. A ``whole`` table (shared with nothing) is freed as it converts; a
    chunk may share its buffers with the rows still to come, so it is left alone."""
    kept = {c: table.column(c) for c in table.column_names
            if c in raw or _sequence_type(table.schema.field(c).type)}  # lists stay Arrow
    order = table.column_names
    if kept:  # converted apart (pandas' metadata of an Arrow-typed column can't be read back)
        table = _forget_pandas_types(table.drop_columns(list(kept)), kept)
    df = table.to_pandas(split_blocks=True, self_destruct=whole and not kept)
    for name, values in kept.items():
        df[name] = pd.arrays.ArrowExtensionArray(values)
    df = df[order] if kept else df
    df.index = pd.RangeIndex(start, start + len(df))  # not an index stored by pandas
    return df


def read_table(path: str | os.PathLike, columns: Sequence[str] | None = None,
               categorical: Sequence[str] = (), raw: Sequence[str] = ()) -> pd.DataFrame:
    """Read a whole CSV / CSV.gz / Parquet file into a DataFrame.

    Args:
        path: the file, the format from its extension; or a directory of Parquet shards
            (read in name order, rows numbered across them).
        columns: read only these columns (all must exist); ``None``: all.
        categorical: columns read as text whatever their content (CSV; Parquet keeps its
            stored types and the encoder treats the column as categorical).
        raw: columns returned exactly as stored (ids): CSV text as written, missing-value
            tokens included; Parquet values in their own type.

    Returns:
        The rows, missing values as NaN/None, indexed by their position in the file.

    Example:
        >>> demo.to_csv("rows.csv.gz", index=False)
        >>> df = read_table("rows.csv.gz", categorical=["city"])
        >>> df.shape, df["city"].dtype.kind
        ((400, 7), 'O')
    """
    path = check_file(path)
    try:
        if path.is_dir():
            table = pa.concat_tables(_parquet_file(p, columns).read(
                columns=list(columns) if columns is not None else None)
                for p in _same_schema(path, columns))
        elif table_format(path) == "parquet":
            table = _parquet_file(path, columns).read(
                columns=list(columns) if columns is not None else None)
        else:
            header = _csv_header(path)
            _check_columns(path, header, columns)
            with csv_input(path) as src:
                table = pacsv.read_csv(src, parse_options=_csv_parse(header),
                                       convert_options=_csv_convert(header, categorical, raw))
            _check_text(path, table.schema)
            table = _nulls_back(table, raw) if raw else table
            if columns is not None:
                table = table.select(list(columns))
    except _ARROW_ERRORS as err:
        raise unreadable(path, err) from None
    _checks.check(table.num_rows > 0, f"file '{path}' has no data rows")
    return _frame(table, raw, 0, whole=True)


def _csv_parse(header: Sequence[str]) -> pacsv.ParseOptions:
    """In a one-column file an empty line is a missing value, not a line to skip (skipping
    it would silently drop the row)."""
    return pacsv.ParseOptions(ignore_empty_lines=len(header) > 1)


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


def _csv_batches(path: Path, chunk_rows: int, columns: Sequence[str] | None,
                 categorical: Sequence[str], raw: Sequence[str]) -> Iterator[pa.Table]:
    """A CSV file's rows in batches of ``chunk_rows``, every batch with the same types."""
    header = _csv_header(path)
    _check_columns(path, header, columns)
    options = pacsv.ReadOptions(block_size=_BLOCK_BYTES)
    with csv_input(path) as src:
        first = pacsv.open_csv(src, read_options=options, parse_options=_csv_parse(header),
                               convert_options=_csv_convert(header, categorical, raw))
    _check_text(path, first.schema)
    types = _stable_csv_types(first.schema, categorical)
    with csv_input(path) as src:
        yield from rebatch(pacsv.open_csv(
            src, read_options=options, parse_options=_csv_parse(header),
            convert_options=_csv_convert(header, categorical, raw, types, columns)), chunk_rows)


def iter_table(path: str | os.PathLike, chunk_rows: int = DEFAULT_CHUNK_ROWS,
               columns: Sequence[str] | None = None, categorical: Sequence[str] = (),
               raw: Sequence[str] = ()) -> Iterator[pd.DataFrame]:
    """Yield a file's rows as DataFrames of at most ``chunk_rows`` rows, in file order.

    Memory is bounded by one chunk (and, for Parquet, one row group), not by the file.

    Args:
        path: CSV / CSV.gz / Parquet file, or a directory of Parquet shards.
        chunk_rows: rows per chunk (a chunk never spans two shards).
        columns: read only these columns (all must exist).
        categorical: CSV columns read as text.
        raw: columns returned exactly as stored (see :func:`read_table`).

    Returns:
        The chunks, each indexed by its rows' positions in the file.

    Example:
        >>> demo.to_parquet("rows.parquet")
        >>> [(len(c), c.index[0]) for c in iter_table("rows.parquet", 150)]
        [(150, 0), (150, 150), (100, 300)]
    """
    path = check_file(path)
    _checks.positive_int(chunk_rows, "chunk_rows")
    start = 0
    try:
        if table_format(path) == "parquet":
            batches = (batch for p in _same_schema(path, columns)
                       for batch in _parquet_file(p, columns).iter_batches(
                           batch_size=chunk_rows,
                           columns=list(columns) if columns is not None else None))
        else:
            batches = _csv_batches(path, chunk_rows, columns, categorical, raw)
        for part in batches:
            if part.num_rows:
                table = part if isinstance(part, pa.Table) else pa.Table.from_batches([part])
                if raw and table_format(path) == "csv":
                    table = _nulls_back(table, raw)
                yield _frame(table, raw, start, whole=False)
                start += part.num_rows
    except _ARROW_ERRORS as err:
        raise unreadable(path, err) from None
    _checks.check(start > 0, f"file '{path}' has no data rows")


def rebatch(parts: Iterable[pa.Table | pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """The same rows regrouped into tables of exactly ``rows`` rows (the last: fewer).

    Example:
        >>> parts = [pa.table({"a": list(range(n))}) for n in (3, 4, 5)]
        >>> [t.num_rows for t in rebatch(parts, 5)]
        [5, 5, 2]
    """
    pending: list[pa.Table] = []
    count = 0
    for part in parts:
        pending.append(part if isinstance(part, pa.Table) else pa.Table.from_batches([part]))
        count += part.num_rows
        while count >= rows:
            table = pa.concat_tables(pending).combine_chunks()
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, count = ([rest] if rest.num_rows else []), rest.num_rows
    if count:
        yield pa.concat_tables(pending).combine_chunks()
