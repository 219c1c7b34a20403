"""The live driver: the orchestrator places and migrates the twins of a real service
(SQLite store, the service's single writer), and records its decisions in the ledger
the same way a simulation does."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tests.runtime.service_run import run
from twinedge.edge.migrate import MigrationReport
from twinedge.engine import simulate
from twinedge.engine.record import LedgerRecorder
from twinedge.ledger import LedgerDir
from twinedge.orchestrator import Orchestrator
from twinedge.orchestrator.live import LiveNetwork
from twinedge.policies.migration import Threshold
from twinedge.runtime.auth import Principal
from twinedge.scenario import parse_scenario
from twinedge.world import build_world

ADMIN = Principal("admin-a", "dom-a", "admin")


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-sites.yaml"


def two_sites(**twin: Any) -> dict:
    """examples/two-sites.yaml: two access points 3 km apart, each with an edge server of
    10 GHz; the edges are 5 ms apart. A robot twin needs 1 GHz and must answer within
    3 ms. ``twin`` overrides the robots' demand."""
    sc = yaml.safe_load(EXAMPLE.read_text())
    sc["entities"][0]["twin"].update(twin)
    return sc


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def live_network(
    service, sc_dict: dict, *, ledger: Path | None = None, migration: Any = "threshold"
):
    sc = parse_scenario(sc_dict, "two-sites.yaml")
    world = build_world(sc, np.random.default_rng(0), network_only=True)
    orch = Orchestrator(
        "greedy", migration, step_s=1.0, rng=np.random.default_rng(0),
        recorder=LedgerRecorder(ledger, actor="twinedge-serve") if ledger else None,
    )  # fmt: skip
    return LiveNetwork(service, sc, world, orch, clock=Clock())


def robot(x_m: float, **attrs: Any) -> dict:
    return {
        "attributes": {"kind": "robot", **attrs},
        "features": {"position": {"properties": {"x_m": x_m, "y_m": 0.0}}},
    }


def test_a_live_twin_is_placed_near_its_device_and_follows_it(tmp_path):
    async def body(svc):
        live = live_network(svc, two_sites(), ledger=tmp_path / "ledger")
        await svc.put_thing(ADMIN, "fleet:r1", robot(10.0))
        await svc.put_thing(ADMIN, "fleet:plain", {"attributes": {"kind": "robot"}})  # no position
        first = await live.cycle()
        assert (first.twins, first.placed, first.migrations, first.error) == (1, 1, 0, None)
        assert svc.things["fleet:r1"]["_host"] == "edge-1"
        assert svc.things["fleet:plain"].get("_host") is None
        # the device drives to the other site and reports there
        await svc.device_report("fleet:r1", {"position": {"x_m": 2990.0}})
        live.clock.t += 1.0
        second = await live.cycle()
        assert (second.placed, second.migrations) == (0, 1)
        assert second.t_s == 1.0
        assert svc.things["fleet:r1"]["_host"] == "edge-2"
        status = live.status()
        assert [(h["id"], h["twins"], h["used_cpu_ghz"]) for h in status["hosts"]] == [
            ("edge-1", 0, 0.0),
            ("edge-2", 1, 1.0),
        ]
        assert (status["placements_total"], status["migrations_total"], status["cycles"]) == (
            1,
            1,
            2,
        )
        await live.stop()
        return svc.things["fleet:r1"]["_revision"]

    revision = run(f"sqlite:///{tmp_path / 'twins.db'}", body)
    assert revision == 4  # created, placed, reported, moved: each a revision of its own

    # the host survives a restart: it is part of the stored twin
    async def reread(svc):
        return svc.things["fleet:r1"]["_host"]

    assert run(f"sqlite:///{tmp_path / 'twins.db'}", reread) == "edge-2"

    ld = LedgerDir.open(tmp_path / "ledger")
    try:
        assert all(r.ok for r in ld.verify())
        placed = [e["body"] for _, e in ld.log("op-a").find_type("placement")]
        moved = [e["body"] for _, e in ld.log("op-b").find_type("migration")]
    finally:
        ld.close()
    assert [(b["twin"], b["owner"], b["host"]) for b in placed] == [("fleet:r1", "dom-a", "edge-1")]
    assert [(b["twin"], b["from_host"], b["to_host"], b["bytes"]) for b in moved] == [
        ("fleet:r1", "edge-1", "edge-2", 10_000)
    ]


