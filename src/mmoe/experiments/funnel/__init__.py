"""The funnel experiment (`mmoe reproduce funnel`): ESMM, AITM and the plain multi-task
models on the generated impression log, against its true probabilities (:mod:`.run`), and
its report (:mod:`.report`)."""

from .run import MODELS, FunnelConfig, entire_space_auc, run_funnel

__all__ = ["MODELS", "FunnelConfig", "entire_space_auc", "run_funnel"]
