"""Parameter validation helpers: one message format for every user-facing check.

Messages name the thing that is wrong and how to fix it, e.g.
``task 'income': binary labels must have 2 distinct values, column 'income_50k' has 3``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
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


def writable_dir(path: str | os.PathLike, name: str = "--out") -> Path:
    """Fail (``ValueError``) unless files can be written in ``path`` (an existing directory)
    or else in its parent directory.

    Creates the parent (the output will need it), then creates, fsyncs and removes a small
    probe file there, so a read-only or full file system, a missing permission or a path
    under a regular file is reported before any work starts, not when the result is saved.

    Example:
        >>> writable_dir(tmp_path / "runs" / "m1").name
        'm1'
        >>> writable_dir(tmp_path / "runs" / "m1" / "a" / "b.txt", "--out").name
        'b.txt'
    """
    path = Path(path)
    parent = path if path.is_dir() else path.parent
    existing = next((p for p in [parent, *parent.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        fail(f"{name} '{path}' cannot be written: '{existing}' is a file, not a directory; "
             "choose another location")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe-{os.getpid()}-", dir=parent)
        try:
            os.write(fd, b"mmoe write probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        fail(f"{name} '{path}' cannot be written ({err.strerror or type(err).__name__}: "
             f"'{err.filename or parent}'); choose a writable location with free space")
    return path


def _inside(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip(os.sep) + os.sep)


def output_apart(out: str | os.PathLike, inputs: Iterable[str | os.PathLike],
                 name: str = "--out") -> Path:
    """Fail unless the output ``out`` is none of the ``inputs`` (files or directories) and
    holds none of them, symbolic links resolved and hard links seen (the same file on disk is
    the same file), so that a command never overwrites what it reads.

    Args:
        out: the output path.
        inputs: what the command reads (a model directory and each of its own files).
        name: the option that named ``out``, for the message.

    Returns:
        ``out`` as a Path.

    Example:
        >>> output_apart("preds.csv", ["rows.csv", "model", "model/model.pt"]).name
        'preds.csv'
        >>> output_apart("model/model.pt", ["rows.csv", "model", "model/model.pt"])
        Traceback (most recent call last):
        ...
        ValueError: --out 'model/model.pt' is the input 'model/model.pt'; writing it would ...
    """
    real = os.path.realpath(out)
    for source in inputs:
        same = real == os.path.realpath(source)
        if not same and os.path.exists(out) and os.path.exists(source):
            same = os.path.samefile(out, source)
        check(not same, f"{name} '{out}' is the input '{source}'; writing it would destroy the "
              "input: choose another path")
        check(not _inside(os.path.realpath(source), real),
              f"{name} '{out}' holds the input '{source}'; writing it would destroy the input: "
              "choose another path")
    return Path(out)
