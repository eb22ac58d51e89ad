"""A NaN/inf loss or gradient is caught at the step it happens, naming the task; stop keeps
the last good checkpoint, skip drops the step without touching weights or statistics."""

import math

import pytest
import torch

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.data.table import TensorTable
from mmoe.train import NonFiniteError, Trainer
from mmoe.train.checkpoint import load_checkpoint
from mmoe.train.epochs import StreamEpochs, epoch_permutation, shuffle_batches

TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "regression"))
BS, SEED = 16, 2


def _data(n=160, bad_rows=(), seed=0, value=1e30):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = torch.stack([(x[:, 0] > 0).float(), x[:, 1]], 1)
    y[list(bad_rows), 1] = value  # (1e30)^2 overflows float32: task 'b' loss = inf
    return TensorTable.from_arrays(x, y)


def _model(**kw):
    torch.manual_seed(0)
    return build_model("mmoe", 4, TASKS, num_experts=2, expert_units=(8,), tower_units=(4,),
                       **kw)


def _cfg(**kw):
    return TrainConfig(**{"epochs": 2, "batch_size": BS, "lr": 1e-2, "seed": SEED,
                          "restore_best": False, **kw})


def _step_of_row(row, n=160):
    """1-based step of epoch 0 whose batch holds ``row``."""
    pos = int((epoch_permutation(n, SEED, 0) == row).nonzero())
    return pos // BS + 1


def test_stop_names_the_task_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    row = 37
    step = _step_of_row(row)
    assert step > 2  # a checkpoint was written before the bad step
    trainer = Trainer(_model(), _cfg(checkpoint_every=2), checkpoint=tmp_path / "ck.pt")
    with pytest.raises(NonFiniteError) as err:
        trainer.fit(_data(bad_rows=[row]))
    msg = str(err.value)
    assert "task 'b' (inf)" in msg and f"at step {step} (epoch 1)" in msg, msg
    assert "'a'" not in msg and str(tmp_path / "ck.pt") in msg and "skip" in msg
    ckpt = load_checkpoint(tmp_path / "ck.pt")
    assert ckpt["trainer"]["global_step"] == (step - 1) // 2 * 2
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
    # the weights in memory are the last good step's: the bad update never happened
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_skip_counts_steps_and_drops_them_without_updating_anything():
    # every row bad: every step is skipped, so the model must end exactly as it started
    model = _model(batch_norm=True)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    data = _data(bad_rows=range(160))
    trainer = Trainer(model, _cfg(on_nonfinite="skip"))
    result = trainer.fit(data)
    assert [r["skipped_steps"] for r in result.history] == [10, 10]
    for k, v in model.state_dict().items():  # weights and batch-norm running statistics
        assert torch.equal(v, start[k]), k
    assert not trainer.optimizer.state  # Adam never stepped
    assert all(math.isnan(v) for v in result.history[-1]["train_loss"].values())


def test_skip_one_bad_step_trains_on_and_reports_it():
    row = 37
    result = Trainer(_model(), _cfg(on_nonfinite="skip")).fit(_data(bad_rows=[row]))
    assert [r["skipped_steps"] for r in result.history] == [1, 1]
    loss = result.history[-1]["train_loss"]
    assert math.isfinite(loss["a"]) and math.isfinite(loss["b"])  # the skipped batch left out


def test_gradient_only_non_finite_says_gradient():
    model = _model()
    first = next(model.parameters())
    first.register_hook(lambda g: g * float("inf"))
    with pytest.raises(NonFiniteError, match=r"non-finite gradient .*every task loss is "
                                             r"finite\) at step 1 \(epoch 1\)"):
        Trainer(model, _cfg()).fit(_data())


def test_nan_inputs_name_every_task_and_streaming_catches_it_too():
    data = _data()
    data.numeric[5, 0] = float("nan")
    step = _step_of_row(5)
    with pytest.raises(NonFiniteError, match=rf"task 'a' \(nan\), 'b' \(nan\) at step {step}"):
        Trainer(_model(), _cfg()).fit(data)
    chunks = [data.take(slice(i, i + 40)) for i in range(0, 160, 40)]
    with pytest.raises(NonFiniteError, match=rf"task 'a' \(nan\), 'b' \(nan\) at step {step}"):
        Trainer(_model(), _cfg()).fit(
            StreamEpochs(lambda e: shuffle_batches(chunks, BS, 10_000, SEED, e)))


