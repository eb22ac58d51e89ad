"""Write tables, whole or chunk by chunk, to CSV (plain or gzip) or Parquet, atomically."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .. import _checks
from .._fileio import AtomicFile, Transaction
from .files import gzip_compressed, table_format

#: rows per piece of a CSV text buffer (each piece well below pyarrow's 2 GiB string limit)
CSV_PIECE_ROWS = 65_536


class TableWriter(Transaction):
    """Write DataFrames chunk by chunk to CSV or Parquet (by extension), atomically.

    Rows go to a temporary file beside ``path`` (:class:`mmoe._fileio.AtomicFile`);
    :meth:`commit` (or :meth:`close`) moves it over ``path``. Leaving the ``with`` block on an
    error deletes the temporary file and leaves any existing ``path`` untouched. CSV values
    are written as pyarrow writes them, text quoted only where it holds a delimiter, a quote
    or a line break (so ids come out as they were read); the header as pyarrow writes it.

    Example:
        >>> with TableWriter(tmp_path / "out.parquet") as w:
        ...     for chunk in (pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [3]})):
        ...         w.write(chunk)
        >>> from mmoe.data.readers import read_table
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
        if self._schema is None:
            self._schema = table.schema
            if self.format == "parquet":
                self._writer = pq.ParquetWriter(self.tmp, table.schema)
            else:
                self._sink = pa.CompressedOutputStream(str(self.tmp), "gzip") \
                    if gzip_compressed(self.path) else pa.OSFile(str(self.tmp), "wb")
                pacsv.write_csv(table.schema.empty_table(), self._sink)  # the header line
        else:
            table = table.cast(self._schema)
        if self._writer is not None:
            self._writer.write_table(table)
        else:
            for part in _csv_lines(table):
                self._sink.write(part)
        self.rows += len(df)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._sink is not None:
            self._sink.close()

    def commit(self) -> Path:
        """Finish the file and move it into place."""
        if self._schema is None:
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


def _csv_lines(table: pa.Table) -> Iterator[pa.Buffer]:
    """The data lines of ``table`` in CSV, each value as pyarrow's CSV writer renders it (the
    cast to text), quoted (quotes doubled) only where it holds ``,``, ``"``, CR or LF."""
    cells = []
    for column in table.columns:
        text = pc.cast(column, pa.string())
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
        cells.append(pc.fill_null(pc.if_else(pc.match_substring_regex(text, '[",\r\n]'),
                                             quoted, text), ""))
    lines = pc.binary_join_element_wise(*cells, ",").combine_chunks()
    for start in range(0, len(lines), CSV_PIECE_ROWS):  # each part well below 2 GiB
        part = lines.slice(start, CSV_PIECE_ROWS)
        yield pc.binary_join(pa.ListArray.from_arrays([0, len(part)], part), "\n")[0].as_buffer()
        yield pa.py_buffer(b"\n")


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` to CSV / CSV.gz / Parquet by extension, atomically.

    Example:
        >>> write_table(pd.DataFrame({"a": [1], "id": ["007"]}), "a.csv").read_text()
        '"a","id"\\n1,007\\n'
    """
    with TableWriter(path) as writer:
        writer.write(df)
    return Path(path)


class ParquetShards:
    """Parquet files ``part-NNNNN.parquet`` of ``rows`` rows each (the last one shorter), in a
    new directory, from Arrow tables of any length added in order.

    Each file is written atomically; :meth:`close` writes the rows still pending. Write into
    a staging directory (:func:`mmoe._fileio.atomic_dir`) to make the whole set appear at once.

    Example:
        >>> shards = ParquetShards(tmp_path / "train", rows=2)
        >>> for n in (3, 2):
        ...     shards.add(pa.table({"a": list(range(n))}))
        >>> shards.close()
        >>> sorted(p.name for p in (tmp_path / "train").iterdir()), shards.count, shards.files
        (['part-00000.parquet', 'part-00001.parquet', 'part-00002.parquet'], 0, 3)
    """

    def __init__(self, directory: str | os.PathLike, rows: int):
        _checks.positive_int(rows, "rows per shard")
        self.directory, self.rows = Path(directory), rows
        self.pending: list[pa.Table] = []
        self.count = self.files = self.written = 0
        self.directory.mkdir()

    def add(self, table: pa.Table) -> None:
        """Queue ``table``'s rows, writing every full shard."""
        if table.num_rows:
            self.pending.append(table)
            self.count += table.num_rows
        while self.count >= self.rows:
            self._flush(self.rows)

    def close(self) -> None:
        """Write the rows still pending as the last (shorter) shard."""
        if self.count:
            self._flush(self.count)

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self.pending).combine_chunks()
        with AtomicFile(self.directory / f"part-{self.files:05d}.parquet") as f:
            f.handle.close()
            pq.write_table(table.slice(0, rows), f.tmp)
        rest = table.slice(rows)
        self.pending, self.count = ([rest] if rest.num_rows else []), rest.num_rows
        self.files += 1
        self.written += rows
