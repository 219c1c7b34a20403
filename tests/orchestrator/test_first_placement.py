"""A twin's first placement on a host: no write the core acknowledged is missing from the
host's copy, whatever reaches the core while the copy is placed."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.orchestrator.test_live import live_network, robot, two_sites
from tests.runtime.service_run import run
from twinedge.edge.remote import RemoteHost
from twinedge.edge.server import HostServer
from twinedge.errors import Overloaded, ServedAtEdge, Unavailable
from twinedge.orchestrator.live import LiveNetwork
from twinedge.runtime.api import create_app
from twinedge.runtime.app import listen_tcp
from twinedge.runtime.auth import Principal
from twinedge.runtime.service import TwinService
from twinedge.runtime.store import open_store

ADMIN = Principal("admin-a", "dom-a", "admin")
ROOT = Principal("root", None, "admin")  # the service admin: no domain, no grants to read
APP = Principal("app-a", "dom-a", "write")  # an application key of the twin's domain
TWIN = "fleet:r1"
HOSTS_TOKEN = "hosts-t0ken"


class PlacingHost:
    """A host that keeps what it was placed with; while placing, ``during`` runs (a
    device report reaching the core between the copy and the hand-off)."""

    mqtt_url = "mqtt://127.0.0.1:1"

    def __init__(self, during: Any) -> None:
        self.during = during
        self.placed: dict[str, tuple[dict, int]] = {}

    async def twin_ids(self, status: Any) -> list[str]:
        return []

    async def place(self, twin: str, content: dict, *, epoch: int, revision: int, **_: Any):
        self.placed[twin] = (content, revision)
        await self.during(twin)


def test_a_report_reaching_the_core_while_a_twin_is_first_placed_is_not_lost(tmp_path):
    outcome: dict[str, Any] = {}

    async def body(svc):
        await svc.put_thing(ADMIN, "fleet:r1", robot(10.0))

        async def report(twin: str) -> None:
            try:
                outcome["revision"] = await svc.device_report(twin, {"counter": {"seq": 1}})
            except Unavailable as exc:
                outcome["refused"] = str(exc)

        live = live_network(svc, two_sites())
        hosts = {hid: PlacingHost(report) for hid in live.network.host_ids}
        live.hosts = hosts
        first = await live.cycle()
        assert first.placed == 1
        ((content, revision),) = [h.placed["fleet:r1"] for h in hosts.values() if h.placed]
        core = svc.things["fleet:r1"]
        await live.stop()
        return content, revision, core

    content, revision, core = run(f"sqlite:///{tmp_path / 'core.db'}", body)
    core_seq = core["features"].get("counter", {}).get("properties", {}).get("seq")
    if "revision" in outcome:  # acknowledged: the host's copy has it
        assert content["features"]["counter"]["properties"]["seq"] == 1
        assert core_seq == 1
    else:  # refused, unacknowledged: in neither copy
        assert "moving to an edge host" in outcome["refused"]
        assert "counter" not in content.get("features", {})
        assert core_seq is None
        assert revision == 1


def test_the_core_takes_the_twins_writes_again_when_placing_it_fails(tmp_path):
    async def refuse(twin: str) -> None:
        raise OSError("the host is gone")

    async def body(svc):
        await svc.put_thing(ADMIN, "fleet:r1", robot(10.0))
        live = live_network(svc, two_sites())
        live.hosts = {hid: PlacingHost(refuse) for hid in live.network.host_ids}
        await live.cycle()
        revision = await svc.device_report("fleet:r1", {"counter": {"seq": 1}})
        await live.stop()
        return revision, svc.things["fleet:r1"]

    revision, core = run(f"sqlite:///{tmp_path / 'core.db'}", body)
    assert revision == core["_revision"] == 2
    assert core["features"]["counter"]["properties"]["seq"] == 1
    assert core["_host"] is None


# ---------------------------------------------------------------------- a real edge tier


@contextlib.asynccontextmanager
async def edge_tier(tmp_path: Path) -> AsyncIterator[tuple[TwinService, LiveNetwork, dict]]:
    """A core (service, HTTP API with the internal routes, live network) and one real host
    server per host of the two-site network, replicating to it over HTTP, wired as
    ``serve --network`` wires them; cycles run only when the test calls them."""
    svc = TwinService(open_store(f"sqlite:///{tmp_path / 'core.db'}"))
    await svc.start()
    live = live_network(svc, two_sites())
    sock = listen_tcp("127.0.0.1", 0, "HTTP", "a test")
    http = uvicorn.Server(
        uvicorn.Config(
            create_app(svc, live=live, hosts_token=HOSTS_TOKEN),
            log_level="warning",
            lifespan="off",
        )
    )
    http.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    serving = asyncio.create_task(http.serve(sockets=[sock]))
    servers: dict[str, HostServer] = {}
    try:
        for _ in range(500):
            if http.started or serving.done():
                break
            await asyncio.sleep(0.01)
        assert http.started, "the core's HTTP server did not start"
        core_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        for hid in live.network.host_ids:
            servers[hid] = HostServer(
                hid, tmp_path / hid, core_url=core_url, token=HOSTS_TOKEN,
                mqtt_port=0, control_port=0, tick_s=0, replicate_linger_s=0,
            )  # fmt: skip
            await servers[hid].start()
        live.hosts = {
            hid: RemoteHost(hid, f"http://127.0.0.1:{s.control_port}", s.mqtt_url, HOSTS_TOKEN)
            for hid, s in servers.items()
        }
        svc.edge_owner = live.edge_owner
        svc.edge_desired = live.forward_desired
        svc.edge_write = live.edge_write
        svc.edge_command = live.edge_command
        svc.edge_retire = live.retire
        yield svc, live, servers
    finally:
        await live.stop()
        for remote in live.hosts.values():
            await remote.aclose()
        for server in servers.values():
            await server.stop()
        http.should_exit = True
        await serving
        await svc.stop()


class HeldReads:
    """Holds the store's reads of a domain's grants (what an application's first write
    awaits before it reaches the writer, after the service chose its route) until
    :meth:`release`; the read itself is the store's own."""

    def __init__(self, svc: TwinService) -> None:
        self.entered, self.released = threading.Event(), threading.Event()
        real = svc.store.grants_for

        def grants_for(domain: str) -> Any:
            self.entered.set()
            self.released.wait(timeout=60)
            return real(domain)

        svc.store.grants_for = grants_for  # type: ignore[method-assign]

    async def reached(self) -> None:
        """Wait (bounded) until a read is being held."""
        for _ in range(1000):
            if self.entered.is_set():
                return
            await asyncio.sleep(0.005)
        raise AssertionError("no read of grants was held")

    def release(self) -> None:
        self.released.set()


