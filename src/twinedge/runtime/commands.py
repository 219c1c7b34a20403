"""Commands sent to devices, waiting for their answers: one table of correlation ids,
shared by the core (commands to twins it holds) and by edge hosts (commands to the
twins they own).

A command is published with a fresh correlation id; the device's answer on
``responses/{cid}`` resolves it, but only the answer of the thing the command went to,
and only while the sender still waits (an answer after the timeout, or from another
device, is refused, so it cannot resolve a later command).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any


class PendingCommands:
    """Commands waiting for their device's answer, by correlation id.

    Examples:
        >>> async def demo():
        ...     pending = PendingCommands()
        ...     async def send(cid):  # a device that answers at once
        ...         asyncio.get_running_loop().call_soon(pending.answer, "ns:car", cid, "ok")
        ...     return await pending.send("ns:car", send, timeout_s=1.0)
        >>> asyncio.run(demo())
        'ok'
    """

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[str, asyncio.Future[Any]]] = {}

    async def send(
        self, thing_id: str, publish: Callable[[str], Awaitable[None]], *, timeout_s: float
    ) -> Any:
        """Publish a command to the device of ``thing_id`` with ``publish(cid)`` and wait
        for its answer.

        Raises:
            TimeoutError: no answer within ``timeout_s`` (the caller says it its way).
            Exception: whatever ``publish`` raises (nothing is left waiting).
        """
        cid = uuid.uuid4().hex
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[cid] = (thing_id, fut)
        try:
            await publish(cid)
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._waiting.pop(cid, None)

    def answer(self, thing_id: str, correlation_id: str, payload: Any) -> bool:
        """The device of ``thing_id`` answered; False for an unknown or expired
        correlation id, or one that was sent to another thing."""
        waiting = self._waiting.get(correlation_id)
        if waiting is None:
            return False
        sent_to, fut = waiting
        if fut.done() or sent_to != thing_id:
            return False
        fut.set_result(payload)
        return True

    def fail_all(self, error: Exception) -> None:
        """Answer every command still waiting with ``error``."""
        for _, fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(error)

    def __len__(self) -> int:
        return len(self._waiting)
