"""Torch building blocks: stacked experts, gates, towers, the feature encoder. Fused work goes
through :mod:`mmoe.ops`."""

from .encoder import FeatureEncoder
from .expert_kinds import CrossExperts, FMExperts, InputMaskedMLP
from .gate_tools import gate_dropout, gate_dropout_softmax, load_balance
from .gates import Gates, mix_experts
from .periodic import PeriodicEmbedding
from .stacked import StackedLinear, StackedMLP, shared_input_linear
from .towers import Towers
from .wide import WideTerms

__all__ = ["CrossExperts", "FMExperts", "FeatureEncoder", "Gates", "InputMaskedMLP",
           "PeriodicEmbedding", "StackedLinear", "StackedMLP", "Towers", "WideTerms",
           "gate_dropout", "gate_dropout_softmax", "load_balance", "mix_experts",
           "shared_input_linear"]
