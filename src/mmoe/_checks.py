"""Parameter validation helpers: one message format for every user-facing check.

Messages name the thing that is wrong and how to fix it, e.g.
``task 'income': binary labels must have 2 distinct values, column 'income_50k' has 3``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def fail(message: str) -> None:
    """Raise the library's user-error type (``ValueError``) with ``message``."""
    raise ValueError(message)


def check(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` when ``condition`` is false."""
    if not condition:
        raise ValueError(message)


def positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an int, or fail if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        fail(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative(value: Any, name: str) -> float:
    """Return ``value`` as a float, or fail if it is negative or not a number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        fail(f"{name} must be a number >= 0, got {value!r}")
    if not v >= 0:
        fail(f"{name} must be a number >= 0, got {value!r}")
    return v


def units(value: Iterable[int], name: str, allow_empty: bool = False) -> tuple[int, ...]:
    """Return layer widths as a tuple of positive ints."""
    out = tuple(value)
    if not out and not allow_empty:
        fail(f"{name} needs at least one layer width, got {out!r}")
    for u in out:
        positive_int(u, f"{name} entry")
    return out


def one_of(value: Any, choices: Iterable[Any], name: str) -> Any:
    """Fail unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        fail(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value
