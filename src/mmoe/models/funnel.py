"""Funnels: tasks that follow one another (impression -> click -> purchase), declared with
``TaskSpec(after=...)``, and the heads that model them over any backbone.

A later task's label is the joint event (clicked and purchased: 1 only where the earlier
task's label is 1). Three ways to learn it, all over the same backbone and towers:

- no head (every registered backbone): the tower's logit is the conditional
  P(purchase | click), trained on the clicked rows only (the sample-selection-biased CVR
  model that ESMM improves on); the joint is the product at prediction;
- ``esmm`` (Ma et al., SIGIR 2018): the tower's logit is still the conditional, but the loss
  sees only the joint pCTR * pCVR on every impression (:func:`~mmoe.nn.funnel.product_logit`);
- ``aitm`` (Xi et al., KDD 2021): each later task's tower reads the information transferred
  from the earlier task (:class:`~mmoe.nn.funnel.InformationTransfer`), its logit is the
  joint, trained on every impression, plus the behavioural-expectation calibrator
  alpha * mean(max(p_t - p_{t-1}, 0)).

Whatever the head, :func:`output_view` gives every model the same outputs: each later task
as its conditional probability (scored on the earlier task's positive rows) and the joint
``<earlier>_and_<later>`` (scored on every row).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .. import _checks
from ..config import ModelConfig, TaskSpec
from ..nn.funnel import InformationTransfer, product_logit, ratio_logit

#: the funnel heads, by model name
HEADS = ("esmm", "aitm")
#: AITM's calibrator weight alpha (the paper's setting)
AITM_CALIBRATION = 0.6


def split_head(config: ModelConfig) -> tuple[str | None, ModelConfig, float]:
    """``(head, the bottom's config, AITM's alpha)`` of a model config: ``esmm`` and ``aitm``
    take options ``bottom`` (a registered backbone, default ``single_task``: shared
    embeddings and a network per task, as both papers) and, for ``aitm``, ``calibration``
    (alpha, default 0.6); their other options and fields go to the bottom.

    Example:
        >>> head, bottom, _ = split_head(ModelConfig("esmm", options={"bottom": "mmoe"}))
        >>> head, bottom.name
        ('esmm', 'mmoe')
    """
    if config.name not in HEADS:
        return None, config, 0.0
    options = dict(config.options)
    bottom = options.pop("bottom", "single_task")
    _checks.check(isinstance(bottom, str) and bottom not in HEADS,
                  f"model '{config.name}': option bottom must name a registered backbone "
                  f"(single_task, shared_bottom, mmoe, ple, ...), got {bottom!r}")
    alpha = options.pop("calibration", AITM_CALIBRATION) if config.name == "aitm" else 0.0
    _checks.check(isinstance(alpha, int | float) and not isinstance(alpha, bool) and alpha >= 0,
                  f"model 'aitm': option calibration (alpha) must be a number >= 0, got {alpha!r}")
    return config.name, dataclasses.replace(config, name=bottom, options=options), float(alpha)


def funnel_pairs(tasks: Sequence[TaskSpec]) -> list[tuple[int, int]]:
    """``(later, earlier)`` task indices of every ``after``, in task order; checked: the
    earlier task exists, comes first and is binary.

    Example:
        >>> funnel_pairs([TaskSpec("click"), TaskSpec("buy", after="click")])
        [(1, 0)]
    """
    names = [t.name for t in tasks]
    pairs = []
    for i, task in enumerate(tasks):
        if task.after is None:
            continue
        _checks.check(task.after in names[:i], f"task '{task.name}' follows '{task.after}', "
                      f"which is not among the tasks before it ({', '.join(names[:i]) or 'none'});"
                      " list the earlier funnel step first")
        parent = names.index(task.after)
        _checks.check(tasks[parent].kind == "binary", f"task '{task.name}' follows "
                      f"'{task.after}', which is {tasks[parent].kind}; a funnel step is binary")
        pairs.append((i, parent))
    return pairs


def joint_name(tasks: Sequence[TaskSpec], t: int) -> str:
    """The joint output's name of task ``t``: the funnel's steps joined by ``_and_``.

    Example:
        >>> joint_name([TaskSpec("click"), TaskSpec("buy", after="click")], 1)
        'click_and_buy'
    """
    names = [task.name for task in tasks]
    chain = [t]
    while tasks[chain[-1]].after is not None:
        chain.append(names.index(tasks[chain[-1]].after))
    return "_and_".join(names[i] for i in reversed(chain))


class FunnelHead(nn.Module):
    """The funnel head of a model: nothing (plain), ESMM's product or AITM's transfer.

    Args:
        kind: ``None`` (no head), ``"esmm"`` or ``"aitm"``.
        tasks: the model's tasks.
        slices: each task's logit columns.
        width: k, the width of the towers' inputs (AITM).
        calibration: AITM's alpha.

    Shapes:
        :meth:`transfer`: h (T, B, k) -> (T, B, k); :meth:`combine`: logits (B, O) -> (B, O);
        :meth:`penalty`: logits (B, O) -> scalar or ``None``.
    """

    def __init__(self, kind: str | None, tasks: Sequence[TaskSpec], slices: Sequence[slice],
                 width: int, calibration: float = AITM_CALIBRATION):
        super().__init__()
        self.kind = kind
        self.pairs = funnel_pairs(tasks)
        _checks.check(kind is None or bool(self.pairs),
                      f"model '{kind}' needs a funnel: a binary task that follows another "
                      "(TaskSpec(after=...), --task purchase:binary:after=click)")
        self.columns = [(slices[t].start, slices[s].start) for t, s in self.pairs]
        self.calibration = calibration
        self.transfers = (nn.ModuleList(InformationTransfer(width) for _ in self.pairs)
                          if kind == "aitm" else None)

    @property
    def joint(self) -> bool:
        """Whether the later tasks' logits are the joint (esmm, aitm) or the conditional."""
        return self.kind is not None

    def transfer(self, h: torch.Tensor) -> torch.Tensor:
        """AITM: z_t = AIT(p_{t-1}, q_t) for each later task, in order (chains included)."""
        if self.transfers is None:
            return h
        z = list(h.unbind(0))
        for ait, (t, s) in zip(self.transfers, self.pairs, strict=True):
            z[t] = ait(z[s], h[t])
        return torch.stack(z)

    def combine(self, logits: torch.Tensor) -> torch.Tensor:
        """ESMM: each later task's logit becomes that of (earlier joint) * sigmoid(its own)."""
        if self.kind != "esmm":
            return logits
        cols = list(logits.unbind(1))
        for t, s in self.columns:  # in task order: an earlier step is already its joint
            cols[t] = product_logit(cols[s], cols[t])
        return torch.stack(cols, 1)

    def penalty(self, logits: torch.Tensor) -> torch.Tensor | None:
        """AITM's calibrator alpha * sum over steps of mean(max(p_t - p_{t-1}, 0))."""
        if self.kind != "aitm" or self.calibration == 0:
            return None
        p = torch.sigmoid(logits)
        gaps = [torch.relu(p[:, t] - p[:, s]).mean() for t, s in self.columns]
        return self.calibration * torch.stack(gaps).sum()


