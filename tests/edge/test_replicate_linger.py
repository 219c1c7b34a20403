"""The replication linger of an edge host: it waits for more records before a request
(until ``replicate_batch`` are pending), but never while a caller waits for the core.
Real host servers replicating to a real ``twinedge serve --network``; polls are bounded
by count, and a linger of an hour stands for "never sent on its own"."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys

import httpx
import pytest

from tests.orchestrator.serving import serve_two_sites, wait_for
from tests.orchestrator.test_serve_hosts import robot_placed_on_edge_1
from tests.runtime.test_reliability import free_port
from twinedge.edge.errors import EdgeError
from twinedge.edge.server import DEFAULT_LINGER_S, HostServer

HOUR_S = 3600.0


def host_server(core, tmp_path, **kw) -> HostServer:
    """A host server replicating to the core served by ``core`` (ticks off: the only
    records are the test's own)."""
    token = (core.data / "hosts.token").read_text().strip()
    return HostServer(
        "edge-1", tmp_path / "host", core_url=str(core.client.base_url), token=token,
        mqtt_port=0, control_port=0, tick_s=0, **kw,
    )  # fmt: skip


async def until(predicate, what: str, tries: int = 600) -> None:
    """Poll ``predicate`` (10 ms apart, at most ``tries`` times)."""
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


def status_of(server: HostServer) -> dict:
    r = httpx.get(
        f"http://127.0.0.1:{server.control_port}/status",
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    """One core (twins in the core, no host processes) the host servers replicate to;
    records of twins it does not hold at the edge are acknowledged as dropped."""
    with serve_two_sites(tmp_path_factory.mktemp("core"), "--hosts", "none") as s:
        yield s


def test_records_without_a_waiter_go_in_one_request_once_a_batch_is_pending(core, tmp_path):
    async def main() -> None:
        s = host_server(core, tmp_path, replicate_batch=5, replicate_linger_s=HOUR_S)
        await s.start()
        try:
            await s.host.place("fleet:r1", {"attributes": {"kind": "robot"}}, epoch=1)
            for i in range(3):
                await s.host.apply("fleet:r1", {"n": {"v": i}})
            assert s.host.last_seq == 4 and s.replication_requests == 0
            await s.host.apply("fleet:r1", {"n": {"v": 3}})  # the 5th pending record
            await until(lambda: s.replicated_records == 5, "the batch replicated")
            assert s.replication_requests == 1
            # two more: short of a batch, they would wait an hour; a caller waiting for
            # the core has them sent at once
            await s.host.apply("fleet:r1", {"n": {"v": 4}})
            await s.host.apply("fleet:r1", {"n": {"v": 5}})
            await asyncio.wait_for(s.replicated(s.host.last_seq, timeout_s=30), 60)
            assert (s.replicated_records, s.replication_requests) == (7, 2)
            st = await asyncio.to_thread(status_of, s)
            assert (st["replicated_records"], st["replication_requests"]) == (7, 2)
            assert st["replication"]["linger_s"] == HOUR_S
        finally:
            await s.stop()

    asyncio.run(main())


def test_every_control_call_that_commits_sends_the_records_at_once(core, tmp_path):
    """Lingering an hour, a host still sends what a control call committed as soon as
    the call answers (the core placing a twin, writing it, fencing it); a read (GET) or a
    call that commits nothing (a redirect) sends nothing; the hosts token is checked
    first (an unauthenticated call sends nothing either)."""

    async def main() -> None:
        s = host_server(core, tmp_path, replicate_linger_s=HOUR_S)
        await s.start()
        base = f"http://127.0.0.1:{s.control_port}"
        auth = {"Authorization": f"Bearer {s.token}"}
        try:
            async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as c:
                await s.host.place("fleet:r3", {"attributes": {"kind": "robot"}}, epoch=1)
                await s.host.apply("fleet:r3", {"n": {"v": 1}})
                assert (s.host.last_seq, s.replication_requests) == (2, 0)
                r = await c.get("/twins/fleet:r3/ownership")  # a read: no hurry
                assert r.status_code == 200, r.text
                async with httpx.AsyncClient(base_url=base) as stranger:
                    r = await stranger.post("/twins/fleet:r4", json={"epoch": 1})
                assert r.status_code == 401  # refused before any route: nothing sent
                assert s.replication_requests == 0
                r = await c.post("/twins/fleet:r4", json={"epoch": 1, "revision": 0})
                assert r.status_code == 200, r.text
                await until(lambda: s.replicated_records == 3, "the placement's records sent")
                r = await c.post(
                    "/twins/fleet:r4/write", json={"patch": {"attributes": {"colour": "red"}}}
                )
                assert r.status_code == 200, r.text
                await until(lambda: s.replicated_records == 4, "the write's record sent")
                assert s.replication_requests == 2
                # a call that commits nothing (a redirect) leaves a pending record to the
                # linger (nobody waits for it); the fence, which commits, has it sent
                await s.host.apply("fleet:r4", {"n": {"v": 2}})
                r = await c.post("/twins/fleet:r4/redirect")
                assert r.status_code == 200, r.text
                assert (s.host.last_seq, s._flush_seq) == (5, 4)
                r = await c.post("/twins/fleet:r4/fence", json={"epoch": 2, "owner": "edge-2"})
                assert r.status_code == 200, r.text
                assert s._flush_seq == 5
                await until(lambda: s.replicated_records == 5, "the pending record sent")
                assert s.replication_requests == 3
        finally:
            await s.stop()

    asyncio.run(main())


def test_linger_zero_sends_each_record_as_soon_as_it_is_committed(core, tmp_path):
    async def main() -> None:
        s = host_server(core, tmp_path, replicate_linger_s=0)
        await s.start()
        try:
            await s.host.place("fleet:r2", {"attributes": {"kind": "robot"}}, epoch=1)
            await until(lambda: s.replicated_records == 1, "the placement replicated")
            for i in range(3):  # one at a time, each awaited without asking for it
                await s.host.apply("fleet:r2", {"n": {"v": i}})
                await until(lambda i=i: s.replicated_records == 2 + i, f"report {i} replicated")
            assert s.replication_requests == 4
        finally:
            await s.stop()

    asyncio.run(main())


def test_an_ack_core_write_and_a_delete_complete_while_the_host_lingers_an_hour(tmp_path):
    """Host processes started by serve take the linger from the environment; an
    application's write with ack core (the default) waits for the core's copy, which the
    host sends at once; so does deleting the twin (its host replicates before it
    retires it)."""
    env = {"TWINEDGE_REPLICATE_LINGER_MS": str(HOUR_S * 1000)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with serve_two_sites(tmp_path, "--cycle-s", "0.2", "--forecast-horizon-s", "0") as s:
            twin = "fleet:r1"
            robot_placed_on_edge_1(s, twin, "pw-robot-1")
            info = json.loads((s.data / "hosts" / "edge-1" / "process.json").read_text())
            token = (s.data / "hosts.token").read_text().strip()
            control = httpx.Client(
                base_url=f"http://127.0.0.1:{info['control_port']}",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert control.get("/status").json()["replication"]["linger_s"] == HOUR_S
            r = s.client.put(
                f"/api/2/things/{twin}/attributes/colour", json="red", timeout=60
            )  # ack core
            assert r.status_code in (201, 204), r.text
            doc = s.client.get(f"/api/2/things/{twin}").json()
            assert doc["attributes"]["colour"] == "red" and doc["_host"] == "edge-1"
            r = s.client.delete(f"/api/2/things/{twin}", timeout=60)
            assert r.status_code == 204, r.text
            wait_for(lambda: twin not in control.get("/twins").json()["twins"], "the twin retired")
            control.close()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"replicate_linger_s": -0.001}, "replicate_linger_s must be within 0..3600 s, got -0.001"),
        ({"replicate_linger_s": math.nan}, "replicate_linger_s must be within 0..3600 s, got nan"),
        ({"replicate_linger_s": 3601}, "replicate_linger_s must be within 0..3600 s, got 3601"),
        ({"replicate_batch": 0}, "replicate_batch must be within 1..5000 records, got 0"),
    ],
)
def test_the_constructor_refuses_a_bad_linger_or_batch(tmp_path, kw, message):
    with pytest.raises(EdgeError) as e:
        HostServer("edge-1", tmp_path, core_url="http://127.0.0.1:9", token="t", **kw)
    assert str(e.value) == message
    assert not (tmp_path / "edge.sqlite").exists()


@pytest.mark.parametrize(
    ("value", "shown"), [("-1", "-1.0"), ("nan", "nan"), ("3600001", "3600001.0")]
)
def test_the_cli_refuses_a_bad_linger_in_one_line(tmp_path, value, shown):
    for args, env in (
        (["--replicate-linger-ms", value], {}),
        ([], {"TWINEDGE_REPLICATE_LINGER_MS": value}),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "twinedge", "host", "--id", "edge-1", *args,
             "--data-dir", str(tmp_path / "h"), "--control-port", str(free_port())],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "TWINEDGE_HOSTS_TOKEN": "t", **env},
        )  # fmt: skip
        assert r.returncode != 0
        assert r.stderr.strip().splitlines()[-1] == (
            f"error: --replicate-linger-ms must be within 0..3600000, got {shown}"
        )
        assert not (tmp_path / "h").exists()


def test_the_cli_default_is_the_servers():
    from typer.main import get_command

    from twinedge.cli import app

    host = get_command(app).commands["host"]  # type: ignore[attr-defined]
    option = next(p for p in host.params if p.name == "replicate_linger_ms")
    assert option.default == DEFAULT_LINGER_S * 1000
