"""Edge host servers over real HTTP: the migration protocol between two host servers
through their control APIs (RemoteHost), errors crossing the wire as the same classes."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.runtime.test_reliability import free_port
from twinedge.edge.errors import (
    CommandTimeoutError,
    EdgeError,
    EpochError,
    HostClosedError,
    InvalidReportError,
    MigrationError,
    NotOwnerError,
    TwinNotReadyError,
    UnknownTwinError,
)
from twinedge.edge.log import TwinStatus
from twinedge.edge.migrate import pre_copy, stop_and_copy
from twinedge.edge.remote import RemoteHost
from twinedge.edge.server import HostServer

TOKEN = "t0ken"


async def servers(tmp_path, n=2):
    out = []
    for i in range(n):
        s = HostServer(
            f"edge-{i + 1}", tmp_path / f"h{i}", core_url="http://127.0.0.1:9", token=TOKEN,
            mqtt_port=0, control_port=0,
        )  # fmt: skip
        await s.start()
        out.append(s)
    return out


def remote(s: HostServer, token: str = TOKEN) -> RemoteHost:
    return RemoteHost(s.host_id, f"http://127.0.0.1:{s.control_port}", s.mqtt_url, token)


def test_a_twin_migrates_between_host_processes_over_their_control_apis(tmp_path):
    async def main():
        a, b = await servers(tmp_path)
        ra, rb = remote(a), remote(b)
        try:
            assert (
                await ra.place("fleet:r1", {"attributes": {"kind": "robot"}}, epoch=1, revision=3)
                == 3
            )
            assert await a.host.apply("fleet:r1", {"position": {"x_m": 1.0}}) == 4
            await ra.set_peers({"edge-2": b.mqtt_url})
            report = await pre_copy(ra, rb, "fleet:r1")
            assert (report.epoch, report.final_revision, report.source, report.target) == (
                2,
                4,
                "edge-1",
                "edge-2",
            )
            # the target serves, the source refuses with the new owner
            assert await b.host.apply("fleet:r1", {"position": {"x_m": 2.0}}) == 5
            with pytest.raises(NotOwnerError) as e:
                await a.host.apply("fleet:r1", {"position": {"x_m": 9.0}})
            assert e.value.owner == "edge-2"
            assert b.host.twin("fleet:r1").document["features"]["position"]["properties"] == {
                "x_m": 2.0
            }
            # errors come back as the host's own classes
            with pytest.raises(UnknownTwinError):
                await rb.export_snapshot("fleet:nobody")
            with pytest.raises(MigrationError, match="already owned on host 'edge-2'"):
                await rb.place("fleet:r1", {}, epoch=1, revision=0)
            status = await rb.status()
            assert status["host"] == "edge-2" and status["twins"] == 1
        finally:
            for r in (ra, rb):
                await r.aclose()
            for s in (a, b):
                await s.stop()

    asyncio.run(main())


def test_the_target_cuts_a_twin_over_calling_the_source_itself(tmp_path):
    """The end of a pre-copy between processes is one call to the target: it fences the
    source over the source's control API (the fence's answer brings the changes made
    since the snapshot) and adopts; what it refuses, it refuses before fencing, and what
    the source refuses comes back as the source's own error, the source still serving."""

    async def main():
        a, b = await servers(tmp_path)
        ra, rb = remote(a), remote(b)
        twin = "fleet:r1"
        try:
            await ra.place(twin, {}, epoch=1, revision=0)
            await a.host.apply(twin, {"position": {"x_m": 1.0}})  # revision 1
            # nothing staged on the target: refused there, the source not fenced
            with pytest.raises(MigrationError, match="'fleet:r1' is not staged on host 'edge-2'"):
                await rb.cut_over(ra, twin, 2, 1)
            assert (await ra.ownership(twin)).status is TwinStatus.OWNED
            snap = await ra.export_snapshot(twin)
            await rb.stage(snap)
            with pytest.raises(EdgeError, match="cannot cut over to itself"):
                await ra.cut_over(ra, twin, 2, 1)
            # a stale epoch: the source's refusal, carried back by the target
            with pytest.raises(EpochError) as e:
                await rb.cut_over(ra, twin, 1, snap.revision)
            assert (e.value.epoch, e.value.current) == (1, 1)
            assert await a.host.apply(twin, {"position": {"x_m": 2.0}}) == 2  # still served
            assert await a.host.apply(twin, {"position": {"x_m": 3.0}}) == 3
            done = await rb.cut_over(ra, twin, 2, snap.revision)
            assert (done.revision, done.changes_copied) == (3, 2)
            assert done.bytes_copied == (await a.host.export_changes(twin, 1)).nbytes
            assert done.fence_s > 0 and done.adopt_s > 0
            own = await ra.ownership(twin)
            assert (own.status, own.owner, own.owner_epoch) == (TwinStatus.FENCED, "edge-2", 2)
            with pytest.raises(NotOwnerError):
                await a.host.apply(twin, {"position": {"x_m": 9.0}})
            assert b.host.twin(twin).revision == 3 and b.host.twin(twin).epoch == 2
            assert b.host.twin(twin).document["features"]["position"]["properties"] == {"x_m": 3.0}
            assert await b.host.apply(twin, {"position": {"x_m": 4.0}}) == 4
            await ra.release(twin)
            # and back to the host it left (which keeps the twin as moved, for redirects)
            report = await pre_copy(rb, ra, twin)
            assert (report.epoch, report.final_revision) == (3, 4)
            assert report.downtime_s == report.fence_s + report.adopt_s
            assert await a.host.apply(twin, {"position": {"x_m": 5.0}}) == 5
            with pytest.raises(NotOwnerError):
                await b.host.apply(twin, {"position": {"x_m": 9.0}})
        finally:
            for r in (ra, rb):
                await r.aclose()
            for s in (a, b):
                await s.stop()

    asyncio.run(main())


