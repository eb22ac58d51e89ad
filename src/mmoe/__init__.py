"""mmoe: multi-task learning with Multi-gate Mixture-of-Experts (Ma et al., KDD 2018)."""

from typing import Any

from ._version import __version__
from .config import InputSpec, ModelConfig, TaskSpec, TrainConfig
from .models import MultiTaskModel, available_models, build_model

__all__ = ["InputSpec", "ModelConfig", "MultiTaskEstimator", "MultiTaskModel", "TaskSpec",
           "TrainConfig", "__version__", "available_models", "build_model"]


def __getattr__(name: str) -> Any:
    # The estimator pulls in the readers, sklearn and the training stack: import it on first
    # use so that `import mmoe` (and every CLI start) stays quick.
    if name == "MultiTaskEstimator":
        from .app.estimator import MultiTaskEstimator

        return MultiTaskEstimator
    raise AttributeError(f"module 'mmoe' has no attribute {name!r}")
