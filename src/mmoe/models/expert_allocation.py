"""Experts allocated by feature and by structure: two MMoE variants whose expert bank is not
E copies of one MLP on all inputs.

``feature_mmoe``: named feature groups; each expert reads only its group's input columns
(the encoder's output positions of those columns), a few ``shared_experts`` read all of them.
Every task's gate reads the whole input and mixes all experts:

    f^k(x) = sum_i g^k(x)_i f_i(x[S_i]),  S_i = the positions of expert i's feature group

``mixed_mmoe``: one bank of experts of different kinds and shapes (MLPs of any depth and
width, DCN cross networks, factorisation machines). Same-shaped experts form a group that is
computed stacked; every group ends in the common width H so the gates can mix them.

Layout of the encoded input (``FeatureEncoder``): numeric column i is position i; categorical
column j occupies positions ``n_num + j*D .. n_num + (j+1)*D - 1`` (D = embedding_dim).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import _checks
from ..config import InputSpec, ModelConfig
from ..config.inputs import PERIODIC_DIM
from ..nn import CrossExperts, FMExperts, Gates, InputMaskedMLP, StackedMLP, mix_experts
from ._options import non_negative_int, positive_int, read_options
from .protocol import Backbone, BackboneOut


def input_positions(inputs: InputSpec) -> dict[str, list[int]]:
    """Each input column's positions in the encoded vector x (B, d); a numeric column
    encoded piecewise-linearly (inputs ``a__ple0``, ``a__ple1``, ...) is also known by its own
    name, for all its inputs; a periodic column holds its embedding's positions (after the
    other numeric columns, :class:`mmoe.nn.PeriodicEmbedding`).

    Example:
        >>> input_positions(InputSpec(numeric=("a",), categorical=(("c", 5),), embedding_dim=2))
        {'a': [0], 'c': [1, 2]}
        >>> input_positions(InputSpec(numeric=("b__ple0", "b__ple1"), embedding_dim=2))["b"]
        [0, 1]
    """
    n, dim = inputs.numeric_width, inputs.embedding_dim
    out: dict[str, list[int]] = {}
    plain = [c for c in inputs.numeric if c not in inputs.periodic]
    for i, name in enumerate(plain):
        out[name] = [i]
        column, piecewise, bin_ = name.rpartition("__ple")
        if piecewise and bin_.isdigit():
            out.setdefault(column, []).append(i)
    for j, name in enumerate(inputs.periodic):
        start = len(plain) + j * PERIODIC_DIM
        out[name] = list(range(start, start + PERIODIC_DIM))
    for j, (name, _) in enumerate(inputs.categorical):
        out[name] = list(range(n + j * dim, n + (j + 1) * dim))
    return out


class GatedBank(Backbone):
    """Any expert bank (x (B, d) -> (E, B, H)) mixed by one softmax gate per task.

    Args:
        bank: the experts; has ``out_features`` (H) and ``output_weights()`` (the weights of
            its experts' last layers).
        in_features: d.
        num_experts: E.
        num_tasks: T.
        expert_names: a name per expert (for gate-health reports).
        gate_bias: bias inside the gates' softmax.
        gate_dropout: gate dropout probability in training.

    Shapes: x (B, d) -> h (T, B, H), gates (T, B, E).
    """

    gated = True

    def __init__(self, bank: nn.Module, in_features: int, num_experts: int, num_tasks: int,
                 expert_names: list[str], gate_bias: bool = False, gate_dropout: float = 0.0):
        super().__init__()
        self.experts = bank
        self.gates = Gates(in_features, num_experts, num_tasks, bias=gate_bias,
                           dropout=gate_dropout)  # g^k
        self.expert_names = expert_names
        self.out_features = bank.out_features

    def last_shared_layer(self) -> list[nn.Parameter]:
        """The experts' output-layer weights (GradNorm's last shared layer)."""
        return self.experts.output_weights()

    def forward(self, x: torch.Tensor) -> BackboneOut:
        experts = self.experts(x)  # (E, B, H)
        gates = self.gates(x)  # (T, B, E)
        return BackboneOut(mix_experts(gates, experts), gates)  # f^k(x) = sum_i g^k(x)_i f_i(x)


# ---- experts by feature ---------------------------------------------------------------------
def _feature_groups(cfg: ModelConfig, inputs: InputSpec, groups: Any) -> dict[str, list[str]]:
    if not groups:  # default: numeric columns vs categorical columns
        by_kind = {"numeric": list(inputs.numeric),
                   "categorical": [name for name, _ in inputs.categorical]}
        return {k: v for k, v in by_kind.items() if v}
    _checks.check(isinstance(groups, dict),
                  f"model '{cfg.name}': option 'feature_groups' must map group names to lists "
                  f"of input columns, got {groups!r}")
    known = input_positions(inputs)
    out = {}
    for name, columns in groups.items():
        columns = [columns] if isinstance(columns, str) else list(columns)
        _checks.check(bool(columns), f"model '{cfg.name}': feature group '{name}' is empty")
        unknown = [c for c in columns if c not in known]
        _checks.check(not unknown, f"model '{cfg.name}': feature group '{name}' names unknown "
                                   f"input column(s) {unknown}; inputs are "
                                   f"{sorted(k for k in known if '__ple' not in k)}")
        out[str(name)] = columns
    return out


def _experts_per_group(cfg: ModelConfig, names: list[str], value: Any) -> list[int]:
    if value is None:  # default: num_experts spread over the groups, at least one each
        base, extra = divmod(cfg.num_experts, len(names))
        return [max(1, base + (i < extra)) for i in range(len(names))]
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        _checks.check(not unknown, f"model '{cfg.name}': option 'experts_per_group' names "
                                   f"unknown group(s) {unknown}; groups are {names}")
        return [positive_int(cfg, f"experts_per_group[{n!r}]", value.get(n, 1)) for n in names]
    return [positive_int(cfg, "experts_per_group", value)] * len(names)


def build_feature_mmoe(cfg: ModelConfig, d: int, num_tasks: int, *,
                       inputs: InputSpec) -> GatedBank:
    """Registry builder for ``feature_mmoe``.

    Options:
        feature_groups: ``{group: [input column, ...]}`` (default: ``numeric`` and
            ``categorical`` columns as two groups). Groups may overlap.
        experts_per_group: int, or ``{group: int}`` (default: ``num_experts`` spread over
            the groups, at least one each).
        shared_experts: experts that read every input column (default 0).

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> cfg = ModelConfig("feature_mmoe", options={"feature_groups": {"u": ["a"]}})
        >>> build_model(cfg, InputSpec(numeric=("a", "b", "c")),
        ...             [TaskSpec("x"), TaskSpec("y")]).backbone.expert_names
        ['u#0', 'u#1', 'u#2', 'u#3', 'u#4', 'u#5', 'u#6', 'u#7']
    """
    opts = read_options(cfg, {"feature_groups": None, "experts_per_group": None,
                              "shared_experts": 0})
    groups = _feature_groups(cfg, inputs, opts["feature_groups"])
    names = list(groups)
    counts = _experts_per_group(cfg, names, opts["experts_per_group"])
    shared = non_negative_int(cfg, "shared_experts", opts["shared_experts"])
    positions = input_positions(inputs)
    rows, labels = [], []
    for name, count in zip(names, counts, strict=True):
        row = torch.zeros(d, dtype=torch.bool)
        row[[p for c in groups[name] for p in positions[c]]] = True  # S_i
        rows += [row] * count
        labels += [f"{name}#{i}" for i in range(count)]
    rows += [torch.ones(d, dtype=torch.bool)] * shared
    labels += [f"shared#{i}" for i in range(shared)]
    mask = torch.stack(rows)  # (E, d)
    bank = InputMaskedMLP(mask, d, cfg.expert_units, cfg.dropout)
    return GatedBank(bank, d, len(labels), num_tasks, labels, cfg.gate_bias, cfg.gate_dropout)


# ---- experts by structure -------------------------------------------------------------------
_KIND_KEYS = {"mlp": {"units": None}, "cross": {"layers": 2}, "fm": {"factors": 8}}


class MixedExpertBank(nn.Module):
    """Experts of different kinds and shapes; same-shaped experts are one stacked group.

    Args:
        groups: ``(kind, shape, count)`` per group: ``("mlp", units, n)`` (hidden widths
            before the output layer), ``("cross", layers, n)`` or ``("fm", factors, n)``.
        in_features: d.
        out_features: H, the common output width (ReLU) of every expert.
        dropout: dropout after the MLP experts' layers.

    Shapes: x (B, d) -> (E, B, H), experts in group order.

    Example:
        >>> bank = MixedExpertBank([("mlp", (), 2), ("cross", 2, 1), ("fm", 4, 1)], 6, 5)
        >>> bank(torch.randn(3, 6)).shape
        torch.Size([4, 3, 5])
    """

    def __init__(self, groups: list[tuple[str, Any, int]], in_features: int,
                 out_features: int, dropout: float = 0.0):
        super().__init__()
        blocks: list[nn.Module] = []
        for kind, shape, count in groups:
            if kind == "mlp":
                blocks.append(StackedMLP(count, in_features, (*shape, out_features), dropout))
            elif kind == "cross":
                blocks.append(CrossExperts(count, in_features, shape, out_features))
            else:
                blocks.append(FMExperts(count, in_features, shape, out_features))
        self.groups = nn.ModuleList(blocks)
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [group(x) for group in self.groups]  # loop over groups, each stacked
        return outs[0] if len(outs) == 1 else torch.cat(outs)  # (E, B, H)

    def output_weights(self) -> list[nn.Parameter]:
        """Every group's last-layer weight, in group order."""
        return [w for group in self.groups for w in group.output_weights()]


