"""Readers on hostile files: text that is not UTF-8, duplicate / empty / data-like column
names, nested Parquet columns; ids read verbatim; errors at the file's own line; CSV written
with quotes only where a value needs them."""

import gzip
import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mmoe.data.files import where_in_file
from mmoe.data.readers import iter_table, read_table
from mmoe.data.writers import write_table


def _one_line_error(call, *needles):
    with pytest.raises(ValueError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text and type(info.value) is ValueError, text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def _rows(n, bad_at=None, bad=b"caf\xe9"):
    lines = [b"a,city"] + [b"%d,lille" % i for i in range(n)]
    if bad_at is not None:
        lines[bad_at + 1] = b"%d,%s" % (bad_at, bad)
    return b"\n".join(lines) + b"\n"


# ---- encodings -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
def test_latin1_byte_is_an_error_naming_line_and_column(tmp_path, name):
    data = _rows(50, bad_at=6)  # data row 6 is line 8
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    for call in (lambda: read_table(path), lambda: list(iter_table(path, chunk_rows=4)),
                 lambda: read_table(path, categorical=["city"]),
                 lambda: list(iter_table(path, chunk_rows=4, categorical=["city"]))):
        _one_line_error(call, name, "line 8", "'city'", "UTF-8", "0xe9")


def test_invalid_utf8_beyond_the_first_block(tmp_path):
    n = 120_000  # > 1 MiB: the bad byte is in a later block of the chunked reader
    path = tmp_path / "big.csv"
    path.write_bytes(_rows(n, bad_at=n - 3))
    line = f"line {n - 3 + 2}"
    _one_line_error(lambda: list(iter_table(path, chunk_rows=10_000)), line, "'city'")
    _one_line_error(lambda: read_table(path), line, "'city'")


def test_invalid_utf8_in_the_header(tmp_path):
    path = tmp_path / "h.csv"
    path.write_bytes(b"a,cit\xe9\n1,lille\n")
    _one_line_error(lambda: read_table(path), "h.csv", "line 1", "UTF-8")


def test_utf8_with_bom_reads_names_and_values(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffcity,n\nlyon,1\nsão paulo,2\n".encode())
    df = read_table(path)
    assert list(df.columns) == ["city", "n"] and df["city"].tolist() == ["lyon", "são paulo"]
    assert next(iter_table(path))["city"].tolist() == ["lyon", "são paulo"]


def test_csv_gzip_suffix_is_read_as_gzip(tmp_path):
    path = tmp_path / "t.csv.gzip"
    path.write_bytes(gzip.compress(b"a,b\n1,x\n2,y\n"))
    assert read_table(path)["b"].tolist() == ["x", "y"]
    write_table(pd.DataFrame({"a": [3]}), tmp_path / "w.csv.gzip")
    assert read_table(tmp_path / "w.csv.gzip")["a"].tolist() == [3]


# ---- column names ---------------------------------------------------------------------------
def test_duplicate_column_names_csv_and_parquet(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,a\n1,2,3\n")
    for call in (lambda: read_table(tmp_path / "d.csv"),
                 lambda: list(iter_table(tmp_path / "d.csv"))):
        _one_line_error(call, "d.csv", "'a'", "columns 1 and 3")
    pq.write_table(pa.table([pa.array([1]), pa.array([2])], names=["x", "x"]),
                   tmp_path / "d.parquet")
    for call in (lambda: read_table(tmp_path / "d.parquet"),
                 lambda: list(iter_table(tmp_path / "d.parquet"))):
        _one_line_error(call, "d.parquet", "'x'", "columns 1 and 2")


def test_header_with_an_empty_name_or_made_of_numbers(tmp_path):
    (tmp_path / "e.csv").write_text("a,,c\n1,2,3\n")
    _one_line_error(lambda: read_table(tmp_path / "e.csv"), "e.csv", "column 2 has no name")
    (tmp_path / "n.csv").write_text("1.5,2,3\n4,5,6\n")
    _one_line_error(lambda: read_table(tmp_path / "n.csv"), "n.csv", "looks like data",
                    "header")
    _one_line_error(lambda: list(iter_table(tmp_path / "n.csv")), "looks like data")
    (tmp_path / "ok.csv").write_text("2019,x\n1,2\n")  # one number among names is a name
    assert list(read_table(tmp_path / "ok.csv").columns) == ["2019", "x"]


def test_parquet_nested_column_is_one_line(tmp_path):
    """Lists of numbers or text are sequence columns; lists of lists or structs are not."""
    pq.write_table(pa.table({"x": [1.0, 2.0], "tags": [[[1], [2]], [[3]]]}),
                   tmp_path / "l.parquet")
    for call in (lambda: read_table(tmp_path / "l.parquet"),
                 lambda: list(iter_table(tmp_path / "l.parquet"))):
        _one_line_error(call, "l.parquet", "'tags'", "list")
    assert read_table(tmp_path / "l.parquet", columns=["x"])["x"].tolist() == [1.0, 2.0]


def test_parquet_list_columns_come_back_as_arrow_lists(tmp_path):
    pq.write_table(pa.table({"x": [1.0, 2.0], "tags": [[1, 2], []]}), tmp_path / "s.parquet")
    for df in (read_table(tmp_path / "s.parquet"),
               next(iter_table(tmp_path / "s.parquet"))):
        assert df["tags"].tolist() == [[1, 2], []]


# ---- ids verbatim ----------------------------------------------------------------------------
IDS = ["003000", "9007199254740993", "1234567890123456789", "NA", "", "-0", "1e3", " 7"]


def test_raw_csv_columns_come_back_as_written(tmp_path):
    lines = ["uid,x,t"] + [f"{u},{i}.5,NA" for i, u in enumerate(IDS)]
    path = tmp_path / "ids.csv"
    path.write_text("\n".join(lines) + "\n")
    whole = read_table(path, raw=["uid"])
    chunks = pd.concat(iter_table(path, chunk_rows=3, raw=["uid"]))
    for df in (whole, chunks):
        assert df["uid"].tolist() == IDS
        assert df["t"].isna().all()  # other text columns keep missing values as missing
        assert df["x"].tolist() == [i + 0.5 for i in range(len(IDS))]
    plain = read_table(path)
    pd.testing.assert_frame_equal(plain.drop(columns="uid"), whole.drop(columns="uid"))


def test_raw_parquet_columns_keep_their_type(tmp_path):
    ids = pa.array([9007199254740993, None, 1234567890123456789], pa.int64())
    pq.write_table(pa.table({"uid": ids, "x": [1.0, 2.0, 3.0]}), tmp_path / "p.parquet")
    for df in (read_table(tmp_path / "p.parquet", raw=["uid"]),
               pd.concat(iter_table(tmp_path / "p.parquet", chunk_rows=2, raw=["uid"]))):
        assert df["uid"].tolist()[0] == 9007199254740993 and pd.isna(df["uid"].tolist()[1])
        write_table(df, tmp_path / "back.parquet")
        back = pq.read_table(tmp_path / "back.parquet")
        assert back.schema.field("uid").type == pa.int64()
        assert back.column("uid").to_pylist() == ids.to_pylist()


# ---- CSV writing -------------------------------------------------------------------------------
def test_csv_is_quoted_only_where_a_value_needs_it(tmp_path):
    values = ["003000", "a,b", 'say "hi"', "two\nlines", "", None, "plain"]
    df = pd.DataFrame({"id": values, "p": np.linspace(0, 1, len(values), dtype=np.float32)})
    text = write_table(df, tmp_path / "q.csv").read_text()
    lines = text.split("\n")
    assert lines[0] == '"id","p"'  # the header as before
    assert lines[1].startswith("003000,") and lines[2].startswith('"a,b",')
    assert lines[3].startswith('"say ""hi""",') and lines[4] == '"two'
    assert lines[6].startswith(",") and lines[7].startswith(",")  # "" and None: empty
    assert lines[8].startswith("plain,") and lines[9] == "" and len(lines) == 10
    back = pd.read_csv(io.StringIO(text), dtype={"id": str}, keep_default_na=False)
    assert back["id"].tolist() == [v or "" for v in values]


def test_csv_numbers_are_written_as_pyarrow_writes_them(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"f32": rng.normal(size=50).astype(np.float32),
                       "f64": np.r_[rng.normal(size=46) * 1e300, np.nan, np.inf, -0.0, 5e-324],
                       "i": rng.integers(-2**62, 2**62, 50), "b": rng.random(50) > 0.5,
                       "c": pd.Categorical(rng.choice(["x", "y"], 50))})
    mine = write_table(df, tmp_path / "n.csv").read_bytes()
    ref = io.BytesIO()
    pacsv.write_csv(pa.Table.from_pandas(df, preserve_index=False), ref)
    assert mine == ref.getvalue().replace(b'"x"', b"x").replace(b'"y"', b"y")


# ---- locations -------------------------------------------------------------------------------
def test_chunks_are_indexed_by_their_row_in_the_file(tmp_path):
    path = write_table(pd.DataFrame({"a": range(10)}), tmp_path / "t.parquet")
    assert [c.index.tolist() for c in iter_table(path, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                                 [8, 9]]
    assert read_table(path).index.tolist() == list(range(10))
    pd.DataFrame({"a": [1, 2, 3]}, index=[10, 20, 30]).to_parquet(tmp_path / "ix.parquet")
    assert [c.index.tolist() for c in iter_table(tmp_path / "ix.parquet", 2)] == [[0, 1], [2]]
    assert read_table(tmp_path / "ix.parquet").index.tolist() == [0, 1, 2]


def test_where_in_file_counts_csv_lines_and_parquet_rows(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n\n3,4\n5,6\n")  # an empty line is skipped
    assert [where_in_file(tmp_path / "t.csv", r) for r in range(3)] == ["line 2", "line 4",
                                                                         "line 5"]
    assert read_table(tmp_path / "t.csv")["a"].tolist() == [1, 3, 5]
    write_table(pd.DataFrame({"a": range(3)}), tmp_path / "t.parquet")
    assert where_in_file(tmp_path / "t.parquet", 2) == "row index 2"


def test_non_numeric_value_in_a_later_chunk_names_its_line(tmp_path):
    n = 300_000
    df = pd.DataFrame({"a": np.arange(n).astype(object), "b": 1.0})
    df.loc[n - 10, "a"] = "oops"
    df.to_csv(tmp_path / "t.csv", index=False)
    _one_line_error(lambda: list(iter_table(tmp_path / "t.csv", chunk_rows=100_000)),
                    "column 'a'", "'oops'", f"line {n - 10 + 2}")
