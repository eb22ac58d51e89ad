"""Evaluation metrics: per task (:mod:`.tasks`) and over groups of rows such as users
(:mod:`.groups`: GAUC, NDCG@k, MRR, calibration)."""

from .groups import calibration, gauc, mrr, ndcg_at_k
from .tasks import PRIMARY, evaluate, monitored, primary_metric, task_outputs

__all__ = ["PRIMARY", "calibration", "evaluate", "gauc", "monitored", "mrr", "ndcg_at_k",
           "primary_metric", "task_outputs"]
