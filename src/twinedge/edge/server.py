"""``twinedge host``: an edge host process. It owns the twins the orchestrator places on
it: their state in memory and in its durable log (:class:`~twinedge.edge.host.EdgeHost`),
a device endpoint (the embedded MQTT broker; a device's PUBACK comes after the host's
commit), a control API for the core (placement, the migration steps, redirects), and a
replicator that pushes every committed record to the core in ``seq`` order (lingering up
to ``replicate_linger_s`` for more records per request, unless a caller waits for the
core: see :meth:`HostServer.flush`).

Control API (HTTP on ``control_host:control_port``, ``Authorization: Bearer <hosts
token>``; bodies and answers are :mod:`twinedge.edge.wire` JSON)::

    GET  /status                          twins served, replication lag, MQTT URL
    PUT  /peers                           {host id: MQTT URL} of the other hosts
    PUT  /core                            {url}: the core moved (it restarted elsewhere)
    POST /twins/{id}                      place: {document, epoch, revision}
    GET  /twins?status=owned|fenced|...   {twins: [ids]} in that state here
    GET  /twins/{id}/ownership | /snapshot | /changes?after=N
    POST /twins/{id}/abort-export | /fence | /fence-export | /release | /expect | /stage | /stage-changes
         /discard-staged | /adopt | /adopt-changes | /reclaim | /redirect | /desired | /write | /retire
    POST /twins/{id}/cut-over             {source, source_url, epoch, after}: this host (the
                                          target) fences the source and adopts the twin
    POST /twins/{id}/command              {subject, payload, timeout_s} -> {payload}: the device's answer

Commands to a twin served here go to its device through this host's broker (the device
is connected here, not to the core): the host publishes ``{"correlationId", "payload"}``
on ``twinedge/{id}/commands/{subject}`` and answers once the device publishes its
response on ``twinedge/{id}/responses/{correlationId}``.

An error answers ``{"error": <EdgeError class>, "message", ...its fields}`` with 409 (or
404 for an unknown twin, 400 for bad input), so a remote caller raises the same
exception the host raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from twinedge import gcpauses
from twinedge.edge import errors as edge_errors
from twinedge.edge import failpoints, phases, wire
from twinedge.edge.errors import (
    CommandTimeoutError,
    EdgeError,
    HostClosedError,
    InvalidReportError,
    NotOwnerError,
    TwinNotReadyError,
    UnknownTwinError,
)
from twinedge.edge.host import ChangeSet, EdgeHost
from twinedge.edge.log import TwinStatus
from twinedge.errors import InvalidInput, TwinedgeError, Unavailable
from twinedge.runtime.commands import PendingCommands

log = logging.getLogger("twinedge.host")

DEFAULT_LINGER_S = 0.02  # see HostServer: ~5x fewer requests at 2,000 reports/s
MAX_REPLICATE_BATCH = 5000  # the core takes at most this many records per request
PEER_TIMEOUT_S = 5.0  # a call to another host (a cut-over's fence): less than the core's 10 s

STATUS_OF = {
    UnknownTwinError: 404,
    InvalidReportError: 400,
    HostClosedError: 503,
    TwinNotReadyError: 503,
}


def error_doc(exc: EdgeError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body of an edge error (read back by :func:`error_from`)."""
    status = next((s for cls, s in STATUS_OF.items() if isinstance(exc, cls)), 409)
    fields = {
        k: v
        for k, v in vars(exc).items()
        if isinstance(v, str | int | float | type(None)) and not k.startswith("_")
    }
    return status, {"error": type(exc).__name__, "message": str(exc), **fields}


def error_from(doc: Any) -> EdgeError:
    """The exception an error body stands for (a plain :class:`EdgeError` when unknown)."""
    name = doc.get("error") if isinstance(doc, dict) else None
    cls = getattr(edge_errors, str(name), None)
    message = str(doc.get("message", doc)) if isinstance(doc, dict) else str(doc)
    exc: EdgeError
    if isinstance(cls, type) and issubclass(cls, EdgeError):
        exc = cls.__new__(cls)
        Exception.__init__(exc, message)
        for k, v in doc.items():
            if k not in ("error", "message"):
                with contextlib.suppress(AttributeError):
                    setattr(exc, k, v)
        return exc
    return EdgeError(message)


