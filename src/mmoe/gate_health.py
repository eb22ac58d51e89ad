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

import torch
from torch import nn

from .data.table import TensorTable

POLARISED = 0.9  # max mean weight above which a gate is polarised
DEAD = 0.1  # an expert is dead below DEAD / n_g mean weight in every gate that sees it
BATCH = 16384


class GateHealthWarning(UserWarning):
    """A gate polarised or an expert died (see :mod:`mmoe.gate_health`)."""


def gate_names(model: nn.Module, num_gates: int) -> list[str]:
    """One name per gate: the task names (one gate per task) or ``all tasks`` (OMoE)."""
    tasks = [t.name for t in model.tasks]
    return tasks if num_gates == len(tasks) else ["all tasks"] * num_gates


def expert_names(model: nn.Module, num_experts: int) -> list[str]:
    """One name per expert: the backbone's ``expert_names`` if it has them, else ``e0, e1..``."""
    names = getattr(getattr(model, "backbone", model), "expert_names", None)
    return list(names) if names is not None else [f"e{i}" for i in range(num_experts)]


@torch.inference_mode()
def gate_statistics(model: nn.Module, table: TensorTable, batch_size: int = BATCH
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Utilisation and entropy of the model's gates on ``table`` (eval mode, batched).

    Args:
        model: a MultiTaskModel.
        table: the rows (labels are not needed).
        batch_size: rows per forward pass.

    Returns:
        ``(utilisation (G, E), entropy (G,), mask (G, E) bool)``, or ``None`` for a model
        without gates.

    Example:
        >>> util, ent, mask = gate_statistics(model, valid_table)  # doctest: +SKIP
    """
    was_training = model.training
    model.eval()
    total = entropy = None
    try:
        for i in range(0, len(table), batch_size):
            _, gates = model.forward_with_gates(*table.take(slice(i, i + batch_size)).inputs())
            if gates is None:
                return None
            g = gates.double()  # (G, B, E)
            plogp = torch.where(g > 0, g * g.log(), torch.zeros_like(g))
            s, h = g.sum(1), -plogp.sum(-1).sum(1)  # (G, E), (G,)
            total, entropy = (s, h) if total is None else (total + s, entropy + h)
    finally:
        model.train(was_training)
    if total is None:
        return None
    n = len(table)
    mask = getattr(model, "gate_mask", None)
    if mask is None:
        mask = torch.ones(total.shape, dtype=torch.bool)
    return (total / n).float(), (entropy / n).float(), mask.cpu()


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
        >>> msgs[0][:56]
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


def gate_health(model: nn.Module, table: TensorTable, warn: bool = False,
                batch_size: int = BATCH) -> dict[str, Any] | None:
    """Per-task expert utilisation, gate entropy and warnings, as plain JSON data.

    Args:
        model: a MultiTaskModel.
        table: rows to evaluate the gates on (validation data).
        warn: also issue each message as a :class:`GateHealthWarning`.
        batch_size: rows per forward pass.

    Returns:
        ``{"utilisation": {task: {expert: u}}, "entropy": {task: H}, "normalised_entropy":
        {task: H / log n_g}, "warnings": [...]}``, or ``None`` for a model without gates.
        Experts a gate cannot see are left out of its row.

    Example:
        >>> gate_health(model, valid_table)["utilisation"]["income"]  # doctest: +SKIP
        {'e0': 0.31, 'e1': 0.22, ...}
    """
    stats = gate_statistics(model, table, batch_size)
    if stats is None:
        return None
    util, ent, mask = stats
    gates, experts = gate_names(model, util.shape[0]), expert_names(model, util.shape[1])
    messages = gate_warnings(util, mask, gates, experts)
    if warn:
        for message in messages:
            warnings.warn(message, GateHealthWarning, stacklevel=2)
    n = mask.sum(1).tolist()
    return {
        "utilisation": {gates[g]: {experts[e]: float(util[g, e]) for e in range(util.shape[1])
                                   if mask[g, e]} for g in range(util.shape[0])},
        "entropy": {gates[g]: float(ent[g]) for g in range(util.shape[0])},
        "normalised_entropy": {gates[g]: float(ent[g]) / math.log(n[g]) if n[g] > 1 else 0.0
                               for g in range(util.shape[0])},
        "warnings": messages,
    }
