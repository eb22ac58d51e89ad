"""Customized Gate Control (CGC) and Progressive Layered Extraction (PLE), Tang et al.,
RecSys 2020.

CGC: every task k has m_t experts of its own, m_s experts are shared, and task k's gate mixes
only its own and the shared experts:

    g^k(x) = w^k(x) S^k(x),  w^k(x) = softmax(W_g^k x),
    S^k(x) = [E_(k,1), ..., E_(k,m_t), E_(s,1), ..., E_(s,m_s)]         (Tang et al. eq. 1-2)

PLE stacks L such extraction levels. Level j's task-k gate reads task k's output of level
j − 1; every level but the last also has a shared gate over *all* its experts, whose output is
the input of the next level's shared experts and shared gate:

    g^{k,j}(x) = w^{k,j}(g^{k,j-1}(x)) S^{k,j}(x)                       (Tang et al. eq. 4)

Layout of one level's expert bank (one StackedMLP, E = T·m_t + m_s experts):
``[task 0's m_t, task 1's m_t, ..., task T-1's m_t, shared m_s]``. Gates produce weights over
their visible experts only and are scattered into a (T, B, E) tensor that is exactly zero on
the experts a task may not see, so one ``mix_experts`` serves all tasks.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import _checks
from ..config import ModelConfig
from ..nn import Gates, StackedMLP, mix_experts
from ._options import non_negative_int, positive_int, read_options
from .protocol import Backbone, BackboneOut


class ExtractionLevel(nn.Module):
    """One CGC extraction level (with an optional PLE shared gate).

    Args:
        in_features: input width I of experts and gates.
        units: widths of each expert's ReLU layers.
        num_tasks: T.
        task_experts: m_t, experts owned by each task (may be 0).
        shared_experts: m_s, experts seen by every task (may be 0).
        shared_gate: also output a shared-gate mixture over all E experts (PLE, not last level).
        gate_bias: bias inside the gates' softmax.
        dropout: dropout after each expert layer.
        gate_dropout: gate dropout probability in training (every gate of the level).

    Shapes:
        task_in (B, I) read by every expert and gate (first level: x), or (T, B, I) one per
        task; shared_in (B, I) or ``None`` ->
        task_out (T, B, H), shared_out (B, H) or ``None``, gates (T, B, E).

    Example:
        >>> level = ExtractionLevel(10, (16,), 2, 1, 3, shared_gate=True)
        >>> t, s, g = level(torch.randn(4, 10), torch.randn(4, 10))
        >>> t.shape, s.shape, g.shape
        (torch.Size([2, 4, 16]), torch.Size([4, 16]), torch.Size([2, 4, 5]))
    """

    def __init__(self, in_features: int, units: tuple[int, ...], num_tasks: int,
                 task_experts: int, shared_experts: int, shared_gate: bool = False,
                 gate_bias: bool = False, dropout: float = 0.0, gate_dropout: float = 0.0):
        super().__init__()
        n_t, n_s = task_experts, shared_experts
        num_experts = num_tasks * n_t + n_s  # E
        self.num_tasks, self.num_experts = num_tasks, num_experts
        self.experts = StackedMLP(num_experts, in_features, units, dropout)  # E_(k,i) and E_(s,i)
        self.task_gates = Gates(in_features, n_t + n_s, num_tasks, bias=gate_bias,
                                dropout=gate_dropout)  # w^k
        self.shared_gate = (Gates(in_features, num_experts, 1, bias=gate_bias,
                                  dropout=gate_dropout)  # w^s
                            if shared_gate else None)
        own = torch.arange(num_tasks)[:, None] * n_t + torch.arange(n_t)  # (T, m_t)
        shared = (num_tasks * n_t + torch.arange(n_s)).expand(num_tasks, n_s)  # (T, m_s)
        # visible[k] = the expert indices of S^k, in the order of w^k's outputs
        self.register_buffer("visible", torch.cat([own, shared], 1), persistent=False)
        # source[e] = which row of [task inputs; shared input] expert e reads (T = shared)
        source = torch.cat([torch.arange(num_tasks).repeat_interleave(n_t),
                            torch.full((n_s,), num_tasks)])
        self.register_buffer("source", source, persistent=False)  # (E,)
        self.out_features = self.experts.out_features

    def forward(self, task_in: torch.Tensor, shared_in: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        if task_in.dim() == 2:  # first level: every expert reads x, one GEMM per layer
            experts = self.experts(task_in)  # (E, B, H)
        else:
            rows = task_in if shared_in is None else torch.cat([task_in, shared_in[None]])
            experts = self.experts(rows.index_select(0, self.source))  # (E, B, I) -> (E, B, H)
        w = self.task_gates(task_in)  # w^k = softmax(W_g^k input_k), (T, B, m_t + m_s)
        index = self.visible[:, None, :].expand(-1, w.shape[1], -1)  # (T, B, m_t + m_s)
        gates = w.new_zeros(self.num_tasks, w.shape[1], self.num_experts).scatter(2, index, w)
        task_out = mix_experts(gates, experts)  # g^k = w^k S^k, (T, B, H)
        shared_out = None
        if self.shared_gate is not None:
            shared_out = mix_experts(self.shared_gate(shared_in), experts)[0]  # (B, H)
        return task_out, shared_out, gates


class ProgressiveLayeredExtraction(Backbone):
    """L stacked extraction levels (PLE); L = 1 is CGC.

    Args:
        in_features: input width d.
        units: widths of each expert's ReLU layers (the same at every level).
        num_tasks: T.
        task_experts: m_t per task and level.
        shared_experts: m_s per level.
        levels: L >= 1.
        gate_bias: bias inside the gates' softmax.
        dropout: dropout after each expert layer.
        gate_dropout: gate dropout probability in training (every gate).

    Levels 1..L−1 have a shared gate when m_s > 0 (without shared experts nothing would read
    its output). The returned gates are the last level's task gates.

    Shapes: x (B, d) -> h (T, B, units[-1]), gates (T, B, T·m_t + m_s).

    Example:
        >>> net = ProgressiveLayeredExtraction(10, (16,), 2, 1, 2, levels=2)
        >>> h, g, _ = net(torch.randn(4, 10))
        >>> h.shape, g.shape
        (torch.Size([2, 4, 16]), torch.Size([2, 4, 4]))
    """

    gated = True

    def __init__(self, in_features: int, units: tuple[int, ...], num_tasks: int,
                 task_experts: int, shared_experts: int, levels: int = 1,
                 gate_bias: bool = False, dropout: float = 0.0, gate_dropout: float = 0.0):
        super().__init__()
        widths = (in_features,) + (units[-1],) * (levels - 1)  # each level's input width
        self.levels = nn.ModuleList(
            ExtractionLevel(w, units, num_tasks, task_experts, shared_experts,
                            shared_gate=j < levels - 1 and shared_experts > 0,
                            gate_bias=gate_bias, dropout=dropout, gate_dropout=gate_dropout)
            for j, w in enumerate(widths)
        )
        self.out_features = units[-1]
        self.shared_experts = shared_experts

    @property
    def gate_mask(self) -> torch.Tensor:
        """(T, E) bool: the last level's experts each task gate can see."""
        last = self.levels[-1]
        mask = torch.zeros(last.num_tasks, last.num_experts, dtype=torch.bool,
                           device=last.visible.device)
        return mask.scatter(1, last.visible, True)

    def named_experts(self, tasks: list[str]) -> list[str]:
        """The last level's experts as the gates see them: each task's own experts named
        after it, then the shared ones.

        Example:
            >>> ProgressiveLayeredExtraction(4, (8,), 2, 1, 2).named_experts(["ctr", "cvr"])
            ['ctr own', 'cvr own', 'shared 0', 'shared 1']
        """
        last = self.levels[-1]
        n_t = (last.num_experts - self.shared_experts) // last.num_tasks
        own = [f"{t} own" + (f" {k}" if n_t > 1 else "") for t in tasks for k in range(n_t)]
        shared = (["shared"] if self.shared_experts == 1
                  else [f"shared {k}" for k in range(self.shared_experts)])
        return own + shared[:self.shared_experts]

    def last_shared_layer(self) -> list[nn.Parameter]:
        """The last level's experts' output weights."""
        return [self.levels[-1].experts.layers[-1].weight]

    def forward(self, x: torch.Tensor) -> BackboneOut:
        task_in, shared_in = x, x  # level 1: every gate and expert reads x, (B, d)
        for level in self.levels:  # loop over depth only
            task_in, shared_in, gates = level(task_in, shared_in)  # (T, B, H), (B, H) | None
        return BackboneOut(task_in, gates)


