"""Many small runs trained as one: R independently initialised copies of a model stacked
along a leading run axis and trained with one batched computation.

The R models are stacked with ``torch.func.stack_module_state`` (a leading run axis in every
weight) and evaluated with ``torch.vmap(functional_call)``; one Adam steps all the stacked
weights. Adam is elementwise and run r's loss depends only on run r's weights, so summing the
per-run losses gives every run exactly its own update: the result equals R separate trainings.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from .. import _checks
from ..config.training import schedule_factor


def batch_orders(seeds: Sequence[int], n: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Row indices of every training step, (R, batch_size) per step, forever.

    Run r shuffles its n rows once per epoch with its own generator (seeded ``seeds[r]``) and
    walks through them in batches (the last incomplete batch is dropped), so a run's batches
    do not depend on the other runs.
    """
    _checks.check(batch_size <= n, f"batch_size {batch_size} exceeds the {n} training rows")
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    per_epoch = n // batch_size
    while True:
        order = torch.stack([torch.randperm(n, generator=g) for g in gens])  # (R, n)
        for j in range(per_epoch):
            yield order[:, j * batch_size:(j + 1) * batch_size]  # (R, B)


def _rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (R, n, k) indexed per run by idx (R, B) -> (R, B, k).

    One ``index_select`` over the flattened runs (row ``r·n + i``): the same values as
    ``torch.gather`` along dim 1, about 4x faster on CPU at R = 96, n = 50,000.

    Example:
        >>> x = torch.arange(12.).view(2, 3, 2)
        >>> _rows(x, torch.tensor([[2, 0], [1, 1]])).tolist()
        [[[4.0, 5.0], [0.0, 1.0]], [[8.0, 9.0], [8.0, 9.0]]]
    """
    R, n, k = x.shape
    flat = (idx + torch.arange(R).unsqueeze(1) * n).reshape(-1)  # (R·B,)
    return x.reshape(R * n, k).index_select(0, flat).view(R, idx.shape[1], k)


@dataclass
class RunsResult:
    """What :func:`train_runs` returns.

    Attributes:
        losses: split name -> (R,) held-out MSE averaged over the tasks, at the end.
        curve_steps: the steps at which the curves were measured.
        curves: split name -> (R, K) held-out MSE (task mean) at ``curve_steps``.
        params: the trained stacked weights, name -> (R, ...).
        seconds: training wall time.
        run_steps_per_second: R x steps / seconds.
    """

    losses: dict[str, torch.Tensor]
    curve_steps: list[int]
    curves: dict[str, torch.Tensor]
    params: dict[str, torch.Tensor]
    seconds: float
    run_steps_per_second: float


class StackedRuns:
    """R independently initialised copies of one model, stacked along a leading run axis.

    Args:
        models: R models with the same architecture (their weights become the R slices).

    ``self(x)`` maps x (R, B, d) to logits (R, B, T), run r using its own weights.
    """

    def __init__(self, models: Sequence[nn.Module]):
        params, buffers = stack_module_state(list(models))  # name -> (R, ...)
        self.params, self.buffers = params, buffers
        self.base = copy.deepcopy(models[0]).to("meta")  # shapes only, no storage

        def one(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (p, b), (x,))  # (B, d) -> (B, T)

        self._forward = torch.vmap(one)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self.params, self.buffers, x)  # (R, B, d) -> (R, B, T)

    @torch.no_grad()
    def mse(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Per-run, per-task MSE on x (R, n, d), y (R, n, T) -> (R, T)."""
        total = torch.zeros(y.shape[0], y.shape[2])
        for s in range(0, x.shape[1], chunk):
            err = self(x[:, s:s + chunk]) - y[:, s:s + chunk]  # (R, b, T)
            total += (err * err).sum(1)
        return total / x.shape[1]


