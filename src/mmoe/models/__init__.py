"""Models: backbones, the MultiTaskModel that wraps them, and the registry."""

from .model import MultiTaskModel, build_model, model_from_description
from .registry import available_models, register

__all__ = ["MultiTaskModel", "available_models", "build_model", "model_from_description",
           "register"]
