"""Run a coroutine against a started :class:`TwinService` on a store, then stop it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from twinedge.runtime.service import TwinService
from twinedge.runtime.store import open_store


def run(store_url: str, body: Callable[[TwinService], Awaitable[Any]], **kw: Any) -> Any:
    """Start a service on ``store_url`` (``kw`` go to :class:`TwinService`), await
    ``body(service)``, stop the service (also on failure) and return the result."""

    async def main() -> Any:
        svc = TwinService(open_store(store_url), **kw)
        await svc.start()
        try:
            return await body(svc)
        finally:
            await svc.stop()

    return asyncio.run(main())
