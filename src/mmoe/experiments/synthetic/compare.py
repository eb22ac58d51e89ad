"""Several runs of the synthetic study side by side: each claim's verdict and the interval of
the difference it rests on, per run (e.g. the 16-run default beside the paper's 200 runs).

Usage::

    python -m mmoe.experiments.synthetic.compare [--brief] results/synthetic results/synthetic200
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .claims import intervals_text, settled, verdict


def _label(results: Mapping[str, Any]) -> str:
    cfg = results["config"]
    return (f"{cfg['runs']} runs x {cfg['steps']} steps, "
            f"{cfg.get('lr_schedule', 'constant')}")


def _cell(claim: Mapping[str, Any], intervals: bool) -> str:
    done = settled(claim)
    if done is None:
        return verdict(claim)
    cell = f"{verdict(claim)}, {'settled' if done else 'open'}"
    return f"{cell}: {intervals_text(claim, sep=' ')}" if intervals else cell


def compare(runs: Mapping[str, Mapping[str, Any]], intervals: bool = True) -> str:
    """A Markdown table: one row per claim, one column per run (name -> results.json content).

    A claim is *settled* when every bootstrap interval it rests on excludes 0 (as in the
    report); ``intervals=False`` leaves the intervals out (the verdicts only).

    Example:
        >>> res = {"config": {"runs": 2, "steps": 5, "lr_schedule": "cosine"},
        ...        "speed": {"wall_seconds": 61.0},
        ...        "claims": [{"claim": "a < b", "holds": True, "ci": {"b - a": [0.2, 0.1, 0.3]}}]}
        >>> print(compare({"small": res}))
        | claim | small (2 runs x 5 steps, cosine) |
        |---|---|
        | a < b | holds, settled: b - a +0.2000 [+0.1000, +0.3000] |
        | wall time | 61 s |
        >>> print(compare({"small": res}, intervals=False).splitlines()[2])
        | a < b | holds, settled |
    """
    names = list(runs)
    lines = ["| claim | " + " | ".join(f"{n} ({_label(runs[n])})" for n in names) + " |",
             "|---" * (len(names) + 1) + "|"]
    by_claim: dict[str, dict[str, str]] = {}
    for n in names:
        for claim in runs[n]["claims"]:
            by_claim.setdefault(claim["claim"], {})[n] = _cell(claim, intervals)
    for claim, cells in by_claim.items():
        lines.append(f"| {claim} | " + " | ".join(cells.get(n, "") for n in names) + " |")
    lines.append("| wall time | " + " | ".join(
        f"{runs[n]['speed']['wall_seconds']:.0f} s" for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """Print :func:`compare` of the ``results.json`` in each directory of ``argv`` (named by
    the directory; ``--brief``: verdicts only)."""
    dirs = [a for a in argv if a != "--brief"]
    runs = {Path(d).name: json.loads((Path(d) / "results.json").read_text()) for d in dirs}
    print(compare(runs, intervals="--brief" not in argv))


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
