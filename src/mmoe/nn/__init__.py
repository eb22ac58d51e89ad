"""Torch-only building blocks: stacked experts, gates, towers, the feature encoder."""

from .encoder import FeatureEncoder
from .gates import Gates, mix_experts
from .stacked import StackedLinear, StackedMLP
from .towers import Towers

__all__ = ["FeatureEncoder", "Gates", "StackedLinear", "StackedMLP", "Towers", "mix_experts"]
