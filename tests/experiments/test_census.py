"""`mmoe reproduce census` and `mmoe tune` on small slices of the shared Census-Income files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace

import pytest

from mmoe.cli import main
from mmoe.config import TrainConfig
from mmoe.experiments.census import prepare, read_config, run_census, train_one
from mmoe.experiments.census.config import (
    ALL_MODELS,
    PAPER,
    PAPER_MODELS,
    default_config_path,
    format_config,
)
from mmoe.experiments.census.report import summarize
from mmoe.experiments.census.tune import first_layer_units

SUMMARY_FIELDS = {"model", "main_auc_best", "main_auc_mean", "main_auc_std", "aux_auc_at_best",
                  "aux_auc_mean", "runs"}


@pytest.fixture(scope="module")
def tables(census_dir):
    return prepare(1, census_dir, nrows=4000)


@pytest.mark.parametrize("group", [1, 2])
def test_committed_configs_are_every_model_tuned_under_one_protocol(group):
    specs = read_config(default_config_path(group), group)
    assert tuple(specs) == ALL_MODELS  # the paper's seven, then CGC and PLE beside MMoE
    protocols = set()
    for name, spec in specs.items():
        assert spec.model.name == name
        assert spec.model.batch_norm
        study = spec.study
        assert study is not None, f"{name}: no study recorded"
        protocols.add((study["trials"], study["sampler"], study["seed"], study["train_rows"],
                       re.sub(r"--model \S+ ", "", study["command"])))
        assert f"--model {name} --group {group} " in study["command"]
        max_units = int(re.search(r"--max-units (\d+)", study["command"]).group(1))
        assert first_layer_units(spec) <= max_units <= 2048  # paper §6.2's cap, matched
        assert study["best_valid_auc"] >= study["trial0_valid_auc"]  # trial 0 = the old one
    assert len(protocols) == 1, protocols  # same trials, sampler, seed, rows and options


def test_config_round_trips_through_toml(tmp_path):
    specs = read_config(default_config_path(1), 1)
    path = tmp_path / "c.toml"
    path.write_text(format_config(1, specs, "a comment"))
    assert read_config(path, 1) == specs
    with pytest.raises(ValueError, match="is for group 1, not group 2"):
        read_config(path, 2)
    path.write_text('group = "\\n"\n[models.mmoe]\n')  # a value that prints on two lines
    with pytest.raises(ValueError, match=r"is for group '\\n', not group 1$"):
        read_config(path, 1)


def test_config_errors_name_the_model(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("group = 1\n[models.mmoe.train]\nseed = 3\n")
    with pytest.raises(ValueError, match="model 'mmoe': train key.*seed"):
        read_config(path)
    path.write_text("group = 1\n[models.mmoe.model]\nexperts = 3\n")
    with pytest.raises(ValueError, match="model 'mmoe'.*unknown field.*experts"):
        read_config(path)
    with pytest.raises(ValueError, match="does not exist"):
        read_config(tmp_path / "missing.toml")


def test_summary_picks_best_run_by_validation_and_reports_test():
    def run(seed, valid, test):
        return {"seed": seed, "seconds": 1.0, "valid": dict(zip("ab", valid, strict=True)),
                "test": dict(zip("ab", test, strict=True))}

    runs = [run(0, (0.80, 0.9), (0.70, 0.6)), run(1, (0.90, 0.1), (0.60, 0.5)),
            run(2, (0.85, 0.9), (0.95, 0.7))]
    row = summarize("m", runs, ["a", "b"])
    assert row["best_seed"] == 1  # best validation, not best test
    assert row["main_auc_best"] == 0.60 and row["aux_auc_at_best"] == 0.5
    assert row["main_auc_mean"] == pytest.approx(0.75)
    assert row["main_auc_std"] == pytest.approx(0.0325 ** 0.5)  # sample std (ddof 1)
    assert row["aux_auc_mean"] == pytest.approx(0.6)


@pytest.mark.parametrize("model", PAPER_MODELS)
def test_each_model_beats_a_constant_predictor(tables, model):
    spec = read_config(default_config_path(1), 1)[model]
    spec = replace(spec, train=TrainConfig(epochs=2, batch_size=256, lr=1e-2))
    run = train_one(tables, spec, seed=0)
    # A constant predictor has AUC 0.5 on both tasks; both labels are learnable from the
    # inputs (income: occupation, capital gains; never married: age, household status).
    assert run["test"]["income"] > 0.75, run
    assert run["test"]["marital"] > 0.85, run
    assert 1 <= run["best_epoch"] <= 2


def test_tiny_reproduce_writes_results_json_and_report(census_dir, tmp_path):
    res = run_census(1, models=["shared_bottom", "mmoe"], runs=2, data_dir=census_dir,
                     out=tmp_path, epochs=1, nrows=3000, progress=False)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data == json.loads(json.dumps(res.results))
    assert data["experiment"] == "census" and data["group"] == 1
    assert data["tasks"] == ["income", "marital"]
    assert [r["model"] for r in data["summary"]] == ["shared_bottom", "mmoe"]
    for row in data["summary"]:
        assert SUMMARY_FIELDS <= set(row)
        assert row["runs"] == 2
        runs = data["runs"][row["model"]]
        assert [r["seed"] for r in runs] == [0, 1]
        best = max(runs, key=lambda r: r["valid"]["income"])
        assert row["main_auc_best"] == best["test"]["income"]
        assert row["aux_auc_at_best"] == best["test"]["marital"]
        assert 0.5 < row["main_auc_mean"] <= 1.0
    assert data["paper"]["rows"]["mmoe"]["main_auc_mean"] == 0.9359
    assert data["seeds"] == [0, 1]
    assert data["config"]["mmoe"]["model"]["num_experts"] >= 1
    assert data["epochs_override"] == 1 and data["data"]["nrows"] == 3000
    assert data["data"]["rows"] == {"train": 3000, "valid": 1500, "test": 1500}
    assert "education" not in data["data"]["inputs"]["categorical"]
    assert 0 <= data["label_correlation"] <= 1
    assert data["version"] and "total_seconds" in data["timings"]
    assert data["targets"]["mmoe_mean_vs_paper"]["paper"] == 0.9359
    report = (tmp_path / "report.md").read_text()
    assert "Table 1" in report and "0.9359" in report and "MMoE" in report
    runs = data["runs"]
    diff = [m["test"]["income"] - s["test"]["income"]
            for m, s in zip(runs["mmoe"], runs["shared_bottom"], strict=True)]
    assert f"| Shared-Bottom | 2 | {sum(diff) / 2:+.4f} |" in report  # paired on the seeds
    assert (tmp_path / "main_auc.png").stat().st_size > 1000


def test_tune_writes_a_config_reproduce_reads(census_dir, tmp_path):
    pytest.importorskip("optuna")
    from mmoe.experiments.census.tune import tune

    out = tmp_path / "tuned.toml"
    res = tune("mmoe", 2, trials=2, data_dir=census_dir, out=out, nrows=2000, sampler="tpe",
               max_epochs=2)
    assert res.path == out and res.trials == 2 and 0.5 < res.value <= 1
    spec = read_config(out, 2)["mmoe"]
    assert spec == res.spec
    assert spec.model.num_experts * spec.model.expert_units[0] <= 2048
    assert "validation education AUC" in out.read_text()
    rep = run_census(2, models=["mmoe"], runs=1, data_dir=census_dir, config=out, nrows=2000,
                     epochs=1, progress=False)
    used = rep.results["config"]["mmoe"]
    assert used["model"] == spec.to_dict()["model"]  # the tuned model, not the committed one
    assert used["train"] == {**spec.to_dict()["train"], "epochs": 1}
    assert str(out) in rep.results["config_files"]


@pytest.mark.parametrize("model", ["single_task", "shared_bottom", "l2_constrained",
                                   "cross_stitch", "tensor_factorization", "mmoe", "cgc", "ple"])
def test_width_rule_caps_the_first_layer_summed_over_its_networks(model):
    optuna = pytest.importorskip("optuna")
    from mmoe.experiments.census.tune import suggest

    base = read_config(default_config_path(1), 1)[model]
    wide = {"lr": 1e-3, "epochs": 3, "batch_size": 1024, "embedding_dim": 8, "tower_units": 8,
            "num_experts": 16, "units_per_expert": 256, "task_experts": 4, "levels": 2,
            "hidden_units": 512, "alpha": 1e-3, "stitch_layers": 2, "self_weight": 0.9,
            "r1": 8, "r2": 8, "r3": 2}
    spec = suggest(optuna.trial.FixedTrial(wide), model, base, max_units=512)
    networks = {"single_task": 2, "l2_constrained": 2, "cross_stitch": 2,
                "tensor_factorization": 2, "shared_bottom": 1, "mmoe": 16,
                "cgc": 16 + 2 * 4, "ple": 16 + 2 * 4}[model]
    # drawn as wide as allowed: the cap (512 units) shared among the networks reading x
    assert first_layer_units(spec) == networks * (512 // networks) <= 512
    narrow = {**wide, "num_experts": 2, "units_per_expert": 8, "task_experts": 1,
              "hidden_units": 16}
    spec = suggest(optuna.trial.FixedTrial(narrow), model, base, max_units=512)
    assert first_layer_units(spec) == {"mmoe": 16, "cgc": 32, "ple": 32,
                                       "shared_bottom": 16}.get(model, 32)


def test_study_records_round_trip_and_are_checked(tmp_path):
    specs = read_config(default_config_path(1), 1)
    record = {"trials": 3, "best_valid_auc": 0.94, "date": "2026-12-06",
              "command": "mmoe tune --model all"}
    specs["mmoe"] = replace(specs["mmoe"], study=record)
    specs["omoe"] = replace(specs["omoe"], study=None)  # a hand-picked setting
    path = tmp_path / "c.toml"
    path.write_text(format_config(1, specs))
    back = read_config(path, 1)
    assert back == specs and back["mmoe"].study == record and back["omoe"].study is None
    assert "[models.omoe.study]" not in path.read_text()
    path.write_text("group = 1\n[models.mmoe.study.nested]\nx = 1\n")
    with pytest.raises(ValueError, match=r"\[models.mmoe.study\] must be a table of plain"):
        read_config(path)


def test_tune_all_writes_every_model_with_its_study(census_dir, tmp_path, capsys):
    pytest.importorskip("optuna")
    from mmoe.experiments.census.tune import tune_all

    out = tmp_path / "g2.toml"
    res = tune_all(["shared_bottom", "cgc"], 2, trials=2, data_dir=census_dir, out=out,
                   nrows=2000, sampler="tpe", max_epochs=2, max_units=128)
    specs = read_config(out, 2)
    assert list(specs) == ["shared_bottom", "cgc"]
    for name, spec in specs.items():
        assert spec == res[name].spec
        study = spec.study
        assert study["trials"] == 2 and study["best_valid_auc"] == round(res[name].value, 6)
        assert study["sampler"] == "TPESampler" and study["train_rows"] == 2000
        assert study["command"].startswith(f"mmoe tune --model {name} --group 2 --trials 2")
        # trial 0 is the committed setting, so the study never returns anything worse
        assert study["best_valid_auc"] >= study["trial0_valid_auc"]
    assert "every model tuned under one protocol" in out.read_text().replace("\n# ", " ")
    # a rerun of the same protocol keeps what is tuned (a stopped run goes on from there)
    lines = []
    again = tune_all(["shared_bottom", "cgc"], 2, trials=2, data_dir=census_dir, out=out,
                     nrows=2000, sampler="tpe", max_epochs=2, max_units=128, log=lines.append)
    assert lines == [f"{m}: kept from {out} (tuned by the same protocol)"
                     for m in ("shared_bottom", "cgc")]
    assert {m: r.spec for m, r in again.items()} == specs
    with pytest.raises(SystemExit) as bad:
        main(["tune", "--model", "all", "--timeout", "60", "--data-dir", str(census_dir)])
    assert bad.value.code == 2 and "unequal budgets" in capsys.readouterr().err


def test_cli_reproduce_census_tiny_and_errors(census_dir, tmp_path, capsys):
    out = tmp_path / "r"
    with pytest.raises(SystemExit) as ok:
        main(["reproduce", "census", "--group", "2", "--models", "omoe", "--runs", "1",
              "--epochs", "1", "--nrows", "2000", "--data-dir", str(census_dir),
              "--out", str(out)])
    assert ok.value.code == 0
    assert json.loads((out / "results.json").read_text())["summary"][0]["model"] == "omoe"
    capsys.readouterr()
    with pytest.raises(SystemExit) as bad:
        main(["reproduce", "census", "--models", "mmoe,nope", "--data-dir", str(census_dir),
              "--out", str(tmp_path / "x")])
    assert bad.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mmoe: error: unknown model 'nope'") and "\n" not in err
    with pytest.raises(SystemExit) as bad_group:
        main(["tune", "--model", "mmoe", "--group", "3", "--data-dir", str(census_dir)])
    assert bad_group.value.code == 2
    assert "census group" in capsys.readouterr().err


def test_paper_numbers_match_paper_md():
    assert PAPER[1]["mmoe"]["main_auc_best"] == 0.9410
    assert PAPER[2]["tensor_factorization"]["aux_auc_mean"] == 0.7497
    assert set(PAPER[1]) == set(PAPER[2]) == set(PAPER_MODELS)


def _no_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_jobs_do_not_change_results(census_dir, tmp_path):
    # Every run depends on its seed alone: one process or two worker processes give the same
    # numbers (the runs finish in a different order with two).
    kw = dict(models=["shared_bottom", "mmoe"], runs=2, data_dir=census_dir, epochs=1,
              nrows=2000, progress=False)
    one = run_census(2, jobs=1, out=tmp_path / "j1", **kw).results
    two = run_census(2, jobs=2, out=tmp_path / "j2", **kw).results
    assert one["jobs"] == 1 and two["jobs"] == 2
    assert _no_seconds(one["summary"]) == _no_seconds(two["summary"])
    for model in ("shared_bottom", "mmoe"):
        assert _no_seconds(one["runs"][model]) == _no_seconds(two["runs"][model])
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        run_census(2, jobs=0, **kw)


@pytest.mark.slow
def test_reproduce_under_torchrun_equals_one_process(census_dir, tmp_path):
    # Two ranks train every run data-parallel (same global batch): the same AUCs as one
    # process, up to float rounding; rank 0 alone writes. Without batch norm: on CPU each
    # rank normalises by its own shard (SyncBatchNorm is GPU-only).
    spec = read_config(default_config_path(2), 2)["mmoe"]
    spec = replace(spec, model=replace(spec.model, batch_norm=False))
    (tmp_path / "cfg.toml").write_text(format_config(2, {"mmoe": spec}))
    args = ["reproduce", "census", "--group", "2", "--models", "mmoe", "--runs", "1",
            "--epochs", "1", "--nrows", "3000", "--data-dir", str(census_dir),
            "--config", str(tmp_path / "cfg.toml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, launcher in (("one", []), ("two", ["-m", "torch.distributed.run",
                                                  "--nproc_per_node=2", "--standalone"])):
        cmd = [sys.executable, *launcher, "-m", "mmoe", *args, "--out", str(tmp_path / name)]
        done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert one["world_size"] == 1 and two["world_size"] == 2 and two["jobs"] == 1
    for a, b in zip(one["runs"]["mmoe"], two["runs"]["mmoe"], strict=True):
        assert a["best_epoch"] == b["best_epoch"]
        for split in ("valid", "test"):
            for task, auc in a[split].items():
                assert b[split][task] == pytest.approx(auc, abs=1e-4), (split, task)
