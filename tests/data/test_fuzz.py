"""Property tests (hypothesis) over the readers, schema inference and the TableEncoder: random
column types, NaN/inf, empty strings, unicode, huge and tiny values, one row, one column.
Every input gives a valid table or a clear ValueError, never a crash or silent corruption."""

import math

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmoe import TaskSpec
from mmoe.data.encoders import TableEncoder
from mmoe.data.readers import iter_table, read_table
from mmoe.data.writers import write_table

FAST = settings(max_examples=20, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
NULL_TOKENS = set(pacsv.ConvertOptions().null_values) | {""}

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([1e308, -1e308, 5e-324, 1e-300, 0.0, -0.0]))
texts = st.one_of(st.none(), st.text(max_size=8), st.sampled_from(["", " ", "NA", "é", "😀"]))


@st.composite
def frames(draw, max_cols=4):
    n = draw(st.integers(1, 12))
    cols = {}
    for j in range(draw(st.integers(1, max_cols))):
        kind = draw(st.sampled_from(["float", "int", "bool", "text"]))
        if kind == "float":
            cols[f"f{j}"] = pd.Series(draw(st.lists(floats, min_size=n, max_size=n)),
                                      dtype="float64")
        elif kind == "int":
            cols[f"i{j}"] = pd.Series(draw(st.lists(st.integers(-2**53, 2**53), min_size=n,
                                                    max_size=n)), dtype="int64")
        elif kind == "bool":
            cols[f"b{j}"] = pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        else:
            cols[f"t{j}"] = pd.Series(draw(st.lists(texts, min_size=n, max_size=n)),
                                      dtype=object)
    return pd.DataFrame(cols)


def _same_values(got: pd.Series, want: pd.Series, csv: bool):
    if want.dtype == object:
        expect = [None if v is None or (csv and v in NULL_TOKENS) else v for v in want]
        have = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v
                for v in got.tolist()]
        assert have == expect
    else:
        np.testing.assert_array_equal(got.to_numpy(dtype=float), want.to_numpy(dtype=float))


@FAST
@given(df=frames(), fmt=st.sampled_from(["parquet", "csv", "csv.gz"]))
def test_write_then_read_gives_the_frame_back(tmp_path, df, fmt):
    path = write_table(df, tmp_path / f"t.{fmt}")
    text_cols = [c for c in df.columns if c.startswith("t")]
    try:
        back = read_table(path, categorical=text_cols)
    except ValueError as err:
        assert str(path) in str(err)  # e.g. a text column that is empty in every row
        return
    assert list(back.columns) == list(df.columns) and len(back) == len(df)
    for c in df.columns:
        _same_values(back[c], df[c], csv=fmt != "parquet")


LABELS = st.sampled_from(["binary", "regression", "multiclass"])


@st.composite
def labelled(draw):
    df = draw(frames(max_cols=3))
    n = len(df)
    kind = draw(LABELS)
    if kind == "regression":
        y = draw(st.lists(st.one_of(floats, st.none()), min_size=n, max_size=n))
    elif kind == "binary":
        y = draw(st.lists(st.sampled_from(["yes", "no", None]), min_size=n, max_size=n))
    else:
        y = draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n))
    df["y"] = pd.Series(y, dtype="float64" if kind == "regression" else object)
    positive = "yes" if kind == "binary" else None
    return df, TaskSpec("y", kind, positive=positive), draw(st.booleans())


@FAST
@given(case=labelled())
def test_encoder_gives_a_valid_table_or_a_clear_error(case):
    df, task, scale = case
    try:
        enc = TableEncoder([task], scale_regression=scale).fit(df)
        table = enc.transform(df)
    except ValueError as err:
        assert str(err) and "\n" not in str(err)
        return
    inputs = [c for c in df.columns if c != "y"]
    # each column one type: numeric, categorical, or a lookup (ids, "a|b" sequences)
    assert sorted(f.name for f in enc.specs()) == sorted(inputs)
    if table.numeric is not None:
        width = sum(enc.encodings[c].width for c in enc.numeric) + len(enc.indicators)
        assert table.numeric.shape == (len(df), width) == (len(df), len(enc.input_spec().numeric))
        assert bool(np.isfinite(table.numeric.numpy()).all())
    if table.categorical is not None:
        codes = table.categorical.numpy()
        sizes = np.array([len(enc.vocab[c]) + 1 for c in enc.categorical])
        assert (codes >= 0).all() and (codes < sizes).all()
    y = table.labels.numpy()[:, 0]
    present = y[~np.isnan(y)]
    assert np.isfinite(present).all()
    if task.kind != "regression":
        assert set(present.tolist()) <= set(range(len(enc.tasks[0].classes)))
    assert (~np.isnan(y)).sum() == df["y"].notna().sum()  # no label lost or invented
    again = TableEncoder.from_dict(enc.to_dict()).transform(df)  # saved == fitted
    for a, b in zip((table.numeric, table.categorical, table.labels),
                    (again.numeric, again.categorical, again.labels), strict=True):
        assert (a is None and b is None) or np.array_equal(a.numpy(), b.numpy(), equal_nan=True)


