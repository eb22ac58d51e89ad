"""The model registry: one name -> one backbone builder. A new model is a new backbone (a
:class:`~mmoe.models.protocol.Backbone`) plus one ``register`` line here."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import _checks
from ..config import ModelConfig, shown
from .expert_allocation import build_feature_mmoe, build_mixed_mmoe
from .funnel import split_head
from .moe import MixtureOfExperts, SharedBottom, SingleTask
from .ple import build_cgc, build_ple
from .protocol import Backbone
from .soft_sharing import build_cross_stitch, build_l2_constrained
from .tensor_factorization import build_tensor_factorization

# builder(config, in_features d, num_tasks T) -> Backbone; a builder registered with
# takes_inputs=True also gets ``inputs=InputSpec`` (column names). The config's dropouts are
# numbers by then (MultiTaskModel chooses the None ones; ModelConfig.for_rows).
Builder = Callable[[ModelConfig, int, int], Backbone]
# size(config, d, T) -> (a lower bound of the backbone's parameters, its output width k), from
# arithmetic alone: it runs before anything is allocated, so it never loops over experts.
Size = Callable[[ModelConfig, int, int], tuple[int, int]]


def mlp_parameters(d: int, units: Sequence[int], copies: int = 1) -> int:
    """Weights and biases of ``copies`` stacked MLPs ``d -> units[0] -> ... -> units[-1]``.

    Args:
        d: input width.
        units: layer widths.
        copies: number of MLPs.

    Returns:
        Their parameter count.

    Example:
        >>> mlp_parameters(10, (4, 2), copies=3)  # 3 * ((10*4 + 4) + (4*2 + 2))
        162
    """
    total, width = 0, d
    for u in units:
        total, width = total + width * u + u, u
    return copies * total


def _option(cfg: ModelConfig, name: str, default: int) -> int:
    """An integer option as the builder will read it; the default where it is not an int >= 0
    (the builder then reports it)."""
    value = cfg.options.get(name, default)
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else default


def _per_task(cfg: ModelConfig, d: int, num_tasks: int) -> tuple[int, int]:
    """T separate networks on x."""
    return mlp_parameters(d, cfg.expert_units, num_tasks), cfg.expert_units[-1]


def _experts(count: int, gates: int, cfg: ModelConfig, d: int) -> tuple[int, int]:
    """``count`` expert networks on x and ``gates`` softmax gates over them."""
    return (mlp_parameters(d, cfg.expert_units, count) + gates * d * count,
            cfg.expert_units[-1])


def _size_ple(cfg: ModelConfig, d: int, num_tasks: int, levels: int = 1) -> tuple[int, int]:
    n_t, n_s = _option(cfg, "task_experts", 1), _option(cfg, "shared_experts", cfg.num_experts)

    def level(width: int) -> int:  # T·m_t + m_s experts, T task gates over m_t + m_s each
        return (mlp_parameters(width, cfg.expert_units, num_tasks * n_t + n_s)
                + num_tasks * width * (n_t + n_s))

    return level(d) + (levels - 1) * level(cfg.expert_units[-1]), cfg.expert_units[-1]


def _size_tensor_factorization(cfg: ModelConfig, d: int, num_tasks: int) -> tuple[int, int]:
    ranks: Any = cfg.options.get("ranks", (8, 8, 2))
    if not (isinstance(ranks, list | tuple) and len(ranks) == 3
            and all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in ranks)):
        ranks = (1, 1, 1)
    total, widths = 0, (d, *cfg.expert_units)
    for i, o in zip(widths[:-1], widths[1:], strict=True):  # over depth
        r1, r2, r3 = min(ranks[0], i), min(ranks[1], o), min(ranks[2], num_tasks)
        total += r1 * r2 * r3 + i * r1 + o * r2 + num_tasks * r3 + num_tasks * o
    return total, cfg.expert_units[-1]


def _size_feature_mmoe(cfg: ModelConfig, d: int, num_tasks: int) -> tuple[int, int]:
    per_group = cfg.options.get("experts_per_group")
    count = (cfg.num_experts if per_group is None
             else _option(cfg, "experts_per_group", 1) if not isinstance(per_group, dict)
             else 1)  # spread: at least num_experts; {group: n}: at least one
    return _experts(count + _option(cfg, "shared_experts", 0), num_tasks, cfg, d)


def _size_mixed_mmoe(cfg: ModelConfig, d: int, num_tasks: int) -> tuple[int, int]:
    width = _option(cfg, "out_units", cfg.expert_units[-1]) or cfg.expert_units[-1]
    specs = cfg.options.get("experts")
    if specs is None:  # the default bank: MLPs, one cross network, one factorisation machine
        mlps = max(1, cfg.num_experts - 2)
        count = mlps + 2
        experts = (mlp_parameters(d, (*cfg.expert_units[:-1], width), mlps)
                   + d * width + d + width)
    else:  # every expert reads x (at least d weights) and projects to width H
        counts = ([s.get("count", 1) for s in specs if isinstance(s, dict)]
                  if isinstance(specs, list | tuple) else [])
        count = sum(c for c in counts if isinstance(c, int) and c >= 1) or 1
        experts = count * (d + width)
    return experts + num_tasks * d * count, width


def _never(cfg: ModelConfig) -> bool:
    return False


def _always(cfg: ModelConfig) -> bool:
    return True


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, a one-line description, its backbone builder, the
    estimate of its backbone's size (parameters, output width) checked before building, and
    whether the backbone it builds for a config has gates (known before building)."""

    name: str
    description: str
    build: Builder
    takes_inputs: bool = False
    size: Size = _per_task
    gated: Callable[[ModelConfig], bool] = _never


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, description: str, takes_inputs: bool = False,
             size: Size = _per_task,
             gated: Callable[[ModelConfig], bool] = _never) -> Callable[[Builder], Builder]:
    """Register a backbone builder under ``name`` (decorator); ``takes_inputs``: the builder
    also receives ``inputs=InputSpec`` (for models that need the input columns' names);
    ``size``: ``(config, d, T) -> (parameters, output width)``, a lower bound of the
    backbone's parameter count from arithmetic alone (default: T networks of
    ``expert_units`` on x), which the model checks against the memory available before it
    allocates anything; ``gated``: ``config -> bool``, whether the backbone has gates (its
    ``gated``), which decides the default gate dropout before the model is built."""

    def wrap(build: Builder) -> Builder:
        _REGISTRY[name] = ModelEntry(name, description, build, takes_inputs, size, gated)
        return build

    return wrap


