"""The recommender path end to end on a small generated funnel: `mmoe data generate funnel`,
`mmoe train --config DIR/mmoe.toml` (the feature table, GAUC in the validation metrics),
`mmoe evaluate --group-by`, `mmoe predict` on ids never seen in training, `--feature` and
`[features.NAME]`, and their errors: one line, exit code 2."""

import contextlib
import io
import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from mmoe.app.oracle import oracle_metrics
from mmoe.cli import main
from mmoe.data.ids import group_codes
from mmoe.data.readers import read_table
from mmoe.metrics import gauc, mrr, ndcg_at_k

from .conftest import one_line_error, run_cli

GENERATE = ["data", "generate", "funnel", "--rows", "20000", "--users", "2000", "--items",
            "300", "--seed", "0"]
FAST = ["--epochs", "1", "--threads", "1"]


def _captured(argv) -> tuple[int, str, str]:
    """Run ``mmoe`` in-process outside a test (module fixtures have no capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A generated funnel (``data``) and a model trained on it for one epoch (``model``),
    with what both commands printed."""
    root = tmp_path_factory.mktemp("recsys")
    code, generated, err = _captured([*GENERATE, "--out", root / "f"])
    assert code == 0, err
    code, trained, err = _captured(["train", "--config", root / "f" / "mmoe.toml",
                                    "--out", root / "m", *FAST])
    assert code == 0, err
    return {"data": root / "f", "model": root / "m", "generated": generated,
            "trained": trained}


