"""A model too large for the machine is refused before anything is allocated, with one line
naming the setting that makes it large; the estimate it is judged by is a lower bound of the
real parameter count, so no model that fits is refused."""

import time

import pytest
import torch

from mmoe import InputSpec, TaskSpec, available_models, build_model
from mmoe.cli import main
from mmoe.config import ModelConfig
from mmoe.models import model as model_module
from mmoe.models.model import available_memory, estimate_parameters

INPUTS = InputSpec(numeric=("n0", "n1", "n2"), categorical=(("c0", 40), ("c1", 3)),
                   embedding_dim=4)
TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "regression"),
         TaskSpec("c", "multiclass", classes=("x", "y", "z")), TaskSpec("d", after="a"))


def test_available_memory_is_a_positive_byte_count():
    free = available_memory()
    assert free is None or free > 1 << 20


@pytest.mark.parametrize("name", sorted(available_models()))
@pytest.mark.parametrize("shape", [dict(num_experts=3, expert_units=(6,), tower_units=(4,)),
                                   dict(num_experts=5, expert_units=(12, 7), tower_units=())])
def test_estimate_is_a_lower_bound_within_a_small_factor(name, shape):
    config = ModelConfig(name, **shape)
    real = sum(p.numel() for p in build_model(config, INPUTS, TASKS).parameters())
    guess = estimate_parameters(config, INPUTS, TASKS)
    assert real / 4 <= guess <= real, (guess, real)


SETTINGS = [
    ("num_experts", {"num_experts": 10 ** 9}, INPUTS),
    ("expert_units", {"expert_units": (10 ** 10,)}, INPUTS),
    ("tower_units", {"tower_units": (10 ** 11,)}, INPUTS),
    ("embedding_dim", {}, InputSpec(numeric=("n0",), categorical=(("c", 9),),
                                    embedding_dim=10 ** 11)),
]
MODELS = ["mmoe", "omoe", "single_task", "ple", "mixed_mmoe", "feature_mmoe", "cross_stitch",
          "tensor_factorization"]
NO_EXPERTS = ("single_task", "cross_stitch", "tensor_factorization")  # num_experts unused


@pytest.mark.parametrize(("name", "setting", "overrides", "inputs"), [
    (name, *setting) for name in MODELS for setting in SETTINGS
    if not (name in NO_EXPERTS and setting[0] == "num_experts")])
def test_too_large_is_one_line_naming_the_setting_before_any_allocation(
        monkeypatch, name, setting, overrides, inputs):

    def no_allocation(*args, **kwargs):
        raise AssertionError("allocated before the size check")

    monkeypatch.setattr(torch.nn.Module, "__init__", no_allocation)
    start = time.perf_counter()
    with pytest.raises(ValueError) as err:
        model_module.MultiTaskModel(ModelConfig(name, **overrides), inputs, TASKS)
    msg = str(err.value)
    assert "\n" not in msg and f"lower {setting}" in msg and "available" in msg, msg
    assert time.perf_counter() - start < 1.0


def test_message_states_sizes_and_memory(monkeypatch):
    monkeypatch.setattr(model_module, "available_memory", lambda: 8 << 30)
    with pytest.raises(ValueError) as err:
        build_model("mmoe", INPUTS, TASKS, num_experts=10 ** 9)
    msg = str(err.value)
    assert msg.startswith("model 'mmoe' is too large for this machine: about ")
    assert "8.0 GiB of memory available" in msg and "num_experts (now 1000000000)" in msg, msg


def test_what_fits_is_built_as_before(monkeypatch):
    monkeypatch.setattr(model_module, "available_memory", lambda: 1 << 20)  # 1 MiB
    torch.manual_seed(0)
    small = build_model("mmoe", INPUTS, TASKS, num_experts=2, expert_units=(4,))
    assert sum(p.numel() for p in small.parameters()) * 4 < 1 << 20


@pytest.mark.parametrize("setting", ["num_experts = 1000000000", "embedding_dim = 100000000",
                                     "expert_units = [1000000000000]"])
def test_cli_too_large_is_one_line_exit_2_naming_the_setting(tmp_path, capsys, setting):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.normal(size=40), "city": rng.choice(["a", "b", "c"], 40),
                  "y": rng.integers(0, 2, 40)}).to_csv(tmp_path / "rows.csv", index=False)
    config = tmp_path / "run.toml"
    config.write_text(f'tasks = ["y:binary"]\n[data]\ntrain = "rows.csv"\n[model]\n{setting}\n')
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", str(config), "--out", str(tmp_path / "m"), "--threads",
              "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    name = setting.split()[0]
    assert err[0].startswith("mmoe: error: model 'mmoe' is too large") and \
        f"lower {name} (now " in err[0], err
    assert not (tmp_path / "m").exists()
