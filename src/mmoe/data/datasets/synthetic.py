"""The paper's synthetic two-task regression data with a controlled task correlation
(Ma et al. 2018, §3.2), generated for many runs at once (leading run axis R).

For each run r, with correlation score p_r:

1. orthonormal u1, u2 in R^d;
2. w1 = c·u1, w2 = c·(p·u1 + sqrt(1 - p²)·u2), so cos(w1, w2) = p;
3. x ~ N(0, I_d);
4. y_k = w_kᵀx + sum_{i=1..m} sin(α_i·w_kᵀx + β_i) + ε_k, α, β shared by both tasks,
   ε_k ~ N(0, σ²).

Every run draws from its own ``torch.Generator`` seeded with the run's seed, so a run's data
depend on its seed only (not on R, nor on the other runs in the batch). The draws are one call
per run and array (no loop over rows); the label arithmetic is one vectorised expression for
all runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ... import _checks


@dataclass(frozen=True)
class SyntheticSpec:
    """Options of the generator. The paper reports none of c, m, α, β or σ's meaning.

    Args:
        d: input dimension; 100 as in the paper's §5 experiments.
        c: scale of w1, w2; 1 as in the PLE paper (Tang et al., RecSys 2020).
        m: number of sine terms; 10 as in the PLE paper.
        sigma: noise standard deviation; 0.1, reading the paper's N(0, 0.01) as a variance.
        alpha_std: standard deviation of the sine frequencies, α_i ~ N(0, alpha_std²);
            1 as in the PLE paper. β_i ~ N(0, 1) always (a phase: its scale past 2π is moot).

    Example:
        >>> SyntheticSpec().d
        100
    """

    d: int = 100  # paper §5
    c: float = 1.0  # PLE paper (Tang et al. 2020)
    m: int = 10  # PLE paper
    sigma: float = 0.1  # paper's ε ~ N(0, 0.01) read as a variance
    alpha_std: float = 1.0  # PLE paper

    def __post_init__(self) -> None:
        _checks.positive_int(self.d, "d")
        _checks.check(self.d >= 2, f"d must be >= 2 (two orthogonal directions), got {self.d}")
        _checks.check(isinstance(self.m, int) and not isinstance(self.m, bool) and self.m >= 0,
                      f"m must be an integer >= 0, got {self.m!r}")
        _checks.check(self.c > 0, f"c must be > 0, got {self.c}")
        _checks.non_negative(self.sigma, "sigma")
        _checks.non_negative(self.alpha_std, "alpha_std")


@dataclass(frozen=True)
class SyntheticTasks:
    """The random task parameters of R runs.

    Attributes:
        w: (R, 2, d) the task weight vectors w1, w2.
        alpha: (R, m) sine frequencies, shared by both tasks.
        beta: (R, m) sine phases, shared by both tasks.
        correlation: (R,) the correlation score p of each run.
    """

    w: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    correlation: torch.Tensor


def _generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per run, seeded with the run's seed."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def _check_correlations(correlations: torch.Tensor) -> None:
    bad = correlations[(correlations < -1) | (correlations > 1)]
    _checks.check(bad.numel() == 0,
                  f"correlation must be in [-1, 1], got {bad.tolist()}")


def make_tasks(correlations: Sequence[float] | torch.Tensor, spec: SyntheticSpec,
               generators: Sequence[torch.Generator]) -> SyntheticTasks:
    """Draw u1, u2, α, β for R runs and build w1, w2 with cos(w1, w2) = p (paper §3.2, 1-2).

    Args:
        correlations: (R,) correlation score p of each run, in [-1, 1].
        spec: generator options.
        generators: R generators, one per run (the draws consume them in a fixed order).

    Returns:
        The runs' :class:`SyntheticTasks`.

    Example:
        >>> t = make_tasks([0.5], SyntheticSpec(d=4, m=2), [torch.Generator().manual_seed(0)])
        >>> round(float(torch.cosine_similarity(t.w[0, 0], t.w[0, 1], dim=0)), 6)
        0.5
    """
    p = torch.as_tensor(correlations, dtype=torch.float64).reshape(-1)  # (R,)
    _check_correlations(p)
    _checks.check(len(generators) == p.numel(),
                  f"need one generator per run: {p.numel()} correlations, "
                  f"{len(generators)} generators")
    gauss = torch.stack([torch.randn(spec.d, 2, generator=g, dtype=torch.float64)
                         for g in generators])  # (R, d, 2)
    ab = torch.stack([torch.randn(2, spec.m, generator=g, dtype=torch.float64)
                      for g in generators])  # (R, 2, m)
    q, _ = torch.linalg.qr(gauss)  # orthonormal columns u1, u2: (R, d, 2)
    u1, u2 = q[..., 0], q[..., 1]  # (R, d)
    w1 = spec.c * u1  # w1 = c·u1
    # w2 = c·(p·u1 + sqrt(1 - p²)·u2)
    w2 = spec.c * (p[:, None] * u1 + torch.sqrt(1 - p[:, None] ** 2) * u2)
    w = torch.stack([w1, w2], dim=1)  # (R, 2, d)
    alpha = spec.alpha_std * ab[:, 0]  # α_i ~ N(0, alpha_std²)
    return SyntheticTasks(w=w.float(), alpha=alpha.float(), beta=ab[:, 1].float(),
                          correlation=p.float())


def synthetic_labels(x: torch.Tensor, tasks: SyntheticTasks,
                     noise: torch.Tensor | None = None) -> torch.Tensor:
    """Labels y (R, n, 2) of inputs x (R, n, d) (paper §3.2, step 4).

    y_k = w_kᵀx + sum_i sin(α_i·w_kᵀx + β_i) + ε_k

    Args:
        x: (R, n, d) inputs.
        tasks: the runs' task parameters.
        noise: (R, n, 2) the ε already scaled by σ, or ``None`` for noiseless labels.

    Returns:
        (R, n, 2) labels, task axis last.
    """
    z = torch.einsum("rnd,rtd->rnt", x, tasks.w)  # w_kᵀx: (R, n, 2)
    phase = z.unsqueeze(-1) * tasks.alpha[:, None, None, :] + tasks.beta[:, None, None, :]
    y = z + torch.sin(phase).sum(-1)  # (R, n, 2, m) summed over the m sines -> (R, n, 2)
    return y if noise is None else y + noise


def sample(tasks: SyntheticTasks, n: int, spec: SyntheticSpec,
           generators: Sequence[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw n fresh rows per run: x (R, n, d) ~ N(0, I) and their noisy labels y (R, n, 2).

    Args:
        tasks: the runs' task parameters (from :func:`make_tasks`).
        n: rows per run.
        spec: generator options (d, σ).
        generators: one generator per run, continuing where :func:`make_tasks` left it.

    Returns:
        ``(x, y)``.
    """
    _checks.positive_int(n, "number of rows")
    x = torch.stack([torch.randn(n, spec.d, generator=g) for g in generators])  # (R, n, d)
    eps = torch.stack([torch.randn(n, 2, generator=g) for g in generators])  # (R, n, 2)
    return x, synthetic_labels(x, tasks, spec.sigma * eps)


