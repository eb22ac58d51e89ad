"""compile=True trains through torch.compile to the same weights as eager training, and falls
back to eager training (with a warning) where no C++ compiler exists."""

import shutil

import pytest
import torch

from mmoe import InputSpec, TaskSpec, TrainConfig, build_model
from mmoe.data.table import TensorTable
from mmoe.train import Trainer

TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "regression"))
CARDS = (4, 9, 3)


def _table(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    numeric = torch.randn(n, 2, generator=g)
    cat = torch.stack([torch.randint(0, c, (n,), generator=g) for c in CARDS], 1)
    y = torch.stack([(numeric[:, 0] + (cat[:, 1] > 4) > 0.5).float(), numeric[:, 1] * 2], 1)
    return TensorTable(numeric=numeric, categorical=cat, labels=y)


def _model():
    torch.manual_seed(0)
    spec = InputSpec(numeric=("x0", "x1"),
                     categorical=tuple((f"c{i}", c) for i, c in enumerate(CARDS)),
                     embedding_dim=4)
    return build_model("mmoe", spec, TASKS, num_experts=3, expert_units=(8,), tower_units=(4,))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_training_equals_eager_training():
    # static: the summed loss, whose trajectory compiled and eager kernels share (this small
    # table's default would learn a weight per task as well)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=1e-2, restore_best=False,
                      loss_weighting="static")
    eager, comp = _model(), _model()
    Trainer(eager, cfg, progress=False).fit(_table())  # 256 rows: one batch shape, one compile
    trainer = Trainer(comp, TrainConfig(**{**cfg.to_dict(), "compile": True}), progress=False)
    assert trainer.net is not comp  # a compiled wrapper
    trainer.fit(_table())
    for (name, a), b in zip(eager.state_dict().items(), comp.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


def test_compile_without_a_compiler_warns_and_trains_eagerly(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    model = _model()
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        trainer = Trainer(model, TrainConfig(epochs=1, batch_size=64, compile=True),
                          progress=False)
    assert trainer.net is model
    assert len(trainer.fit(_table()).history) == 1


def test_compile_must_be_a_boolean():
    with pytest.raises(ValueError, match="compile must be true or false"):
        TrainConfig(compile="yes")
