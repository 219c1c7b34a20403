"""The live driver of the orchestrator: the network of a scenario file, the twins of a
running :class:`~twinedge.runtime.service.TwinService`, positions from what devices report.

Each cycle (every ``cycle_s`` seconds of the injected clock) the driver reads the live
twins, builds the same :class:`~twinedge.orchestrator.NetworkState` the simulation
engine keeps, places the twins that have none, lets the orchestrator re-place and
migrate, and writes every new host assignment through the service's single writer
(``TwinService.set_host``: a revision of the twin, an event, and its ``_host`` field).
Decisions go to the same recorder (the ledger) as a simulation's.

A twin takes part once it reports a position: the feature ``position`` with numeric
properties ``x_m`` and ``y_m`` (metres, in the scenario's frame) and optionally
``vx_mps``, ``vy_mps``. Its demand comes from ``attributes.twin`` (``cpu_ghz``,
``mem_gb``, ``state_bytes``, ``update_bytes``, ``update_hz``, ``work_gcycles``,
``latency_req_ms``, ``tx_power_w``), field by field, and otherwise from the scenario's
entity group whose ``kind`` equals ``attributes.kind`` (else the first group).

With host processes, a twin placed on one runs the behaviour the operator chose for its
kind (``behaviours``, from ``serve --behaviour``: a built-in name or an import path, see
:func:`parse_behaviours`); the behaviour travels with the twin when it migrates. Twins
never choose their own: an import path in a document would let any API user make the
hosts import code.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from twinedge.edge import failpoints, wire
from twinedge.edge.behaviour import resolve_behaviour
from twinedge.edge.errors import (
    CommandTimeoutError,
    EdgeError,
    InvalidReportError,
    NotOwnerError,
    RevisionError,
    TwinNotReadyError,
)
from twinedge.edge.host import EdgeHost
from twinedge.edge.log import TwinStatus
from twinedge.edge.migrate import MIGRATION_METHODS, MigrationMethod, evacuate, migrate, resume
from twinedge.errors import (
    InvalidInput,
    PreconditionFailed,
    TimedOut,
    TwinedgeError,
    Unavailable,
)
from twinedge.jsonmerge import merge_patch
from twinedge.orchestrator.core import CycleOutcome, Orchestrator, Recorder
from twinedge.orchestrator.forecast import forecast
from twinedge.orchestrator.view import NetworkState
from twinedge.scenario.schema import DEMAND_FIELDS, Scenario, TwinDemand
from twinedge.world import models
from twinedge.world.state import World

log = logging.getLogger("twinedge.orchestrator")
_T = TypeVar("_T")

POSITION = "position"
MIGRATIONS_AT_ONCE = 2  # live migrations between host processes running at the same time


def parse_behaviours(text: str) -> dict[str, str]:
    """The behaviours of ``serve --behaviour``: one spec for every kind, or
    ``kind=spec`` pairs separated by commas (a spec is a built-in name or an import
    path ``package.module:Class``).

    Raises:
        ValueError: an empty spec or kind, or a kind given twice.

    Examples:
        >>> parse_behaviours("dead-reckoning")
        {'*': 'dead-reckoning'}
        >>> parse_behaviours("robot=dead-reckoning, drone=fleet.twins:Drone")
        {'robot': 'dead-reckoning', 'drone': 'fleet.twins:Drone'}
        >>> parse_behaviours("robot=")
        Traceback (most recent call last):
        ...
        ValueError: 'robot=': expected a behaviour after '='
    """
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise ValueError(f"{text!r}: an empty entry; expected SPEC or KIND=SPEC,...")
        kind, eq, spec = part.partition("=")
        kind, spec = (kind.strip(), spec.strip()) if eq else ("*", kind.strip())
        if not spec:
            raise ValueError(f"{part!r}: expected a behaviour after '='")
        if not kind:
            raise ValueError(f"{part!r}: expected a kind before '='")
        if kind in out:
            raise ValueError(f"{text!r}: kind {kind!r} is given twice")
        out[kind] = spec
    return out


def _mid(v: Any) -> float:
    """A scenario range (a value or ``[lo, hi]``) as one number: its midpoint."""
    if isinstance(v, tuple | list):
        return (float(v[0]) + float(v[1])) / 2.0
    return float(v)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def position_of(doc: dict[str, Any]) -> tuple[float, float, float | None, float | None] | None:
    """``(x_m, y_m, vx_mps, vy_mps)`` a twin reported, or ``None`` without a position."""
    props = ((doc.get("features") or {}).get(POSITION) or {}).get("properties")
    if not isinstance(props, dict):
        return None
    x, y = _number(props.get("x_m")), _number(props.get("y_m"))
    if x is None or y is None:
        return None
    return x, y, _number(props.get("vx_mps")), _number(props.get("vy_mps"))


@dataclass
class LiveSnapshot:
    """The live twins at one instant, as arrays (what a cycle works on)."""

    thing_ids: list[str]
    world: World
    xy_m: np.ndarray
    prev_xy_m: np.ndarray
    host: np.ndarray  # -1: not placed yet
    invalid: dict[str, str] = field(default_factory=dict)  # thing id -> why it is left out


@dataclass
class CycleReport:
    """What one live cycle did."""

    t_s: float
    twins: int
    placed: int = 0
    migrations: int = 0
    unplaced: int = 0
    error: str | None = None
    duration_s: float = 0.0
    decide_s: float = 0.0
    forecast_s: float = 0.0
    writes_failed: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class LiveNetwork:
    """Drives the orchestrator over a live service.

    Parameters:
        service: the running twin service (anything with ``things``, a dict of thing id
            to stored document, and ``async set_host(thing_id, host_id)``).
        scenario: the scenario whose infrastructure is the live network.
        world: the world built from ``scenario`` (only its network is used).
        orchestrator: decides; its ``step_s`` is the cycle period.
        clock: seconds (monotonic); tests pass a fake one.
        forecast_horizon_s: every this many seconds (at the end of a cycle) the live
            state is run this far ahead in the simulator (:func:`forecast`); 0: never.
        hosts: the host processes that serve the twins, by host id
            (:class:`twinedge.edge.remote.RemoteHost`); without them a twin's host is
            only recorded (its state stays in the core).
        behaviours: what the twins run on their host, by kind (``"*"``: any kind).
        migration_method: how a twin moves between hosts: ``"pre-copy"`` (copy while the
            source serves, fence for the last changes) or ``"stop-and-copy"`` (fence, then
            copy it all: the baseline; see :mod:`twinedge.edge.migrate`).

    Raises:
        TwinedgeError: the network has no host; an unknown migration method.

    Examples:
        See ``docs/live.md``; in tests, ``await live.cycle()`` runs one cycle.
    """

    def __init__(
        self,
        service: Any,
        scenario: Scenario,
        world: World,
        orchestrator: Orchestrator,
        *,
        clock: Callable[[], float] = time.monotonic,
        forecast_horizon_s: float = 10.0,
        hosts: dict[str, Any] | None = None,
        behaviours: dict[str, str] | None = None,
        migration_method: MigrationMethod = "pre-copy",
    ):
        if world.n_hosts == 0:
            raise TwinedgeError(f"network {scenario.name!r} has no host with CPU and memory")
        if migration_method not in MIGRATION_METHODS:
            raise TwinedgeError(
                f"unknown migration method {migration_method!r}; use "
                + " or ".join(MIGRATION_METHODS)
            )
        self.migration_method: MigrationMethod = migration_method
        self.behaviours = dict(behaviours or {})  # kind ("*": any kind) -> behaviour spec
        for spec in self.behaviours.values():
            resolve_behaviour(spec)  # an unknown name or import path fails here, at start
        self.service, self.scenario, self.orchestrator = service, scenario, orchestrator
        self.network = world
        self.clock = clock
        self.t0 = clock()
        self.cycles = 0
        self.last: CycleReport | None = None
        self.migrations_total = 0
        self.placements_total = 0
        self.server_energy_j = np.zeros(world.n_hosts)
        self._host_index = {h: j for j, h in enumerate(world.host_ids)}
        self._prev_xy: dict[str, tuple[float, float]] = {}
        self._groups = self._group_defaults(scenario)
        self._kinds = {g["kind"]: i for i, g in enumerate(self._groups)}
        self._load = (
            np.zeros(world.n_hosts),
            np.zeros(world.n_hosts),
            np.zeros(world.n_hosts, np.int64),
        )
        self.forecast_horizon_s = float(forecast_horizon_s)
        self.hosts: dict[str, Any] = dict(hosts or {})
        self.migrations_failed = 0
        self.live_migrations = 0
        self.downtime_s: list[float] = []  # measured, of the recent live migrations
        self.epochs: dict[str, int] = {}  # twin -> its epoch on its host process
        self.host_processes: Any = None  # HostProcesses on this machine, when serve started them
        self.recovered: list[dict[str, Any]] = []  # hosts that died and where their twins went
        self.unrecovered: set[str] = set()  # dead hosts whose recovery failed: tried again
        # twin -> (source, target) of a live migration that has not finished (it failed
        # half-way: finished with ``resume`` when a host dies or the next cycle begins)
        self.moving: dict[str, tuple[str, str]] = {}
        # twins being placed on a host for the first time: the core refuses their writes
        self._placing: set[str] = set()
        self.reconciled = False  # where the twins are was read from the hosts (first cycle)
        self.cycle_failure: str | None = None  # why the last cycle raised, if it did
        self.forecast: dict[str, Any] | None = None
        self._forecast_due_s = 0.0
        self._state: tuple[World, NetworkState] | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # the one thread that decides and writes to the recorder: the ledger's SQLite
        # connections belong to the thread that opened them, and a decision that a
        # cancelled cycle leaves running finishes before the recorder is closed (FIFO)
        self._decider: ThreadPoolExecutor | None = None
        self._ended = False  # the recorder has the end of the run (cleared by a cycle)
        self._migration_slots = asyncio.Semaphore(MIGRATIONS_AT_ONCE)

    # --- reading the live twins --------------------------------------------------------
    def _group_defaults(self, scenario: Scenario) -> list[dict[str, Any]]:
        groups = [
            {"kind": g.kind, **{f: _mid(getattr(g.twin, f)) for f in DEMAND_FIELDS}}
            for g in scenario.entities
        ]
        if not groups:  # a network without entity groups: the schema's defaults
            groups = [
                {"kind": "entity", **{f: _mid(getattr(TwinDemand(), f)) for f in DEMAND_FIELDS}}
            ]
        return groups

    def snapshot(self) -> LiveSnapshot:
        """Read every live twin that has a position (on the event loop: no awaits)."""
        ids: list[str] = []
        rows: list[list[float]] = []
        xy: list[tuple[float, float]] = []
        prev: list[tuple[float, float]] = []
        host: list[int] = []
        group: list[int] = []
        owners: dict[str, int] = {}
        owner: list[int] = []
        invalid: dict[str, str] = {}
        step_s = self.orchestrator.step_s
        for tid, doc in self.service.things.items():
            pos = position_of(doc)
            if pos is None:
                continue
            attrs = doc.get("attributes") or {}
            g = self._kinds.get(attrs.get("kind"), 0) if isinstance(attrs.get("kind"), str) else 0
            base = self._groups[g]
            twin_attr = attrs.get("twin")
            given: dict[str, Any] = twin_attr if isinstance(twin_attr, dict) else {}
            row = []
            bad = None
            for f in DEMAND_FIELDS:
                v = given.get(f, base[f])
                num = _number(v)
                if num is None or num < 0 or (f in ("latency_req_ms", "update_hz") and num <= 0):
                    bad = f"attributes.twin.{f}: got {v!r}; expected a number > 0"
                    break
                row.append(num)
            if bad:
                invalid[tid] = bad
                continue
            x, y, vx, vy = pos
            ids.append(tid)
            rows.append(row)
            xy.append((x, y))
            if vx is not None and vy is not None:
                prev.append((x - vx * step_s, y - vy * step_s))
            else:
                prev.append(self._prev_xy.get(tid, (x, y)))
            host.append(self._host_index.get(str(doc.get("_host")), -1))
            group.append(g)
            owner.append(owners.setdefault(str(doc.get("_domain", "")), len(owners)))
        n = len(ids)
        d = np.asarray(rows, dtype=float).reshape(n, len(DEMAND_FIELDS))
        cols = {f: d[:, i].copy() for i, f in enumerate(DEMAND_FIELDS)}
        w = self.network
        n_groups = w.group_allowed.shape[0]
        entities = {
            "entity_ids": np.asarray(ids, dtype=object),
            "entity_kind": np.asarray(group, dtype=np.int64),
            "entity_owner": np.asarray(owner, dtype=np.int64),
            "entity_group": np.minimum(np.asarray(group, dtype=np.int64), max(n_groups - 1, 0)),
            "xy_m": np.asarray(xy, dtype=float).reshape(n, 2),
            **cols,
        }
        extra: dict[str, Any] = {"owners": list(owners), "kinds": [g["kind"] for g in self._groups]}
        if n_groups == 0:
            extra["group_allowed"] = np.ones((1, w.n_hosts), dtype=bool)
        world = w.with_entities(entities, **extra)
        return LiveSnapshot(
            ids,
            world,
            entities["xy_m"],
            np.asarray(prev, dtype=float).reshape(n, 2),
            np.asarray(host, dtype=np.int64),
            invalid,
        )

    # --- one cycle -----------------------------------------------------------------------
    async def _on_decider(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` on the decider thread, after what was handed to it before."""
        if self._decider is None:
            self._decider = ThreadPoolExecutor(1, thread_name_prefix="twinedge-decider")
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._decider, call)

    def _decide(
        self, snap: LiveSnapshot, t_s: float, k: int
    ) -> tuple[np.ndarray, CycleOutcome, int, float]:
        """Place new twins, then one orchestrator cycle, then the forecast when one is
        due (runs on the decider thread). Returns the hosts, the cycle's outcome, how many
        twins were placed and the forecast's time in seconds."""
        orch, world = self.orchestrator, snap.world
        new = int((snap.host < 0).sum())
        host = orch.place_new(world, snap.xy_m, snap.host, t_s) if new else snap.host
        state = NetworkState.at(world, snap.xy_m, host=host)
        state.prev_xy_m = snap.prev_xy_m
        state.t_s = t_s
        if self.forecast is not None:  # the last forecast: what the policies may look ahead at
            peak = {h["id"]: h["peak_utilisation"] for h in self.forecast["hosts"]}
            state.forecast_peak_utilisation = np.array(
                [peak.get(h, 0.0) for h in world.host_ids], dtype=float
            )
        orch.evaluate(world, state)
        # twins placed just now are not re-placed in the same cycle
        out = orch.cycle(world, state, k, replace=False if new else None)
        if orch.recorder:
            orch.recorder.step_end(k, t_s, world, state)
        self._account(world, state, t_s)
        self._state = (world, state)
        forecast_s = 0.0
        if self.forecast_horizon_s > 0 and t_s >= self._forecast_due_s:
            t_f = time.perf_counter()
            self._forecast_due_s = t_s + self.forecast_horizon_s
            self.forecast = self._run_forecast(world, state)
            forecast_s = time.perf_counter() - t_f
        return state.host, out, new, forecast_s

    def _run_forecast(self, world: World, state: NetworkState) -> dict[str, Any]:
        f = forecast(world, state, self.orchestrator, horizon_s=self.forecast_horizon_s or 10.0)
        f["t_s"] = state.t_s
        return f

    async def forecast_now(self) -> dict[str, Any]:
        """The latest forecast, computed now if there is none yet (after one cycle)."""
        if self.forecast is None:
            if self._state is None:
                await self.cycle()
            if self.forecast is None and self._state is not None:
                world, state = self._state
                self.forecast = await asyncio.to_thread(self._run_forecast, world, state)
        return self.forecast or {"t_s": None, "twins": 0, "steps": [], "hosts": [], "spikes": []}

    def _account(self, world: World, state: NetworkState, t_s: float) -> None:
        w = self.network
        util = state.used_cpu_ghz / w.host_cpu_ghz
        dt = self.orchestrator.step_s
        self.server_energy_j += (
            models.server_power_w(w.node_idle_w[w.hosts], w.node_max_w[w.hosts], util) * dt
        )
        self._load = (
            state.used_cpu_ghz.copy(),
            state.used_mem_gb.copy(),
            np.bincount(state.host, minlength=w.n_hosts),
        )

    async def cycle(self) -> CycleReport:
        """Run one cycle now and return what it did. Never raises for a bad policy
        answer or an infeasible network: the report carries the error and the twins keep
        their hosts."""
        async with self._lock:
            self._ended = False
            if self.host_processes is not None:
                for host in [*await self.host_processes.dead(), *sorted(self.unrecovered)]:
                    await self._recover(host)
            if self.hosts and not self.reconciled:
                await self._reconcile()
            if self.moving:
                await self._finish_moves()
            t_start = self.clock()
            t_s = t_start - self.t0
            snap = self.snapshot()
            report = CycleReport(t_s=t_s, twins=len(snap.thing_ids))
            k = self.cycles
            self.cycles += 1
            if snap.thing_ids:
                t_d = time.perf_counter()
                try:
                    host, out, new, forecast_s = await self._on_decider(self._decide, snap, t_s, k)
                except TwinedgeError as exc:
                    report.error = str(exc)
                    report.unplaced = int((snap.host < 0).sum())
                    log.warning("orchestrator cycle %d: %s", k, exc)
                else:
                    report.forecast_s = forecast_s
                    report.decide_s = time.perf_counter() - t_d - forecast_s
                    changed = np.flatnonzero(host != snap.host)
                    report.placed, report.migrations = new, out.migrations
                    report.writes_failed = await self._write(snap, host, changed)
                    self.placements_total += new
                    self.migrations_total += out.migrations
            for tid, why in snap.invalid.items():
                log.warning("twin %s is not placed: %s", tid, why)
            self._prev_xy = {
                t: (float(x), float(y)) for t, (x, y) in zip(snap.thing_ids, snap.xy_m, strict=True)
            }
            report.duration_s = self.clock() - t_start
            self.last = report
            return report

    async def _write(self, snap: LiveSnapshot, host: np.ndarray, changed: np.ndarray) -> int:
        """Carry out the new hosts: with host processes, place or migrate each twin's
        state; then write the host through the service's writer. A twin deleted
        meanwhile is skipped. Returns how many twins did not move."""
        ids = self.network.host_ids

        async def one(i: int) -> None:
            twin, new = snap.thing_ids[i], ids[int(host[i])]
            old = ids[int(snap.host[i])] if snap.host[i] >= 0 else None
            try:
                if self.hosts:
                    await self._move_state(twin, old, new)
                await self.service.set_host(twin, new)
            finally:
                await self._end_placing(twin)

        results = await asyncio.gather(*(one(int(i)) for i in changed), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for r in failed[:3]:
            log.info("orchestrator: a host change was not written: %s", r)
        if failed and self.hosts:
            # a twin may now be on a host the core did not record (its state moved, then
            # recording its host failed): until recorded, the core refuses its writes;
            # the next cycle reads where the twins are from the hosts, as after a restart
            self.reconciled = False
        return len(failed)

    async def _move_state(self, twin: str, old: str | None, new: str) -> None:
        """Put the twin's state on host process ``new``: its first placement (a copy of
        the core's document, the device redirected from the core's broker) or a live
        migration from ``old`` (pre-copy, fenced; the device redirected by ``old``)."""

        target = self.hosts[new]
        if old is None or old not in self.hosts or old == new:
            if twin in getattr(self.service, "edge_positions", {}) and (
                not self.reconciled or (old is not None and old not in self.hosts)
            ):
                # a host has (or had) the twin: only the hosts' own answer (a reconcile)
                # or the dead host's recovery may say where it goes, never a copy of the
                # core's document, which may lack what that host acknowledged
                raise TwinedgeError(
                    f"twin {twin} is on a host the core cannot read now; it is placed once "
                    "the hosts say where it is"
                )
            # the core stops writing the twin itself first: every write it acknowledged
            # is in the copy, every later one is refused unacknowledged (the device sends
            # it again to its host) until the twin's host is recorded (see _write)
            # (taken again in _write, when this placement ends either way)
            begin = getattr(self.service, "begin_edge_move", None)
            if begin is not None:
                await begin(twin)
                self._placing.add(twin)
            doc = self.service.things[twin]  # what the mark left: nothing writes it now
            content = {k: v for k, v in doc.items() if not k.startswith("_")}
            revision = int(doc["_revision"])
            await target.place(
                twin, content, epoch=1, revision=revision, behaviour=self.behaviour_of(doc)
            )
            failpoints.hit("driver.after-place")
            self.epochs[twin] = 1
            mark = getattr(self.service, "set_edge_position", None)
            if mark is not None:
                await mark(twin, 1, revision)
            outbound = getattr(self.service, "outbound", None)
            if outbound is not None and hasattr(outbound, "publish_redirect"):
                outbound.publish_redirect(twin, {"host": new, "url": target.mqtt_url, "epoch": 1})
            failpoints.hit("driver.after-redirect")
            return
        self.moving[twin] = (old, new)  # until it is done: a failure is finished later
        try:
            # a few at a time: each one's downtime is its fence, copy and adoption, which
            # queue behind every other migration's on the same hosts
            async with self._migration_slots:
                report = await migrate(self.hosts[old], target, twin, self.migration_method)
        except Exception:
            self.migrations_failed += 1
            raise
        failpoints.hit("driver.after-release")
        del self.moving[twin]
        self.downtime_s = [*self.downtime_s[-999:], report.downtime_s]
        self.live_migrations += 1
        self.epochs[twin] = report.epoch
        await self.hosts[old].redirect(twin)
        await self._record_handover(report)

    async def _end_placing(self, twin: str) -> None:
        """The core takes writes of ``twin`` again (its first placement ended)."""
        if twin in self._placing:
            self._placing.discard(twin)
            await self.service.end_edge_move(twin)

    async def _record_handover(self, report: Any) -> None:
        """Write what a live migration measured to the ledger (a ``handover`` entry;
        written on the decider thread, after the decision running there, if any)."""
        handover = getattr(self.orchestrator.recorder, "handover", None)
        if handover is None:
            return
        body = {
            "twin": report.twin_id,
            "from_host": report.source,
            "to_host": report.target,
            "method": report.method,
            "epoch": report.epoch,
            "revision": report.final_revision,
            "downtime_s": report.downtime_s,
            "fence_s": report.fence_s,
            "copy_s": report.copy_s,
            "adopt_s": report.adopt_s,
            "total_s": report.total_s,
            "bytes": report.bytes_copied,
            "rounds": report.rounds,
        }
        t_s = self.clock() - self.t0

        try:
            await self._on_decider(handover, t_s, self.network, body)
        except Exception:  # the migration happened; a ledger that fails is logged
            log.exception("could not record the live migration of %s", report.twin_id)

    async def _recover(self, dead: str) -> None:
        """A host process died: reopen its log here, send the core what it had not
        replicated, and move every twin it owned (or was handing over) to the live host
        process with the most free CPU. Nothing it acknowledged is lost: acknowledged
        means committed to that log. A recovery that fails (the host it moves a twin to
        dies too) is tried again next cycle; a twin fenced to a host that died too is
        moved on from there (if that host adopted it, by that host's own recovery)."""

        procs = self.host_processes
        if dead in self.unrecovered:  # a recovery that failed, tried again
            log.debug("recovering the twins of host process %s again", dead)
        else:
            log.warning("host process %s died; recovering its twins from its log", dead)
        self.unrecovered.add(dead)
        procs.forget(dead)
        self.hosts.pop(dead, None)
        j = self._host_index[dead]
        self.network.group_allowed[:, j] = False  # nothing is placed there any more
        source = EdgeHost.open(procs.log_path(dead))
        try:
            apply = getattr(self.service, "apply_edge_records", None)
            while apply is not None and (records := source.pending(limit=1000)):
                answer = await apply(dead, [wire.record_to(r) for r in records])
                source.ack_replicated(min(int(answer["acked_seq"]), records[-1].seq))
            twins = source.twin_ids() + source.twin_ids(TwinStatus.FENCED)
            if not self.hosts:
                given = await self._back_to_core(source, twins)
                log.warning(
                    "host process %s died and no other host process is left: the core "
                    "serves its %d twin(s) again", dead, given,
                )  # fmt: skip
                self.recovered.append({"host": dead, "twins": given, "to": ["core"]})
                self.unrecovered.discard(dead)
                return
            cpu, _, _ = self._load
            free = {
                h: float(self.network.host_cpu_ghz[self._host_index[h]] - cpu[self._host_index[h]])
                for h in self.hosts
            }
            target = max(free, key=lambda h: free[h])
            targets = {}
            fenced_to_dead: dict[str, str] = {}  # twin -> the dead host it was fenced to
            for t in twins:
                own = source.status(t)
                targets[t] = (
                    self.hosts.get(own.owner or "", self.hosts[target])
                    if own.status == TwinStatus.FENCED
                    else self.hosts[target]
                )
                if own.status == TwinStatus.FENCED and own.owner not in self.hosts:
                    fenced_to_dead[t] = str(own.owner)
            # migrations to the dead host first: if it adopted the twin, the source lets go
            # (the twin is evacuated from the dead host's log below); if not, the source
            # serves it again under a new epoch
            reclaimed = []
            for twin, (old, new) in list(self.moving.items()):
                if new == dead and old in self.hosts:
                    await resume(self.hosts[old], self.hosts[old], twin, previous_target=source)
                    del self.moving[twin]
                    own = await self.hosts[old].ownership(twin)
                    if own.status is TwinStatus.OWNED:
                        self.epochs[twin] = own.epoch
                        reclaimed.append((twin, old))
            reports = await evacuate(
                source, {t: h for t, h in targets.items() if t not in fenced_to_dead}
            )
            for t, owner in fenced_to_dead.items():
                previous = EdgeHost.open(procs.log_path(owner))
                try:
                    rep = await resume(source, targets[t], t, previous_target=previous)
                finally:
                    await previous.close()
                if rep is not None:
                    reports.append(rep)
            for rep in reports:
                self.epochs[rep.twin_id] = rep.epoch
                self.moving.pop(rep.twin_id, None)
                await self.service.set_host(rep.twin_id, rep.target)
                await self._record_handover(rep)
            for twin, old in reclaimed:
                await self.service.set_host(twin, old)
            self.recovered.append(
                {"host": dead, "twins": len(reports), "to": sorted({r.target for r in reports})}
            )
            self.unrecovered.discard(dead)
        finally:
            await source.close()

    async def _back_to_core(self, source: EdgeHost, twins: list[str]) -> int:
        """With no live host left, the core serves the twins of the dead host ``source``
        again: everything the host acknowledged is in the core already (its log was sent
        first), so the core's copy is whole; the twin's host is cleared and its edge
        position dropped, and the core takes its writes and its device's reports. A twin
        the dead host had fenced to another dead host that adopted it is left to that
        host's own recovery (its log has the later records). Returns how many twins the
        core serves again.

        Raises:
            ServiceError: the core could not record it (tried again next cycle).
        """
        procs = self.host_processes
        given = 0
        for t in twins:
            own = source.status(t)
            if own.status == TwinStatus.FENCED and own.owner and procs is not None:
                path = procs.log_path(own.owner)
                if path.exists():
                    other = EdgeHost.open(path)
                    try:
                        adopted = t in other.twin_ids()
                    finally:
                        await other.close()
                    if adopted:
                        continue
            if t in self.service.things:
                await self.service.clear_edge_position(t)
                await self.service.set_host(t, None)
            self.epochs.pop(t, None)
            self.moving.pop(t, None)
            given += 1
        return given

    async def _reconcile(self) -> None:
        """Read where the twins are from the host processes (at the first cycle: after a
        restart of the core, the migrations it had in flight were only in its memory).
        A twin fenced on a host is a migration that stopped half-way: it goes to
        ``moving``, which :meth:`_finish_moves` finishes (or rolls back) next. A twin a host
        owns while the core names another host for it (the core died after a move or a
        placement, before recording it) gets its host written; one placed there before the
        core set its replica position (none of the host's records of it counted) is
        dropped there, and placed again. A host that does not answer is logged and
        everything is read again next cycle."""

        moving: dict[str, tuple[str, str]] = {}
        owned: dict[str, str] = {}
        try:
            for hid, host in self.hosts.items():
                for twin in await host.twin_ids(TwinStatus.FENCED):
                    own = await host.ownership(twin)
                    if own.owner in self.hosts and twin in self.service.things:
                        moving[twin] = (hid, own.owner)
                owned.update(dict.fromkeys(await host.twin_ids(TwinStatus.OWNED), hid))
            positions = getattr(self.service, "edge_positions", {})
            for twin, hid in owned.items():
                doc = self.service.things.get(twin)
                old = doc.get("_host") if doc else None
                if doc is None or twin in moving or old == hid:
                    continue
                if old not in self.hosts and twin not in positions:
                    # placed there, not marked in the core (no record of it counted):
                    # dropped, so that the next cycle places the twin from the core's copy
                    log.warning("twin %s was placed on host %s unrecorded: dropped", twin, hid)
                    await self.hosts[hid].retire(twin)
                    continue
                log.warning("twin %s is served by host %s, not %s: recorded", twin, hid, old)
                self.epochs[twin] = (await self.hosts[hid].ownership(twin)).epoch
                await self.service.set_host(twin, hid)
                if old in self.hosts:
                    await self.hosts[old].redirect(twin)
        except EdgeError as exc:
            log.warning("could not read where the twins are from the hosts: %s", exc)
            return
        for twin, move in moving.items():
            self.moving.setdefault(twin, move)
        self.reconciled = True

    async def _finish_moves(self) -> None:
        """Finish the live migrations that failed half-way between two live hosts (a host
        did not answer in time): :func:`~twinedge.edge.migrate.resume` completes a fenced
        one or drops the target's staged copy of one that was not; either way the core
        learns where the twin is. One that fails again is tried next cycle."""

        for twin, (old, new) in list(self.moving.items()):
            if old not in self.hosts or new not in self.hosts:
                continue  # a dead host: its recovery finishes the move
            try:
                report = await resume(self.hosts[old], self.hosts[new], twin)
                own = await self.hosts[new].ownership(twin)
            except Exception as exc:
                log.info("migration of %s from %s to %s still unfinished: %s", twin, old, new, exc)
                continue
            del self.moving[twin]
            if report is not None or own.status is TwinStatus.OWNED:
                self.epochs[twin] = own.epoch
                self.live_migrations += 1
                await self.service.set_host(twin, new)
                await self.hosts[old].redirect(twin)
                if report is not None:
                    await self._record_handover(report)

    def behaviour_of(self, doc: dict[str, Any]) -> str:
        """The behaviour a twin runs on its host: the one chosen for its
        ``attributes.kind``, else the one for every kind (``*``), else ``default``."""
        kind = (doc.get("attributes") or {}).get("kind")
        spec = self.behaviours.get(kind) if isinstance(kind, str) else None
        return spec or self.behaviours.get("*") or "default"

    async def forward_desired(
        self, twin: str, desired: dict[str, Any], ack: str = "core", timeout_s: float = 5.0
    ) -> dict[str, Any]:
        """Write desired state to the host process serving ``twin`` (it commits it and
        sends it to the device) and wait as ``ack`` says (see :meth:`edge_write`).

        Raises:
            Unavailable: the host did not answer, or (``core``) the core's copy did not
                catch up within ``timeout_s`` (the host has the change; it will arrive).
        """
        host = self._owner_host(twin)
        revision = await self._on_host(host, host.set_desired(twin, desired))
        return await self._settle(twin, revision, ack, desired, timeout_s)

    async def edge_write(
        self,
        twin: str,
        patch: dict[str, Any],
        if_revision: int | None,
        ack: str = "core",
        timeout_s: float = 5.0,
    ) -> dict[str, Any]:
        """Have the host process serving ``twin`` commit an application's write (a merge
        patch of the document, conditioned on the host revision ``if_revision``); then
        return the thing: at once with ack ``edge`` (the core's copy with the patch
        applied, without ``_revision``: the core numbers the change when it arrives), or
        once replication has brought the core's copy to it with ack ``core``.

        Raises:
            PreconditionFailed: the twin is not at ``if_revision`` on its host.
            InvalidInput: the host refused the patch.
            Unavailable: the host did not answer, or (``core``) the core's copy did not
                catch up within ``timeout_s`` (the host has the change; it will arrive).
        """
        host = self._owner_host(twin)
        revision = await self._on_host(host, host.write(twin, patch, if_revision=if_revision))
        return await self._settle(twin, revision, ack, patch, timeout_s, whole=True)

    async def edge_command(
        self, twin: str, subject: str, payload: Any, timeout_s: float = 10.0
    ) -> Any:
        """Send a command to the device of ``twin`` through the host process serving it
        (the device is connected there) and return the device's answer. A twin that is
        migrating is asked again at its owner until ``timeout_s`` has passed: a host
        that refuses because the twin moved or is arriving has not sent the command, so
        it goes to the device at most once.

        Raises:
            TimedOut: the device did not answer within ``timeout_s``.
            InvalidInput: the host refused the subject (not a valid MQTT topic level) or
                the timeout.
            Unavailable: the twin has no host process, its host did not answer, or the
                twin was still migrating when ``timeout_s`` ran out.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            host = self._owner_host(twin)
            left = deadline - loop.time()
            try:
                return await host.send_command(twin, subject, payload, timeout_s=max(left, 1e-3))
            except CommandTimeoutError:
                raise TimedOut(
                    f"device {twin} did not answer command {subject!r} within {timeout_s:g} s "
                    f"(sent by edge host {host.host_id})"
                ) from None
            except InvalidReportError as exc:
                raise InvalidInput(exc.detail, exc.pointer or None) from None
            except (NotOwnerError, TwinNotReadyError) as exc:
                if loop.time() + 0.01 >= deadline:
                    raise Unavailable(
                        f"twin {twin} was migrating for the whole {timeout_s:g} s; the command "
                        f"was not sent ({exc})"
                    ) from None
                await asyncio.sleep(0.01)  # a migration's downtime is milliseconds
            except EdgeError as exc:
                raise Unavailable(f"host {host.host_id}: {exc}") from None

    async def retire(self, twin: str) -> None:
        """The twin is being deleted: every host process drops it (the one serving it
        first replicates what it committed), so no record of it arrives after the delete
        and a later twin of the same id starts clean. Waits for a running cycle (it may be
        moving this twin).

        Raises:
            Unavailable: the host serving it did not retire it.
        """
        async with self._lock:
            owner = self.edge_owner(twin)
            if owner is not None:
                host = self.hosts[owner[0]]
                await self._on_host(host, host.retire(twin))
            others = [h for hid, h in self.hosts.items() if owner is None or hid != owner[0]]
            results = await asyncio.gather(
                *(h.retire(twin) for h in others), return_exceptions=True
            )
            for h, r in zip(others, results, strict=True):
                if isinstance(r, BaseException):
                    log.warning("host %s did not retire deleted twin %s: %s", h.host_id, twin, r)
            self.epochs.pop(twin, None)

    def _owner_host(self, twin: str) -> Any:

        owner = self.edge_owner(twin)
        if owner is None:
            raise Unavailable(f"twin {twin} has no host process")
        return self.hosts[owner[0]]

    @staticmethod
    async def _on_host(host: Any, call: Any) -> int:
        """Await a host call; its refusals as the service's errors."""

        try:
            return int(await call)
        except RevisionError as exc:
            raise PreconditionFailed(
                f"thing {exc.twin_id} has changed on its edge host since the revision named "
                f"by If-Match (the core's copy has not caught up yet; edge revision "
                f"{exc.current}, expected {exc.expected}): read it again and retry"
            ) from None
        except InvalidReportError as exc:
            raise InvalidInput(exc.detail, exc.pointer or None) from None
        except EdgeError as exc:
            raise Unavailable(f"host {host.host_id}: {exc}") from None

    async def _settle(
        self,
        twin: str,
        revision: int,
        ack: str,
        patch: dict[str, Any],
        timeout_s: float,
        *,
        whole: bool = False,
    ) -> dict[str, Any]:
        """The thing after a change the host committed at ``revision``: with ack ``edge``
        the core's copy with ``patch`` applied (``whole``: a patch of the document, else
        of the features' desired properties); with ``core`` the core's copy once it has
        that revision."""

        doc = dict(self.service.things.get(twin) or {})
        if ack == "edge":
            if whole:
                meta = {k: v for k, v in doc.items() if k.startswith("_") or k == "thingId"}
                content = {k: v for k, v in doc.items() if k not in meta}
                doc = {**merge_patch(content, patch), **meta}
            else:
                feats = dict(doc.get("features") or {})
                for fid, d in patch.items():
                    f = dict(feats.get(fid) or {})
                    f["desiredProperties"] = merge_patch(f.get("desiredProperties") or {}, d)
                    feats[fid] = f
                doc["features"] = feats
            doc.pop("_revision", None)  # the core numbers the change when it arrives
            return doc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        positions = getattr(self.service, "edge_positions", {})
        while (positions.get(twin) or (0, -1))[1] < revision:
            if loop.time() > deadline:
                raise Unavailable(
                    f"the edge host committed the change of {twin} (revision {revision}); "
                    f"the core has not caught up within {timeout_s:g} s"
                )
            await asyncio.sleep(0.005)
        return dict(self.service.things[twin])

    def edge_owner(self, twin: str) -> tuple[str, str, int] | None:
        """``(host id, MQTT URL, epoch)`` of the host process serving ``twin``, if any."""
        doc = self.service.things.get(twin)
        h = doc.get("_host") if doc else None
        if isinstance(h, str) and h in self.hosts:
            pos = getattr(self.service, "edge_positions", {}).get(twin)
            epoch = max(pos[0] if pos else 0, self.epochs.get(twin, 0))
            if epoch:
                return h, self.hosts[h].mqtt_url, int(epoch)
        return None

    # --- running ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Cycle every ``step_s`` seconds until cancelled. A failed cycle is logged with
        its traceback once; the same failure again (e.g. a dead host's recovery with no
        live host to move its twins to) only at debug level, until a cycle succeeds or
        fails otherwise."""
        period = self.orchestrator.step_s
        next_t = self.clock()
        self.cycle_failure = None
        while True:
            before: str | None = self.cycle_failure  # the cycle before's failure, if any
            try:
                await self.cycle()
            except Exception as exc:  # never take the service down with the orchestrator
                why = f"{type(exc).__name__}: {exc}"
                if why == before:
                    log.debug("orchestrator cycle failed again: %s", why)
                else:
                    log.exception("orchestrator cycle failed")
                self.cycle_failure = why  # /healthz says it, however often it repeats
            else:
                self.cycle_failure = None
                if before is not None:
                    log.warning("orchestrator cycles succeed again (they failed with %s)", before)
            next_t += period
            await asyncio.sleep(max(0.0, next_t - self.clock()))

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="twinedge-orchestrator")

    async def stop(self) -> None:
        """Stop the cycles and write the end of the run to the recorder, once for the
        cycles since the last stop (a second stop writes nothing)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        rec: Recorder | None = self.orchestrator.recorder
        try:
            if rec is not None and not self._ended:
                self._ended = True
                t_s = self.clock() - self.t0
                # after a decision still running there, whose energy it then includes
                await self._on_decider(lambda: rec.end(t_s, self.network, self.server_energy_j))
        finally:
            if self._decider is not None:  # a decision still running there ends on its own
                self._decider.shutdown(wait=False)
                self._decider = None

    # --- what is seen ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """For ``/healthz``: whether the cycle task runs, and the last cycle's age and error;
        with host processes, ``hosts``: how many run, how many died and were recovered
        (their twins moved to the others), and the live migrations not finished yet."""
        running = self._task is not None and not self._task.done()
        last = self.last
        doc: dict[str, Any] = {
            "network": self.scenario.name,
            "running": running,
            "cycles": self.cycles,
            "last_cycle_age_s": None
            if last is None
            else max(0.0, self.clock() - self.t0 - last.t_s),
            # a cycle that raised (none of its report is kept) or one that reported one
            "error": self.cycle_failure or (None if last is None else last.error),
        }
        if self.hosts or self.recovered:
            doc["hosts"] = {
                "processes": len(self.hosts),
                "recovered": len(self.recovered),
                "unfinished_migrations": len(self.moving),
            }
        return doc

    def status(self) -> dict[str, Any]:
        """Hosts with their load and twin count, the policies, and the last cycles."""
        w = self.network
        cpu, mem, count = self._load
        tiers = ("access", "edge", "region", "cloud")
        hosts = [
            {
                "id": w.node_ids[n],
                "tier": tiers[int(w.node_tier[n])],
                "domain": w.domains[int(w.node_domain[n])],
                "cpu_ghz": float(w.node_cpu_ghz[n]),
                "mem_gb": float(w.node_mem_gb[n]),
                "used_cpu_ghz": float(cpu[j]),
                "used_mem_gb": float(mem[j]),
                "twins": int(count[j]),
            }
            for j, n in enumerate(w.hosts)
        ]
        return {
            "network": self.scenario.name,
            "placement": self.orchestrator.placement_name,
            "migration": self.orchestrator.migration_name,
            "cycle_s": self.orchestrator.step_s,
            "placement_period_s": self.orchestrator.period_s,
            "cycles": self.cycles,
            "placements_total": self.placements_total,
            "migrations_total": self.migrations_total,
            "last_cycle": self.last.to_json() if self.last else None,
            "hosts": hosts,
            "edge": self._edge_status(),
        }

    def _edge_status(self) -> dict[str, Any] | None:
        """The host processes: how many, live migrations, their measured downtime
        (``None``: twins stay in the core; kept once every host process died)."""
        if not self.hosts and not self.recovered:
            return None
        d = np.asarray(self.downtime_s) * 1000.0
        return {
            "host_processes": len(self.hosts),
            "pids": self.host_processes.pids() if self.host_processes is not None else {},
            "mqtt": {h: r.mqtt_url for h, r in sorted(self.hosts.items())},
            "control": {
                h: r.control_url
                for h, r in sorted(self.hosts.items())
                if getattr(r, "control_url", None)
            },
            "recovered": self.recovered,
            "migration_method": self.migration_method,
            "live_migrations": self.live_migrations,
            "migrations_failed": self.migrations_failed,
            "downtime_ms": None
            if d.size == 0
            else {
                "p50": float(np.percentile(d, 50)),
                "p99": float(np.percentile(d, 99)),
                "max": float(d.max()),
                "window": int(d.size),
            },
        }
