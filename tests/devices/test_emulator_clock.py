"""The emulator's measured latency leaves its own scheduling out: with an injected clock
and an emulated delay whose timer wakes 10 s late, a report's one-way latency is the
modelled delay plus the time from its PUBLISH queued to its PUBACK read (no clock
reading moves in between: 0 here), and the 10 s are counted apart as the timer's
lateness. A real broker (Mosquitto) acknowledges the reports."""

from __future__ import annotations

import asyncio

import pytest

from twinedge.devices.client import Device, link_summary, parse_broker_url
from twinedge.devices.links import LinkDelay

LATE_S = 10.0
DELAY = LinkDelay(host="edge-1", uplink_ms=0.25, backbone_ms=0.5, return_ms=0.625)


class Clock:
    """Moves only when the emulated delay is waited out: by the delay and ``LATE_S``."""

    def __init__(self) -> None:
        self.t = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s + LATE_S  # the timer wakes LATE_S after the delay
        await asyncio.sleep(0)


def test_the_timers_lateness_is_measured_apart_not_in_the_latency(mosquitto):
    clock = Clock()

    async def main() -> Device:
        d = Device(
            "fleet:clocked", "password", parse_broker_url(mosquitto.url),
            lambda: {"x_m": 1.0, "y_m": 2.0}, period_s=0.02, max_reports=3,
            max_inflight=1,  # one report at a time: no other wait between its send and ack
            link=lambda x_m, y_m, host, nbytes: DELAY, clock=clock, sleep=clock.sleep,
        )  # fmt: skip
        await asyncio.wait_for(d.run(), 60)
        return d

    d = asyncio.run(main())
    s = d.stats
    assert (s.sent, s.acked, len(d.unacked)) == (3, 3, 0)
    up_ms = 0.25 + 0.5
    # each report waited its uplink (by the clock: 0.75 ms from its making) and its
    # PUBACK's way back (0.625 ms)
    assert clock.sleeps == pytest.approx([up_ms / 1000.0, 0.625 / 1000.0] * 3, abs=1e-12)
    assert list(s.link_one_way_ms) == [up_ms] * 3  # the model's delay + 0 wire time
    assert list(s.link_network_ms) == [up_ms] * 3
    assert list(s.link_backbone_ms) == [0.5] * 3
    assert list(s.link_late_ms) == pytest.approx([LATE_S * 1000.0] * 3, abs=1e-6)  # apart
    assert list(s.link_send_ms) == [0.0] * 3 and list(s.link_resume_ms) == [0.0] * 3
    assert list(s.latencies_ms) == [up_ms + 0.625] * 3  # round trip: both modelled ways
    summary = link_summary([s])
    assert summary["mean_ms"] == up_ms and summary["live_mean_ms"] == 0.0
    assert summary["emulator_mean_ms"] == summary["timer_late_mean_ms"]
    assert summary["timer_late_mean_ms"] == pytest.approx(LATE_S * 1000.0, abs=1e-5)


WRITE_WAIT_S = 3.0


def test_the_clients_wait_to_write_a_publish_is_measured_apart(mosquitto, monkeypatch):
    """The MQTT client writes a PUBLISH only when its event loop comes round to the
    socket (aiomqtt registers a writer callback). Here the clock moves by 3 s before each
    of the client's writes: the 3 s are the emulator's ``send`` time, not in the
    report's latency."""
    import aiomqtt.client

    clock = Clock()

    def register_write(self, client, userdata, sock):  # aiomqtt's, with the clock moved
        def callback():
            if made and made[0]._unwritten:  # a report handed to the client, not written
                clock.t += WRITE_WAIT_S  # the loop came round to the socket this much later
            try:
                client.loop_write()
            except Exception as exc:
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        self._loop.call_soon_threadsafe(self._loop.add_writer, sock.fileno(), callback)

    monkeypatch.setattr(aiomqtt.client.Client, "_on_socket_register_write", register_write)
    made: list[Device] = []

    async def main() -> Device:
        d = Device(
            "fleet:written", "password", parse_broker_url(mosquitto.url),
            lambda: {"x_m": 1.0, "y_m": 2.0}, period_s=0.02, max_reports=3, max_inflight=1,
            link=lambda x_m, y_m, host, nbytes: DELAY, clock=clock, sleep=clock.sleep,
        )  # fmt: skip
        made.append(d)
        await asyncio.wait_for(d.run(), 60)
        return d

    s = asyncio.run(main()).stats
    assert (s.sent, s.acked) == (3, 3)
    up_ms = 0.25 + 0.5
    assert list(s.link_one_way_ms) == [up_ms] * 3  # written -> PUBACK read: 0 on this clock
    assert list(s.link_send_ms) == pytest.approx([WRITE_WAIT_S * 1000.0] * 3, abs=1e-6)
    summary = link_summary([s])
    assert summary["live_mean_ms"] == 0.0
    assert summary["send_mean_ms"] == pytest.approx(WRITE_WAIT_S * 1000.0, abs=1e-5)


def test_a_disconnection_error_that_comes_after_the_close_began_is_taken(caplog):
    """The broker may close a connection while the client is closing it: the error is
    set on the client's future after the device looked at it. It is still taken, so
    asyncio logs no 'Future exception was never retrieved'."""
    import gc
    import types

    import aiomqtt

    from twinedge.devices.client import _retrieve_disconnect

    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        _retrieve_disconnect(types.SimpleNamespace(_disconnected=fut))  # not done yet
        fut.set_exception(aiomqtt.MqttCodeError(128, "Unexpected disconnection"))
        await asyncio.sleep(0)  # the done callbacks run

    with caplog.at_level("ERROR", logger="asyncio"):
        asyncio.run(main())
        gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