def test_a_write_routed_to_the_core_before_its_twin_is_placed_is_applied_once_on_the_host(
    tmp_path,
):
    """An application's write to a twin in the core is routed to the core's writer, then
    waits (for its domain's grants) while the orchestrator places the twin on edge-1 and
    records it there; when it reaches the writer, the twin is served by its host: the core
    does not apply it but sends it to the host, which commits it once (and replicates it
    back), and the caller gets the document with the change."""

    async def main() -> None:
        async with edge_tier(tmp_path) as (svc, live, servers):
            await svc.put_thing(ROOT, TWIN, robot(10.0), domain="dom-a")  # revision 1
            held = HeldReads(svc)
            write = asyncio.create_task(svc.patch(APP, TWIN, "attributes", {"colour": "red"}))
            try:
                await held.reached()  # routed: the twin was not served by a host
                report = await live.cycle()  # placed on edge-1, recorded: revision 2
                assert report.placed == 1 and svc.things[TWIN]["_host"] == "edge-1"
                assert svc.edge_positions[TWIN] == (1, 1)
            finally:
                held.release()
            doc = await asyncio.wait_for(write, 60)
            # the host committed it once, as its revision 2 (it was placed at 1) ...
            view = servers["edge-1"].host.twin(TWIN)
            assert (view.epoch, view.revision) == (1, 2)
            assert view.document["attributes"] == {"kind": "robot", "colour": "red"}
            assert TWIN not in servers["edge-2"].host.twin_ids()
            # ... and the core's copy has it from the host (ack core): revision 3
            assert doc["attributes"] == {"kind": "robot", "colour": "red"}
            assert doc["_revision"] == 3 and doc["_host"] == "edge-1"
            assert svc.edge_positions[TWIN] == (1, 2)
            items, _ = await svc.history(ROOT, TWIN)
            assert [(h["revision"], h["source"]) for h in items] == [
                (1, "http"),
                (2, "orchestrator"),
                (3, "edge"),
            ]
            assert svc.metrics["edge_rerouted_total"] == 1
            # deleting it retires it on its host first; the core then deletes its copy
            assert await svc.delete(APP, TWIN) is None
            assert TWIN not in svc.things and TWIN not in svc.edge_positions

    asyncio.run(main())


