"""Resuming from a checkpoint whose trainer state, RNG state, optimizer state or weights were
changed: every change that does not fit the run is refused before anything is used, with one
line naming the checkpoint and the part; a fitting checkpoint resumes exactly."""

import io
import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.data.table import TensorTable
from mmoe.train import Trainer

TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "regression"))
# uncertainty weighting and restore_best: the checkpoint holds every kind of tensor
CFG = TrainConfig(epochs=2, batch_size=16, lr=1e-2, seed=1, loss_weighting="uncertainty",
                  restore_best=True)
JSON_FIELDS = ("model", "trainer", "extras")


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return TensorTable.from_arrays(x, torch.stack([(x[:, 0] > 0).float(), x[:, 1]], 1))


TRAIN, VALID = _data(), _data(32, seed=1)


def _model():
    torch.manual_seed(0)
    return build_model("mmoe", 4, TASKS, num_experts=2, expert_units=(4,), tower_units=(3,),
                       dropout=0.1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(the checkpoint after epoch 1, as bytes; the weights of a straight 2-epoch run)."""
    path = tmp_path_factory.mktemp("ck") / "ck.pt"
    epochs = Trainer(_model(), CFG, checkpoint=path).iter_epochs(TRAIN, VALID)
    next(epochs)  # epoch 1 done and checkpointed
    straight = _model()
    Trainer(straight, CFG).fit(TRAIN, VALID)
    return path.read_bytes(), straight.state_dict()


def _decoded(data: bytes) -> dict:
    raw = torch.load(io.BytesIO(data), weights_only=True)
    for key in JSON_FIELDS:
        raw[key] = json.loads(raw[key])
    return raw


def _write(raw: dict, path) -> None:
    raw = dict(raw)
    for key in JSON_FIELDS:
        if key in raw:
            raw[key] = json.dumps(raw[key])
    torch.save(raw, path)


def _resume(path) -> torch.nn.Module:
    model = _model()
    Trainer(model, CFG, checkpoint=path).fit(TRAIN, VALID, resume=True)
    return model


def test_an_untouched_checkpoint_resumes_exactly(saved, tmp_path):
    _write(_decoded(saved[0]), tmp_path / "ck.pt")
    resumed = _resume(tmp_path / "ck.pt")
    for name, w in saved[1].items():
        assert torch.equal(resumed.state_dict()[name], w), name


def _set(path, value):
    def change(raw):
        *parents, last = path
        node = raw
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[last]
        elif callable(value):
            node[last] = value(node[last])
        else:
            node[last] = value
    return change


DELETE = object()
W = "backbone.experts.layers.0.weight"
CASES = {
    # trainer state
    "epoch negative": (_set(["trainer", "epoch"], -1), "malformed key(s) ['epoch']"),
    "epoch beyond the run": (_set(["trainer", "epoch"], 7), "for a run of 2 epochs"),
    "epoch a string": (_set(["trainer", "epoch"], "1"), "['epoch']"),
    "global step off": (_set(["trainer", "global_step"], 5), "(global step 5)"),
    "step beyond the epoch": (_set(["trainer", "step_in_epoch"], 99), "at step 99 of epoch 2"),
    "history not a list": (_set(["trainer", "history"], 5), "['history']"),
    "history loss a string": (_set(["trainer", "history", 0, "train_loss", "a"], "x"),
                              "history record 1 is malformed ['train_loss']"),
    "history metric a list": (_set(["trainer", "history", 0, "valid", "b", "mse"], [1]),
                              "history record 1 is malformed ['valid']"),
    "history of another task": (_set(["trainer", "history", 0, "train_loss"], {"z": 1.0}),
                                "history record 1 is malformed"),
    "loss_sum of one task": (_set(["trainer", "loss_sum"], [0.0]), "contradict"),
    "loss_sum nan": (_set(["trainer", "loss_sum"], [math.nan, 0.0]), "['loss_sum']"),
    "key missing": (_set(["trainer", "rows"], DELETE), "['rows']"),
    "key unknown": (_set(["trainer", "evil"], 1), "['evil']"),
    "stopped_early a string": (_set(["trainer", "stopped_early"], "no"), "['stopped_early']"),
    "best_score a string": (_set(["trainer", "best_score"], "x"), "['best_score']"),
    "trainer state a list": (_set(["trainer"], [1]), "corrupted 'trainer' field"),
    "config not a table": (_set(["trainer", "config"], 5), "'config' is not a table"),
    "config changed": (_set(["trainer", "config", "lr"], 0.5), "different training settings"),
    # RNG state
    "rng floats": (_set(["tensors", "rng"], lambda t: t.float()), "RNG state is missing or"),
    "rng short": (_set(["tensors", "rng"], lambda t: t[:-1]), "RNG state is missing or"),
    "rng invalid": (_set(["tensors", "rng"], lambda t: torch.full_like(t, 255)),
                    "RNG state is invalid"),
    "rng missing": (_set(["tensors", "rng"], DELETE), "RNG state is missing"),
    # optimizer
    # (the lr is the schedule's: every step sets it from the config, checked as a whole)
    "optimizer weight_decay": (_set(["optimizer", "param_groups", 0, "weight_decay"], 0.5),
                               "other hyperparameters (weight_decay)"),
    "optimizer betas": (_set(["optimizer", "param_groups", 0, "betas"], (0.5, 0.5)),
                        "other hyperparameters (betas)"),
    "optimizer groups": (_set(["optimizer", "param_groups"], []), "not this run's Adam"),
    "optimizer key not a string": (_set(["optimizer", "param_groups", 0, 3], 1.0),
                                   "other hyperparameters (3)"),
    "optimizer key missing": (_set(["optimizer", "param_groups", 0, "eps"], DELETE),
                              "other hyperparameters (eps)"),
    "optimizer params": (_set(["optimizer", "param_groups", 0, "params"], [0, 1]),
                         "does not hold this run's parameters"),
    "exp_avg shape": (_set(["optimizer", "state", 0, "exp_avg"], lambda t: t[:1]),
                      "optimizer 'exp_avg' of parameter 0"),
    "exp_avg nan": (_set(["optimizer", "state", 0, "exp_avg"], lambda t: t * math.nan),
                    "optimizer 'exp_avg' of parameter 0"),
    "exp_avg_sq negative": (_set(["optimizer", "state", 1, "exp_avg_sq"], lambda t: -1 - t),
                            "optimizer 'exp_avg_sq' of parameter 1"),
    "step fractional": (_set(["optimizer", "state", 2, "step"], lambda t: t + 0.5),
                        "step count of parameter 2"),
    "step ahead": (_set(["optimizer", "state", 2, "step"], lambda t: t + 100),
                   "step count of parameter 2"),
    "state of no parameter": (_set(["optimizer", "state", 999], {}), "parameter 999"),
    "state key missing": (_set(["optimizer", "state", 0, "exp_avg"], DELETE), "not Adam's"),
    # weights
    "weight shape": (_set(["state_dict", W], lambda t: t[:1]), f"weight '{W}' is not a dense"),
    "weight dtype": (_set(["state_dict", W], lambda t: t.double()), f"weight '{W}'"),
    "weight nan": (_set(["state_dict", W], lambda t: t * math.nan), "holds NaN or inf"),
    "weight missing": (_set(["state_dict", W], DELETE), "do not match the model's"),
    "weight unknown": (_set(["state_dict", "evil"], torch.zeros(1)), "['evil']"),
    "weight a list": (_set(["state_dict", W], [1.0]), f"weight '{W}' is not a dense"),
    "best weight shape": (_set(["tensors", "best_weights", W], lambda t: t[:, :1]),
                          f"best weight '{W}'"),
    "weighting shape": (_set(["tensors", "weighting", "log_var"], lambda t: t[:1]),
                        "loss-weighting tensor 'log_var'"),
    "weighting missing": (_set(["tensors", "weighting"], DELETE), "not this run's"),
    "another model": (_set(["model", "config", "num_experts"], 3), "for another model"),
    "field missing": (_set(["optimizer"], DELETE), "has no optimizer field"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_tampered_part_is_refused_in_one_line_naming_it(saved, tmp_path, case):
    change, needle = CASES[case]
    raw = _decoded(saved[0])
    change(raw)
    path = tmp_path / "ck.pt"
    _write(raw, path)
    model, rng = _model(), torch.get_rng_state()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as err:
        Trainer(model, CFG, checkpoint=path).fit(TRAIN, VALID, resume=True)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"checkpoint '{path}'"), msg
    assert needle in msg, msg
    # refused before anything was used: the model and the global RNG are as they were
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)


# ---- fuzzing: random changes anywhere in the checkpoint, then resume -------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                               max_size=3),
    max_leaves=6)


def _tensor_change(t: torch.Tensor, how: int) -> object:
    """A changed copy of a tensor leaf (or something else in its place)."""
    changes = [
        lambda: t.double() if t.dtype != torch.float64 else t.float(),
        lambda: t.reshape(-1)[:-1] if t.numel() else t.unsqueeze(0),
        lambda: t.unsqueeze(0),
        lambda: t * math.nan if t.is_floating_point() else t + 1,
        lambda: t * math.inf if t.is_floating_point() else -t - 1,
        lambda: t * 2 + 1 if t.is_floating_point() else t,
        lambda: t.to(torch.uint8),
        lambda: t.tolist(),
        lambda: torch.zeros(()),
    ]
    return changes[how % len(changes)]()


def _paths(node, path=()):
    """Every (path, in a JSON field) to a node of the decoded checkpoint."""
    out = [(path, bool(path) and path[0] in JSON_FIELDS)]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list | tuple):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out[1:] if not path else out


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_checkpoints_resume_or_fail_in_one_line(saved, tmp_path, data):
    raw = _decoded(saved[0])
    for _ in range(data.draw(st.integers(1, 3), label="changes")):
        paths = _paths(raw)
        path, in_json = data.draw(st.sampled_from(paths), label="where")
        *parents, last = path
        node = raw
        for key in parents:
            node = node[key]
        if isinstance(node, tuple):  # betas: rebuild the tuple
            continue
        action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
        value = node[last]
        if action == "delete" and isinstance(node, dict) and (parents or in_json):
            del node[last]
        elif action == "add" and isinstance(value, dict):
            key = data.draw(st.text(max_size=4) if in_json else
                            st.integers(0, 20) | st.text(max_size=4), label="key")
            value[key] = data.draw(json_values, label="added")
        elif isinstance(value, torch.Tensor):
            node[last] = _tensor_change(value, data.draw(st.integers(0, 20), label="how"))
        else:
            node[last] = data.draw(json_values, label="value")
    path = tmp_path / "fuzz.pt"
    _write(raw, path)
    try:
        _resume(path)
    except ValueError as err:
        msg = str(err)
        assert "\n" not in msg and str(path) in msg, msg


@pytest.mark.parametrize("case", ["optimizer weight_decay", "rng invalid", "weight nan",
                                  "epoch negative"])
def test_cli_resume_from_a_tampered_checkpoint_is_one_line_exit_2(tmp_path, capsys, monkeypatch,
                                                                  case):
    import numpy as np
    import pandas as pd

    import mmoe.app.fit as fit_module
    from mmoe.cli import main

    rng = np.random.default_rng(1)
    x = rng.normal(size=80)
    pd.DataFrame({"x": x, "y": (x > 0).astype(int)}).to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "m"
    argv = ["train", "--train", str(tmp_path / "rows.csv"), "--task", "y:binary", "--out",
            str(out), "--epochs", "2", "--batch-size", "16", "--threads", "1", "--model",
            "mmoe", "--ensemble", "1"]

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")  # the run ends before its model dir

    with monkeypatch.context() as m, pytest.raises(SystemExit):
        m.setattr(fit_module, "save_model_dir", full)
        main(argv)
    ckpt = fit_module.partial_dir(out) / "checkpoint.pt"
    raw = _decoded(ckpt.read_bytes())
    {"optimizer weight_decay": _set(["optimizer", "param_groups", 0, "weight_decay"], 0.5),
     "rng invalid": _set(["tensors", "rng"], lambda t: torch.full_like(t, 255)),
     "weight nan": _set(["state_dict", W], lambda t: t * math.nan),
     "epoch negative": _set(["trainer", "epoch"], -1)}[case](raw)
    _write(raw, ckpt)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"mmoe: error: checkpoint '{ckpt}' cannot be resumed: "), err
    assert not out.exists()
