"""Loss weighting: how the per-task losses L_t (T,) become one training step.

A weighting is the pluggable last part of the objective (``TrainConfig.loss_weighting``):

- ``static``: sum_t lambda_t L_t with lambda_t = ``TaskSpec.weight`` (the default above
  10,000 training rows: :meth:`mmoe.config.TrainConfig.weighting_for`).
- ``uncertainty`` (Kendall, Gal and Cipolla, CVPR 2018; the default on smaller tables whose
  tasks share layers): a learnt log-variance s_t per task,
  sum_t lambda_t (c_t exp(-s_t) L_t + s_t / 2) with c_t = 1/2 for regression (Gaussian
  likelihood, 1/(2 sigma²) L + log sigma) and c_t = 1 for binary/multiclass (1/sigma² L +
  log sigma). This is the paper's form, not the often-used exp(-s) L + s simplification.
- ``gradnorm`` (Chen et al., ICML 2018): learnt task weights w_t, renormalised to sum to T
  after every step, pushed so that each task's gradient norm on the last shared layer,
  G_t = ||grad_W w_t L_t||, approaches mean(G) * r_t^alpha with r_t the task's relative
  inverse training rate (L_t / L_t(0)) / mean(L / L(0)).
- ``pcgrad`` (Yu et al., NeurIPS 2020), a gradient rule: on the shared parameters each task's
  gradient g_i is projected off every other task's g_j it conflicts with (g_i . g_j < 0),
  g_i <- g_i - (g_i . g_j) / ||g_j||² g_j, in random order; the projected gradients are summed.
  Task-specific parameters (towers) and lookup tables (sparse gradients) get the plain
  weighted sum.

A weighting has ``loss(task_losses)`` (the scalar objective), ``backward(task_losses, penalty)``
(fills ``.grad``; the Trainer calls it between ``zero_grad`` and ``step``) and ``after_step()``.
Learnable state (log-variances, GradNorm weights) lives in the weighting's parameters and
buffers: the Trainer optimises them with the model and saves them in its checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import torch
from torch import nn

from .. import _checks
from ..config import TaskSpec, TrainConfig


class StaticWeighting(nn.Module):
    """sum_t lambda_t L_t with lambda_t = ``TaskSpec.weight``.

    Example:
        >>> w = StaticWeighting([TaskSpec("a"), TaskSpec("b", weight=2.0)])
        >>> float(w.loss(torch.tensor([1.0, 3.0])))
        7.0
    """

    def __init__(self, tasks: Sequence[TaskSpec]):
        super().__init__()
        self.tasks = tuple(tasks)
        self.register_buffer("static", torch.tensor([t.weight for t in self.tasks]),
                             persistent=False)  # (T,) lambda_t

    def loss(self, task_losses: torch.Tensor) -> torch.Tensor:
        """The scalar objective from per-task losses (T,)."""
        return (self.static * task_losses).sum()

    def backward(self, task_losses: torch.Tensor, penalty: torch.Tensor | None = None) -> None:
        """Fill the parameters' ``.grad`` for one step (after ``zero_grad``)."""
        loss = self.loss(task_losses)
        if penalty is not None:
            loss = loss + penalty
        loss.backward()

    def after_step(self) -> None:
        """Called after ``optimizer.step()`` (GradNorm renormalises its weights here)."""

    def weights(self) -> torch.Tensor:
        """(T,) the current multiplier of each task's loss (for logs)."""
        return self.static

    def describe(self) -> dict[str, float] | None:
        """Per-task weights for the training history, or ``None`` when they never change."""
        return None

    def _named(self, values: torch.Tensor) -> dict[str, float]:
        return {t.name: float(v) for t, v in zip(self.tasks, values.detach(), strict=True)}