class _Documents(Mapping[str, dict[str, Any]]):
    """The host's twins as the MQTT gateway reads them (for desired state)."""

    def __init__(self, host: EdgeHost):
        self.host = host

    def __getitem__(self, twin_id: str) -> dict[str, Any]:
        try:
            view = self.host.twin(twin_id)
        except EdgeError:
            raise KeyError(twin_id) from None
        return {**view.document, "_revision": view.revision}

    def __iter__(self) -> Iterator[str]:
        return iter(self.host.twin_ids())

    def __len__(self) -> int:
        return len(self.host.twin_ids())


class DeviceSide:
    """What the MQTT gateway needs from a service, over an edge host: reports applied
    to the host (the PUBACK after its commit), devices authenticated by the core."""

    def __init__(self, server: HostServer):
        self.server = server
        self.metrics: Counter[str] = Counter()
        self.outbound: Any = None
        self.pending = PendingCommands()

    @property
    def things(self) -> Mapping[str, dict[str, Any]]:
        return _Documents(self.server.host)

    async def device_report(self, thing_id: str, payload: Any, *, device: str | None = None) -> int:
        try:  # the gateway read the payload with textinput.loads under JSON_LIMITS
            return await self.server.host.apply(thing_id, payload, values_checked=True)
        except NotOwnerError as e:
            self.server.redirect(thing_id)
            raise Unavailable(str(e)) from None  # not acknowledged: resent after the redirect
        except (UnknownTwinError, TwinNotReadyError, HostClosedError) as e:
            raise Unavailable(str(e)) from None
        except InvalidReportError as e:
            raise InvalidInput(e.detail, e.pointer or None) from None

    def command_response(self, thing_id: str, correlation_id: str, payload: Any) -> bool:
        """A device answered a command this host sent; False for an unknown or expired
        correlation id, or one that was sent to another twin."""
        return self.pending.answer(thing_id, correlation_id, payload)

    async def authenticate_device(self, thing_id: str, password: str | None) -> bool:
        """Asked of the core at every connection (no cache: a password changed or a thing
        deleted there takes effect here at once)."""
        if password is None:
            return False
        ok = await self.server.core_post(
            "/internal/authenticate-device", {"thingId": thing_id, "password": password}
        )
        return isinstance(ok, dict) and ok.get("ok") is True


