"""Gate health: how much each task's gate uses each expert, and warnings when it goes wrong.

On a table of rows, for gate g (one per task in MMoE/CGC/PLE, one for all tasks in OMoE) and
expert e:

    utilisation u_ge = mean over rows of g(x)_e
    entropy     H_g  = mean over rows of -sum_e g(x)_e log g(x)_e   (nats; 0 = one expert)

Only the experts a gate can see count (CGC/PLE gates are structurally zero elsewhere). Two
failure modes are flagged:

- a **polarised** gate: max_e u_ge > 0.9, the task routes nearly everything to one expert;
- a **dead** expert: u_ge < 1 / (10 n_g) for every gate g that sees it (n_g = the experts g
  sees), no task uses it.

Remedies: ``ModelConfig.gate_dropout`` (Zhao et al. 2019) and ``ModelConfig.gate_balance``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pandas as pd
import torch

POLARISED = 0.9  # max mean weight above which a gate is polarised
DEAD = 0.1  # an expert is dead below DEAD / n_g mean weight in every gate that sees it


class GateHealthWarning(UserWarning):
    """A gate polarised or an expert died (see :mod:`mmoe.diagnostics.gates`)."""


def gate_names(task_names: list[str], num_gates: int) -> list[str]:
    """One name per gate: the task names (one gate per task) or ``all tasks`` (OMoE).

    Example:
        >>> gate_names(["a", "b"], 2), gate_names(["a", "b"], 1)
        (['a', 'b'], ['all tasks'])
    """
    return list(task_names) if num_gates == len(task_names) else ["all tasks"] * num_gates


def expert_names(names: list[str] | None, num_experts: int) -> list[str]:
    """One name per expert: the backbone's own names if it has them, else ``e0, e1, ...``.

    Example:
        >>> expert_names(None, 3)
        ['e0', 'e1', 'e2']
    """
    return list(names) if names is not None else [f"e{i}" for i in range(num_experts)]


class GateUsage:
    """Running sums of gate weights over the batches of a table, for utilisation and entropy.

    ``add`` each batch's gates (G, B, E); :meth:`result` divides by the rows seen. Sums are
    float64, so the batch size does not change the result beyond rounding.

    Example:
        >>> usage = GateUsage()
        >>> usage.add(torch.tensor([[[1.0, 0.0], [0.5, 0.5]]]))
        >>> util, entropy = usage.result()
        >>> util.tolist(), round(float(entropy[0]), 4)
        ([[0.75, 0.25]], 0.3466)
    """

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None  # (G, E) sum over rows of g(x)_e
        self.entropy: torch.Tensor | None = None  # (G,) sum over rows of H(g(x))
        self.rows = 0

    def add(self, gates: torch.Tensor) -> None:
        """Add a batch's gate weights (G, B, E)."""
        g = gates.double()
        plogp = torch.where(g > 0, g * g.log(), torch.zeros_like(g))
        s, h = g.sum(1), -plogp.sum(-1).sum(1)  # (G, E), (G,)
        self.total, self.entropy = ((s, h) if self.total is None
                                    else (self.total + s, self.entropy + h))
        self.rows += gates.shape[1]

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(utilisation (G, E), entropy (G,))``, the means over the rows seen."""
        return (self.total / self.rows).float(), (self.entropy / self.rows).float()


def gate_warnings(utilisation: torch.Tensor, mask: torch.Tensor | None, gates: list[str],
                  experts: list[str], polarised: float = POLARISED, dead: float = DEAD
                  ) -> list[str]:
    """Messages for polarised gates and dead experts (see the module docstring).

    Args:
        utilisation: (G, E) mean gate weight per gate and expert.
        mask: (G, E) bool, the experts each gate can see (``None``: all).
        gates: a name per gate (task names).
        experts: a name per expert.
        polarised: threshold on a gate's largest mean weight.
        dead: an expert is dead below ``dead / n_g`` in every gate that sees it.

    Returns:
        The messages, each naming the task and the expert.

    Example:
        >>> msgs = gate_warnings(torch.tensor([[0.95, 0.05]]), None, ["income"], ["e0", "e1"])
        >>> msgs[0].split(" of its")[0]
        "gate of task 'income' is polarised: expert 'e0' gets 0.95"
    """
    mask = torch.ones_like(utilisation, dtype=torch.bool) if mask is None else mask.bool()
    u = utilisation.masked_fill(~mask, float("nan"))
    n = mask.sum(1)  # (G,) experts each gate sees
    out = []
    for g in range(u.shape[0]):
        if n[g] < 2:
            continue
        top = int(torch.nan_to_num(u[g], nan=-1.0).argmax())
        if float(u[g, top]) > polarised:
            out.append(f"gate of task '{gates[g]}' is polarised: expert '{experts[top]}' gets "
                       f"{float(u[g, top]):.2f} of its weight on average (> {polarised}); try "
                       "gate_dropout or gate_balance")
    limit = dead / n.clamp_min(1).to(u.dtype)  # (G,) 1 / (10 n_g)
    below = (utilisation < limit[:, None]) | ~mask  # (G, E)
    for e in range(u.shape[1]):
        seen = mask[:, e]
        if bool(seen.any()) and bool(below[:, e].all()) and int(n[seen].max()) > 1:
            best = float(torch.nan_to_num(u[:, e], nan=0.0).max())
            out.append(f"expert '{experts[e]}' is dead: its largest mean gate weight over the "
                       f"tasks is {best:.4f} (< 1/(10 E)); try gate_dropout or gate_balance")
    return out


def warn_gates(messages: list[str], already: set[str] | None = None) -> None:
    """Issue each of :func:`gate_warnings`' messages as a :class:`GateHealthWarning`; with
    ``already``, only the problems not in it (a problem is a message's text before the
    colon, e.g. "expert 'e3' is dead", without the numbers that change), which join it.

    Example:
        >>> seen = set()
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_gates(["expert 'e3' is dead: 0.01"], seen)
        ...     warn_gates(["expert 'e3' is dead: 0.02"], seen)
        >>> len(caught), seen
        (1, {"expert 'e3' is dead"})
    """
    for message in messages:
        problem = message.split(":")[0]
        if already is None or problem not in already:
            if already is not None:
                already.add(problem)
            warnings.warn(message, GateHealthWarning, stacklevel=3)


def gate_health(utilisation: torch.Tensor, entropy: torch.Tensor, mask: torch.Tensor | None,
                gates: list[str], experts: list[str], warn: bool = False) -> dict[str, Any]:
    """Per-task expert utilisation, gate entropy and warnings, as plain JSON data.

    Args:
        utilisation: (G, E) mean gate weight per gate and expert.
        entropy: (G,) mean entropy of each gate (nats).
        mask: (G, E) bool, the experts each gate can see (``None``: all).
        gates: a name per gate (:func:`gate_names`).
        experts: a name per expert (:func:`expert_names`).
        warn: also issue each message as a :class:`GateHealthWarning`.

    Returns:
        ``{"utilisation": {task: {expert: u}}, "entropy": {task: H}, "normalised_entropy":
        {task: H / log n_g}, "warnings": [...], "experts": [...]}``. Experts a gate cannot see
        are left out of its row; ``experts`` lists them all, in order.

    Example:
        >>> h = gate_health(torch.tensor([[0.5, 0.5]]), torch.tensor([0.69]), None, ["y"],
        ...                 ["e0", "e1"])
        >>> h["utilisation"], h["warnings"]
        ({'y': {'e0': 0.5, 'e1': 0.5}}, [])
    """
    mask = torch.ones(utilisation.shape, dtype=torch.bool) if mask is None else mask.cpu()
    messages = gate_warnings(utilisation, mask, gates, experts)
    if warn:
        warn_gates(messages)
    n = mask.sum(1).tolist()
    rows = range(utilisation.shape[0])
    return {
        "utilisation": {gates[g]: {experts[e]: float(utilisation[g, e])
                                   for e in range(utilisation.shape[1]) if mask[g, e]}
                        for g in rows},
        "entropy": {gates[g]: float(entropy[g]) for g in rows},
        "normalised_entropy": {gates[g]: float(entropy[g]) / math.log(n[g]) if n[g] > 1 else 0.0
                               for g in rows},
        "warnings": messages,
        "experts": list(experts),
    }


def utilisation_frame(health: dict[str, Any]) -> pd.DataFrame:
    """:func:`gate_health`'s utilisation as a table: a row per gate, a column per expert, NaN
    where a gate cannot see an expert.

    Example:
        >>> utilisation_frame({"utilisation": {"y": {"e0": 0.25, "e1": 0.75}}})
              e0    e1
        y  0.25  0.75
    """
    frame = pd.DataFrame.from_dict(health["utilisation"], orient="index")
    return frame.reindex(columns=health.get("experts", frame.columns))
