"""The bridge to an external MQTT broker (Mosquitto, EMQX, HiveMQ, ...), with aiomqtt.

The service connects as one client with a persistent session (clean session = 0), so the
broker keeps its subscriptions and queues device messages while the service is away.
Device authentication and the per-device ACL are then the broker's job (docs/mqtt.md
has the Mosquitto configuration).

Acknowledgement: the bridge turns off paho's automatic PUBACK (``manual_ack``) and
acknowledges a device message to the broker only after the service made it durable (or
rejected it for good). The device's own PUBACK comes from the broker as soon as the
broker has the message; the chain stays lossless as long as the broker persists its
sessions (Mosquitto: ``persistence true``) and redelivers unacknowledged messages to the
service's persistent session after a crash or reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from twinedge.runtime.mqtt.core import (
    DESIRED,
    REPORTED,
    RESPONSES,
    ROOT,
    Gateway,
    desired_document,
    dumps,
    mqtt_safe,
    topic,
)

log = logging.getLogger("twinedge.mqtt")

SUBSCRIPTIONS = [(f"{ROOT}/+/{REPORTED}", 1), (f"{ROOT}/+/{RESPONSES}/+", 1)]


def parse_url(url: str) -> dict[str, Any]:
    """``mqtt[s]://user:pass@host:port`` -> aiomqtt.Client keyword arguments."""
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ValueError(f"MQTT url {url!r}: expected mqtt://user:pass@host:port or mqtts://...")
    return {
        "hostname": u.hostname,
        "port": u.port or (8883 if u.scheme == "mqtts" else 1883),
        "username": unquote(u.username) if u.username else None,
        "password": unquote(u.password) if u.password else None,
        "tls_context": ssl.create_default_context() if u.scheme == "mqtts" else None,
    }


