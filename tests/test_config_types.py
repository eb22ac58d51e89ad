"""Wrong types in a config are one-line ``ValueError`` s naming the setting: the frozen configs
check every field, and `mmoe train --config`'s TOML checks every key with the file, the
section and the key in the message."""

import math
from dataclasses import fields

import pytest

from mmoe.app.spec import TOML_KEYS, build_run_spec
from mmoe.cli import main
from mmoe.config import InputSpec, ModelConfig, TaskSpec, TrainConfig


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("field,value", [
    ("epochs", 2.5), ("epochs", "3"), ("batch_size", True), ("lr", "0.1"), ("lr", True),
    ("lr", math.inf), ("lr", math.nan), ("weight_decay", [1]), ("weight_decay", math.inf),
    ("seed", 1.0), ("seed", -1), ("seed", 2 ** 64), ("seed", "0"), ("monitor", 3),
    ("monitor", ""), ("patience", 1.5), ("restore_best", "no"), ("checkpoint_every", "4"),
    ("threads", 10 ** 9), ("loss_weighting", ["static"]), ("gradnorm_alpha", "x"),
    ("on_nonfinite", None), ("compile", 1), ("stop_if_all_skipped", "yes")])
def test_train_config_rejects_each_wrong_type_naming_the_field(field, value):
    with pytest.raises(ValueError) as err:
        TrainConfig(**{field: value})
    assert _one_line(err).startswith(field), str(err.value)


@pytest.mark.parametrize("field,value", [
    ("name", 5), ("expert_units", 16), ("expert_units", "16"), ("expert_units", [1.5]),
    ("num_experts", 8.0), ("num_experts", "8"), ("tower_units", 4), ("gate_bias", "yes"),
    ("dropout", "0.1"), ("dropout", math.nan), ("batch_norm", 0), ("hidden_norm", "yes"),
    ("options", [1]),
    ("options", "x"), ("gate_dropout", "0.1"), ("gate_dropout", 1.0), ("gate_balance", math.inf)])
def test_model_config_rejects_each_wrong_type_naming_the_field(field, value):
    with pytest.raises(ValueError) as err:
        ModelConfig(**{field: value})
    assert _one_line(err).startswith(field), str(err.value)


@pytest.mark.parametrize("field,value", [
    ("column", 5), ("column", ""), ("classes", 5), ("classes", [[1], [2]]),
    ("positive", [1]), ("weight", "2"), ("weight", True), ("weight", math.inf)])
def test_task_spec_rejects_each_wrong_type_naming_the_task_and_field(field, value):
    with pytest.raises(ValueError) as err:
        TaskSpec("t", "multiclass" if field == "classes" else "binary", **{field: value})
    msg = _one_line(err)
    assert msg.startswith("task 't'") and field in msg, msg


def test_from_dict_names_missing_fields_and_refuses_non_tables():
    with pytest.raises(ValueError, match="TaskSpec: missing field name"):
        TaskSpec.from_dict({"kind": "binary"})
    with pytest.raises(ValueError, match="TrainConfig needs a table of settings, got list"):
        TrainConfig.from_dict([1, 2])
    with pytest.raises(ValueError, match="embedding_dim"):
        InputSpec(numeric=("a",), embedding_dim=1.5)


def test_every_train_and_model_field_has_a_toml_type():
    assert set(TOML_KEYS["training"]) == {f.name for f in fields(TrainConfig)}
    assert set(TOML_KEYS["model"]) == {f.name for f in fields(ModelConfig)} | {"embedding_dim"}


def _write(tmp_path, text: str):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return str(path)


# one wrong value of the wrong TOML type for every key of every section
WRONG = {"string": 5, "bool": '"yes"', "int": "2.5", "number": '"0.1"', "ints": "16",
         "strings": "[1, 2]", "table": "3"}


@pytest.mark.parametrize("section,key", [(s, k) for s, keys in TOML_KEYS.items()
                                         for k in keys])
def test_every_toml_key_is_type_checked_naming_file_section_and_key(tmp_path, section, key):
    bad = WRONG[TOML_KEYS[section][key]]
    path = _write(tmp_path, f'tasks = ["y:binary"]\n[{section}]\n{key} = {bad}\n')
    with pytest.raises(ValueError) as err:
        build_run_spec(path, train="t.csv")
    msg = _one_line(err)
    assert f"config file '{path}'" in msg and f"[{section}] {key} must be" in msg, msg


@pytest.mark.parametrize("text,needle", [
    ('[data]\ntrain = 5\n', "[data] train must be a string"),
    ('[data]\nvalid_fraction = nan\n', "[data] valid_fraction must be a finite number"),
    ('[training]\nlr = inf\n', "[training] lr must be a finite number"),
    ('[model]\nexpert_units = [16, true]\n', "[model] expert_units must be a list of integers"),
    ('[model]\nnum_experts = 1e9\n', "[model] num_experts must be an integer"),
    ('[columns]\nid = [["a"]]\n', "[columns] id must be a string or a list of strings"),
    ('data = 3\n', "[data] must be a table"),
    ('tasks = "y:binary"\n', "tasks must be a list"),
    ('tasks = [5]\n', "tasks entry 1 must be"),
    ('[[tasks]]\nkind = "binary"\n', "[[tasks]] entry 1 has no column"),
    ('[[tasks]]\ncolumn = 5\n', "[[tasks]] entry 1: column must be a string"),
    ('[[tasks]]\ncolumn = "y"\nkind = "binary"\nweight = "2"\n',
     "[[tasks]] entry 1: weight must be a finite number"),
    ('[[tasks]]\ncolumn = "y"\ncolour = "red"\n', "[[tasks]] entry 1: unknown key(s) colour"),
    ('[[tasks]]\ncolumn = "y"\nkind = "multiclass"\nclasses = [{a = 1}]\n',
     "[[tasks]] entry 1: classes must be a list of strings or numbers"),
])
def test_toml_type_errors_are_one_line_naming_the_key(tmp_path, text, needle):
    if "tasks" not in text:
        text = 'tasks = ["y:binary"]\n' + text
    path = _write(tmp_path, text)
    with pytest.raises(ValueError) as err:
        build_run_spec(path, train="t.csv")
    msg = _one_line(err)
    assert needle in msg and path in msg, msg


def test_tasks_table_with_a_column_and_no_name_is_named_after_the_column(tmp_path):
    path = _write(tmp_path, '[[tasks]]\ncolumn = "morekids"\nkind = "binary"\n'
                            'positive = "yes"\n')
    spec = build_run_spec(path, train="t.csv")
    assert [(t.name, t.column, t.positive) for t in spec.tasks] == [("morekids", "morekids",
                                                                    "yes")]


@pytest.mark.parametrize("text,needle", [
    ('tasks = ["y:binary"]\n[data]\ntrain = 5\n', "[data] train must be a string"),
    ('[[tasks]]\nkind = "binary"\n[data]\ntrain = "rows.csv"\n', "has no column"),
])
def test_cli_turns_toml_type_errors_into_one_line_exit_2(tmp_path, capsys, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", path, "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and needle in err[0], err