class OutputView(NamedTuple):
    """Every model's outputs in one form (see the module docstring).

    Attributes:
        tasks: the model's tasks, then one binary ``<earlier>_and_<later>`` per later task.
        slices: their logit columns.
        logits: (N, O + J) the later tasks' columns conditional, then the joints.
        labels: (N, T + J) or ``None``: the tasks' labels, then each joint's (its later
            task's label); a later task is scored where its earlier task's label is 1.
    """

    tasks: tuple[TaskSpec, ...]
    slices: tuple[slice, ...]
    logits: np.ndarray
    labels: np.ndarray | None


def output_logits(logits: torch.Tensor, tasks: Sequence[TaskSpec], slices: Sequence[slice],
                  joint: bool) -> torch.Tensor:
    """(B, O) logits -> (B, O + J): each later task's column its conditional logit, then each
    later task's joint logit (``joint``: the model's columns are joints, else conditionals).

    Example:
        >>> tasks = [TaskSpec("click"), TaskSpec("buy", after="click")]
        >>> out = output_logits(torch.zeros(1, 2), tasks, (slice(0, 1), slice(1, 2)), False)
        >>> torch.sigmoid(out).tolist()  # click, buy | click, click and buy
        [[0.5, 0.5, 0.25]]
    """
    pairs = funnel_pairs(tasks)
    if not pairs:
        return logits
    cols = list(logits.unbind(1))
    joints = {i: cols[slices[i].start] for i, task in enumerate(tasks)
              if task.kind == "binary"}  # each binary task's joint logit
    extra = []
    for t, s in pairs:
        own = cols[slices[t].start]
        joints[t] = own if joint else product_logit(joints[s], own)
        cols[slices[t].start] = ratio_logit(own, joints[s]) if joint else own
        extra.append(joints[t])
    return torch.stack(cols + extra, 1)


def output_tasks(tasks: Sequence[TaskSpec], slices: Sequence[slice]
                 ) -> tuple[tuple[TaskSpec, ...], tuple[slice, ...]]:
    """The tasks and logit columns of :func:`output_logits`: the model's, then one binary
    ``<earlier>_and_<later>`` per funnel task (labelled by the later task's column)."""
    pairs = funnel_pairs(tasks)
    extra = tuple(TaskSpec(joint_name(tasks, t), "binary", column=tasks[t].column)
                  for t, _ in pairs)
    width = slices[-1].stop
    more = tuple(slice(width + j, width + j + 1) for j in range(len(extra)))
    return tuple(tasks) + extra, tuple(slices) + more


def output_view(tasks: Sequence[TaskSpec], slices: Sequence[slice], logits: np.ndarray,
                labels: np.ndarray | None, joint: bool) -> OutputView:
    """:func:`output_logits` and the matching tasks, slices and labels, on arrays."""
    pairs = funnel_pairs(tasks)
    if not pairs:
        return OutputView(tuple(tasks), tuple(slices), logits, labels)
    out = output_logits(torch.from_numpy(np.ascontiguousarray(logits)).double(), tasks, slices,
                        joint).numpy().astype(logits.dtype)
    if labels is not None:
        labels = np.concatenate([labels, labels[:, [t for t, _ in pairs]]], axis=1)
    return OutputView(*output_tasks(tasks, slices), out, labels)
