"""Training: one Trainer over an epoch source (a table in memory or a stream), evaluation
passes, optimizers, checkpoints, model directories and the data-parallel helpers."""

from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .epochs import InMemoryEpochs, StreamEpochs, shuffle_batches
from .evaluation import evaluate_model, gate_health_of, predict, predict_logits, validate
from .trainer import FitResult, NonFiniteError, Trainer, fit

__all__ = ["FitResult", "InMemoryEpochs", "NonFiniteError", "StreamEpochs", "Trainer",
           "evaluate_model", "fit", "gate_health_of", "load_checkpoint", "load_model",
           "predict", "predict_logits", "save_checkpoint", "shuffle_batches", "validate"]