def _expert_options(cfg: ModelConfig, defaults: dict) -> dict:
    opts = read_options(cfg, defaults)
    n_t = non_negative_int(cfg, "task_experts", opts["task_experts"])
    n_s = non_negative_int(cfg, "shared_experts", opts["shared_experts"])
    _checks.check(n_t + n_s >= 1, f"model '{cfg.name}': each task's gate needs an expert; "
                                  f"set option 'task_experts' or 'shared_experts' >= 1")
    return {**opts, "task_experts": n_t, "shared_experts": n_s}


def build_cgc(cfg: ModelConfig, d: int, num_tasks: int) -> ProgressiveLayeredExtraction:
    """Registry builder; options ``task_experts`` (default 1) and ``shared_experts`` (default
    ``num_experts``: MMoE's bank, shared, plus one private expert per task)."""
    opts = _expert_options(cfg, {"task_experts": 1, "shared_experts": cfg.num_experts})
    return ProgressiveLayeredExtraction(d, cfg.expert_units, num_tasks, opts["task_experts"],
                                        opts["shared_experts"], 1, cfg.gate_bias, cfg.dropout,
                                        cfg.gate_dropout)


def build_ple(cfg: ModelConfig, d: int, num_tasks: int) -> ProgressiveLayeredExtraction:
    """Registry builder; as :func:`build_cgc` plus option ``levels`` (default 2)."""
    opts = _expert_options(cfg, {"task_experts": 1, "shared_experts": cfg.num_experts,
                                 "levels": 2})
    levels = positive_int(cfg, "levels", opts["levels"])
    return ProgressiveLayeredExtraction(d, cfg.expert_units, num_tasks, opts["task_experts"],
                                        opts["shared_experts"], levels, cfg.gate_bias,
                                        cfg.dropout, cfg.gate_dropout)