class UncertaintyWeighting(StaticWeighting):
    """Kendall et al. 2018: sum_t lambda_t (c_t exp(-s_t) L_t + s_t / 2), s_t = log sigma_t² learnt.

    With the s_t held fixed this is static weighting with lambda_t c_t exp(-s_t) (plus a
    constant). Initialised at s_t = 0.

    Example:
        >>> w = UncertaintyWeighting([TaskSpec("a", "regression")])
        >>> float(w.loss(torch.tensor([2.0])))  # 0.5 * exp(0) * 2 + 0
        1.0
    """

    def __init__(self, tasks: Sequence[TaskSpec]):
        super().__init__(tasks)
        self.log_var = nn.Parameter(torch.zeros(len(self.tasks)))  # (T,) s_t
        factor = [0.5 if t.kind == "regression" else 1.0 for t in self.tasks]
        self.register_buffer("factor", torch.tensor(factor), persistent=False)  # (T,) c_t

    def loss(self, task_losses: torch.Tensor) -> torch.Tensor:
        s = self.log_var
        return (self.static * (self.factor * torch.exp(-s) * task_losses + 0.5 * s)).sum()

    def weights(self) -> torch.Tensor:
        return self.static * self.factor * torch.exp(-self.log_var.detach())

    def describe(self) -> dict[str, float]:
        return self._named(self.weights())


class GradNorm(StaticWeighting):
    """Chen et al. 2018: task weights w_t balancing gradient norms on the last shared layer.

    L_grad = sum_t |G_t - mean(G) r_t^alpha|, G_t = w_t ||grad_W L_t||, the target held
    constant; w gets dL_grad/dw while the model gets grad of sum_t w_t L_t. After each
    optimiser step w is clamped positive and renormalised to sum_t w_t = T. L_t(0) is the
    first batch's loss (kept in a buffer, so resume is exact).

    Args:
        tasks: the tasks; w starts at T lambda_t / sum lambda.
        shared: the last shared layer's parameters W.
        alpha: the restoring-force exponent (0: equal gradient norms).
    """

    def __init__(self, tasks: Sequence[TaskSpec], shared: Sequence[nn.Parameter],
                 alpha: float = 1.5):
        super().__init__(tasks)
        _checks.check(len(shared) > 0, "gradnorm needs a shared layer, the model has none")
        num = len(self.tasks)
        lam = self.static.clamp_min(0)
        init = lam * num / lam.sum() if float(lam.sum()) > 0 else torch.ones(num)
        self.task_weight = nn.Parameter(init.clone())  # (T,) w_t
        self.register_buffer("initial", torch.full((num,), float("nan")))  # (T,) L_t(0)
        self.shared, self.alpha = list(shared), alpha

    def loss(self, task_losses: torch.Tensor) -> torch.Tensor:
        return (self.task_weight.detach() * task_losses).sum()

    def backward(self, task_losses: torch.Tensor, penalty: torch.Tensor | None = None) -> None:
        losses = task_losses.detach()
        with torch.no_grad():  # L_t(0): the first batch in which the task has a loss
            self.initial.copy_(torch.where(torch.isnan(self.initial) & (losses > 0), losses,
                                           self.initial))
        norms = torch.stack([_grad_norm(task_losses[t], self.shared)
                             for t in range(len(self.tasks))])  # (T,) ||grad_W L_t||
        w = self.task_weight.detach()
        g = w * norms  # (T,) G_t
        ratio = torch.where(self.initial > 0, losses / self.initial, torch.ones_like(losses))
        target = g.mean() * (ratio / ratio.mean()).pow(self.alpha)  # constant in L_grad
        super().backward(task_losses, penalty)  # the model: grad of sum_t w_t L_t (+ penalty)
        self.task_weight.grad = torch.sign(g - target) * norms  # dL_grad / dw_t

    @torch.no_grad()
    def after_step(self) -> None:
        w = self.task_weight.clamp_(min=1e-6)
        w.mul_(len(self.tasks) / w.sum())  # sum_t w_t = T

    def weights(self) -> torch.Tensor:
        return self.task_weight.detach()

    def describe(self) -> dict[str, float]:
        return self._named(self.weights())


