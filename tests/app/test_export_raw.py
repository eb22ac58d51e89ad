"""`mmoe export --raw`: one ONNX graph from raw columns to answers, against `mmoe predict`
on raw files (unseen categories, missing values, every task kind, every model), and each
numeric encoding's operators against the numpy encoder."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import ndtri as scipy_ndtri

from mmoe import TaskSpec, available_models, build_model
from mmoe.app.export import export_model
from mmoe.app.export_raw import RawNumeric, ndtri
from mmoe.app.predict import predict_file
from mmoe.app.raw_columns import raw_feeds
from mmoe.cli import main
from mmoe.config import FeatureSpec
from mmoe.data.encoders import TableEncoder
from mmoe.train.model_dir import save_model_dir

from .conftest import make_table

ort = pytest.importorskip("onnxruntime")
TASKS = [TaskSpec("buys", "binary", positive="yes"), TaskSpec("spend", "regression"),
         TaskSpec("segment", "multiclass"), TaskSpec("again", "binary", after="buys")]


def _table(n, seed):
    df = make_table(n, seed)
    df["again"] = ((df["buys"] == "yes") & (np.arange(n) % 3 == 0)).astype(int)
    df["plan"] = np.where(np.arange(n) % 4 == 0, "pro", "free")
    return df


def _model_dir(tmp_path, name, features=(), encoding="auto"):
    enc = TableEncoder(TASKS, exclude=["user_id", "w"], scale_regression=True,
                       features=features, numeric_encoding=encoding).fit(_table(300, 0))
    torch.manual_seed(0)
    model = build_model(name, enc.input_spec(), enc.tasks, num_experts=3)
    return save_model_dir(tmp_path / name, model, enc, {"columns": {"id": ["user_id"]}}, {}), enc


def _raw_file(path, seed=5):
    df = _table(120, seed)
    df.loc[::7, "city"] = "atlantis"  # unseen
    df.loc[3::11, "x1"] = np.nan
    df.loc[5::13, "plan"] = None
    df.drop(columns=["buys", "spend", "segment", "again"]).to_csv(path, index=False)
    return path


def _compare(session, enc, raw_csv, predictions):
    df = pd.read_csv(raw_csv)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, raw_feeds(enc, df)), strict=True))
    want = pd.read_csv(predictions)
    std = enc.label_stats["spend"][1]
    np.testing.assert_allclose(got["spend"] / std, want["spend"] / std, atol=1e-5)
    for col in ("buys", "again", "buys_and_again"):
        np.testing.assert_allclose(got[col], want[col], atol=1e-5)
    assert got["buys_label"].tolist() == want["buys_label"].tolist()
    assert got["segment"].tolist() == want["segment"].tolist()
    proba = want[[f"segment_proba_{c}" for c in ("high", "low", "mid")]].to_numpy()
    np.testing.assert_allclose(got["segment_proba"], proba, atol=1e-5)


@pytest.mark.parametrize("name", sorted(available_models()))
def test_raw_graph_answers_as_mmoe_predict_every_model(tmp_path, name):
    try:
        directory, enc = _model_dir(tmp_path, name)
    except ValueError as err:  # a model needing options we do not pass
        pytest.skip(f"{name}: {err}")
    assert export_model(directory, "onnx", tmp_path / "raw.onnx", raw=True) <= 1e-5
    session = ort.InferenceSession(str(tmp_path / "raw.onnx"))
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        ("x1", "tensor(double)"), ("x2", "tensor(double)"), ("city", "tensor(string)"),
        ("plan", "tensor(string)")]
    assert [o.name for o in session.get_outputs()] == [
        "buys", "buys_label", "spend", "segment", "segment_proba", "again", "again_label",
        "buys_and_again"]
    raw = _raw_file(tmp_path / "raw.csv")
    predict_file(directory, raw, tmp_path / "p.csv")
    _compare(session, enc, raw, tmp_path / "p.csv")


@pytest.mark.parametrize("encoding", ["standard", "quantile", "ple", "periodic"])
def test_each_numeric_encoding_and_looked_up_categories(tmp_path, encoding):
    features = [FeatureSpec("city", "categorical", embedding_dim=4)]  # its own table: ids
    directory, enc = _model_dir(tmp_path, "mmoe", features, encoding)
    assert enc.lookup is not None and enc.encodings["x1"].kind == encoding
    export_model(directory, "onnx", tmp_path / "raw.onnx", raw=True)
    raw = _raw_file(tmp_path / "raw.csv", seed=9)
    predict_file(directory, raw, tmp_path / "p.csv")
    _compare(ort.InferenceSession(str(tmp_path / "raw.onnx")), enc, raw, tmp_path / "p.csv")


def test_numeric_operators_equal_the_numpy_encoder():
    rng = np.random.default_rng(0)
    ties = np.round(rng.exponential(3.0, 2000))  # many repeated values: quantile ties
    df = pd.DataFrame({"t": ties, "h": np.exp(rng.normal(0, 3, 2000)),
                       "flag": rng.integers(0, 2, 2000).astype(float), "const": 4.0,
                       "y": rng.integers(0, 2, 2000)})
    df.loc[::17, "h"] = np.nan
    probe = pd.DataFrame({"t": np.r_[np.unique(ties), -1, 1e9, np.nan],
                          "h": np.r_[np.exp(rng.normal(0, 4, len(np.unique(ties)))), 0, 1e30,
                                     np.nan]})
    probe["flag"], probe["const"] = 1.0, np.r_[np.full(len(probe) - 1, 4.0), 5.0]
    for encoding in ("standard", "quantile", "ple"):
        enc = TableEncoder([TaskSpec("y")], numeric_encoding=encoding).fit(df)
        expected = enc.transform(probe, labels=False).numeric.numpy()
        raw = torch.from_numpy(np.stack([probe[c].to_numpy(float) for c in enc.numeric], 1))
        got = RawNumeric(enc)(raw).numpy()
        np.testing.assert_allclose(got, expected, atol=2e-6, err_msg=encoding)


def test_ndtri_matches_scipy_in_both_tails():
    p = torch.tensor(np.r_[1e-7, 1e-4, 0.02, 0.02425, 0.3, 0.5, 0.9, 0.99999, 1 - 1e-7],
                     dtype=torch.float64)
    np.testing.assert_allclose(ndtri(p).numpy(), scipy_ndtri(p.numpy()), rtol=2e-9)


def _sequence_table(n, seed):
    rng = np.random.default_rng(seed)
    df = _table(n, seed)
    items = [f"i{k}" for k in range(12)]
    df["item"] = rng.choice(items, n)
    df["history"] = ["|".join(rng.choice(items + ["new"], rng.integers(0, 6)))
                     for _ in range(n)]
    df.loc[::9, "history"] = None
    df.loc[4::9, "history"] = "i1||i2"  # an empty id keeps its slot, as mmoe predict does
    return df


def test_sequences_over_a_vocabulary_answer_as_mmoe_predict(tmp_path):
    features = [FeatureSpec("item", "categorical", embedding_dim=4),
                FeatureSpec("history", "sequence", share="item", max_len=3)]
    enc = TableEncoder(TASKS, exclude=["user_id", "w"], scale_regression=True,
                       features=features).fit(_sequence_table(300, 0))
    torch.manual_seed(0)
    model = build_model("mmoe", enc.input_spec(), enc.tasks, num_experts=3)
    directory = save_model_dir(tmp_path / "m", model, enc, {}, {})
    export_model(directory, "onnx", tmp_path / "raw.onnx", raw=True)
    session = ort.InferenceSession(str(tmp_path / "raw.onnx"))
    assert dict((i.name, i.type) for i in session.get_inputs())["history"] == "tensor(string)"
    raw = _sequence_table(150, 7).drop(columns=["buys", "spend", "segment", "again"])
    raw.to_csv(tmp_path / "raw.csv", index=False)
    predict_file(directory, tmp_path / "raw.csv", tmp_path / "p.csv")
    _compare(session, enc, tmp_path / "raw.csv", tmp_path / "p.csv")
    # a Parquet list column: the same ids, joined by the delimiter for the graph
    raw["history"] = [h.split("|") if isinstance(h, str) else None for h in raw["history"]]
    raw.to_parquet(tmp_path / "raw.parquet")
    predict_file(directory, tmp_path / "raw.parquet", tmp_path / "q.csv")
    feeds = raw_feeds(enc, pd.read_parquet(tmp_path / "raw.parquet"))
    assert feeds["history"][4] == "i1||i2"
    got = session.run(["buys"], feeds)[0]
    np.testing.assert_allclose(got, pd.read_csv(tmp_path / "q.csv")["buys"], atol=1e-5)


@pytest.mark.parametrize("features,column", [
    ([FeatureSpec("user_id", "hashed", buckets=64)], "user_id"),
    ([FeatureSpec("item", "hashed", buckets=64),
      FeatureSpec("history", "sequence", share="item", max_len=3)], "item")])
def test_hashed_columns_are_refused_in_one_line(tmp_path, capsys, features, column):
    df = _sequence_table(200, 0)
    enc = TableEncoder(TASKS, exclude=["w"] + (["user_id"] if column != "user_id" else []),
                       scale_regression=True, features=features).fit(df)
    model = build_model("mmoe", enc.input_spec(), enc.tasks, num_experts=2)
    directory = save_model_dir(tmp_path / "m", model, enc, {}, {})
    with pytest.raises(SystemExit) as done:
        main(["export", str(directory), "--format", "onnx", "--raw", "--out",
              str(tmp_path / "r.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2 and len(err) == 1
    assert f"column '{column}' is a hashed column" in err[0] and "SipHash" in err[0]
    assert not (tmp_path / "r.onnx").exists()
