"""Mixed precision on the CPU (bf16 and fp16 within a stated tolerance of fp32, the loss and
metrics in float32, fp16 overflows skipped and the scale halved, a resumed fp16 run equal to
an uninterrupted one) and batches prepared ahead (same batches in order, errors where they
happen, the thread stopped when the consumer stops, streaming equal with and without)."""

import threading

import pytest
import torch

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.data.table import TensorTable
from mmoe.train import Trainer
from mmoe.train.epochs import InMemoryEpochs, StreamEpochs, shuffle_batches
from mmoe.train.precision import Precision
from mmoe.train.prefetch import prefetched

TASKS = [TaskSpec("y"), TaskSpec("v", "regression")]


def _data(n=2048, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * torch.randn(n, generator=g) > 0).float()
    v = x[:, 2] - x[:, 3] + 0.1 * torch.randn(n, generator=g)
    return TensorTable.from_arrays(x, torch.stack([y, v], 1))


def _fit(precision, epochs=4, checkpoint=None, resume=False, **extra):
    torch.manual_seed(0)
    model = build_model("mmoe", 6, TASKS, num_experts=4, expert_units=(16,))
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=3e-3, precision=precision, **extra)
    trainer = Trainer(model, cfg, progress=False, checkpoint=checkpoint)
    return trainer, trainer.fit(_data(), _data(512, 1), resume=resume)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_trains_to_fp32s_metrics(precision):
    # the same objective in every precision (fp16's default is the summed loss)
    _, base = _fit("fp32", loss_weighting="static")
    trainer, half = _fit(precision, loss_weighting="static")
    b, h = base.history[-1], half.history[-1]
    assert abs(h["valid"]["y"]["auc"] - b["valid"]["y"]["auc"]) < 0.01
    assert abs(h["valid"]["v"]["r2"] - b["valid"]["v"]["r2"]) < 0.02
    assert all(isinstance(v, float) for v in h["train_loss"].values())  # float32 losses
    assert h["valid"]["y"]["auc"] > 0.85
    assert next(trainer.model.parameters()).dtype == torch.float32  # weights stay fp32
    assert (trainer.precision.scaler is not None) == (precision == "fp16")


def test_fp16_overflow_skips_the_step_and_halves_the_scale():
    torch.manual_seed(0)
    model = build_model("mmoe", 6, TASKS, num_experts=2)
    trainer = Trainer(model, TrainConfig(epochs=1, batch_size=512, precision="fp16"),
                      progress=False)
    trainer.precision.scaler._init_scale = 2.0 ** 120  # noqa: SLF001  (every gradient overflows)
    before = [p.detach().clone() for p in model.parameters()]
    result = trainer.fit(_data(1024))  # two steps, both overflowing: no error
    assert result.history[0].get("skipped_steps", 0) == 0  # an overflow is not a bad step
    assert trainer.precision.scaler.get_scale() == 2.0 ** 118  # halved at each overflow
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_fp16_resume_is_exact(tmp_path):
    straight, _ = _fit("fp16", epochs=3)
    trainer = _model_trainer(tmp_path)
    step, calls = trainer.optimizer.step, {"n": 0}

    def step_then_die(*args, **kwargs):
        step(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 22:  # mid epoch 2, after the checkpoint of step 20
            raise KeyboardInterrupt

    trainer.optimizer.step = step_then_die
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(_data(), _data(512, 1))
    resumed = _model_trainer(tmp_path, seed=7)  # other weights: they come from the checkpoint
    resumed.fit(_data(), _data(512, 1), resume=True)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert resumed.precision.scaler.get_scale() == straight.precision.scaler.get_scale()


def _model_trainer(tmp_path, seed=0):
    torch.manual_seed(seed)
    model = build_model("mmoe", 6, TASKS, num_experts=4, expert_units=(16,))
    cfg = TrainConfig(epochs=3, batch_size=128, lr=3e-3, precision="fp16", checkpoint_every=5)
    return Trainer(model, cfg, progress=False, checkpoint=tmp_path / "c.pt")


def test_fp16_needs_static_loss_weighting():
    with pytest.raises(ValueError, match="fp16 scales the summed loss"):
        TrainConfig(precision="fp16", loss_weighting="gradnorm")
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")


def test_autocast_runs_the_forward_in_half_precision():
    p = Precision("bf16", torch.device("cpu"))
    with p.autocast():
        out = torch.nn.Linear(3, 2)(torch.randn(4, 3))
    assert out.dtype == torch.bfloat16
    with Precision("fp32", torch.device("cpu")).autocast():
        assert torch.nn.Linear(3, 2)(torch.randn(4, 3)).dtype == torch.float32


def test_prefetched_keeps_order_and_raises_where_the_error_is():
    def items():
        yield from range(5)
        raise RuntimeError("chunk 5 is broken")

    got = []
    with pytest.raises(RuntimeError, match="chunk 5"):
        for item in prefetched(items(), depth=2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_prefetched_stops_its_thread_when_the_consumer_stops():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    it = prefetched(endless(), depth=3)
    assert [next(it) for _ in range(4)] == [0, 1, 2, 3]
    it.close()
    assert not any(t.name == "mmoe-prefetch" and t.is_alive() for t in threading.enumerate())


def test_stream_training_is_the_same_with_batches_prepared_ahead():
    table = _data(1000)
    chunks = [table.take(slice(i, i + 250)) for i in range(0, 1000, 250)]
    direct = StreamEpochs(lambda e: shuffle_batches(chunks, 128, 400, seed=0, epoch=e))
    batches = [b.table.numeric for b in direct.batches(1, 0, _ctx())]
    ahead = [b.table.numeric for b in prefetched(direct.batches(1, 0, _ctx()))]
    assert len(batches) == len(ahead) and all(map(torch.equal, batches, ahead))
    in_memory = list(InMemoryEpochs(table, 128, 0).batches(0, 0, _ctx()))
    assert len(in_memory) == 8


def _ctx():
    from mmoe.train.distributed import DistContext

    return DistContext()


def test_tables_move_whole_and_index_follows_them():
    table = _data(10)
    assert table.to("cpu") is table and table.nbytes == 10 * 6 * 4 + 10 * 2 * 4
    assert torch.equal(table.take(torch.tensor([3, 1])).numeric, table.numeric[[3, 1]])
