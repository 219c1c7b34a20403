"""One emulated device: an MQTT client that reports its position and follows redirects.

**Reports.** At each tick the device publishes, at QoS 1, to
``twinedge/{thingId}/reported``::

    {"position": {"x_m": 812.4, "y_m": 90.1, "vx_mps": 3.2, "vy_mps": -1.0,
                  "t_s": 12.5, "seq": 125}}

``seq`` counts the device's reports from 1 and never repeats a value for another report,
so a receiver detects duplicates and gaps. A report is *acknowledged* when its PUBACK
arrives (with the embedded broker of ``twinedge serve``: once it is committed). Until
then it is kept, and re-sent, with the same ``seq`` and payload, on the next connection.
At most ``max_inflight`` reports wait for their PUBACK; a tick that finds the window
full is skipped (counted as ``skipped``), so a slow broker slows the device down instead
of growing its memory.

**Predictive sync.** A ``report`` callable may answer ``None``: the device sampled its
position but has nothing to send (the sender rule of :mod:`twinedge.sync`: its twin can
predict it). No report is made for that tick (``seq`` does not advance); the tick
counts as ``suppressed``.

**Redirects.** The device listens on ``twinedge/{thingId}/redirect``: it subscribes to
``twinedge/{thingId}/+``, which covers that topic and its ``errors`` topic and which the
embedded broker's ACL allows (it lists ``desired``, ``errors``, ``commands/...``, ``+``
and ``#``, not ``redirect``); a broker that refuses ``+`` (an ACL of exact topics) gets
the two topics themselves. A redirect::

    {"host": "edge-7", "url": "mqtt://10.0.0.7:1883", "epoch": 4}

is followed when its ``epoch`` is larger than the last one followed (the first one
always is): the device stops publishing, disconnects, connects to ``url`` with the same
client id, user name and password (credentials in the URL are ignored), subscribes
again, re-sends every report not yet acknowledged, and carries on. A redirect with an
epoch not larger than the last is ignored (``redirects_ignored``); one that is not a
JSON object with a string ``host``, an ``mqtt://`` or ``mqtts://`` ``url`` and an
integer ``epoch`` >= 0 is logged and ignored (``redirects_malformed``).

**Link emulation.** With a ``link`` (:mod:`twinedge.devices.links`), a report made while
the device is connected to a twin host waits, before it is published, the modelled
one-way delay of its path (the reports of a device leave in order), and its PUBACK the
way back (a connection lost meanwhile loses that PUBACK: the report is re-sent, as over
a real link). Each such report's one-way latency is the modelled delay of its path plus
the time from its first PUBLISH written to a twin host's connection (so the wait of a
report caught by a migration is in it) to its PUBACK read from the socket: the
emulator's own time (its timers waking late, building and sending the packet, waking
the task that waits for the PUBACK) is measured apart and left out.

**Timestamps.** The live time starts when the PUBLISH is queued to the MQTT client
(which writes it at the next turn of the event loop, when the loop finds the socket
writable: writing it from outside that turn races the client's own socket callbacks
when the connection closes, as at a redirect) and ends when the PUBACK is decoded, in
the client's callback for it, before any task is woken. ``clock`` and ``sleep`` can be
injected (tests).

**Failures.** A lost connection is re-established to the same broker with exponential
back-off (0.25 s up to 8 s). When the broker a redirect named cannot be reached
``fallback_after`` times in a row, the device goes back to the last broker it was
connected to, where the redirect can reach it again: a redirect counts as followed (its
epoch as the last one) once the device is connected to its broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import numpy as np

from twinedge.devices.errors import DevicesError
from twinedge.devices.links import LinkDelay

log = logging.getLogger("twinedge.devices")
_mqtt_log = logging.getLogger("twinedge.devices.mqtt")

ROOT = "twinedge"
REPORTED, REDIRECT, ERRORS = "reported", "redirect", "errors"
MAX_EPOCH = 2**63 - 1


@dataclass(frozen=True)
class BrokerUrl:
    """Where a broker listens: ``mqtt://HOST:PORT`` (``mqtts://`` for TLS).

    Examples:
        >>> str(parse_broker_url("mqtt://user:pw@10.0.0.7"))
        'mqtt://10.0.0.7:1883'
    """

    hostname: str
    port: int
    tls: bool = False

    def __str__(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def parse_broker_url(url: Any) -> BrokerUrl:
    """Parse ``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]`` (default ports 1883 and
    8883); user name and password in the URL are ignored (a device keeps its own).

    Raises:
        ValueError: not such a URL; the message says why.

    Examples:
        >>> parse_broker_url("mqtts://broker.example")
        BrokerUrl(hostname='broker.example', port=8883, tls=True)
    """
    if not isinstance(url, str):
        raise ValueError(f"url: got {type(url).__name__}; expected a string mqtt://HOST:PORT")
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as exc:
        raise ValueError(f"url: got {url!r}; {exc}") from None
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ValueError(f"url: got {url!r}; expected mqtt://HOST:PORT or mqtts://HOST:PORT")
    if u.path not in ("", "/") or u.query or u.fragment:
        raise ValueError(f"url: got {url!r}; expected no path, query or fragment")
    tls = u.scheme == "mqtts"
    return BrokerUrl(u.hostname, port or (8883 if tls else 1883), tls)


@dataclass(frozen=True)
class Redirect:
    """An order to move to another broker (see the module docstring)."""

    host: str
    url: BrokerUrl
    epoch: int


def parse_redirect(payload: bytes | bytearray | str) -> Redirect:
    """Read a redirect message.

    Raises:
        ValueError: the message is not a valid redirect; the message says why.

    Examples:
        >>> parse_redirect(b'{"host": "edge-2", "url": "mqtt://127.0.0.1:1884", "epoch": 3}')
        Redirect(host='edge-2', url=BrokerUrl(hostname='127.0.0.1', port=1884, tls=False), epoch=3)
        >>> parse_redirect(b'{"host": "edge-2", "url": "mqtt://h", "epoch": true}')
        Traceback (most recent call last):
        ...
        ValueError: epoch: got True; expected an integer 0..9223372036854775807
    """
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"got {type(doc).__name__}; expected a JSON object")
    host, epoch = doc.get("host"), doc.get("epoch")
    if not isinstance(host, str) or not host:
        raise ValueError(f"host: got {host!r}; expected the host id, a non-empty string")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch <= MAX_EPOCH:
        raise ValueError(f"epoch: got {epoch!r}; expected an integer 0..{MAX_EPOCH}")
    return Redirect(host, parse_broker_url(doc.get("url")), epoch)


@dataclass
class DeviceStats:
    """What a device did; :meth:`to_json` is its line of the summary."""

    sent: int = 0  # reports published (each seq once)
    acked: int = 0  # reports whose PUBACK arrived
    resent: int = 0  # publications of a report again on a later connection
    skipped: int = 0  # ticks with ``max_inflight`` reports unacknowledged
    suppressed: int = 0  # ticks whose sample the twin predicts (predictive sync)
    connects: int = 0
    connect_failures: int = 0
    connections_lost: int = 0
    problems: int = 0  # messages on the errors topic (the service refused a report)
    redirects_followed: int = 0
    redirects_ignored: int = 0  # epoch not larger than the last followed
    redirects_malformed: int = 0
    internal_errors: int = 0
    latencies_ms: array = field(default_factory=lambda: array("d"))
    # when each report of ``latencies_ms`` was published (``time.perf_counter()``)
    published_at_s: array = field(default_factory=lambda: array("d"))
    # link emulation (docs/devices.md#link-emulation): reports acknowledged by a twin
    # host over an emulated path, and per report its one-way latency (first sent to a
    # host -> PUBACK), the modelled network delay it waited, and how late the timer woke
    link_one_way_ms: array = field(default_factory=lambda: array("d"))
    link_network_ms: array = field(default_factory=lambda: array("d"))
    link_backbone_ms: array = field(default_factory=lambda: array("d"))  # of link_network_ms
    link_late_ms: array = field(default_factory=lambda: array("d"))
    # the emulator's own time per such report, left out of link_one_way_ms: the PUBLISH
    # built after the delay and waiting for the client to write it, and the task woken
    # after the PUBACK was read
    link_send_ms: array = field(default_factory=lambda: array("d"))
    link_resume_ms: array = field(default_factory=lambda: array("d"))
    link_bytes: int = 0  # the payload bytes of the reports in link_one_way_ms
    link_unemulated: int = 0  # acknowledged without a delay: not by a host of the network

    @property
    def errors(self) -> int:
        return self.connect_failures + self.connections_lost + self.problems + self.internal_errors


def percentiles_ms(values: array | list[float]) -> dict[str, float | None]:
    """``{"p50": .., "p99": .., "mean": ..}`` of ``values`` (``None`` without values).

    Examples:
        >>> percentiles_ms([1.0, 2.0, 4.0])
        {'p50': 2.0, 'p99': 3.96, 'mean': 2.333}
    """
    if not len(values):
        return {"p50": None, "p99": None, "mean": None}
    a = np.asarray(values, dtype=float)
    p50, p99 = np.percentile(a, [50, 99])
    return {
        "p50": round(float(p50), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(a.mean()), 3),
    }


def link_summary(stats: list[DeviceStats]) -> dict[str, Any]:
    """What link emulation measured over ``stats``: the reports acknowledged by a twin
    host over an emulated path (``reports``) and the means of their one-way latency
    (``mean_ms``), of the modelled network delay they waited (``network_mean_ms``, of
    which ``backbone_mean_ms`` from the access point to the twin's host), of
    the rest, the live system's own time from the PUBLISH written to the PUBACK read
    (``live_mean_ms``), the emulator's own time left out of them
    (``emulator_mean_ms``: its timers waking after the delay, ``timer_late_mean_ms``;
    building the PUBLISH and the client's wait to write it, ``send_mean_ms``; waking
    the waiting task after the PUBACK was read, ``resume_mean_ms``), the mean payload
    size (``bytes_mean``) and the reports acknowledged without a delay (``unemulated``:
    by the core's broker).

    Examples:
        >>> s = DeviceStats()
        >>> s.link_one_way_ms.extend([4.0, 6.0]); s.link_network_ms.extend([0.5, 0.5])
        >>> s.link_backbone_ms.extend([0.25, 0.25])
        >>> s.link_late_ms.extend([0.25, 0.75])
        >>> s.link_send_ms.extend([0.125, 0.125]); s.link_resume_ms.extend([0.0, 0.5])
        >>> s.link_bytes = 240
        >>> link_summary([s])  # doctest: +NORMALIZE_WHITESPACE
        {'reports': 2, 'mean_ms': 5.0, 'network_mean_ms': 0.5, 'backbone_mean_ms': 0.25,
         'live_mean_ms': 4.5, 'emulator_mean_ms': 0.875, 'timer_late_mean_ms': 0.5,
         'send_mean_ms': 0.125, 'resume_mean_ms': 0.25, 'bytes_mean': 120.0, 'unemulated': 0}
    """

    def joined(field_name: str) -> np.ndarray:
        parts = [np.asarray(getattr(x, field_name), dtype=float) for x in stats]
        return np.concatenate(parts) if parts else np.zeros(0)

    one, net, late = joined("link_one_way_ms"), joined("link_network_ms"), joined("link_late_ms")
    back = joined("link_backbone_ms")
    send, resume = joined("link_send_ms"), joined("link_resume_ms")
    unemulated = sum(x.link_unemulated for x in stats)
    if not one.size:
        return {
            "reports": 0,
            "mean_ms": None,
            "network_mean_ms": None,
            "backbone_mean_ms": None,
            "live_mean_ms": None,
            "emulator_mean_ms": None,
            "timer_late_mean_ms": None,
            "send_mean_ms": None,
            "resume_mean_ms": None,
            "bytes_mean": None,
            "unemulated": unemulated,
        }
    return {
        "reports": int(one.size),
        "mean_ms": round(float(one.mean()), 6),
        "network_mean_ms": round(float(net.mean()), 6),
        "backbone_mean_ms": round(float(back.mean()), 6),
        "live_mean_ms": round(float(one.mean() - net.mean()), 6),
        "emulator_mean_ms": round(float(late.mean() + send.mean() + resume.mean()), 6),
        "timer_late_mean_ms": round(float(late.mean()), 6),
        "send_mean_ms": round(float(send.mean()), 6),
        "resume_mean_ms": round(float(resume.mean()), 6),
        "bytes_mean": round(sum(x.link_bytes for x in stats) / one.size, 6),
        "unemulated": unemulated,
    }


class _ConnectFailed(Exception):
    def __init__(self, why: str, refused: bool):
        super().__init__(why)
        self.refused = refused  # by the broker (CONNACK), not by the network


class _ConnectionLost(Exception):
    pass


class Device:
    """One emulated device (see the module docstring).

    Parameters:
        thing_id: its thing id: MQTT client id and user name.
        password: its device password.
        broker: the broker it connects to first.
        report: returns the position properties of a new report (``x_m``, ``y_m``,
            ``vx_mps``, ``vy_mps``, ``t_s``; the device adds ``seq``), or ``None`` when
            there is nothing to send at this tick (predictive sync).
        period_s: time between two reports.
        max_reports: stop after this many reports are acknowledged (``None``: until
            ``stopping``).
        stopping: once set, no new reports; the device leaves when the ones sent are
            acknowledged (or ``abort`` is set).
        abort: once set, the device disconnects at once.
        connect_gate: limits the connection attempts in progress across devices.
        max_inflight: reports awaiting their PUBACK at most.
        fallback_after: failed connections to a redirect's broker before going back.
        keepalive_s: MQTT keep-alive.
        timeout_s: for connecting, subscribing and disconnecting (a PUBACK is waited
            for as long as the connection lives).
        link: link emulation (:mod:`twinedge.devices.links`): called with a report's
            position, the host the device is connected to (``None``: the core's broker)
            and the payload's size, returns the delays the report and its PUBACK wait
            (``None``: no delay). ``None`` (the default): no emulation.
        clock: the latency clock, seconds (default :func:`time.perf_counter`).
        sleep: waits out an emulated delay, seconds (default :func:`asyncio.sleep`).

    Raises:
        ValueError: ``period_s`` is not positive.

    Examples:
        >>> async def demo():
        ...     d = Device("fleet:a", "password", parse_broker_url("mqtt://127.0.0.1:1"),
        ...                lambda: {"x_m": 0.0}, period_s=1.0)
        ...     return d.topic(REPORTED)
        >>> asyncio.run(demo())
        'twinedge/fleet:a/reported'
    """

    def __init__(
        self,
        thing_id: str,
        password: str,
        broker: BrokerUrl,
        report: Callable[[], dict[str, Any] | None],
        *,
        period_s: float,
        max_reports: int | None = None,
        stopping: asyncio.Event | None = None,
        abort: asyncio.Event | None = None,
        connect_gate: asyncio.Semaphore | None = None,
        max_inflight: int = 16,
        fallback_after: int = 3,
        keepalive_s: int = 30,
        timeout_s: float = 10.0,
        link: Callable[[float, float, str | None, int], LinkDelay | None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        if not period_s > 0:
            raise ValueError(f"period_s must be positive, got {period_s!r}")
        self.thing_id, self.password, self.broker = thing_id, password, broker
        self.report, self.period_s, self.max_reports = report, float(period_s), max_reports
        self.stopping = stopping or asyncio.Event()
        self.abort = abort or asyncio.Event()
        self.connect_gate = connect_gate or asyncio.Semaphore(1)
        self.max_inflight, self.fallback_after = max_inflight, fallback_after
        self.keepalive_s, self.timeout_s = keepalive_s, timeout_s
        self.stats = DeviceStats()
        self.connected = False
        self.epoch: int | None = None  # of the last redirect followed (connected there)
        self.host: str | None = None  # of the last redirect followed
        self._moving: Redirect | None = None  # followed, not connected there yet
        self.url = broker  # where it is (or tries to be) connected
        self.seq = 0  # of the last report made
        self.unacked: dict[int, bytes] = {}  # seq -> payload, in seq order
        self._inflight: set[asyncio.Task] = set()
        self.link = link
        self._xy: dict[int, tuple[float, float]] = {}  # seq -> position (link emulation)
        # seq -> (written, modelled up delay ms, of which backbone) of its first send to a host
        self._first_at_host: dict[int, tuple[list[float], float, float]] = {}
        self._clock, self._sleep = clock, sleep
        self._acks: dict[int, asyncio.Future[float]] = {}  # MQTT packet id -> PUBACK read at
        # when each report published since the client last wrote to its socket was
        # handed to it; the write sets each to the time of the write (see _hook_acks)
        self._unwritten: list[list[float]] = []
        self._link_free_s = 0.0  # the emulated uplink delivers in order: not before this
        self._drained = asyncio.Event()
        self._drained.set()
        self._broken = asyncio.Event()  # a publish failed: reconnect

    def topic(self, kind: str) -> str:
        return f"{ROOT}/{self.thing_id}/{kind}"

    @property
    def finished(self) -> bool:
        """Nothing left to do: every report it will make is made and acknowledged."""
        if self.unacked:
            return False
        return self.stopping.is_set() or (
            self.max_reports is not None and self.seq >= self.max_reports
        )

    # ------------------------------------------------------------------ connecting
    def _client(self, url: BrokerUrl) -> aiomqtt.Client:
        client = aiomqtt.Client(
            url.hostname,
            url.port,
            identifier=self.thing_id,
            username=self.thing_id,
            password=self.password,
            clean_session=True,
            keepalive=self.keepalive_s,
            timeout=self.timeout_s,
            tls_context=ssl.create_default_context() if url.tls else None,
            logger=_mqtt_log,
            max_inflight_messages=self.max_inflight + 4,
        )
        client.pending_calls_threshold = self.max_inflight + 8  # we bound it ourselves
        return client

    async def _connect(self, url: BrokerUrl) -> aiomqtt.Client | None:
        """A connected client, or None when, once its turn came, there was nothing
        left to do (the run stopped while it waited)."""
        client = self._client(url)
        async with self.connect_gate:
            if self.finished or self.abort.is_set():
                return None
            try:
                await client.__aenter__()
            except aiomqtt.MqttCodeError as exc:  # a CONNACK that refuses
                raise _ConnectFailed(str(exc), refused=True) from None
            except (aiomqtt.MqttError, OSError) as exc:  # OSError: TLS handshake and the like
                raise _ConnectFailed(str(exc) or type(exc).__name__, refused=False) from None
        return client

    async def probe(self) -> None:
        """Connect once and disconnect: the broker is there and takes the password.

        Raises:
            DevicesError: it is not, or does not; the message says which.
        """
        try:
            client = await self._connect(self.broker)
            if client is None:
                return
        except _ConnectFailed as exc:
            why = str(exc)
            if exc.refused:
                hint = (
                    f"the broker refused device {self.thing_id} ({why}); it must accept the "
                    "device passwords of twinedge serve (its embedded broker does; an "
                    "external broker needs accounts for the devices, see docs/mqtt.md)"
                )
            else:
                hint = (
                    f"cannot connect to the MQTT broker ({why}); is it running there "
                    "(--mqtt; the embedded broker listens on twinedge serve's --mqtt-port)?"
                )
            raise DevicesError(f"{self.broker}: {hint}") from None
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)

    # ------------------------------------------------------------------ the life
    async def run(self) -> None:
        """Connect, report, follow redirects, reconnect after failures, until
        :attr:`finished` or ``abort``. Never raises for what a broker or a message does."""
        url = home = self.broker
        failures = 0
        while not self.finished and not self.abort.is_set():
            self.url = url
            try:
                redirect = await self._session(url)
            except _ConnectFailed as exc:
                self.stats.connect_failures += 1
                failures += 1
                _throttled(
                    logging.WARNING, "connect", "%s: cannot connect to %s: %s", self, url, exc
                )
                if url != home and failures >= self.fallback_after:
                    self._moving = None  # not followed after all: it may come again
                    _throttled(
                        logging.WARNING,
                        "fallback",
                        "%s: back to %s after %d failed connections to %s",
                        self,
                        home,
                        failures,
                        url,
                    )
                    url, failures = home, 0
                await self._pause(failures)
                continue
            except _ConnectionLost as exc:
                self.stats.connections_lost += 1
                _throttled(logging.WARNING, "lost", "%s: connection to %s lost: %s", self, url, exc)
                home, failures = url, 1
                await self._pause(failures)
                continue
            except Exception:  # a bug: log it, never let it end the whole fleet
                self.stats.internal_errors += 1
                log.exception("%s: unexpected error; reconnecting", self)
                failures += 1
                await self._pause(failures)
                continue
            home, failures = url, 0
            if redirect is not None:
                url = redirect.url

    async def _pause(self, failures: int) -> None:
        """Back-off before the next attempt; cut short by ``abort``."""
        delay = min(8.0, 0.25 * 2 ** max(0, failures - 1))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.abort.wait(), delay)

    async def _session(self, url: BrokerUrl) -> Redirect | None:
        """One connection: subscribe, re-send what is unacknowledged, report. Returns
        the redirect to follow, or None when finished or aborted.

        Raises:
            _ConnectFailed: the connection could not be made.
            _ConnectionLost: it broke (or a publish failed).
        """
        client = await self._connect(url)
        if client is None:
            return None
        self.stats.connects += 1
        self.connected = True
        if self._moving is not None:  # arrived: from now on this is the last one followed
            self.epoch, self.host, self._moving = self._moving.epoch, self._moving.host, None
        self._broken.clear()
        self._hook_acks(client)
        tasks: list[asyncio.Task] = []
        try:
            await self._subscribe(client)
            reader = asyncio.create_task(self._read(client))
            publisher = asyncio.create_task(self._publish_loop(client))
            aborted = asyncio.create_task(self.abort.wait())
            broken = asyncio.create_task(self._broken.wait())
            tasks = [reader, publisher, aborted, broken]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                return reader.result()  # a redirect, or _ConnectionLost
            if broken.done():
                raise _ConnectionLost("a publish failed")
            if publisher.done():
                publisher.result()
            return None
        except aiomqtt.MqttError as exc:
            raise _ConnectionLost(str(exc) or type(exc).__name__) from None
        finally:
            self.connected = False
            for t in [*tasks, *self._inflight]:
                t.cancel()
            await asyncio.gather(*tasks, *self._inflight, return_exceptions=True)
            self._inflight.clear()
            for fut in self._acks.values():
                fut.cancel()
            self._acks.clear()
            self._unwritten.clear()
            _retrieve_disconnect(client)
            with contextlib.suppress(aiomqtt.MqttError, OSError):
                await asyncio.wait_for(client.__aexit__(None, None, None), self.timeout_s)

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        """Subscribe to ``twinedge/{thingId}/+``, which covers the redirect and errors
        topics (and desired state, which is ignored); where the broker refuses that
        filter, to the two topics themselves."""
        (code,) = await client.subscribe(self.topic("+"), 1)
        if not _refused(code):
            return
        codes = await client.subscribe([(self.topic(REDIRECT), 1), (self.topic(ERRORS), 1)])
        if _refused(codes[0]):
            _throttled(
                logging.WARNING,
                "subscribe",
                "%s: the broker refused %s and %s: redirects cannot reach this device",
                self,
                self.topic("+"),
                self.topic(REDIRECT),
            )

    async def _read(self, client: aiomqtt.Client) -> Redirect:
        redirect_topic, errors_topic = self.topic(REDIRECT), self.topic(ERRORS)
        try:
            async for m in client.messages:
                if m.topic.value == redirect_topic:
                    r = self._consider(m.payload)
                    if r is not None:
                        return r
                elif m.topic.value == errors_topic:
                    self.stats.problems += 1
                    _throttled(
                        logging.WARNING,
                        "problem",
                        "%s: the service refused a message: %s",
                        self,
                        _short(m.payload),
                    )
        except aiomqtt.MqttError as exc:
            raise _ConnectionLost(str(exc) or type(exc).__name__) from None
        raise _ConnectionLost("the message stream ended")

    def _consider(self, payload: Any) -> Redirect | None:
        """The redirect to follow, or None (logged and counted) for a stale or
        malformed one."""
        try:
            r = parse_redirect(payload if isinstance(payload, bytes | bytearray | str) else b"")
        except ValueError as exc:
            self.stats.redirects_malformed += 1
            _throttled(
                logging.WARNING,
                "malformed",
                "%s: malformed redirect ignored (%s): %s",
                self,
                exc,
                _short(payload),
            )
            return None
        if self.epoch is not None and r.epoch <= self.epoch:
            self.stats.redirects_ignored += 1
            log.info("%s: redirect of epoch %d ignored (followed %d)", self, r.epoch, self.epoch)
            return None
        self._moving = r
        self.stats.redirects_followed += 1
        log.info("%s: redirected to %s (%s), epoch %d", self, r.url, r.host, r.epoch)
        return r

    # ------------------------------------------------------------------ reporting
    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        """Re-send the unacknowledged reports, then make one each period until
        ``max_reports`` or ``stopping``; return once everything is acknowledged."""
        for seq, payload in list(self.unacked.items()):
            self.stats.resent += 1
            self._start_publish(client, seq, payload)
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while not self.stopping.is_set() and (
            self.max_reports is None or self.seq < self.max_reports
        ):
            delay = next_tick - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
                if self.stopping.is_set():
                    break
            next_tick += self.period_s
            if next_tick < loop.time():  # late by more than a period: no burst to catch up
                next_tick = loop.time() + self.period_s
            if len(self.unacked) >= self.max_inflight:
                self.stats.skipped += 1
                continue
            made = self.report()
            if made is None:  # the twin predicts this sample: nothing to send
                self.stats.suppressed += 1
                continue
            self.seq += 1
            props = dict(made)
            props["seq"] = self.seq
            if self.link is not None:
                self._xy[self.seq] = (float(props.get("x_m", 0.0)), float(props.get("y_m", 0.0)))
            payload = json.dumps({"position": props}, separators=(",", ":")).encode()
            self.unacked[self.seq] = payload
            self._drained.clear()
            self.stats.sent += 1
            self._start_publish(client, self.seq, payload)
        await self._drained.wait()

    def _hook_acks(self, client: aiomqtt.Client) -> None:
        """Read the clock when a PUBACK of one of this device's reports is decoded (in
        the MQTT client's callback, before any task wakes) and hand it to the report's
        future; other PUBACKs go to the client's own callback. Read it also when the
        client writes to its socket: a PUBLISH is handed to the client at once, but the
        client writes it only once its event loop has come round to the socket twice
        (aiomqtt registers a writer callback), and that wait is the emulator's, not the
        platform's."""
        paho = client._client  # the paho client inside: its callbacks, its socket
        theirs = paho.on_publish
        acks, clock, unwritten = self._acks, self._clock, self._unwritten
        write = paho.loop_write

        def loop_write(*args: Any, **kwargs: Any) -> Any:
            if unwritten:
                t = clock()
                for sent in unwritten:
                    sent[0] = t
                unwritten.clear()
            return write(*args, **kwargs)

        paho.loop_write = loop_write  # type: ignore[method-assign]  # on this instance only

        def on_publish(c: Any, userdata: Any, mid: int, *rest: Any) -> None:
            fut = acks.pop(mid, None)
            if fut is None:
                if theirs is not None:
                    theirs(c, userdata, mid, *rest)
            elif not fut.done():
                fut.set_result(clock())

        paho.on_publish = on_publish

    def _send(
        self, client: aiomqtt.Client, payload: bytes
    ) -> tuple[list[float], asyncio.Future[float]]:
        """Publish ``payload`` at QoS 1; return when it was written to the socket (a
        one-item list: the time it was handed to the client until the client writes
        it, then the time of that write) and the future of when its PUBACK is read.

        Raises:
            aiomqtt.MqttError: the client refused the publish (not connected).
        """
        paho = client._client
        info = paho.publish(self.topic(REPORTED), payload, qos=1)
        if info.rc != 0:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._acks[info.mid] = fut
        sent = [self._clock()]
        self._unwritten.append(sent)
        return sent, fut

    def _start_publish(self, client: aiomqtt.Client, seq: int, payload: bytes) -> None:
        task = asyncio.create_task(self._publish(client, seq, payload))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _publish(self, client: aiomqtt.Client, seq: int, payload: bytes) -> None:
        clock = self._clock
        t0 = clock()
        delay = None
        if self.link is not None:
            x_m, y_m = self._xy.get(seq, (0.0, 0.0))
            delay = self.link(x_m, y_m, self.host, len(payload))
        if delay is not None:
            # the radio and the backbone: in order (a later report never overtakes),
            # worked out before the first await so that tasks keep their order
            release = max(t0 + delay.up_ms / 1000.0, self._link_free_s)
            self._link_free_s = release
            await self._sleep(max(release - clock(), 0.0))
            t_wake = clock()
        try:
            sent, ack = self._send(client, payload)
            if delay is not None:
                self._first_at_host.setdefault(seq, (sent, delay.up_ms, delay.backbone_ms))
            t_ack = await ack
            t_sent = sent[0]  # written to the socket (set by then: the PUBACK follows it)
        except aiomqtt.MqttError:
            self._broken.set()  # the session ends; the report stays unacknowledged
            return
        t_resumed = clock()
        if delay is not None and delay.return_ms > 0:
            # the PUBACK's way back; a connection lost meanwhile loses it, as a real
            # one would (the report is re-sent)
            await self._sleep(delay.return_ms / 1000.0)
        if self.unacked.pop(seq, None) is not None:
            s = self.stats
            s.acked += 1
            # publish -> PUBACK at the socket, plus the modelled delays both ways
            round_trip_ms = (t_ack - t_sent) * 1000.0
            if delay is not None:
                round_trip_ms += delay.up_ms + delay.return_ms
            s.latencies_ms.append(round_trip_ms)
            s.published_at_s.append(t0)
            first = self._first_at_host.pop(seq, None)
            if delay is not None and first is not None:
                first_sent, up_ms, backbone_ms = first
                s.link_one_way_ms.append(up_ms + (t_ack - first_sent[0]) * 1000.0)
                s.link_network_ms.append(up_ms)
                s.link_backbone_ms.append(backbone_ms)
                s.link_late_ms.append(max(0.0, (t_wake - release) * 1000.0))
                s.link_send_ms.append((t_sent - t_wake) * 1000.0)
                s.link_resume_ms.append((t_resumed - t_ack) * 1000.0)
                s.link_bytes += len(payload)
            elif self.link is not None:
                s.link_unemulated += 1
            self._xy.pop(seq, None)
            if not self.unacked:
                self._drained.set()

    # ------------------------------------------------------------------ summary
    def to_json(self) -> dict[str, Any]:
        """This device's line of the summary."""
        s = self.stats
        return {
            "thingId": self.thing_id,
            "sent": s.sent,
            "acked": s.acked,
            "unacked": len(self.unacked),
            "resent": s.resent,
            "skipped": s.skipped,
            "suppressed": s.suppressed,
            "latency_ms": percentiles_ms(s.latencies_ms),
            "redirects_followed": s.redirects_followed,
            "redirects_ignored": s.redirects_ignored,
            "redirects_malformed": s.redirects_malformed,
            "connects": s.connects,
            "errors": s.errors,
            "problems": s.problems,
            "host": self.host,
            "epoch": self.epoch,
            "url": str(self.url),
        } | ({"link": link_summary([s])} if self.link is not None else {})

    def __str__(self) -> str:
        return self.thing_id


def _retrieve_disconnect(client: aiomqtt.Client) -> None:
    """Take the error of a connection the broker closed (a redirect, a lost connection)
    so that asyncio does not log it as never retrieved: the client's ``__aexit__``
    returns early once it is disconnected, without looking at it. The error may also
    come later, while the client closes (the broker closing first): a done callback
    takes it then."""
    fut = getattr(client, "_disconnected", None)
    if isinstance(fut, asyncio.Future):
        fut.add_done_callback(_take_error)


def _take_error(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def _refused(code: Any) -> bool:
    """A SUBACK return code that refuses the subscription (0x80 and above)."""
    return int(getattr(code, "value", code)) >= 0x80


def _short(payload: Any, limit: int = 200) -> str:
    text = (
        payload.decode("utf-8", "backslashreplace") if isinstance(payload, bytes) else str(payload)
    )
    return text if len(text) <= limit else text[:limit] + "..."


_last_logged: dict[str, float] = {}
_suppressed: dict[str, int] = {}


def _throttled(level: int, kind: str, msg: str, *args: Any) -> None:
    """Log at most one line per second per kind of event (thousands of devices may hit
    the same problem at once); the line says how many were left out."""
    now = time.monotonic()
    if now - _last_logged.get(kind, -math.inf) < 1.0:
        _suppressed[kind] = _suppressed.get(kind, 0) + 1
        return
    _last_logged[kind] = now
    more = _suppressed.pop(kind, 0)
    if more:
        msg += f" (and {more} more like it)"
    log.log(level, msg, *args)