def test_a_cut_over_from_a_source_that_does_not_answer_fails_naming_it(tmp_path):
    """The target cannot reach the source: a HostClosedError naming the source (nothing
    fenced: the twin is still served where it was; the staged copy stays until
    discarded)."""

    async def main():
        a, b = await servers(tmp_path)
        ra, rb = remote(a), remote(b)
        twin = "fleet:r1"
        try:
            await ra.place(twin, {}, epoch=1, revision=0)
            await rb.stage(await ra.export_snapshot(twin))
            nowhere = RemoteHost("edge-1", f"http://127.0.0.1:{free_port()}", "", TOKEN)
            with pytest.raises(
                HostClosedError, match=r"host edge-1 at http://127\.0\.0\.1:\d+ does not answer"
            ):
                await rb.cut_over(nowhere, twin, 2, 0)
            await nowhere.aclose()
            assert (await ra.ownership(twin)).status is TwinStatus.OWNED
            assert (await rb.ownership(twin)).status is TwinStatus.STAGED
            # a source URL that is not http(s) is bad input, refused before any call
            r = await rb.client.post(
                f"/twins/{twin}/cut-over",
                json={"source": "edge-1", "source_url": "ftp://x", "epoch": 2, "after": 0},
            )
            assert (r.status_code, r.json()["error"]) == (409, "EdgeError")
            assert "control URL must be http(s)://host:port, got 'ftp://x'" in r.json()["message"]
        finally:
            for r in (ra, rb):
                await r.aclose()
            for s in (a, b):
                await s.stop()

    asyncio.run(main())


def test_the_lean_client_reconnects_to_a_host_that_restarted(tmp_path):
    """A host's client of another host (LeanHTTP, kept-alive connections) finds its idle
    connection closed by a restart: the next call goes on a new one; a host that is down
    is a HostClosedError naming it; the host's own errors come back as its classes."""

    async def main():
        (a,) = await servers(tmp_path, 1)
        port = a.control_port
        ra = RemoteHost("edge-1", f"http://127.0.0.1:{port}", a.mqtt_url, TOKEN, lean=True)
        try:
            assert await ra.place("fleet:r1", {}, epoch=3, revision=7) == 7
            assert (await ra.ownership("fleet:r1")).epoch == 3
            assert ra.lean is not None and len(ra.lean._idle) == 1  # kept for the next call
            with pytest.raises(UnknownTwinError):
                await ra.export_snapshot("fleet:nobody")
            await a.stop()
            with pytest.raises(HostClosedError, match=r"host edge-1 at http://127\.0\.0\.1:"):
                await ra.ownership("fleet:r1")
            again = HostServer(
                "edge-1", tmp_path / "h0", core_url="http://127.0.0.1:9", token=TOKEN,
                mqtt_port=0, control_port=port,
            )  # fmt: skip
            await again.start()
            try:
                own = await ra.ownership("fleet:r1")  # from its log
                assert (own.status, own.epoch) == (TwinStatus.OWNED, 3)
                assert await ra.twin_ids() == ["fleet:r1"]
                wrong = RemoteHost("edge-1", f"http://127.0.0.1:{port}", "", "nope", lean=True)
                with pytest.raises(EdgeError, match="hosts token required"):
                    await wrong.ownership("fleet:r1")
                await wrong.aclose()
            finally:
                await again.stop()
        finally:
            await ra.aclose()

    asyncio.run(main())