def test_infinite_and_overflowing_inputs_are_clear_errors():
    task = TaskSpec("y", "regression")
    for bad, needle in ((pd.DataFrame({"x": [1.0, math.inf], "y": [1.0, 2.0]}), "'x'"),
                        (pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, -math.inf]}), "'y'")):
        with pytest.raises(ValueError, match=needle):
            TableEncoder([task]).fit(bad).transform(bad)


# ---- hostile files and descriptions --------------------------------------------------------
csv_bytes = st.lists(st.one_of(st.sampled_from([b",", b'"', b"\n", b"\r\n", b"a", b"1", b"x,x",
                                                b"\xe9", b"\xff\xfe", b"\xef\xbb\xbf", b"NA",
                                                b"1e308", b"-", b"\x00", b" "]),
                               st.binary(max_size=4)), min_size=1, max_size=40).map(b"".join)


@FAST
@given(data=csv_bytes, chunk=st.integers(1, 5), gz=st.booleans())
def test_any_csv_bytes_give_a_table_or_one_line(tmp_path, data, chunk, gz):
    import gzip

    path = tmp_path / ("f.csv.gz" if gz else "f.csv")
    path.write_bytes(gzip.compress(data) if gz else data)
    for read in (lambda: read_table(path), lambda: pd.concat(iter_table(path, chunk)),
                 lambda: read_table(path, raw=["a"])):
        try:
            df = read()
        except ValueError as err:
            assert type(err) is ValueError and "\n" not in str(err) and str(path) in str(err)
            continue
        assert len(set(df.columns)) == len(df.columns) and len(df) > 0
        assert not any(isinstance(v, bytes) for c in df.columns for v in df[c].tolist())


ids = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
              max_size=12)


@FAST
@given(values=st.lists(ids, min_size=1, max_size=20), chunk=st.integers(1, 7),
       fmt=st.sampled_from(["csv", "csv.gz", "parquet"]))
def test_raw_ids_come_back_exactly(tmp_path, values, chunk, fmt):
    df = pd.DataFrame({"id": pd.Series(values, dtype=object), "x": np.arange(len(values))})
    path = write_table(df, tmp_path / f"ids.{fmt}")
    assert read_table(path, raw=["id"])["id"].tolist() == values
    assert pd.concat(iter_table(path, chunk, raw=["id"]))["id"].tolist() == values
    again = write_table(read_table(path, raw=["id"]), tmp_path / f"again.{fmt}")
    assert again.read_bytes() == path.read_bytes() or fmt == "parquet"


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                                     st.text(max_size=5)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=5), inner,
                                                                   max_size=3)),
                           max_leaves=8)


def _saved_encoder() -> dict:
    df = pd.DataFrame({"x": [1.0, np.nan, 3.0, 4.0], "c": ["a", "b", "a", "b"],
                       "y": [0, 1, 1, 0], "r": [1.0, 2.0, 3.0, 4.0], "m": ["p", "q", "p", "s"]})
    tasks = [TaskSpec("y"), TaskSpec("r", "regression"), TaskSpec("m", "multiclass")]
    return TableEncoder(tasks, scale_regression=True).fit(df).to_dict()


@FAST
@given(path=st.lists(st.sampled_from(["tasks", 0, 1, 2, "stats", "x", "vocab", "c", "classes",
                                      "positive", "kind", "numeric", "label_stats", "r",
                                      "min_count", "indicators", "weight_column", "name"]),
                     min_size=1, max_size=3),
       value=json_values, delete=st.booleans())
def test_damaged_encoder_description_loads_or_is_one_line(path, value, delete):
    data = _saved_encoder()
    target = data
    for key in path[:-1]:
        try:
            target = target[key]
        except (KeyError, IndexError, TypeError):
            return
    if not isinstance(target, dict | list):
        return
    try:
        if delete:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    except (KeyError, IndexError, TypeError):
        return
    try:
        enc = TableEncoder.from_dict(data)
    except ValueError as err:
        assert type(err) is ValueError and "\n" not in str(err)
        assert str(err).startswith("encoder description: ")
        return
    df = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "z"], "y": [0, 1], "r": [1.0, 2.0],
                       "m": ["p", "q"]})
    try:  # what loads encodes valid rows or fails on them with one line
        enc.transform(df)
    except ValueError as err:
        assert "\n" not in str(err)
