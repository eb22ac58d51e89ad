import math
import pickle

import pytest
import torch

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.data.table import TensorTable
from mmoe.train import Trainer, evaluate_model, fit, load_checkpoint, load_model, predict

TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "regression"))


def _data(n=600, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = torch.stack([(x[:, 0] + x[:, 1] > 0).float(), x[:, 2] * 2 + 0.1 * x[:, 3]], 1)
    y[::7, 1] = float("nan")  # some missing regression labels
    return TensorTable.from_arrays(x, y, weights=torch.rand(n, generator=g) + 0.5)


def _model(seed=0, dropout=0.2):
    torch.manual_seed(seed)
    return build_model("mmoe", 5, TASKS, num_experts=3, expert_units=(8,), tower_units=(4,),
                       dropout=dropout)


def _weights_equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(),
                                                  strict=True))


# constant lr: resuming with more epochs (below) keeps the same trajectory only without a
# schedule planned over the epochs
CFG = TrainConfig(epochs=4, batch_size=64, lr=1e-2, seed=3, restore_best=False,
                  lr_schedule="constant")


def test_training_learns_and_history_has_metrics():
    train, valid = _data(), _data(300, seed=1)
    model = _model()
    before = evaluate_model(model, valid)
    result = fit(model, train, valid, CFG)
    assert len(result.history) == 4
    after = result.history[-1]["valid"]
    assert after["a"]["auc"] > 0.9 and after["a"]["auc"] > before["a"]["auc"]
    assert after["b"]["mse"] < before["b"]["mse"]
    assert result.history[-1]["samples_per_s"] > 0
    preds = predict(model, valid)
    assert preds["a"].shape == (300,) and (preds["a"] >= 0).all() and (preds["a"] <= 1).all()


def test_same_seed_same_result_different_seed_different():
    train = _data()
    a, b, c = _model(), _model(), _model()
    fit(a, train, None, CFG)
    fit(b, train, None, CFG)
    fit(c, train, None, TrainConfig(**{**CFG.to_dict(), "seed": 4}))
    assert _weights_equal(a, b) and not _weights_equal(a, c)


def test_resume_after_two_epochs_equals_four_straight(tmp_path):
    train, valid = _data(), _data(200, seed=1)
    straight = _model()
    fit(straight, train, valid, CFG)

    first = _model()
    two = TrainConfig(**{**CFG.to_dict(), "epochs": 2})
    Trainer(first, two, checkpoint=tmp_path / "ck.pt").fit(train, valid)
    ckpt = load_checkpoint(tmp_path / "ck.pt")
    assert ckpt["trainer"]["epoch"] == 2
    # A fresh process would rebuild the model from scratch; a different init proves the
    # weights come from the checkpoint. Resuming needs the same settings: patch the epochs.
    ckpt_cfg = dict(ckpt["trainer"]["config"], epochs=4)
    raw = torch.load(tmp_path / "ck.pt", weights_only=True)
    raw["trainer"] = raw["trainer"].replace('"epochs": 2', '"epochs": 4')
    torch.save(raw, tmp_path / "ck.pt")
    resumed = _model(seed=99)
    result = Trainer(resumed, TrainConfig(**ckpt_cfg), checkpoint=tmp_path / "ck.pt").fit(
        train, valid, resume=True)
    assert _weights_equal(resumed, straight)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_from_a_mid_epoch_checkpoint_is_exact(tmp_path, schedule):
    train = _data()
    cfg = TrainConfig(**{**CFG.to_dict(), "checkpoint_every": 3, "epochs": 2,
                         "lr_schedule": schedule})
    straight = _model()
    fit(straight, train, None, cfg)
    # simulate a crash: train in a trainer that dies after step 14 (mid epoch 2)
    crashed = _model()
    trainer = Trainer(crashed, cfg, checkpoint=tmp_path / "ck.pt")
    original_step = trainer.optimizer.step
    calls = {"n": 0}

    def step_then_die(*args, **kwargs):
        original_step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 14:
            raise KeyboardInterrupt

    trainer.optimizer.step = step_then_die
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(train)
    assert load_checkpoint(tmp_path / "ck.pt")["trainer"]["global_step"] == 12
    resumed = _model(seed=7)
    Trainer(resumed, cfg, checkpoint=tmp_path / "ck.pt").fit(train, resume=True)
    assert _weights_equal(resumed, straight)