class PCGrad(StaticWeighting):
    """Yu et al. 2020 "gradient surgery" on the shared parameters (see :func:`pcgrad_project`).

    Args:
        tasks: the tasks (lambda_t scales each task's gradient before projection).
        shared: parameters shared by the tasks (encoder and backbone).
        others: the remaining trainable parameters (towers), which get the plain sum.
    """

    def __init__(self, tasks: Sequence[TaskSpec], shared: Sequence[nn.Parameter],
                 others: Sequence[nn.Parameter]):
        super().__init__(tasks)
        self.shared, self.others = list(shared), list(others)

    def backward(self, task_losses: torch.Tensor, penalty: torch.Tensor | None = None) -> None:
        weighted = self.static * task_losses  # (T,) lambda_t L_t
        flat = torch.stack([_flat_grad(weighted[t], self.shared)
                            for t in range(len(self.tasks))])  # (T, P) g_t
        summed = pcgrad_project(flat).sum(0)  # (P,)
        if self.others:
            weighted.sum().backward(inputs=self.others, retain_graph=penalty is not None)
        if penalty is not None and penalty.requires_grad:
            penalty.backward()
        offset = 0
        for p in self.shared:
            n = p.numel()
            g = summed[offset:offset + n].view_as(p)
            p.grad = g if p.grad is None else p.grad + g
            offset += n


def pcgrad_project(grads: torch.Tensor, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """PCGrad's projection of per-task gradients (Yu et al. 2020, Algorithm 1).

    For each task i, for every other task j in a random order: if g_i . g_j < 0,
    g_i <- g_i - (g_i . g_j) / ||g_j||² g_j (g_j the *original* gradient).

    Args:
        grads: (T, P) one flattened gradient per task.
        generator: RNG for the order (default: torch's global RNG; unused when T <= 2).

    Returns:
        (T, P) the projected gradients.

    Example:
        >>> pcgrad_project(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
        tensor([[0.5000, 0.5000],
                [0.0000, 1.0000]])
    """
    num = grads.shape[0]
    out = grads.clone()
    sq = grads.square().sum(1)  # (T,) ||g_j||²
    for i in range(num):  # loop over tasks (T is small)
        others = [j for j in range(num) if j != i]
        if len(others) > 1:
            order = torch.randperm(len(others), generator=generator).tolist()
            others = [others[k] for k in order]
        for j in others:
            dot = out[i] @ grads[j]
            if dot < 0 and sq[j] > 0:
                out[i] = out[i] - dot / sq[j] * grads[j]
    return out


def _flat_grad(loss: torch.Tensor, params: Sequence[nn.Parameter]) -> torch.Tensor:
    """d loss / d params flattened into one vector (zeros where a parameter is unused)."""
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for g, p in zip(grads, params, strict=True)])


def _grad_norm(loss: torch.Tensor, params: Sequence[nn.Parameter]) -> torch.Tensor:
    """||d loss / d params||, 0 when the loss does not depend on them."""
    if not loss.requires_grad:
        return loss.new_zeros(())
    return _flat_grad(loss, params).norm()


class WeightedModel(Protocol):
    """What a weighting needs of the model: its tasks, and which parameters the tasks share
    (the model declares both; see :class:`mmoe.models.MultiTaskModel`)."""

    tasks: tuple[TaskSpec, ...]

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def shared_parameters(self) -> list[nn.Parameter]: ...

    def last_shared_layer(self) -> list[nn.Parameter]: ...

    def sparse_parameters(self) -> list[nn.Parameter]: ...


def make_weighting(config: TrainConfig, model: WeightedModel) -> StaticWeighting:
    """The weighting ``config.loss_weighting`` names, for ``model`` (a MultiTaskModel);
    static for ``None`` (the default, which the Trainer resolves from the training rows:
    :meth:`TrainConfig.weighting_for`).

    Example:
        >>> from mmoe import build_model
        >>> model = build_model("mmoe", 4, [TaskSpec("a"), TaskSpec("b")])
        >>> type(make_weighting(TrainConfig(loss_weighting="uncertainty"), model)).__name__
        'UncertaintyWeighting'
    """
    tasks = model.tasks
    kind = config.loss_weighting
    if kind == "uncertainty":
        return UncertaintyWeighting(tasks)
    if kind == "gradnorm":
        return GradNorm(tasks, model.last_shared_layer(), config.gradnorm_alpha)
    if kind == "pcgrad":  # lookup tables (sparse gradients) take the plain sum, like towers
        tables = {id(p) for p in model.sparse_parameters()}
        shared = [p for p in model.shared_parameters() if id(p) not in tables]
        ids = {id(p) for p in shared}
        others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        return PCGrad(tasks, shared, others)
    return StaticWeighting(tasks)
