"""A twin's first placement on a host: no write the core acknowledged is missing from the
host's copy, whatever reaches the core while the copy is placed."""

from __future__ import annotations

from typing import Any

from tests.orchestrator.test_live import live_network, robot, two_sites
from tests.runtime.service_run import run
from twinedge.errors import Unavailable
from twinedge.runtime.auth import Principal

ADMIN = Principal("admin-a", "dom-a", "admin")


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
