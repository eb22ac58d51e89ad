"""Diagnostics: gate statistics and their warnings, and the gate heatmap. Plain functions of
gate weights; running a model over a table is the training layer's
(:func:`mmoe.train.evaluation.gate_health_of`)."""

from .gates import (
    DEAD,
    POLARISED,
    GateHealthWarning,
    GateUsage,
    expert_names,
    gate_health,
    gate_names,
    gate_warnings,
    utilisation_frame,
)
from .heatmap import gate_heatmap

__all__ = ["DEAD", "POLARISED", "GateHealthWarning", "GateUsage", "expert_names",
           "gate_health", "gate_heatmap", "gate_names", "gate_warnings", "utilisation_frame"]