def test_on_nonfinite_is_validated():
    with pytest.raises(ValueError, match="on_nonfinite must be one of stop, skip"):
        TrainConfig(on_nonfinite="ignore")


def test_stop_before_any_checkpoint_says_so_and_names_no_missing_file(tmp_path):
    # the bad row is in epoch 1, before the first checkpoint (written at the epoch's end)
    ck = tmp_path / "ck.pt"
    with pytest.raises(NonFiniteError) as err:
        Trainer(_model(), _cfg(), checkpoint=ck).fit(_data(bad_rows=[37]))
    msg = str(err.value)
    assert not ck.exists()
    assert "no checkpoint of this run had been written yet" in msg, msg
    assert "kept in" not in msg, msg
    assert "\n" not in msg


def test_stop_after_a_checkpoint_names_its_step(tmp_path):
    step = _step_of_row(37)
    with pytest.raises(NonFiniteError) as err:
        Trainer(_model(), _cfg(checkpoint_every=2), checkpoint=tmp_path / "ck.pt").fit(
            _data(bad_rows=[37]))
    saved = (step - 1) // 2 * 2
    assert f"the last good checkpoint, of step {saved}, is kept in" in str(err.value)
    assert load_checkpoint(tmp_path / "ck.pt")["trainer"]["global_step"] == saved


def test_skip_every_step_fails_when_asked_and_writes_no_checkpoint_of_that_epoch(tmp_path):
    ck = tmp_path / "ck.pt"
    trainer = Trainer(_model(), _cfg(on_nonfinite="skip", stop_if_all_skipped=True),
                      checkpoint=ck)
    with pytest.raises(NonFiniteError) as err:
        trainer.fit(_data(bad_rows=range(160)))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("every step of epoch 1 was skipped"), msg
    assert "task 'b' (inf)" in msg and "learned nothing" in msg and "no checkpoint" in msg
    assert not ck.exists()
    # one good batch in each epoch (its first) is enough to carry on
    good = {int(r) for e in (0, 1) for r in epoch_permutation(160, SEED, e)[:BS]}
    result = Trainer(_model(), _cfg(on_nonfinite="skip", stop_if_all_skipped=True)).fit(
        _data(bad_rows=[r for r in range(160) if r not in good]))
    assert [r["skipped_steps"] for r in result.history] == [9, 9]


@pytest.mark.parametrize("on_nonfinite", ["stop", "skip"])
def test_weights_that_overflow_stop_training_naming_the_cause(on_nonfinite, tmp_path):
    # lr 1e300: the first update is finite in float64 but not in the float32 weights
    data = _data()
    cfg = _cfg(lr=1e300, on_nonfinite=on_nonfinite, checkpoint_every=1)
    with pytest.raises(NonFiniteError) as err:
        Trainer(_model(), cfg, checkpoint=tmp_path / "ck.pt").fit(data, data)
    msg = str(err.value)
    assert "\n" not in msg and "weights are no longer finite" in msg and "lr 1e+300" in msg
    assert "Input contains" not in msg
    # the overflowed weights were never checkpointed: nothing to resume from
    assert "no checkpoint of this run had been written yet" in msg
    assert not (tmp_path / "ck.pt").exists()
    # one step per epoch: the epoch's end finds them, before validation's metrics would
    with pytest.raises(NonFiniteError, match="weights are no longer finite"):
        Trainer(_model(), _cfg(lr=1e300, batch_size=160, on_nonfinite="skip")).fit(data, data)


def test_stop_if_all_skipped_is_the_cli_default_and_may_change_on_resume():
    from mmoe.app.spec import build_run_spec
    from mmoe.train.checkpoint import RESUMABLE_CHANGES

    assert build_run_spec(train="t.csv", tasks=["y:binary"]).training.stop_if_all_skipped
    assert not TrainConfig().stop_if_all_skipped
    assert "stop_if_all_skipped" in RESUMABLE_CHANGES
