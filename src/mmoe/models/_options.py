"""Reading a model's ``ModelConfig.options``: known names, defaults, one error format."""

from __future__ import annotations

from typing import Any

from .. import _checks
from ..config import ModelConfig

#: the options each model read when last built, with their defaults (``mmoe models``)
READ: dict[str, dict[str, Any]] = {}


def read_options(cfg: ModelConfig, defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` overridden by ``cfg.options``; an unknown name fails, naming the model.

    Example:
        >>> read_options(ModelConfig("l2_constrained", options={"alpha": 0.1}), {"alpha": 1e-3})
        {'alpha': 0.1}
    """
    READ.setdefault(cfg.name, {}).update(defaults)
    unknown = sorted(set(cfg.options) - set(defaults))
    _checks.check(not unknown,
                  f"model '{cfg.name}': unknown option(s) {', '.join(map(repr, unknown))}; "
                  f"known: {', '.join(sorted(defaults)) or 'none'}")
    return {**defaults, **cfg.options}


def non_negative_int(cfg: ModelConfig, name: str, value: Any) -> int:
    """``value`` as an int >= 0, else an error naming the model and the option."""
    _checks.check(not isinstance(value, bool) and isinstance(value, int) and value >= 0,
                  f"model '{cfg.name}': option '{name}' must be an integer >= 0, got {value!r}")
    return int(value)


def positive_int(cfg: ModelConfig, name: str, value: Any) -> int:
    """``value`` as an int >= 1, else an error naming the model and the option."""
    _checks.check(not isinstance(value, bool) and isinstance(value, int) and value >= 1,
                  f"model '{cfg.name}': option '{name}' must be an integer >= 1, got {value!r}")
    return int(value)
