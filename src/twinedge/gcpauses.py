"""The cycle collector's pauses in the long-running processes: kept short, and measured.

CPython's cycle collector stops the whole process while it runs, and a full collection
(generation 2) walks every container object alive. In a process that has imported
FastAPI, pydantic, an MQTT broker and NumPy that is most of the heap, and none of it ever
becomes garbage. Measured under 2,000 device reports/s on the 2-core machine of
``docs/benchmarks.md``: full collections of 90-170 ms in ``twinedge serve`` every few
seconds, and of 85-100 ms in each ``twinedge host``. While one runs, the process's event
loop stands still: every device report the host has in flight waits for its PUBACK, and
so does every migration step.

:func:`settle` is called by ``serve``, ``host`` and ``devices`` once they have started
and loaded what they hold. It collects once and then freezes everything alive
(:func:`gc.freeze`): the libraries, the configuration and the twins loaded at start are
never walked again. Frozen objects are still freed by reference counting once nothing
refers to them; only a reference cycle among them would stay. After it, the same load
gave full collections of 2-8 ms in ``serve`` and none in the hosts within the run.

:func:`settle` also starts :data:`PAUSES`, a :class:`PauseMeter` that times every
collection (:data:`gc.callbacks`); ``/metrics`` of ``serve`` and a host's ``/status``
report it.

Examples:
    >>> from twinedge.gcpauses import PauseMeter
    >>> meter = PauseMeter(clock=iter([0.0, 0.004, 1.0, 1.25]).__next__)
    >>> meter.on_gc("start", {"generation": 0})
    >>> meter.on_gc("stop", {"generation": 0, "collected": 3})
    >>> meter.on_gc("start", {"generation": 2})
    >>> meter.on_gc("stop", {"generation": 2, "collected": 0})
    >>> meter.snapshot()["2"]
    {'count': 1, 'seconds_total': 0.25, 'max_s': 0.25}
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

__all__ = ["PAUSES", "PauseMeter", "settle"]


class PauseMeter:
    """Count and time the cycle collector's pauses, per generation.

    Parameters:
        clock: seconds, monotonic (injected in tests).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self._started: float | None = None
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.max_s = [0.0, 0.0, 0.0]
        self.installed = False

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """The :data:`gc.callbacks` hook."""
        if phase == "start":
            self._started = self.clock()
            return
        if self._started is None:
            return
        took = self.clock() - self._started
        self._started = None
        g = min(max(int(info.get("generation", 0)), 0), 2)
        self.count[g] += 1
        self.seconds[g] += took
        self.max_s[g] = max(self.max_s[g], took)

    def install(self) -> None:
        """Start timing collections (once per process)."""
        if not self.installed:
            gc.callbacks.append(self.on_gc)
            self.installed = True

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Per generation (``"0"``, ``"1"``, ``"2"``): ``count``, ``seconds_total``,
        ``max_s`` since :meth:`install`."""
        return {
            str(g): {
                "count": self.count[g],
                "seconds_total": round(self.seconds[g], 6),
                "max_s": round(self.max_s[g], 6),
            }
            for g in range(3)
        }

    def status(self) -> dict[str, Any]:
        """:meth:`snapshot` with the objects frozen by :func:`settle` (``frozen``)."""
        return {"frozen": gc.get_freeze_count(), "generations": self.snapshot()}


#: The process's meter (started by :func:`settle`).
PAUSES = PauseMeter()


def settle() -> None:
    """Collect once, freeze what is alive and start timing collections (see the module
    docstring). Call it once a long-running process has started and loaded its state;
    calling it again freezes what was created since."""
    gc.collect()
    gc.freeze()
    PAUSES.install()
