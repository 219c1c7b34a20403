"""The edge tier end to end, with real processes: ``twinedge serve --network ...`` (by
default, or ``--hosts local``) starts a ``twinedge host`` process per host; a device is
redirected from the core's broker to its twin's host, reports there (the PUBACK after the
host's commit), the reports reach the core by replication, and when the device crosses
to the other site the orchestrator migrates the twin live to the other host process and
the device follows the redirect; nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import aiomqtt
import httpx
import pytest

from tests.orchestrator.serving import serve_two_sites, two_sites_file, wait_for
from tests.orchestrator.test_live import robot
from twinedge.ledger import LedgerDir

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


async def host_of_twin(core_mqtt: int, kw: dict) -> tuple[str, int]:
    """Where the twin's device is sent: it reports to the core's broker (not taken
    there) and returns the MQTT address of the redirect it gets."""
    async with aiomqtt.Client("127.0.0.1", core_mqtt, **kw) as c:
        await c.subscribe(f"twinedge/{TWIN}/+", qos=1)
        await c.publish(f"twinedge/{TWIN}/reported", json.dumps({"counter": {"n": 0}}), qos=0)
        return mqtt_of((await next_redirect(c))["url"])


def robot_on_edge_1(client) -> None:
    """Create the robot twin at x = 10 m with its device's password; wait until the
    orchestrator has placed it on edge-1."""
    r = client.put(f"/api/2/things/{TWIN}", json={"_domain": "fleet", **robot(10.0)})
    assert r.status_code == 201, r.text
    r = client.put(f"/api/2/things/{TWIN}/credentials", json={"password": PASSWORD})
    assert r.status_code == 204, r.text
    wait_for(
        lambda: client.get(f"/api/2/things/{TWIN}").json().get("_host") == "edge-1",
        "placement on edge-1",
    )


def counter_history(client) -> list[int]:
    """Every value ``features/counter/properties/n`` took in the core's history of the
    twin, in order (all pages)."""
    items, cursor = [], None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/api/2/things/{TWIN}/history", params=params).json()
        items += page["items"]
        if not (cursor := page.get("cursor")):
            break
    return [
        o["value"] for h in items for o in h["ops"] if o["path"].endswith("/counter/properties/n")
    ]


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
def served(request, tmp_path, monkeypatch):
    """The two sites with host processes: on this machine (``--hosts local``), or as
    actors of the Ray cluster named by ``TWINEDGE_RAY`` (what ``--ray ADDRESS`` sets)."""
    options = ["--cycle-s", "0.2", "--forecast-horizon-s", "0"]
    if request.param == "ray":
        monkeypatch.setenv("TWINEDGE_RAY", request.getfixturevalue("ray_sites").address)
    else:
        options += ["--hosts", "local"]
    with serve_two_sites(tmp_path, *options) as s:
        # a `twinedge host` process per host, or Ray worker processes (none of those)
        for pid in s.client.get("/api/2/orchestrator").json()["edge"]["pids"].values():
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            is_twinedge_host = b"twinedge" in args and b"host" in args
            assert is_twinedge_host == (request.param == "local"), args
        # every host, process or actor, froze its heap once it started
        hosts_token = (s.data / "hosts.token").read_text().strip()
        control = s.client.get("/api/2/orchestrator").json()["edge"]["control"]
        assert sorted(control) == ["edge-1", "edge-2"]
        for url in control.values():
            status = httpx.get(f"{url}/status", headers={"Authorization": f"Bearer {hosts_token}"})
            assert status.json()["gc"]["frozen"] > 10_000, status.text
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
    # checked), a command sent through the host (no device is connected: it times out)
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
    r = client.post(f"/api/2/things/{TWIN}/inbox/messages/reboot?timeout=0.3", json={})
    assert r.status_code == 408, r.text
    assert "sent by edge host edge-2" in r.json()["detail"]
    # any other write is decided by the core and committed by the host, at the
    # acknowledgement level asked for
    merge = {"Content-Type": "application/merge-patch+json"}
    rev = doc()["_revision"]
    r = client.patch(
        f"/api/2/things/{TWIN}/attributes?ack=edge",
        json={"colour": "red"},
        headers={**merge, "Prefer": "return=representation", "If-Match": f'"{rev}"'},
    )
    assert r.status_code == 200, r.text
    # committed on the host; the core numbers it when it arrives: no ETag yet
    assert r.json()["colour"] == "red" and "ETag" not in r.headers
    r = client.put(f"/api/2/things/{TWIN}/attributes/size", json={"l_m": 1.5})
    assert r.status_code == 201, r.text
    assert doc()["attributes"]["size"] == {"l_m": 1.5}  # ack=core: the core's copy has it
    r = client.patch(
        f"/api/2/things/{TWIN}/attributes",
        json={"colour": "blue"},
        headers={**merge, "If-Match": f'"{rev}"'},
    )
    assert r.status_code == 412, r.text
    r = client.put(
        f"/api/2/things/{TWIN}/attributes/size",
        content=b"null",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "null" in r.json()["detail"], r.text
    assert client.delete(f"/api/2/things/{TWIN}/attributes/size").status_code == 204
    r = client.patch(f"/api/2/things/{TWIN}/attributes?ack=later", json={"a": 1}, headers=merge)
    assert r.status_code == 400, r.text
    after = doc()
    assert after["attributes"]["colour"] == "red" and "size" not in after["attributes"]
    assert after["features"]["battery"]["properties"] == {"level": 80}  # the device's, kept
    assert after["_host"] == "edge-2"
    edge = status["edge"]
    assert (edge["host_processes"], edge["live_migrations"], edge["migrations_failed"]) == (2, 1, 0)
    assert 0 < edge["downtime_ms"]["max"] < 10_000
    # deleting the twin retires it on its host: its device's reports are no longer taken
    # there, and a new twin of the same id starts clean on the same host
    assert client.delete(f"/api/2/things/{TWIN}").status_code == 204

    async def report_after_delete() -> None:
        kw = {"identifier": TWIN + "-late", "username": TWIN, "password": PASSWORD}
        host, port = mqtt_of(redirects[1]["url"])
        async with aiomqtt.Client(host, port, **kw) as c:
            await c.publish(
                f"twinedge/{TWIN}/reported", json.dumps({"battery": {"level": 1}}), qos=1
            )

    with pytest.raises(aiomqtt.MqttError):  # its credentials went with the thing
        asyncio.run(report_after_delete())
    assert client.get(f"/api/2/things/{TWIN}").status_code == 404
    assert (
        client.put(f"/api/2/things/{TWIN}", json={"_domain": "fleet", **robot(2990.0)}).status_code
        == 201
    )
    again = wait_for(lambda: (d := doc()).get("_host") == "edge-2" and d, "the new twin placed")
    assert "battery" not in again["features"] and again["attributes"] == {"kind": "robot"}
    assert [h["revision"] for h in client.get(f"/api/2/things/{TWIN}/history").json()["items"]][
        :1
    ] == [1]
    r = client.patch(f"/api/2/things/{TWIN}/attributes", json={"colour": "green"}, headers=merge)
    assert r.status_code in (200, 204), r.text
    assert doc()["attributes"]["colour"] == "green"


def test_commands_reach_the_device_on_its_host_and_follow_it_when_it_moves(tmp_path):
    """A command through the API to a twin on an edge host goes to the device through
    that host's broker, and the device's answer comes back as the API's answer; after the
    twin migrated, commands go to the new host, where the device now is."""
    options = ["--hosts", "local", "--cycle-s", "0.2", "--forecast-horizon-s", "0"]
    with serve_two_sites(tmp_path, *options) as s:
        client = s.client
        robot_on_edge_1(client)
        doc = lambda: client.get(f"/api/2/things/{TWIN}").json()  # noqa: E731

        def command(subject: str, payload: object, timeout_s: float = 10.0):
            return client.post(
                f"/api/2/things/{TWIN}/inbox/messages/{subject}",
                params={"timeout": timeout_s},
                json=payload,
                timeout=timeout_s + 10,
            )

        async def answer_commands(c: aiomqtt.Client, where: str, seen: list) -> dict:
            """The device: answers every command but ``ignore`` with what it was sent and
            where it was; returns the first redirect."""
            async for m in c.messages:
                topic = m.topic.value
                if "/commands/" in topic:
                    subject = topic.rsplit("/", 1)[1]
                    body = json.loads(m.payload)
                    seen.append((where, subject))
                    if subject != "ignore":
                        answer = {"subject": subject, "got": body["payload"], "at": where}
                        cid = body["correlationId"]
                        await c.publish(f"twinedge/{TWIN}/responses/{cid}", json.dumps(answer))
                elif topic.endswith("/redirect"):
                    return json.loads(m.payload)
            raise AssertionError("the connection ended without a redirect")

        async def device() -> tuple[list, list]:
            kw = {"identifier": TWIN, "username": TWIN, "password": PASSWORD}
            seen: list = []
            answers: list = []
            edge_1 = await host_of_twin(s.mqtt_port, kw)
            async with aiomqtt.Client(*edge_1, **kw) as c:
                await c.subscribe(f"twinedge/{TWIN}/#", qos=1)
                listener = asyncio.create_task(answer_commands(c, "edge-1", seen))
                r = await asyncio.to_thread(command, "honk", {"times": 2})
                answers.append((r.status_code, r.json()))
                r = await asyncio.to_thread(command, "ignore", None, 0.5)
                answers.append((r.status_code, r.json()["detail"]))
                r = await asyncio.to_thread(command, "a+b", None)
                answers.append((r.status_code, r.json()["detail"]))
                # the robot drives to the other site: the twin migrates, the device follows
                await c.publish(
                    f"twinedge/{TWIN}/reported", json.dumps({"position": {"x_m": 2990.0}}), qos=1
                )
                redirect = await asyncio.wait_for(listener, 30)
            assert redirect["host"] == "edge-2"
            await asyncio.to_thread(
                wait_for, lambda: doc().get("_host") == "edge-2", "the migration to edge-2"
            )
            async with aiomqtt.Client(*mqtt_of(redirect["url"]), **kw) as c:
                await c.subscribe(f"twinedge/{TWIN}/#", qos=1)
                listener = asyncio.create_task(answer_commands(c, "edge-2", seen))
                r = await asyncio.to_thread(command, "park", [1, 2])
                answers.append((r.status_code, r.json()))
                listener.cancel()
            return seen, answers

        seen, answers = asyncio.run(device())
        assert answers[0] == (200, {"subject": "honk", "got": {"times": 2}, "at": "edge-1"})
        assert answers[1][0] == 408 and "sent by edge host edge-1" in answers[1][1]
        assert answers[2][0] == 400 and "subject" in answers[2][1]
        assert answers[3] == (200, {"subject": "park", "got": [1, 2], "at": "edge-2"})
        # each command reached the device once, at the host that served the twin then
        assert seen == [("edge-1", "honk"), ("edge-1", "ignore"), ("edge-2", "park")]
        lines = client.get("/metrics").text.splitlines()
        assert "twinedge_command_timeouts_total 1.0" in lines
        # the hosts and the live migration in /metrics and /healthz
        for line in (
            "twinedge_edge_host_processes 2.0",
            "twinedge_edge_hosts_recovered_total 0.0",
            "twinedge_edge_live_migrations_total 1.0",
            "twinedge_edge_migrations_failed_total 0.0",
        ):
            assert line in lines, line
        edge = client.get("/api/2/orchestrator").json()["edge"]
        downtime = {
            q: float(line.rpartition(" ")[2])
            for line in lines
            for q in ("0.5", "0.99", "1")
            if line.startswith(f'twinedge_edge_migration_downtime_seconds{{quantile="{q}"}}')
        }
        assert downtime == pytest.approx(
            {
                q: edge["downtime_ms"][k] / 1000
                for q, k in (("0.5", "p50"), ("0.99", "p99"), ("1", "max"))
            }
        )
        assert 0 < downtime["1"] < 10
        health = client.get("/healthz").json()
        assert health["orchestrator"]["hosts"] == {
            "processes": 2,
            "recovered": 0,
            "unfinished_migrations": 0,
        }
        data = s.data
    # the ledger (closed when serve stopped) has the decision and what the move measured
    ld = LedgerDir.open(data / "ledger")
    try:
        assert all(r.ok for r in ld.verify())
        moved = [e["body"] for _, e in ld.log("op-b").find_type("migration")]
        handovers = [e["body"] for _, e in ld.log("op-b").find_type("handover")]
    finally:
        ld.close()
    assert [(b["twin"], b["from_host"], b["to_host"]) for b in moved] == [
        (TWIN, "edge-1", "edge-2")
    ]
    (h,) = handovers
    assert (h["twin"], h["from_host"], h["to_host"], h["method"], h["epoch"]) == (
        TWIN,
        "edge-1",
        "edge-2",
        "pre-copy",
        2,
    )
    assert h["downtime_s"] == pytest.approx(downtime["1"])  # the only live migration
    assert h["downtime_s"] == pytest.approx(h["fence_s"] + h["copy_s"] + h["adopt_s"], abs=1e-3)
    assert h["bytes"] > 0 and h["total_s"] >= h["downtime_s"]


def test_twins_run_the_behaviour_chosen_for_their_kind_and_tick_on_their_host(tmp_path):
    """``--behaviour robot=dead-reckoning``: the robot's twin runs dead reckoning on its
    host process: a device report with a velocity writes the prediction, the host's ticks
    move it on (x = x0 + vx * age), and both reach the core by replication."""
    options = ["--behaviour", "drone=default, robot=dead-reckoning"]  # default: host processes
    options += ["--cycle-s", "0.2", "--forecast-horizon-s", "0"]
    with serve_two_sites(tmp_path, *options) as s:
        client = s.client
        robot_on_edge_1(client)
        kw = {"identifier": TWIN, "username": TWIN, "password": PASSWORD}

        async def device() -> None:
            edge_1 = await host_of_twin(s.mqtt_port, kw)
            report = {"position": {"x_m": 10.0, "y_m": 5.0, "vx_mps": 2.0, "vy_mps": -1.0}}
            async with aiomqtt.Client(*edge_1, **kw) as c:
                await c.publish(f"twinedge/{TWIN}/reported", json.dumps(report), qos=1)

        asyncio.run(device())

        def predicted() -> dict | None:
            props = client.get(f"/api/2/things/{TWIN}").json()["features"]["position"]
            pred = props["properties"].get("predicted")
            return pred if pred and pred["age_s"] > 0 else None  # a tick moved it on

        pred = wait_for(predicted, "a tick's prediction replicated to the core")
        assert pred["x_m"] == pytest.approx(10.0 + 2.0 * pred["age_s"], abs=1e-6)
        assert pred["y_m"] == pytest.approx(5.0 - 1.0 * pred["age_s"], abs=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--behaviour", "robot=nope.nothing:X"], "cannot import module 'nope.nothing'"),
        (["--behaviour", "robot=teleport"], "unknown behaviour policy 'teleport'"),
        (["--behaviour", "robot="], "expected a behaviour after '='"),
    ],
)
def test_serve_refuses_a_behaviour_it_cannot_run(tmp_path, args, message):
    from tests.orchestrator.serving import two_sites_file
    from tests.runtime.test_reliability import free_port

    data = tmp_path / "data"
    out = subprocess.run(
        [sys.executable, "-m", "twinedge", "serve", "--data-dir", str(data),
         "--port", str(free_port()), "--mqtt-port", str(free_port()),
         "--network", str(two_sites_file(tmp_path)), *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert out.returncode != 0
    assert message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (data / "hosts").exists()  # no host process was started


@pytest.mark.parametrize(
    "placement, migration",
    [("nearest", "never"), ("greedy", "utility"), ("optimal", "predictive")],
)
def test_each_built_in_policy_places_and_moves_twins_on_host_processes(
    tmp_path, placement, migration
):
    """Every built-in placement and migration policy (``threshold`` is the default of
    the other tests) drives twins on host processes: two robots, one at each site, are
    placed on the host next to them; the first then reports from the other site, and
    every migration policy but ``never`` moves its twin there live."""
    options = ["--hosts", "local", "--placement", placement, "--migration", migration]
    options += ["--cycle-s", "0.2", "--forecast-horizon-s", "0"]
    with serve_two_sites(tmp_path, *options) as s:
        client = s.client
        for name, x_m in (("fleet:r1", 10.0), ("fleet:r2", 2990.0)):
            r = client.put(f"/api/2/things/{name}", json={"_domain": "fleet", **robot(x_m)})
            assert r.status_code == 201, r.text
        host = lambda t: client.get(f"/api/2/things/{t}").json().get("_host")  # noqa: E731
        wait_for(lambda: (host("fleet:r1"), host("fleet:r2")) == ("edge-1", "edge-2"), "placement")
        status = client.get("/api/2/orchestrator").json()
        assert (status["placement"], status["migration"]) == (placement, migration)
        assert {h["id"]: h["twins"] for h in status["hosts"]} == {"edge-1": 1, "edge-2": 1}
        # the robot reports from the other site (written on edge-1, replicated to the core)
        r = client.put(
            "/api/2/things/fleet:r1/features/position/properties", json={"x_m": 2990, "y_m": 0}
        )
        assert r.status_code in (201, 204), r.text
        if migration == "never":
            cycles = client.get("/api/2/orchestrator").json()["cycles"]
            wait_for(
                lambda: client.get("/api/2/orchestrator").json()["cycles"] >= cycles + 5,
                "five more cycles",
            )
            assert host("fleet:r1") == "edge-1"
            assert client.get("/api/2/orchestrator").json()["edge"]["live_migrations"] == 0
        else:
            wait_for(lambda: host("fleet:r1") == "edge-2", "the live migration to edge-2")
            edge = client.get("/api/2/orchestrator").json()["edge"]
            assert (edge["live_migrations"], edge["migrations_failed"]) == (1, 0)
        doc = client.get("/api/2/things/fleet:r1").json()
        assert doc["features"]["position"]["properties"] == {"x_m": 2990, "y_m": 0}


def test_a_host_killed_with_sigkill_loses_nothing_it_acknowledged(served, tmp_path):
    import os

    client, _proc, core_mqtt = served
    robot_on_edge_1(client)
    doc = lambda: client.get(f"/api/2/things/{TWIN}").json()  # noqa: E731
    acked = []

    async def device() -> None:
        kw = {"identifier": TWIN, "username": TWIN, "password": PASSWORD}
        host, port = await host_of_twin(core_mqtt, kw)
        async with aiomqtt.Client(host, port, **kw) as c:
            for n in range(1, 51):
                await c.publish(
                    f"twinedge/{TWIN}/reported", json.dumps({"counter": {"n": n}}), qos=1
                )
                acked.append(n)  # PUBACK: committed to edge-1's log

    asyncio.run(device())
    edge = client.get("/api/2/orchestrator").json()["edge"]
    # each host process's device endpoint, as its devices are redirected to it
    assert set(edge["mqtt"]) == set(edge["pids"]) == {"edge-1", "edge-2"}
    assert all(u.startswith("mqtt://") for u in edge["mqtt"].values()), edge["mqtt"]
    pid = edge["pids"]["edge-1"]
    os.kill(pid, 9)
    final = wait_for(
        lambda: (d := doc()).get("_host") == "edge-2" and d, "recovery on edge-2", 1200
    )
    assert final["features"]["counter"]["properties"] == {"n": acked[-1]} == {"n": 50}
    # the recovery is listed once its handover is in the ledger, a moment after the twin moved
    status = wait_for(
        lambda: (st := client.get("/api/2/orchestrator").json())["edge"]["recovered"] and st,
        "the recovery listed",
    )
    assert status["edge"]["recovered"] == [{"host": "edge-1", "twins": 1, "to": ["edge-2"]}]
    assert status["edge"]["host_processes"] == 1
    health = client.get("/healthz").json()
    assert health["orchestrator"]["hosts"] == {
        "processes": 1,
        "recovered": 1,
        "unfinished_migrations": 0,
    }
    assert "twinedge_edge_hosts_recovered_total 1.0" in client.get("/metrics").text.splitlines()


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


def test_the_core_killed_with_sigkill_mid_load_loses_nothing_and_hosts_keep_serving(tmp_path):
    """kill -9 of ``serve`` while a device reports to its twin's host: the host keeps
    acknowledging (its own commits), a ``serve`` started again on the same data directory
    takes the running host processes over, and replication brings every acknowledged
    report to the core."""
    import os
    import signal

    from tests.orchestrator.serving import free_port, start_server, two_sites_file

    network = two_sites_file(tmp_path)
    data, mqtt = tmp_path / "data", free_port()
    opts = ["--network", str(network), "--hosts", "local", "--cycle-s", "0.2"]
    opts += ["--forecast-horizon-s", "0"]
    http = free_port()
    proc = start_server(data, http, mqtt, extra=opts)
    token = (data / "admin.token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    import httpx

    client = httpx.Client(base_url=f"http://127.0.0.1:{http}", headers=auth)
    try:
        robot_on_edge_1(client)
        pids = client.get("/api/2/orchestrator").json()["edge"]["pids"]
        acked: list[int] = []

        async def device() -> None:
            kw = {"identifier": TWIN, "username": TWIN, "password": PASSWORD}
            host, port = await host_of_twin(mqtt, kw)
            async with aiomqtt.Client(host, port, **kw) as c:
                for n in range(1, 101):
                    if n == 40:
                        os.kill(proc.pid, signal.SIGKILL)  # the core, mid-load
                        await asyncio.to_thread(proc.wait, 30)
                    await c.publish(
                        f"twinedge/{TWIN}/reported", json.dumps({"counter": {"n": n}}), qos=1
                    )
                    acked.append(n)  # PUBACK from edge-1 after its commit, core or no core

        asyncio.run(device())
        assert acked == list(range(1, 101))
        client.close()
        http = free_port()  # the new core listens elsewhere: the hosts are told
        proc = start_server(data, http, mqtt, extra=opts)
        client = httpx.Client(base_url=f"http://127.0.0.1:{http}", headers=auth)
        final = wait_for(
            lambda: (
                (d := client.get(f"/api/2/things/{TWIN}").json())["features"]
                .get("counter", {})
                .get("properties")
                == {"n": 100}
                and d
            ),
            "every acknowledged report in the restarted core",
        )
        assert final["_host"] == "edge-1"
        assert client.get("/api/2/orchestrator").json()["edge"]["pids"] == pids  # taken over
        counters = counter_history(client)
        assert counters == list(range(2, 101))  # each once, in order (n=1 added the feature)
    finally:
        client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def test_a_target_host_that_never_answers_then_dies_loses_nothing(tmp_path):
    """The twin's device drives towards edge-2 while edge-2's process is stopped (it
    accepts connections and never answers): the migration fails before its fence, the
    twin stays on edge-1 and its device keeps being acknowledged there; once edge-2 is
    killed, the interrupted migration is finished (edge-1 serves on) and nothing
    acknowledged is lost."""
    import os
    import signal

    with serve_two_sites(
        tmp_path, "--hosts", "local", "--cycle-s", "0.2", "--forecast-horizon-s", "0"
    ) as s:
        client = s.client
        robot_on_edge_1(client)
        doc = lambda: client.get(f"/api/2/things/{TWIN}").json()  # noqa: E731
        pids = client.get("/api/2/orchestrator").json()["edge"]["pids"]
        os.kill(pids["edge-2"], signal.SIGSTOP)
        acked: list[int] = []
        status = lambda: client.get("/api/2/orchestrator").json()["edge"]  # noqa: E731

        async def device() -> None:
            kw = {"identifier": TWIN, "username": TWIN, "password": PASSWORD}
            host, port = await host_of_twin(s.mqtt_port, kw)
            async with aiomqtt.Client(host, port, **kw) as c:
                await c.publish(
                    f"twinedge/{TWIN}/reported", json.dumps({"position": {"x_m": 2990.0}}), qos=1
                )
                for n in range(1, 31):
                    await c.publish(
                        f"twinedge/{TWIN}/reported", json.dumps({"counter": {"n": n}}), qos=1
                    )
                    acked.append(n)
                await asyncio.to_thread(
                    wait_for,
                    lambda: status()["migrations_failed"] >= 1,
                    "the failed migration",
                    1200,
                )
                os.kill(pids["edge-2"], signal.SIGKILL)
                for n in range(31, 61):
                    await c.publish(
                        f"twinedge/{TWIN}/reported", json.dumps({"counter": {"n": n}}), qos=1
                    )
                    acked.append(n)

        asyncio.run(device())
        final = wait_for(
            lambda: (
                (d := doc())["features"].get("counter", {}).get("properties") == {"n": 60} and d
            ),
            "every acknowledged report in the core",
            1200,
        )
        assert final["_host"] == "edge-1"
        # the dead host leaves the count before its recovery ends and is listed
        edge = wait_for(
            lambda: (e := status())["host_processes"] == 1 and e["recovered"] and e,
            "edge-2 recovered",
            1200,
        )
        assert edge["live_migrations"] == 0 and edge["migrations_failed"] >= 1
        assert edge["recovered"] == [{"host": "edge-2", "twins": 0, "to": []}]
        # the core's copy is the device's, in order, each report once
        counters = counter_history(client)
        assert counters == list(range(2, 61))


def test_stop_and_copy_moves_a_live_twin_with_every_acknowledged_report(tmp_path):
    """``--migration-method stop-and-copy``: the twin moves between host processes by the
    baseline (fenced, then copied whole), the device follows the redirect, every report
    acknowledged at either host is in the core once and in order, and the ledger's
    ``handover`` says which method ran and that nothing was copied before the fence."""
    options = ["--hosts", "local", "--cycle-s", "0.2", "--forecast-horizon-s", "0"]
    with serve_two_sites(tmp_path, *options, "--migration-method", "stop-and-copy") as s:
        client = s.client
        robot_on_edge_1(client)
        kw = {"identifier": TWIN, "username": TWIN, "password": PASSWORD}

        async def device() -> dict:
            async with aiomqtt.Client(*await host_of_twin(s.mqtt_port, kw), **kw) as c:
                await c.subscribe(f"twinedge/{TWIN}/redirect", qos=1)
                for n in range(6):  # 0 adds the feature; the history has the others' values
                    await c.publish(
                        f"twinedge/{TWIN}/reported", json.dumps({"counter": {"n": n}}), qos=1
                    )
                await c.publish(
                    f"twinedge/{TWIN}/reported", json.dumps({"position": {"x_m": 2990.0}}), qos=1
                )
                redirect = await next_redirect(c, 30)
            async with aiomqtt.Client(*mqtt_of(redirect["url"]), **kw) as c:
                for n in range(6, 9):
                    await c.publish(
                        f"twinedge/{TWIN}/reported", json.dumps({"counter": {"n": n}}), qos=1
                    )
            return redirect

        redirect = asyncio.run(device())
        assert (redirect["host"], redirect["epoch"]) == ("edge-2", 2)
        wait_for(
            lambda: (
                client.get(f"/api/2/things/{TWIN}").json()["features"]["counter"]["properties"]["n"]
                == 8
            ),
            "the last report replicated",
        )
        assert counter_history(client) == list(range(1, 9))  # each once, in order
        edge = client.get("/api/2/orchestrator").json()["edge"]
        assert edge["migration_method"] == "stop-and-copy"
        assert (edge["live_migrations"], edge["migrations_failed"]) == (1, 0)
        data = s.data
    ld = LedgerDir.open(data / "ledger")
    try:
        (h,) = [e["body"] for _, e in ld.log("op-b").find_type("handover")]
    finally:
        ld.close()
    assert (h["from_host"], h["to_host"], h["method"], h["epoch"], h["rounds"]) == (
        "edge-1",
        "edge-2",
        "stop-and-copy",
        2,
        0,
    )
    assert h["copy_s"] > 0 and h["downtime_s"] == pytest.approx(
        h["fence_s"] + h["copy_s"] + h["adopt_s"], abs=1e-3
    )


def test_serve_refuses_an_unknown_migration_method(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "twinedge", "serve", "--data-dir", str(tmp_path / "d"),
         "--network", str(two_sites_file(tmp_path)), "--migration-method", "teleport"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert r.returncode == 2
    assert (
        "--migration-method: migration_method: got 'teleport'; expected pre-copy or "
        "stop-and-copy" in r.stderr
    ), r.stderr


def test_with_no_live_host_left_the_core_serves_the_twins_again(tmp_path):
    """Both host processes killed with SIGKILL, one after the other: the twin is first
    recovered onto edge-2, then, with no host left, served by the core again: every
    report acknowledged at either host is in its copy, in order, and its writes and its
    device's reports are taken by the core."""
    import os

    options = ["--hosts", "local", "--cycle-s", "0.2", "--forecast-horizon-s", "0"]
    with serve_two_sites(tmp_path, *options) as s:
        client = s.client
        robot_on_edge_1(client)
        doc = lambda: client.get(f"/api/2/things/{TWIN}").json()  # noqa: E731
        pids = client.get("/api/2/orchestrator").json()["edge"]["pids"]
        kw = {"identifier": TWIN, "username": TWIN, "password": PASSWORD}

        async def report(where: tuple[str, int], values: range) -> None:
            async with aiomqtt.Client(*where, **kw) as c:
                for n in values:  # each awaited: PUBACK after the host's commit
                    await c.publish(
                        f"twinedge/{TWIN}/reported", json.dumps({"counter": {"n": n}}), qos=1
                    )

        asyncio.run(report(asyncio.run(host_of_twin(s.mqtt_port, kw)), range(6)))
        os.kill(pids["edge-1"], 9)
        wait_for(lambda: doc().get("_host") == "edge-2", "recovery on edge-2", 1200)
        asyncio.run(report(asyncio.run(host_of_twin(s.mqtt_port, kw)), range(6, 11)))
        os.kill(pids["edge-2"], 9)
        back = wait_for(
            lambda: (d := doc()).get("_host") is None and d, "the core serving it", 1200
        )
        assert back["features"]["counter"]["properties"] == {"n": 10}
        status = client.get("/api/2/orchestrator").json()["edge"]
        assert status["recovered"] == [
            {"host": "edge-1", "twins": 1, "to": ["edge-2"]},
            {"host": "edge-2", "twins": 1, "to": ["core"]},
        ]
        # the core takes the device's reports (no redirect) and the API's writes
        asyncio.run(report(("127.0.0.1", s.mqtt_port), range(11, 13)))
        r = client.patch(
            f"/api/2/things/{TWIN}/attributes",
            json={"colour": "red"},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code in (200, 204), r.text
        after = doc()
        assert after["features"]["counter"]["properties"] == {"n": 12}
        assert after["attributes"]["colour"] == "red"
        assert counter_history(client) == list(range(1, 13))  # each once, in order


def test_a_restart_that_fails_leaves_the_hosts_it_took_over_serving(tmp_path):
    """The core and edge-2 are SIGKILLed; a ``serve`` started again takes edge-1 over, but
    edge-2 cannot start (its log is held elsewhere): ``serve`` exits 2 naming edge-2 and
    the holder, and edge-1, which it took over, keeps running; once the log is free, the
    next ``serve`` takes edge-1 over again and starts edge-2."""
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from tests.orchestrator.serving import free_port, start_server
    from tests.orchestrator.test_serve_hosts import alive
    from twinedge.edge.errors import EdgeLogError
    from twinedge.edge.log import EdgeLog

    data, mqtt = tmp_path / "data", free_port()
    opts = ["--network", str(two_sites_file(tmp_path)), "--hosts", "local"]
    opts += ["--cycle-s", "0.2", "--forecast-horizon-s", "0"]
    proc = start_server(data, free_port(), mqtt, extra=opts)
    http = free_port()
    pids: dict[str, int] = {}
    try:
        token = (data / "admin.token").read_text().strip()
        with httpx.Client(
            base_url=f"http://127.0.0.1:{proc.args[proc.args.index('--port') + 1]}",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            pids = client.get("/api/2/orchestrator").json()["edge"]["pids"]
        proc.kill()
        proc.wait(timeout=60)
        os.kill(pids["edge-2"], signal.SIGKILL)
        wait_for(lambda: not alive(pids["edge-2"]), "edge-2 gone")

        def take_log() -> EdgeLog | None:
            """edge-2's log, once its killed process has let go of its lock."""
            try:
                return EdgeLog.open(data / "hosts" / "edge-2" / "edge.sqlite")
            except EdgeLogError:
                return None

        held = wait_for(take_log, "edge-2's log released by its killed process")
        try:
            args = [sys.executable, "-m", "twinedge", "serve", "--data-dir", str(data)]
            args += ["--port", str(http), "--mqtt-port", str(mqtt), *opts]
            r = subprocess.run(
                args, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL
            )
            assert r.returncode == 2, r.stderr
            assert "error: host process edge-2 did not come up" in r.stderr, r.stderr
            host_log = (data / "hosts" / "edge-2" / "host.log").read_text()
            assert f"process {os.getpid()} holds" in host_log, host_log[-2000:]
            assert alive(pids["edge-1"])  # taken over, then left serving
        finally:
            held.close()
        proc = start_server(data, http, mqtt, extra=opts)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{http}", headers={"Authorization": f"Bearer {token}"}
        ) as client:
            now = client.get("/api/2/orchestrator").json()["edge"]["pids"]
        assert now["edge-1"] == pids["edge-1"] and now["edge-2"] != pids["edge-2"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        for pid in pids.values():  # a host left behind by a failure above
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
