"""Behaviours and small tools the edge tests share (behaviours are found by import path,
``tests.edge.helpers:Name``, as users' own would be)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

from twinedge.edge import EdgeHost, ReplicaApplier, TwinBehaviour, TwinView


class FakeClock:
    """An injected clock: ``clock()`` returns ``now``; ``advance(dt_s)`` moves it."""

    def __init__(self, now_s: float = 1000.0, step_s: float = 0.0):
        self.now_s, self.step_s = now_s, step_s

    def __call__(self) -> float:
        t = self.now_s
        self.now_s += self.step_s
        return t

    def advance(self, dt_s: float) -> None:
        self.now_s += dt_s


class AppendLog(TwinBehaviour):
    """Each report ``{"u": {"id": k}}`` appends ``k`` to ``features.log.properties.ids``
    (a list: merge patches replace lists whole), so applying a report twice shows as a
    duplicate id, and the revision counts the reports applied."""

    name = None

    def on_report(self, twin: TwinView, report: Mapping[str, Any], now_s: float) -> dict | None:
        ids = list(twin.properties("log").get("ids", []))
        ids.append(report["u"]["id"])
        return {"features": {"log": {"properties": {"ids": ids}}}}


class Broken(TwinBehaviour):
    """Raises on reports, returns an invalid patch on ticks."""

    name = None

    def on_report(self, twin, report, now_s):
        raise ZeroDivisionError("division by zero")

    def on_tick(self, twin, now_s):
        return {"_revision": 7}


def stamp(twin: TwinView, report: Mapping[str, Any], now_s: float) -> dict:
    """A report function: records when the last report came."""
    return {"attributes": {"last_report_s": now_s}}


def replicate(hosts: list[EdgeHost], replica: ReplicaApplier, rounds: int = 10) -> None:
    """Ship every host's outbox to ``replica`` until nothing is pending (records that come
    too early wait for the next round)."""
    for _ in range(rounds):
        left = 0
        for h in hosts:
            recs = h.pending(limit=100_000)
            last = replica.apply_all(recs)
            if last:
                h.ack_replicated(last)
            left += len(h.pending(limit=1))
        if not left:
            return
    raise AssertionError(f"replication did not converge in {rounds} rounds")


class CommitGate:
    """Holds the next commit of ``host`` in its worker thread until :meth:`release`, and
    notes every commit from then on as ``(records, twins whose ownership it writes)``. The
    host must commit that batch in a thread (``inline_max_records=0``), so that its event
    loop runs on while the commit waits: what the loop queues meanwhile is what a busy host
    queues during a slow commit. ``hold=False``: only note the commits."""

    def __init__(self, host: EdgeHost, *, hold: bool = True):
        self.commits: list[tuple[int, list[str]]] = []
        self._entered, self._go = threading.Event(), threading.Event()
        if not hold:  # only note the commits
            self._entered.set()
        append = host.log.append

        def gated(records: Any, ownership: Any = (), **kw: Any) -> Any:
            own = list(ownership)
            self.commits.append((len(records), sorted(o.twin_id for o in own)))
            if not self._entered.is_set():
                self._entered.set()
                self._go.wait(30)
            return append(records, own, **kw)

        host.log.append = gated  # type: ignore[method-assign]

    async def entered(self) -> None:
        """Return once the held commit is waiting in its thread."""
        assert await asyncio.to_thread(self._entered.wait, 30), "no commit started"

    def release(self) -> None:
        self._go.set()