def is_gated(config: ModelConfig) -> bool:
    """Whether the model ``config`` names has gates, before building it.

    Example:
        >>> is_gated(ModelConfig("mmoe")), is_gated(ModelConfig("single_task"))
        (True, False)
        >>> is_gated(ModelConfig("esmm", options={"bottom": "mmoe"}))
        True
    """
    return get_entry(config.name).gated(config)


def model_options(name: str, config: ModelConfig | None = None) -> dict[str, Any]:
    """The options model ``name`` reads and their defaults for the shape of ``config``
    (default: ``ModelConfig()``'s), found by building it on a two-column input.

    Example:
        >>> model_options("l2_constrained")
        {'alpha': 0.001}
    """
    from ..config import InputSpec, TaskSpec
    from ._options import READ
    from .model import build_model

    READ.pop(name, None)
    tasks = [TaskSpec("click"), TaskSpec("purchase", after="click")]
    base = ModelConfig(name=name) if config is None else dataclasses.replace(config, name=name)
    build_model(base, InputSpec(numeric=("a", "b")), tasks)
    return dict(READ.get(name, {}))


def available_models() -> dict[str, str]:
    """Registered model names and their one-line descriptions."""
    return {name: entry.description for name, entry in _REGISTRY.items()}


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; a clear error lists the known names."""
    _checks.check(name in _REGISTRY,
                  f"unknown model '{shown(name)}'; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _no_options(cfg: ModelConfig) -> None:
    _checks.check(not cfg.options,
                  f"model '{cfg.name}' takes no options, got {', '.join(sorted(cfg.options))}")


@register("single_task", "an independent network per task, nothing shared")
def _single_task(cfg: ModelConfig, d: int, num_tasks: int) -> Backbone:
    _no_options(cfg)
    return SingleTask(d, cfg.expert_units, num_tasks, cfg.dropout)


@register("shared_bottom", "one shared bottom network, a tower per task",
          size=lambda cfg, d, num_tasks: _per_task(cfg, d, 1))
def _shared_bottom(cfg: ModelConfig, d: int, num_tasks: int) -> Backbone:
    _no_options(cfg)
    return SharedBottom(d, cfg.expert_units, num_tasks, cfg.dropout)


@register("omoe", "one-gate mixture of experts: one softmax gate shared by all tasks",
          size=lambda cfg, d, num_tasks: _experts(cfg.num_experts, 1, cfg, d), gated=_always)
def _omoe(cfg: ModelConfig, d: int, num_tasks: int) -> Backbone:
    _no_options(cfg)
    return MixtureOfExperts(d, cfg.expert_units, cfg.num_experts, 1, num_tasks,
                            cfg.gate_bias, cfg.dropout, cfg.gate_dropout)


@register("mmoe", "multi-gate mixture of experts: one softmax gate per task (Ma et al. 2018)",
          size=lambda cfg, d, num_tasks: _experts(cfg.num_experts, num_tasks, cfg, d),
          gated=_always)
def _mmoe(cfg: ModelConfig, d: int, num_tasks: int) -> Backbone:
    _no_options(cfg)
    return MixtureOfExperts(d, cfg.expert_units, cfg.num_experts, num_tasks, num_tasks,
                            cfg.gate_bias, cfg.dropout, cfg.gate_dropout)


register("l2_constrained", "separate task networks tied by alpha * sum of squared parameter "
         "differences (paper §6.1)")(build_l2_constrained)
register("cross_stitch", "per-task hidden layers mixed by learned T x T cross-stitch units "
         "(Misra et al. 2016)")(build_cross_stitch)
register("tensor_factorization", "per-task layer weights from one Tucker factorisation "
         "(Yang and Hospedales 2017)", size=_size_tensor_factorization)(
    build_tensor_factorization)
register("cgc", "customized gate control: task-specific plus shared experts, each task's gate "
         "sees its own and the shared ones (Tang et al. 2020)", size=_size_ple,
         gated=_always)(build_cgc)
register("ple", "progressive layered extraction: stacked CGC levels with shared gates "
         "(Tang et al. 2020)", size=lambda cfg, d, num_tasks: _size_ple(
             cfg, d, num_tasks, _option(cfg, "levels", 2) or 1), gated=_always)(build_ple)
register("feature_mmoe", "MMoE whose experts each read a named group of input columns "
         "(experts allocated by feature)", takes_inputs=True, size=_size_feature_mmoe,
         gated=_always)(build_feature_mmoe)
register("mixed_mmoe", "MMoE over a bank of experts of different kinds and shapes: MLPs, "
         "cross networks, factorisation machines (experts allocated by structure)",
         size=_size_mixed_mmoe, gated=_always)(build_mixed_mmoe)


def _bottom_size(cfg: ModelConfig, d: int, num_tasks: int) -> tuple[int, int]:
    _, bottom, _ = split_head(cfg)
    return get_entry(bottom.name).size(bottom, d, num_tasks)


def _bottom_gated(cfg: ModelConfig) -> bool:
    _, bottom, _ = split_head(cfg)
    return get_entry(bottom.name).gated(bottom)


def _build_bottom(cfg: ModelConfig, d: int, num_tasks: int, inputs: Any = None) -> Backbone:
    """The backbone under a funnel head (option ``bottom``); the head is the model's."""
    _, bottom, _ = split_head(cfg)
    entry = get_entry(bottom.name)
    extra = {"inputs": inputs} if entry.takes_inputs else {}
    return entry.build(bottom, d, num_tasks, **extra)


register("esmm", "entire space multi-task model: pCTCVR = pCTR * pCVR over any bottom (option "
         "bottom, default single_task), trained on every impression (Ma et al. 2018)",
         takes_inputs=True, size=_bottom_size, gated=_bottom_gated)(_build_bottom)
register("aitm", "adaptive information transfer from each funnel step to the next, with the "
         "behavioural-expectation calibrator (option calibration), over any bottom "
         "(Xi et al. 2021)", takes_inputs=True, size=_bottom_size, gated=_bottom_gated)(
    _build_bottom)