class HostServer:
    """One edge host process.

    Parameters:
        host_id: the host's id (an edge site of the network).
        data_dir: where its log lives (``edge.sqlite``).
        core_url: the core's HTTP base URL.
        token: the hosts token (the core writes it to ``DATA_DIR/hosts.token``).
        mqtt_host, mqtt_port: the device endpoint (port 0: any free port; once started,
            :attr:`mqtt_port` is the port listened on).
        control_host, control_port: the control API (port 0: likewise).
        replicate_batch: records per replication request at most (1 or more).
        replicate_linger_s: how long the replicator waits, after the first record is
            pending, for more before it sends a request (until ``replicate_batch`` are
            pending), in 0..3600 s; 0 sends at once. Fewer, larger requests cost the core
            far less CPU per record; a caller waiting for the core (:meth:`replicated`, an
            application's write or desired state, a migration step) is never kept waiting.
        tick_s: seconds between two ticks (``on_tick`` of every twin served here, one
            batch); 0: no ticks.

    Raises:
        EdgeError: ``tick_s``, ``replicate_batch`` or ``replicate_linger_s`` out of range.
        EdgeLogError: the log cannot be opened.
    """

    def __init__(
        self,
        host_id: str,
        data_dir: str | Path,
        *,
        core_url: str,
        token: str,
        mqtt_host: str = "127.0.0.1",
        mqtt_port: int = 1883,
        control_host: str = "127.0.0.1",
        control_port: int = 8181,
        replicate_batch: int = 1000,
        replicate_linger_s: float = DEFAULT_LINGER_S,
        tick_s: float = 1.0,
    ):
        if not (tick_s == 0 or 0.01 <= tick_s <= 3600):
            raise EdgeError(f"tick_s must be 0 (no ticks) or within 0.01..3600 s, got {tick_s}")
        if not 1 <= replicate_batch <= MAX_REPLICATE_BATCH:
            raise EdgeError(
                f"replicate_batch must be within 1..{MAX_REPLICATE_BATCH} records, "
                f"got {replicate_batch}"
            )
        if not 0 <= replicate_linger_s <= 3600:  # (NaN fails both)
            raise EdgeError(
                f"replicate_linger_s must be within 0..3600 s, got {replicate_linger_s}"
            )
        self.host_id, self.core_url, self.token = host_id, core_url.rstrip("/"), token
        self.data_dir = Path(data_dir)
        self.mqtt_host, self.mqtt_port = mqtt_host, mqtt_port
        self.control_host, self.control_port = control_host, control_port
        self.replicate_batch = replicate_batch
        self.replicate_linger_s = float(replicate_linger_s)
        self.tick_s = tick_s
        self._ticker: asyncio.Task[None] | None = None
        self.peers: dict[str, str] = {}
        self.host: EdgeHost = None  # type: ignore[assignment]
        self.devices = DeviceSide(self)
        self.broker: Any = None
        self.http: Any = None
        self.client: httpx.AsyncClient | None = None
        self._replicator: asyncio.Task[None] | None = None
        self._http_task: asyncio.Task[None] | None = None
        self.replication_error: str | None = None
        self.replicated_records = 0
        self.replication_requests = 0  # POSTs to /internal/replicate, answered or not
        self._flush_seq = 0  # a caller waits for the core to have the records up to here
        self._quiet_until = 0.0
        self._peers_control: dict[tuple[str, str], Any] = {}  # (host, control URL) -> client

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{self.mqtt_host}:{self.mqtt_port}"

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        import uvicorn

        from twinedge.runtime.app import StartupError, listen_tcp, os_reason
        from twinedge.runtime.mqtt import start_mqtt

        # both ports first: a port in use is one line, before the log is opened
        sock = listen_tcp(self.control_host, self.control_port, "the control API", "--control-port")
        self.control_port = int(sock.getsockname()[1])  # the port chosen, for port 0
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host = EdgeHost.open(self.data_dir / "edge.sqlite", self.host_id)
        self.client = httpx.AsyncClient(
            base_url=self.core_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )
        quiet = logging.getLogger("amqtt.broker")  # it logs a traceback, then raises
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            self.broker = await start_mqtt(
                self.devices, None, host=self.mqtt_host, port=self.mqtt_port
            )
        except Exception as exc:
            sock.close()
            raise StartupError(
                f"cannot listen for MQTT on {self.mqtt_host}:{self.mqtt_port}: "
                f"{os_reason(exc)} (--mqtt-port)"
            ) from None
        finally:
            quiet.setLevel(level)
        self.mqtt_port = int(self.broker.port)
        config = uvicorn.Config(
            control_app(self), host=self.control_host, port=self.control_port,
            log_level="warning", lifespan="off",
        )  # fmt: skip
        self.http = uvicorn.Server(config)
        self.http.install_signal_handlers = lambda: None
        self._http_task = asyncio.create_task(
            self.http.serve(sockets=[sock]), name="twinedge-host-control"
        )
        while not self.http.started:
            if self._http_task.done():
                self._http_task.result()
            await asyncio.sleep(0.01)
        self._replicator = asyncio.create_task(self._replicate(), name="twinedge-host-replicator")
        if self.tick_s > 0:
            self._ticker = asyncio.create_task(self._tick(), name="twinedge-host-ticker")

    async def stop(self) -> None:
        for task in (self._ticker, self._replicator):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.http is not None:
            self.http.should_exit = True
            if self._http_task:
                with contextlib.suppress(Exception):
                    await self._http_task
        if self.broker is not None:
            await self.broker.stop()
        if self.host is not None and not self.host.closed:
            await self.host.close()
        if self.client is not None:
            await self.client.aclose()
        for remote in self._peers_control.values():
            with contextlib.suppress(Exception):
                await remote.aclose()

    # --- the core ------------------------------------------------------------------------------
    async def set_core(self, url: str) -> None:
        """Replicate to (and authenticate devices with) the core at ``url`` from now on: a
        core that restarted elsewhere and took this running host over."""
        if not url.startswith(("http://", "https://")):
            raise EdgeError(f"core URL must be http(s)://host:port, got {url!r}")
        old = self.client
        self.core_url = url.rstrip("/")
        self.client = httpx.AsyncClient(
            base_url=self.core_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )
        if old is not None:
            await old.aclose()

    async def core_post(self, path: str, body: Any) -> Any:
        """POST ``body`` (a JSON value, or ``bytes`` already encoded as JSON) to the core;
        its JSON answer, or ``None`` (logged) when the core cannot be reached or refused."""
        status, answer = await self._core_call(path, body)
        return answer if status == 200 else None

    async def _core_call(self, path: str, body: Any) -> tuple[int | None, Any]:
        """``(status, JSON answer)`` of a POST to the core; ``(None, None)`` when it
        cannot be reached. Anything but 200 is logged (at most every 10 s)."""
        assert self.client is not None
        try:
            if isinstance(body, bytes):
                r = await self.client.post(
                    path, content=body, headers={"Content-Type": "application/json"}
                )
            else:
                r = await self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            self._warn(f"core {self.core_url} unreachable: {exc}")
            return None, None
        try:
            answer = r.json()
        except ValueError:
            answer = None
        if r.status_code != 200:
            gap = (
                r.status_code == 409 and isinstance(answer, dict) and "expected_revision" in answer
            )
            if not gap:  # a gap is the normal wait for another host's records
                self._warn(f"core answered {r.status_code} to {path}: {r.text[:300]}")
        return r.status_code, answer

    def _warn(self, message: str) -> None:
        """Log at most one warning every 10 s (a core that is down is retried often)."""
        now = time.monotonic()
        if now >= self._quiet_until:
            self._quiet_until = now + 10.0
            log.warning(message)

    def flush(self, seq: int | None = None) -> None:
        """Someone waits for the core to have every record up to ``seq`` (default: the
        last committed): the replicator sends them without lingering."""
        target = self.host.last_seq if seq is None else seq
        if target > self._flush_seq:
            self._flush_seq = target
            self.host.wake_replicator()

    async def _linger(self) -> None:
        """Wait up to ``replicate_linger_s`` for more records to send in one request: until
        ``replicate_batch`` are pending or a caller waits (:meth:`flush`)."""
        host = self.host
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.replicate_linger_s
        while (
            host.last_seq - host.replicated_seq < self.replicate_batch
            and self._flush_seq <= host.replicated_seq
        ):
            left = deadline - loop.time()
            if left <= 0:
                return
            await host.wait_commit(left)  # woken by the next commit or a flush

    async def _replicate(self) -> None:
        """Push committed records to the core in seq order; ack what it applied."""
        retry = False  # a request the core did not take is sent again without lingering
        while True:
            if not await self.host.wait_pending(1.0):  # woken by the next commit
                continue
            if self.replicate_linger_s > 0 and not retry:
                await self._linger()
            retry = True
            records = self.host.pending(limit=self.replicate_batch)
            if not records:  # not readable yet: look again shortly
                await asyncio.sleep(0.005)
                continue
            body = wire.replication_body(self.host_id, records)  # the stored JSON as it is
            self.replication_requests += 1
            status, answer = await self._core_call("/internal/replicate", body)
            acked_seq = answer.get("acked_seq") if isinstance(answer, dict) else None
            if isinstance(acked_seq, int) and not isinstance(acked_seq, bool):
                acked = min(acked_seq, records[-1].seq)  # a refusal says how far it got
                if acked >= records[0].seq:
                    self.replicated_records += self.host.ack_replicated(acked)
            if status == 200 and isinstance(acked_seq, int):
                self.replication_error = None
                retry = False
                continue
            if status == 409 and isinstance(answer, dict) and "expected_revision" in answer:
                # a gap: another host's records of the twin come first (a migration's old
                # host); they are on their way, so ask again soon
                self.replication_error = (
                    f"waiting for another host's records: {answer.get('detail')}"
                )
                await asyncio.sleep(0.02)
                continue
            self.replication_error = "the core did not take the last batch; retrying"
            await asyncio.sleep(0.2)

    async def _tick(self) -> None:
        """Every ``tick_s`` seconds, run the ``on_tick`` hook of every twin served here
        (one batch, committed and replicated like any change); a hook that fails leaves
        its twin unchanged and is logged (at most every 10 s)."""
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while True:
            next_t += self.tick_s
            await asyncio.sleep(max(0.0, next_t - loop.time()))
            try:
                result = await self.host.tick()
            except EdgeError as exc:  # the log refused the batch: the next tick tries again
                self._warn(f"tick failed: {exc}")
                continue
            if result.failed:
                twin, why = next(iter(result.failed.items()))
                self._warn(f"on_tick failed for {len(result.failed)} twins, e.g. {twin}: {why}")

    async def replicated(self, seq: int, timeout_s: float = 10.0) -> None:
        """Return once the core has acknowledged every record up to ``seq``.

        Raises:
            EdgeError: it has not within ``timeout_s`` (the records are kept; they go on).
        """
        self.flush(seq)  # no lingering while a caller waits
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.host.replicated_seq < seq:
            if loop.time() > deadline:
                raise EdgeError(
                    f"host {self.host_id}: the core has acknowledged records up to seq "
                    f"{self.host.replicated_seq}, not {seq}, within {timeout_s:g} s"
                    + (f" ({self.replication_error})" if self.replication_error else "")
                )
            await asyncio.sleep(0.005)

    # --- devices ---------------------------------------------------------------------------------
    def redirect(self, twin_id: str) -> bool:
        """Tell the twin's device where its twin went (after a migration): a message on
        ``twinedge/{id}/redirect``. Returns whether there was somewhere to send it."""
        own = self.host.status(twin_id)
        if own.status not in (TwinStatus.FENCED, TwinStatus.MOVED) or own.owner is None:
            return False
        url = self.peers.get(own.owner)
        if url is None:
            log.warning(
                "twin %s moved to %s, whose MQTT URL this host does not know", twin_id, own.owner
            )
            return False
        doc = {"host": own.owner, "url": url, "epoch": own.owner_epoch}
        self.broker.publish_redirect(twin_id, doc)
        return True

    async def send_command(
        self, twin_id: str, subject: str, payload: Any, *, timeout_s: float = 10.0
    ) -> Any:
        """Send a command to the device of a twin served here and return its answer.

        Parameters:
            twin_id: a twin this host owns.
            subject: the command's subject (the last segment of its topic).
            payload: any JSON value.
            timeout_s: how long to wait for the device, in (0, 300].

        Raises:
            UnknownTwinError: the host never had the twin.
            NotOwnerError: the twin moved away (the command was not sent).
            TwinNotReadyError: the twin is arriving here (the command was not sent).
            InvalidReportError: a subject or twin id that cannot be an MQTT topic, or a
                timeout outside (0, 300] s (the command was not sent).
            CommandTimeoutError: the device did not answer in time.
        """
        own = self.host.status(twin_id)
        if own.status is not TwinStatus.OWNED:
            if own.status is TwinStatus.STAGED:
                raise TwinNotReadyError(twin_id, self.host_id)
            if own.status is TwinStatus.ABSENT:
                raise UnknownTwinError(twin_id, self.host_id)
            raise NotOwnerError(twin_id, self.host_id, own.owner, own.owner_epoch)
        if not 0 < timeout_s <= 300:
            raise InvalidReportError(f"timeout must lie in (0, 300] s, got {timeout_s}", "/timeout")
        broker = self.broker

        async def publish(cid: str) -> None:
            try:
                await broker.publish_command(twin_id, subject, cid, payload)
            except InvalidInput as exc:
                raise InvalidReportError(exc.detail, exc.pointer or "") from None

        try:
            return await self.devices.pending.send(twin_id, publish, timeout_s=timeout_s)
        except TimeoutError:
            raise CommandTimeoutError(twin_id, self.host_id, subject, timeout_s) from None

    # --- migrations ------------------------------------------------------------------------------
    def peer(self, host_id: str, control_url: str) -> Any:
        """The control API of another host process (a client kept per host and URL)."""
        from twinedge.edge.remote import RemoteHost  # it reads this module's errors

        key = (host_id, control_url)
        remote = self._peers_control.get(key)
        if remote is None:
            if not control_url.startswith(("http://", "https://")):
                raise EdgeError(f"control URL must be http(s)://host:port, got {control_url!r}")
            lean = control_url.startswith("http://")  # (TLS goes through httpx)
            remote = RemoteHost(host_id, control_url, "", self.token, PEER_TIMEOUT_S, lean=lean)
            self._peers_control[key] = remote
        return remote

    async def cut_over(
        self, twin_id: str, source: str, source_url: str, epoch: int, after_revision: int
    ) -> dict[str, Any]:
        """The end of a pre-copy, run by its target: fence the twin on ``source`` (its
        control API at ``source_url``) with ``epoch``, which answers with the changes after
        ``after_revision``, and adopt the staged copy with them. The caller (the core) is
        not on this path; the downtime is measured here, from the fence call sent to the
        adoption durable. Answers ``{revision, changes, bytes, fence_s, adopt_s}``.

        Raises:
            EdgeError: what the source or this host raised (:class:`HostClosedError`: the
                source did not answer; from the fence on, the migration is finished with
                :func:`~twinedge.edge.migrate.resume`, as for any migration).
        """
        if source == self.host_id:
            raise EdgeError(f"twin {twin_id!r}: host {source!r} cannot cut over to itself")
        # a staged copy to adopt, checked before the fence (MigrationError without one:
        # fencing would leave the twin served nowhere until resumed)
        await self.host.stage_changes(ChangeSet(twin_id, after_revision))
        remote = self.peer(source, source_url)
        phases.mark("target.fence-call", twin_id)
        t0 = time.perf_counter()
        fence, changes = await remote.fence_and_export(twin_id, epoch, self.host_id, after_revision)
        t_fenced = time.perf_counter()
        phases.mark("target.fence-answer", twin_id)
        failpoints.hit("target.after-fence", self.host_id)
        rev = await self.host.adopt_changes(changes, epoch, fence.revision)
        t1 = time.perf_counter()
        phases.mark("target.adopt-durable", twin_id)
        failpoints.hit("target.after-adopt", self.host_id)
        return {
            "revision": rev,
            "changes": len(changes),
            "bytes": changes.nbytes,
            "fence_s": t_fenced - t0,
            "adopt_s": t1 - t_fenced,
        }

    def status(self) -> dict[str, Any]:
        lag = self.host.replication_lag()
        return {
            "host": self.host_id,
            "mqtt": self.mqtt_url,
            "twins": len(self.host.twin_ids()),
            "pid": os.getpid(),
            "core": self.core_url,
            "gc": gcpauses.status(),
            "replicated_records": self.replicated_records,
            "replication_requests": self.replication_requests,
            "replication": {
                "acked": lag.acked,
                "pending": lag.pending,
                "mean_s": lag.mean_s,
                "max_s": lag.max_s,
                "last_s": lag.last_s,
                "oldest_pending_s": lag.oldest_pending_s,
                "error": self.replication_error,
                "linger_s": self.replicate_linger_s,
            },
        }


