"""A stateful, property-based test of the edge tier's promises.

Hypothesis interleaves, on three hosts (real SQLite logs) and three twins: device reports
(several in flight, sent to any host and following redirects as a device edge would),
migrations of both kinds with reports racing them, crashes of a host with updates in
flight (``kill``: nothing not yet durable survives; the host is reopened from its log),
crashes of the source or the target at any point of a migration (then ``resume`` from
the logs), compaction, and replication to a :class:`ReplicaApplier`. Each report appends
a unique id to a list in the twin (``tests.edge.helpers:AppendLog``), so a lost update is
a missing id and an update applied twice is a repeated one. After every step:

- every twin has exactly one owner, and no host holds it fenced or staged any more;
- the owner's twin holds every acknowledged id exactly once, and nothing that was never
  sent; its revision counts the ids (revisions are contiguous: one per update);
- every host that gave the twin away refuses writes to it, naming a host;

and at the end the replica, fed every host's outbox, equals every owner's twin.
Commits run inline (``commit_in_thread=False``) so that an interleaving is a function of
the steps Hypothesis chose, and a failure replays exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.edge.helpers import replicate
from twinedge.edge import (
    EdgeHost,
    EpochError,
    HostClosedError,
    MigrationError,
    NotOwnerError,
    ReplicaApplier,
    TwinNotReadyError,
    TwinStatus,
    UnknownTwinError,
    migrate,
    resume,
)

HOSTS = ("h0", "h1", "h2")
TWINS = ("fleet:t0", "fleet:t1", "fleet:t2")
METHODS = st.sampled_from(["pre-copy", "stop-and-copy"])


class EdgeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="twinedge-edge-"))
        self.loop = asyncio.new_event_loop()
        self.hosts = {n: self._open(n, create=True) for n in HOSTS}
        self.ids = itertools.count()
        self.acked: dict[str, list[int]] = {t: [] for t in TWINS}
        self.maybe: dict[str, set[int]] = {t: set() for t in TWINS}
        self.replica = ReplicaApplier()
        for i, t in enumerate(TWINS):
            self.run(self.hosts[HOSTS[i]].place(t, behaviour="tests.edge.helpers:AppendLog"))

    # ------------------------------------------------------------------ helpers
    def _open(self, name: str, create: bool = False) -> EdgeHost:
        return EdgeHost.open(
            self.dir / f"{name}.sqlite", name if create else None, commit_in_thread=False
        )

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def owner(self, twin: str) -> str:
        owners = [n for n, h in self.hosts.items() if h.status(twin).status is TwinStatus.OWNED]
        assert len(owners) == 1, f"{twin}: owners {owners}"
        return owners[0]

    async def send(self, twin: str, uid: int, via: str | None = None) -> None:
        """A device edge: send to ``via`` (default the owner), follow redirects; a host
        that never had the twin sends it to the owner the core knows (never a host a
        redirect named: that one knows the twin is coming)."""
        name = via or self.owner(twin)
        redirected = False
        for _ in range(10_000):
            try:
                await self.hosts[name].apply(twin, {"u": {"id": uid}})
                return
            except NotOwnerError as e:
                assert e.owner in HOSTS and e.owner != name
                name, redirected = e.owner, True
            except UnknownTwinError:
                assert not redirected, f"{name} was named by a redirect but does not know {twin}"
                name = self.owner(twin)
            except TwinNotReadyError:
                pass
            await asyncio.sleep(0)
        raise AssertionError(f"update {uid} of {twin} was redirected forever")

    async def settle(self, tasks: dict[int, tuple[str, asyncio.Future[None]]]) -> None:
        """Record what the devices' updates came to: acknowledged, or unknown (the host
        died, or the device gave up) — those may or may not be in the log."""
        for _ in range(5):
            await asyncio.sleep(0)
        for _, task in tasks.values():
            if not task.done():
                task.cancel()
        await asyncio.gather(*(t for _, t in tasks.values()), return_exceptions=True)
        for uid, (twin, task) in tasks.items():
            if task.cancelled() or task.exception() is not None:
                exc = None if task.cancelled() else task.exception()
                assert exc is None or isinstance(exc, HostClosedError), repr(exc)
                self.maybe[twin].add(uid)
                event("an update's outcome is unknown")
            else:
                self.acked[twin].append(uid)

    def new_updates(self, twins: list[str]) -> dict[int, tuple[str, asyncio.Future[None]]]:
        out = {}
        for twin in twins:
            uid = next(self.ids)
            out[uid] = (twin, asyncio.ensure_future(self.send(twin, uid)))
        return out

    # ------------------------------------------------------------------ rules
    @rule(twin=st.sampled_from(TWINS), n=st.integers(1, 4), via=st.sampled_from(HOSTS))
    def report(self, twin: str, n: int, via: str) -> None:
        async def go() -> None:
            uids = [next(self.ids) for _ in range(n)]
            await asyncio.gather(*(self.send(twin, u, via) for u in uids))
            self.acked[twin] += uids

        self.run(go())

    @rule(
        twin=st.sampled_from(TWINS),
        dest=st.sampled_from(HOSTS),
        method=METHODS,
        racing=st.lists(st.sampled_from(TWINS), max_size=4),
    )
    def migrate_twin(self, twin: str, dest: str, method: str, racing: list[str]) -> None:
        source = self.owner(twin)
        if source == dest:
            return

        async def go() -> None:
            epoch = self.hosts[source].status(twin).epoch
            tasks = self.new_updates(racing)
            rep = await migrate(self.hosts[source], self.hosts[dest], twin, method)  # type: ignore[arg-type]
            assert (rep.source, rep.target, rep.epoch) == (source, dest, epoch + 1)
            assert rep.downtime_s >= 0 and rep.bytes_copied > 0
            await asyncio.gather(*(t for _, t in tasks.values()))
            await self.settle(tasks)

        self.run(go())

    @rule(
        twin=st.sampled_from(TWINS),
        dest=st.sampled_from(HOSTS),
        method=METHODS,
        victim=st.sampled_from(["source", "target"]),
        steps=st.integers(0, 15),
        racing=st.lists(st.sampled_from(TWINS), max_size=3),
    )
    def crash_during_migration(
        self, twin: str, dest: str, method: str, victim: str, steps: int, racing: list[str]
    ) -> None:
        source = self.owner(twin)
        if source == dest:
            return
        dead = source if victim == "source" else dest

        async def go() -> None:
            mig = asyncio.ensure_future(
                migrate(self.hosts[source], self.hosts[dest], twin, method)  # type: ignore[arg-type]
            )
            tasks = self.new_updates(racing)
            for _ in range(steps):
                await asyncio.sleep(0)
            self.hosts[dead].kill()
            with contextlib.suppress(HostClosedError, MigrationError):
                await mig
            await self.settle(tasks)
            self.hosts[dead] = self._open(dead)
            state = self.hosts[source].status(twin).status
            rep = await resume(self.hosts[source], self.hosts[dest], twin)
            event(
                f"{victim} killed, source then {state}, resume {'copied' if rep else 'copied nothing'}"
            )

        self.run(go())

    @rule(
        host=st.sampled_from(HOSTS),
        updates=st.lists(st.sampled_from(TWINS), max_size=5),
        steps=st.integers(0, 3),
    )
    def crash(self, host: str, updates: list[str], steps: int) -> None:
        async def go() -> None:
            tasks = self.new_updates(updates)
            for _ in range(steps):
                await asyncio.sleep(0)
            self.hosts[host].kill()
            await self.settle(tasks)
            self.hosts[host] = self._open(host)

        self.run(go())

    @rule(host=st.sampled_from(HOSTS))
    def ship(self, host: str) -> None:
        h = self.hosts[host]
        last = self.replica.apply_all(h.pending(limit=50))
        if last:
            h.ack_replicated(last)

    @rule(host=st.sampled_from(HOSTS))
    def compact(self, host: str) -> None:
        self.run(self.hosts[host].compact())

    @rule(twin=st.sampled_from(TWINS), delta=st.sampled_from([-1, 1]))
    def wrong_epoch(self, twin: str, delta: int) -> None:
        h = self.hosts[self.owner(twin)]
        epoch = h.status(twin).epoch + delta
        try:
            self.run(h.apply(twin, {"u": {"id": -1}}, epoch=epoch))
        except EpochError as e:
            assert e.epoch == epoch
        else:
            raise AssertionError("an update with a wrong epoch was accepted")

    @rule(via=st.sampled_from(HOSTS))
    def unknown_twin(self, via: str) -> None:
        try:
            self.run(self.hosts[via].apply("fleet:nobody", {"u": {"id": -1}}))
        except UnknownTwinError as e:
            assert e.twin_id == "fleet:nobody" and e.host_id == via
        else:
            raise AssertionError("an unknown twin accepted an update")

    # ------------------------------------------------------------------ invariants
    @invariant()
    def one_owner_and_every_acknowledged_update_once(self) -> None:
        for twin in TWINS:
            owner = self.owner(twin)
            for name, h in self.hosts.items():
                status = h.status(twin).status
                assert status in (TwinStatus.OWNED, TwinStatus.MOVED, TwinStatus.ABSENT), (
                    f"{twin} is {status} on {name}"
                )
            view = self.hosts[owner].twin(twin)
            ids = list(
                view.document.get("features", {})
                .get("log", {})
                .get("properties", {})
                .get("ids", [])
            )
            assert len(ids) == len(set(ids)), f"{twin}: applied twice: {ids}"
            assert set(self.acked[twin]) <= set(ids), (
                f"{twin}: lost {set(self.acked[twin]) - set(ids)}"
            )
            assert set(ids) <= set(self.acked[twin]) | self.maybe[twin], f"{twin}: never sent"
            assert view.revision == len(ids)

    @invariant()
    def former_owners_refuse(self) -> None:
        for twin in TWINS:
            for name, h in self.hosts.items():
                own = h.status(twin)
                if own.status is TwinStatus.MOVED:
                    try:
                        self.run(h.apply(twin, {"u": {"id": -2}}))
                    except NotOwnerError as e:
                        assert e.owner in HOSTS and e.epoch == own.owner_epoch
                    else:
                        raise AssertionError(f"{name} wrote to {twin} after giving it away")

    def teardown(self) -> None:
        try:
            replicate(list(self.hosts.values()), self.replica, rounds=10)
            for twin in TWINS:
                h = self.hosts[self.owner(twin)]
                got = self.replica.twin(twin)
                assert got is not None
                assert (got.document, got.revision) == (
                    h.twin(twin).document,
                    h.twin(twin).revision,
                )
                assert got.epoch == h.status(twin).epoch
        finally:
            for h in self.hosts.values():
                with contextlib.suppress(Exception):
                    self.run(h.close())
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)


EdgeMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEdgeTier = EdgeMachine.TestCase
