"""An edge host seen from the core: its control API as a
:class:`~twinedge.edge.migrate.MigrationPeer`, so the migration protocol runs between
host processes exactly as between in-process hosts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from twinedge.edge import wire
from twinedge.edge.errors import HostClosedError, MigrationError
from twinedge.edge.host import ChangeSet, FenceResult, TwinSnapshot
from twinedge.edge.log import Ownership, TwinStatus
from twinedge.edge.migrate import CutOver
from twinedge.edge.server import error_from


class LeanHTTP:
    """JSON requests over kept-alive HTTP/1.1 connections written and read with asyncio
    streams: the client of the calls on a migration's critical path between two host
    processes (a cut-over's fence). On an event loop busy with devices, each pass of the
    loop takes a while; httpx passes through the loop about ten times more per request
    than this (which writes the request and reads the answer with two waits), so each of
    its requests costs that many passes more.

    Parameters:
        base_url: ``http://host:port``.
        headers: sent with every request.
        timeout_s: per request (connecting, writing, reading the whole answer).

    Raises (``request``):
        OSError, TimeoutError, ValueError: the connection failed or closed, the host did
            not answer in time, or the answer is not HTTP/1.1 with a ``content-length``.
    """

    def __init__(self, base_url: str, headers: dict[str, str], timeout_s: float):
        url = urlsplit(base_url)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"expected http://host:port, got {base_url!r}")
        self.host, self.port = url.hostname, url.port or 80
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {"host": url.netloc, **headers}.items())
        self.timeout_s = timeout_s
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """Send one request; return the status and the decoded JSON answer (``{}`` when
        empty). A connection is reused only after a complete answer."""
        data = b"" if body is None else json.dumps(body).encode()
        target = quote(path) + (f"?{urlencode(params)}" if params else "")
        msg = (
            f"{method} {target} HTTP/1.1\r\n{self.head}content-type: application/json\r\n"
            f"content-length: {len(data)}\r\n\r\n"
        ).encode() + data
        async with asyncio.timeout(self.timeout_s):
            while self._idle:
                reader, writer = conn = self._idle.pop()
                if reader.at_eof() or writer.is_closing():  # the server closed it (idle)
                    writer.close()
                    continue
                try:
                    return await self._exchange(conn, msg)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    if getattr(exc, "partial", b""):
                        raise  # an answer had begun: the request was handled
                    # closed by the server while idle, before it read the request (one it
                    # handled would have been answered; a fence sent twice is refused
                    # the second time, its epoch no longer new): again on a new one
            return await self._exchange(await asyncio.open_connection(self.host, self.port), msg)

    async def _exchange(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], msg: bytes
    ) -> tuple[int, Any]:
        reader, writer = conn
        try:
            writer.write(msg)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            fields = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            if "content-length" not in fields:
                raise ValueError(f"an answer without content-length: {lines[0]!r}")
            content = await reader.readexactly(int(fields["content-length"]))
        except BaseException:
            writer.close()
            raise
        if fields.get("connection", "").lower() == "close":
            writer.close()
        else:
            self._idle.append(conn)
        return status, (json.loads(content) if content else {})

    async def aclose(self) -> None:
        while self._idle:
            writer = self._idle.pop()[1]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class RemoteHost:
    """The control API of the host process ``host_id`` at ``control_url``.

    Parameters:
        host_id: the host's id.
        control_url: ``http://host:port`` of its control API.
        mqtt_url: where its devices connect (sent with redirects).
        token: the hosts token.
        timeout_s: per request.
        lean: send the requests with :class:`LeanHTTP` instead of httpx (fewer passes
            through a busy event loop; what a host uses to call another host).

    Raises (every method):
        EdgeError: what the host raised (the same class, rebuilt from its answer);
            :class:`HostClosedError` when the host does not answer.
    """

    def __init__(
        self,
        host_id: str,
        control_url: str,
        mqtt_url: str,
        token: str,
        timeout_s: float = 10.0,
        *,
        lean: bool = False,
    ):
        self._host_id, self.control_url, self.mqtt_url = host_id, control_url.rstrip("/"), mqtt_url
        self.client = httpx.AsyncClient(
            base_url=self.control_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
        )
        self.lean = (
            LeanHTTP(self.control_url, {"authorization": f"Bearer {token}"}, timeout_s)
            if lean
            else None
        )

    @property
    def host_id(self) -> str:
        return self._host_id

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.lean is not None:
            await self.lean.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        request_timeout_s: float | None = None,
        **params: Any,
    ) -> Any:
        if self.lean is not None and request_timeout_s is None:
            try:
                status, doc = await self.lean.request(method, path, body, params or None)
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                raise HostClosedError(
                    f"host {self._host_id} at {self.control_url} does not answer: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            if status != 200:
                raise error_from(doc)
            return doc
        try:
            r = await self.client.request(
                method,
                path,
                json=body,
                params=params or None,
                timeout=httpx.USE_CLIENT_DEFAULT
                if request_timeout_s is None
                else request_timeout_s,
            )
        except httpx.HTTPError as exc:
            raise HostClosedError(
                f"host {self._host_id} at {self.control_url} does not answer: {exc}"
            ) from None
        doc = r.json() if r.content else {}
        if r.status_code != 200:
            raise error_from(doc)
        return doc

    # --- the core's calls ----------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        return await self._call("GET", "/status")

    async def set_core(self, url: str) -> None:
        await self._call("PUT", "/core", {"url": url})

    async def set_peers(self, peers: dict[str, str]) -> None:
        await self._call("PUT", "/peers", peers)

    async def place(
        self,
        twin_id: str,
        document: dict[str, Any],
        *,
        epoch: int,
        revision: int,
        behaviour: str = "default",
    ) -> int:
        doc = await self._call(
            "POST",
            f"/twins/{twin_id}",
            {"document": document, "epoch": epoch, "revision": revision, "behaviour": behaviour},
        )
        return int(doc["revision"])

    async def twin_ids(self, status: TwinStatus = TwinStatus.OWNED) -> list[str]:
        """The twins in ``status`` on the host (default: the ones it serves), sorted."""
        return [str(t) for t in (await self._call("GET", "/twins", status=str(status)))["twins"]]

    async def redirect(self, twin_id: str) -> bool:
        return bool((await self._call("POST", f"/twins/{twin_id}/redirect"))["sent"])

    async def set_desired(self, twin_id: str, desired: Any) -> int:
        return int((await self._call("POST", f"/twins/{twin_id}/desired", desired))["revision"])

    async def write(self, twin_id: str, patch: Any, *, if_revision: int | None = None) -> int:
        doc = await self._call(
            "POST", f"/twins/{twin_id}/write", {"patch": patch, "if_revision": if_revision}
        )
        return int(doc["revision"])

    async def send_command(
        self, twin_id: str, subject: str, payload: Any, *, timeout_s: float = 10.0
    ) -> Any:
        """The device's answer to a command the host sends it (see
        :meth:`.HostServer.send_command`; the request waits ``timeout_s`` plus the
        client's own timeout)."""
        doc = await self._call(
            "POST",
            f"/twins/{twin_id}/command",
            {"subject": subject, "payload": payload, "timeout_s": timeout_s},
            request_timeout_s=timeout_s + float(self.client.timeout.read or 10.0),
        )
        return doc["payload"]

    async def reclaim(self, twin_id: str, epoch: int) -> int:
        doc = await self._call("POST", f"/twins/{twin_id}/reclaim", {"epoch": epoch})
        return int(doc["revision"])

    async def retire(self, twin_id: str) -> bool:
        return bool((await self._call("POST", f"/twins/{twin_id}/retire"))["known"])

    # --- MigrationPeer ---------------------------------------------------------------------------
    async def ownership(self, twin_id: str) -> Ownership:
        return wire.ownership_from(await self._call("GET", f"/twins/{twin_id}/ownership"))

    async def export_snapshot(self, twin_id: str) -> TwinSnapshot:
        return wire.snapshot_from(await self._call("GET", f"/twins/{twin_id}/snapshot"))

    async def export_changes(self, twin_id: str, after_revision: int) -> ChangeSet:
        return wire.changes_from(
            await self._call("GET", f"/twins/{twin_id}/changes", after=after_revision)
        )

    async def abort_export(self, twin_id: str) -> None:
        await self._call("POST", f"/twins/{twin_id}/abort-export")

    async def fence(self, twin_id: str, epoch: int, owner: str) -> FenceResult:
        return wire.fence_from(
            await self._call("POST", f"/twins/{twin_id}/fence", {"epoch": epoch, "owner": owner})
        )

    async def fence_and_export(
        self, twin_id: str, epoch: int, owner: str, after_revision: int
    ) -> tuple[FenceResult, ChangeSet]:
        doc = await self._call(
            "POST",
            f"/twins/{twin_id}/fence-export",
            {"epoch": epoch, "owner": owner, "after": after_revision},
        )
        return wire.fence_from(doc["fence"]), wire.changes_from(doc["changes"])

    async def adopt_changes(self, changes: ChangeSet, epoch: int, revision: int) -> int:
        doc = await self._call(
            "POST",
            f"/twins/{changes.twin_id}/adopt-changes",
            {"changes": wire.changes_to(changes), "epoch": epoch, "revision": revision},
        )
        return int(doc["revision"])

    async def cut_over(self, source: Any, twin_id: str, epoch: int, after_revision: int) -> CutOver:
        """This host (the target) fences ``twin_id`` on ``source`` (another
        :class:`RemoteHost`: the target calls its control API itself) and adopts it with
        the changes after ``after_revision`` (see :class:`~twinedge.edge.migrate.CutOverPeer`).

        Raises:
            MigrationError: ``source`` has no control URL.
            EdgeError: as the fence and the adoption.
        """
        url = getattr(source, "control_url", None)
        if not url:
            raise MigrationError(f"host {source.host_id!r} has no control URL to cut over from")
        doc = await self._call(
            "POST",
            f"/twins/{twin_id}/cut-over",
            {"source": source.host_id, "source_url": url, "epoch": epoch, "after": after_revision},
        )
        return CutOver(
            revision=int(doc["revision"]),
            changes_copied=int(doc["changes"]),
            bytes_copied=int(doc["bytes"]),
            fence_s=float(doc["fence_s"]),
            adopt_s=float(doc["adopt_s"]),
        )

    async def release(self, twin_id: str) -> None:
        await self._call("POST", f"/twins/{twin_id}/release")

    async def expect(self, twin_id: str, source: str) -> None:
        await self._call("POST", f"/twins/{twin_id}/expect", {"source": source})

    async def stage(self, snapshot: TwinSnapshot) -> None:
        await self._call("POST", f"/twins/{snapshot.twin_id}/stage", wire.snapshot_to(snapshot))

    async def stage_changes(self, changes: ChangeSet) -> int:
        doc = await self._call(
            "POST", f"/twins/{changes.twin_id}/stage-changes", wire.changes_to(changes)
        )
        return int(doc["revision"])

    async def discard_staged(self, twin_id: str) -> None:
        await self._call("POST", f"/twins/{twin_id}/discard-staged")

    async def adopt(self, twin_id: str, epoch: int, revision: int) -> int:
        doc = await self._call(
            "POST", f"/twins/{twin_id}/adopt", {"epoch": epoch, "revision": revision}
        )
        return int(doc["revision"])
