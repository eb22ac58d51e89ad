"""The census experiment's settings: the paper's tables, and the committed per-model
hyperparameters (``configs/census_group{1,2}.toml``, chosen on validation data only) with their
TOML reader and writer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from ... import _checks
from ..._fileio import write_text
from ...config import ModelConfig, TrainConfig, shown
from ...models import available_models

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
# The seven rows of the paper's Tables 1 and 2, in the paper's order.
PAPER_MODELS: tuple[str, ...] = ("single_task", "shared_bottom", "l2_constrained",
                                 "cross_stitch", "tensor_factorization", "omoe", "mmoe")
#: every model of the census tables (the default of `mmoe reproduce census` and of
#: `mmoe tune --model all`): the paper's seven, then CGC and PLE beside MMoE
ALL_MODELS: tuple[str, ...] = (*PAPER_MODELS, "cgc", "ple")
#: the models whose input layer is a bank of experts, and those with one network per task
MOE_MODELS: tuple[str, ...] = ("omoe", "mmoe", "cgc", "ple")
PER_TASK_MODELS: tuple[str, ...] = ("single_task", "l2_constrained", "cross_stitch",
                                    "tensor_factorization")
#: runs per model: 10 gives a mean, a std and paired comparisons that the spread can judge
DEFAULT_RUNS = 10
LABELS = {"single_task": "Single-Task", "shared_bottom": "Shared-Bottom",
          "l2_constrained": "L2-Constrained", "cross_stitch": "Cross-Stitch",
          "tensor_factorization": "Tensor-Factorization", "omoe": "OMoE", "mmoe": "MMoE",
          "cgc": "CGC", "ple": "PLE"}
# Training settings a config file may set (the rest of TrainConfig is fixed by the protocol).
TRAIN_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "patience")
# The protocol's training (what every committed config was chosen and measured with): a
# constant learning rate, 10 epochs of 1024 rows unless the config says otherwise, the
# tasks' losses summed (the paper's; also on the tests' small subsets, where the default
# would be uncertainty weighting).
PROTOCOL = {"epochs": 10, "batch_size": 1024, "lr_schedule": "constant", "warmup": 0.0,
            "loss_weighting": "static"}

# Paper Tables 1 and 2 (PAPER.md): main-task AUC of the best run and the mean over 400 runs;
# auxiliary (marital) AUC of that best run and its mean.
_PAPER_COLUMNS = ("main_auc_best", "main_auc_mean", "aux_auc_at_best", "aux_auc_mean")
_PAPER_TABLES = {
    1: """single_task 0.9398 0.9337 0.9933 0.9922
          shared_bottom 0.9361 0.9295 0.9915 0.9921
          l2_constrained 0.9389 0.9359 0.9922 0.9918
          cross_stitch 0.9406 0.9361 0.9917 0.9922
          tensor_factorization 0.7460 0.6765 0.8175 0.8412
          omoe 0.9387 0.9319 0.9928 0.9923
          mmoe 0.9410 0.9359 0.9926 0.9927""",
    2: """single_task 0.8843 0.8792 0.9933 0.9922
          shared_bottom 0.8836 0.8813 0.9927 0.9917
          l2_constrained 0.8855 0.8823 0.9923 0.9918
          cross_stitch 0.8855 0.8819 0.9919 0.9921
          tensor_factorization 0.7367 0.7256 0.7453 0.7497
          omoe 0.8852 0.8813 0.9915 0.9912
          mmoe 0.8860 0.8826 0.9932 0.9924""",
}
PAPER: dict[int, dict[str, dict[str, float]]] = {
    group: {name: dict(zip(_PAPER_COLUMNS, map(float, values), strict=True))
            for name, *values in (line.split() for line in table.splitlines())}
    for group, table in _PAPER_TABLES.items()}
# Mean test AUC of an untuned open-source PyTorch MMoE (8 experts x 16 units, embeddings,
# batch norm, 5 epochs) under this protocol: what a tuned MMoE should at least reach.
REFERENCE_MMOE = {1: 0.942, 2: 0.889}


@dataclass(frozen=True)
class ModelSetup:
    """How one model is built and trained in the census experiment.

    Attributes:
        model: the model's shape (``model.name`` is the registered model).
        train: training settings (the seed is replaced per run).
        embedding_dim: width of each categorical column's embedding.
        study: how the setting was chosen, when a tuning study chose it (``mmoe tune``
            writes the protocol, the trials run, the best validation AUC, the date and the
            command): the ``[models.NAME.study]`` table; ``None`` for a hand-picked setting.
    """

    model: ModelConfig
    train: TrainConfig
    embedding_dim: int = 8
    study: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (the ``[models.NAME]`` table of a config file)."""
        model = {k: v for k, v in self.model.to_dict().items() if k != "name"}
        train = {k: v for k, v in self.train.to_dict().items() if k in TRAIN_KEYS}
        out = {"embedding_dim": self.embedding_dim, "model": model, "train": train}
        if self.study:
            out["study"] = dict(self.study)
        return out


