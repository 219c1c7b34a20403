"""The embedded MQTT broker: amqtt's :class:`~amqtt.broker.Broker` with the twin service
wired into its protocol handler.

Why we reach into amqtt (0.12.x only; :func:`check_amqtt` refuses other versions):

* **Durable before PUBACK.** amqtt answers an incoming QoS 1 PUBLISH in
  ``ProtocolHandler._handle_qos1_message_flow`` right after putting it on the session's
  delivery queue, long before anything is stored. Each connection here gets a
  :class:`_DeviceHandler` (a subclass of amqtt's ``BrokerProtocolHandler``) whose
  ``handle_publish`` first awaits :meth:`TwinService.device_report` (which returns only
  once the writer committed the batch) and only then writes the PUBACK. PUBACKs of one
  connection leave in the order the PUBLISHes came in, so a PUBACK also means "every
  earlier message of this connection is durable". Device messages never enter amqtt's
  delivery and broadcast path: no plugin events, no per-message topic matching over all
  subscriptions, no second JSON parse.
* **Authentication before any session state is touched.** amqtt looks up (and, with
  clean session, deletes) the session of a client id before it asks any auth plugin, so a
  stranger could kick or wipe a device's session. :meth:`_Broker._initialize_client_session`
  reads the CONNECT itself, checks username = thing id, the password
  (:meth:`TwinService.authenticate_device`) and the client id (the thing id, or the
  thing id + ``/`` + anything), and only then hands the recorded bytes to amqtt.
* **ACL and delivery.** Subscriptions are checked in ``_topic_filtering``; messages to
  devices go straight to the sessions subscribed to that device's topics (found with at
  most five dictionary look-ups) instead of through amqtt's broadcast loop, which tests
  every subscription of every device for every message. Desired state is "retained" from
  the twin itself: whenever a device subscribes (or resumes a persistent session) it is
  sent the current desired state read from the twin, so it survives restarts of the
  service, which amqtt's in-memory retained store would not. amqtt replays retained
  messages on every connect for *every* topic filter any client holds; that replay is
  narrowed to the connecting session's own subscriptions (and sent once), or a device
  would get messages for subscriptions it does not have.
* **Topics amqtt cannot parse.** A PUBLISH topic with '+' or '#', or one that is not
  UTF-8, throws amqtt's reader out of step with the stream. Each connection is read
  through :class:`_Framed`, which hands such a PUBLISH to amqtt with a placeholder topic,
  so it is acknowledged and refused (malformed-topic) like any other bad message.
* **The reader loop.** ``_DeviceHandler._reader_loop`` replaces amqtt's for the packets
  devices send most: a QoS 0/1 PUBLISH goes from the bytes :class:`_Framed` has already
  cut into packets straight to the gateway (amqtt would read it a byte at a time through
  a dozen awaits, build four objects, fire a plugin event and arm a keep-alive timer per
  packet); every other packet is still parsed and dispatched by amqtt.
* **MQTT 3.1.1 only.** An MQTT 5 CONNECT is refused at once (CONNACK 0x01).

A device's last will (if any) is handled like a message the device published when it
disconnects uncleanly: same ACL, same errors.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.metadata
import logging
from typing import Any

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import MQTTError
from amqtt.events import MQTTEvents
from amqtt.mqtt import packet_class
from amqtt.mqtt.connack import (
    BAD_USERNAME_PASSWORD,
    IDENTIFIER_REJECTED,
    UNACCEPTABLE_PROTOCOL_VERSION,
    ConnackPacket,
)
from amqtt.mqtt.connect import ConnectPacket
from amqtt.mqtt.constants import QOS_0, QOS_1, QOS_2
from amqtt.mqtt.packet import (
    CONNACK,
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    RESERVED_0,
    RESERVED_15,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    MQTTFixedHeader,
)
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.publish import PublishPacket
from amqtt.session import Session

from twinedge.runtime.mqtt.core import (
    COMMANDS,
    DESIRED,
    ROOT,
    Gateway,
    Rejection,
    desired_document,
    dumps,
    matches,
    may_receive,
    may_subscribe,
    mqtt_safe,
    topic,
)

log = logging.getLogger("twinedge.mqtt")

SUPPORTED_AMQTT = "0.12."
_THING = "twinedge.thing"  # Session.attributes key: the authenticated thing id
_SUB_REJECTS = "twinedge.subscribe_rejects"
_SUBSCRIBING = "twinedge.subscribing"  # set during a SUBSCRIBE: desired topics sent
_PUBACK = b"\x40\x02"  # fixed header of a PUBACK (MQTT 3.1.1, 3.4)
_HOOKS = {
    Broker: (
        "_initialize_client_session",
        "_handle_client_session",
        "_authenticate",
        "_topic_filtering",
        "_handle_subscription",
        "_publish_retained_messages_for_subscription",
        "_publish_session_retained_messages",
        "_broadcast_message",
        "retain_message",
        "_get_handler",
        "_delete_session",
    ),
    BrokerProtocolHandler: (
        "_reader_loop",
        "handle_read_timeout",
        "handle_publish",
        "_send_packet",
        "handle_connection_closed",
        "mqtt_publish",
    ),
}


def check_amqtt() -> str:
    """The installed amqtt version, or a RuntimeError if the hooks this module relies on
    may have changed."""
    version = importlib.metadata.version("amqtt")
    missing = [
        f"{cls.__name__}.{name}"
        for cls, names in _HOOKS.items()
        for name in names
        if not hasattr(cls, name)
    ]
    if not version.startswith(SUPPORTED_AMQTT) or missing:
        raise RuntimeError(
            f"twinedge's embedded MQTT broker hooks into amqtt {SUPPORTED_AMQTT}x internals "
            f"(acknowledging QoS 1 only after the update is durable); found amqtt {version}"
            + (f", missing {', '.join(missing)}" if missing else "")
            + ". Install 'amqtt>=0.12,<0.13' or use an external broker (--mqtt mqtt://...)."
        )
    return version


_MQTT_311 = 4  # the protocol level of MQTT 3.1.1

#: packet type -> the handler method amqtt's reader loop runs for it (in a task)
_DISPATCH = {
    CONNACK: "handle_connack",
    SUBSCRIBE: "handle_subscribe",
    UNSUBSCRIBE: "handle_unsubscribe",
    SUBACK: "handle_suback",
    UNSUBACK: "handle_unsuback",
    PUBACK: "handle_puback",
    PUBREC: "handle_pubrec",
    PUBREL: "handle_pubrel",
    PUBCOMP: "handle_pubcomp",
    PINGREQ: "handle_pingreq",
    PINGRESP: "handle_pingresp",
    PUBLISH: "handle_publish",
    DISCONNECT: "handle_disconnect",
}


async def _protocol_level(reader: ReaderAdapter) -> int:
    """Read a CONNECT's fixed header, protocol name and level; return the level."""
    if (await reader.read(1))[0] >> 4 != 1:
        raise MQTTError("the first packet is not a CONNECT")
    for _ in range(4):  # the remaining length
        if not (await reader.read(1))[0] & 0x80:
            break
    name = int.from_bytes(await reader.read(2), "big")
    await reader.read(name)
    return (await reader.read(1))[0]


