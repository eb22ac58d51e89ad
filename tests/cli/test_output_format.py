"""Outputs are valid JSON (an undefined metric is null, never NaN) and get the modes the umask
allows: 0644 files and 0755 directories under umask 022, for every command."""

import importlib.util
import json
import os
import stat

import pandas as pd
import pytest

from .conftest import make_table, run_cli


def _strict(text):
    """Parse JSON as every other tool does: NaN and Infinity are errors."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def one_class(small_model, tmp_path):
    """Rows whose binary label has a single class: AUC is undefined there."""
    df = pd.read_csv(small_model["data"])
    df["buys"] = "yes"
    path = tmp_path / "one_class.csv"
    df.to_csv(path, index=False)
    return path


def test_evaluate_json_writes_null_for_an_undefined_metric(small_model, one_class, tmp_path,
                                                           capsys):
    code, out, err = run_cli(["evaluate", small_model["dir"], one_class, "--json", "-"], capsys)
    assert code == 0, err
    metrics = _strict(out)
    assert metrics["buys"]["auc"] is None and metrics["buys"]["n"] == 150
    assert metrics["buys"]["logloss"] > 0
    code, out, err = run_cli(["evaluate", small_model["dir"], one_class, "--json",
                              tmp_path / "m.json"], capsys)
    assert code == 0, err
    assert _strict((tmp_path / "m.json").read_text()) == metrics
    assert "nan" in out  # the printed table may say so


def test_model_dir_metrics_are_strict_json(small_model, one_class, tmp_path, capsys):
    code, _, err = run_cli(["train", "--train", small_model["data"], "--valid", one_class,
                            "--task",
                            "buys:binary:yes", "--epochs", "2", "--threads", "1", "--out",
                            tmp_path / "m"], capsys)
    assert code == 0, err
    metrics = _strict((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["valid"]["buys"]["auc"] is None
    assert [r["valid"]["buys"]["auc"] for r in metrics["history"]] == [None, None]
    for name in ("config.json", "encoder.json", "manifest.json"):
        _strict((tmp_path / "m" / name).read_text())


def _modes(root):
    return {p.relative_to(root).as_posix(): stat.S_IMODE(p.lstat().st_mode)
            for p in sorted(root.rglob("*"))}


def test_every_command_writes_0644_files_and_0755_dirs_under_umask_022(tmp_path, capsys):
    saved = os.umask(0o022)
    try:
        data = tmp_path / "in" / "rows.csv"
        data.parent.mkdir()
        make_table(120, seed=6).to_csv(data, index=False)
        out = tmp_path / "out"
        tensorboard = ["--tensorboard"] if importlib.util.find_spec("tensorboard") else []
        commands = [
            ["train", "--train", data, "--task", "buys:binary:yes", "--task",
             "spend:regression", "--epochs", "1", "--threads", "1", *tensorboard,
             "--out", out / "model"],
            ["evaluate", out / "model", data, "--json", out / "metrics.json"],
            ["predict", out / "model", data, "--out", out / "p.csv"],
            ["predict", out / "model", data, "--out", out / "p.parquet"],
            ["export", out / "model", "--format", "torchscript", "--out", out / "m.ts"],
            ["inspect", out / "model", "--data", data, "--out", out / "gates"],
            ["reproduce", "synthetic", "--runs", "1", "--steps", "2", "--lr-runs", "1",
             "--n-train", "64", "--batch-size", "32", "--d", "4", "--correlations", "0.5",
             "--models", "mmoe", "--lr", "0.01", "--no-progress", "--out", out / "synthetic"],
        ]
        if importlib.util.find_spec("onnxruntime"):
            commands.append(["export", out / "model", "--format", "onnx", "--out",
                             out / "m.onnx"])
        for argv in commands:
            code, _, err = run_cli(argv, capsys)
            assert code == 0, (argv, err)
    finally:
        os.umask(saved)
    modes = _modes(out)
    assert {"model/manifest.json", "model/gates.png", "metrics.json", "p.csv", "p.parquet",
            "m.ts", "gates/gates.png", "gates/gate_health.json",
            "synthetic/results.json"} <= set(modes)
    for name, mode in modes.items():
        want = 0o755 if (out / name).is_dir() else 0o644
        assert mode == want, (name, oct(mode))
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


def test_reproduce_census_and_tune_write_0644_files_under_umask_022(census_dir, tmp_path,
                                                                     capsys):
    pytest.importorskip("optuna")
    out = tmp_path / "out"
    saved = os.umask(0o022)
    try:
        for argv in (["reproduce", "census", "--runs", "1", "--models", "mmoe", "--epochs", "1",
                      "--nrows", "2000", "--jobs", "1", "--data-dir", census_dir, "--out",
                      out / "census"],
                     ["tune", "--model", "mmoe", "--trials", "1", "--max-epochs", "1",
                      "--nrows", "2000", "--data-dir", census_dir, "--out", out / "t.toml"]):
            code, _, err = run_cli(argv, capsys)
            assert code == 0, (argv, err)
    finally:
        os.umask(saved)
    assert _modes(out) == {"census": 0o755, "census/main_auc.png": 0o644,
                           "census/report.md": 0o644, "census/results.json": 0o644,
                           "t.toml": 0o644}
    _strict((out / "census" / "results.json").read_text())
