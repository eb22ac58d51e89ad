"""Readers: CSV / CSV.gz / Parquet, whole and chunked, atomic writers, clear errors."""

import gzip

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmoe.data.files import table_format
from mmoe.data.readers import iter_table, read_table
from mmoe.data.writers import TableWriter, write_table


def _frame(n=25):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"i": np.arange(n), "f": np.where(np.arange(n) % 7 == 3, np.nan,
                                                           rng.normal(size=n)),
                         "s": np.where(np.arange(n) % 5 == 0, None,
                                       rng.choice(["a", "b"], n).astype(object))})


def _same(a: pd.DataFrame, b: pd.DataFrame):
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    np.testing.assert_allclose(a["i"].astype(float), b["i"].astype(float))
    np.testing.assert_allclose(a["f"].astype(float), b["f"].astype(float))
    assert a["s"].isna().tolist() == b["s"].isna().tolist()
    assert a["s"].dropna().tolist() == b["s"].dropna().tolist()


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.parquet"])
def test_round_trip_whole_and_chunked(tmp_path, name):
    df = _frame()
    path = write_table(df, tmp_path / name)
    if name.endswith(".gz"):
        assert gzip.open(path).read(1) == b'"'  # really gzip
    _same(read_table(path), df)
    chunks = list(iter_table(path, chunk_rows=4))
    assert [len(c) for c in chunks] == [4] * 6 + [1]
    _same(pd.concat(chunks, ignore_index=True), df)


def test_chunked_csv_keeps_types_stable(tmp_path):
    # integers in the first rows, then a missing value and a decimal
    n = 50_000
    df = pd.DataFrame({"a": np.arange(n, dtype=float), "c": ["x"] * n})
    df.loc[n - 2, "a"] = np.nan
    df.loc[n - 1, "a"] = 0.5
    df.to_csv(tmp_path / "t.csv", index=False)
    chunks = list(iter_table(tmp_path / "t.csv", chunk_rows=10_000))
    assert {str(c["a"].dtype) for c in chunks} == {"float64"}
    assert chunks[-1]["a"].iloc[-1] == 0.5 and np.isnan(chunks[-1]["a"].iloc[-2])


def test_categorical_override_reads_text(tmp_path):
    pd.DataFrame({"zip": [1001, 2002], "y": [0, 1]}).to_csv(tmp_path / "t.csv", index=False)
    df = read_table(tmp_path / "t.csv", categorical=["zip"])
    assert df["zip"].tolist() == ["1001", "2002"]
    assert next(iter_table(tmp_path / "t.csv", categorical=["zip"]))["zip"].tolist() == \
        ["1001", "2002"]


def test_columns_selection_and_missing_column(tmp_path):
    write_table(_frame(), tmp_path / "t.parquet")
    assert list(read_table(tmp_path / "t.parquet", columns=["s", "i"]).columns) == ["s", "i"]
    with pytest.raises(ValueError, match=r"t\.parquet.*'nope' not found"):
        read_table(tmp_path / "t.parquet", columns=["nope"])
    with pytest.raises(ValueError, match=r"'nope' not found"):
        next(iter_table(tmp_path / "t.parquet", columns=["nope"]))


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ValueError, match=r"e\.csv' is empty"):
        read_table(tmp_path / "e.csv")
    (tmp_path / "h.csv.gz").write_bytes(gzip.compress(b"a,b\n"))
    with pytest.raises(ValueError, match=r"h\.csv\.gz' has no data rows"):
        read_table(tmp_path / "h.csv.gz")
    with pytest.raises(ValueError, match="no data rows"):
        list(iter_table(tmp_path / "h.csv.gz"))
    (tmp_path / "x.parquet").write_bytes(b"garbage bytes here")
    with pytest.raises(ValueError, match=r"x\.parquet' cannot be read as PARQUET"):
        read_table(tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="unknown table format"):
        table_format("data.xlsx")


def test_text_in_numeric_column_of_a_later_csv_chunk(tmp_path):
    n = 300_000  # beyond the first 1 MiB block, from which the types are inferred
    df = pd.DataFrame({"a": np.arange(n).astype(object), "b": 1.0})
    df.loc[n - 1, "a"] = "oops"
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match=r"t\.csv': column 'a' has the non-numeric value 'oops'"):
        list(iter_table(tmp_path / "t.csv", chunk_rows=100_000))


def test_writer_is_atomic(tmp_path):
    out = tmp_path / "p.parquet"
    write_table(pd.DataFrame({"a": [1, 2]}), out)
    with pytest.raises(RuntimeError), TableWriter(out) as w:
        w.write(pd.DataFrame({"a": [9]}))
        raise RuntimeError("killed")
    assert read_table(out)["a"].tolist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.parquet"]
    with TableWriter(tmp_path / "c.csv") as w:
        for i in range(3):
            w.write(pd.DataFrame({"a": [i], "b": [f"x{i}"]}))
    assert read_table(tmp_path / "c.csv")["b"].tolist() == ["x0", "x1", "x2"]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
                       min_size=1, max_size=60),
       text=st.lists(st.one_of(st.none(), st.text("abcxyz ", min_size=1, max_size=5)),
                     min_size=60, max_size=60),
       chunk=st.integers(1, 17), fmt=st.sampled_from(["csv", "csv.gz", "parquet"]))
def test_chunks_concatenate_to_the_whole_file(tmp_path, values, text, chunk, fmt):
    df = pd.DataFrame({"v": pd.array(values, dtype="float64"),
                       "t": pd.Series(text[: len(values)], dtype=object)})
    df.loc[0, "t"] = "first"  # keep the column textual
    path = write_table(df, tmp_path / f"h.{fmt}")
    whole = read_table(path)
    parts = pd.concat(iter_table(path, chunk_rows=chunk), ignore_index=True)
    np.testing.assert_allclose(whole["v"].astype(float), parts["v"].astype(float))
    np.testing.assert_allclose(whole["v"].astype(float), df["v"], rtol=1e-12)
    assert whole["t"].isna().tolist() == parts["t"].isna().tolist()
    assert whole["t"].dropna().tolist() == parts["t"].dropna().tolist()
