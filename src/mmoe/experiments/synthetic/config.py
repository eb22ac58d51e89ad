"""Settings of the synthetic study: the paper's §5 models and data, the run seeds, and the
paper's Fig. 4 numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ... import _checks
from ...config import InputSpec, TaskSpec
from ...config.training import LR_SCHEDULES
from ...data.datasets.synthetic import SyntheticSpec
from ...models import MultiTaskModel, build_model

TASKS = (TaskSpec("y1", "regression"), TaskSpec("y2", "regression"))

# The paper's §5 shapes: 8 experts of one ReLU layer of 16 units, towers of 8; Shared-Bottom
# one shared layer of 113 units (parameter-matched: 100·113 ≈ 100·16·8 + 16·8·2 = 13,056).
SYNTHETIC_MODELS: dict[str, dict[str, Any]] = {
    "shared_bottom": {"expert_units": (113,), "tower_units": (8,)},
    "omoe": {"num_experts": 8, "expert_units": (16,), "tower_units": (8,)},
    "mmoe": {"num_experts": 8, "expert_units": (16,), "tower_units": (8,)},
    # Beyond the paper (Tang et al. 2020), extra rows with the same 8 experts of 16 units:
    # CGC with 4 shared experts and 2 per task; PLE with two such extraction levels.
    "cgc": {"expert_units": (16,), "tower_units": (8,),
            "options": {"shared_experts": 4, "task_experts": 2}},
    "ple": {"expert_units": (16,), "tower_units": (8,),
            "options": {"shared_experts": 4, "task_experts": 2, "levels": 2}},
}

# Paper Fig. 4, mean final loss read off the figure by eye (about ±0.01), see PAPER.md.
PAPER_FIG4: dict[float, dict[str, float]] = {
    0.5: {"shared_bottom": 0.255, "omoe": 0.145, "mmoe": 0.083},
    0.9: {"shared_bottom": 0.22, "omoe": 0.118, "mmoe": 0.082},
    1.0: {"shared_bottom": 0.20, "omoe": 0.078, "mmoe": 0.07},
}


def build_synthetic_model(name: str, d: int, seed: int) -> MultiTaskModel:
    """One of the paper's §5 models, initialised from ``torch.manual_seed(seed)``.

    Example:
        >>> build_synthetic_model("mmoe", 100, 0)(torch.randn(4, 100)).shape
        torch.Size([4, 2])
    """
    _checks.one_of(name, SYNTHETIC_MODELS, "synthetic model")
    torch.manual_seed(seed)
    return build_model(name, InputSpec.dense(d), TASKS, **SYNTHETIC_MODELS[name])



@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of ``mmoe reproduce synthetic``; each default's source is beside it.

    Args:
        runs: independent runs R per (model, correlation); the paper used 200.
        steps: Adam steps per run (the paper's curves run to ~10M steps; far beyond 2 CPUs).
        batch_size: rows per run per step (not reported by the paper).
        correlations: task correlation scores p (paper §5: 0.5, 0.9, 1.0).
        models: which of ``shared_bottom``, ``omoe``, ``mmoe`` to train.
        lr_grid: Adam learning rates to choose from (paper §5: {1e-4, 1e-3, 1e-2}).
        lr_runs: pilot runs per (model, correlation, lr) used only to choose the lr on their
            validation loss (own seeds, never test data).
        n_train, n_val, n_test: rows per run in each split (not reported by the paper).
        eval_every: steps between points of the loss curves.
        lr_schedule, warmup: the learning rate over the steps (``constant``, or ``cosine``: a
            linear warm-up over the ``warmup`` share of the steps, then a cosine decay to
            zero), for the pilot and the main runs alike.
        d, c, m, sigma, alpha_std: generator options (see
            :class:`mmoe.data.datasets.synthetic.SyntheticSpec`).
        seed: run r uses seed :func:`run_seed` for its data and its initialisation; the R runs
            of a (model, correlation) are independent (fresh data and a fresh initialisation
            each), and the models share a run's seed (paired comparisons at the
            same (correlation, run)).
        paired: run r uses the same seed ``seed + r`` at every correlation (same u1, u2, α,
            β, x, ε and initialisation; only p differs, as in the paper's Fig. 2), so the
            comparisons across correlations are paired too; ``False``: ``seed + 10_000·ci + r``
            at the ci-th correlation (independent across correlations). Pilot run j uses
            ``run_seed(seed + 1_000_000, ci, j)``, shared by the learning rates.
        threads: torch intra-op threads (``None``: leave torch's setting).
        chunk: at most this many runs trained together (bounds memory at --runs 200).
        fig2_n, fig2_trials: points and trials of the label-correlation study (paper Fig. 2).
    """

    runs: int = 16  # notes.md: 16 paired runs; --runs 200 is the paper's scale
    steps: int = 3000  # notes.md: the longest that fits --runs 200 in 30 min on 2 cores
    batch_size: int = 128
    correlations: tuple[float, ...] = (0.5, 0.9, 1.0)  # paper §5
    models: tuple[str, ...] = ("shared_bottom", "omoe", "mmoe")  # paper §5
    lr_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2)  # paper §5
    lr_runs: int = 3  # pilot seeds; paired, each spans every correlation
    n_train: int = 50_000
    n_val: int = 2_000
    n_test: int = 2_000
    eval_every: int = 100
    lr_schedule: str = "cosine"  # notes.md: chosen on the main runs' validation losses
    warmup: float = 0.05  # 150 of 3,000 steps: keeps OMoE's towers alive at lr 1e-2
    d: int = 100  # paper §5
    c: float = 1.0  # PLE paper
    m: int = 10  # PLE paper
    sigma: float = 0.1  # paper's N(0, 0.01) read as a variance
    alpha_std: float = 1.0  # PLE paper
    seed: int = 0
    paired: bool = True
    threads: int | None = 1
    chunk: int = 96
    fig2_n: int = 10_000  # paper Fig. 2
    fig2_trials: int = 100  # paper Fig. 2

    def __post_init__(self) -> None:
        for name in ("runs", "steps", "batch_size", "lr_runs", "n_train", "n_val", "n_test",
                     "chunk", "fig2_n", "fig2_trials"):
            _checks.positive_int(getattr(self, name), name)
        for name in ("runs", "lr_runs"):
            _checks.check(getattr(self, name) <= SEED_STRIDE,
                          f"{name} must be <= {SEED_STRIDE} (seeds of the correlations would "
                          f"overlap), got {getattr(self, name)}")
        _checks.check(isinstance(self.eval_every, int) and self.eval_every >= 0,
                      f"eval_every must be an integer >= 0, got {self.eval_every!r}")
        _checks.one_of(self.lr_schedule, LR_SCHEDULES, "lr_schedule")
        _checks.check(isinstance(self.warmup, int | float) and 0 <= self.warmup < 1,
                      f"warmup must be a share of the steps in [0, 1), got {self.warmup!r}")
        object.__setattr__(self, "correlations", tuple(float(p) for p in self.correlations))
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "lr_grid", tuple(float(v) for v in self.lr_grid))
        _checks.check(len(self.correlations) > 0, "give at least one correlation")
        for p in self.correlations:
            _checks.check(-1.0 <= p <= 1.0, f"correlation must be in [-1, 1], got {p}")
        _checks.check(len(self.models) > 0, "give at least one model")
        for name in self.models:
            _checks.one_of(name, SYNTHETIC_MODELS, "synthetic model")
        _checks.check(len(self.lr_grid) > 0, "give at least one learning rate")
        for v in self.lr_grid:
            _checks.check(v > 0, f"learning rates must be > 0, got {v}")
        _checks.check(self.batch_size <= self.n_train,
                      f"batch_size {self.batch_size} exceeds n_train {self.n_train}")
        if self.threads is not None:
            _checks.positive_int(self.threads, "threads")
        SyntheticSpec(d=self.d, c=self.c, m=self.m, sigma=self.sigma,
                             alpha_std=self.alpha_std)  # validates them

    def main_seed(self, ci: int, r: int) -> int:
        """Seed of main run r at the ci-th correlation."""
        return run_seed(self.seed, ci, r, self.paired)

    def pilot_seed(self, ci: int, j: int) -> int:
        """Seed of pilot run j at the ci-th correlation (never a main run's seed)."""
        return run_seed(self.seed + 1_000_000, ci, j, self.paired)

    @property
    def spec(self) -> SyntheticSpec:
        """The generator options."""
        return SyntheticSpec(d=self.d, c=self.c, m=self.m, sigma=self.sigma,
                             alpha_std=self.alpha_std)


SEED_STRIDE = 10_000  # seed offset between correlations; runs per correlation must be fewer


def run_seed(seed: int, ci: int, r: int, paired: bool = True) -> int:
    """Seed of run r at the ci-th correlation: ``seed + r`` when paired across correlations,
    else ``seed + 10_000·ci + r``.

    Example:
        >>> run_seed(0, 2, 3), run_seed(0, 2, 3, paired=False)
        (3, 20003)
    """
    return seed + r if paired else seed + SEED_STRIDE * ci + r


def planned_steps(config: SyntheticConfig) -> int:
    """Total batched training steps the experiment will take (for a progress bar)."""
    chunks = math.ceil(config.runs * len(config.correlations) / config.chunk)
    pilot = len(config.lr_grid) * config.lr_runs * len(config.correlations)
    pilot_chunks = math.ceil(pilot / config.chunk) if len(config.lr_grid) > 1 else 0
    return len(config.models) * config.steps * (chunks + pilot_chunks)