class _HostsTokenGuard:
    """ASGI wrapper: HTTP requests without ``Authorization: Bearer <hosts token>`` are
    answered 401 before they reach a route."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not hmac.compare_digest(given, self._expected):
                refused = JSONResponse(
                    {"error": "Unauthenticated", "message": "hosts token required"}, 401
                )
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


# the control calls that commit (``POST /twins/{id}`` places; ``POST /twins/{id}/ACTION``
# for these actions); retire waits for the core itself
COMMITTING = frozenset(
    {"fence", "fence-export", "adopt-changes", "cut-over", "release", "adopt", "write"}
    | {"reclaim", "desired"}
)


class _FlushOnAnswer:
    """ASGI wrapper: once a control call that commits answers (a placement, a migration
    step, an application's write; :data:`COMMITTING`), the replicator sends the committed
    records without lingering. Whoever made the call (the core placing or moving a twin,
    an application's write with ``ack=core``, the new owner of a twin, whose records wait
    at the core for the old owner's) may wait for the core to have them next. Other calls
    (reads, staging a copy, a redirect, a command) leave the linger alone."""

    def __init__(self, app: Any, server: HostServer):
        self.app, self.server = app, server

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        parts = scope["path"].strip("/").split("/") if scope["type"] == "http" else []
        if not (
            scope.get("method") == "POST"
            and parts[0] == "twins"
            and (len(parts) == 2 or (len(parts) == 3 and parts[2] in COMMITTING))
        ):
            await self.app(scope, receive, send)
            return

        async def answer(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.server.flush()
            await send(message)

        await self.app(scope, receive, answer)


def control_app(server: HostServer) -> Any:
    """The host's control API (see the module docstring)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    # errors as the wire's documents (exception handlers, and the token checked by a plain
    # ASGI wrapper: no middleware task per request on this path, which migrations wait on)
    async def edge_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, EdgeError)
        status, doc = error_doc(exc)
        return JSONResponse(doc, status)

    async def bad_request(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "EdgeError", "message": f"bad request: {exc}"}, 400)

    app.add_exception_handler(EdgeError, edge_error)
    for kind in (TwinedgeError, ValueError, KeyError, TypeError):
        app.add_exception_handler(kind, bad_request)
    app.add_middleware(_FlushOnAnswer, server=server)
    app.add_middleware(_HostsTokenGuard, token=server.token)

    async def body(request: Request) -> Any:
        try:
            return json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise EdgeError(f"the body is not JSON: {exc}") from None

    h = lambda: server.host  # noqa: E731

    @app.get("/status")
    async def status() -> Any:
        return server.status()

    @app.put("/core")
    async def core(request: Request) -> Any:
        d = await body(request)
        await server.set_core(str(d.get("url", "")) if isinstance(d, dict) else "")
        return {"core": server.core_url}

    @app.put("/peers")
    async def peers(request: Request) -> Any:
        d = await body(request)
        if not isinstance(d, dict) or not all(isinstance(v, str) for v in d.values()):
            raise EdgeError("peers: expected {host id: mqtt URL}")
        server.peers.update(d)
        return {"peers": len(server.peers)}

    @app.post("/twins/{twin_id}")
    async def place(twin_id: str, request: Request) -> Any:
        d = await body(request)
        rev = await h().place(
            twin_id,
            d.get("document") or {},
            epoch=int(d.get("epoch", 1)),
            revision=int(d.get("revision", 0)),
            behaviour=str(d.get("behaviour", "default")),
        )
        return {"revision": rev}

    @app.get("/twins")
    async def twins(status: str = "owned") -> Any:
        return {"twins": h().twin_ids(TwinStatus(status))}

    @app.get("/twins/{twin_id}/ownership")
    async def ownership(twin_id: str) -> Any:
        return wire.ownership_to(await h().ownership(twin_id))

    @app.get("/twins/{twin_id}/snapshot")
    async def snapshot(twin_id: str) -> Any:
        snap = await h().export_snapshot(twin_id)
        failpoints.hit("source.after-snapshot", server.host_id)
        return wire.snapshot_to(snap)

    @app.get("/twins/{twin_id}/changes")
    async def changes(twin_id: str, after: int) -> Any:
        return wire.changes_to(await h().export_changes(twin_id, after))

    @app.post("/twins/{twin_id}/abort-export")
    async def abort_export(twin_id: str) -> Any:
        await h().abort_export(twin_id)
        return {}

    @app.post("/twins/{twin_id}/fence")
    async def fence(twin_id: str, request: Request) -> Any:
        d = await body(request)
        fenced = await h().fence(twin_id, int(d["epoch"]), str(d["owner"]))
        failpoints.hit("source.after-fence", server.host_id)
        return wire.fence_to(fenced)

    @app.post("/twins/{twin_id}/fence-export")
    async def fence_export(twin_id: str, request: Request) -> Any:
        phases.mark("source.fence-received", twin_id)
        d = await body(request)
        fence, changes = await h().fence_and_export(
            twin_id, int(d["epoch"]), str(d["owner"]), int(d["after"])
        )
        phases.mark("source.fence-durable", twin_id)
        failpoints.hit("source.after-fence", server.host_id)
        # a response as it is: FastAPI does not walk plain JSON values again (downtime)
        return JSONResponse({"fence": wire.fence_to(fence), "changes": wire.changes_to(changes)})

    @app.post("/twins/{twin_id}/adopt-changes")
    async def adopt_changes(twin_id: str, request: Request) -> Any:
        phases.mark("target.adopt-received", twin_id)
        d = await body(request)
        changes = wire.changes_from(d["changes"])
        if changes.twin_id != twin_id:
            raise EdgeError(f"changes of twin {changes.twin_id!r} sent for {twin_id!r}")
        rev = await h().adopt_changes(changes, int(d["epoch"]), int(d["revision"]))
        phases.mark("target.adopt-durable", twin_id)
        failpoints.hit("target.after-adopt", server.host_id)
        return {"revision": rev}

    @app.post("/twins/{twin_id}/cut-over")
    async def cut_over(twin_id: str, request: Request) -> Any:
        phases.mark("target.cutover-received", twin_id)
        d = await body(request)
        out = await server.cut_over(
            twin_id, str(d["source"]), str(d["source_url"]), int(d["epoch"]), int(d["after"])
        )
        return out

    @app.post("/twins/{twin_id}/release")
    async def release(twin_id: str) -> Any:
        await h().release(twin_id)
        return {}

    @app.post("/twins/{twin_id}/expect")
    async def expect(twin_id: str, request: Request) -> Any:
        await h().expect(twin_id, str((await body(request))["source"]))
        return {}

    @app.post("/twins/{twin_id}/stage")
    async def stage(twin_id: str, request: Request) -> Any:
        await h().stage(wire.snapshot_from(await body(request)))
        failpoints.hit("target.after-stage", server.host_id)
        return {}

    @app.post("/twins/{twin_id}/stage-changes")
    async def stage_changes(twin_id: str, request: Request) -> Any:
        return {"revision": await h().stage_changes(wire.changes_from(await body(request)))}

    @app.post("/twins/{twin_id}/discard-staged")
    async def discard_staged(twin_id: str) -> Any:
        await h().discard_staged(twin_id)
        return {}

    @app.post("/twins/{twin_id}/adopt")
    async def adopt(twin_id: str, request: Request) -> Any:
        d = await body(request)
        rev = await h().adopt(twin_id, int(d["epoch"]), int(d["revision"]))
        failpoints.hit("target.after-adopt", server.host_id)
        return {"revision": rev}

    @app.post("/twins/{twin_id}/redirect")
    async def redirect(twin_id: str) -> Any:
        return {"sent": server.redirect(twin_id)}

    @app.post("/twins/{twin_id}/write")
    async def write(twin_id: str, request: Request) -> Any:
        d = await body(request)
        given = d.get("if_revision")
        if_revision = None if given is None else int(given)
        patch = d.get("patch")
        revision = await h().write(twin_id, patch, if_revision=if_revision)
        features = patch.get("features") if isinstance(patch, dict) else None
        if server.broker is not None and isinstance(features, dict):  # desired state changed
            doc = h().twin(twin_id).document
            for fid, f in features.items():
                if f is None or (isinstance(f, dict) and "desiredProperties" in f):
                    props = ((doc.get("features") or {}).get(fid) or {}).get("desiredProperties")
                    await server.broker.publish_desired(twin_id, fid, props or {})
        return {"revision": revision}

    @app.post("/twins/{twin_id}/reclaim")
    async def reclaim(twin_id: str, request: Request) -> Any:
        revision = await h().reclaim(twin_id, int((await body(request))["epoch"]))
        return {"revision": revision}

    @app.post("/twins/{twin_id}/retire")
    async def retire(twin_id: str) -> Any:
        known = await h().retire(twin_id)
        if known:  # the core has every record of it before it goes
            await server.replicated(h().last_seq)
        return {"known": known}

    @app.post("/twins/{twin_id}/command")
    async def command(twin_id: str, request: Request) -> Any:
        d = await body(request)
        if not isinstance(d, dict):
            raise InvalidReportError("a command is {subject, payload, timeout_s}")
        answer = await server.send_command(
            twin_id,
            d.get("subject"),  # type: ignore[arg-type]  # checked before it is sent
            d.get("payload"),
            timeout_s=float(d.get("timeout_s", 10.0)),
        )
        return {"payload": answer}

    @app.post("/twins/{twin_id}/desired")
    async def desired(twin_id: str, request: Request) -> Any:
        d = await body(request)
        revision = await h().set_desired(twin_id, d)
        if server.broker is not None and isinstance(d, dict) and d:  # the whole desired state
            fid, props = next(iter(d.items()))
            await server.broker.publish_desired(twin_id, fid, props)
        return {"revision": revision}

    return app


async def run_host(server: HostServer, ready_file: Path | None = None) -> None:
    """Run ``server`` until SIGINT/SIGTERM, then stop it.

    Parameters:
        server: the host to run.
        ready_file: once the host listens, its ``pid``, ``mqtt_port`` and
            ``control_port`` are written there as JSON, atomically (whoever started it
            with ports 0 learns them there, with no race for a port chosen beforehand);
            removed when the host stops.

    Raises:
        TwinedgeError: ``ready_file`` cannot be written (the host stops first).
        StartupError: a port is in use, or the address is not this machine's.
    """
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except BaseException:
        await server.stop()
        raise
    log.warning(
        "twinedge host %s: devices at %s, control at http://%s:%d",
        server.host_id, server.mqtt_url, server.control_host, server.control_port,
    )  # fmt: skip
    gcpauses.settle()  # its twins loaded: the collector never walks them or the libraries again
    try:
        if ready_file is not None:
            ports = {"mqtt_port": server.mqtt_port, "control_port": server.control_port}
            scratch = ready_file.with_name(ready_file.name + ".tmp")
            try:
                scratch.write_text(json.dumps({"pid": os.getpid(), **ports}))
                os.replace(scratch, ready_file)
            except OSError as exc:
                scratch.unlink(missing_ok=True)
                raise TwinedgeError(
                    f"--ready-file {ready_file}: cannot write it: {exc.strerror or exc}"
                ) from None
        await stop.wait()
    finally:
        await server.stop()
        if ready_file is not None:  # it names this process no more (unless another's)
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                if json.loads(ready_file.read_text())["pid"] == os.getpid():
                    ready_file.unlink()
