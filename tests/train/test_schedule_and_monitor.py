"""The defaults chosen by measurement: epochs and batch from the rows, warm-up then cosine,
early stopping on the combined score with the best epoch restored."""

import math

import pytest
import torch

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.config.training import lr_factor
from mmoe.data.table import TensorTable
from mmoe.metrics import combined_score, monitored
from mmoe.train import Trainer, evaluate_model, fit

TASKS = (TaskSpec("a", "binary"), TaskSpec("b", "regression"),
         TaskSpec("c", "multiclass", classes=("x", "y", "z")))


def _data(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = torch.stack([(x[:, 0] > 0).float(), x[:, 1] * 2, (x[:, 2] > 0).float()
                     + (x[:, 3] > 1).float()], 1)
    return TensorTable.from_arrays(x, y)


def _model():
    torch.manual_seed(0)
    return build_model("mmoe", 4, TASKS, num_experts=2, expert_units=(8,), tower_units=(4,))


def test_cosine_schedule_sets_each_steps_lr():
    cfg = TrainConfig(epochs=3, batch_size=100, lr=0.01, warmup=0.25)
    seen = []
    trainer = Trainer(_model(), cfg)
    step = trainer.optimizer.step

    def spy(*args, **kwargs):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        return step(*args, **kwargs)

    trainer.optimizer.step = spy
    trainer.fit(_data())
    total = 3 * 4
    assert seen == pytest.approx([0.01 * lr_factor(cfg, s, total) for s in range(total)])
    assert seen[0] == pytest.approx(0.01 / 3) and seen[2] == pytest.approx(0.01)  # warm-up
    assert seen[-1] < seen[5] < seen[3]  # then down


def test_constant_schedule_keeps_lr():
    trainer = Trainer(_model(), TrainConfig(epochs=2, batch_size=100, lr=0.01,
                                            lr_schedule="constant"))
    trainer.fit(_data())
    assert trainer.optimizer.param_groups[0]["lr"] == 0.01


def test_epochs_and_batch_follow_the_rows_unless_given():
    cfg = TrainConfig().for_rows(400)
    assert (cfg.batch_size, cfg.epochs) == (32, 200)
    result = fit(_model(), _data(400), None, TrainConfig(epochs=2))
    assert len(result.history) == 2 and result.history[-1]["step"] == 2 * math.ceil(400 / 32)


def test_combined_monitor_keeps_the_best_mean_skill():
    train, valid = _data(), _data(300, seed=1)
    model = _model()
    result = fit(model, train, valid, TrainConfig(epochs=6, batch_size=64, lr=0.05))
    assert result.monitor == "combined"
    scores = [combined_score(h["valid"], TASKS) for h in result.history]
    assert result.best_score == pytest.approx(max(scores))
    assert result.best_epoch == scores.index(max(scores)) + 1
    assert combined_score(evaluate_model(model, valid), TASKS) == pytest.approx(max(scores))
    # each task weighs alike: the mean of 2 AUC - 1, R², and accuracy above chance
    h = result.history[0]["valid"]
    by_hand = ((2 * h["a"]["auc"] - 1) + h["b"]["r2"]
               + (h["c"]["accuracy"] - 1 / 3) / (2 / 3)) / 3
    assert scores[0] == pytest.approx(by_hand)


def test_monitor_names():
    assert monitored("combined", TASKS).name == "combined"
    with pytest.raises(ValueError, match="monitor task 'd' is not one of"):
        monitored("d", TASKS)