def _expert_groups(cfg: ModelConfig, specs: Any) -> list[tuple[str, Any, int]]:
    """Validate the ``experts`` option; merge same-shaped entries, keeping first-seen order."""
    _checks.check(isinstance(specs, (list, tuple)) and len(specs) > 0,
                  f"model '{cfg.name}': option 'experts' must be a non-empty list of "
                  f"{{'kind': 'mlp' | 'cross' | 'fm', 'count': n, ...}}, got {specs!r}")
    merged: dict[tuple[str, Any], int] = {}
    for spec in specs:
        _checks.check(isinstance(spec, dict) and spec.get("kind") in _KIND_KEYS,
                      f"model '{cfg.name}': each entry of option 'experts' needs 'kind' one of "
                      f"{', '.join(_KIND_KEYS)}, got {spec!r}")
        kind = spec["kind"]
        keys = _KIND_KEYS[kind]
        extra = sorted(set(spec) - {"kind", "count", *keys})
        _checks.check(not extra, f"model '{cfg.name}': a '{kind}' expert takes "
                                 f"{', '.join(['count', *keys])}; unknown {extra}")
        count = positive_int(cfg, f"experts[{kind}].count", spec.get("count", 1))
        if kind == "mlp":
            units = spec.get("units")
            shape = tuple(cfg.expert_units[:-1]) if units is None else tuple(units)
            for u in shape:
                positive_int(cfg, "experts[mlp].units entry", u)
        else:
            key = next(iter(keys))
            shape = positive_int(cfg, f"experts[{kind}].{key}", spec.get(key, keys[key]))
        merged[(kind, shape)] = merged.get((kind, shape), 0) + count
    return [(kind, shape, count) for (kind, shape), count in merged.items()]


