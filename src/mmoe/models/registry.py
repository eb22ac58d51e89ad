"""The model registry: one name -> one backbone builder. A new model is a new backbone (a
:class:`~mmoe.models.protocol.Backbone`) plus one ``register`` line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import _checks
from ..config import ModelConfig
from .expert_allocation import build_feature_mmoe, build_mixed_mmoe
from .moe import MixtureOfExperts, SharedBottom, SingleTask
from .ple import build_cgc, build_ple
from .protocol import Backbone
from .soft_sharing import build_cross_stitch, build_l2_constrained
from .tensor_factorization import build_tensor_factorization

# builder(config, in_features d, num_tasks T) -> Backbone; a builder registered with
# takes_inputs=True also gets ``inputs=InputSpec`` (column names).
Builder = Callable[[ModelConfig, int, int], Backbone]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, a one-line description and its backbone builder."""

    name: str
    description: str
    build: Builder
    takes_inputs: bool = False


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, description: str,
             takes_inputs: bool = False) -> Callable[[Builder], Builder]:
    """Register a backbone builder under ``name`` (decorator); ``takes_inputs``: the builder
    also receives ``inputs=InputSpec`` (for models that need the input columns' names)."""

    def wrap(build: Builder) -> Builder:
        _REGISTRY[name] = ModelEntry(name, description, build, takes_inputs)
        return build

    return wrap


def available_models() -> dict[str, str]:
    """Registered model names and their one-line descriptions."""
    return {name: entry.description for name, entry in _REGISTRY.items()}


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; a clear error lists the known names."""
    _checks.check(name in _REGISTRY,
                  f"unknown model '{name}'; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _no_options(cfg: ModelConfig) -> None:
    _checks.check(not cfg.options,
                  f"model '{cfg.name}' takes no options, got {', '.join(sorted(cfg.options))}")


@register("single_task", "an independent network per task, nothing shared")
def _single_task(cfg: ModelConfig, d: int, num_tasks: int) -> Backbone:
    _no_options(cfg)
    return SingleTask(d, cfg.expert_units, num_tasks, cfg.dropout)


@register("shared_bottom", "one shared bottom network, a tower per task")
def _shared_bottom(cfg: ModelConfig, d: int, num_tasks: int) -> Backbone:
    _no_options(cfg)
    return SharedBottom(d, cfg.expert_units, num_tasks, cfg.dropout)


@register("omoe", "one-gate mixture of experts: one softmax gate shared by all tasks")
def _omoe(cfg: ModelConfig, d: int, num_tasks: int) -> Backbone:
    _no_options(cfg)
    return MixtureOfExperts(d, cfg.expert_units, cfg.num_experts, 1, num_tasks,
                            cfg.gate_bias, cfg.dropout, cfg.gate_dropout)


@register("mmoe", "multi-gate mixture of experts: one softmax gate per task (Ma et al. 2018)")
def _mmoe(cfg: ModelConfig, d: int, num_tasks: int) -> Backbone:
    _no_options(cfg)
    return MixtureOfExperts(d, cfg.expert_units, cfg.num_experts, num_tasks, num_tasks,
                            cfg.gate_bias, cfg.dropout, cfg.gate_dropout)


register("l2_constrained", "separate task networks tied by alpha * sum of squared parameter "
         "differences (paper §6.1)")(build_l2_constrained)
register("cross_stitch", "per-task hidden layers mixed by learned T x T cross-stitch units "
         "(Misra et al. 2016)")(build_cross_stitch)
register("tensor_factorization", "per-task layer weights from one Tucker factorisation "
         "(Yang and Hospedales 2017)")(build_tensor_factorization)
register("cgc", "customized gate control: task-specific plus shared experts, each task's gate "
         "sees its own and the shared ones (Tang et al. 2020)")(build_cgc)
register("ple", "progressive layered extraction: stacked CGC levels with shared gates "
         "(Tang et al. 2020)")(build_ple)
register("feature_mmoe", "MMoE whose experts each read a named group of input columns "
         "(experts allocated by feature)", takes_inputs=True)(build_feature_mmoe)
register("mixed_mmoe", "MMoE over a bank of experts of different kinds and shapes: MLPs, "
         "cross networks, factorisation machines (experts allocated by structure)")(
    build_mixed_mmoe)