def generate(correlations: Sequence[float] | torch.Tensor, seeds: Sequence[int],
             sizes: dict[str, int], spec: SyntheticSpec | None = None
             ) -> tuple[SyntheticTasks, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Generate R synthetic datasets at once, one per (correlation, seed) pair.

    Args:
        correlations: (R,) correlation score p of each run.
        seeds: (R,) seed of each run; the same seed gives the same u1, u2, α, β and rows
            (so runs with one seed and different p differ only by p: paired comparisons).
        sizes: rows per split, e.g. ``{"train": 10000, "val": 2000, "test": 2000}``; splits
            are drawn in this order.
        spec: generator options (default :class:`SyntheticSpec`).

    Returns:
        ``(tasks, splits)`` with ``splits[name] = (x (R, n, d), y (R, n, 2))``.

    Example:
        >>> tasks, splits = generate([0.5, 1.0], [0, 1], {"train": 8, "test": 4},
        ...                          SyntheticSpec(d=10))
        >>> splits["train"][0].shape, splits["test"][1].shape
        (torch.Size([2, 8, 10]), torch.Size([2, 4, 2]))
    """
    spec = spec or SyntheticSpec()
    _checks.check(len(seeds) == len(correlations),
                  f"need one seed per run: {len(correlations)} correlations, {len(seeds)} seeds")
    gens = _generators(seeds)
    tasks = make_tasks(correlations, spec, gens)
    splits = {name: sample(tasks, n, spec, gens) for name, n in sizes.items()}
    return tasks, splits


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last axis: a, b (..., n) -> (...)."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / torch.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def label_correlation_study(cosines: Sequence[float], spec: SyntheticSpec | None = None,
                            n: int = 10_000, trials: int = 100, seed: int = 0,
                            chunk: int = 10) -> dict[str, list[float]]:
    """Pearson correlation of the two tasks' labels against cos(w1, w2) (paper Fig. 2).

    For each trial one set of u1, u2, α, β and n rows is drawn and reused for every cosine, so
    each trial's curve is smooth in p; the paper used 10k points and 100 trials.

    Args:
        cosines: the correlation scores p to evaluate.
        spec: generator options.
        n: rows per trial.
        trials: independent trials.
        seed: trial t uses seed ``seed + t``.
        chunk: trials generated together (bounds memory at chunk·n·d floats).

    Returns:
        ``{"cosine": [...], "mean": [...], "std": [...]}`` over the trials.

    Example:
        >>> s = label_correlation_study([0.0, 1.0], SyntheticSpec(d=5), n=500, trials=3)
        >>> round(s["mean"][1], 2)  # cosine 1: equal labels but for the noise
        0.99
    """
    spec = spec or SyntheticSpec()
    _checks.positive_int(n, "n")
    _checks.positive_int(trials, "trials")
    cos = torch.as_tensor(list(cosines), dtype=torch.float64)  # (P,)
    _check_correlations(cos)
    out = []
    for start in range(0, trials, chunk):
        seeds = range(seed + start, seed + min(start + chunk, trials))
        gens = _generators(seeds)
        base = make_tasks([0.0] * len(gens), spec, gens)  # w2 = c·u2 at p = 0
        x = torch.stack([torch.randn(n, spec.d, generator=g) for g in gens])  # (C, n, d)
        eps = torch.stack([torch.randn(n, 2, generator=g) for g in gens]) * spec.sigma
        u1, u2 = base.w[:, 0] / spec.c, base.w[:, 1] / spec.c  # (C, d)
        per_p = []
        for p in cos.tolist():
            w2 = spec.c * (p * u1 + math.sqrt(max(0.0, 1 - p * p)) * u2)
            tasks = SyntheticTasks(torch.stack([base.w[:, 0], w2], 1), base.alpha, base.beta,
                                   torch.full((len(gens),), p))
            y = synthetic_labels(x, tasks, eps)  # (C, n, 2)
            per_p.append(pearson(y[..., 0].double(), y[..., 1].double()))  # (C,)
        out.append(torch.stack(per_p, 1))  # (C, P)
    corr = torch.cat(out)  # (trials, P)
    std = corr.std(0) if trials > 1 else torch.zeros(cos.numel(), dtype=torch.float64)
    return {"cosine": cos.tolist(), "mean": corr.mean(0).tolist(), "std": std.tolist()}