def _shape_label(kind: str, shape: Any) -> str:
    return f"{kind}({','.join(map(str, shape))})" if kind == "mlp" else f"{kind}({shape})"


def build_mixed_mmoe(cfg: ModelConfig, d: int, num_tasks: int) -> GatedBank:
    """Registry builder for ``mixed_mmoe``.

    Options:
        experts: list of ``{"kind": "mlp", "units": [..], "count": n}`` (hidden widths before
            the output layer; default ``expert_units[:-1]``), ``{"kind": "cross", "layers":
            L, "count": n}`` (default L = 2) and ``{"kind": "fm", "factors": k, "count": n}``
            (default k = 8). Default: ``max(1, num_experts - 2)`` MLPs, one cross network and
            one factorisation machine.
        out_units: the common output width H (default ``expert_units[-1]``).

    Example:
        >>> from mmoe import TaskSpec, build_model
        >>> cfg = ModelConfig("mixed_mmoe", options={"experts": [
        ...     {"kind": "mlp", "units": [32], "count": 2}, {"kind": "fm", "count": 1}]})
        >>> build_model(cfg, 10, [TaskSpec("x"), TaskSpec("y")]).backbone.expert_names
        ['mlp(32)#0', 'mlp(32)#1', 'fm(8)#0']
    """
    default = [{"kind": "mlp", "count": max(1, cfg.num_experts - 2)},
               {"kind": "cross", "count": 1}, {"kind": "fm", "count": 1}]
    opts = read_options(cfg, {"experts": default, "out_units": cfg.expert_units[-1]})
    groups = _expert_groups(cfg, opts["experts"])
    width = positive_int(cfg, "out_units", opts["out_units"])
    names = [f"{_shape_label(kind, shape)}#{i}" for kind, shape, count in groups
             for i in range(count)]
    bank = MixedExpertBank(groups, d, width, cfg.dropout)
    return GatedBank(bank, d, len(names), num_tasks, names, cfg.gate_bias, cfg.gate_dropout)
