"""The edge tier end to end, with real processes: ``twinedge serve --network ... --hosts
local`` starts a ``twinedge host`` process per host; a device is redirected from the
core's broker to its twin's host, reports there (the PUBACK after the host's commit),
the reports reach the core by replication, and when the device crosses to the other
site the orchestrator migrates the twin live to the other host process and the device
follows the redirect; nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from tests.orchestrator.serving import serve_two_sites, wait_for
from tests.orchestrator.test_live import robot

pytestmark = pytest.mark.slow

TWIN = "fleet:r1"
PASSWORD = "pw-robot-1"


async def next_redirect(client: aiomqtt.Client, timeout_s: float = 20.0) -> dict:
    async def first() -> dict:
        async for m in client.messages:
            if m.topic.value.endswith("/redirect"):
                return json.loads(m.payload)
        raise AssertionError("no redirect")

    return await asyncio.wait_for(first(), timeout_s)


def mqtt_of(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("mqtt://").rpartition(":")
    return host, int(port)


@pytest.fixture(scope="module")
def ray_sites():
    """A real Ray cluster on this machine: a head and one node per edge site, each
    offering the resource named after its site."""
    pytest.importorskip("ray")
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for site in ("edge-1", "edge-2"):
        cluster.add_node(num_cpus=1, resources={site: 1})
    try:
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


@pytest.fixture(params=["local", "ray"])
def served(request, tmp_path):
    hosts = "local"
    if request.param == "ray":
        hosts = f"ray:{request.getfixturevalue('ray_sites').address}"
    options = ["--hosts", hosts, "--cycle-s", "0.2", "--forecast-horizon-s", "0"]
    with serve_two_sites(tmp_path, *options) as s:
        yield s.client, s.proc, s.mqtt_port


def test_a_device_follows_its_twin_from_the_core_to_a_host_and_between_hosts(served):
    client, _proc, core_mqtt = served
    assert (
        client.put(f"/api/2/things/{TWIN}", json={"_domain": "fleet", **robot(10.0)}).status_code
        == 201
    )
    r = client.put(f"/api/2/things/{TWIN}/credentials", json={"password": PASSWORD})
    assert r.status_code == 204, r.text
    doc = lambda: client.get(f"/api/2/things/{TWIN}").json()  # noqa: E731
    wait_for(lambda: doc().get("_host") == "edge-1", "placement on edge-1")

    async def device() -> list[dict]:
        redirects = []
        kw = {"identifier": TWIN, "username": TWIN, "password": PASSWORD}
        # 1. at the core's broker: a report is not taken there, a redirect says where to go
        async with aiomqtt.Client("127.0.0.1", core_mqtt, **kw) as c:
            await c.subscribe(f"twinedge/{TWIN}/+", qos=1)
            await c.publish(
                f"twinedge/{TWIN}/reported", json.dumps({"position": {"x_m": 11.0}}), qos=0
            )
            redirects.append(await next_redirect(c))
        # 2. at edge-1: acknowledged after edge-1's commit; then the robot drives away
        host, port = mqtt_of(redirects[0]["url"])
        async with aiomqtt.Client(host, port, **kw) as c:
            await c.subscribe(f"twinedge/{TWIN}/+", qos=1)
            await c.publish(
                f"twinedge/{TWIN}/reported", json.dumps({"position": {"x_m": 20.0}}), qos=1
            )
            await asyncio.to_thread(
                wait_for,
                lambda: doc()["features"]["position"]["properties"]["x_m"] == 20.0,
                "replication",
            )
            await c.publish(
                f"twinedge/{TWIN}/reported", json.dumps({"position": {"x_m": 2990.0}}), qos=1
            )
            redirects.append(await next_redirect(c))
        # 3. at edge-2, after the live migration
        host, port = mqtt_of(redirects[1]["url"])
        async with aiomqtt.Client(host, port, **kw) as c:
            await c.publish(
                f"twinedge/{TWIN}/reported", json.dumps({"battery": {"level": 80}}), qos=1
            )
        return redirects

    redirects = asyncio.run(device())
    assert [(r["host"], r["epoch"]) for r in redirects] == [("edge-1", 1), ("edge-2", 2)]
    final = wait_for(
        lambda: (d := doc()).get("features", {}).get("battery") and d, "the last report replicated"
    )
    assert final["_host"] == "edge-2"
    assert final["features"]["position"]["properties"] == {"x_m": 2990.0, "y_m": 0.0}
    assert final["features"]["battery"]["properties"] == {"level": 80}
    status = client.get("/api/2/orchestrator").json()
    assert status["migrations_total"] == 1 and status["placements_total"] == 1
    # writes to a twin on a host: desired state forwarded (with its precondition
    # checked), a command refused with the reason, a plain attribute write refused
    rev = final["_revision"]
    lamp = f"/api/2/things/{TWIN}/features/lamp/desiredProperties"
    r = client.patch(
        lamp,
        json={"on": True},
        headers={"If-Match": f'"{rev - 1}"', "Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 412, r.text
    r = client.patch(
        lamp,
        json={"on": True},
        headers={"If-Match": f'"{rev}"', "Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code in (200, 204), r.text
    assert doc()["features"]["lamp"]["desiredProperties"] == {"on": True}
    r = client.post(f"/api/2/things/{TWIN}/inbox/messages/reboot", json={})
    assert r.status_code == 409 and "commands are not carried to edge hosts" in r.json()["detail"]
    r = client.patch(
        f"/api/2/things/{TWIN}/attributes",
        json={"colour": "red"},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 409 and "served by edge host edge-2" in r.json()["detail"]
    edge = status["edge"]
    assert (edge["host_processes"], edge["live_migrations"], edge["migrations_failed"]) == (2, 1, 0)
    assert 0 < edge["downtime_ms"]["max"] < 10_000


def test_a_host_killed_with_sigkill_loses_nothing_it_acknowledged(served, tmp_path):
    import os

    client, _proc, core_mqtt = served
    assert (
        client.put(f"/api/2/things/{TWIN}", json={"_domain": "fleet", **robot(10.0)}).status_code
        == 201
    )
    assert (
        client.put(f"/api/2/things/{TWIN}/credentials", json={"password": PASSWORD}).status_code
        == 204
    )
    doc = lambda: client.get(f"/api/2/things/{TWIN}").json()  # noqa: E731
    wait_for(lambda: doc().get("_host") == "edge-1", "placement on edge-1")
    acked = []

    async def device() -> None:
        kw = {"identifier": TWIN, "username": TWIN, "password": PASSWORD}
        async with aiomqtt.Client("127.0.0.1", core_mqtt, **kw) as c:
            await c.subscribe(f"twinedge/{TWIN}/+", qos=1)
            await c.publish(f"twinedge/{TWIN}/reported", json.dumps({"counter": {"n": 0}}), qos=0)
            url = (await next_redirect(c))["url"]
        host, port = mqtt_of(url)
        async with aiomqtt.Client(host, port, **kw) as c:
            for n in range(1, 51):
                await c.publish(
                    f"twinedge/{TWIN}/reported", json.dumps({"counter": {"n": n}}), qos=1
                )
                acked.append(n)  # PUBACK: committed to edge-1's log

    asyncio.run(device())
    pid = client.get("/api/2/orchestrator").json()["edge"]["pids"]["edge-1"]
    os.kill(pid, 9)
    final = wait_for(lambda: (d := doc()).get("_host") == "edge-2" and d, "recovery on edge-2")
    assert final["features"]["counter"]["properties"] == {"n": acked[-1]} == {"n": 50}
    status = client.get("/api/2/orchestrator").json()
    assert status["edge"]["recovered"] == [{"host": "edge-1", "twins": 1, "to": ["edge-2"]}]
    assert status["edge"]["host_processes"] == 1


def test_the_ray_cluster_example_of_live_md_runs(tmp_path):
    """docs/live.md's Ray example, run as written from the repository root."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("ray")
    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "live.md").read_text()
    (block,) = re.findall(r"```python\n(# ray cluster example\n.*?)```", doc, re.S)
    out = subprocess.run(
        [sys.executable, "-c", block], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "host actors: 2 ['edge-1', 'edge-2']" in out.stdout