def _run_spec(name: str, table: dict[str, Any], where: str) -> ModelSetup:
    """Parse a ``[models.NAME]`` table; errors name the file and the model."""
    name = shown(name)
    _checks.check(isinstance(table, dict), f"{where}: [models.{name}] must be a table")
    unknown = sorted(shown(k) for k in set(table) - {"embedding_dim", "model", "train", "study"})
    _checks.check(not unknown, f"{where}: model '{name}': unknown key(s) {', '.join(unknown)}; "
                  "expected embedding_dim, model, train, study")
    study = table.get("study")
    _checks.check(study is None or (isinstance(study, dict) and all(
        isinstance(v, str | int | float | bool | list) for v in study.values())),
        f"{where}: [models.{name}.study] must be a table of plain values (what mmoe tune "
        "wrote)")
    for key in ("model", "train"):
        _checks.check(isinstance(table.get(key, {}), dict),
                      f"{where}: [models.{name}.{key}] must be a table")
    train = dict(table.get("train", {}))
    bad = sorted(shown(k) for k in set(train) - set(TRAIN_KEYS))
    _checks.check(not bad, f"{where}: model '{name}': train key(s) {', '.join(bad)} cannot be "
                  f"set here; allowed: {', '.join(TRAIN_KEYS)}")
    try:
        model = ModelConfig.from_dict({**table.get("model", {}), "name": name})
        train_cfg = TrainConfig.from_dict({**PROTOCOL, **train})
        emb = _checks.positive_int(table.get("embedding_dim", 8), "embedding_dim")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: model '{name}': {err}") from err
    return ModelSetup(model, train_cfg, emb, dict(study) if study else None)


def read_config(path: str | Path, group: int | None = None) -> dict[str, ModelSetup]:
    """Read a census config file: ``group = N`` and one ``[models.NAME]`` table per model.

    Args:
        path: a TOML file as written by :func:`write_config` (or ``mmoe tune``).
        group: when given, the file's ``group`` must match it.

    Returns:
        model name -> :class:`ModelSetup`, in file order.

    Example:
        >>> specs = read_config(CONFIG_DIR / "census_group1.toml", group=1)
        >>> specs["mmoe"].model.name, specs["mmoe"].train.batch_size > 0
        ('mmoe', True)
    """
    path = Path(path)
    _checks.check(path.is_file(), f"config file '{path}' does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file '{path}' is not valid TOML: {err}") from err
    if group is not None and "group" in data:
        _checks.check(data["group"] == group, f"config file '{path}' is for group "
                      f"{data['group']!r}, not group {group}")  # repr: one line always
    models = data.get("models", {})
    _checks.check(isinstance(models, dict) and models,
                  f"config file '{path}' has no [models.NAME] tables")
    return {name: _run_spec(name, table, str(path)) for name, table in models.items()}


def default_config_path(group: int) -> Path:
    """The committed config file of ``group``."""
    return CONFIG_DIR / f"census_group{group}.toml"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {value!r} to a config file")


def format_config(group: int, specs: dict[str, ModelSetup], comment: str = "") -> str:
    """TOML text of a census config file (the format :func:`read_config` reads)."""
    lines = [f"# {line}".rstrip() for line in comment.strip().splitlines()] if comment else []
    lines += [f"group = {group}", ""]
    for name, spec in specs.items():
        d = spec.to_dict()
        lines += [f"[models.{name}]", f"embedding_dim = {d['embedding_dim']}", "",
                  f"[models.{name}.model]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in d["model"].items() if k != "options"]
        if d["model"]["options"]:
            lines += ["", f"[models.{name}.model.options]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in d["model"]["options"].items()]
        lines += ["", f"[models.{name}.train]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in d["train"].items() if v is not None]
        if "study" in d:
            lines += ["", f"[models.{name}.study]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in d["study"].items()]
        lines.append("")
    return "\n".join(lines)


def write_config(path: str | Path, group: int, specs: dict[str, ModelSetup],
                 comment: str = "") -> Path:
    """Write ``specs`` as a config file (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, format_config(group, specs, comment))


def resolve_models(models: Sequence[str] | None) -> tuple[str, ...]:
    """The models to run (default: :data:`ALL_MODELS`); unknown names fail with the choices."""
    names = tuple(models) if models else ALL_MODELS
    known = available_models()
    for name in names:
        _checks.check(name in known, f"unknown model '{name}'; choose from: "
                      f"{', '.join(sorted(known))}")
    _checks.check(len(set(names)) == len(names), f"model listed twice in {list(names)}")
    return names