class _Recorder(ReaderAdapter):
    """Reads through to ``inner`` and keeps a copy of every byte."""

    def __init__(self, inner: ReaderAdapter):
        self.inner, self.data = inner, bytearray()

    async def read(self, n: int = -1) -> bytes:
        b = await self.inner.read(n)
        self.data += b
        return b

    def feed_eof(self) -> None:
        self.inner.feed_eof()


class _Replay(ReaderAdapter):
    """Serves ``prefix`` first, then reads from ``inner``."""

    def __init__(self, prefix: bytes | bytearray, inner: ReaderAdapter):
        self.prefix, self.inner = bytes(prefix), inner

    async def read(self, n: int = -1) -> bytes:
        if not self.prefix:
            return await self.inner.read(n)
        if n < 0:
            out, self.prefix = self.prefix, b""
            return out + await self.inner.read(n)
        out, self.prefix = self.prefix[:n], self.prefix[n:]
        if len(out) < n:
            out += await self.inner.read(n - len(out))
        return out

    def feed_eof(self) -> None:
        self.inner.feed_eof()


class _OnePacket(ReaderAdapter):
    """One whole packet's bytes, for amqtt's packet parsers."""

    def __init__(self, packet: bytes):
        self.data, self.pos = packet, 0

    async def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        if end > len(self.data):
            raise asyncio.IncompleteReadError(self.data[self.pos :], n)
        out, self.pos = self.data[self.pos : end], end
        return out

    def feed_eof(self) -> None:
        pass


