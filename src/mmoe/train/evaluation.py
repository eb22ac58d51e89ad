"""Running a trained model over a table: logits, per-task predictions and metrics, and the gate
statistics, all from one pass (a validation epoch end needs both).

Under data parallelism each rank runs its shard of the rows; the logits of all ranks are
gathered (every rank gets all N rows back) and the gate sums are added up, so the metrics are
those of the whole table.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from .. import _checks
from ..data.table import TensorTable
from ..diagnostics import GateUsage, expert_names, gate_health, gate_names
from ..metrics import evaluate, task_outputs
from ..models import MultiTaskModel
from .distributed import DistContext, all_reduce_sum, gather_rows, shard, to_device

EVAL_BATCH = 16384


@torch.inference_mode()
def model_pass(model: MultiTaskModel, table: TensorTable, batch_size: int = EVAL_BATCH,
               ctx: DistContext = DistContext(), gates: bool = False
               ) -> tuple[torch.Tensor, GateUsage | None]:
    """Logits (N, O) on the CPU, computed in eval mode in batches on ``ctx.device`` (in one
    process: the model's device), and with
    ``gates`` the gate weights' running sums (``None`` for a model without gates). The
    model's train/eval mode is restored afterwards.

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> model = build_model("mmoe", 3, [TaskSpec("y")], num_experts=2)
        >>> logits, usage = model_pass(model, TensorTable.from_arrays(torch.randn(5, 3)),
        ...                            gates=True)
        >>> logits.shape, usage.rows
        (torch.Size([5, 1]), 5)
    """
    if not ctx.distributed:  # one process: wherever the model is (CPU, a GPU)
        ctx = dataclasses.replace(ctx, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    rows = shard(0, len(table), ctx)
    out, usage = [], GateUsage() if gates else None
    try:
        for i in range(rows.start, rows.stop, batch_size):
            inputs = to_device(table.take(slice(i, min(i + batch_size, rows.stop))).inputs(),
                               ctx)
            if usage is None:
                out.append(model(*inputs))
                continue
            res = model(*inputs, parts=True)
            out.append(res.logits)
            if res.gates is None:
                usage = None  # a model without gates: nothing to sum
            else:
                usage.add(res.gates)
    finally:
        model.train(was_training)
    local = torch.cat(out) if out else torch.zeros(0, model.task_slices[-1].stop)
    logits = gather_rows(local.to(ctx.device), len(table), ctx).cpu()
    if gates and ctx.distributed:
        usage = _all_ranks(usage, ctx)
    return logits, usage


def _all_ranks(usage: GateUsage | None, ctx: DistContext) -> GateUsage | None:
    """The gate sums of every rank added up (a rank with no rows adds zeros)."""
    if usage is None or usage.total is None:
        return None
    usage.total = all_reduce_sum(usage.total.to(ctx.device), ctx).cpu()
    usage.entropy = all_reduce_sum(usage.entropy.to(ctx.device), ctx).cpu()
    rows = torch.tensor([usage.rows], dtype=torch.float64, device=ctx.device)
    usage.rows = int(all_reduce_sum(rows, ctx).item())
    return usage


def predict_logits(model: MultiTaskModel, table: TensorTable, batch_size: int = EVAL_BATCH,
                   ctx: DistContext = DistContext()) -> torch.Tensor:
    """Logits (N, O) on the CPU (see :func:`model_pass`).

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> model = build_model("mmoe", 3, [TaskSpec("y"), TaskSpec("z", "regression")])
        >>> predict_logits(model, TensorTable.from_arrays(torch.randn(5, 3))).shape
        torch.Size([5, 2])
    """
    return model_pass(model, table, batch_size, ctx)[0]


def predict(model: MultiTaskModel, table: TensorTable,
            batch_size: int = EVAL_BATCH) -> dict[str, np.ndarray]:
    """Per-task predictions by task name: binary P(positive) (N,), regression value (N,),
    multiclass P(class) (N, C).

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> model = build_model("mmoe", 3, [TaskSpec("y")])
        >>> predict(model, TensorTable.from_arrays(torch.randn(5, 3)))["y"].shape
        (5,)
    """
    view = model.outputs(predict_logits(model, table, batch_size).numpy())
    return {t.name: task_outputs(t, view.logits[:, s])
            for t, s in zip(view.tasks, view.slices, strict=True)}


def _metrics(model: MultiTaskModel, table: TensorTable,
             logits: torch.Tensor) -> dict[str, dict[str, float]]:
    weights = None if table.weights is None else table.weights.numpy()
    groups = None if table.groups is None else table.groups.numpy()
    view = model.outputs(logits.numpy(), table.labels.numpy())
    return evaluate(view.tasks, view.slices, view.logits, view.labels, weights, groups=groups)


def evaluate_model(model: MultiTaskModel, table: TensorTable,
                   ctx: DistContext = DistContext()) -> dict[str, dict[str, float]]:
    """Per-task metrics of ``model`` on a labelled table.

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> model = build_model("mmoe", 3, [TaskSpec("y", "regression")])
        >>> t = TensorTable.from_arrays(torch.randn(8, 3), torch.randn(8))
        >>> sorted(evaluate_model(model, t)["y"])
        ['mse', 'n', 'r2']
    """
    _checks.check(table.labels is not None, "evaluation needs labels")
    return _metrics(model, table, predict_logits(model, table, ctx=ctx))


def health(model: MultiTaskModel, usage: GateUsage, warn: bool = False) -> dict[str, Any]:
    """:func:`mmoe.diagnostics.gate_health` of ``model``'s gates from their sums over a table
    (:func:`model_pass` with ``gates=True``), with the gates and experts named."""
    utilisation, entropy = usage.result()  # (G, E), (G,)
    tasks = [t.name for t in model.tasks]
    return gate_health(utilisation, entropy, model.backbone.gate_mask,
                       gate_names(tasks, utilisation.shape[0]),
                       expert_names(model.backbone.named_experts(tasks), utilisation.shape[1]),
                       warn)


def validate(model: MultiTaskModel, table: TensorTable, ctx: DistContext = DistContext(),
             warn: bool = False) -> tuple[dict[str, dict[str, float]], dict[str, Any] | None]:
    """Per-task metrics and gate health (:func:`mmoe.diagnostics.gate_health`; ``None`` for
    a model without gates) on a labelled table, from one pass over it.

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> model = build_model("omoe", 3, [TaskSpec("y", "regression"),
        ...                                  TaskSpec("z", "regression")], num_experts=2)
        >>> t = TensorTable.from_arrays(torch.randn(8, 3), torch.randn(8, 2))
        >>> metrics, health = validate(model, t)
        >>> sorted(metrics), sorted(health["utilisation"]["all tasks"])
        (['y', 'z'], ['e0', 'e1'])
    """
    _checks.check(table.labels is not None, "evaluation needs labels")
    logits, usage = model_pass(model, table, ctx=ctx, gates=True)
    return (_metrics(model, table, logits),
            None if usage is None else health(model, usage, warn))


def gate_health_of(model: MultiTaskModel, table: TensorTable, warn: bool = False,
                   batch_size: int = EVAL_BATCH) -> dict[str, Any] | None:
    """Gate health of ``model`` on ``table``'s rows (labels not needed), ``None`` for a model
    without gates.

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> model = build_model("mmoe", 3, [TaskSpec("y"), TaskSpec("z")], num_experts=2)
        >>> health = gate_health_of(model, TensorTable.from_arrays(torch.randn(8, 3)))
        >>> sorted(health["entropy"])
        ['y', 'z']
    """
    _, usage = model_pass(model, table, batch_size, gates=True)
    return None if usage is None else health(model, usage, warn)
