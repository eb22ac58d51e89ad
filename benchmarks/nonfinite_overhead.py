"""Overhead of the per-step non-finite check (loss + total grad norm) on a small model: the
Trainer's step vs the same step without the check, interleaved, median of repeats. JSON."""

import json
import statistics
import time

import torch

from mmoe import TaskSpec, TrainConfig, build_model
from mmoe.data.table import TensorTable
from mmoe.objectives import safe_denominator
from mmoe.train import Trainer


class NoCheck(Trainer):
    def _step(self, batch):  # the step before the check existed
        out = self.net(*batch.inputs(), parts=True)
        num, den = self.loss_fn.parts(out.logits, batch.labels, batch.weights)
        task_losses = num / safe_denominator(den.detach())
        self.optimizer.zero_grad(set_to_none=True)
        self.weighting.backward(task_losses, out.aux_loss)
        self.optimizer.step()
        self.weighting.after_step()
        return task_losses.detach().double().cpu()


def main(repeats: int = 7) -> None:
    torch.set_num_threads(1)
    tasks = [TaskSpec("a", "binary"), TaskSpec("b", "regression")]
    x = torch.randn(8192, 32)
    data = TensorTable.from_arrays(x, torch.stack([(x[:, 0] > 0).float(), x[:, 1]], 1))
    cfg = TrainConfig(epochs=1, batch_size=256, restore_best=False)
    times = {"check": [], "no_check": []}
    for _ in range(repeats):
        for name, cls in (("check", Trainer), ("no_check", NoCheck)):
            torch.manual_seed(0)
            model = build_model("mmoe", 32, tasks, num_experts=8, expert_units=(64,))
            start = time.perf_counter()
            cls(model, cfg, progress=False).fit(data)
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"median_s": med, "overhead": med["check"] / med["no_check"] - 1,
                      "steps": 32, "repeats": repeats}))


if __name__ == "__main__":
    main()
