"""The threads that run store calls off the event loop.

A store is synchronous and keeps one connection per thread. One writer thread runs every
store write, in the order the writer issues them (batch commits, and the exclusive
steps' group, credential and namespace writes), so they never interleave; a few reader
threads run the reads (key lookups, search, history, as-of reads).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class StorePools:
    """One writer thread and ``readers`` reader threads for store calls.

    Parameters:
        readers: how many reads may run at once.
    """

    def __init__(self, readers: int = 4):
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="twinedge-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="twinedge-reader")

    async def read(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """``fn(*args, **kw)`` on a reader thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._readers, lambda: fn(*args, **kw)
        )

    async def on_writer(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the writer thread (store writes, in order with the commits)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, lambda: fn(*args))

    def shutdown(self) -> None:
        """Wait for the writer thread's last call; let the readers finish on their own."""
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=False)
