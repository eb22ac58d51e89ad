"""The default loss weighting (``loss_weighting=None``) is chosen from the run: a learnt
weight per task (uncertainty weighting) on a small table whose tasks share layers, the summed
loss everywhere else."""

from dataclasses import replace

import pytest
import torch

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.config import InputSpec, Lookup, training
from mmoe.data.table import TensorTable
from mmoe.objectives.weighting import PCGrad, StaticWeighting, UncertaintyWeighting
from mmoe.train import Trainer
from mmoe.train.epochs import StreamEpochs
from mmoe.train.optim import MixedOptimizer

TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "regression"))
CFG = TrainConfig(epochs=2, batch_size=64, lr=1e-2, seed=3)


def _data(n=400, ids=False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    y = torch.stack([(x[:, 0] - x[:, 1] > 0).float(), x[:, 0] + x[:, 2]], 1)
    if not ids:
        return TensorTable.from_arrays(x, y)
    return TensorTable(x, None, y, ids=torch.randint(0, 50, (n, 1), generator=g))


#: five numeric columns and an id looked up in a 50-row table (sparse gradients: MixedOptimizer)
WITH_IDS = InputSpec(numeric=tuple(f"x{i}" for i in range(5)),
                     lookups=(Lookup("user", "user", 50, 4),))


def _fit(name, cfg, data, tasks=TASKS):
    torch.manual_seed(0)
    with_ids = getattr(data, "ids", None) is not None  # a stream has none
    model = build_model(name, WITH_IDS if with_ids else 5, list(tasks),
                        num_experts=3, expert_units=(8,), tower_units=(4,))
    trainer = Trainer(model, cfg)
    result = trainer.fit(data)
    return model, trainer, result


@pytest.mark.parametrize(("name", "ids"), [("mmoe", False), ("shared_bottom", False),
                                           ("mmoe", True)])
def test_a_small_table_learns_its_task_weights_exactly_as_if_it_were_set(name, ids):
    data = _data(ids=ids)
    default, trainer, result = _fit(name, CFG, data)
    assert isinstance(trainer.weighting, UncertaintyWeighting)
    assert isinstance(trainer.optimizer, MixedOptimizer) == ids
    assert trainer.config.loss_weighting == "uncertainty" == result.config.loss_weighting
    assert trainer.state["config"]["loss_weighting"] == "uncertainty"  # a checkpoint's
    # the log-variances joined the optimizer and were learnt (they start at 0)
    log_var = trainer.weighting.log_var
    assert any(log_var is p for g in trainer.optimizer.param_groups for p in g["params"])
    assert bool((log_var != 0).all())
    explicit, set_trainer, _ = _fit(name, replace(CFG, loss_weighting="uncertainty"), data)
    static, _, _ = _fit(name, replace(CFG, loss_weighting="static"), data)
    for n, w in explicit.state_dict().items():
        assert torch.equal(default.state_dict()[n], w), n
    assert torch.equal(set_trainer.weighting.log_var, log_var)
    # the same optimizer layout, so a checkpoint resumes under the setting it records
    assert ([g["params"] for g in trainer.optimizer.state_dict()["param_groups"]]
            == [g["params"] for g in set_trainer.optimizer.state_dict()["param_groups"]])
    assert any(not torch.equal(static.state_dict()[n], w)
               for n, w in explicit.state_dict().items())


def test_a_default_run_resumes_with_its_learnt_weights(tmp_path):
    """A run killed after its first epoch and resumed ends as the run never stopped,
    the log-variances included (they are in the checkpoint and the optimizer's state)."""
    data = _data()
    whole, trainer, _ = _fit("mmoe", CFG, data)
    ckpt = tmp_path / "c.pt"
    torch.manual_seed(0)
    model = build_model("mmoe", 5, list(TASKS), num_experts=3, expert_units=(8,),
                        tower_units=(4,))
    first = Trainer(model, CFG, checkpoint=ckpt)
    next(first.iter_epochs(data))  # stops after the first epoch's checkpoint
    torch.manual_seed(0)
    model = build_model("mmoe", 5, list(TASKS), num_experts=3, expert_units=(8,),
                        tower_units=(4,))
    resumed = Trainer(model, CFG, checkpoint=ckpt)
    resumed.fit(data, resume=True)
    assert resumed.state["epoch"] == 2
    for n, w in whole.state_dict().items():
        assert torch.equal(model.state_dict()[n], w), n
    assert torch.equal(resumed.weighting.log_var, trainer.weighting.log_var)


@pytest.mark.parametrize("case", ["large", "single_task", "one_task", "fp16"])
def test_elsewhere_the_default_is_the_summed_loss(case, monkeypatch):
    data, name, tasks, cfg = _data(), "mmoe", TASKS, CFG
    if case == "large":  # a table above WEIGHTING_ROWS rows
        monkeypatch.setattr(training, "WEIGHTING_ROWS", len(data) - 1)
    elif case == "single_task":  # a network per task: nothing shared to balance
        name = "single_task"
    elif case == "one_task":
        tasks, data = TASKS[:1], TensorTable.from_arrays(data.numeric, data.labels[:, :1])
    else:
        cfg = replace(CFG, precision="fp16")
    _, trainer, result = _fit(name, cfg, data, tasks)
    assert type(trainer.weighting) is StaticWeighting
    assert result.config.loss_weighting == "static"


def test_a_set_weighting_is_kept():
    _, trainer, _ = _fit("single_task", replace(CFG, loss_weighting="pcgrad"), _data())
    assert isinstance(trainer.weighting, PCGrad)


@pytest.mark.parametrize(("rows", "kind"), [(400, "uncertainty"), (None, "static")])
def test_a_stream_is_judged_by_its_rows_when_they_are_known(rows, kind):
    """A Parquet file's rows are known before it streams; a CSV stream's are not."""
    data = _data()
    source = StreamEpochs(lambda epoch: [data], rows=rows)
    _, trainer, result = _fit("mmoe", CFG, source)
    assert result.config.loss_weighting == kind
