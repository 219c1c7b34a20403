"""Fixtures of the store tests: every test that takes ``store`` runs against SQLite and
against PostgreSQL (skipped with the reason when no PostgreSQL server can be started).

``Twins`` plays the service's part: it keeps the current documents and turns edits into
:class:`Change` objects the way the service does (RFC 6902 ops of the content from the
previous revision, service fields set on every change).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from twinedge.runtime.store import Change, Store, open_store
from twinedge.runtime.things import json_patch


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'twins.db'}")
    else:
        s = open_store(request.getfixturevalue("postgres_schema_url"))
    try:
        yield s
    finally:
        s.close()


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def content(doc: dict[str, Any] | None) -> dict[str, Any]:
    if doc is None:
        return {}
    return {k: v for k, v in doc.items() if k not in ("_revision", "_modified", "_created")}


class Twins:
    """The documents a test has written, and the Changes that wrote them."""

    def __init__(self, domain: str = "d"):
        self.domain = domain
        self.docs: dict[str, dict[str, Any]] = {}
        self.time = 1_000.0

    def _change(
        self, tid: str, new_content: dict[str, Any] | None, domain: str | None, **kw: Any
    ) -> Change:
        self.time += 1.0
        cur = self.docs.get(tid)
        revision = (cur["_revision"] if cur else 0) + 1
        dom = domain or (cur or {}).get("_domain") or self.domain
        new = None
        if new_content is not None:
            new = {"thingId": tid, **copy.deepcopy(new_content)}
            new["_revision"] = revision
            new["_modified"] = rfc3339(self.time)
            new["_created"] = cur["_created"] if cur else rfc3339(self.time)
            new["_domain"] = dom
            new.setdefault("_host", cur.get("_host") if cur else None)
            self.docs[tid] = new
        else:
            self.docs.pop(tid, None)
        ops = json_patch(content(cur), content(new)) if cur is not None and new is not None else []
        return Change(
            tid,
            dom,
            revision,
            self.time,
            new,
            ops,
            kw.get("source", "http"),
            kw.get("actor", "k"),
            tuple(kw.get("joins", ())),
            tuple(kw.get("leaves", ())),
        )

    def put(
        self, tid: str, body: dict[str, Any], *, domain: str | None = None, **kw: Any
    ) -> Change:
        return self._change(tid, {"attributes": {}, "features": {}, **body}, domain, **kw)

    def edit(self, tid: str, fn: Callable[[dict[str, Any]], None], **kw: Any) -> Change:
        new = content(self.docs[tid])
        new.pop("thingId", None)
        new = copy.deepcopy(new)
        fn(new)
        return self._change(tid, new, None, **kw)

    def delete(self, tid: str, **kw: Any) -> Change:
        return self._change(tid, None, None, **kw)


@pytest.fixture
def twins() -> Twins:
    return Twins()
