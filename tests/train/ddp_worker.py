"""Trains a small model (numeric columns and id lookups: a user table, an item table shared
by a 3-slot history, with their wide weights and products, so sparse gradients cross ranks;
validation grouped by user for GAUC);
run alone or under torchrun. Rank 0 saves weights and metrics.

    python ddp_worker.py OUT.pt [WEIGHTING]
    python -m torch.distributed.run --nproc_per_node=2 --standalone ddp_worker.py OUT.pt [WEIGHTING]

WEIGHTING: a loss weighting (default static), or ``default`` for the one the run picks.
"""

import sys

import torch

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.config import InputSpec, Lookup
from mmoe.data.table import TensorTable
from mmoe.train import Trainer


def main(out: str, weighting: str = "static") -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    n = 501  # uneven: the last batch of 53 rows splits 26 / 27
    x = torch.randn(n, 6, generator=g)
    y = torch.stack([(x[:, 0] - x[:, 1] > 0).float(), x[:, 2] + 0.5 * x[:, 3]], 1)
    y[::5, 0] = float("nan")  # missing labels: the loss must be normalised globally
    user = torch.randint(1, 41, (n, 1), generator=g)
    items = torch.randint(0, 31, (n, 4), generator=g)  # item, then a history (0: padding)
    y[:, 0] = torch.where(y[:, 0].isnan(), y[:, 0], ((user[:, 0] % 3 == 0) | (y[:, 0] > 0)).float())
    table = TensorTable(x, None, y, torch.rand(n, generator=g) + 0.5,
                        ids=torch.cat([user, items], 1), groups=user[:, 0])
    train, valid = table.take(slice(0, 400)), table.take(slice(400, None))
    torch.manual_seed(1)
    inputs = InputSpec(numeric=tuple(f"x{i}" for i in range(6)), lookups=(
        Lookup("user", "user", 41, 4), Lookup("item", "item", 31, 4),
        Lookup("history", "item", 31, 4, slots=3)))
    model = build_model("mmoe", inputs, (TaskSpec("a"), TaskSpec("b", "regression")),
                        num_experts=3, expert_units=(8,), tower_units=(4,), wide=True,
                        cross=True)  # the wide weights are sparse too
    cfg = TrainConfig(epochs=2, batch_size=64, lr=1e-2, seed=5,
                      loss_weighting=None if weighting == "default" else weighting)
    trainer = Trainer(model, cfg, progress=False, device="cpu")
    result = trainer.fit(train, valid)
    if trainer.ctx.is_main:
        torch.save({"state": model.state_dict(), "valid": result.history[-1]["valid"],
                    "loss": result.history[-1]["train_loss"], "world": trainer.ctx.world,
                    "weighting": trainer.config.loss_weighting,
                    "learnt": trainer.weighting.state_dict()}, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
