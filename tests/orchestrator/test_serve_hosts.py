"""Where ``twinedge serve --network`` runs the twins: by default a ``twinedge host``
process per host of the network on this machine (they stop with the core), with
``--hosts none`` in the core, and a network with more hosts than one machine runs is
refused in one line that names both ways out. Real processes on loopback; polls are
bounded by count."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiomqtt
import httpx
import pytest

from tests.orchestrator.serving import serve_two_sites, wait_for
from tests.orchestrator.test_live import robot
from tests.runtime.test_reliability import free_port, start_server, stop_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LIMIT = "its 67 hosts are more than the 16 host processes one machine runs: run them as Ray actors (--ray ADDRESS) or keep the twins in the core (--hosts none)"  # fmt: skip


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_serve_network_starts_a_host_process_per_host_that_stops_with_it(tmp_path):
    """No ``--hosts``: edge-1 and edge-2 each get a ``twinedge host`` process; a twin
    placed on edge-1 lives there (its device is sent to edge-1's own broker); SIGTERM to
    the core stops both host processes too."""
    with serve_two_sites(tmp_path, "--cycle-s", "0.2", "--forecast-horizon-s", "0") as s:
        edge = s.client.get("/api/2/orchestrator").json()["edge"]
        assert edge["host_processes"] == 2 and sorted(edge["pids"]) == ["edge-1", "edge-2"]
        pids = edge["pids"]
        for host, pid in pids.items():
            assert alive(pid)
            args = cmdline(pid)
            assert args[args.index("host") :][:3] == ["host", "--id", host]
            # ports of its own choosing, written once it listens: none raced for
            assert (
                args[args.index("--mqtt-port") + 1] == args[args.index("--control-port") + 1] == "0"
            )
            info = json.loads((s.data / "hosts" / host / "process.json").read_text())
            assert info["pid"] == pid
        health = s.client.get("/healthz").json()
        assert health["orchestrator"]["hosts"]["processes"] == 2

        twin, password = "fleet:r1", "pw-robot-1"
        robot_placed_on_edge_1(s, twin, password)
        edge_1 = json.loads((s.data / "hosts" / "edge-1" / "process.json").read_text())

        async def redirect() -> dict:
            kw = {"identifier": twin, "username": twin, "password": password}
            async with aiomqtt.Client("127.0.0.1", s.mqtt_port, **kw) as c:
                await c.subscribe(f"twinedge/{twin}/+", qos=1)
                await c.publish(f"twinedge/{twin}/reported", json.dumps({"n": {"v": 1}}), qos=0)
                async for m in c.messages:
                    if m.topic.value.endswith("/redirect"):
                        return json.loads(m.payload)
            raise AssertionError("no redirect")

        sent = asyncio.run(asyncio.wait_for(redirect(), 30))
        assert (sent["host"], sent["url"]) == ("edge-1", f"mqtt://127.0.0.1:{edge_1['mqtt_port']}")

        stop_server(s.proc)
        for pid in pids.values():
            wait_for(lambda pid=pid: not alive(pid), f"host process {pid} stopped", tries=200)


def robot_placed_on_edge_1(s, twin: str, password: str) -> None:
    """A robot with a device password, 10 m from edge-1's access point, once the
    orchestrator has placed it on edge-1."""
    r = s.client.put(f"/api/2/things/{twin}", json={"_domain": "fleet", **robot(10.0)})
    assert r.status_code == 201, r.text
    r = s.client.put(f"/api/2/things/{twin}/credentials", json={"password": password})
    assert r.status_code == 204, r.text
    wait_for(
        lambda: s.client.get(f"/api/2/things/{twin}").json().get("_host") == "edge-1",
        "placement on edge-1",
    )


def test_hosts_none_keeps_the_twins_in_the_core(tmp_path):
    """``--hosts none``: no host process, the twin's device reports to the core's broker
    and is taken there (no redirect), while the placement still records its host."""
    with serve_two_sites(tmp_path, "--hosts", "none", "--cycle-s", "0.2") as s:
        assert s.client.get("/api/2/orchestrator").json()["edge"] is None
        assert "hosts" not in s.client.get("/healthz").json()["orchestrator"]
        twin, password = "fleet:r1", "pw-robot-1"
        robot_placed_on_edge_1(s, twin, password)

        async def report() -> None:
            kw = {"identifier": twin, "username": twin, "password": password}
            async with aiomqtt.Client("127.0.0.1", s.mqtt_port, **kw) as c:
                await c.publish(f"twinedge/{twin}/reported", json.dumps({"n": {"v": 7}}), qos=1)

        asyncio.run(asyncio.wait_for(report(), 30))  # PUBACK: committed by the core
        doc = s.client.get(f"/api/2/things/{twin}").json()
        assert doc["features"]["n"]["properties"] == {"v": 7} and doc["_host"] == "edge-1"
        assert not (s.data / "hosts").exists()


def serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINEDGE_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    return {**env, **extra}


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--network", "city"], {}, f"error: --network: network: got 'city'; {LIMIT}"),
        (
            [],
            {"TWINEDGE_NETWORK": "city"},
            f"error: TWINEDGE_NETWORK: network: got 'city'; {LIMIT}",
        ),
        (
            ["--network", "city"],
            {"TWINEDGE_HOSTS": "local"},
            f"error: TWINEDGE_HOSTS: hosts: got 'local' with the network 'city'; {LIMIT}",
        ),
    ],
)
def test_a_network_with_more_hosts_than_one_machine_runs_is_refused(tmp_path, args, env, message):
    data = tmp_path / "data"
    out = subprocess.run(
        [sys.executable, "-m", "twinedge", "serve", "--data-dir", str(data),
         "--port", str(free_port()), "--mqtt-port", str(free_port()), *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=serve_env(**env),
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip() == message
    assert not data.exists()  # nothing was started or written, the ledger neither


def test_the_big_network_runs_with_its_twins_in_the_core(tmp_path):
    """The way out that needs no cluster: ``--hosts none`` serves the built-in city."""
    data, http = tmp_path / "data", free_port()
    proc = start_server(data, http, free_port(), extra=["--network", "city", "--hosts", "none"])
    try:
        token = (data / "admin.token").read_text().strip()
        status = httpx.get(
            f"http://127.0.0.1:{http}/api/2/orchestrator",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ).json()
        assert len(status["hosts"]) == 67 and status["edge"] is None
    finally:
        stop_server(proc)