def test_commands_are_refused_where_the_host_does_not_serve_the_twin(tmp_path):
    """A command goes only to the device of a twin the host owns; elsewhere it is refused
    (not sent) with the class that says where to go; a bad subject or timeout is bad
    input; a device that is not connected does not answer."""

    async def main():
        a, b = await servers(tmp_path)
        ra, rb = remote(a), remote(b)
        try:
            await ra.place("fleet:r1", {}, epoch=1, revision=0)
            with pytest.raises(UnknownTwinError):
                await rb.send_command("fleet:r1", "honk", {})
            with pytest.raises(CommandTimeoutError) as e:
                await ra.send_command("fleet:r1", "honk", {"times": 2}, timeout_s=0.2)
            assert (e.value.twin_id, e.value.host_id, e.value.subject) == (
                "fleet:r1",
                "edge-1",
                "honk",
            )
            with pytest.raises(InvalidReportError, match="subject") as e:
                await ra.send_command("fleet:r1", "a/b", None)
            assert e.value.pointer == "/subject"
            with pytest.raises(InvalidReportError, match="timeout"):
                await ra.send_command("fleet:r1", "honk", None, timeout_s=301)
            await ra.set_peers({"edge-2": b.mqtt_url})
            await pre_copy(ra, rb, "fleet:r1")
            with pytest.raises(NotOwnerError) as e:
                await ra.send_command("fleet:r1", "honk", {})
            assert (e.value.owner, e.value.epoch) == ("edge-2", 2)
            assert len(a.devices.pending) == 0 and len(b.devices.pending) == 0
        finally:
            for r in (ra, rb):
                await r.aclose()
            for s in (a, b):
                await s.stop()

    asyncio.run(main())


def test_an_unreachable_host_is_a_host_closed_error_naming_it():
    """Nothing listens at the control URL: every call fails with HostClosedError naming
    the host and its URL (the caller resends, or recovers the host from its log)."""

    async def main():
        port = free_port()
        r = RemoteHost("edge-9", f"http://127.0.0.1:{port}", "mqtt://127.0.0.1:1", TOKEN, 2.0)
        try:
            for call in (
                r.status(),
                r.ownership("fleet:r1"),
                r.send_command("fleet:r1", "honk", {}, timeout_s=0.5),
            ):
                with pytest.raises(HostClosedError) as e:
                    await call
                assert f"host edge-9 at http://127.0.0.1:{port} does not answer" in str(e.value)
        finally:
            await r.aclose()

    asyncio.run(main())


def test_the_control_api_wants_the_hosts_token(tmp_path):
    async def main():
        (a,) = await servers(tmp_path, 1)
        bad = remote(a, token="wrong")
        try:
            with pytest.raises(Exception, match="hosts token required"):
                await bad.status()
        finally:
            await bad.aclose()
            await a.stop()

    asyncio.run(main())


def test_stop_and_copy_and_resume_between_host_processes(tmp_path):
    """Stop-and-copy (what evacuating a dead host uses) over the control APIs: the target
    is told the twin is coming (``expect``) before the source is fenced."""

    async def main():
        a, b = await servers(tmp_path)
        ra, rb = remote(a), remote(b)
        try:
            await ra.place("fleet:r2", {}, epoch=1, revision=0)
            await a.host.apply("fleet:r2", {"position": {"x_m": 1.0}})
            report = await stop_and_copy(ra, rb, "fleet:r2")
            assert (report.method, report.epoch, report.final_revision) == ("stop-and-copy", 2, 1)
            assert await b.host.apply("fleet:r2", {"position": {"x_m": 2.0}}) == 2
            # an arrival announced over the wire answers "not ready", then is discarded
            await ra.expect("fleet:r3", "edge-2")
            with pytest.raises(TwinNotReadyError):
                await a.host.apply("fleet:r3", {"position": {"x_m": 1.0}})
            await ra.discard_staged("fleet:r3")
            with pytest.raises(UnknownTwinError):
                await a.host.apply("fleet:r3", {"position": {"x_m": 1.0}})
        finally:
            for r in (ra, rb):
                await r.aclose()
            for s in (a, b):
                await s.stop()

    asyncio.run(main())


