"""The study's numbers and the paper's claims checked against them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from .config import SyntheticConfig

STUCK_FACTOR = 3.0  # a run is "stuck" when its final loss exceeds 3x the pooled median at p


def summarise(runs: list[dict[str, Any]], config: SyntheticConfig) -> list[dict[str, Any]]:
    """Mean/std/median/min of the final loss per (model, correlation), and stuck runs.

    A run counts as stuck when its final loss is above ``STUCK_FACTOR`` x the median final
    loss of all models' runs at its correlation (a dead tower ends near half the label
    variance, ~1, against a typical ~0.03-0.05); ``final_loss_mean_unstuck`` is the mean
    without them (informative: the paper's means include its stuck runs).
    """
    rows = []
    for model in config.models:
        for p in config.correlations:
            v = torch.tensor([r["final_loss"] for r in runs
                              if r["model"] == model and r["correlation"] == p],
                             dtype=torch.float64)
            pooled = torch.tensor([r["final_loss"] for r in runs if r["correlation"] == p],
                                  dtype=torch.float64).median()
            ok = v[v <= STUCK_FACTOR * pooled]
            rows.append({"model": model, "correlation": p,
                         "stuck_runs": int((v > STUCK_FACTOR * pooled).sum()),
                         "stuck_threshold": float(STUCK_FACTOR * pooled),
                         "final_loss_mean_unstuck": float(ok.mean()) if ok.numel() else math.nan,
                         "final_loss_max": float(v.max()),
                         "final_loss_mean": float(v.mean()),
                         "final_loss_std": float(v.std()) if v.numel() > 1 else 0.0,
                         "final_loss_median": float(v.median()),
                         "final_loss_min": float(v.min()),
                         "runs": int(v.numel()),
                         "lr": next(r["lr"] for r in runs if r["model"] == model)})
    return rows


@dataclass
class _Claim:
    claim: str
    holds: bool | None
    evidence: str
    ci: dict[str, list[float]] | None = None  # difference -> [estimate, 2.5%, 97.5%]


def _paired_losses(runs: list[dict[str, Any]]) -> dict[tuple[str, float], np.ndarray]:
    """Each (model, correlation)'s final losses over the seeds every model ran at that
    correlation, in seed order (runs are paired: the same seed, the same data)."""
    by: dict[tuple[str, float], dict[int, float]] = {}
    for r in runs:
        by.setdefault((r["model"], r["correlation"]), {})[r["seed"]] = r["final_loss"]
    seeds = {p: sorted(set.intersection(*(set(v) for (m, q), v in by.items() if q == p)))
             for p in {p for _, p in by}}
    return {(m, p): np.asarray([v[s] for s in seeds[p]]) for (m, p), v in by.items()}


def bootstrap(runs: list[dict[str, Any]], statistic: Any, reps: int = 2000,
              seed: int = 0) -> list[float]:
    """``[estimate, 2.5%, 97.5%]`` of ``statistic(losses)`` (``losses``: (model, p) -> final
    losses over the paired seeds) by the percentile bootstrap: seeds are drawn with
    replacement, the same draw for every model and, when the correlations share their seeds
    (paired runs), for every correlation.

    Example:
        >>> runs = [{"model": m, "correlation": 0.5, "seed": s, "final_loss": v + s % 2}
        ...         for s in range(20) for m, v in (("a", 0.0), ("b", 1.0))]
        >>> [round(v, 9) for v in bootstrap(runs, lambda L: L[("b", 0.5)].mean()
        ...                                                  - L[("a", 0.5)].mean())]
        [1.0, 1.0, 1.0]
    """
    losses = _paired_losses(runs)
    sizes = {p: len(v) for (_, p), v in losses.items()}
    rng = np.random.default_rng(seed)
    shared = len(set(sizes.values())) == 1
    draws = []
    for _ in range(reps):
        common = rng.integers(0, next(iter(sizes.values())), next(iter(sizes.values())))
        pick = {p: common if shared else rng.integers(0, n, n) for p, n in sizes.items()}
        draws.append(statistic({k: v[pick[k[1]]] for k, v in losses.items()}))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return [float(statistic(losses)), float(lo), float(hi)]


def check_claims(summary: list[dict[str, Any]], runs: list[dict[str, Any]] | None = None
                 ) -> list[dict[str, Any]]:
    """The paper's claims that the study checks (the required ones and a few more), against
    the measured summary; with the ``runs``, each required claim also gets the bootstrap 95%
    confidence interval of each difference it rests on (``ci``: positive = the claimed
    direction; a claim is settled when every interval excludes 0).

    ``holds`` is ``None`` where the models or correlations needed were not run.
    """
    mean = {(r["model"], r["correlation"]): r["final_loss_mean"] for r in summary}
    std = {(r["model"], r["correlation"]): r["final_loss_std"] for r in summary}
    models = sorted({m for m, _ in mean})
    corrs = sorted({p for _, p in mean})
    claims: list[_Claim] = []

    def have(*keys: tuple[str, float]) -> bool:
        return all(k in mean for k in keys)

    for p in (0.5, 0.9):
        keys = [("mmoe", p), ("omoe", p), ("shared_bottom", p)]
        text = f"at p = {p}: mean final loss MMoE < OMoE < Shared-Bottom"
        if have(*keys):
            a, b, c = (mean[k] for k in keys)
            claims.append(_Claim(text, a < b < c,
                                 f"MMoE {a:.4f}, OMoE {b:.4f}, Shared-Bottom {c:.4f}"))
        else:
            claims.append(_Claim(text, None, "not run"))
    for m in ("shared_bottom", "omoe", "mmoe"):
        text = f"{m}: loss at p = 1.0 no higher than at p = 0.5"
        if have((m, 1.0), (m, 0.5)):
            hi, lo = mean[(m, 1.0)], mean[(m, 0.5)]
            claims.append(_Claim(text, hi <= lo, f"p=1.0: {hi:.4f}, p=0.5: {lo:.4f}"))
        else:
            claims.append(_Claim(text, None, "not run"))

    def spread(m: str) -> float:
        v = [mean[(m, p)] for p in corrs]
        return max(v) - min(v)

    text = "MMoE's spread (max - min of the mean loss) across correlations < Shared-Bottom's"
    if "mmoe" in models and "shared_bottom" in models and len(corrs) > 1:
        a, b = spread("mmoe"), spread("shared_bottom")
        claims.append(_Claim(text, a < b, f"MMoE {a:.4f}, Shared-Bottom {b:.4f} "
                             f"(over p = {', '.join(map(str, corrs))})"))
    else:
        claims.append(_Claim(text, None, "not run"))
    text = "at p = 0.5: Shared-Bottom's run-to-run std > MMoE's"
    if have(("shared_bottom", 0.5), ("mmoe", 0.5)):
        a, b = std[("shared_bottom", 0.5)], std[("mmoe", 0.5)]
        claims.append(_Claim(text, a > b, f"Shared-Bottom {a:.4f}, MMoE {b:.4f}"))
    else:
        claims.append(_Claim(text, None, "not run"))
    # the same orderings on the median (robust to the few stuck runs; informative only)
    med = {(r["model"], r["correlation"]): r.get("final_loss_median") for r in summary}
    for p in (0.5, 0.9):
        keys = [("mmoe", p), ("omoe", p), ("shared_bottom", p)]
        if have(*keys) and all(med[k] is not None for k in keys):
            a, b, c = (med[k] for k in keys)
            claims.append(_Claim(f"(median, informative) at p = {p}: MMoE < OMoE < "
                                 "Shared-Bottom", a < b < c,
                                 f"MMoE {a:.4f}, OMoE {b:.4f}, Shared-Bottom {c:.4f}"))
    # the paper's further claims (reported, not required of the default run)
    text = "(paper) both MoE models beat Shared-Bottom at every correlation"
    if all(have(("mmoe", p), ("omoe", p), ("shared_bottom", p)) for p in corrs):
        ok = all(max(mean[("mmoe", p)], mean[("omoe", p)]) < mean[("shared_bottom", p)]
                 for p in corrs)
        claims.append(_Claim(text, ok, "; ".join(
            f"p={p}: MMoE {mean[('mmoe', p)]:.4f}, OMoE {mean[('omoe', p)]:.4f}, "
            f"SB {mean[('shared_bottom', p)]:.4f}" for p in corrs)))
    text = "(paper) OMoE's spread across correlations > MMoE's"
    if "mmoe" in models and "omoe" in models and len(corrs) > 1:
        a, b = spread("omoe"), spread("mmoe")
        claims.append(_Claim(text, a > b, f"OMoE {a:.4f}, MMoE {b:.4f}"))
    if runs:
        for c in claims:
            c.ci = _intervals(c.claim, runs, corrs)
    return [asdict(c) for c in claims]


def _spread(losses: dict[tuple[str, float], np.ndarray], model: str,
            corrs: list[float]) -> float:
    means = [losses[(model, p)].mean() for p in corrs]
    return max(means) - min(means)


def _intervals(claim: str, runs: list[dict[str, Any]], corrs: list[float]
               ) -> dict[str, list[float]] | None:
    """The differences a required claim rests on, each with its bootstrap interval."""
    def gap(a: tuple[str, float], b: tuple[str, float]) -> Any:
        return lambda L: float(L[a].mean() - L[b].mean())

    diffs: dict[str, Any] = {}
    for p in (0.5, 0.9):
        if claim == f"at p = {p}: mean final loss MMoE < OMoE < Shared-Bottom":
            diffs = {"OMoE - MMoE": gap(("omoe", p), ("mmoe", p)),
                     "Shared-Bottom - OMoE": gap(("shared_bottom", p), ("omoe", p))}
    for m in ("shared_bottom", "omoe", "mmoe"):
        if claim == f"{m}: loss at p = 1.0 no higher than at p = 0.5":
            diffs = {"loss(p=0.5) - loss(p=1.0)": gap((m, 0.5), (m, 1.0))}
    if claim.startswith("MMoE's spread"):
        diffs = {"spread(Shared-Bottom) - spread(MMoE)":
                 lambda L: _spread(L, "shared_bottom", corrs) - _spread(L, "mmoe", corrs)}
    if claim == "at p = 0.5: Shared-Bottom's run-to-run std > MMoE's":
        diffs = {"std(Shared-Bottom) - std(MMoE)":
                 lambda L: float(L[("shared_bottom", 0.5)].std(ddof=1)
                                 - L[("mmoe", 0.5)].std(ddof=1))}
    try:
        return {name: bootstrap(runs, f) for name, f in diffs.items()} or None
    except (KeyError, ValueError):  # a model or correlation not run
        return None


def verdict(claim: dict[str, Any]) -> str:
    """A checked claim's verdict in words (``holds`` None: the models needed were not run)."""
    return {True: "holds", False: "**does not hold**", None: "not checked"}[claim["holds"]]


def settled(claim: dict[str, Any]) -> bool | None:
    """Whether every bootstrap interval a claim rests on excludes 0 (``None``: no intervals).

    Example:
        >>> settled({"ci": {"a - b": [0.2, 0.1, 0.3], "b - c": [0.1, -0.1, 0.2]}})
        False
    """
    ci = claim.get("ci")
    return None if not ci else all(lo > 0 or hi < 0 for _, lo, hi in ci.values())


def intervals_text(claim: dict[str, Any], sep: str = ": ") -> str:
    """A claim's differences with their intervals, e.g. ``a - b: +0.2000 [+0.1000, +0.3000]``.

    Example:
        >>> intervals_text({"ci": {"a - b": [0.2, 0.1, 0.3]}})
        'a - b: +0.2000 [+0.1000, +0.3000]'
    """
    return "; ".join(f"{name}{sep}{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]"
                     for name, (mean, lo, hi) in (claim.get("ci") or {}).items())
