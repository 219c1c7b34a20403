"""kill -9 of the source host, the target host or the core at each phase of a live
migration, with real processes and real MQTT.

``twinedge serve --network ... --hosts local`` runs with ``TWINEDGE_FAILPOINTS`` naming
one point (see :mod:`twinedge.edge.failpoints`): the process that reaches it SIGKILLs
itself there. A device keeps reporting a counter with QoS 1 to its twin's host (each
PUBACK counted) while its twin migrates from edge-1 to edge-2 and the chosen process
dies; it follows redirects, and asks the core's broker where to go when its host is
gone. A dead host is recovered by the core from its log; a dead core is started again on
the same data directory and finishes the half-done migration itself (with ``--migration
never``: not because the policy asked for the move again). Then: every acknowledged
report is in the core, in order, each once; exactly one host serves the twin (the one
the core names); a stale host refuses writes; the device is acknowledged again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

import aiomqtt
import httpx
import pytest
import yaml

from tests.orchestrator.serving import two_sites_file, wait_for
from tests.orchestrator.test_edge_hosts import (  # noqa: F401 (ray_sites: a fixture)
    PASSWORD,
    TWIN,
    counter_history,
    mqtt_of,
    ray_sites,
    robot_on_edge_1,
)
from tests.orchestrator.test_live import robot, two_sites
from tests.runtime.test_reliability import free_port, start_server
from twinedge.edge.failpoints import ENV
from twinedge.edge.host import EdgeHost
from twinedge.edge.log import TwinStatus

pytestmark = pytest.mark.slow

# a broker killed while the device connects: it gives up after 3 s (not aiomqtt's 10)
KW = {"identifier": TWIN, "username": TWIN, "password": PASSWORD, "timeout": 3.0}
OPTIONS = ["--cycle-s", "0.2", "--forecast-horizon-s", "0"]
AFTER_RECOVERY = 20  # reports the device must get acknowledged after the recovery

# (the process that dies, its failpoint, the host that serves the twin in the end)
CASES = [
    ("source", "source.after-snapshot@edge-1", "edge-2"),  # before the fence: recovered
    ("source", "source.after-fence@edge-1", "edge-2"),  # fenced: resumed from its log
    ("target", "target.after-stage@edge-2", "edge-1"),  # staged only: the source serves on
    # the target fenced the source (its cut-over), never adopted: the source reclaims it
    ("target", "target.after-fence@edge-2", "edge-1"),
    ("target", "target.after-adopt@edge-2", "edge-1"),  # adopted: evacuated from its log
    ("core", "driver.after-adopt", "edge-2"),  # adopted, source not released
    ("core", "driver.after-release", "edge-2"),  # done on the hosts, not in the core
]


# --- the device ------------------------------------------------------------------------------
@dataclass
class Device:
    """The robot's device: reports ``{"counter": {"n": n}}`` with QoS 1, n = 1, 2, ...,
    the next n only once the last one is acknowledged; a report not acknowledged within
    2 s is sent again on a new connection (to where a redirect said, else to where the
    core's broker says the twin is)."""

    core_mqtt: int
    acked: list[int] = field(default_factory=list)
    acked_at: list[tuple[str, int]] = field(default_factory=list)  # broker of each ack
    redirects: list[dict] = field(default_factory=list)
    first: dict | None = None  # a report sent (and acknowledged) before the counters
    here: dict = field(default_factory=lambda: {"position": {"x_m": 2990.0}})

    async def ask_core(self) -> tuple[str, int] | None:
        """Where the core's broker sends the twin's device (None: no answer in 3 s)."""
        try:
            async with aiomqtt.Client("127.0.0.1", self.core_mqtt, **KW) as c:
                await c.subscribe(f"twinedge/{TWIN}/+", qos=1)  # covers redirect
                # where it is: taken by the core only when the twin is on no host
                await c.publish(f"twinedge/{TWIN}/reported", json.dumps(self.here), qos=0)
                return mqtt_of((await asyncio.wait_for(self._redirect(c), 3.0))["url"])
        except (aiomqtt.MqttError, TimeoutError):
            return None

    async def _redirect(self, c: aiomqtt.Client) -> dict:
        async for m in c.messages:
            if m.topic.value.endswith("/redirect"):
                return json.loads(m.payload)
        raise aiomqtt.MqttError("the connection ended")

    async def session(self, where: tuple[str, int], done: Callable[[], bool]) -> Any:
        """Report at ``where`` until ``done()``: ``"done"``, a redirect's address, or
        None when the broker is gone or stopped acknowledging."""
        try:
            async with aiomqtt.Client(*where, **KW) as c:
                await c.subscribe(f"twinedge/{TWIN}/+", qos=1)  # covers redirect
                redirect = asyncio.create_task(self._redirect(c))
                try:
                    while not done():
                        report = self.first or {"counter": {"n": len(self.acked) + 1}}
                        pub = asyncio.create_task(
                            c.publish(f"twinedge/{TWIN}/reported", json.dumps(report), qos=1)
                        )
                        await asyncio.wait(
                            {pub, redirect}, timeout=2.0, return_when=asyncio.FIRST_COMPLETED
                        )
                        if pub.done() and pub.exception() is None:
                            if self.first is not None:
                                self.first = None
                            else:
                                self.acked.append(len(self.acked) + 1)
                                self.acked_at.append(where)
                            continue
                        pub.cancel()
                        if redirect.done() and redirect.exception() is None:
                            self.redirects.append(redirect.result())
                            return mqtt_of(redirect.result()["url"])
                        return None
                    return "done"
                finally:
                    redirect.cancel()
        except aiomqtt.MqttError:
            return None

    async def run(self, done: Callable[[], bool], timeout_s: float = 240.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        where = None
        while where is None:
            where = await self.ask_core()
            if where is None:
                await asyncio.sleep(0.1)  # no core yet
        while True:
            if loop.time() > deadline:
                raise AssertionError(f"the device gave up after {timeout_s} s: {self.acked[-3:]}")
            got = await self.session(where, done)
            if got == "done":
                return
            if got is None:
                await asyncio.sleep(0.1)
                got = await self.ask_core() or where  # no core: try the same host again
            where = got


# --- the processes ---------------------------------------------------------------------------
@dataclass
class Cluster:
    """``twinedge serve`` and its host processes, on loopback (``ray``: the hosts are
    actors of the Ray cluster at that address, on this machine)."""

    data: Path
    network: Path
    mqtt: int
    token: str
    proc: Popen | None = None
    client: httpx.Client | None = None
    ray: str | None = None
    actors: dict[str, dict] = field(default_factory=dict)  # Ray: the first core's hosts

    def start(self, *extra: str) -> None:
        http = free_port()  # a restarted core listens elsewhere: the hosts are told
        hosts = ["--ray", self.ray] if self.ray else ["--hosts", "local"]
        opts = ["--network", str(self.network), *hosts, *OPTIONS, *extra]
        self.proc = start_server(self.data, http, self.mqtt, extra=opts)
        self.token = self.token or (self.data / "admin.token").read_text().strip()
        if self.client is not None:
            self.client.close()
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{http}", headers={"Authorization": f"Bearer {self.token}"}
        )
        if self.ray and not self.actors:  # where the core says each host actor is
            edge = self.client.get("/api/2/orchestrator").json()["edge"]
            for h, pid in edge["pids"].items():
                address, mqtt = mqtt_of(edge["mqtt"][h])
                control = int(edge["control"][h].rpartition(":")[2])
                self.actors[h] = {"pid": pid, "mqtt_port": mqtt, "control_port": control}
                self.actors[h]["address"] = address

    def host_info(self, h: str) -> dict:
        """A host's ``pid``, ``mqtt_port``, ``control_port`` and ``address``."""
        if self.ray:
            return self.actors[h]
        info = json.loads((self.data / "hosts" / h / "process.json").read_text())
        return {"address": "127.0.0.1", **info}

    def host_ids(self) -> list[str]:
        """The network's hosts (those the first core started)."""
        if self.ray:
            return sorted(self.actors)
        return sorted(p.parent.name for p in (self.data / "hosts").glob("*/process.json"))

    def endpoint(self, h: str) -> tuple[str, int]:
        """Host ``h``'s device endpoint."""
        return self.host_info(h)["address"], self.host_info(h)["mqtt_port"]

    def host_alive(self, h: str) -> bool:
        try:
            os.kill(self.host_info(h)["pid"], 0)
        except OSError:
            return False
        with contextlib.suppress(OSError):  # a zombie is dead
            with open(f"/proc/{self.host_info(h)['pid']}/stat") as f:
                return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
        return True

    def control(self, h: str, method: str, path: str, body: Any = None) -> httpx.Response:
        """A call to host ``h``'s control API (as the core makes them)."""
        token = (self.data / "hosts.token").read_text().strip()
        url = f"http://{self.host_info(h)['address']}:{self.host_info(h)['control_port']}{path}"
        return httpx.request(
            method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def ownership(self, h: str) -> dict:
        """What host ``h`` says of the twin: its process's answer, or its log's once the
        process is dead."""
        if self.host_alive(h):
            r = self.control(h, "GET", f"/twins/{TWIN}/ownership")
            assert r.status_code == 200, r.text
            return r.json()
        host = EdgeHost.open(self.data / "hosts" / h / "edge.sqlite")
        try:
            own = host.status(TWIN)
            return {"status": str(own.status), "owner": own.owner, "epoch": own.epoch}
        finally:
            asyncio.run(host.close())

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        for h in self.host_ids():  # a core killed and not restarted leaves its hosts
            with contextlib.suppress(OSError, KeyError, ValueError):
                if self.host_alive(h):
                    os.kill(self.host_info(h)["pid"], signal.SIGKILL)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "data", two_sites_file(tmp_path), free_port(), "")
    try:
        yield c
    finally:
        c.stop()


def served_by(c: Cluster, host: str) -> bool:
    """The core names ``host`` for the twin, that host owns it, and no migration is
    left unfinished."""
    assert c.client is not None
    doc = c.client.get(f"/api/2/things/{TWIN}").json()
    if doc.get("_host") != host or not c.host_alive(host):
        return False
    health = c.client.get("/healthz").json()["orchestrator"].get("hosts") or {}
    if health.get("unfinished_migrations"):
        return False
    return c.ownership(host)["status"] == str(TwinStatus.OWNED)


def ride_out(
    c: Cluster,
    device: Device,
    who: str,
    final: str,
    *restart: str,
    kill_first: str | None = None,
    then_core: bool = False,
) -> None:
    """Run ``device`` while the failpoint kills ``who`` (``source``: edge-1, ``target``:
    edge-2, or ``core``, started again with the options ``restart``) until the twin is
    served by ``final`` alone and the device had :data:`AFTER_RECOVERY` more reports
    acknowledged. ``kill_first``: a host the test SIGKILLs itself once the device had 5
    reports acknowledged there (mid-load), before the failpoint's kill; ``then_core``: once
    ``who`` (a host) died, SIGKILL the core and start it again (with its hosts)."""
    recovered = threading.Event()
    since: list[int] = []  # acknowledged reports when the recovery was seen

    def done() -> bool:
        if recovered.is_set() and not since:
            since.append(len(device.acked))
        return bool(since) and len(device.acked) >= since[0] + AFTER_RECOVERY

    def watch() -> None:
        """Wait for the failpoint's kill, restart a dead core, wait for the recovery."""
        assert c.proc is not None
        if kill_first is not None:
            wait_for(lambda: len(device.acked) >= 5, "5 reports acknowledged", 1200)
            os.kill(c.host_info(kill_first)["pid"], signal.SIGKILL)
        if who == "core":
            wait_for(lambda: c.proc.poll() is not None, "the core killed at its failpoint", 1200)
            assert c.proc.returncode == -signal.SIGKILL  # by its failpoint, not a crash
            c.start(*restart)
        else:
            dead = "edge-1" if who == "source" else "edge-2"
            wait_for(lambda: not c.host_alive(dead), f"{dead} killed at its failpoint", 1200)
            if then_core:
                c.proc.kill()
                c.proc.wait(timeout=60)
                c.start(*restart)
        wait_for(lambda: served_by(c, final), f"the twin served by {final} alone", 1200)
        recovered.set()

    async def main() -> None:
        watcher = asyncio.create_task(asyncio.to_thread(watch))
        run = asyncio.create_task(device.run(done))
        await asyncio.wait({watcher, run}, return_when=asyncio.FIRST_EXCEPTION)
        for t in (watcher, run):
            if t.done():
                t.result()  # its failure, if any
        await watcher
        await run

    asyncio.run(main())


def check_outcome(
    c: Cluster, device: Device, final: str, first: tuple[str, int] | None = None
) -> dict[str, dict]:
    """Every acknowledged report is in the core, in order, each once; the twin is served
    by ``final`` alone, the one the core names; the device was acknowledged there at the
    end (and first at ``first``, by default edge-1's device endpoint); a host that held
    the twin before and lives on refuses to write it. Returns what each host says of the
    twin."""
    client = c.client
    assert client is not None
    n = device.acked[-1]
    assert device.acked == list(range(1, n + 1))
    assert device.acked_at[0] == (first or c.endpoint("edge-1"))
    final_mqtt = mqtt_of(c.control(final, "GET", "/status").json()["mqtt"])
    assert device.acked_at[-AFTER_RECOVERY:] == [final_mqtt] * AFTER_RECOVERY
    # (n=1 added the feature: a change of /features/counter, not of its property)
    wait_for(
        lambda: (
            client.get(f"/api/2/things/{TWIN}").json()["features"]["counter"]["properties"]
            == {"n": n}
        ),
        "the last acknowledged report in the core",
        1200,
    )
    assert counter_history(client) == list(range(2, n + 1))
    assert client.get(f"/api/2/things/{TWIN}").json()["_host"] == final
    owners = {h: c.ownership(h) for h in c.host_ids()}
    assert [h for h, o in owners.items() if o["status"] == str(TwinStatus.OWNED)] == [final]
    for h, o in owners.items():
        if h != final and c.host_alive(h) and o["status"] != str(TwinStatus.ABSENT):
            r = c.control(h, "POST", f"/twins/{TWIN}/write", {"patch": {"attributes": {"x": 1}}})
            assert r.status_code == 409, r.text
            assert (r.json()["error"], r.json()["owner"]) == ("NotOwnerError", final)
    assert "x" not in client.get(f"/api/2/things/{TWIN}").json()["attributes"]
    return owners


def migrate_through_a_kill(c: Cluster, monkeypatch: Any, who: str, point: str, final: str) -> None:
    """Start ``c`` with the failpoint ``point``, place the robot on edge-1, drive its
    device to edge-2's site and ride out the migration and the kill of ``who``; check
    the outcome, and that the killed host stays dead, lets go of the twin in its log and
    was recovered (a killed core: that the hosts lived on)."""
    monkeypatch.setenv(ENV, f"{point}=kill")  # serve and (inherited) its host processes
    c.start()
    monkeypatch.delenv(ENV)  # a restarted core runs without it
    assert c.client is not None
    robot_on_edge_1(c.client)
    pids = {h: c.host_info(h)["pid"] for h in ("edge-1", "edge-2")}
    device = Device(c.mqtt, first={"position": {"x_m": 2990.0}})  # drives to edge-2's site
    ride_out(c, device, who, final, "--migration", "never")
    owners = check_outcome(c, device, final)
    edge = c.client.get("/api/2/orchestrator").json()["edge"]
    if who == "core":
        assert {h: c.host_info(h)["pid"] for h in pids} == pids  # the hosts lived on
    else:
        killed = "edge-1" if who == "source" else "edge-2"
        assert not c.host_alive(killed) and pids[killed] == c.host_info(killed)["pid"]
        assert owners[killed]["status"] != str(TwinStatus.OWNED)  # its log let it go
        assert [r["host"] for r in edge["recovered"]] == [killed]


@pytest.mark.parametrize("who, point, final", CASES, ids=[p.partition("@")[0] for _, p, _ in CASES])
def test_a_migration_survives_a_kill_at_each_phase(cluster, monkeypatch, who, point, final):
    migrate_through_a_kill(cluster, monkeypatch, who, point, final)


@pytest.mark.parametrize("point", ["driver.after-place", "driver.after-redirect"])
def test_a_placement_survives_a_kill_of_the_core(cluster, monkeypatch, point):
    """The core dies after placing a twin on edge-1 and before recording it (before it
    set the twin's replica position, or after, when it had sent the device there): the
    next ``serve`` finds the twin on edge-1 and records it there, or drops that copy and
    places the twin again; the device ends up acknowledged on edge-1."""
    c = cluster
    monkeypatch.setenv(ENV, f"{point}=kill")
    c.start()
    monkeypatch.delenv(ENV)
    assert c.client is not None
    device = Device(c.mqtt, here={"position": {"x_m": 10.0}})  # at edge-1's site

    # without a position it takes no part (not placed) until the core has its password
    thing = robot(10.0)
    position = thing.pop("features")
    r = c.client.put(f"/api/2/things/{TWIN}", json={"_domain": "fleet", **thing})
    assert r.status_code == 201, r.text
    r = c.client.put(f"/api/2/things/{TWIN}/credentials", json={"password": PASSWORD})
    assert r.status_code == 204, r.text
    r = c.client.put(f"/api/2/things/{TWIN}/features", json=position)
    assert r.status_code in (201, 204), r.text
    ride_out(c, device, "core", "edge-1")
    owners = check_outcome(c, device, "edge-1")
    assert owners["edge-2"]["status"] == str(TwinStatus.ABSENT)


# A host killed mid-load is recovered by the core: it reopens the host's log and moves its
# twins by stop-and-copy (expect, fence the log, copy, adopt, release) to the other host.
# (the process that dies during that recovery, its failpoint)
RECOVERY_CASES = [
    ("core", "driver.after-fence"),  # the dead host's log fenced to edge-2, nothing copied
    ("core", "driver.after-adopt"),  # edge-2 adopted it; the dead host's log not released
    ("target", "target.after-stage@edge-2"),  # the recovering host dies with the copy staged
    ("target", "target.after-adopt@edge-2"),  # ... with the copy adopted (durable)
]


@pytest.mark.parametrize(
    "who, point", RECOVERY_CASES, ids=[p.partition("@")[0] for _, p in RECOVERY_CASES]
)
def test_a_recovery_survives_a_kill_at_each_phase(cluster, monkeypatch, who, point):
    """edge-1 is SIGKILLed under load (the device stays at its site); while the core moves
    its twin to edge-2 from its log, the failpoint kills the core or edge-2. Then the core
    is started again (after edge-2's death too: no host was left), restarts the dead hosts
    on their logs and finishes the recovery: every report acknowledged by edge-1 and after
    is in the core once, in order, and edge-2 alone serves the twin."""
    c = cluster
    monkeypatch.setenv(ENV, f"{point}=kill")
    c.start()
    monkeypatch.delenv(ENV)
    assert c.client is not None
    robot_on_edge_1(c.client)
    first = c.endpoint("edge-1")
    device = Device(c.mqtt, here={"position": {"x_m": 10.0}})  # at edge-1's site
    killed = "edge-1" if who == "core" else "edge-2"  # a host the failpoint leaves dead
    ride_out(
        c, device, who, "edge-2", "--migration", "never",
        kill_first="edge-1", then_core=who == "target",
    )  # fmt: skip
    assert (c.data / "hosts" / killed / "host.log").exists()
    check_outcome(c, device, "edge-2", first)
    assert first in device.acked_at[:5]  # acknowledged by edge-1 before it was killed
    # the failpoint fired during the recovery of edge-1 (the first core's log says so)
    serve_log = min(c.data.parent.glob("serve-*.log")).read_text()
    recovering = serve_log.index("host process edge-1 died; recovering its twins from its log")
    if who == "core":
        assert serve_log.index(f"failpoint {point}@-: kill") > recovering
    else:
        assert f"failpoint {point}: kill" in (c.data / "hosts" / "edge-2" / "host.log").read_text()


# Host actors of a Ray cluster: the failpoint (passed on to the actors by the core, as
# local host processes inherit it) kills the actor's worker process; the core sees the
# actor die and recovers its twins from its log, as for a ``twinedge host`` process.
RAY_CASES = [
    ("source", "source.after-fence@edge-1", "edge-2"),  # fenced: resumed from its log
    ("target", "target.after-adopt@edge-2", "edge-1"),  # adopted: evacuated from its log
]


@pytest.fixture(scope="module")
def ray_address(request) -> str:
    """The address of a real Ray cluster on this machine, a node per edge site."""
    return request.getfixturevalue("ray_sites").address


@pytest.mark.parametrize("who, point, final", RAY_CASES, ids=[p for _, p, _ in RAY_CASES])
def test_a_migration_between_ray_actor_hosts_survives_a_kill(
    ray_address, tmp_path, monkeypatch, who, point, final
):
    c = Cluster(tmp_path / "data", two_sites_file(tmp_path), free_port(), "", ray=ray_address)
    try:
        migrate_through_a_kill(c, monkeypatch, who, point, final)
        # a Ray worker process died, not a `twinedge host` process
        with open(f"/proc/{c.host_info(final)['pid']}/cmdline", "rb") as f:
            assert b"host" not in f.read().split(b"\0")
    finally:
        c.stop()


def three_sites_file(tmp_path: Path) -> Path:
    """The two sites with a third edge server, edge-3, next to edge-2 with half its CPU
    (so a dead edge-1's twins are recovered to edge-2 first)."""
    sc = two_sites()
    nodes = sc["infrastructure"]["nodes"]
    edge_2 = next(n for n in nodes if n["id"] == "edge-2")
    nodes.append({**edge_2, "id": "edge-3", "cpu_ghz": 5})
    sc["infrastructure"]["links"] += [
        {"a": "edge-2", "b": "edge-3", "latency_ms": 1.0, "bandwidth_mbps": 1000},
        {"a": "edge-1", "b": "edge-3", "latency_ms": 5.0, "bandwidth_mbps": 1000},
    ]
    network = tmp_path / "three-sites.yaml"
    network.write_text(yaml.safe_dump(sc))
    return network


def test_a_recovery_cut_short_by_its_target_goes_on_to_another_host(tmp_path, monkeypatch):
    """edge-1 is SIGKILLed under load; edge-2, where the core recovers its twin, dies with
    the copy staged (the twin fenced to it in edge-1's log). The core lives on and has a
    third host: it recovers the twin there, from edge-1's log, without a restart."""
    c = Cluster(tmp_path / "data", three_sites_file(tmp_path), free_port(), "")
    try:
        monkeypatch.setenv(ENV, "target.after-stage@edge-2=kill")
        c.start()
        monkeypatch.delenv(ENV)
        assert c.client is not None and c.host_ids() == ["edge-1", "edge-2", "edge-3"]
        robot_on_edge_1(c.client)
        first = c.endpoint("edge-1")
        device = Device(c.mqtt, here={"position": {"x_m": 10.0}})  # at edge-1's site
        ride_out(c, device, "target", "edge-3", kill_first="edge-1")
        owners = check_outcome(c, device, "edge-3", first)
        assert owners["edge-1"]["status"] == str(TwinStatus.MOVED)
        edge = c.client.get("/api/2/orchestrator").json()["edge"]
        # edge-1's recovery failed; edge-2's (nothing adopted) then edge-1's again
        assert [(r["host"], r["to"]) for r in edge["recovered"]] == [
            ("edge-2", []),
            ("edge-1", ["edge-3"]),
        ]
    finally:
        c.stop()
