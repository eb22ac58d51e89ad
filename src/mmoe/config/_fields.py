"""Validation helpers shared by the config classes: one message format, naming the field."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import MISSING, fields
from typing import Any, Literal

from .. import _checks

TaskKind = Literal["binary", "regression", "multiclass"]
TASK_KINDS: tuple[str, ...] = ("binary", "regression", "multiclass")
LOSS_WEIGHTINGS: tuple[str, ...] = ("static", "uncertainty", "gradnorm", "pcgrad")
ON_NONFINITE: tuple[str, ...] = ("stop", "skip")
MAX_SEED = 2**32 - 1
MAX_THREADS = 4096


def shown(text: Any) -> str:
    """``text`` for a one-line message.

    Args:
        text: a name from the user (a key, a column, a task).

    Returns:
        ``text`` as it is when printable, else with its line breaks and control characters
        escaped.

    Example:
        >>> shown("income"), shown("a\\nb")
        ('income', 'a\\\\nb')
    """
    text = str(text)
    return text if text.isprintable() else repr(text)[1:-1]


def _number(value: Any, name: str, low: float = 0.0, high: float = math.inf,
            high_open: bool = False, low_open: bool = False) -> float:
    """``value`` if it is a finite number (not a bool) in the range, else fail naming it."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        rule = (f"> {low:g}" if low_open else f">= {low:g}") if high == math.inf \
            else f"in {lo}{low:g}, {high:g}{hi}"
        _checks.fail(f"{name} must be a finite number {rule}, got {value!r}")
    return value


def _flag(value: Any, name: str) -> bool:
    """``value`` if it is a bool, else fail naming it."""
    _checks.check(isinstance(value, bool), f"{name} must be true or false, got {value!r}")
    return value


def _text(value: Any, name: str) -> str:
    """``value`` if it is a non-empty string, else fail naming it."""
    _checks.check(isinstance(value, str) and value != "",
                  f"{name} must be a non-empty string, got {value!r}")
    return value


def _int_range(value: Any, name: str, low: int, high: int) -> int:
    """``value`` as an int if it is an integer (numpy's too, not a bool) in [low, high], else
    fail naming it."""
    _checks.check(isinstance(value, numbers.Integral) and not isinstance(value, bool)
                  and low <= value <= high,
                  f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _units(value: Any, name: str, allow_empty: bool = False) -> tuple[int, ...]:
    """Layer widths: a list or tuple of positive ints."""
    _checks.check(isinstance(value, list | tuple), f"{name} must be a list of layer widths "
                  f"(positive integers, e.g. [32, 16]), got {value!r}")
    return _checks.units(value, name, allow_empty=allow_empty)


def _to_tuples(value: Any) -> Any:
    """JSON gives lists; configs hold tuples (hashable, immutable)."""
    if isinstance(value, list):
        return tuple(_to_tuples(v) for v in value)
    return value


def _scalar(value: Any) -> bool:
    """A label value: a string, a bool or a finite number (numpy's too)."""
    return isinstance(value, str | bool | numbers.Integral) or (
        isinstance(value, numbers.Real) and math.isfinite(value))


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form of this config."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Inverse of :meth:`to_dict`; unknown or missing keys are an error naming the key."""
        _checks.check(isinstance(data, dict), f"{cls.__name__} needs a table of settings, got "
                      f"{type(data).__name__}")
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(map(str, set(data) - names))
        _checks.check(not unknown, f"{cls.__name__}: unknown field(s) "
                      f"{', '.join(map(shown, unknown))}")
        missing = [f.name for f in fields(cls)  # type: ignore[arg-type]
                   if f.default is MISSING and f.default_factory is MISSING
                   and f.name not in data]
        _checks.check(not missing, f"{cls.__name__}: missing field {', '.join(missing)}")
        return cls(**{k: _to_tuples(v) for k, v in data.items()})
