"""TwinService is a facade over :mod:`twinedge.runtime.core`: the methods its callers
(the HTTP API, the MQTT gateway, the orchestrator, tests) use keep their signatures, and
the orchestrator's host changes go through the writer like every other write."""

from __future__ import annotations

import asyncio
import inspect
import re

import pytest

from twinedge.errors import NotFound
from twinedge.runtime.auth import Principal
from twinedge.runtime.service import TwinService

from .service_run import run

A = Principal("key-a", "dom-a", "write")

# the public methods of TwinService before it became a facade: (kind, parameters)
PUBLIC = {
    "aggregate": ("async", "(self, p, *, filter, group_by, fn, field)"),
    "assign_namespace": ("async", "(self, p, ns, domain)"),
    "authenticate": ("async", "(self, token)"),
    "authenticate_device": ("async", "(self, thing_id, password)"),
    "command_response": ("sync", "(self, thing_id, correlation_id, payload)"),
    "count": ("async", "(self, p, filter=None)"),
    "create_api_key": ("async", "(self, principal, domain, role, key_id=None)"),
    "delete": ("async", "(self, p, thing_id, path='', *, if_match=None)"),
    "delete_group": ("async", "(self, p, name)"),
    "delta": ("async", "(self, p, thing_id)"),
    "device_report": ("async", "(self, thing_id, payload, *, device=None)"),
    "ensure_admin_key": ("async", "(self)"),
    "get_group": ("async", "(self, p, name, *, limit=1000, cursor=None)"),
    "get_path": ("async", "(self, p, thing_id, path)"),
    "get_thing": ("async", "(self, p, thing_id, *, revision=None, at=None)"),
    "grant": ("async", "(self, principal, grantee, filter, role)"),
    "health": ("async", "(self, timeout_s=2.0)"),
    "history": ("async", "(self, p, thing_id, *, since=None, until=None, limit=1000, cursor=None)"),
    "list_groups": ("async", "(self, p)"),
    "list_namespaces": ("async", "(self, p)"),
    "patch": ("async", "(self, p, thing_id, path, patch, *, if_match=None, source='http')"),
    "put_group": ("async", "(self, p, name, *, filter=None, members=None)"),
    "put_path": ("async", "(self, p, thing_id, path, value, *, if_match=None)"),
    "put_thing": (
        "async",
        "(self, p, thing_id, body, *, if_match=None, if_none_match=False, domain=None)",
    ),
    "scope": ("async", "(self, p)"),
    "search": ("async", "(self, p, *, filter=None, sort=(), limit=25, cursor=None, fields=None)"),
    "send_command": ("async", "(self, p, thing_id, subject, payload, *, timeout_s=10.0)"),
    "set_desired": ("async", "(self, p, thing_id, feature_id, patch, *, if_match=None)"),
    "set_device_secret": ("async", "(self, principal, thing_id, password)"),
    "set_host": ("async", "(self, thing_id, host)"),
    "start": ("async", "(self)"),
    "stop": ("async", "(self)"),
    "subscribe": ("sync", "(self, principal, filter=None, *, max_queue=10000)"),
}


def _bare(f) -> str:
    s = inspect.signature(f)
    ps = [p.replace(annotation=inspect.Parameter.empty) for p in s.parameters.values()]
    return str(s.replace(parameters=ps, return_annotation=inspect.Signature.empty))


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_the_facade_keeps_every_public_method(name):
    """Every call that worked still works: the parameters of then, in order, as they
    were; a parameter added since is keyword-only with a default."""
    f = getattr(TwinService, name)
    kind = "async" if inspect.iscoroutinefunction(f) else "sync"
    then_kind, then = PUBLIC[name]
    assert kind == then_kind
    now = _bare(f)
    if now == then:
        return
    names_then = set(re.findall(r"(\w+)(?:=[^,)]*)?(?=, |\))", then))
    added = [p for p in inspect.signature(f).parameters.values() if p.name not in names_then]
    kept = [p for p in inspect.signature(f).parameters.values() if p not in added]
    bare_kept = inspect.Signature([p.replace(annotation=inspect.Parameter.empty) for p in kept])
    assert str(bare_kept) == then
    assert added and all(
        p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
        for p in added
    ), added


def test_set_host_is_a_write_through_the_writer(store_url):
    async def body(svc):
        await svc.put_thing(A, "fleet:car-1", {"attributes": {"kind": "car"}})
        sub = svc.subscribe(A)
        # queued behind a write of the same thing: applied after it, in order
        patched, moved = await asyncio.gather(
            svc.patch(A, "fleet:car-1", "attributes", {"n": 1}),
            svc.set_host("fleet:car-1", "edge-7"),
        )
        assert patched["_revision"] == 2 and patched["_host"] is None
        assert moved["_revision"] == 3 and moved["_host"] == "edge-7"
        assert moved["attributes"] == {"kind": "car", "n": 1}
        assert svc.things["fleet:car-1"] is moved
        hist, _ = await svc.history(A, "fleet:car-1")
        assert [h["source"] for h in hist] == ["http", "http", "orchestrator"]
        assert (await svc.get_thing(A, "fleet:car-1", revision=3))["_host"] == "edge-7"
        events = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
        assert [e["data"]["source"] for e in events] == ["http", "orchestrator"]
        assert svc.metrics["updates_total:orchestrator"] == 1
        # the same host again changes nothing; a missing thing is refused
        assert (await svc.set_host("fleet:car-1", "edge-7"))["_revision"] == 3
        with pytest.raises(NotFound):
            await svc.set_host("fleet:nobody", "edge-7")
        return svc.store.url

    url = run(store_url, body)

    async def after_restart(svc):
        assert svc.things["fleet:car-1"]["_host"] == "edge-7"

    run(url, after_restart)