class ExternalBridge(Gateway):
    """The twin service as a client of an external broker.

    Parameters:
        service: the :class:`~twinedge.runtime.service.TwinService`; the bridge becomes
            its ``outbound``.
        url: ``mqtt://user:pass@host:port`` (``mqtts://`` for TLS).
        client_id: the service's client id; keep it stable, the broker keys the
            persistent session by it.
        max_payload_bytes: larger device messages are rejected (payload-too-large).
        max_inflight: service -> device messages awaiting the broker's PUBACK at once.
        outbound_queue_max: service -> device messages kept while disconnected; beyond
            that the oldest are counted as ``mqtt_outbound_dropped_total`` and dropped
            (desired state is re-sent in full on every reconnect anyway).
    """

    def __init__(
        self,
        service: Any,
        url: str = "mqtt://user:pass@host:port",
        client_id: str = "twinedge-service",
        *,
        max_payload_bytes: int = 65536,
        max_inflight: int = 1000,
        outbound_queue_max: int = 100_000,
        reconnect_max_s: float = 30.0,
        connect_timeout_s: float = 5.0,
    ):
        super().__init__(service, max_payload_bytes=max_payload_bytes)
        self.url, self.client_id = url, client_id
        self._params = parse_url(url)
        self.max_inflight = max_inflight
        self.reconnect_max_s, self.connect_timeout_s = reconnect_max_s, connect_timeout_s
        self._out: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue(outbound_queue_max)
        self._connected = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.connections = 0
        self.last_error: str | None = None  # why the last connection attempt failed or ended

    @property
    def address(self) -> str:
        """``mqtt[s]://host:port`` of the broker (no credentials: fit for messages)."""
        scheme = "mqtts" if self._params["tls_context"] is not None else "mqtt"
        return f"{scheme}://{self._params['hostname']}:{self._params['port']}"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect, waiting up to ``connect_timeout_s`` for the first connection; after
        that the bridge reconnects on its own, with exponential backoff.

        Raises:
            ConnectionError: the first connection failed (the broker's or the operating
                system's reason, e.g. connection refused or not authorised) or did not
                complete in time; nothing is left running.
        """
        self.service.outbound = self
        self.last_error = None
        self._task = asyncio.create_task(self._run(fail_fast=True), name="twinedge-mqtt-bridge")
        connected = asyncio.ensure_future(self._connected.wait())
        await asyncio.wait(
            {connected, self._task},
            timeout=self.connect_timeout_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        connected.cancel()
        if self.connected:
            return
        why = self.last_error or f"no connection within {self.connect_timeout_s:g} s"
        await self.stop()
        raise ConnectionError(f"cannot connect to the MQTT broker at {self.address}: {why}")

    def state(self) -> dict[str, Any]:
        """For ``/healthz``: whether the bridge is connected to the broker now, how many
        times it connected, and the last connection error."""
        return {
            "mode": "external",
            "broker": self.address,
            "up": self.connected,
            "connected": self.connected,
            "connections": self.connections,
            "lastError": self.last_error,
        }

    async def stop(self) -> None:
        if self.service.outbound is self:
            self.service.outbound = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._cancel_tasks()

    def forget_desired(self, thing_id: str) -> None:
        """Also remove the broker's retained copy of the deleted thing's desired state
        (an empty retained message), so that the device of a thing created later with the
        same id is never sent the earlier incarnation's desired state."""
        super().forget_desired(thing_id)
        if mqtt_safe(thing_id):
            self._send(topic(thing_id, DESIRED), b"", True)

    def _send(self, topic_name: str, data: bytes, retain: bool) -> None:
        try:
            self._out.put_nowait((topic_name, data, retain))
        except asyncio.QueueFull:
            self._out.get_nowait()
            self._out.put_nowait((topic_name, data, retain))
            self.metrics["mqtt_outbound_dropped_total"] += 1

    async def _run(self, fail_fast: bool = False) -> None:
        """Connect, receive, reconnect. With ``fail_fast``, a failure before the first
        connection ends the task (:meth:`start` reports it)."""
        backoff = 0.25
        while True:
            client = aiomqtt.Client(
                identifier=self.client_id, clean_session=False, keepalive=30, **self._params
            )
            # acknowledge device messages ourselves, once they are durable (see module doc)
            client._client.manual_ack_set(True)
            sender: asyncio.Task | None = None
            try:
                async with client:
                    await client.subscribe(SUBSCRIPTIONS)
                    self.connections += 1
                    fail_fast = False
                    backoff = 0.25
                    self._resync_desired()
                    self._connected.set()
                    log.info(
                        "MQTT bridge connected to %s:%s",
                        self._params["hostname"],
                        self._params["port"],
                    )
                    sender = asyncio.create_task(self._sender(client))
                    async for message in client.messages:
                        self.spawn(self._receive(client, message))
            except aiomqtt.MqttError as e:
                self.last_error = " ".join(str(e).split()) or type(e).__name__
                if fail_fast:
                    return
                self.metrics["mqtt_bridge_disconnects_total"] += 1
                log.warning("MQTT bridge: %s; reconnecting in %.1f s", e, backoff)
            finally:
                self._connected.clear()
                if sender is not None:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sender
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.reconnect_max_s)

    async def _receive(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        data = message.payload if isinstance(message.payload, bytes | bytearray) else b""
        ok = await self.handle(None, message.topic.value, data)
        if message.qos == 0:
            return
        if ok:
            client._client.ack(message.mid, message.qos)
        else:  # not durable: leave it unacknowledged and reconnect so the broker redelivers
            client._client.disconnect()

    async def _sender(self, client: aiomqtt.Client) -> None:
        """Publish in queue order, up to ``max_inflight`` awaiting the broker's PUBACK."""
        window = asyncio.Semaphore(self.max_inflight)
        while True:
            item = await self._out.get()
            await window.acquire()
            self.spawn(self._publish(client, item, window))

    async def _publish(
        self, client: aiomqtt.Client, item: tuple[str, bytes, bool], window: asyncio.Semaphore
    ) -> None:
        topic_name, data, retain = item
        try:
            await client.publish(topic_name, data, qos=1, retain=retain, timeout=30)
        finally:
            window.release()

    def _resync_desired(self) -> None:
        """(Re)publish every twin's desired state as the retained message, so the broker's
        copy is right even if it lost its state or a change went out while we were away."""
        for thing_id, doc in list(self.service.things.items()):
            if not mqtt_safe(thing_id):
                continue
            payload = desired_document(thing_id, doc, "", {})
            if payload["features"]:
                self._send(topic(thing_id, DESIRED), dumps(payload), True)
