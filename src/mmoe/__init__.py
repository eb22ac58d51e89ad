"""mmoe: multi-task learning with Multi-gate Mixture-of-Experts (Ma et al., KDD 2018)."""

from ._version import __version__
from .config import InputSpec, ModelConfig, TaskSpec, TrainConfig
from .experiments.estimator import MultiTaskEstimator
from .models import MultiTaskModel, available_models, build_model

__all__ = ["InputSpec", "ModelConfig", "MultiTaskModel", "TaskSpec", "TrainConfig",
           "__version__", "available_models", "build_model", "MultiTaskEstimator"]
