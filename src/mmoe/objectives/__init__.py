"""Objectives: per-task losses (masks, sample weights) and how they become one training step
(loss weighting)."""

from .losses import MultiTaskLoss, safe_denominator
from .weighting import (
    GradNorm,
    PCGrad,
    StaticWeighting,
    UncertaintyWeighting,
    make_weighting,
    pcgrad_project,
)

__all__ = ["GradNorm", "MultiTaskLoss", "PCGrad", "StaticWeighting", "UncertaintyWeighting",
           "make_weighting", "pcgrad_project", "safe_denominator"]
