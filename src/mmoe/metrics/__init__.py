"""Evaluation metrics: per task (:mod:`.tasks`) and over groups of rows such as users
(:mod:`.groups`: GAUC, NDCG@k, MRR, calibration)."""

from .groups import calibration, gauc, mrr, ndcg_at_k
from .tasks import (
    PRIMARY,
    Monitor,
    combined_score,
    evaluate,
    monitored,
    primary_metric,
    task_outputs,
    task_skill,
)

__all__ = ["PRIMARY", "Monitor", "calibration", "combined_score", "evaluate", "gauc",
           "monitored", "mrr", "ndcg_at_k", "primary_metric", "task_outputs", "task_skill"]
