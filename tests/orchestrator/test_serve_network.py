"""``twinedge serve --network``: a real server process whose orchestrator places and
migrates live twins, seen over HTTP and /metrics, with its decisions in a ledger that
verifies. Polls are bounded by count (the server cycles on its own clock).

The orchestrator's own bookkeeping is tested with ``--hosts none`` (the twins stay in the
core; no host process starts); the default, a host process per host, is tested in
``test_serve_hosts.py`` and ``test_edge_hosts.py``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
import pytest

from tests.orchestrator.serving import serve_two_sites, wait_for
from tests.orchestrator.test_live import robot
from tests.runtime.test_reliability import free_port, start_server, stop_server


@pytest.fixture
def served(tmp_path):
    options = ["--hosts", "none", "--cycle-s", "0.1", "--migration", "threshold"]
    with serve_two_sites(tmp_path, *options) as s:
        yield s.client, s.proc, s.data


def test_serve_places_and_migrates_live_twins(served):
    client, proc, data = served
    r = client.put("/api/2/things/fleet:r1", json={"_domain": "fleet", **robot(10.0)})
    assert r.status_code == 201, r.text

    def host():
        return client.get("/api/2/things/fleet:r1").json().get("_host")

    assert wait_for(lambda: host() == "edge-1", "placement on edge-1")
    r = client.put(
        "/api/2/things/fleet:r1/features/position/properties",
        json={"x_m": 2990.0, "y_m": 0.0},
    )
    assert r.status_code == 204, r.text
    assert wait_for(lambda: host() == "edge-2", "migration to edge-2")

    # the counters move once the cycle's writes are done, a moment after the twin shows it
    status = wait_for(
        lambda: (st := client.get("/api/2/orchestrator").json())["migrations_total"] == 1 and st,
        "the migration counted",
    )
    assert status["network"] == "two-sites"
    assert (status["placement"], status["migration"]) == ("greedy", "threshold")
    assert status["placements_total"] == 1 and status["migrations_total"] == 1
    assert {h["id"]: h["twins"] for h in status["hosts"]} == {"edge-1": 0, "edge-2": 1}
    # --hosts none: the placement is bookkeeping; no host process ever started
    assert status["edge"] is None and not (data / "hosts").exists()
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["orchestrator"]["network"] == "two-sites" and health["orchestrator"]["running"]
    assert health["orchestrator"]["error"] is None and health["orchestrator"]["cycles"] >= 2
    forecast = client.get("/api/2/orchestrator/forecast").json()
    assert forecast["twins"] == 1 and forecast["steps"]
    metrics = client.get("/metrics").text
    assert 'twinedge_host_twins{host="edge-2"} 1.0' in metrics
    assert "twinedge_orchestrator_migrations_total 1.0" in metrics

    stop_server(proc)
    out = subprocess.run(
        [sys.executable, "-m", "twinedge", "ledger", "verify", str(data / "ledger"), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)


def test_serve_without_a_network_says_so(tmp_path):
    data, http, mqtt = tmp_path / "data", free_port(), free_port()
    proc = start_server(data, http, mqtt)
    try:
        token = (data / "admin.token").read_text().strip()
        r = httpx.get(
            f"http://127.0.0.1:{http}/api/2/orchestrator",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 404
        assert "twinedge serve --network" in r.json()["detail"]
        assert "orchestrator" not in httpx.get(f"http://127.0.0.1:{http}/healthz").json()
        assert httpx.get(f"http://127.0.0.1:{http}/api/2/orchestrator").status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--network", "no-such.yaml"], "no-such.yaml"),
        (["--network", "city-small", "--migration", "nope"], "unknown migration policy 'nope'"),
        (["--network", "city-small", "--placement", "threshold"], "unknown placement policy"),
        (["--network", "city-small", "--cycle-s", "0"], "cycle_s: got 0"),
        (
            ["--network", "city-small", "--hosts", "none", "--behaviour", "dead-reckoning"],
            "behaviours run on host processes, and with hosts none (--hosts) the twins stay",
        ),
        (["--behaviour", "dead-reckoning"], "give --network too"),
        (["--network", "city-small", "--hosts", "ray:"], "hosts: got 'ray:'; expected local"),
        (["--network", "city-small", "--ray", "head"], "ray: got 'head'; expected host:port"),
        (["--ray", "127.0.0.1:6379"], "host actors serve a network: give --network too"),
        (
            ["--network", "city-small", "--hosts", "local", "--ray", "127.0.0.1:6379"],
            "--ray: ray: got '127.0.0.1:6379', but --hosts: hosts: got 'local'; give one of them",
        ),
        (["--network", "city"], "its 67 hosts are more than the 16 host processes"),
    ],
)
def test_serve_refuses_a_bad_network_before_it_starts(tmp_path, args, message):
    data = tmp_path / "data"
    out = subprocess.run(
        [sys.executable, "-m", "twinedge", "serve", "--data-dir", str(data), "--port", str(free_port()),
         "--mqtt-port", str(free_port()), *args],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert not (data / "twins.db").exists()  # nothing was started