def test_resume_refuses_different_settings(tmp_path):
    train = _data()
    Trainer(_model(), TrainConfig(epochs=1), checkpoint=tmp_path / "ck.pt").fit(train)
    with pytest.raises(ValueError, match="different training settings"):
        Trainer(_model(), TrainConfig(epochs=1, lr=0.5), checkpoint=tmp_path / "ck.pt").fit(
            train, resume=True)


def test_early_stopping_monitors_in_the_right_direction():
    train, valid = _data(), _data(200, seed=1)
    # regression monitor: lower MSE is better; a huge lr diverges after the first epoch
    model = _model(dropout=0.0)
    cfg = TrainConfig(epochs=6, batch_size=64, lr=1e-2, monitor="b", patience=2)
    result = fit(model, train, valid, cfg)
    mses = [h["valid"]["b"]["mse"] for h in result.history]
    assert result.best_score == min(mses)
    assert result.best_epoch == mses.index(min(mses)) + 1
    assert math.isclose(evaluate_model(model, valid)["b"]["mse"], min(mses), rel_tol=1e-6)
    # AUC monitor: higher is better
    result = fit(_model(), train, valid, TrainConfig(epochs=3, batch_size=64, lr=1e-2,
                                                     monitor="a"))
    aucs = [h["valid"]["a"]["auc"] for h in result.history]
    assert result.best_score == max(aucs) and result.monitor == "a/auc"


def test_early_stopping_stops_after_patience():
    train, valid = _data(), _data(200, seed=1)
    cfg = TrainConfig(epochs=30, batch_size=64, lr=0.5, monitor="b", patience=1)
    result = fit(_model(), train, valid, cfg)
    assert result.stopped_early and len(result.history) < 30


def test_checkpoint_never_unpickles_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("open('%s', 'w').write('pwned')" % (tmp_path / "pwned"),))

    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"format": "mmoe-checkpoint", "x": Evil()}, fh)
    torch.save({"format": "mmoe-checkpoint", "x": Evil()}, tmp_path / "evil2.pt")
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(ValueError, match="cannot be read safely"):
            load_model(tmp_path / name)
    assert not (tmp_path / "pwned").exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    model = _model()
    Trainer(model, TrainConfig(epochs=1), checkpoint=tmp_path / "ck.pt").fit(_data())
    data = (tmp_path / "ck.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pt"):
        load_model(tmp_path / "cut.pt")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


def test_small_models_train_on_one_thread_and_the_callers_setting_is_restored():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        model = _model()
        seen = []
        trainer = Trainer(model, TrainConfig(epochs=1, batch_size=256))
        trainer.optimizer.register_step_post_hook(lambda *a: seen.append(torch.get_num_threads()))
        trainer.fit(_data())
        assert trainer.threads() == 1 and set(seen) == {1}
        assert torch.get_num_threads() == 2
        assert Trainer(model, TrainConfig(threads=3)).threads() == 3
    finally:
        torch.set_num_threads(before)


def test_one_validation_pass_per_epoch_gives_metrics_and_gate_health():
    """The epoch end runs the model over the validation rows once, for the metrics and the
    gate statistics together."""
    model = _model()
    eval_calls = []
    model.register_forward_hook(lambda m, args, out: None if m.training else eval_calls.append(1))
    valid = _data(20_000, seed=1)  # two evaluation batches of at most 16,384 rows
    result = Trainer(model, TrainConfig(epochs=3, batch_size=64), progress=False).fit(
        _data(128), valid)
    assert len(eval_calls) == 3 * 2  # three epochs, one pass of two batches each
    assert all("gates" in r and "valid" in r for r in result.history)


def test_the_native_kernels_are_built_when_a_trainer_starts_not_on_import(monkeypatch):
    from mmoe.cli import main
    from mmoe.ops.native import loader

    calls = []
    monkeypatch.setattr(loader, "_state", {})
    monkeypatch.setattr(loader, "_load", lambda: calls.append(1) or False)
    with pytest.raises(SystemExit):
        main(["models"])  # a command that computes nothing builds nothing
    assert calls == []
    Trainer(_model(), CFG, progress=False)
    Trainer(_model(), CFG, progress=False)
    assert calls == [1]  # once, at the first start; then its outcome is kept