def test_the_live_predictive_policy_avoids_a_host_the_forecast_sees_overloaded(tmp_path):
    def forecast_of(edge_2_peak: float) -> dict:
        hosts = [
            {"id": "edge-1", "peak_utilisation": 0.1, "at_t_s": 0.0},
            {"id": "edge-2", "peak_utilisation": edge_2_peak, "at_t_s": 5.0},
        ]
        return {"t_s": 0.0, "hosts": hosts, "steps": [], "spikes": []}

    async def body(svc):
        live = live_network(svc, two_sites(), migration="predictive")
        await svc.put_thing(ADMIN, "fleet:r1", robot(10.0))
        assert (await live.cycle()).placed == 1
        assert svc.things["fleet:r1"]["_host"] == "edge-1"
        # the robot crosses to edge-2's site, but edge-2 is forecast to reach 95 %
        await svc.device_report("fleet:r1", {"position": {"x_m": 2990.0}})
        live.forecast = forecast_of(0.95)
        live.clock.t += 1.0
        assert (await live.cycle()).migrations == 0
        assert svc.things["fleet:r1"]["_host"] == "edge-1"
        # the next forecast sees edge-2 at 10 %: the twin follows its device
        await svc.device_report("fleet:r1", {"position": {"x_m": 2995.0}})
        live.forecast = forecast_of(0.1)
        live.clock.t += 1.0
        assert (await live.cycle()).migrations == 1
        assert svc.things["fleet:r1"]["_host"] == "edge-2"
        await live.stop()

    run(f"sqlite:///{tmp_path / 'twins.db'}", body)


def test_the_same_policy_object_drives_a_simulation_and_a_live_network(tmp_path):
    policy = Threshold(hysteresis_ms=0.25)
    sim_sc = two_sites()
    sim_sc["entities"][0]["count"] = 4
    sim_sc["entities"][0]["mobility"] = {"model": "random_waypoint", "speed_mps": [100, 200]}
    res = simulate(parse_scenario(sim_sc, "s.yaml"), migration=policy, steps=10)
    assert res.label == "greedy+Threshold"

    async def body(svc):
        live = live_network(svc, two_sites(), migration=policy)
        await svc.put_thing(ADMIN, "fleet:r1", robot(10.0))
        await live.cycle()
        await svc.device_report("fleet:r1", {"position": {"x_m": 2990.0}})
        out = await live.cycle()
        return live.orchestrator.migration, out.migrations

    used, migrations = run(f"sqlite:///{tmp_path / 'twins.db'}", body)
    assert used is policy and migrations == 1


def test_twins_that_do_not_fit_stay_unplaced_with_a_clear_error(tmp_path):
    async def body(svc):
        live = live_network(svc, two_sites(cpu_ghz=8.0))
        for i in range(3):  # 24 GHz of twins on 20 GHz of hosts
            await svc.put_thing(ADMIN, f"fleet:r{i}", robot(10.0 + i))
        report = await live.cycle()
        return report, [svc.things[f"fleet:r{i}"].get("_host") for i in range(3)], live.status()

    report, hosts, status = run(f"sqlite:///{tmp_path / 'twins.db'}", body)
    assert report.error is not None and "exceeds total capacity" in report.error
    assert report.unplaced == 3 and hosts == [None, None, None]
    assert status["last_cycle"]["error"] == report.error