class _Framed(ReaderAdapter):
    """Reads whole MQTT packets from ``inner`` and serves their bytes to amqtt, with one
    repair: a PUBLISH whose topic amqtt 0.12 cannot parse is given a placeholder topic.

    amqtt raises on a topic with '+' or '#' *before* reading the payload, and turns a
    topic that is not UTF-8 into ``str(bytes)`` and then miscounts the payload; either
    way the rest of the stream is read out of step, the message is never acknowledged and
    a QoS 1 device resends it for ever. Here such a topic becomes ``"\0malformed/<n>"``
    (no MQTT topic can hold NUL), and :attr:`malformed` maps it to a readable rendering
    of the real topic and what is wrong with it, for the gateway to reject it. Partial
    reads are kept in the object or the stream, so a cancelled read (keep-alive timeout)
    loses nothing.
    """

    def __init__(self, inner: ReaderAdapter):
        # the TCP listener's adapter: read whatever has arrived in one call and cut it into
        # packets (one await for many packets)
        stream = getattr(inner, "_reader", None)
        if not isinstance(stream, asyncio.StreamReader):
            raise TypeError(f"expected amqtt's TCP stream adapter, got {type(inner).__name__}")
        self.inner, self._stream = inner, stream
        self.malformed: dict[str, tuple[str, str]] = {}
        self._out = bytearray()  # bytes of complete packets, not yet read by amqtt
        self._raw = bytearray()  # bytes read from the stream, not yet cut into packets
        self._count = 0

    async def read(self, n: int = -1) -> bytes:
        while not self._out or len(self._out) < n:
            await self._read_available()
        if n < 0:
            n = len(self._out)
        out = bytes(self._out[:n])
        del self._out[:n]
        return out

    def feed_eof(self) -> None:
        self.inner.feed_eof()

    def next_packet(self) -> bytes | None:
        """The next whole packet already read (its fixed header included), or ``None``."""
        out = self._out
        if not out:
            return None
        i, size, shift = 1, 0, 0
        while True:  # complete packets only are kept, so the length is all there
            b = out[i]
            size |= (b & 0x7F) << shift
            shift += 7
            i += 1
            if not b & 0x80:
                break
        packet = bytes(out[: i + size])
        del out[: i + size]
        return packet

    async def fill(self) -> None:
        """Wait for more bytes from the connection and cut them into packets.

        Raises:
            asyncio.IncompleteReadError: the connection ended.
        """
        await self._read_available()

    async def _read_available(self) -> None:
        chunk = await self._stream.read(65536)
        if not chunk:
            raise asyncio.IncompleteReadError(bytes(self._raw), None)
        raw = self._raw
        raw += chunk
        pos, end_raw = 0, len(raw)
        while end_raw - pos >= 2:
            i, size, shift, done = pos + 1, 0, 0, False
            while i < end_raw and i - pos < 5:  # the remaining length: 1-4 bytes, low first
                b = raw[i]
                size |= (b & 0x7F) << shift
                shift += 7
                i += 1
                if not b & 0x80:
                    done = True
                    break
            if not done and i - pos < 5:
                break  # the fixed header is not complete yet
            end = i + size
            if end > end_raw:
                break  # the body is not complete yet
            packet = bytes(raw[pos:end])
            if packet[0] >> 4 == 3:  # PUBLISH
                packet = self._repair_publish(packet, i - pos)
            self._out += packet
            pos = end
        del raw[:pos]

    def _repair_publish(self, packet: bytes, start: int) -> bytes:
        length = int.from_bytes(packet[start : start + 2], "big")
        raw = packet[start + 2 : start + 2 + length]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            why = f"the topic is not valid UTF-8 (byte {e.start})"
            text = raw.decode("utf-8", "backslashreplace")
        else:
            if not any(c in text for c in "+#"):
                return packet
            why = "a topic name may not hold the wildcard characters '+' or '#'"
        placeholder = f"\0malformed/{self._count}"
        self._count += 1
        self.malformed[placeholder] = (text, why)
        name = placeholder.encode()
        body = len(name).to_bytes(2, "big") + name + packet[start + 2 + length :]
        size, head = len(body), bytearray([packet[0]])
        while True:
            size, digit = size >> 7, size & 0x7F
            head.append(digit | (0x80 if size else 0))
            if not size:
                return bytes(head) + body


