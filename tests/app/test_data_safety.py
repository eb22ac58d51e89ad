"""`mmoe train | predict | evaluate` on hostile data: ids come back as they were read, labels
and misspelt column names never become inputs, bad text / names / labels / nested columns and
damaged encoder descriptions are one stderr line with exit code 2, and every bad value is
reported at the file's own line (CSV) or row index (Parquet), through the hold-out split,
chunked reads, streaming and prediction."""

import hashlib
import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmoe.app.spec import build_run_spec
from mmoe.app.tables import read_run_tables
from mmoe.cli import main

QUICK = ["--epochs", "1", "--batch-size", "64", "--threads", "1"]


def _run(argv, capsys):
    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    return code, capsys.readouterr().err


def _user_error(argv, capsys, *needles):
    code, err = _run(argv, capsys)
    lines = [ln for ln in err.strip().splitlines()  # progress lines may come before it
             if not re.match(r"predict \S+: [\d,/]+ rows", ln)]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mmoe: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _table(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame({"uid": [f"{i:06d}" for i in range(n)], "x": x,
                         "age": rng.integers(18, 80, n).astype(float),
                         "city": rng.choice(["lyon", "nice"], n),
                         "clicked": (x + rng.normal(0, 0.5, n) > 0).astype(int),
                         "hours": x * 2 + rng.normal(0, 0.1, n)})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained with --id uid on a clean CSV file."""
    root = tmp_path_factory.mktemp("safety")
    _table().to_csv(root / "train.csv", index=False)
    argv = ["train", "--train", root / "train.csv", "--task", "clicked:binary", "--task",
            "hours:regression", "--id", "uid", *QUICK, "--out", root / "m"]
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    assert exc.value.code in (0, None)
    return root / "m"


# ---- ids ---------------------------------------------------------------------------------------
IDS = ["003000", "9007199254740993", "1234567890123456789", "00", "A-17", "NA", "", "1e3"]


def test_predict_copies_csv_ids_byte_for_byte(trained, tmp_path, capsys):
    df = _table(len(IDS) * 5, seed=1)
    df["uid"] = IDS * 5
    src = tmp_path / "ids.csv"
    df.to_csv(src, index=False)
    written = [line.split(",")[0] for line in src.read_text().splitlines()[1:]]
    for out in (tmp_path / "p.csv", tmp_path / "p.csv.gz", tmp_path / "p.parquet"):
        assert _run(["predict", trained, src, "--out", out, "--chunk-rows", "7"], capsys)[0] == 0
        if out.suffix == ".parquet":
            got = pq.read_table(out).column("uid")
            assert got.type == pa.string() and got.to_pylist() == written
        else:
            text = pd.read_csv(out, dtype=str, keep_default_na=False)["uid"].tolist()
            assert text == written
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == written  # no quotes added


def test_predict_keeps_parquet_id_types(trained, tmp_path, capsys):
    df = _table(6, seed=2).drop(columns="uid")
    ids = pa.array([9007199254740993, 1234567890123456789, None, 3000, -5, 0], pa.int64())
    table = pa.Table.from_pandas(df, preserve_index=False).append_column("uid", ids)
    pq.write_table(table, tmp_path / "ids.parquet")
    assert _run(["predict", trained, tmp_path / "ids.parquet", "--out", tmp_path / "p.parquet",
                 "--chunk-rows", "4"], capsys)[0] == 0
    got = pq.read_table(tmp_path / "p.parquet").column("uid")
    assert got.type == pa.int64() and got.to_pylist() == ids.to_pylist()
    assert _run(["predict", trained, tmp_path / "ids.parquet", "--out", tmp_path / "p.csv"],
                capsys)[0] == 0
    text = [line.split(",")[0] for line in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    assert text == ["9007199254740993", "1234567890123456789", "", "3000", "-5", "0"]


def test_plain_integer_csv_ids_are_int64_in_parquet(trained, tmp_path, capsys):
    df = _table(50, seed=3)
    df["uid"] = np.arange(50) + 9007199254740990
    df.to_csv(tmp_path / "n.csv", index=False)
    assert _run(["predict", trained, tmp_path / "n.csv", "--out", tmp_path / "n.parquet",
                 "--chunk-rows", "8"], capsys)[0] == 0
    got = pq.read_table(tmp_path / "n.parquet").column("uid")
    assert got.type == pa.int64() and got.to_pylist() == df["uid"].tolist()


# ---- labels and column names -------------------------------------------------------------------
def test_label_declared_as_input_is_an_error(tmp_path, capsys):
    _table().to_csv(tmp_path / "t.csv", index=False)
    for flag in ("--categorical", "--numeric"):
        _user_error(["train", "--train", tmp_path / "t.csv", "--task", "clicked:binary", flag,
                     "clicked", *QUICK, "--out", tmp_path / "m"], capsys, "t.csv",
                    "'clicked'", "label of task 'clicked'", flag)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("flag", ["--id", "--exclude", "--weight", "--numeric",
                                  "--categorical"])
@pytest.mark.parametrize("stream", [False, True])
def test_misspelt_column_names_are_errors(tmp_path, capsys, flag, stream):
    _table().to_csv(tmp_path / "t.csv", index=False)
    argv = ["train", "--train", tmp_path / "t.csv", "--task", "clicked:binary", flag, "usr_id",
            *QUICK, "--out", tmp_path / "m"] + (["--stream"] if stream else [])
    _user_error(argv, capsys, "t.csv", f"{flag} column 'usr_id' is not in the file", "uid")


def test_one_numeric_column_does_not_flip_the_others(tmp_path):
    df = _table()
    df["zip"] = np.arange(len(df)) % 7 + 75000
    df.to_csv(tmp_path / "t.csv", index=False)
    spec = build_run_spec(train=str(tmp_path / "t.csv"), tasks=["clicked:binary"],
                          id_columns=["uid"], numeric=["zip"])
    encoder = read_run_tables(spec)[0]
    assert encoder.numeric == ["zip", "x", "age", "hours"] and encoder.categorical == ["city"]


# ---- encodings, names, labels, nested columns ----------------------------------------------------
def test_latin1_byte_is_one_line_at_its_line(trained, tmp_path, capsys):
    lines = _table().to_csv(index=False).encode().split(b"\n")
    lines[5] = lines[5].replace(b"lyon", b"caf\xe9").replace(b"nice", b"caf\xe9")
    (tmp_path / "l.csv").write_bytes(b"\n".join(lines))
    for argv in (["train", "--train", tmp_path / "l.csv", "--task", "clicked:binary", *QUICK,
                  "--out", tmp_path / "m"],
                 ["train", "--train", tmp_path / "l.csv", "--task", "clicked:binary", *QUICK,
                  "--stream", "--out", tmp_path / "m"],
                 ["predict", trained, tmp_path / "l.csv", "--out", tmp_path / "p.csv"]):
        _user_error(argv, capsys, "l.csv", "line 6", "column 'city'", "UTF-8")


def test_duplicate_names_are_one_line_everywhere(trained, tmp_path, capsys):
    text = _table().to_csv(index=False).replace("uid,x,age", "uid,x,x", 1)
    (tmp_path / "d.csv").write_text(text)
    table = pa.Table.from_pandas(_table(), preserve_index=False)
    pq.write_table(table.rename_columns(["uid", "x", "x", "city", "clicked", "hours"]),
                   tmp_path / "d.parquet")
    for src in ("d.csv", "d.parquet"):
        for argv in (["train", "--train", tmp_path / src, "--task", "clicked:binary", *QUICK,
                      "--out", tmp_path / "m"],
                     ["train", "--train", tmp_path / src, "--task", "clicked:binary", *QUICK,
                      "--stream", "--out", tmp_path / "m"],
                     ["predict", trained, tmp_path / src, "--out", tmp_path / "p.csv"],
                     ["evaluate", trained, tmp_path / src]):
            _user_error(argv, capsys, src, "'x' appears twice", "columns 2 and 3")


def test_file_without_a_header(tmp_path, capsys):
    _table().drop(columns=["uid", "city"]).to_csv(tmp_path / "h.csv", index=False,
                                                  header=False)
    _user_error(["train", "--train", tmp_path / "h.csv", "--task", "clicked:binary", *QUICK,
                 "--out", tmp_path / "m"], capsys, "h.csv", "looks like data")
    (tmp_path / "e.csv").write_text("x,,clicked\n1,2,0\n3,4,1\n")
    _user_error(["train", "--train", tmp_path / "e.csv", "--task", "clicked:binary", *QUICK,
                 "--out", tmp_path / "m"], capsys, "e.csv", "column 2 has no name")


def test_regression_label_of_1e308_fails_before_training(trained, tmp_path, capsys):
    df = _table()
    df.loc[9, "hours"] = 1e308
    df.to_csv(tmp_path / "big.csv", index=False)
    for stream in ([], ["--stream"]):
        _user_error(["train", "--train", tmp_path / "big.csv", "--task", "hours:regression",
                     *QUICK, *stream, "--out", tmp_path / "m"], capsys, "big.csv", "'hours'",
                    "line 11", "rescale")
        assert not (tmp_path / "m").exists()
    _user_error(["evaluate", trained, tmp_path / "big.csv"], capsys, "line 11", "rescale")


def test_parquet_nested_column_is_one_line(tmp_path, capsys):
    table = pa.Table.from_pandas(_table(), preserve_index=False)
    table = table.append_column("tags", pa.array([[[1], [2]]] * table.num_rows))
    pq.write_table(table, tmp_path / "l.parquet")
    _user_error(["train", "--train", tmp_path / "l.parquet", "--task", "clicked:binary",
                 *QUICK, "--out", tmp_path / "m"], capsys, "l.parquet", "'tags'", "list")


@pytest.mark.parametrize("damage", [
    lambda e: e.update(stats={"x": ["nan", 1]}),
    lambda e: e.update(stats={k: [0.0, float("inf")] for k in e["stats"]}),
    lambda e: e.pop("vocab"),
    lambda e: e.update(tasks=[[[[[[[[]]]]]]]]),
    lambda e: e["tasks"][0].update(classes=None),
    lambda e: e.update(numeric={"x": 1}),
])
def test_damaged_encoder_json_is_one_line(trained, tmp_path, capsys, damage):
    import shutil

    bad = tmp_path / "m"
    shutil.copytree(trained, bad)
    enc = json.loads((bad / "encoder.json").read_text())
    damage(enc)
    data = json.dumps(enc).encode()
    (bad / "encoder.json").write_bytes(data)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["files"]["encoder.json"] = hashlib.sha256(data).hexdigest()
    (bad / "manifest.json").write_text(json.dumps(manifest))
    _user_error(["predict", bad, trained.parent / "train.csv", "--out", tmp_path / "p.csv"],
                capsys, "corrupted", "encoder description")


# ---- error locations ---------------------------------------------------------------------------
N_ROWS, BAD_ROW = 20_000, 19_990


@pytest.fixture(scope="module")
def long_files(tmp_path_factory):
    """20,000 rows with a bad value at data row 19,990 (CSV line 19,992): text in a numeric
    column (found by the reader when chunked) or an infinite number (found by the encoder)."""
    root = tmp_path_factory.mktemp("long")
    df = _table(N_ROWS, seed=5)
    paths = {}
    for kind, value in (("text", "twelve"), ("inf", "inf")):
        bad = df.astype({"age": object})
        bad.loc[BAD_ROW, "age"] = value
        paths[kind] = root / f"{kind}.csv"
        bad.to_csv(paths[kind], index=False)
    bad = df.copy()
    bad.loc[BAD_ROW, "age"] = np.inf
    paths["parquet"] = root / "inf.parquet"
    bad.to_parquet(paths["parquet"], index=False)
    early = df.astype({"age": object})
    early.loc[5, "age"] = "oops"
    paths["early"] = root / "early.csv"
    early.to_csv(paths["early"], index=False)
    return paths


def _stream_config(tmp_path, train, chunk_rows, fit_rows):
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'tasks = ["clicked:binary"]\n[data]\ntrain = "{train}"\nstream = true\n'
                   f"chunk_rows = {chunk_rows}\nfit_rows = {fit_rows}\n[columns]\n"
                   'id = ["uid"]\nnumeric = ["age"]\n[training]\nepochs = 1\nbatch_size = 512\n')
    return cfg


def test_error_at_data_row_5_names_line_7_through_the_holdout(long_files, tmp_path, capsys):
    for seed in ("0", "1", "2"):  # row 5 lands in the training or the held-out part
        _user_error(["train", "--train", long_files["early"], "--task", "clicked:binary",
                     "--id", "uid", "--numeric", "age", *QUICK, "--seed", seed, "--out",
                     tmp_path / "m"], capsys,
                    "early.csv", "'oops'", "at line 7")


@pytest.mark.parametrize("kind", ["text", "inf", "parquet"])
def test_error_at_row_19990_is_reported_at_the_files_line(long_files, trained, tmp_path,
                                                            capsys, kind):
    path = long_files[kind]
    where = "row index 19990" if kind == "parquet" else "line 19992"
    needle = "'twelve'" if kind == "text" else "infinite value"
    train = ["train", "--train", path, "--task", "clicked:binary", "--id", "uid", "--numeric",
             "age", *QUICK]
    _user_error([*train, "--out", tmp_path / "a"], capsys, path.name, needle, where)
    _user_error(["train", "--config", _stream_config(tmp_path, path, 1_000, 2_000), "--out",
                 tmp_path / "b"], capsys, path.name, needle, where)
    _user_error(["train", "--config", _stream_config(tmp_path, path, 3_000, 19_995), "--out",
                 tmp_path / "c"], capsys, path.name, needle, where)
    for chunk in ("1000", "7", "65536"):
        _user_error(["predict", trained, path, "--out", tmp_path / "p.csv", "--chunk-rows",
                     chunk], capsys, path.name, needle, where)
    _user_error(["evaluate", trained, path], capsys, path.name, needle, where)
