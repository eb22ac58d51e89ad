"""The default loss weighting (``loss_weighting=None``) is chosen from the run: PCGrad on a
small table whose tasks share layers, the summed loss everywhere else."""

from dataclasses import replace

import pytest
import torch

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.config import training
from mmoe.data.table import TensorTable
from mmoe.objectives.weighting import PCGrad, StaticWeighting
from mmoe.train import Trainer
from mmoe.train.epochs import StreamEpochs

TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "regression"))
CFG = TrainConfig(epochs=2, batch_size=64, lr=1e-2, seed=3)


def _data(n=400):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    y = torch.stack([(x[:, 0] - x[:, 1] > 0).float(), x[:, 0] + x[:, 2]], 1)
    return TensorTable.from_arrays(x, y)


def _fit(name, cfg, data, tasks=TASKS):
    torch.manual_seed(0)
    model = build_model(name, 5, list(tasks), num_experts=3, expert_units=(8,),
                        tower_units=(4,))
    trainer = Trainer(model, cfg)
    result = trainer.fit(data)
    return model, trainer, result


def test_a_small_table_trains_with_pcgrad_exactly_as_if_it_were_set():
    data = _data()
    default, trainer, result = _fit("mmoe", CFG, data)
    assert isinstance(trainer.weighting, PCGrad)
    assert trainer.config.loss_weighting == "pcgrad" == result.config.loss_weighting
    assert trainer.state["config"]["loss_weighting"] == "pcgrad"  # what a checkpoint holds
    explicit, _, _ = _fit("mmoe", replace(CFG, loss_weighting="pcgrad"), data)
    static, _, _ = _fit("mmoe", replace(CFG, loss_weighting="static"), data)
    for name, w in explicit.state_dict().items():
        assert torch.equal(default.state_dict()[name], w), name
    assert any(not torch.equal(static.state_dict()[n], w)
               for n, w in explicit.state_dict().items())


@pytest.mark.parametrize("case", ["large", "single_task", "one_task", "fp16"])
def test_elsewhere_the_default_is_the_summed_loss(case, monkeypatch):
    data, name, tasks, cfg = _data(), "mmoe", TASKS, CFG
    if case == "large":  # a table above PCGRAD_ROWS rows
        monkeypatch.setattr(training, "PCGRAD_ROWS", len(data) - 1)
    elif case == "single_task":  # a network per task: nothing for PCGrad to project
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


@pytest.mark.parametrize(("rows", "kind"), [(400, "pcgrad"), (None, "static")])
def test_a_stream_is_judged_by_its_rows_when_they_are_known(rows, kind):
    """A Parquet file's rows are known before it streams; a CSV stream's are not."""
    data = _data()
    source = StreamEpochs(lambda epoch: [data], rows=rows)
    _, trainer, result = _fit("mmoe", CFG, source)
    assert result.config.loss_weighting == kind
