"""The paper's Census-Income experiment (§6.3, Tables 1 and 2): settings (:mod:`.config`),
the runs (:mod:`.run`), the report (:mod:`.report`) and the hyperparameter search
(:mod:`.tune`)."""

from .config import ModelSetup, read_config, write_config
from .run import CensusResult, prepare, run_census, train_one

__all__ = ["CensusResult", "ModelSetup", "prepare", "read_config", "run_census", "train_one",
           "write_config"]