def test_a_host_lists_its_twins_by_state_for_a_core_that_restarted(tmp_path):
    """``GET /twins?status=``: what a core starting again reads to find the migrations
    it had in flight (fenced twins) and where each twin is served (owned ones)."""

    async def main():
        a, b = await servers(tmp_path)
        ra, rb = remote(a), remote(b)
        try:
            for t in ("fleet:r2", "fleet:r1", "fleet:r3"):
                await ra.place(t, {}, epoch=1, revision=0)
            await pre_copy(ra, rb, "fleet:r1")
            await ra.fence("fleet:r3", 2, "edge-2")  # a migration stopped after its fence
            assert await ra.twin_ids() == ["fleet:r2"]
            assert await ra.twin_ids(TwinStatus.FENCED) == ["fleet:r3"]
            assert await ra.twin_ids(TwinStatus.MOVED) == ["fleet:r1"]
            assert await rb.twin_ids(TwinStatus.OWNED) == ["fleet:r1"]
            assert await rb.twin_ids(TwinStatus.FENCED) == []
            with pytest.raises(EdgeError, match="bad request: 'lost' is not a valid TwinStatus"):
                await ra._call("GET", "/twins", status="lost")
        finally:
            for r in (ra, rb):
                await r.aclose()
            for s in (a, b):
                await s.stop()

    asyncio.run(main())


def host_command(tmp_path, ready) -> list[str]:
    """``twinedge host`` for edge-1 on ports 0 with ``--ready-file ready`` (its hosts
    token and log in ``tmp_path``; a core that does not answer)."""
    token = tmp_path / "hosts.token"
    token.write_text(TOKEN)
    return [
        sys.executable, "-m", "twinedge", "host", "--id", "edge-1", "--token-file", str(token),
        "--data-dir", str(tmp_path / "h"), "--core", "http://127.0.0.1:9",
        "--mqtt-port", "0", "--control-port", "0", "--ready-file", str(ready),
    ]  # fmt: skip


def test_a_host_process_on_ports_0_writes_the_ports_it_listens_on(tmp_path):
    """``twinedge host --mqtt-port 0 --control-port 0 --ready-file F``: the process picks
    its ports and writes them, with its pid, to F once it listens; both answer (the
    control API with the host's status, the device endpoint with an MQTT CONNACK)."""
    ready = tmp_path / "ready.json"
    args = host_command(tmp_path, ready)
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(600):  # at most 60 s
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        info = json.loads(ready.read_text())
        assert sorted(info) == ["control_port", "mqtt_port", "pid"] and info["pid"] == proc.pid
        assert 0 < info["mqtt_port"] != info["control_port"] > 0
        r = httpx.get(
            f"http://127.0.0.1:{info['control_port']}/status",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert r.status_code == 200 and r.json()["host"] == "edge-1", r.text
        gc_status = r.json()["gc"]  # the host froze its heap once it listened
        assert gc_status["frozen"] > 10_000 and sorted(gc_status["generations"]) == ["0", "1", "2"]
        assert {"refreezes", "deep_collections"} <= set(gc_status)  # what the refreezer did
        assert all(isinstance(gc_status[k], int) for k in ("refreezes", "deep_collections"))
        with socket.create_connection(("127.0.0.1", info["mqtt_port"]), timeout=10) as c:
            c.sendall(bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 30, 0, 0]))
            assert c.recv(2) == bytes([0x20, 2])  # a CONNACK: an MQTT endpoint listens
        assert not list(tmp_path.glob("ready.json.*"))  # written whole, then renamed
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    assert not ready.exists()  # it names no running process any more


def test_a_ready_file_that_cannot_be_written_is_one_line_and_the_host_stops(tmp_path):
    ready = tmp_path / "no-such-dir" / "ready.json"
    args = host_command(tmp_path, ready)
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: --ready-file {ready}: cannot write it: No such file or directory"
    ), r.stderr
    assert "Traceback" not in r.stderr
    assert not ready.parent.exists()  # nothing was left behind


def test_a_ready_file_that_is_a_directory_leaves_no_scratch_file(tmp_path):
    ready = tmp_path / "ready"
    ready.mkdir()
    args = host_command(tmp_path, ready)
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: --ready-file {ready}: "), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h", "hosts.token", "ready"]