class _DeviceHandler(BrokerProtocolHandler):
    """amqtt's broker protocol handler, except that a device's PUBLISH goes to the twin
    service and is acknowledged only after it is durable (or rejected for good)."""

    def __init__(self, plugins_manager: Any, gateway: EmbeddedBroker, loop: Any = None):
        super().__init__(plugins_manager, loop=loop)
        self._gateway = gateway
        self._seq_in = 0  # QoS 1 messages received on this connection
        self._seq_out = 0  # ... whose PUBACK went out (or is next)
        self._ready: dict[int, int | None] = {}  # seq -> packet id to acknowledge (None: drop)
        self._dropped = False
        self._acks = bytearray()  # PUBACKs due, written once per event-loop iteration
        self._acks_scheduled = False

    async def _reader_loop(self) -> None:
        """amqtt's reader loop, shortened for what devices send most: a QoS 0/1 PUBLISH
        is cut out of the bytes :class:`_Framed` already framed and handed to
        :meth:`_publish` (one task each, as amqtt does, so a slow commit never stops the
        reading), without amqtt's byte-at-a-time parse, packet objects, plugin event
        (the embedded broker runs no plugins) or a ``wait_for`` per packet (amqtt's
        broker handler does nothing when a keep-alive period passes in silence, so no
        timer runs; a handler that does something runs one while no whole packet is
        buffered). Every other packet is parsed and dispatched by amqtt's own code, in
        arrival order. How the loop ends is amqtt's: the tasks of this connection are
        cancelled and the connection closed.
        """
        reader, session = self.reader, self.session
        if not isinstance(reader, _Framed) or session is None or not self._reader_ready:
            await super()._reader_loop()
            return
        running: collections.deque[asyncio.Task[None]] = collections.deque()
        keepalive: int | None = session.keep_alive
        if keepalive is not None and keepalive <= 0:
            keepalive = None
        if type(self).handle_read_timeout is BrokerProtocolHandler.handle_read_timeout:
            keepalive = None  # amqtt's broker does nothing when it expires: no timer needed
        loop = asyncio.get_running_loop()
        while True:
            try:
                self._reader_ready.set()
                while running and running[0].done():
                    running.popleft()
                packet = reader.next_packet()
                if packet is None:
                    if keepalive is None:
                        await reader.fill()
                        continue
                    try:
                        await asyncio.wait_for(reader.fill(), timeout=keepalive)
                    except TimeoutError:
                        self.handle_read_timeout()
                    continue
                first = packet[0]
                qos = (first >> 1) & 0x03
                task: asyncio.Task[None] | None
                if first >> 4 == PUBLISH and qos < QOS_2:
                    task = loop.create_task(self._publish(packet, qos))
                else:
                    task = await self._amqtt_packet(packet)
                if task is not None:
                    running.append(task)
            except MQTTError:
                log.debug("MQTT packet discarded")
            except asyncio.CancelledError:
                break
            except (asyncio.IncompleteReadError, ConnectionError):
                break  # the connection ended
            except Exception as e:
                log.warning("MQTT reader of %s stopped: %r", session.client_id, e)
                break
        while running:
            running.popleft().cancel()
        await self.handle_connection_closed()
        self._reader_stopped.set()
        await self.stop()

    async def _amqtt_packet(self, packet: bytes) -> asyncio.Task[None] | None:
        """Parse and dispatch one packet the way amqtt's reader loop does."""
        one = _OnePacket(packet)
        fixed = await MQTTFixedHeader.from_stream(one)
        if fixed is None:
            raise MQTTError("empty packet")
        kind = fixed.packet_type
        if kind in (RESERVED_0, RESERVED_15):
            log.warning("reserved MQTT packet type %d received: closing the connection", kind)
            await self.handle_connection_closed()
            return None
        parsed = await packet_class(fixed).from_stream(one, fixed_header=fixed)
        await self.plugins_manager.fire_event(
            MQTTEvents.PACKET_RECEIVED, packet=parsed, session=self.session
        )
        if kind == CONNECT:  # amqtt awaits it too
            await self.handle_connect(parsed)
            return None
        handler = _DISPATCH.get(kind)
        if handler is None:
            log.warning("unhandled MQTT packet type %d", kind)
            return None
        return asyncio.get_running_loop().create_task(getattr(self, handler)(parsed))

    async def _publish(self, packet: bytes, qos: int) -> None:
        """A QoS 0 or 1 PUBLISH (fixed header included) from the device."""
        i = 1
        while packet[i] & 0x80:  # the remaining length
            i += 1
        i += 1
        n = int.from_bytes(packet[i : i + 2], "big")
        topic_name = packet[i + 2 : i + 2 + n].decode("utf-8")  # _Framed repaired bad ones
        i += 2 + n
        packet_id = None
        if qos:
            packet_id = int.from_bytes(packet[i : i + 2], "big")
            i += 2
        await self._device_publish(topic_name, packet[i:], qos, packet_id)

    async def handle_publish(self, publish_packet: PublishPacket) -> None:
        topic_name, data = publish_packet.topic_name, publish_packet.data
        if topic_name is None or data is None:
            return
        qos = publish_packet.qos
        if qos in (QOS_0, QOS_1):
            packet_id = publish_packet.variable_header.packet_id if qos else None
            await self._device_publish(topic_name, data, qos, packet_id)
        else:
            await self._device_publish_qos2(publish_packet)

    async def _device_publish(
        self, topic_name: str, data: bytes, qos: int, packet_id: int | None
    ) -> None:
        session = self.session
        if session is None:
            return
        sender = session.attributes.get(_THING)
        topic_name, problem = self._real_topic(topic_name)
        if qos == QOS_1:
            seq = self._seq_in
            self._seq_in += 1
            ok = await self._gateway.handle(sender, topic_name, data, problem)
            self._ready[seq] = packet_id if ok else None
            self._flush_acks()
        else:
            await self._gateway.handle(sender, topic_name, data, problem)

    def _real_topic(self, topic_name: str) -> tuple[str, str | None]:
        """The topic a PUBLISH really named and what is wrong with it (``None``: nothing),
        for a placeholder :class:`_Framed` put in its stead."""
        malformed = getattr(self.reader, "malformed", None)
        if malformed and topic_name in malformed:
            return malformed.pop(topic_name)
        return topic_name, None

    async def _device_publish_qos2(self, publish_packet: PublishPacket) -> None:
        session = self.session
        topic_name, data = publish_packet.topic_name, publish_packet.data
        if session is None or topic_name is None or data is None:
            return
        sender = session.attributes.get(_THING)
        topic_name, problem = self._real_topic(topic_name)
        if await self._gateway.handle(sender, topic_name, data, problem):
            # QoS 2: applied durably first, then amqtt's PUBREC/PUBREL/PUBCOMP exchange; the
            # message it then queues for delivery is refused by _topic_filtering(PUBLISH).
            await super().handle_publish(publish_packet)
        else:
            await self.handle_connection_closed()

    def _flush_acks(self) -> None:
        """Queue the PUBACKs that are due, in arrival order. The service answers a whole
        batch in one event-loop iteration, so the acks of a connection go out in one write
        (one syscall) at the end of it; the client's packet-id space bounds the buffer."""
        ready = self._ready
        while self._seq_out in ready and not self._dropped:
            packet_id = ready.pop(self._seq_out)
            self._seq_out += 1
            if packet_id is None:  # not durable (503): no PUBACK; drop so the device resends
                # the reports before it are durable: acknowledged first, or the device would
                # send them again and they would be applied twice
                self._write_acks()
                self._dropped = True
                ready.clear()
                self._gateway.spawn(self.handle_connection_closed())
                return
            self._acks += _PUBACK + packet_id.to_bytes(2, "big")
        if self._acks and not self._acks_scheduled:
            self._acks_scheduled = True
            self._loop.call_soon(self._write_acks)

    def _write_acks(self) -> None:
        self._acks_scheduled = False
        if self.writer is not None and self._acks and not self._dropped:
            self.writer.write(bytes(self._acks))
        self._acks.clear()


