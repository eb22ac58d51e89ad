"""Diagnostics: gate statistics and their warnings, the gate heatmap and the learning curves.
Plain functions of gate weights and histories; running a model over a table is the training
layer's
(:func:`mmoe.train.evaluation.gate_health_of`)."""

from .curves import learning_curves
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
    warn_gates,
)
from .heatmap import gate_heatmap

__all__ = ["DEAD", "POLARISED", "GateHealthWarning", "GateUsage", "expert_names",
           "gate_health", "gate_heatmap", "gate_names", "gate_warnings", "learning_curves",
           "utilisation_frame", "warn_gates"]
