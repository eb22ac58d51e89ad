"""The optimizers of a training run: Adam with a lean step for small models, where a step's
bookkeeping costs more than its arithmetic, and row-sparse updates of the lookup tables."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import optimizer as _optimizer


class LeanAdam(torch.optim.Adam):
    """``torch.optim.Adam(fused=True)`` whose steps, once every parameter has its state,
    call the fused kernel directly on lists gathered once (torch's ``step`` regroups the
    parameters, states and hyperparameters on every call) outside torch's per-call profiling
    scope, and whose ``zero_grad`` is a plain loop: what a small model's step spends on
    bookkeeping (measured by benchmarks/optimizer_step.py; docs/benchmarks/).

    The update is torch's own kernel with the same arguments, so the parameters follow
    exactly the trajectory of ``torch.optim.Adam(fused=True)`` (tested bit for bit), and
    ``state_dict`` / ``load_state_dict`` are torch's: checkpoints move freely between the two.
    Torch's step runs instead for a step with a closure, registered step hooks, a parameter
    without gradient (torch skips it), a parameter without state yet, or options the direct
    call does not cover (amsgrad, maximize, capturable, differentiable, a tensor lr).

    Args:
        params: parameters or parameter groups, as for ``torch.optim.Adam``.
        **options: ``lr``, ``betas``, ``eps``, ``weight_decay``, ...; ``fused`` is always on.
    """

    def __init__(self, params: Iterable[Any], **options: Any):
        super().__init__(params, **{**options, "fused": True})
        self._plan: list[tuple[dict[str, Any], list[torch.Tensor], list[torch.Tensor],
                               list[torch.Tensor], list[torch.Tensor]]] | None = None
        self.register_load_state_dict_post_hook(LeanAdam._forget_plan)

    def schedule(self, config: Any, factor: float) -> None:
        """Set every group's learning rate for the coming step: ``factor`` x the TrainConfig
        ``config``'s ``lr`` (see :meth:`MixedOptimizer.schedule`)."""
        for group in self.param_groups:
            group["lr"] = config.lr * factor

    def extend(self, params: list[torch.nn.Parameter]) -> None:
        """Append ``params`` to the first group, as if they had been given last at
        construction (before any step): the layout :func:`optimizer_for` gives them."""
        self.param_groups[0]["params"].extend(params)
        self._plan = None  # gathered again at the next step

    @staticmethod
    def _forget_plan(opt: LeanAdam) -> None:
        opt._plan = None  # the loaded state holds new tensors

    def _make_plan(self) -> None:
        """Per group: (group, params, exp_avgs, exp_avg_sqs, steps), or None if any group
        or parameter needs torch's step."""
        plan = []
        for group in self.param_groups:
            params = group["params"]
            if (group["amsgrad"] or group["maximize"] or group["capturable"]
                    or group["differentiable"] or group.get("decoupled_weight_decay")
                    or isinstance(group["lr"], torch.Tensor)
                    or not all(p in self.state and "step" in self.state[p] for p in params)):
                self._plan = None
                return
            states = [self.state[p] for p in params]
            plan.append((group, params, [s["exp_avg"] for s in states],
                         [s["exp_avg_sq"] for s in states], [s["step"] for s in states]))
        self._plan = plan

    def _hooked(self) -> bool:
        return bool(self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks
                    or _optimizer._global_optimizer_pre_hooks
                    or _optimizer._global_optimizer_post_hooks)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (torch's loop, without its profiling scope: a tenth of a census
        MMoE step); ``set_to_none=False`` zeroes them in place, as torch does."""
        if not set_to_none:
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
        return None

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        plan = self._plan
        if (closure is not None or plan is None or self._hooked()
                or any(p.grad is None for _, params, *_ in plan for p in params)):
            loss = self._torch_step(closure)
            self._make_plan()
            return loss
        for group, params, exp_avgs, exp_avg_sqs, steps in plan:
            if not params:
                continue
            beta1, beta2 = group["betas"]
            torch._foreach_add_(steps, 1)  # as torch's fused Adam: then one fused update
            torch._fused_adam_(params, [p.grad for p in params], exp_avgs, exp_avg_sqs, [],
                               steps, amsgrad=False, lr=group["lr"], beta1=beta1,
                               beta2=beta2, weight_decay=group["weight_decay"],
                               eps=group["eps"], maximize=False)
        return None

    # torch's Optimizer wraps a class's step in a profiling scope that also runs the step
    # hooks; on the census MMoE the scope alone cost 7% of a training step. The direct call
    # goes without it (it runs only when no hook is registered); torch's step keeps it.
    step.hooked = True  # type: ignore[attr-defined]

    def _torch_step(self, closure: Callable[[], float] | None) -> float | None:
        """``torch.optim.Adam.step`` with its profiling scope and hooks."""
        adam_step = torch.optim.Adam.step
        if getattr(adam_step, "hooked", False):  # already wrapped by torch
            adam_step = adam_step.__wrapped__
        return torch.optim.Optimizer.profile_hook_step(adam_step)(self, closure)


class _RowwiseStep:
    """The step of the tables' optimizers: the closure (if any), then ``_update(group, p)``
    for each parameter with a gradient, which must be sparse (a lookup table's)."""

    param_groups: list[dict[str, Any]]

    def _update(self, group: dict[str, Any], p: torch.Tensor) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    _checks_sparse(p.grad, type(self).__name__)
                    self._update(group, p)
        return loss


class RowAdam(_RowwiseStep, torch.optim.SparseAdam):
    """``torch.optim.SparseAdam`` (lazy Adam: a step updates only the rows the gradient
    holds, with those rows' moments) with the same state and the same arithmetic, bit for
    bit, gathered and scattered by row index (``index_select`` / ``index_add_``) instead of
    torch's sparse masks and sparse additions: a third of the step's time on two id tables.

    Example:
        >>> table = torch.nn.Parameter(torch.zeros(5, 2))
        >>> opt = RowAdam([table], lr=0.1)
        >>> table.grad = torch.sparse_coo_tensor([[1, 1, 3]], torch.ones(3, 2), (5, 2),
        ...                                      check_invariants=True)
        >>> opt.step()
        >>> [round(v, 6) for v in table[:, 0].tolist()]  # rows 1 and 3 moved by lr, others not
        [0.0, -0.1, 0.0, -0.1, 0.0]
    """

    def _update(self, group: dict[str, Any], p: torch.Tensor) -> None:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        _row_adam(p, -p.grad if group["maximize"] else p.grad, state["exp_avg"],
                  state["exp_avg_sq"], state["step"], group["lr"], beta1, beta2, group["eps"])

    def schedule(self, config: Any, factor: float) -> None:
        """The tables' rate for the coming step: ``factor`` x ``table_lr_scale`` x ``lr``
        of the TrainConfig ``config``."""
        for group in self.param_groups:
            group["lr"] = config.table_lr_scale * config.lr * factor

    @staticmethod
    def state_floats(rows: int, dim: int) -> int:
        """Floats of state a (rows, dim) table keeps: the two moments of every cell."""
        return 2 * rows * dim


def _checks_sparse(grad: torch.Tensor, name: str) -> None:
    if not grad.is_sparse:
        raise RuntimeError(f"{name} takes sparse gradients only (the lookup tables')")


def _row_adam(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor,
              exp_avg_sq: torch.Tensor, step: int, lr: float, beta1: float, beta2: float,
              eps: float) -> None:
    """torch's ``sparse_adam`` update of one table, row by row (the same operations on the
    same values: m += (g - m)(1 - b1), v += (g² - v)(1 - b2), p -= step_size m / (sqrt(v) +
    eps) on the rows the coalesced gradient holds)."""
    grad = grad.coalesce()  # the update is non-linear: each row once
    rows, values = grad._indices()[0], grad._values()
    if values.numel() == 0:
        return
    old_m = exp_avg.index_select(0, rows)
    new_m = values.sub(old_m).mul_(1 - beta1)
    exp_avg.index_add_(0, rows, new_m)
    old_v = exp_avg_sq.index_select(0, rows)
    new_v = values.pow(2).sub_(old_v).mul_(1 - beta2)
    exp_avg_sq.index_add_(0, rows, new_v)
    numer = new_m.add_(old_m)
    denom = new_v.add_(old_v).sqrt_().add_(eps)
    step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
    param.index_add_(0, rows, -step_size * numer.div_(denom))


#: row-wise Adagrad's starting accumulator, in units of a training row's squared gradient: a
#: row's first steps are SGD steps at lr / sqrt(10) per training row, and Adagrad's
#: normalisation takes over once its gradients' squares add up to about this much
ADAGRAD_INIT = 10.0


class RowAdagrad(_RowwiseStep, torch.optim.Optimizer):
    """Row-wise Adagrad for lookup tables with sparse gradients (TorchRec's default for
    embeddings), with a starting accumulator: one accumulator per table row, and a step
    touches only the rows the gradient holds. With G_r the row's gradient summed over the
    batch's rows (``rows`` x the gradient of the batch's mean loss, ``rows`` set with the
    learning rate at each step):

        a_r <- a_r + mean_d G_rd^2,  a_r starting at ``initial_accumulator``
        w_r <- w_r - lr G_r / sqrt(a_r)

    A rare row, seen a few times, takes steps in proportion to its gradient (SGD at
    lr / sqrt(initial_accumulator) per training row), where Adam's per-cell normalisation
    gives it full-size steps in the sign of a gradient that is mostly noise; a row whose
    gradients add up (a popular item, a large regression error) is slowed, so no row's step
    grows without bound. The state is one float per row.

    Example:
        >>> table = torch.nn.Parameter(torch.zeros(5, 2))
        >>> opt = RowAdagrad([table], lr=1.0, initial_accumulator=3.0)
        >>> table.grad = torch.sparse_coo_tensor([[1, 3]], torch.ones(2, 2), (5, 2),
        ...                                      check_invariants=True)
        >>> opt.step()  # rows 1 and 3: -1 / sqrt(3 + 1); the others stay
        >>> table[:, 0].tolist()
        [0.0, -0.5, 0.0, -0.5, 0.0]
    """

    def __init__(self, params: Iterable[Any], lr: float = 1.0,
                 initial_accumulator: float = ADAGRAD_INIT):
        super().__init__(params, {"lr": lr, "rows": 1, "weight_decay": 0.0,
                                  "initial_accumulator": initial_accumulator})

    def _update(self, group: dict[str, Any], p: torch.Tensor) -> None:
        state = self.state[p]
        if not state:
            state["sum"] = torch.full(p.shape[:1], float(group["initial_accumulator"]),
                                      dtype=p.dtype, device=p.device)
        grad = p.grad.coalesce()  # each row once
        rows, values = grad._indices()[0], grad._values() * group["rows"]  # G_r
        if values.numel() == 0:
            return
        total = state["sum"].index_select(0, rows).add_(
            values.pow(2).flatten(1).mean(1))  # a_r
        state["sum"].index_copy_(0, rows, total)
        step = values.div_(total.sqrt_().view(-1, *[1] * (values.dim() - 1)))
        p.index_add_(0, rows, step, alpha=-group["lr"])

    def schedule(self, config: Any, factor: float) -> None:
        """The tables' rate for the coming step, ``factor`` x ``table_lr`` of the TrainConfig
        ``config``, whose ``batch_size`` rows the gradients are summed over."""
        for group in self.param_groups:
            group["lr"], group["rows"] = config.table_lr * factor, config.batch_size

    @staticmethod
    def state_floats(rows: int, dim: int) -> int:
        """Floats of state a (rows, dim) table keeps: one per row."""
        return rows


#: the tables' optimizers by ``TrainConfig.table_optimizer``
TABLE_OPTIMIZERS: dict[str, type[RowAdam | RowAdagrad]] = {"adagrad": RowAdagrad,
                                                           "adam": RowAdam}


class MixedOptimizer:
    """Adam for the dense parameters (:class:`LeanAdam`) and, for the embedding tables with
    sparse gradients, a sparse optimizer that updates only the rows the batch used (so its
    cost follows the batch, not the table), behind one optimizer's interface
    (``param_groups``, ``zero_grad``, ``step``, ``state_dict``, ``load_state_dict``).

    The tables' optimizer (``TrainConfig.table_optimizer``): ``"adagrad"``, row-wise Adagrad
    (:class:`RowAdagrad`: one accumulator per row), or ``"adam"``, lazy Adam
    (:class:`RowAdam`, torch's ``SparseAdam``: the rows used, with those rows' moments).

    The state dict is torch's layout over all parameters (dense groups first, then the
    tables' group, marked ``"sparse": True``; lazy Adam's state in Adam's layout), so
    checkpoints are checked and loaded like a plain Adam's. The tables take no weight decay.

    Args:
        dense: the parameters with dense gradients.
        sparse: the tables.
        lr: the learning rate of the dense parameters.
        weight_decay: the dense parameters' weight decay.
        table_optimizer: ``"adagrad"`` or ``"adam"``.
        table_lr: the tables' learning rate (the schedule sets it at each step:
            :meth:`schedule`).

    Example:
        >>> table = torch.nn.Parameter(torch.randn(100, 4))
        >>> dense = torch.nn.Parameter(torch.randn(4, 1))
        >>> opt = MixedOptimizer([dense], [table], lr=0.1)
        >>> rows = torch.tensor([[3, 7]])
        >>> loss = (torch.nn.functional.embedding_bag(rows, table, sparse=True) @ dense).sum()
        >>> loss.backward()
        >>> before = table.detach().clone()
        >>> opt.step()
        >>> sorted((table != before).any(1).nonzero().flatten().tolist())  # only the rows used
        [3, 7]
    """

    def __init__(self, dense: list[torch.nn.Parameter], sparse: list[torch.nn.Parameter],
                 lr: float = 1e-3, weight_decay: float = 0.0, table_optimizer: str = "adagrad",
                 table_lr: float = 1e-3):
        self.dense = LeanAdam(dense, lr=lr, weight_decay=weight_decay)
        if table_optimizer not in TABLE_OPTIMIZERS:
            raise ValueError(f"table_optimizer must be one of {', '.join(TABLE_OPTIMIZERS)}, "
                             f"got {table_optimizer!r}")
        self.sparse = TABLE_OPTIMIZERS[table_optimizer](sparse, lr=table_lr)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The dense groups, then the tables' group."""
        return self.dense.param_groups + self.sparse.param_groups

    def schedule(self, config: Any, factor: float) -> None:
        """Set the learning rates of the coming step, ``factor`` x the TrainConfig
        ``config``'s rate of each group (its ``batch_size`` resolved): ``lr`` for the dense
        parameters; for the tables ``table_lr`` (Adagrad, whose gradients are summed over the
        ``batch_size`` rows) or ``table_lr_scale`` x ``lr`` (Adam)."""
        self.dense.schedule(config, factor)
        self.sparse.schedule(config, factor)

    def extend(self, params: list[torch.nn.Parameter]) -> None:
        """Append dense ``params`` (a loss weighting's learnt weights) to the first dense
        group, as :func:`optimizer_for` places them (see :meth:`LeanAdam.extend`)."""
        self.dense.extend(params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every gradient."""
        self.dense.zero_grad(set_to_none)
        self.sparse.zero_grad(set_to_none)

    def step(self) -> None:
        """One Adam step of the dense parameters and one step of the rows the tables'
        gradients hold."""
        self.dense.step()
        self.sparse.step()

    def state_dict(self) -> dict[str, Any]:
        """Torch's layout over all parameters (lazy Adam's step counts as float tensors,
        like Adam's; Adagrad's sum per row as it is)."""
        dense, sparse = self.dense.state_dict(), self.sparse.state_dict()
        n = sum(len(g["params"]) for g in dense["param_groups"])
        state = dict(dense["state"])
        for i, st in sparse["state"].items():  # lazy Adam's step count as Adam's tensor
            state[n + i] = st if "step" not in st else {
                **st, "step": torch.tensor(float(st["step"]))}
        groups = dense["param_groups"] + [
            {**g, "params": [n + i for i in g["params"]], "weight_decay": 0.0, "sparse": True}
            for g in sparse["param_groups"]]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        k = len(self.dense.param_groups)
        groups = state_dict["param_groups"]
        n = sum(len(g["params"]) for g in groups[:k])
        self.dense.load_state_dict({
            "state": {i: st for i, st in state_dict["state"].items() if i < n},
            "param_groups": groups[:k]})
        # the tables' own hyperparameters (not the layout's "sparse", nor a weight decay the
        # optimizer does not have)
        sparse_groups = [{key: v for key, v in g.items() if key in self.sparse.defaults}
                         | {"params": [i - n for i in g["params"]]} for g in groups[k:]]
        self.sparse.load_state_dict({
            "state": {i - n: st if "step" not in st else {**st, "step": int(st["step"])}
                      for i, st in state_dict["state"].items() if i >= n},
            "param_groups": sparse_groups})


def optimizer_for(model: torch.nn.Module, weighting: torch.nn.Module,
                  config: Any) -> LeanAdam | MixedOptimizer:
    """The optimizer of a training run: torch's fused Adam over every parameter of the
    ``model`` and the loss ``weighting`` (:class:`LeanAdam`), or, when the model has lookup
    tables (``model.sparse_parameters()``), :class:`MixedOptimizer` with row-wise Adagrad or
    lazy Adam for them.

    Args:
        model: a MultiTaskModel.
        weighting: the loss weighting (its learnt weights train too).
        config: the TrainConfig (``lr``, ``weight_decay``, ``table_optimizer``, ``table_lr``,
            ``table_lr_scale``).

    Returns:
        The optimizer.

    Example:
        >>> from mmoe import TaskSpec, TrainConfig, build_model
        >>> model = build_model("mmoe", 3, [TaskSpec("y")])
        >>> type(optimizer_for(model, torch.nn.Module(), TrainConfig())).__name__
        'LeanAdam'
    """
    params = [*model.parameters(), *weighting.parameters()]
    tables = model.sparse_parameters()
    if not tables:  # one fused kernel for all, without per-step regrouping
        return LeanAdam(params, lr=config.lr, weight_decay=config.weight_decay)
    sparse = {id(t) for t in tables}
    table_lr = (config.table_lr if config.table_optimizer == "adagrad"
                else config.table_lr_scale * config.lr)
    return MixedOptimizer([p for p in params if id(p) not in sparse], tables, lr=config.lr,
                          weight_decay=config.weight_decay,
                          table_optimizer=config.table_optimizer, table_lr=table_lr)
