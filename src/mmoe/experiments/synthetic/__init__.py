"""The paper's synthetic task-relatedness study (§5): settings (:mod:`.config`), the run
(:mod:`.run`), the claims checked (:mod:`.claims`) and the report (:mod:`.report`)."""

from .config import SyntheticConfig, build_synthetic_model, planned_steps
from .run import run_synthetic

__all__ = ["SyntheticConfig", "build_synthetic_model", "planned_steps", "run_synthetic"]