def _feature_rows(text: str) -> dict[str, list[str]]:
    """The rows of the feature table `mmoe train` prints: column -> [kind, width, table]."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["column", "kind"])
    rows = {}
    for line in lines[start + 2:]:
        if line.startswith("x is "):
            break
        name, kind, width, *table = line.split()
        rows[name] = [kind, width, " ".join(table)]
    return rows


# ---- generate, train, evaluate, predict -----------------------------------------------------
def test_generate_writes_the_data_and_the_oracle(run):
    data = run["data"]
    assert {p.name for p in data.iterdir()} >= {"train", "valid", "test", "mmoe.toml",
                                                "generator.json", "oracle.json"}
    oracle = json.loads((data / "oracle.json").read_text())
    assert set(oracle) == {"valid", "test"}
    for split in ("valid", "test"):
        assert set(oracle[split]) == {"click", "purchase"}
        expected = oracle_metrics(data / split)
        for task, metrics in expected.items():
            for name, value in metrics.items():
                assert oracle[split][task][name] == pytest.approx(value, abs=1e-12)
    assert 0.7 < oracle["test"]["click"]["auc"] < 1 and "gauc" in oracle["test"]["click"]
    assert "oracle on test" in run["generated"]


@pytest.mark.parametrize("shared", [0, 5])
def test_generate_shared_dims_sets_how_related_the_tasks_are(tmp_path, shared):
    """`--shared-dims` reaches the generator: the rows are those of FunnelSpec(shared_dims=)."""
    from mmoe.data.datasets.funnel import FunnelSpec, generate_funnel

    small = dict(rows=3000, users=100, items=50, seed=1)
    code, _, err = _captured(["data", "generate", "funnel", "--rows", 3000, "--users", 100,
                              "--items", 50, "--seed", 1, "--shared-dims", shared,
                              "--out", tmp_path / "cli"])
    assert code == 0, err
    expected = generate_funnel(FunnelSpec(**small, shared_dims=shared), tmp_path / "py")
    default = generate_funnel(FunnelSpec(**small), tmp_path / "default")
    got = read_table(tmp_path / "cli" / "test")
    pd.testing.assert_frame_equal(got, read_table(expected / "test"))
    assert not np.allclose(got["p_buy_given_click"], read_table(default / "test")[
        "p_buy_given_click"])  # the default (2) is another world


def test_generate_shared_dims_out_of_range_is_a_usage_error(tmp_path, capsys):
    code, _, err = run_cli(["data", "generate", "funnel", "--rows", "100", "--shared-dims", "6",
                            "--out", str(tmp_path / "f")], capsys)
    assert code == 2 and "--shared-dims" in err and not (tmp_path / "f").exists()


def test_train_prints_the_features_and_reports_gauc(run):
    rows = _feature_rows(run["trained"])
    assert rows["user_id"][0] == "hashed"
    assert rows["history"][0] == "sequence" and rows["history"][2].startswith("item_id:")
    assert rows["item_id"][2].split()[:4] == rows["history"][2].split()[:4]  # one table
    kind, width, how = rows["price"]  # piecewise-linear by default, at most 64 bins
    assert kind == "numeric" and how == f"piecewise-linear, {width} bins"
    assert 1 < int(width) <= 64
    assert not {"row", "p_click", "p_click_buy", "click", "purchase"} & set(rows)
    metrics = json.loads((run["model"] / "metrics.json").read_text())
    click = metrics["valid"]["click"]
    assert {"auc", "gauc", "gauc_groups", "gauc_skipped", "ndcg@10", "mrr"} <= set(click)
    assert 0 <= click["gauc"] <= 1 and click["gauc_groups"] > 10
    encoder = json.loads((run["model"] / "encoder.json").read_text())
    specs = {s["name"]: s for s in encoder["lookups"]["specs"]}
    assert specs["user_id"]["kind"] == "hashed" and specs["user_id"]["buckets"] >= 1024
    assert specs["history"]["kind"] == "sequence" and specs["history"]["share"] == "item_id"


def test_evaluate_group_by_equals_the_metrics_of_the_predictions(run, tmp_path, capsys):
    code, out, err = run_cli(["evaluate", run["model"], run["data"] / "test", "--group-by",
                              "user_id", "--json", "-"], capsys)
    assert code == 0, err
    metrics = json.loads(out)
    click = metrics["click"]
    assert {"gauc", "gauc_groups", "gauc_skipped", "ndcg@10", "mrr", "auc"} <= set(click)
    # the same numbers from `mmoe predict` and the metric functions
    code, _, err = run_cli(["predict", run["model"], run["data"] / "test", "--out",
                            tmp_path / "p.parquet"], capsys)
    assert code == 0, err
    pred = pd.read_parquet(tmp_path / "p.parquet")
    test = read_table(run["data"] / "test")
    users, y, p = group_codes(test["user_id"]), test["click"].to_numpy(), pred["click"]
    assert click["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    value, used, skipped = gauc(users, y, p.to_numpy())
    assert click["gauc"] == pytest.approx(value, abs=1e-6)
    assert (click["gauc_groups"], click["gauc_skipped"]) == (used, skipped)
    assert click["ndcg@10"] == pytest.approx(ndcg_at_k(users, y, p.to_numpy())[0], abs=1e-6)
    assert click["mrr"] == pytest.approx(mrr(users, y, p.to_numpy())[0], abs=1e-6)
    code, out, _ = run_cli(["evaluate", run["model"], run["data"] / "test", "--group-by",
                            "user_id", "--k", "3", "--json", "-"], capsys)
    assert code == 0 and "ndcg@3" in json.loads(out)["click"]


def test_predict_rows_with_ids_never_seen_in_training(run, tmp_path, capsys):
    table = pa.concat_tables(pq.read_table(p) for p in sorted((run["data"] / "test").iterdir()))
    shift = 10**9
    history = table["history"].combine_chunks()
    shifted = pa.ListArray.from_arrays(history.offsets, pc.add(history.flatten(), shift))
    unseen = (table.set_column(table.schema.get_field_index("user_id"), "user_id",
                               pc.add(table["user_id"], shift))
              .set_column(table.schema.get_field_index("item_id"), "item_id",
                          pc.add(table["item_id"], shift))
              .set_column(table.schema.get_field_index("history"), "history", shifted))
    pq.write_table(unseen, tmp_path / "unseen.parquet")
    train_users = set(read_table(run["data"] / "train", columns=["user_id"])["user_id"])
    assert not train_users & set(unseen["user_id"].to_pylist())
    outs = {}
    for name, path in (("seen", run["data"] / "test"), ("unseen", tmp_path / "unseen.parquet")):
        code, out, err = run_cli(["predict", run["model"], path, "--out",
                                  tmp_path / f"{name}.csv"], capsys)
        assert code == 0, err
        assert f"{table.num_rows} predictions written" in out
        outs[name] = pd.read_csv(tmp_path / f"{name}.csv")
    pred = outs["unseen"]
    assert list(pred.columns) == ["click", "click_label", "purchase", "purchase_label"]
    assert len(pred) == table.num_rows
    pred = pred[["click", "purchase"]]
    values = pred.to_numpy()
    assert np.isfinite(values).all() and ((values > 0) & (values < 1)).all()
    # the ids were read: other rows of the tables give other predictions
    assert (pred["click"] != outs["seen"]["click"]).mean() > 0.5


def test_feature_flag_overrides_inference_and_the_config(run, tmp_path, capsys):
    data = run["data"]
    code, out, err = run_cli(["train", "--config", data / "mmoe.toml", "--train",
                              data / "valid", "--valid", data / "test", "--feature",
                              "history:sequence:share=item_id,max_len=3", "--out",
                              tmp_path / "m", *FAST], capsys)
    assert code == 0, err
    assert "last 3 ids" in _feature_rows(out)["history"][2]
    encoder = json.loads((tmp_path / "m" / "encoder.json").read_text())
    specs = {s["name"]: s for s in encoder["lookups"]["specs"]}
    assert specs["history"]["max_len"] == 3 and specs["history"]["share"] == "item_id"
    model = json.loads((tmp_path / "m" / "config.json").read_text())
    assert model["features"]["history"]["max_len"] == 3


# ---- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("flag, needle", [
    ("history", "use NAME:KIND"),
    ("history:sequence:bogus=1", "use NAME:KIND"),
    ("history:sequence:max_len=x", "max_len must be an integer"),
    ("history:vector", "kind"),
    (":sequence", "use NAME:KIND"),
])
def test_a_bad_feature_flag_is_one_line(run, tmp_path, capsys, flag, needle):
    line = one_line_error(["train", "--config", run["data"] / "mmoe.toml", "--feature", flag,
                           "--out", tmp_path / "m", *FAST], capsys, needle)
    assert "history" in line or flag.startswith(":")
    assert not (tmp_path / "m").exists()


def test_an_unknown_key_in_a_features_table_names_the_file_and_key(run, tmp_path, capsys):
    config = tmp_path / "bad.toml"
    text = (run["data"] / "mmoe.toml").read_text().replace(
        'train = "train"', f'train = "{run["data"] / "train"}"').replace(
        'valid = "valid"', f'valid = "{run["data"] / "valid"}"')
    config.write_text(text + '\n[features.price]\nkind = "numeric"\nwidth = 3\n')
    one_line_error(["train", "--config", config, "--out", tmp_path / "m", *FAST], capsys,
                   str(config), "[features.price]", "width")
    assert not (tmp_path / "m").exists()


def test_group_by_an_unknown_column_names_it(run, tmp_path, capsys):
    one_line_error(["evaluate", run["model"], run["data"] / "test", "--group-by",
                    "nosuchcol"], capsys, "'nosuchcol'")
    one_line_error(["train", "--config", run["data"] / "mmoe.toml", "--group-by", "nosuchcol",
                    "--out", tmp_path / "m", *FAST], capsys, "'nosuchcol'")
    assert not (tmp_path / "m").exists()


def test_the_metrics_are_numbers(run):
    """metrics.json holds no NaN (JSON has none): undefined metrics are null."""
    metrics = json.loads((run["model"] / "metrics.json").read_text())
    for task in metrics["valid"].values():
        for value in task.values():
            assert value is None or (isinstance(value, float | int) and math.isfinite(value))


@pytest.mark.parametrize("model", ["esmm", "mmoe"])
def test_funnel_task_trains_predicts_and_evaluates_both_outputs(run, tmp_path, model):
    """`--task purchase:binary:after=click`: predictions carry pCTR, pCVR and pCTCVR, the
    evaluation scores the conditional on clicked rows and the joint on all rows."""
    data = run["data"]
    code, _, err = _captured(["train", "--config", data / "mmoe.toml", "--task", "click:binary:1",
                              "--task", "purchase:binary:1:after=click", "--model", model,
                              "--out", tmp_path / "m", *FAST])
    assert code == 0, err
    code, out, err = _captured(["evaluate", tmp_path / "m", data / "test", "--json",
                                tmp_path / "metrics.json"])
    assert code == 0, err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    test = read_table(data / "test")
    assert metrics["click_and_purchase"]["n"] == len(test)
    assert metrics["purchase"]["n"] == int(test["click"].sum())  # clicked rows only
    code, _, err = _captured(["predict", tmp_path / "m", data / "test", "--out",
                              tmp_path / "p.parquet"])
    assert code == 0, err
    preds = pd.read_parquet(tmp_path / "p.parquet")
    assert {"click", "purchase", "click_and_purchase"} <= set(preds.columns)
    np.testing.assert_allclose(preds["click_and_purchase"], preds["click"] * preds["purchase"],
                               rtol=1e-5)
    clicked = test["click"].to_numpy() == 1
    assert metrics["purchase"]["auc"] == pytest.approx(
        roc_auc_score(test["purchase"][clicked], preds["purchase"][clicked]), abs=1e-6)


def test_a_purchase_without_a_click_is_one_line(run, tmp_path, capsys):
    df = read_table(run["data"] / "valid").head(500).copy()
    df.loc[df.index[3], ["click", "purchase"]] = [0, 1]
    df.to_parquet(tmp_path / "bad.parquet")
    one_line_error(["train", "--train", tmp_path / "bad.parquet", "--task", "click:binary:1",
                    "--task", "purchase:binary:1:after=click", "--out", tmp_path / "m", *FAST],
                   capsys, "'purchase' follows 'click'", "bad.parquet")


def test_wide_and_cross_train_predict_and_export(run, tmp_path):
    """`--wide --cross`: the model directory holds the ids' wide terms and products, they
    were trained (the rows the data used moved from zero), the feature table counts the
    products, and the ONNX graph answers as the model does."""
    pytest.importorskip("onnxruntime")
    from mmoe.app.export import export_model
    from mmoe.train.model_dir import load_model_dir

    code, out, err = _captured(["train", "--config", run["data"] / "mmoe.toml", "--wide",
                                "--cross", "--out", tmp_path / "m", *FAST])
    assert code == 0, err
    assert "(96 of them the ids' products)" in out
    md = load_model_dir(tmp_path / "m")
    assert md.model.config.wide and md.model.config.cross
    crossed = sum(md.model.encoder.tables[t].shape[1] for t, *_ in
                  [md.model.encoder.lookups[i] for i, _ in md.model.encoder.cross])
    assert len(md.model.encoder.cross) == 3 and crossed == 3 * 32  # user, item, history
    moved = [int(t.detach().abs().sum(1).gt(0).sum()) for t in md.model.wide.tables]
    assert all(m > 100 for m in moved)
    code, _, err = _captured(["export", tmp_path / "m", "--format", "onnx", "--out",
                              tmp_path / "m.onnx"])
    assert code == 0, err
    assert export_model(tmp_path / "m", "onnx", tmp_path / "again.onnx") <= 1e-5
    code, _, err = _captured(["predict", tmp_path / "m", run["data"] / "test", "--out",
                              tmp_path / "p.parquet"])
    assert code == 0, err
    assert len(pd.read_parquet(tmp_path / "p.parquet")) == len(read_table(run["data"] / "test"))
