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

What a process creates after :func:`settle` (twins created live, their updated states)
would be walked again by every full collection: 10,000 twins of 40 features created after
the freeze made full collections of up to 180-195 ms. So :data:`REFREEZE`, a
:class:`Refreezer`, freezes again what survives each full collection: the next one walks
only what was promoted since. What it costs:

* CPython holds a full collection back until the objects promoted since the last one are
  a quarter of those it kept; after a refreeze that count is small, so full collections
  come more often (13 against 9 in ``benchmarks/bench_gc_refreeze.py``), each short.
* A refreeze freezes whatever is alive at that moment, in-flight objects included. One
  that later becomes part of unreachable reference cycles (a closed connection, an
  exception with its traceback) is not freed until the next deep collection: once
  every ``deep_interval_s`` (10 minutes) the refreezer unfreezes instead, and the next
  full collection walks the whole heap and frees such cycles. That one pause is as long
  as a full collection without the refreezer.
* It acts on collections of generation 2, CPython's full collections up to 3.13.

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

__all__ = ["PAUSES", "REFREEZE", "PauseMeter", "Refreezer", "settle", "status"]


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


class Refreezer:
    """Freeze what survives each full collection; every ``deep_interval_s`` let one full
    collection walk the whole heap instead (see the module docstring).

    Parameters:
        deep_interval_s: seconds between deep collections (> 0).
        clock: seconds, monotonic (injected in tests).
        freeze, unfreeze: :func:`gc.freeze` and :func:`gc.unfreeze` (injected in tests).

    Raises:
        ValueError: ``deep_interval_s`` is not a positive number.

    Examples:
        >>> calls = []
        >>> r = Refreezer(deep_interval_s=600.0, clock=iter([0.0, 30.0, 700.0, 710.0]).__next__,
        ...               freeze=lambda: calls.append("freeze"),
        ...               unfreeze=lambda: calls.append("unfreeze"))
        >>> for _ in range(3):
        ...     r.on_gc("stop", {"generation": 2})
        >>> calls  # 30 s after the start: freeze; 700 s: unfreeze, so the next walks all
        ['freeze', 'unfreeze', 'freeze']
        >>> (r.refreezes, r.deep_collections)
        (1, 1)
    """

    def __init__(
        self,
        deep_interval_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        freeze: Callable[[], None] = gc.freeze,
        unfreeze: Callable[[], None] = gc.unfreeze,
    ) -> None:
        if not deep_interval_s > 0:  # (NaN fails too)
            raise ValueError(f"deep_interval_s must be > 0, got {deep_interval_s}")
        self.deep_interval_s = deep_interval_s
        self.clock = clock
        self._freeze, self._unfreeze = freeze, unfreeze
        self._last_deep_s = clock()
        self._deep_next = False  # unfrozen: the next full collection walks the whole heap
        self.refreezes = 0
        self.deep_collections = 0
        self.installed = False

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """The :data:`gc.callbacks` hook: acts when a full collection has finished."""
        if phase != "stop" or info.get("generation") != 2:
            return
        if self._deep_next:  # this one walked everything: its survivors are frozen again
            self._deep_next = False
            self.deep_collections += 1
            self._last_deep_s = self.clock()
            self._freeze()
        elif self.clock() - self._last_deep_s >= self.deep_interval_s:
            self._deep_next = True
            self._unfreeze()
        else:
            self.refreezes += 1
            self._freeze()

    def install(self) -> None:
        """Start refreezing after full collections (once per process)."""
        if not self.installed:
            self._last_deep_s = self.clock()
            gc.callbacks.append(self.on_gc)
            self.installed = True

    def uninstall(self) -> None:
        """Stop refreezing (what is frozen stays frozen)."""
        if self.installed:
            gc.callbacks.remove(self.on_gc)
            self.installed = False


#: The process's meter (started by :func:`settle`).
PAUSES = PauseMeter()
#: The process's refreezer (started by :func:`settle`).
REFREEZE = Refreezer()


def status() -> dict[str, Any]:
    """The process's collector, as ``/metrics`` and a host's ``/status`` report it: the
    objects frozen (``frozen``), what :data:`REFREEZE` did (``refreezes``,
    ``deep_collections``) and :data:`PAUSES` per generation (``generations``)."""
    return {
        "frozen": gc.get_freeze_count(),
        "refreezes": REFREEZE.refreezes,
        "deep_collections": REFREEZE.deep_collections,
        "generations": PAUSES.snapshot(),
    }


def settle() -> None:
    """Collect once, freeze what is alive, start timing collections and refreezing what
    survives each full collection (see the module docstring). Call it once a
    long-running process has started and loaded its state; calling it again freezes
    what was created since."""
    gc.collect()
    gc.freeze()
    PAUSES.install()
    REFREEZE.install()