def test_the_writer_refuses_a_local_write_to_a_twin_with_an_edge_position(tmp_path):
    """With an edge tier, a write queued to the core's writer for a twin that has an edge
    position (here: placed, its host not recorded yet, so nothing to send it to) is refused
    with ServedAtEdge and commits nothing; the host's records and the orchestrator's write
    still apply. Without an edge tier the core serves every twin itself."""

    async def body(svc: TwinService) -> None:
        await svc.put_thing(ADMIN, TWIN, robot(10.0))
        live = live_network(svc, two_sites())  # no host processes: no twin is served
        svc.edge_owner = live.edge_owner
        await svc.set_edge_position(TWIN, 1, 1)
        before = svc.things[TWIN]
        for write in (
            svc.patch(APP, TWIN, "attributes", {"colour": "red"}),
            svc.put_path(APP, TWIN, "attributes/colour", "red"),
            svc.set_desired(APP, TWIN, "lamp", {"on": True}),
            svc.delete(APP, TWIN, "features/position"),
            svc.delete(APP, TWIN),
            svc.put_thing(APP, TWIN, {"attributes": {"kind": "robot"}}),
            svc.device_report(TWIN, {"lamp": {"on": True}}),
        ):
            with pytest.raises(ServedAtEdge) as e:
                await write
            assert e.value.thing_id == TWIN and isinstance(e.value, Unavailable)
        assert svc.things[TWIN] is before and before["_revision"] == 1
        stored = await asyncio.to_thread(lambda: list(svc.store.load_things()))
        assert [d["_revision"] for d in stored] == [1]
        items, _ = await svc.history(ADMIN, TWIN)
        assert [h["revision"] for h in items] == [1]
        assert svc.metrics["edge_rerouted_total"] == 0
        # the orchestrator records the host; the host's first change applies
        assert (await svc.set_host(TWIN, "edge-1"))["_revision"] == 2
        record = {"seq": 1, "twin": TWIN, "epoch": 1, "revision": 2, "kind": "change",
                  "data": {"attributes": {"colour": "blue"}}, "time_s": 0.0}  # fmt: skip
        assert (await svc.apply_edge_records("edge-1", [record]))["applied"] == 1
        assert svc.things[TWIN]["attributes"]["colour"] == "blue"
        # without an edge tier the core writes the twin itself
        svc.edge_owner = None
        doc = await svc.patch(APP, TWIN, "attributes", {"colour": "red"})
        assert (doc["_revision"], doc["attributes"]["colour"]) == (4, "red")

    run(f"sqlite:///{tmp_path / 'core.db'}", body)


def set_host_overloaded_once(svc: TwinService) -> list[str]:
    """The service's next ``set_host`` is refused as if its write queue were full; the
    list returned gets the thing id it was refused for."""
    real = svc.set_host
    refused: list[str] = []

    async def set_host(thing_id: str, host: str | None) -> dict:
        if not refused:
            refused.append(thing_id)
            raise Overloaded("the write queue is full")
        return await real(thing_id, host)

    svc.set_host = set_host  # type: ignore[method-assign]
    return refused


def test_a_placement_whose_host_was_not_recorded_is_recorded_at_the_next_cycle(tmp_path):
    """The twin's state reaches edge-1, then recording its host fails (the core's write
    queue full): writes are refused meanwhile (the host is the twin's writer, nothing is
    applied in the core); the next cycle reads from the hosts where the twins are and
    records edge-1, and writes go to the host again."""

    async def main() -> None:
        async with edge_tier(tmp_path) as (svc, live, servers):
            await svc.put_thing(ROOT, TWIN, robot(10.0), domain="dom-a")
            refused = set_host_overloaded_once(svc)
            report = await live.cycle()
            assert refused == [TWIN] and report.writes_failed == 1
            assert svc.things[TWIN].get("_host") is None  # not recorded ...
            assert TWIN in servers["edge-1"].host.twin_ids()  # ... but served there
            with pytest.raises(ServedAtEdge):
                await svc.patch(APP, TWIN, "attributes", {"colour": "blue"})
            assert "colour" not in servers["edge-1"].host.twin(TWIN).document["attributes"]
            await live.cycle()
            assert svc.things[TWIN]["_host"] == "edge-1"
            doc = await svc.patch(APP, TWIN, "attributes", {"colour": "red"})
            assert doc["attributes"] == {"kind": "robot", "colour": "red"}
            view = servers["edge-1"].host.twin(TWIN)
            assert view.document["attributes"] == {"kind": "robot", "colour": "red"}

    asyncio.run(main())


def test_a_twin_on_a_host_the_core_cannot_read_is_not_placed_again_elsewhere(tmp_path):
    """The twin's state is on edge-1 but its host was not recorded; its robot drives to
    edge-2's site (edge-1's record of it replicated); then edge-1 stops answering, so the
    next cycle cannot read where the twins are. The core does not place a copy of its
    document on edge-2 (two hosts would own the twin at epoch 1): it waits for the hosts."""

    async def main() -> None:
        async with edge_tier(tmp_path) as (svc, live, servers):
            await svc.put_thing(ROOT, TWIN, robot(10.0), domain="dom-a")
            refused = set_host_overloaded_once(svc)
            await live.cycle()
            assert refused == [TWIN] and svc.things[TWIN].get("_host") is None
            edge_1 = servers["edge-1"]
            await edge_1.host.apply(TWIN, {"position": {"x_m": 2990.0, "y_m": 0.0}})
            await asyncio.wait_for(edge_1.replicated(edge_1.host.last_seq, timeout_s=30), 60)
            assert svc.things[TWIN]["features"]["position"]["properties"]["x_m"] == 2990.0
            await edge_1.stop()  # its control API no longer answers
            report = await live.cycle()
            assert report.writes_failed == 1
            assert TWIN not in servers["edge-2"].host.twin_ids()
            assert svc.things[TWIN].get("_host") is None

    asyncio.run(main())
