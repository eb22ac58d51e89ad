"""Models: the backbone protocol, the backbones, the MultiTaskModel that wraps them, and the
registry."""

from .model import ModelOutput, MultiTaskModel, build_model, model_from_description
from .protocol import Backbone, BackboneOut, LinearInputBackbone
from .registry import available_models, register

__all__ = ["Backbone", "BackboneOut", "LinearInputBackbone", "ModelOutput", "MultiTaskModel",
           "available_models", "build_model", "model_from_description", "register"]
