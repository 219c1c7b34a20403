"""Progress of long work for a log: plain lines, at most one every few seconds.

On a terminal the command line shows a rich progress bar. Piped into a file or a CI
log a bar is useless (it redraws one line with carriage returns and escape codes), and
silence is worse: a six-minute run that prints nothing looks hung. :class:`ProgressLines`
writes one self-contained line at a time instead, each saying how far the work is, how
long it has taken and about how long is left::

    twinedge: 240/2400 steps (10%) after 36 s, about 5 min 24 s left (greedy+threshold: step 240/600)

It prints nothing for work that ends within the first interval, so short commands stay
quiet, and a last line when longer work ends. The clock is a parameter
(``time.monotonic`` by default), so tests drive it by hand instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

EVERY_S = 5.0
"""Seconds between two progress lines (the first comes after this long)."""


def duration(seconds: float) -> str:
    """``seconds`` rounded to whole seconds, for people: ``"42 s"``, ``"5 min 24 s"``,
    ``"2 h 3 min"``.

    Examples:
        >>> duration(41.6), duration(324), duration(7380)
        ('42 s', '5 min 24 s', '2 h 3 min')
    """
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


class ProgressLines:
    """Progress as a line every ``every_s`` seconds on ``stream``.

    Parameters:
        total: how many units the whole work has (steps of every run together, or runs).
        unit: what a unit is called, plural (``"steps"``, ``"runs"``).
        stream: where the lines go (the command's stderr).
        every_s: the least time between two lines; the first line comes after it too.
        clock: seconds on a monotonic clock (``time.monotonic``; a test passes its own).
        prefix: the start of every line (the command's name).

    Examples:
        >>> import io
        >>> now = [0.0]
        >>> out = io.StringIO()
        >>> p = ProgressLines(100, "steps", stream=out, every_s=5, clock=lambda: now[0])
        >>> p.update(10)             # after 0 s: too early for a line
        >>> now[0] = 6.0; p.update(30, "a+b: step 30/100")
        >>> now[0] = 8.0; p.update(40)   # 2 s after the last line: none
        >>> now[0] = 20.0; p.finish()
        >>> print(out.getvalue(), end="")
        twinedge: 30/100 steps (30%) after 6 s, about 14 s left (a+b: step 30/100)
        twinedge: 100/100 steps done in 20 s
    """

    def __init__(
        self,
        total: int,
        unit: str,
        *,
        stream: TextIO,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        prefix: str = "twinedge",
    ):
        if every_s <= 0:
            raise ValueError(f"every_s must be positive, got {every_s}")
        self.total = max(0, int(total))
        self.unit = unit
        self.stream = stream
        self.every_s = float(every_s)
        self.clock = clock
        self.prefix = prefix
        self.done = 0
        self.detail = ""
        self.lines = 0
        self._start = clock()
        self._next = self._start + self.every_s

    def update(self, done: int, detail: str = "") -> None:
        """Record that ``done`` units of the whole are finished (``detail``: where the work
        is, e.g. the run and its step) and print a line if ``every_s`` has passed since
        the last one."""
        self.done = min(max(0, int(done)), self.total) if self.total else max(0, int(done))
        self.detail = detail
        self.tick()

    def tick(self) -> None:
        """Print a line with the last recorded progress if it is time for one (a
        heartbeat for work that reports only when a part of it ends)."""
        now = self.clock()
        if now < self._next:
            return
        # the next line is due a whole interval after this one, however late this one was
        self._next = now + self.every_s
        elapsed = now - self._start
        line = f"{self.prefix}: {self.done}/{self.total} {self.unit}"
        if self.total:
            line += f" ({100 * self.done // self.total}%)"
        line += f" after {duration(elapsed)}"
        if 0 < self.done < self.total:
            left = elapsed / self.done * (self.total - self.done)
            line += f", about {duration(left)} left"
        if self.detail:
            line += f" ({self.detail})"
        self._write(line)

    def finish(self) -> None:
        """The work is done: a last line, if any line was printed before (work that
        ended within the first interval stays silent)."""
        if self.lines:
            elapsed = self.clock() - self._start
            self._write(
                f"{self.prefix}: {self.total}/{self.total} {self.unit} done in {duration(elapsed)}"
            )

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
        self.lines += 1