class _Broker(Broker):
    def __init__(self, config: dict[str, Any], gateway: EmbeddedBroker):
        super().__init__(config)
        self._gw = gateway

    async def _initialize_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, remote_address: str, remote_port: int
    ) -> tuple[BrokerProtocolHandler, Session]:
        peek = _Recorder(reader)
        recorder, connect = peek, None
        try:
            level = await _protocol_level(peek)
            if level == _MQTT_311:  # an MQTT 5 CONNECT is laid out differently
                recorder = _Recorder(_Replay(peek.data, reader))
                connect = await ConnectPacket.from_stream(recorder)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await writer.close()
            raise MQTTError(
                f"unreadable CONNECT from {remote_address}:{remote_port}: {exc}"
            ) from exc
        if connect is None:
            refusal: tuple[int, str] | None = (
                UNACCEPTABLE_PROTOCOL_VERSION,
                f"MQTT protocol level {level}: the embedded broker speaks MQTT 3.1.1 "
                "(level 4) only; use an external broker for MQTT 5",
            )
        else:
            refusal = await self._gw.admit(connect)
        if refusal is not None:
            code, why = refusal
            user = connect.username if connect is not None else None
            reason = "bad-credentials" if connect is not None else "unsupported-protocol"
            self._gw.reject_connect(user, f"{remote_address}:{remote_port}", why, reason)
            with contextlib.suppress(Exception):
                await ConnackPacket.build(0, code).to_stream(writer)
                await writer.close()
            raise MQTTError(f"CONNECT refused: {why}")
        assert connect is not None  # no CONNECT was refused just above
        _, session = await super()._initialize_client_session(
            _Replay(recorder.data, reader), writer, remote_address, remote_port
        )
        session.attributes[_THING] = connect.username
        session.is_anonymous = False
        return _DeviceHandler(self.plugins_manager, self._gw, loop=self._loop), session

    async def _handle_client_session(
        self, reader: ReaderAdapter, writer: WriterAdapter, *args: Any
    ) -> None:
        await super()._handle_client_session(_Framed(reader), writer, *args)

    async def _authenticate(self, session: Session, _: Any) -> bool:
        # admitted in _initialize_client_session, before any session state was touched
        thing = session.attributes.get(_THING)
        return thing is not None and thing == session.username

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        thing = session.attributes.get(_THING)
        if action == Action.SUBSCRIBE:
            ok = thing is not None and may_subscribe(thing, topic)
            if not ok:
                session.attributes.setdefault(_SUB_REJECTS, []).append(topic)
            return ok
        if action == Action.RECEIVE:
            return may_receive(thing, topic)
        return False  # device messages are consumed by _DeviceHandler, never routed

    async def _handle_subscription(
        self, client_session: Session, handler: Any, waiter: Any
    ) -> None:
        # retained messages go out for the filters of this SUBSCRIBE only (see below)
        client_session.attributes[_SUBSCRIBING] = set()
        try:
            await super()._handle_subscription(client_session, handler, waiter)
        finally:
            client_session.attributes.pop(_SUBSCRIBING, None)
        thing = client_session.attributes.get(_THING)
        for topic_filter in client_session.attributes.pop(_SUB_REJECTS, ()):
            self._gw.reject(
                thing,
                topic_filter,
                Rejection(
                    "forbidden-subscription",
                    f"device {thing} may subscribe only to twinedge/{thing}/desired, "
                    f"twinedge/{thing}/commands/# and twinedge/{thing}/errors; "
                    f"the subscription to {topic_filter!r} was refused (SUBACK 0x80)",
                ),
            )

    async def _publish_session_retained_messages(self, session: Session) -> None:
        """On (re)connect: the current desired state, once, if the session's own
        subscriptions (kept by a persistent session) cover the desired topic."""
        await super()._publish_session_retained_messages(session)
        thing = session.attributes.get(_THING)
        if thing is None:
            return
        want = topic(thing, DESIRED)
        qos = [q for f, q in self._own_subscriptions(session) if matches(want, f)]
        if qos:
            self._gw.send_current_desired(thing, session, min(max(qos), QOS_1))

    def _own_subscriptions(self, session: Session) -> list[tuple[str, int]]:
        return [
            (f, q)
            for f, subs in self._subscriptions.items()
            for s, q in subs
            if s is session or s.client_id == session.client_id
        ]

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        # amqtt calls this (a) for each filter of a SUBSCRIBE and (b) on every connect for
        # every filter any client holds, whoever owns it. (b) would hand a device messages
        # for subscriptions it does not have; _publish_session_retained_messages covers
        # the connecting session's own subscriptions instead.
        sent = session.attributes.get(_SUBSCRIBING)
        if sent is None:
            return
        await super()._publish_retained_messages_for_subscription(subscription, session)
        thing = session.attributes.get(_THING)
        topic_filter, qos = subscription
        want = topic(thing, DESIRED) if thing is not None else None
        if want is not None and want not in sent and matches(want, topic_filter):
            sent.add(want)  # one SUBSCRIBE with overlapping filters: sent once
            self._gw.send_current_desired(thing, session, min(qos, QOS_1))

    async def _broadcast_message(
        self, session: Session | None, topic: str | None, data: Any, force_qos: int | None = None
    ) -> None:
        if session is None:
            await super()._broadcast_message(session, topic, data, force_qos)
        elif topic and data:  # a device's last will: a message from that device
            thing = session.attributes.get(_THING)
            self._gw.spawn(self._gw.handle(thing, topic, bytes(data)))

    async def retain_message(
        self,
        source_session: Session | None,
        topic_name: str | None,
        data: Any,
        qos: int | None = None,
    ) -> None:
        if source_session is None:  # devices may not retain (a will with the retain flag)
            await super().retain_message(source_session, topic_name, data, qos)


