"""`mmoe tune` on any table: the study, its config file, and training from that file
reproducing the best trial's validation score."""

import json
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mmoe.app.config_file import config_text
from mmoe.app.fit import train_model_dir
from mmoe.app.spec import build_run_spec
from mmoe.app.tune import parse_budget, tune_table
from mmoe.cli import main
from mmoe.diagnostics import GateHealthWarning
from mmoe.diagnostics import gates as gates_module
from mmoe.metrics import combined_score

pytest.importorskip("optuna")


def _table(path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    df = pd.DataFrame({"a": x[:, 0], "b": np.exp(x[:, 1]), "c": rng.choice(["p", "q"], n),
                       "y": np.where(x[:, 0] + x[:, 1] > 0, "yes", "no"),
                       "v": x[:, 0] * 2 + x[:, 2]})
    df.to_csv(path, index=False)
    return path


def _base(tmp_path):
    _table(tmp_path / "train.csv")
    _table(tmp_path / "valid.csv", 120, seed=1)
    return build_run_spec(train=str(tmp_path / "train.csv"), valid=str(tmp_path / "valid.csv"),
                          tasks=["y:binary:yes", "v:regression"], epochs=3, threads=1)


def test_budget_parsing():
    assert parse_budget("10m") == 600 and parse_budget("1h") == 3600
    for bad in ("ten", "-5s", "0"):
        with pytest.raises(ValueError, match="--budget"):
            parse_budget(bad)


@pytest.mark.default_ensemble
def test_tune_writes_a_config_whose_training_reproduces_the_best_trial(tmp_path):
    base = _base(tmp_path)
    res = tune_table(base, 600, trials=3, families=("mmoe", "shared_bottom"),
                     out=tmp_path / "best.toml", command="mmoe tune ...")
    assert res.trials == 3 and res.path == tmp_path / "best.toml"
    text = res.path.read_text()
    assert text.startswith("# mmoe tune, ") and "best combined validation score" in text
    spec = build_run_spec(str(res.path))
    assert spec == res.spec  # the file states the best run whole
    # a trial is one model; on this small table the config's training is five by default
    assert "trains 5 (a seed ensemble; ensemble = 1 in [training] for one)" in text
    one = replace(spec, training=replace(spec.training, ensemble=1))
    metrics = train_model_dir(one, tmp_path / "model")
    # the same weights; R² in the label's units vs the standardised scale: float32 rounding
    score = combined_score(metrics["valid"], list(spec.tasks))
    assert score == pytest.approx(res.value, abs=1e-6)


def test_trial_zero_is_the_run_as_given(tmp_path):
    base = _base(tmp_path)
    res = tune_table(base, 600, trials=1)
    defaults = train_model_dir(replace(base, training=replace(base.training, ensemble=1)),
                               tmp_path / "m")
    assert res.value == pytest.approx(combined_score(defaults["valid"], list(base.tasks)),
                                      abs=1e-6)
    assert res.spec.model.name == base.model.name and res.spec.training.lr == base.training.lr


def test_config_text_round_trips(tmp_path):
    spec = build_run_spec(train=str(tmp_path / "t.csv"), tasks=["y:binary:yes", "k:multiclass"],
                          features=["age:numeric:encoding=quantile"], group_by="g", lr=0.02)
    path = tmp_path / "x.toml"
    path.write_text(config_text(spec, "a\nb"))
    assert build_run_spec(str(path)) == spec
    assert path.read_text().startswith("# a\n# b\n")


def test_cli(tmp_path, capsys):
    _base(tmp_path)
    out = tmp_path / "best.toml"
    with pytest.raises(SystemExit) as exit_:
        main(["tune", "--train", str(tmp_path / "train.csv"), "--task", "y:binary:yes",
              "--task", "v:regression", "--trials", "2", "--budget", "5m", "--out", str(out)])
    assert exit_.value.code in (0, None)
    assert "config written to" in capsys.readouterr().out
    assert json.loads(json.dumps(build_run_spec(str(out)).to_dict()))["tasks"][0]["name"] == "y"
    for argv, needle in ((["tune"], "needs --train and --task"),
                         (["tune", "--train", "x.csv", "--task", "y:binary", "--budget", "soon"],
                          "--budget must be a duration")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and needle in err and err.count("\n") == 1


def test_trials_keep_their_gate_warnings_to_themselves(tmp_path, monkeypatch):
    """A trial's gate-health warnings are the study's to judge (by its score), not the
    user's to act on: none reaches the user, while training the same run does warn."""
    monkeypatch.setattr(gates_module, "gate_warnings",
                        lambda *a, **k: ["expert 'e0' is dead: test"])
    base = _base(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tune_table(base, 600, trials=2, families=("mmoe",))
    assert not [w for w in caught if w.category is GateHealthWarning]
    with pytest.warns(GateHealthWarning, match="expert 'e0' is dead: test"):
        train_model_dir(replace(base, training=replace(base.training, ensemble=1)),
                        tmp_path / "m")
