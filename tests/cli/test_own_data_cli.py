"""`mmoe train | evaluate | predict | export` on small generated files, and every error path:
one line on stderr, exit code 2, nothing already written destroyed."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe.cli import main
from mmoe.train.model_dir import load_model_dir

from .conftest import TASK_FLAGS, make_table

FAST = ["--epochs", "15", "--batch-size", "32", "--threads", "1"]


def run(argv, capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def user_error(argv, capsys, *needles):
    code, _, err = run(argv, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmoe: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def model_dir(tables, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "m1"
    torch.set_num_threads(1)
    main_args = ["train", "--train", tables["train"], *TASK_FLAGS, "--id", "user_id",
                 "--weight", "w", *FAST, "--out", out]
    try:
        main([str(a) for a in main_args])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return out


# ---- train ---------------------------------------------------------------------------------
def test_train_writes_a_complete_model_dir(model_dir):
    names = {p.name for p in model_dir.iterdir()}
    assert {"manifest.json", "model.pt", "config.json", "encoder.json", "metrics.json",
            "gates.png"} <= names
    assert (model_dir / "gates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert set(metrics["valid"]) == {"buys", "spend", "segment"}
    assert len(metrics["history"]) >= 1
    first = metrics["history"][0]
    assert first["samples_per_s"] > 0 and set(first["valid"]) == {"buys", "spend", "segment"}
    # the held-out part (10% of 600 rows) was evaluated, and the model learnt something
    assert metrics["valid_rows"] == 60
    assert metrics["valid"]["buys"]["auc"] > 0.8
    assert metrics["valid"]["spend"]["r2"] > 0.5
    md = load_model_dir(model_dir)
    assert [t.name for t in md.model.tasks] == ["buys", "spend", "segment"]
    assert md.encoder.tasks[0].classes == ("no", "yes")
    assert "user_id" not in md.encoder.numeric and "w" not in md.encoder.numeric
    assert md.config["columns"]["id"] == ["user_id"]


def test_train_with_valid_file_and_toml_config_flags_override(tables, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f"""
tasks = ["buys:binary:yes"]
[data]
train = "{tables['train']}"
valid = "{tables['valid']}"
[columns]
id = ["user_id"]
categorical = ["city"]
[model]
name = "omoe"
num_experts = 3
[training]
epochs = 2
batch_size = 128
""")
    out = tmp_path / "m"
    code, stdout, err = run(["train", "--config", cfg, "--model", "shared_bottom",
                             "--epochs", "3", "--out", out], capsys)
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["name"] == "shared_bottom"  # flag beats the file
    assert config["model"]["num_experts"] == 3  # file beats the default
    assert config["training"]["epochs"] == 3 and config["training"]["batch_size"] == 128
    assert config["data"]["valid"] == str(tables["valid"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["valid_rows"] == 200 and len(metrics["history"]) <= 3
    assert "buys" in stdout


def test_train_tensorboard_writes_event_files(tables, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out = tmp_path / "m"
    code, _, err = run(["train", "--train", tables["train_parquet"], "--task",
                        "buys:binary:yes", "--epochs", "2", "--tensorboard", "--out", out],
                       capsys)
    assert code == 0, err
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    load_model_dir(out)  # event files are covered by the manifest too


def test_regression_predictions_in_original_scale(model_dir, tables, tmp_path, capsys):
    out = tmp_path / "p.parquet"
    code, _, err = run(["predict", model_dir, tables["test_parquet"], "--out", out], capsys)
    assert code == 0, err
    pred = pd.read_parquet(out)
    truth = pd.read_parquet(tables["test_parquet"])
    assert abs(pred["spend"].mean() - truth["spend"].mean()) < 100  # labels ~1000 +- 350
    assert np.corrcoef(pred["spend"], truth["spend"])[0, 1] > 0.7


# ---- evaluate ------------------------------------------------------------------------------
def test_evaluate_prints_a_table_and_writes_json(model_dir, tables, tmp_path, capsys):
    js = tmp_path / "m.json"
    code, out, err = run(["evaluate", model_dir, tables["test"], "--json", js], capsys)
    assert code == 0, err
    header = out.splitlines()[0].split()
    assert header[:2] == ["task", "n"] and "auc" in header and "r2" in header
    metrics = json.loads(js.read_text())
    assert metrics["buys"]["n"] == 150 and metrics["buys"]["auc"] > 0.8
    assert metrics["segment"]["accuracy"] > 0.5
    code, out, _ = run(["evaluate", model_dir, tables["test_parquet"], "--json", "-"], capsys)
    same = json.loads(out)  # the same rows as Parquet give the same metrics
    assert same["buys"]["auc"] == pytest.approx(metrics["buys"]["auc"], abs=1e-9)
    assert same["spend"]["mse"] == pytest.approx(metrics["spend"]["mse"], rel=1e-6)


# ---- predict -------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_columns_ids_and_chunking(model_dir, tables, tmp_path, capsys, suffix):
    out = tmp_path / f"p{suffix}"
    code, stdout, err = run(["predict", model_dir, tables["test"], "--out", out,
                             "--chunk-rows", "40"], capsys)
    assert code == 0, err
    assert "150 predictions" in stdout
    pred = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(pred.columns) == ["user_id", "buys", "buys_label", "spend", "segment",
                                  "segment_proba_high", "segment_proba_low", "segment_proba_mid"]
    truth = pd.read_csv(tables["test"])
    assert pred["user_id"].tolist() == truth["user_id"].tolist()
    assert pred["buys"].between(0, 1).all()
    labels = np.where(pred["buys"] >= 0.5, "yes", "no")  # the label at the 0.5 threshold
    assert (pred["buys_label"].astype(str).to_numpy() == labels).all()
    proba = pred[["segment_proba_high", "segment_proba_low", "segment_proba_mid"]].to_numpy()
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    best = np.array(["high", "low", "mid"])[proba.argmax(1)]
    assert (pred["segment"].to_numpy() == best).all()
    # chunking does not change predictions
    whole = tmp_path / f"whole{suffix}"
    run(["predict", model_dir, tables["test"], "--out", whole], capsys)
    other = pd.read_csv(whole) if suffix == ".csv" else pd.read_parquet(whole)
    np.testing.assert_allclose(other["buys"], pred["buys"], atol=1e-6)


def test_predict_without_labels_or_ids(model_dir, tables, tmp_path, capsys):
    df = pd.read_csv(tables["test"]).drop(columns=["buys", "spend", "segment", "user_id"])
    src = tmp_path / "nolabels.csv"
    df.to_csv(src, index=False)
    code, _, err = run(["predict", model_dir, src, "--out", tmp_path / "p.csv"], capsys)
    assert code == 0, err
    assert list(pd.read_csv(tmp_path / "p.csv").columns)[0] == "buys"


# ---- export --------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_parity(model_dir, tables, tmp_path, capsys, fmt):
    out = tmp_path / f"m.{fmt}"
    code, stdout, err = run(["export", model_dir, "--format", fmt, "--out", out], capsys)
    assert code == 0, err
    assert "parity" in stdout and out.is_file()


def test_onnx_outputs_named_by_task_match_predict(model_dir, tables, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    assert run(["export", model_dir, "--format", "onnx", "--out", out], capsys)[0] == 0
    md = load_model_dir(model_dir)
    df = pd.read_csv(tables["test"])
    table = md.encoder.transform(df, labels=False)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["buys", "spend", "segment"]
    got = dict(zip(["buys", "spend", "segment"], session.run(None, {
        "numeric": table.numeric.numpy(), "categorical": table.categorical.numpy()}), strict=True))
    pred = tmp_path / "p.csv"
    run(["predict", model_dir, tables["test"], "--out", pred], capsys)
    ref = pd.read_csv(pred)
    np.testing.assert_allclose(got["buys"], ref["buys"], atol=1e-5)
    # original scale (values ~1e3): float32 rounding there is ~1e-4 absolute, a few ulp
    np.testing.assert_allclose(got["spend"], ref["spend"], rtol=1e-4)
    assert got["segment"].shape == (150, 3)


# ---- streaming -----------------------------------------------------------------------------
def test_stream_equals_in_memory_when_the_buffer_covers_the_file(tables, tmp_path, capsys):
    common = ["--train", tables["train_parquet"], "--valid", tables["valid"], *TASK_FLAGS,
              "--id", "user_id", "--epochs", "3", "--batch-size", "64", "--threads", "1"]
    assert run(["train", *common, "--out", tmp_path / "mem"], capsys)[0] == 0
    code, _, err = run(["train", *common, "--stream", "--buffer-rows", "10000",
                        "--out", tmp_path / "stream"], capsys)
    assert code == 0, err
    a, b = load_model_dir(tmp_path / "mem"), load_model_dir(tmp_path / "stream")
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items(),
                                 strict=True):
        assert torch.equal(x, y), name
    ma = json.loads((tmp_path / "mem" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "stream" / "metrics.json").read_text())
    assert ma["valid"] == mb["valid"]


def test_stream_from_chunked_csv_with_small_buffer_learns(tables, tmp_path, capsys):
    out = tmp_path / "m"
    code, _, err = run(["train", "--train", tables["train"], *TASK_FLAGS, "--id", "user_id",
                        "--stream", "--buffer-rows", "128", "--epochs", "6", "--batch-size",
                        "32", "--out", out], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["valid_rows"] == 60  # every 10th row of the head held out
    assert metrics["valid"]["buys"]["auc"] > 0.8


# ---- bad input: one line, exit 2, nothing destroyed ----------------------------------------
def test_error_missing_label_column(tables, tmp_path, capsys):
    user_error(["train", "--train", tables["train"], "--task", "nope:binary", "--out",
                tmp_path / "m"], capsys, "train.csv", "'nope'", "task 'nope'")
    assert not (tmp_path / "m").exists()


def test_error_missing_input_column_at_prediction(model_dir, tables, tmp_path, capsys):
    src = tmp_path / "x.csv"
    pd.read_csv(tables["test"]).drop(columns=["city"]).to_csv(src, index=False)
    user_error(["predict", model_dir, src, "--out", tmp_path / "p.csv"], capsys,
               "x.csv", "'city'")
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("task,needle", [
    ("segment:binary", "binary labels must have 2 distinct values"),
    ("city:regression", "non-numeric value"),
    ("buys:binary:maybe", "positive value 'maybe' does not occur"),
])
def test_error_wrong_label_values_for_kind(tables, tmp_path, capsys, task, needle):
    user_error(["train", "--train", tables["train"], "--task", task, "--out", tmp_path / "m"],
               capsys, needle, "train.csv")


def test_error_bad_task_syntax_and_kind(tables, tmp_path, capsys):
    user_error(["train", "--train", tables["train"], "--task", "buys", "--out", tmp_path / "m"],
               capsys, "COLUMN:KIND")
    user_error(["train", "--train", tables["train"], "--task", "buys:ordinal", "--out",
                tmp_path / "m"], capsys, "binary, regression, multiclass")


def test_error_empty_file(tmp_path, capsys):
    (tmp_path / "empty.csv").write_text("")
    user_error(["train", "--train", tmp_path / "empty.csv", "--task", "y:binary", "--out",
                tmp_path / "m"], capsys, "empty.csv", "empty")
    (tmp_path / "header.csv").write_text("a,y\n")
    user_error(["train", "--train", tmp_path / "header.csv", "--task", "y:binary", "--out",
                tmp_path / "m"], capsys, "header.csv", "no data rows")


def test_error_missing_and_unreadable_files(model_dir, tmp_path, capsys):
    user_error(["train", "--train", tmp_path / "none.csv", "--task", "y:binary", "--out",
                tmp_path / "m"], capsys, "none.csv", "does not exist")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    user_error(["evaluate", model_dir, tmp_path / "bad.parquet"], capsys, "bad.parquet",
               "cannot be read as PARQUET")
    (tmp_path / "data.xlsx").write_bytes(b"x")
    user_error(["predict", model_dir, tmp_path / "data.xlsx", "--out", tmp_path / "p.csv"],
               capsys, "data.xlsx", "unknown table format")


def test_error_text_in_numeric_column_at_prediction(model_dir, tables, tmp_path, capsys):
    df = pd.read_csv(tables["test"])
    df["x1"] = df["x1"].astype(object)
    df.loc[120, "x1"] = "twelve"
    src = tmp_path / "text.csv"
    df.to_csv(src, index=False)
    existing = tmp_path / "p.csv"
    existing.write_text("keep me\n")
    # the bad row is beyond the first chunk: the chunked reader names the column
    user_error(["predict", model_dir, src, "--out", existing, "--chunk-rows", "50"], capsys,
               "text.csv", "'x1'", "'twelve'")
    assert existing.read_text() == "keep me\n"
    pq = tmp_path / "text.parquet"
    df["x1"] = df["x1"].astype(str)  # a text column in Parquet
    df.to_parquet(pq, index=False)
    user_error(["predict", model_dir, pq, "--out", existing], capsys, "text.parquet", "'x1'",
               "'twelve'")
    assert existing.read_text() == "keep me\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_error_unknown_model(tables, tmp_path, capsys):
    user_error(["train", "--train", tables["train"], "--task", "buys:binary:yes", "--model",
                "transformer", "--out", tmp_path / "m"], capsys, "unknown model 'transformer'",
               "mmoe")


def test_error_existing_out_dir_is_never_destroyed(model_dir, tables, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}
    user_error(["train", "--train", tables["train"], "--task", "buys:binary:yes", "--out",
                model_dir], capsys, "already exists", "--overwrite")
    # a failing run with --overwrite leaves the old directory too
    user_error(["train", "--train", tables["train"], "--task", "nope:binary", "--out",
                model_dir, "--overwrite"], capsys, "'nope'")
    after = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}
    assert after == before
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".")]


def test_overwrite_replaces_after_success(tables, tmp_path, capsys):
    out = tmp_path / "m"
    args = ["train", "--train", tables["train"], "--task", "buys:binary:yes", "--epochs", "1",
            "--out", out]
    assert run(args, capsys)[0] == 0
    assert run([*args, "--seed", "3", "--overwrite"], capsys)[0] == 0
    assert json.loads((out / "config.json").read_text())["training"]["seed"] == 3


def test_error_model_dir_from_another_version(model_dir, tmp_path, capsys):
    import shutil

    other = tmp_path / "old"
    shutil.copytree(model_dir, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["format_version"] = 99
    (other / "manifest.json").write_text(json.dumps(manifest))
    user_error(["evaluate", other, "x.csv"], capsys, "format version 99", "retrain")


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "manifest"])
def test_error_corrupted_model_dir(model_dir, tables, tmp_path, capsys, damage):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    target = bad / "model.pt"
    if damage == "flip":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "delete":
        target.unlink()
    else:
        (bad / "manifest.json").write_text("{not json")
    user_error(["predict", bad, tables["test"], "--out", tmp_path / "p.csv"], capsys,
               str(bad), "corrupted")
    user_error(["export", bad, "--format", "onnx", "--out", tmp_path / "m.onnx"], capsys,
               "corrupted")


def test_error_not_a_model_dir(tables, tmp_path, capsys):
    user_error(["evaluate", tmp_path, tables["test"]], capsys, "not an mmoe model directory")
    user_error(["evaluate", tmp_path / "nope", tables["test"]], capsys, "does not exist")


def test_error_unknown_export_format(model_dir, tmp_path, capsys):
    user_error(["export", model_dir, "--format", "tflite", "--out", tmp_path / "m"], capsys,
               "onnx, torchscript")


def test_error_evaluate_unknown_class(model_dir, tables, tmp_path, capsys):
    df = pd.read_csv(tables["test"])
    df.loc[3, "segment"] = "ultra"
    src = tmp_path / "cls.csv"
    df.to_csv(src, index=False)
    user_error(["evaluate", model_dir, src], capsys, "cls.csv", "task 'segment'", "'ultra'")


def test_error_bad_toml(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[data\ntrain=")
    user_error(["train", "--config", cfg, "--out", tmp_path / "m"], capsys, "bad.toml", "TOML")
    cfg.write_text("[data]\ntrian = 'x.csv'\n")
    user_error(["train", "--config", cfg, "--out", tmp_path / "m"], capsys, "trian")


def test_error_as_a_real_process_has_no_traceback(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    proc = subprocess.run([sys.executable, "-m", "mmoe", "train", "--train",
                           str(tmp_path / "empty.csv"), "--task", "y:binary", "--out",
                           str(tmp_path / "m")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "empty.csv" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_make_table_is_deterministic():
    pd.testing.assert_frame_equal(make_table(20, 5), make_table(20, 5))
    assert Path(__file__).parent.name == "cli"


def test_missing_labels_are_masked_per_task(tmp_path, capsys):
    df = make_table(300, 0)
    df.loc[df.index % 3 == 0, "spend"] = np.nan  # a third of the rows lack one label
    df.loc[df.index % 4 == 0, "buys"] = None
    df.to_parquet(tmp_path / "t.parquet", index=False)
    out = tmp_path / "m"
    code, _, err = run(["train", "--train", tmp_path / "t.parquet", "--task", "buys:binary:yes",
                        "--task", "spend:regression", "--epochs", "2", "--out", out], capsys)
    assert code == 0, err
    code, stdout, _ = run(["evaluate", out, tmp_path / "t.parquet", "--json", "-"], capsys)
    metrics = json.loads(stdout)
    assert metrics["spend"]["n"] == 200 and metrics["buys"]["n"] == 225
    assert np.isfinite(metrics["spend"]["mse"])


def test_gate_and_loss_weighting_flags_reach_the_model_and_training(tables, tmp_path, capsys):
    out = tmp_path / "m"
    code, _, err = run(["train", "--train", tables["train"], *TASK_FLAGS, *FAST,
                        "--loss-weighting", "uncertainty", "--gate-dropout", "0.2",
                        "--gate-balance", "0.01", "--out", out], capsys)
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["loss_weighting"] == "uncertainty"
    assert config["model"]["gate_dropout"] == 0.2 and config["model"]["gate_balance"] == 0.01
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert "loss_weights" in history[-1]  # the learnt uncertainty weights are logged
    user_error(["train", "--train", tables["train"], *TASK_FLAGS, "--loss-weighting", "bogus",
                "--out", tmp_path / "bad"], capsys, "loss_weighting must be one of")