class EmbeddedBroker(Gateway):
    """An MQTT 3.1.1 broker inside the service (amqtt), for devices.

    Parameters:
        service: the :class:`~twinedge.runtime.service.TwinService`; this broker becomes
            its ``outbound``.
        host, port: where to listen (``port=0``: any free port; see :attr:`port`).
        max_payload_bytes: larger device messages are rejected (payload-too-large).
        session_expiry_s: forget a persistent (clean session = 0) device session this
            long after it disconnected.

    Devices log in with username = thing id and the password set with
    :meth:`TwinService.set_device_secret`; the client id must be the thing id (or the
    thing id followed by ``/`` and anything, for several connections of one device).
    """

    def __init__(
        self,
        service: Any,
        host: str = "127.0.0.1",
        port: int = 1883,
        max_payload_bytes: int = 65536,
        *,
        session_expiry_s: int | None = 86400,
    ):
        super().__init__(service, max_payload_bytes=max_payload_bytes)
        self.amqtt_version = check_amqtt()
        self.host, self._port = host, port
        self.session_expiry_s = session_expiry_s
        self._broker: _Broker | None = None

    @property
    def port(self) -> int:
        """The port actually listened on (useful with ``port=0``)."""
        if self._broker is not None:
            server = self._broker._servers.get("default")
            if server is not None and server.instance is not None:
                return server.instance.sockets[0].getsockname()[1]
        return self._port

    async def start(self) -> None:
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self._port}"}},
            "plugins": {},  # no plugin machinery on the hot path; auth/ACL are built in
            "session_expiry_interval": self.session_expiry_s,
        }
        self._broker = _Broker(config, self)
        await self._broker.start()
        self.service.outbound = self
        log.info(
            "embedded MQTT broker (amqtt %s) on %s:%d", self.amqtt_version, self.host, self.port
        )

    @property
    def listening(self) -> bool:
        """The broker accepts connections now."""
        if self._broker is None:
            return False
        server = self._broker._servers.get("default")
        instance = getattr(server, "instance", None)
        return bool(instance is not None and instance.is_serving())

    def state(self) -> dict[str, Any]:
        """For ``/healthz``: whether the broker listens, where, and its connected
        devices."""
        broker = self._broker
        clients = 0
        if broker is not None:
            clients = sum(
                1
                for session, _ in list(broker._sessions.values())
                if session is not None and session.transitions.state == "connected"
            )
        return {
            "mode": "embedded",
            "listen": f"{self.host}:{self.port}",
            "up": self.listening,
            "clients": clients,
        }

    async def stop(self) -> None:
        if self.service.outbound is self:
            self.service.outbound = None
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await broker.shutdown()
        await self._cancel_tasks()

    # ------------------------------------------------------------------ admission
    async def admit(self, connect: ConnectPacket) -> tuple[int, str] | None:
        """``None`` to accept a CONNECT, or ``(CONNACK return code, reason)``."""
        user, password, client_id = connect.username, connect.password, connect.client_id or ""
        if not connect.username_flag or not user or not connect.password_flag or not password:
            return BAD_USERNAME_PASSWORD, "anonymous: username (thing id) and password are required"
        if not mqtt_safe(user):
            return BAD_USERNAME_PASSWORD, f"thing id {user!r} cannot be used in MQTT topics"
        if client_id != user and not client_id.startswith(user + "/"):
            return IDENTIFIER_REJECTED, (
                f"client id {client_id!r} must be the thing id {user!r} (or start with '{user}/')"
            )
        if not await self.service.authenticate_device(user, password):
            return BAD_USERNAME_PASSWORD, f"wrong password or unknown thing {user!r}"
        return None

    def reject_connect(
        self, user: str | None, peer: str, why: str, reason: str = "bad-credentials"
    ) -> None:
        self.metrics[f"mqtt_rejected_total:{reason}"] += 1
        log.warning("MQTT CONNECT from %s (username %r) refused: %s", peer, user, why)

    # ------------------------------------------------------------------ delivery
    def _send(self, topic_name: str, data: bytes, retain: bool) -> None:
        """Deliver to the connected sessions subscribed to ``topic_name`` (always a
        ``twinedge/{thingId}/...`` topic). The ACL allows only a handful of filter shapes
        under the device's own prefix, so looking each one up finds every subscriber.
        Nothing is queued for offline devices: desired state is sent from the twin when
        they subscribe again; commands and errors are only for connected devices."""
        broker = self._broker
        if broker is None:
            return
        parts = topic_name.split("/")
        prefix = f"{ROOT}/{parts[1]}/"
        candidates = [topic_name, prefix + "#"]
        if len(parts) == 3:
            candidates.append(prefix + "+")
        elif parts[2] == COMMANDS:
            candidates += (prefix + "commands/+", prefix + "commands/#")
        seen: set[int] = set()
        subs = broker._subscriptions
        for f in candidates:
            for session, qos in subs.get(f, ()):
                if id(session) in seen or session.transitions.state != "connected":
                    continue
                seen.add(id(session))
                handler = broker._get_handler(session)
                # the handler is looked up by client id: make sure it serves this session
                # (not a newer connection that reused the id without its subscriptions)
                if handler is not None and handler.session is session:
                    self.spawn(
                        handler.mqtt_publish(topic_name, data, min(qos, QOS_1), retain=False)
                    )

    async def disconnect_device(self, thing_id: str) -> int:
        """Close every connection of ``thing_id``'s device and forget its sessions, also
        the persistent ones of devices that are offline (its thing was deleted: the
        sessions and their subscriptions belonged to that incarnation, and a device of
        the next one starts without them). Returns how many connections were closed."""
        broker = self._broker
        if broker is None:
            return 0
        n = 0
        for client_id, (session, handler) in list(broker._sessions.items()):
            if session is None or not (
                client_id == thing_id or client_id.startswith(thing_id + "/")
            ):
                continue
            if handler is not None and session.transitions.state == "connected":
                n += 1
                self.spawn(handler.handle_connection_closed())
            self.spawn(self._forget_session(client_id, session))
        if n:
            self.metrics["mqtt_disconnected_total:thing-deleted"] += n
            log.info("closed %d MQTT connection(s) of deleted thing %s", n, thing_id)
        return n

    async def _forget_session(self, client_id: str, session: Session) -> None:
        """Delete ``session`` (its subscriptions and queued messages) unless a newer
        connection has replaced it under the same client id in the meantime."""
        broker = self._broker
        if broker is not None and broker._sessions.get(client_id, (None, None))[0] is session:
            await broker._delete_session(client_id)

    def send_current_desired(self, thing_id: str, session: Session, qos: int) -> None:
        """Send the twin's current desired state to one session (as a retained message)."""
        doc = self.service.things.get(thing_id)
        if doc is None or self._broker is None:
            return
        payload = desired_document(thing_id, doc, "", {})
        if not payload["features"]:
            return
        handler = self._broker._get_handler(session)
        if handler is not None:
            qos = qos if qos in (QOS_0, QOS_1) else QOS_1
            self.spawn(
                handler.mqtt_publish(topic(thing_id, DESIRED), dumps(payload), qos, retain=True)
            )
