"""Training: the loop, checkpoints (and, later, distributed helpers)."""

from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .loop import FitResult, Trainer, evaluate_model, fit, predict, predict_logits

__all__ = ["FitResult", "Trainer", "evaluate_model", "fit", "load_checkpoint", "load_model",
           "predict", "predict_logits", "save_checkpoint"]
