"""Progress of long work (training runs, reproductions, tuning, prediction over big files):
a tqdm bar on a terminal; otherwise (a log file, a scheduler, a pipe) a line through
``logging`` (logger ``mmoe.progress``) at most every ``every`` seconds and at the end, so that
the log of a run, even a killed one, shows how far it got. The CLI routes ``mmoe.*`` loggers
to stderr (``mmoe --quiet`` silences them); a library user routes them as they like.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

LOG = logging.getLogger("mmoe.progress")


def _duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``1.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class LogBar:
    """tqdm's ``update`` / ``set_postfix_str`` / ``close`` interface, writing log lines.

    Example:
        >>> clock = iter(range(0, 1000, 20)).__next__
        >>> bar = LogBar(4, "census", "run", every=30, clock=clock)
        >>> lines = []
        >>> bar.emit = lines.append
        >>> for _ in range(4):
        ...     bar.update()
        >>> bar.close()
        >>> lines
        ['census: 2/4 runs (50%), 40 s, about 40 s left', 'census: 4/4 runs (100%), 80 s']
    """

    def __init__(self, total: int | None, desc: str, unit: str, every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit, self.every, self.clock = total, desc, unit, every, clock
        self.n, self.postfix, self._logged = 0, "", 0
        self._start = self._last = clock()
        self.emit: Callable[[str], None] = LOG.info

    def __enter__(self) -> LogBar:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:  # a failure's own message says where it stopped
            self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self._last >= self.every:
            self._last = now
            self._line(now)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        if self.n != self._logged:
            self._line(self.clock())

    def _line(self, now: float) -> None:
        self._logged = self.n
        elapsed = now - self._start
        units = f"{self.unit}s" if self.unit and not self.unit.endswith("s") else self.unit
        if self.total:
            text = (f"{self.desc}: {self.n:,}/{self.total:,} {units} "
                    f"({100 * self.n / self.total:.0f}%), {_duration(elapsed)}")
            if 0 < self.n < self.total:
                text += f", about {_duration(elapsed * (self.total - self.n) / self.n)} left"
        else:
            text = f"{self.desc}: {self.n:,} {units}, {_duration(elapsed)}"
        self.emit(text + (f" ({self.postfix})" if self.postfix else ""))


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool | None = None,
                 every: float = 30.0) -> Any:
    """A progress reporter with tqdm's interface: a bar when ``enabled`` (``None``: when
    stderr is a terminal), else a :class:`LogBar`; nothing when ``enabled`` is ``False`` or
    the ``mmoe`` logger is quiet."""
    if enabled is False:
        return tqdm(total=total, disable=True)
    if enabled or sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "row")
    if not LOG.isEnabledFor(logging.INFO):
        return tqdm(total=total, disable=True)
    return LogBar(total, desc, unit, every)
