"""The service's own condition: the health report, and history retention.

Healthy means the writer task runs and the store answers a read in time; the report
also gives the numbers an operator looks at first (twins, subscribers, queued writes).
With a retention period, a background task drops history older than that once a minute
(keeping what as-of reads of current revisions need; see the stores' ``prune_history``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

from twinedge.runtime.core.events import Events
from twinedge.runtime.core.pools import StorePools
from twinedge.runtime.core.writer import Writer
from twinedge.runtime.store.base import Store

PRUNE_EVERY_S = 60.0


class Health:
    """Health checks and history retention.

    Parameters:
        store: the store to check and prune.
        pools: the store threads.
        writer: the writer task to check.
        events: the open subscriptions (counted).
        clock: unix time source.
        metrics: the service's counters.
        retention_s: keep history for this long (``None``: forever).
        replication: the edge hosts' replication, per host (reported when not empty).
    """

    def __init__(
        self,
        store: Store,
        pools: StorePools,
        writer: Writer,
        events: Events,
        *,
        clock: Callable[[], float],
        metrics: Counter[str],
        retention_s: float | None = None,
        replication: Callable[[], dict[str, Any]] | None = None,
    ):
        self.store = store
        self.pools = pools
        self.writer = writer
        self.events = events
        self.clock = clock
        self.metrics = metrics
        self.retention_s = retention_s
        self.replication = replication
        self._prune_task: asyncio.Task | None = None

    def start(self) -> None:
        """Start pruning history, if there is a retention period."""
        if self.retention_s:
            self._prune_task = asyncio.create_task(
                self._prune_loop(self.retention_s), name="twinedge-prune"
            )

    def stop(self) -> None:
        """Stop pruning."""
        if self._prune_task:
            self._prune_task.cancel()

    async def _prune_loop(self, retention_s: float) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY_S)
            with contextlib.suppress(Exception):
                n = await self.pools.read(self.store.prune_history, self.clock() - retention_s)
                self.metrics["history_pruned_total"] += n

    def commits(self) -> dict[str, Any]:
        """The last good commit and the last commit error (RFC 3339 times)."""
        from twinedge.runtime.core.writer import rfc3339

        w = self.writer
        err = w.last_commit_error
        return {
            "lastOkAt": None if w.last_commit_ok_s is None else rfc3339(w.last_commit_ok_s),
            "lastError": None if err is None else {"at": rfc3339(err[0]), "message": err[1]},
        }

    async def report(self, timeout_s: float = 2.0) -> dict[str, Any]:
        """``{"status": "ok"|"unavailable", "writer", "store", ...}``: the writer task runs
        and the store answers a read within ``timeout_s`` (``detail`` says what is down);
        ``replication`` per edge host once one has replicated; ``commits``: when the last
        batch was committed and the last commit error (time and message, or null; a
        failed commit alone does not make the service unavailable: the next one may
        succeed, and the store check says whether it answers)."""
        writer = self.writer.running
        store, detail = False, None
        try:
            await asyncio.wait_for(self.pools.read(self.store.get_api_key, "admin"), timeout_s)
            store = True
        except TimeoutError:
            detail = f"the store did not answer within {timeout_s:g} s"
        except Exception as e:
            detail = f"the store failed: {type(e).__name__}: {e}"
        if not writer and detail is None:
            detail = "the writer task is not running (service not started, stopped or crashed)"
        doc: dict[str, Any] = {
            "status": "ok" if writer and store else "unavailable",
            "writer": writer,
            "store": store,
            "things": len(self.writer.things),
            "subscribers": len(self.events.subscriptions),
            "queueDepth": self.writer.queue.depth,
            "commits": self.commits(),
        }
        if self.replication is not None and (rep := self.replication()):
            doc["replication"] = rep
        if detail:
            doc["detail"] = detail
        return doc