class StackedAdam:
    """Adam over stacked weights (run axis first) with one learning rate per run.

    The same arithmetic as ``torch.optim.Adam`` (betas 0.9, 0.999, eps 1e-8, no weight
    decay), elementwise, so run r's slice follows exactly the update a separate Adam with
    lr[r] would make. One learning rate per run lets a learning-rate grid be searched in one
    batched computation.

    Args:
        params: stacked parameters, each (R, ...).
        lr: (R,) learning rate of each run.
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: torch.Tensor,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, scale: float = 1.0) -> None:
        """One Adam step of every run from the gradients in ``p.grad``, at ``scale`` times
        the learning rates (a schedule's factor)."""
        b1, b2 = self.betas
        self.t += 1
        bc1, bc2_sqrt = 1 - b1 ** self.t, math.sqrt(1 - b2 ** self.t)
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            g = p.grad
            m.lerp_(g, 1 - b1)  # m = b1·m + (1 - b1)·g
            v.mul_(b2).addcmul_(g, g, value=1 - b2)  # v = b2·v + (1 - b2)·g²
            denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
            step = (self.lr * scale / bc1).view(-1, *([1] * (p.dim() - 1)))  # (R, 1, ...)
            p.sub_(step * m / denom)

    def zero_grad(self) -> None:
        """Drop the gradients."""
        for p in self.params:
            p.grad = None


def train_runs(build: Callable[[int], nn.Module], seeds: Sequence[int],
               train: tuple[torch.Tensor, torch.Tensor],
               eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]], *, steps: int,
               batch_size: int, lr: float | Sequence[float], eval_every: int = 0,
               final_sets: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
               progress: Callable[[int], None] | None = None,
               lr_schedule: str = "constant", warmup: float = 0.0) -> RunsResult:
    """Train R runs of one regression model as one batched computation.

    Run r's model is ``build(seeds[r])`` (which seeds its own initialisation), shuffles its
    batches with seed ``seeds[r]`` (see :func:`batch_orders`) and minimises its own summed MSE
    over the tasks with Adam (betas 0.9, 0.999, eps 1e-8: torch's defaults, see
    :class:`StackedAdam`) on its own data slice. The result equals R separate single-model
    trainings with the same seeds.

    Args:
        build: seed -> a freshly initialised model (dense input (B, d) -> (B, T)).
        seeds: (R,) one seed per run.
        train: ``(x (R, n, d), y (R, n, T))`` training data, run axis first.
        eval_sets: held-out splits measured along training (the curves), name ->
            ``(x (R, n', d), y (R, n', T))``.
        steps: optimisation steps (each run takes one step per step).
        batch_size: rows per run per step.
        lr: Adam learning rate, one for all runs or one per run.
        eval_every: measure the held-out curves every this many steps (0: only at the end).
        final_sets: held-out splits measured only at the end.
        progress: called with the number of steps just done.
        lr_schedule, warmup: the learning rate over the steps, as
            :class:`~mmoe.config.TrainConfig`'s (``cosine``: linear warm-up over the first
            ``warmup`` share, then a cosine decay to zero at the last step).

    Returns:
        A :class:`RunsResult`.

    Example:
        >>> from mmoe.data.datasets.synthetic import generate
        >>> from mmoe.experiments.synthetic.config import build_synthetic_model
        >>> _, s = generate([0.5, 1.0], [0, 1], {"train": 64, "val": 32})
        >>> r = train_runs(lambda seed: build_synthetic_model("mmoe", 100, seed), [0, 1],
        ...                s["train"], {"val": s["val"]}, steps=2, batch_size=16, lr=1e-3)
        >>> r.losses["val"].shape
        torch.Size([2])
    """
    _checks.positive_int(steps, "steps")
    _checks.positive_int(batch_size, "batch_size")
    x, y = train
    R, n, _ = x.shape
    _checks.check(len(seeds) == R, f"need one seed per run: {R} runs, {len(seeds)} seeds")
    rates = torch.as_tensor(lr, dtype=torch.float32).expand(R).clone()  # (R,)
    _checks.check(bool((rates > 0).all()), f"lr must be > 0, got {rates.tolist()}")
    runs = StackedRuns([build(s) for s in seeds])
    opt = StackedAdam(list(runs.params.values()), rates)
    curve_steps: list[int] = []
    curves: dict[str, list[torch.Tensor]] = {k: [] for k in eval_sets}

    def measure(step: int) -> None:
        curve_steps.append(step)
        for k, (xe, ye) in eval_sets.items():
            curves[k].append(runs.mse(xe, ye).mean(1))  # task mean: (R,)

    orders = batch_orders(seeds, n, batch_size)
    start = time.perf_counter()
    eval_time = 0.0
    for step in range(1, steps + 1):
        idx = next(orders)  # (R, B)
        err = runs(_rows(x, idx)) - _rows(y, idx)  # (R, B, T)
        # sum_r sum_t MSE_rt: each run's gradient is its own summed-over-tasks MSE's gradient
        loss = (err * err).mean(1).sum()
        opt.zero_grad()
        loss.backward()
        opt.step(schedule_factor(lr_schedule, warmup, step - 1, steps))
        if (eval_every and step % eval_every == 0) or step == steps:
            t0 = time.perf_counter()
            measure(step)
            eval_time += time.perf_counter() - t0
        if progress is not None:
            progress(1)
    seconds = time.perf_counter() - start
    train_seconds = max(seconds - eval_time, 1e-9)
    losses = {k: v[-1] for k, v in curves.items()}
    for k, (xe, ye) in (final_sets or {}).items():
        losses[k] = runs.mse(xe, ye).mean(1)  # (R,)
    return RunsResult(
        losses=losses,
        curve_steps=curve_steps,
        curves={k: torch.stack(v, 1) for k, v in curves.items()},  # (R, K)
        params={k: v.detach() for k, v in runs.params.items()},
        seconds=seconds,
        run_steps_per_second=R * steps / train_seconds,
    )
