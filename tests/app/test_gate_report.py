"""mmoe inspect: gate report of a model directory (library functions and the CLI)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from mmoe import TaskSpec, build_model
from mmoe.app.gate_report import expert_utilisation, gate_report
from mmoe.cli import main
from mmoe.data.encoders import TableEncoder
from mmoe.train.model_dir import save_model_dir


def _frame(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": rng.normal(40, 10, n), "city": rng.choice(["a", "b", "c"], n),
                         "y1": rng.integers(0, 2, n), "y2": rng.normal(size=n)})


def _model_dir(tmp_path, name="cgc"):
    df = _frame()
    enc = TableEncoder([TaskSpec("y1", "binary"), TaskSpec("y2", "regression")]).fit(df)
    torch.manual_seed(0)
    model = build_model(name, enc.input_spec(4), enc.tasks, num_experts=2)
    path = save_model_dir(tmp_path / "model", model, enc, {}, {})
    data = tmp_path / "rows.csv"
    df.drop(columns=["y1", "y2"]).to_csv(data, index=False)  # labels are not needed
    return path, data, model, enc


def test_gate_report_rows_are_tasks_and_sum_to_one(tmp_path):
    _, _, model, enc = _model_dir(tmp_path)
    report = gate_report(model, enc.transform(_frame(), labels=False))
    experts = report.drop(columns=["entropy", "normalised_entropy"])
    assert list(report.index) == ["y1", "y2"]
    np.testing.assert_allclose(experts.sum(axis=1, skipna=True), 1.0, rtol=1e-5)
    # CGC: experts named for their owner; task y1 cannot see task y2's own expert
    assert list(experts.columns)[:2] == ["y1 own", "y2 own"]
    assert math.isnan(report.loc["y1", "y2 own"]) and math.isnan(report.loc["y2", "y1 own"])
    util = expert_utilisation(report)
    assert util["y1 own"] == pytest.approx(report.loc["y1", "y1 own"])
    shared = experts.columns[2]
    assert shared.startswith("shared") and util[shared] == pytest.approx(
        report[[shared]].mean().iloc[0])


def test_gate_report_of_a_model_without_gates_is_a_clear_error(tmp_path):
    _, _, model, enc = _model_dir(tmp_path, "shared_bottom")
    with pytest.raises(ValueError, match="has no gates to inspect"):
        gate_report(model, enc.transform(_frame(), labels=False))


def test_inspect_cli_writes_heatmap_tables_and_json(tmp_path, capsys):
    path, data, _, _ = _model_dir(tmp_path, "mmoe")
    out = tmp_path / "gates"
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(path), "--data", str(data), "--out", str(out)])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    assert "gate report written to" in printed and "y1" in printed
    png = (out / "gates.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out / "gates.csv", index_col="task")
    assert list(table.index) == ["y1", "y2"] and "e0" in table.columns
    np.testing.assert_allclose(table[["e0", "e1"]].sum(axis=1), 1.0, rtol=1e-5)
    experts = pd.read_csv(out / "experts.csv", index_col="expert")
    assert list(experts.index) == ["e0", "e1"]
    health = json.loads((out / "gate_health.json").read_text())
    assert set(health) == {"utilisation", "entropy", "normalised_entropy", "warnings"}
    assert (out / "gates.md").read_text().startswith("| task | e0 | e1 |")


def test_inspect_cli_user_errors_are_one_line(tmp_path, capsys):
    path, _, _, _ = _model_dir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(tmp_path / "nope"), "--data", str(tmp_path / "x.csv"),
              "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmoe: error: ") and "nope" in err[0]
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(path), "--data", str(tmp_path / "missing.csv"),
              "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert "missing.csv" in capsys.readouterr().err


def test_config_file_trains_feature_experts_with_gate_remedies_and_weighting(tmp_path, capsys):
    df = _frame(200)
    df["y1"] = np.where(df["y1"] == 1, "yes", "no")
    df.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "run.toml").write_text(
        'tasks = ["y1:binary:yes", "y2:regression"]\n[data]\ntrain = "t.csv"\n'
        '[model]\nname = "feature_mmoe"\ngate_dropout = 0.1\ngate_balance = 0.01\n'
        '[model.options]\nfeature_groups = {num = ["age"], cat = ["city"]}\n'
        'shared_experts = 1\n[training]\nepochs = 2\nloss_weighting = "uncertainty"\n')
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", str(tmp_path / "run.toml"), "--out", str(tmp_path / "m")])
    assert exc.value.code == 0, capsys.readouterr().err
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    text = json.dumps(config)
    assert '"gate_dropout": 0.1' in text and '"loss_weighting": "uncertainty"' in text
    with pytest.raises(SystemExit):
        main(["inspect", str(tmp_path / "m"), "--data", str(tmp_path / "t.csv"),
              "--out", str(tmp_path / "g")])
    table = pd.read_csv(tmp_path / "g" / "gates.csv", index_col="task")
    assert [c for c in table.columns if "#" in c] == [
        "num#0", "num#1", "num#2", "num#3", "cat#0", "cat#1", "cat#2", "cat#3", "shared#0"]


def test_write_gate_report_is_one_transaction_that_replaces_only_a_report(tmp_path):
    from mmoe.app.gate_report import write_gate_report

    _, _, model, enc = _model_dir(tmp_path, "mmoe")
    report = gate_report(model, enc.transform(_frame(), labels=False))
    out = tmp_path / "g"
    paths = write_gate_report(report, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())
    assert json.loads(paths["json"].read_text())["warnings"] == report.attrs["warnings"]
    write_gate_report(report, out)  # an earlier report: replaced whole
    (out / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="holds 'mine.txt', which mmoe inspect did not write"):
        write_gate_report(report, out)
    assert (out / "mine.txt").read_text() == "keep" and len(list(out.iterdir())) == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
