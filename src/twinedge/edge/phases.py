"""Phase marks of live migrations, for measuring where a migration's downtime goes.

A diagnostic aid like :mod:`twinedge.edge.failpoints`: the migration code calls
:func:`mark` at the steps of a cut-over (the core calling fence, the source receiving
it, the fence entering the source's writer batch, the fence durable, the same for the
adoption at the target); nothing happens unless the environment variable :data:`ENV`
names a directory when the process starts. Then every process (the core and the host
processes it starts, which inherit the variable) appends one JSON line per mark to
``DIR/phases-<pid>.jsonl``: ``{"t": seconds, "pid", "event", "twin", ...}``. The time is
``time.monotonic()``, one clock for every process of a machine, so the marks of one
migration taken in three processes can be subtracted (``benchmarks/bench_edge.py
--phases`` does).

Unset (the normal case), :func:`mark` costs one test of ``None``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO, Any

__all__ = ["ENV", "mark"]

ENV = "TWINEDGE_MIGRATION_TRACE"


def _open() -> IO[str] | None:
    where = os.environ.get(ENV, "")
    if not where:
        return None
    d = Path(where)
    d.mkdir(parents=True, exist_ok=True)
    return open(d / f"phases-{os.getpid()}.jsonl", "a", buffering=1)


_OUT: IO[str] | None = _open()


def mark(event: str, twin: str, **fields: Any) -> None:
    """Note that the migration of ``twin`` reached ``event`` now (when :data:`ENV` is set)."""
    if _OUT is None:
        return
    line = {"t": time.monotonic(), "pid": os.getpid(), "event": event, "twin": twin, **fields}
    _OUT.write(json.dumps(line) + "\n")
