"""Checks of a saved encoder description (``encoder.json``): what ``TableEncoder.to_dict``
cannot have written (a missing key, a wrong type, a nested structure, a non-finite statistic)
is one ``ValueError`` line, never a traceback."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _checks
from ..config import TaskSpec


def show(value: Any) -> str:
    """A value for a message: a scalar's repr (at most 60 characters), else its type.

    Example:
        >>> show("x" * 100)[-5:], show([1, 2])
        ('xx...', 'a list')
    """
    value = value.item() if isinstance(value, np.generic) else value
    if not isinstance(value, str | int | float | bool | None):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

KEYS = ("tasks", "numeric", "categorical", "weight_column", "exclude", "min_count", "stats",
         "indicators", "vocab")
TASK_KEYS = {"name", "kind", "column", "classes", "positive", "weight", "after"}


def check(ok: bool, what: str) -> None:
    _checks.check(ok, f"encoder description: {what}; it was not written by "
                  "TableEncoder.to_dict (retrain the model)")


def all_str(values: Sequence[Any]) -> bool:
    return all(isinstance(v, str) for v in values)


def finite(value: Any) -> bool:
    """A JSON number (not a bool) that is finite as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond float range
        return False


def names(value: Any, key: str) -> list[str]:
    check(isinstance(value, list) and all_str(value), f"'{key}' must be a list of names")
    return list(value)


def pairs(value: Any, key: str, names: set[str], every: bool) -> dict[str, tuple[float, float]]:
    """``{name: [mean, std]}`` with finite numbers, std > 0, for ``names`` (all if ``every``)."""
    check(isinstance(value, dict) and set(value) <= names and (not every or set(value) == names),
           f"'{key}' must map {'each of ' if every else ''}{sorted(names)[:5]} to [mean, std]")
    for name, pair in value.items():
        check(isinstance(pair, list) and len(pair) == 2 and all(map(finite, pair))
               and pair[1] > 0, f"'{key}' of {show(name)} must be [mean, std], finite numbers "
               f"with std > 0, not {show(pair)}")
    return {k: (float(v[0]), float(v[1])) for k, v in value.items()}


def task(data: Any) -> TaskSpec:
    """A saved task, with the label values a fitted encoder has learnt."""
    check(isinstance(data, dict) and set(data) <= TASK_KEYS
           and isinstance(data.get("name"), str), f"a task must be a table of "
           f"{', '.join(sorted(TASK_KEYS))}, not {show(data)}")
    name = show(data["name"])
    classes = data.get("classes", [])
    check(isinstance(classes, list | tuple) and all_str(classes)
           and all(isinstance(data.get(k), str | None)
                   for k in ("kind", "column", "positive", "after"))
           and finite(data.get("weight", 1.0)), f"task {name} has malformed fields")
    try:
        task = TaskSpec.from_dict(data)
    except ValueError as err:
        check(False, f"task {name}: {err}")
    check(task.kind == "regression" or (task.kind == "multiclass" and len(task.classes) >= 2)
           or (len(task.classes) == 2 and task.positive == task.classes[1]),
           f"task {name} lacks the label values learnt in training")
    return task