def test_a_twin_with_a_bad_demand_is_left_out_and_the_rest_are_placed(tmp_path, caplog):
    async def body(svc):
        live = live_network(svc, two_sites())
        await svc.put_thing(ADMIN, "fleet:bad", robot(10.0, twin={"cpu_ghz": "lots"}))
        await svc.put_thing(ADMIN, "fleet:neg", robot(10.0, twin={"latency_req_ms": 0}))
        await svc.put_thing(ADMIN, "fleet:ok", robot(10.0, twin={"cpu_ghz": 2}))
        report = await live.cycle()
        return (
            report,
            {t: svc.things[t].get("_host") for t in ("fleet:bad", "fleet:neg", "fleet:ok")},
            live.status(),
        )

    with caplog.at_level("WARNING", logger="twinedge.orchestrator"):
        report, hosts, status = run(f"sqlite:///{tmp_path / 'twins.db'}", body)
    assert (report.twins, report.placed) == (1, 1)
    assert hosts == {"fleet:bad": None, "fleet:neg": None, "fleet:ok": "edge-1"}
    assert status["hosts"][0]["used_cpu_ghz"] == 2.0  # the twin's own demand, not the default
    assert "fleet:bad is not placed: attributes.twin.cpu_ghz: got 'lots'" in caplog.text
    assert "fleet:neg is not placed: attributes.twin.latency_req_ms: got 0" in caplog.text


def test_a_twin_deleted_during_a_cycle_is_skipped(tmp_path):
    async def body(svc):
        live = live_network(svc, two_sites())
        await svc.put_thing(ADMIN, "fleet:a", robot(10.0))
        await svc.put_thing(ADMIN, "fleet:b", robot(20.0))
        snap = live.snapshot()
        await svc.delete(ADMIN, "fleet:a")
        failed = await live._write(snap, np.array([0, 0]), np.array([0, 1]))
        return failed, "fleet:a" in svc.things, svc.things["fleet:b"]["_host"]

    assert run(f"sqlite:///{tmp_path / 'twins.db'}", body) == (1, False, "edge-1")


def test_cycles_run_on_their_own_and_stop(tmp_path):
    async def body(svc):
        live = live_network(svc, two_sites())
        live.orchestrator.step_s = 0.01
        await svc.put_thing(ADMIN, "fleet:r1", robot(10.0))
        live.clock = __import__("time").monotonic
        live.start()
        for _ in range(500):  # bounded: the first cycle places the twin
            if svc.things["fleet:r1"].get("_host"):
                break
            await asyncio.sleep(0.01)
        await live.stop()
        return svc.things["fleet:r1"].get("_host"), live.cycles

    host, cycles = run(f"sqlite:///{tmp_path / 'twins.db'}", body)
    assert host == "edge-1" and cycles >= 1


def test_a_failure_that_repeats_is_logged_with_its_traceback_once(tmp_path, caplog):
    """Cycles that keep failing the same way log one error with its traceback, then only
    debug lines; another failure is logged again; the first cycle that succeeds after
    failures says so once."""

    async def body(svc):
        live = live_network(svc, two_sites())
        live.orchestrator.step_s = 0.001
        outcomes = [OSError("no live host"), OSError("no live host"), OSError("no live host")]
        outcomes += [ValueError("bad answer"), None, None]
        done = asyncio.Event()
        health: list[str | None] = []

        async def cycle():
            health.append(live.health()["error"])
            # more cycles may run before the test stops the loop: they succeed
            outcome = outcomes.pop(0) if outcomes else None
            if not outcomes:
                done.set()
            if outcome is not None:
                raise outcome

        live.cycle = cycle  # type: ignore[method-assign]
        live.clock = __import__("time").monotonic
        with caplog.at_level("DEBUG", logger="twinedge.orchestrator"):
            live.start()
            await asyncio.wait_for(done.wait(), 30)
            await live.stop()
        # /healthz, as each cycle began: the failure before it, however often it repeated
        assert health[:6] == [
            None,
            "OSError: no live host",
            "OSError: no live host",
            "OSError: no live host",
            "ValueError: bad answer",
            None,
        ]

    run(f"sqlite:///{tmp_path / 'twins.db'}", body)
    got = [
        (r.levelname, r.getMessage(), r.exc_info is not None)
        for r in caplog.records
        if r.name == "twinedge.orchestrator" and "orchestrator cycle" in r.getMessage()
    ]
    assert got == [
        ("ERROR", "orchestrator cycle failed", True),
        ("DEBUG", "orchestrator cycle failed again: OSError: no live host", False),
        ("DEBUG", "orchestrator cycle failed again: OSError: no live host", False),
        ("ERROR", "orchestrator cycle failed", True),
        (
            "WARNING",
            "orchestrator cycles succeed again (they failed with ValueError: bad answer)",
            False,
        ),
    ]


