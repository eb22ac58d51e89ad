"""Frozen configuration objects: what a task is, what the inputs are, how a model is shaped
and how it is trained. Everything here is plain data (JSON round-trips via ``to_dict`` /
``from_dict``) and validated once, in ``__post_init__``.
"""

from ._fields import (
    LOSS_WEIGHTINGS,
    MAX_SEED,
    MAX_THREADS,
    ON_NONFINITE,
    TASK_KINDS,
    TaskKind,
    shown,
)
from .features import FEATURE_KINDS, FeatureSpec, default_buckets, default_width
from .inputs import InputSpec, Lookup
from .model import ModelConfig
from .tasks import TaskSpec
from .training import TrainConfig

__all__ = ["FEATURE_KINDS", "LOSS_WEIGHTINGS", "MAX_SEED", "MAX_THREADS", "ON_NONFINITE",
           "TASK_KINDS", "FeatureSpec", "InputSpec", "Lookup", "ModelConfig", "TaskKind",
           "TaskSpec", "TrainConfig", "default_buckets", "default_width", "shown"]
