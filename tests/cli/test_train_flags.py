"""Every model and training setting is a flag of `mmoe train`, grouped in --help, and each
reaches the model directory's config.json."""

import json

import numpy as np
import pandas as pd
import pytest
import typer

from mmoe.cli import main


def test_each_flag_reaches_the_config(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 120
    pd.DataFrame({"a": rng.normal(size=n), "c": rng.choice(["x", "y"], n),
                  "y": rng.integers(0, 2, n), "v": rng.normal(size=n)}).to_csv(
        tmp_path / "t.csv", index=False)
    out = tmp_path / "m"
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--train", str(tmp_path / "t.csv"), "--task", "y:binary",
              "--task", "v:regression", "--out", str(out), "--epochs", "2",
              "--model", "feature_mmoe", "--num-experts", "3", "--expert-units", "16,8",
              "--tower-units", "4", "--embedding-dim", "4", "--dropout", "0.1", "--batch-norm",
              "--hidden-norm", "--option", "shared_experts=1", "--weight-decay", "1e-5",
              "--lr-schedule", "constant", "--warmup", "0", "--monitor", "v", "--patience", "3",
              "--keep-last", "--numeric-encoding", "quantile", "--batch-size", "16"])
    assert exit_.value.code in (0, None), capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert {k: config["model"][k] for k in ("name", "num_experts", "expert_units",
                                            "tower_units", "embedding_dim", "dropout",
                                            "batch_norm", "hidden_norm", "options")} == {
        "name": "feature_mmoe", "num_experts": 3, "expert_units": [16, 8], "tower_units": [4],
        "embedding_dim": 4, "dropout": 0.1, "batch_norm": True, "hidden_norm": True,
        "options": {"shared_experts": 1}}
    assert {k: config["training"][k] for k in ("weight_decay", "lr_schedule", "warmup",
                                               "monitor", "patience", "restore_best",
                                               "batch_size", "epochs")} == {
        "weight_decay": 1e-5, "lr_schedule": "constant", "warmup": 0.0, "monitor": "v",
        "patience": 3, "restore_best": False, "batch_size": 16, "epochs": 2}
    assert config["columns"]["numeric_encoding"] == "quantile"


def test_help_groups_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for panel in ("Data", "Tasks and columns", "Model", "Training", "Output and runs"):
        assert f"─ {panel} ─" in text
    for flag in ("--num-experts", "--expert-units", "--weight-decay", "--patience",
                 "--monitor", "--lr-schedule", "--option", "--keep-last"):
        assert flag in text


@pytest.mark.parametrize("flag, value, needle", [
    ("--expert-units", "64,x", "--expert-units must be comma-separated integers"),
    ("--option", "nothing", "--option must be KEY=VALUE"),
    ("--lr-schedule", "linear", "lr_schedule must be one of constant, cosine"),
])
def test_bad_flag_values_are_one_line(tmp_path, capsys, flag, value, needle):
    (tmp_path / "t.csv").write_text("a,y\n1,0\n2,1\n3,0\n4,1\n")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--train", str(tmp_path / "t.csv"), "--task", "y:binary",
              "--out", str(tmp_path / "m"), flag, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and needle in err and err.count("\n") == 1


def test_models_lists_each_models_options_with_the_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["models"])
    assert exit_.value.code in (0, None)
    lines = capsys.readouterr().out.splitlines()
    after = {line.split()[0]: lines[i + 1].strip() for i, line in enumerate(lines[:-1])
             if not line.startswith(" ")}
    assert after["l2_constrained"] == "options: alpha=0.001"
    assert after["ple"] == "options: task_experts=1, shared_experts=8, levels=2"
    assert after["feature_mmoe"].startswith("options: feature_groups=None")
    assert not after["mmoe"].startswith("options:")  # mmoe reads none


def _help_texts(command, path="mmoe"):
    """(where, text) of every command's and option's help under ``command``."""
    yield path, command.help or ""
    for param in command.params:
        yield f"{path} {param.name}", getattr(param, "help", None) or ""
    for name, sub in getattr(command, "commands", {}).items():
        yield from _help_texts(sub, f"{path} {name}")


def test_every_help_text_shows_as_written():
    """rich reads [word] as a style tag and drops it: the TOML tables [data], [model] ... in
    a help text must be escaped, or --help shows 'TOML file with , , tasks'."""
    from rich.text import Text

    from mmoe.cli import app

    texts = list(_help_texts(typer.main.get_command(app)))
    assert len(texts) > 100
    for where, text in texts:
        assert Text.from_markup(text).plain == text.replace("\\[", "["), where


def test_train_help_names_the_config_tables(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "[data], [columns], tasks," in text.replace("│ ", "")