class FreshThreads(concurrent.futures.ThreadPoolExecutor):
    """A default executor that runs every call on a new thread, kept alive until
    :meth:`shutdown` so that no two calls share a thread identity."""

    def __init__(self) -> None:
        super().__init__()
        self.done = threading.Event()
        self.threads: list[threading.Thread] = []

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        future: concurrent.futures.Future = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)
            self.done.wait()

        self.threads.append(threading.Thread(target=call))
        self.threads[-1].start()
        return future

    def shutdown(self, wait: bool = True, **kwargs: Any) -> None:
        self.done.set()
        for t in self.threads:
            t.join()
        super().shutdown(wait, **kwargs)


class ThreadsSeen(LedgerRecorder):
    """The ledger recorder, noting the thread of every call that writes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, actor="twinedge-serve")
        self.threads: dict[str, set[int]] = {}

    def _seen(self, what: str) -> None:
        self.threads.setdefault(what, set()).add(threading.get_ident())

    def placement(self, *args: Any) -> None:
        self._seen("placement")
        super().placement(*args)

    def migration(self, *args: Any) -> None:
        self._seen("migration")
        super().migration(*args)

    def handover(self, *args: Any) -> None:
        self._seen("handover")
        super().handover(*args)

    def end(self, *args: Any) -> None:
        self._seen("end")
        super().end(*args)


def test_every_ledger_write_is_made_on_one_thread_whatever_the_default_executor(tmp_path):
    """The ledger's SQLite connections belong to the thread that opened them: decisions,
    live migration records and the end of the run are all written on the decider thread,
    never the event loop's. (Handed to the default executor they failed at random with
    'SQLite objects created in a thread can only be used in that same thread', and
    ``serve`` exited 1 on SIGTERM.) A second stop writes no second end."""

    async def body(svc):
        asyncio.get_running_loop().set_default_executor(FreshThreads())
        live = live_network(svc, two_sites())
        rec = ThreadsSeen(tmp_path / "ledger")
        live.orchestrator.recorder = rec
        await svc.put_thing(ADMIN, "fleet:r1", robot(10.0))
        assert (await live.cycle()).placed == 1
        await svc.device_report("fleet:r1", {"position": {"x_m": 2990.0}})
        live.clock.t += 1.0
        assert (await live.cycle()).migrations == 1
        # what a live migration between host processes records once it is done
        moved = MigrationReport(
            twin_id="fleet:r1", source="edge-1", target="edge-2", method="pre-copy",
            epoch=2, final_revision=3, rounds=1, bytes_copied=10_000, changes_copied=0,
            downtime_s=0.004, fence_s=0.002, copy_s=0.0, adopt_s=0.002, total_s=0.02,
        )  # fmt: skip
        await live._record_handover(moved)
        await live.stop()  # writes the run's end entry: raised before
        await live.stop()
        return rec.threads, threading.get_ident()

    threads, loop_thread = run(f"sqlite:///{tmp_path / 'twins.db'}", body)
    assert sorted(threads) == ["end", "handover", "migration", "placement"]
    (decider,) = set().union(*threads.values())  # one thread for all of them
    assert decider != loop_thread
    ld = LedgerDir.open(tmp_path / "ledger")
    try:
        assert all(r.ok for r in ld.verify())
        entries = [e for d in ld.domains for e in ld.log(d).entries()]
    finally:
        ld.close()
    assert {"placement", "migration", "handover", "usage"} <= {e["type"] for e in entries}
    ends = [e for e in entries if e["type"] == "policy" and e["body"] == {"event": "end"}]
    assert len(ends) == len(ld.domains)  # one per domain, once
