"""The table of commands waiting for their device's answer."""

from __future__ import annotations

import asyncio

import pytest

from twinedge.errors import Unavailable
from twinedge.runtime.commands import PendingCommands


def test_only_the_addressed_device_answers_and_only_while_the_sender_waits():
    async def scenario():
        pending = PendingCommands()
        sent: list[str] = []

        async def publish(cid: str) -> None:
            sent.append(cid)
            # another thing's device claims the id first: refused, the command still waits
            assert not pending.answer("ns:other", cid, "forged")
            asyncio.get_running_loop().call_soon(pending.answer, "ns:car", cid, {"ok": 1})

        assert await pending.send("ns:car", publish, timeout_s=5.0) == {"ok": 1}
        # answered and gone: a late or repeated answer resolves nothing
        assert not pending.answer("ns:car", sent[0], "again") and len(pending) == 0
        assert not pending.answer("ns:car", "no-such-id", "x")

    asyncio.run(scenario())


def test_a_timeout_and_a_failed_publish_leave_nothing_waiting():
    async def scenario():
        pending = PendingCommands()
        seen: list[str] = []

        async def silent(cid: str) -> None:
            seen.append(cid)

        with pytest.raises(TimeoutError):
            await pending.send("ns:car", silent, timeout_s=0.001)
        assert len(pending) == 0 and not pending.answer("ns:car", seen[0], "late")

        async def broken(cid: str) -> None:
            raise ValueError("bad subject")

        with pytest.raises(ValueError, match="bad subject"):
            await pending.send("ns:car", broken, timeout_s=5.0)
        assert len(pending) == 0

    asyncio.run(scenario())


def test_failing_all_answers_every_waiting_command_with_the_error():
    async def scenario():
        pending = PendingCommands()
        published = asyncio.Event()

        async def publish(cid: str) -> None:
            published.set()

        waiting = [
            asyncio.create_task(pending.send(f"ns:t{i}", publish, timeout_s=30.0)) for i in range(3)
        ]
        while len(pending) < 3:
            await asyncio.sleep(0)
        pending.fail_all(Unavailable("shutting down"))
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, Unavailable) for r in results) and len(pending) == 0

    asyncio.run(scenario())
