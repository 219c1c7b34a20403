"""A stateful, property-based test of the live service's promises across domains.

Hypothesis drives a real ``twinedge serve`` (a subprocess on loopback: HTTP and the
embedded MQTT broker, on SQLite and on PostgreSQL) with interleaved creates, replaces,
patches, deletes and re-creates, grants, device passwords and device reports over MQTT,
fixed-member and filter groups, reads and searches, by two domains over three namespaces
(one of them contested). A model says what each domain may see; after every step:

- no domain observes a thing of another without a grant that matches it (reads, search,
  history, and the status codes of writes: a foreign id and a free id answer alike);
- every acknowledged write (HTTP 2xx, MQTT PUBACK) is readable, with its JSON types
  (``true`` stays ``true``, ``1`` stays ``1``);
- a deleted thing's device password does not open its next incarnation, its history
  starts again at revision 1, and it is in no fixed-member group it was in before;
- a domain's groups hold only its own things: a filter group exactly those that match
  its filter, a fixed group the listed members that still exist.

One server serves every example; each example works in its own fresh domains and
namespaces, so examples never see each other's state.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.runtime.test_reliability import free_port, start_server

mqtt = pytest.importorskip("paho.mqtt.client")

NAMES = ("t0", "t1")
# values whose JSON types Python's == confuses
VALUES = st.sampled_from([1, True, 1.0, 0, False, 0.0, "1", [1], [True], {"k": 1}, {"k": True}])
FILTER = "eq(attributes/public,true)"
_examples = itertools.count()


def dumps(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


class Server:
    def __init__(self, data: Path, db: str | None):
        self.http_port, self.mqtt_port = free_port(), free_port()
        data.mkdir(parents=True, exist_ok=True)
        self.proc = start_server(data, self.http_port, self.mqtt_port, db)
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.admin = (data / "admin.token").read_text().strip()
        self.http = httpx.Client(base_url=self.base, timeout=30)

    def stop(self) -> None:
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory):
    db = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    s = Server(tmp_path_factory.mktemp(f"stateful-{request.param}") / "data", db)
    yield s
    s.stop()


def publish(port: int, thing_id: str, password: str, payload: dict) -> bool | None:
    """Report over MQTT 3.1.1, QoS 1. ``None``: the login was refused; ``True``: PUBACK
    received (the service promises durability); ``False``: no PUBACK."""
    connected = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(client, userdata, flags, reason_code, properties):
        result["rc"] = reason_code
        connected.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=thing_id)
    c.username_pw_set(thing_id, password)
    c.on_connect = on_connect
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        assert connected.wait(30), "no CONNACK"
        if result["rc"].is_failure:
            return None
        info = c.publish(f"twinedge/{thing_id}/reported", json.dumps(payload), qos=1)
        info.wait_for_publish(30)
        return info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


class Domains(RuleBasedStateMachine):
    server: Server

    def __init__(self) -> None:
        super().__init__()
        n = next(_examples)
        self.p = f"s{os.getpid()}x{n}"
        self.domains = (f"{self.p}a", f"{self.p}b")
        self.namespaces = (f"{self.p}na", f"{self.p}nb", f"{self.p}nx")
        self.ns_owner: dict[str, str] = {}
        self.things: dict[str, dict[str, Any]] = {}  # id -> domain, attrs, props, password
        self.old_passwords: dict[str, str] = {}
        self.grants: set[tuple[str, str, str]] = set()  # (grantor, grantee, role)
        self.fixed: dict[str, set[str]] = {}  # domain -> members of its group "fixed"
        self.filtered: set[str] = set()  # domains that have the filter group "pub"
        self.keys: dict[tuple[str, str], str] = {}
        http = self.server.http
        for d in self.domains:
            for role in ("write", "admin"):
                r = http.post(
                    "/api/2/keys",
                    json={"domain": d, "role": role},
                    headers=self.h(None),
                )
                assert r.status_code == 201, r.text
                self.keys[(d, role)] = r.json()["token"]

    # --- the model ------------------------------------------------------------------------
    def h(self, domain: str | None, role: str = "write") -> dict[str, str]:
        token = self.server.admin if domain is None else self.keys[(domain, role)]
        return {"Authorization": f"Bearer {token}"}

    def granted(self, domain: str, t: dict[str, Any], role: str) -> bool:
        if t["domain"] == domain:
            return True
        roles = ("read", "write") if role == "read" else ("write",)
        return t["attrs"].get("public") is True and any(
            (t["domain"], domain, r) in self.grants for r in roles
        )

    def tid(self, ns: int, name: str) -> str:
        return f"{self.namespaces[ns]}:{name}"

    # --- writes ---------------------------------------------------------------------------
    @rule(d=st.integers(0, 1), ns=st.integers(0, 2), name=st.sampled_from(NAMES),
          public=st.booleans(), v=VALUES)  # fmt: skip
    def put(self, d: int, ns: int, name: str, public: bool, v: Any) -> None:
        domain, tid = self.domains[d], self.tid(ns, name)
        attrs = {"public": public, "v": v}
        r = self.server.http.put(
            f"/api/2/things/{tid}", json={"attributes": attrs}, headers=self.h(domain)
        )
        t = self.things.get(tid)
        owner = self.ns_owner.get(self.namespaces[ns])
        if t is not None and self.granted(domain, t, "write"):
            assert r.status_code == 204, r.text
            t["attrs"], t["props"] = attrs, None
        elif owner is not None and owner != domain:
            # a foreign namespace answers alike whether the id is taken or free
            assert r.status_code == 403, r.text
            assert "belongs to another domain" in r.json()["detail"]
        else:
            assert t is None, "namespaces are exclusive, so a thing here is the caller's"
            assert r.status_code == 201, r.text
            self.ns_owner[self.namespaces[ns]] = domain
            self.things[tid] = {"domain": domain, "attrs": attrs, "props": None, "password": None}

    @rule(d=st.integers(0, 1), ns=st.integers(0, 2), name=st.sampled_from(NAMES), v=VALUES)
    def patch(self, d: int, ns: int, name: str, v: Any) -> None:
        domain, tid = self.domains[d], self.tid(ns, name)
        r = self.server.http.patch(
            f"/api/2/things/{tid}/attributes",
            content=json.dumps({"v": v}),
            headers={**self.h(domain), "Content-Type": "application/merge-patch+json"},
        )
        t = self.things.get(tid)
        if t is not None and self.granted(domain, t, "write"):
            assert r.status_code == 204, r.text
            t["attrs"]["v"] = v if not isinstance(v, dict) else {**v}
        else:
            assert r.status_code == 404, r.text

    @rule(d=st.integers(0, 1), ns=st.integers(0, 2), name=st.sampled_from(NAMES))
    def delete(self, d: int, ns: int, name: str) -> None:
        domain, tid = self.domains[d], self.tid(ns, name)
        r = self.server.http.delete(f"/api/2/things/{tid}", headers=self.h(domain))
        t = self.things.get(tid)
        if t is not None and self.granted(domain, t, "write"):
            assert r.status_code == 204, r.text
            del self.things[tid]
            for members in self.fixed.values():
                members.discard(tid)
            if t["password"]:
                self.old_passwords[tid] = t["password"]
        else:
            assert r.status_code == 404, r.text

    @rule(d=st.integers(0, 1), role=st.sampled_from(["read", "write"]))
    def grant(self, d: int, role: str) -> None:
        grantor, grantee = self.domains[d], self.domains[1 - d]
        r = self.server.http.post(
            "/api/2/grants",
            json={"grantee": grantee, "filter": FILTER, "role": role},
            headers=self.h(grantor, "admin"),
        )
        assert r.status_code == 201, r.text
        # one grant per (grantor, grantee, filter): the latest role counts
        self.grants -= {(grantor, grantee, "read"), (grantor, grantee, "write")}
        self.grants.add((grantor, grantee, role))

    @rule(d=st.integers(0, 1), ns=st.integers(0, 2), name=st.sampled_from(NAMES),
          n=st.integers(0, 3))  # fmt: skip
    def set_password(self, d: int, ns: int, name: str, n: int) -> None:
        domain, tid = self.domains[d], self.tid(ns, name)
        password = f"pw-{self.p}-{n}"
        r = self.server.http.put(
            f"/api/2/things/{tid}/credentials",
            json={"password": password},
            headers=self.h(domain, "admin"),
        )
        t = self.things.get(tid)
        if t is not None and t["domain"] == domain:  # grants never reach credentials
            assert r.status_code == 204, r.text
            t["password"] = password
        else:
            assert r.status_code == 404, r.text

    @rule(ns=st.integers(0, 2), name=st.sampled_from(NAMES), v=VALUES)
    def report(self, ns: int, name: str, v: Any) -> None:
        tid = self.tid(ns, name)
        t = self.things.get(tid)
        password = (t or {}).get("password") or self.old_passwords.get(tid)
        if password is None:
            return
        acked = publish(self.server.mqtt_port, tid, password, {"f": {"v": v}})
        if t is not None and t["password"] == password:
            assert acked is True
            t["props"] = {**(t["props"] or {}), "v": v}
        else:  # the password of an earlier incarnation opens nothing
            assert acked is None, f"{tid}: an old incarnation's password was accepted"

    @rule(d=st.integers(0, 1), data=st.data(), stranger=st.tuples(st.integers(0, 2),
          st.sampled_from(NAMES)) | st.none())  # fmt: skip
    def put_fixed_group(self, d: int, data: st.DataObject, stranger: tuple | None) -> None:
        """Members: some of the domain's own things, and maybe one id that is not (another
        domain's thing, or none at all)."""
        domain = self.domains[d]
        own = sorted(tid for tid, t in self.things.items() if t["domain"] == domain)
        members = (
            data.draw(st.lists(st.sampled_from(own), min_size=1, max_size=3, unique=True))
            if own
            else []
        )
        if stranger is not None:
            members.insert(data.draw(st.integers(0, len(members))), self.tid(*stranger))
        members = list(dict.fromkeys(members))
        if not members:
            return
        r = self.server.http.put(
            "/api/2/groups/fixed", json={"members": members}, headers=self.h(domain)
        )
        is_own = [m in self.things and self.things[m]["domain"] == domain for m in members]
        if all(is_own):
            assert r.status_code in (200, 201), r.text
            self.fixed[domain] = set(members)
        else:  # another domain's thing answers like a missing one, naming the first
            assert r.status_code == 404, r.text
            assert r.json()["pointer"] == f"/members/{is_own.index(False)}", r.text

    @rule(d=st.integers(0, 1), data=st.data())
    def delete_a_group_member(self, d: int, data: st.DataObject) -> None:
        """Delete a thing of the domain's fixed group (it must leave the group)."""
        members = sorted(self.fixed.get(self.domains[d], ()))
        if members:
            ns, name = data.draw(st.sampled_from(members)).split(":")
            self.delete(d, self.namespaces.index(ns), name)

    @rule(d=st.integers(0, 1))
    def put_filter_group(self, d: int) -> None:
        domain = self.domains[d]
        r = self.server.http.put(
            "/api/2/groups/pub", json={"filter": FILTER}, headers=self.h(domain)
        )
        assert r.status_code in (200, 201), r.text
        self.filtered.add(domain)

    # --- what each domain observes --------------------------------------------------------
    @invariant()
    def reads_show_exactly_what_is_visible(self) -> None:
        http = self.server.http
        for d in self.domains:
            for ns in range(3):
                for name in NAMES:
                    tid = self.tid(ns, name)
                    r = http.get(f"/api/2/things/{tid}", headers=self.h(d))
                    t = self.things.get(tid)
                    if t is None or not self.granted(d, t, "read"):
                        assert r.status_code == 404, (d, tid, r.text)
                        continue
                    assert r.status_code == 200, r.text
                    doc = r.json()
                    assert dumps(doc["attributes"]) == dumps(t["attrs"]), (tid, doc)
                    props = ((doc.get("features") or {}).get("f") or {}).get("properties")
                    assert dumps(props) == dumps(t["props"]), (tid, doc)

    @invariant()
    def search_finds_exactly_what_is_visible(self) -> None:
        for d in self.domains:
            r = self.server.http.get(
                "/api/2/search/things",
                params={"filter": f'like(thingId,"{self.p}*")', "limit": 100},
                headers=self.h(d),
            )
            assert r.status_code == 200, r.text
            got = {doc["thingId"]: doc for doc in r.json()["items"]}
            want = {tid for tid, t in self.things.items() if self.granted(d, t, "read")}
            assert set(got) == want
            for tid, doc in got.items():
                assert dumps(doc["attributes"]) == dumps(self.things[tid]["attrs"])

    @invariant()
    def groups_hold_only_own_things(self) -> None:
        http = self.server.http
        for d in self.domains:
            r = http.get("/api/2/groups", headers=self.h(d))
            assert r.status_code == 200, r.text
            names = {g["name"] for g in r.json()["items"]}
            assert names == {
                n for n, has in (("fixed", d in self.fixed), ("pub", d in self.filtered)) if has
            }
            want = {
                "fixed": self.fixed.get(d),
                "pub": {
                    tid
                    for tid, t in self.things.items()
                    if t["domain"] == d and t["attrs"].get("public") is True
                }
                if d in self.filtered
                else None,
            }
            for name, members in want.items():
                if members is None:
                    continue
                r = http.get(f"/api/2/groups/{name}", params={"limit": 100}, headers=self.h(d))
                assert r.status_code == 200, r.text
                g = r.json()
                assert set(g["members"]) == members and g["size"] == len(members), (d, name, g)

    @invariant()
    def history_is_one_incarnation_and_only_what_a_grant_matched(self) -> None:
        http = self.server.http
        for d in self.domains:
            for tid, t in self.things.items():
                if not self.granted(d, t, "read"):
                    continue
                r = http.get(f"/api/2/things/{tid}/history", headers=self.h(d))
                assert r.status_code == 200, r.text
                revs = [h["revision"] for h in r.json()["items"]]
                head = http.get(f"/api/2/things/{tid}", headers=self.h(d))
                current = int(head.headers["etag"].strip('"').removeprefix("rev:"))
                if t["domain"] == d:  # the owner sees the whole incarnation
                    assert revs == list(range(1, current + 1)), (tid, revs, current)
                    continue
                # a grantee: only revisions at which the thing matched the grant, each
                # readable as of that revision
                assert revs and revs[-1] == current, (tid, revs, current)
                for rev in revs:
                    a = http.get(
                        f"/api/2/things/{tid}", params={"revision": rev}, headers=self.h(d)
                    )
                    assert a.status_code == 200, a.text
                    assert a.json()["attributes"]["public"] is True, (tid, rev, a.json())


def test_domains_never_observe_each_other_without_a_grant(server):
    Domains.server = server
    run = Domains.TestCase
    run.settings = settings(
        max_examples=int(os.environ.get("TWINEDGE_STATEFUL_EXAMPLES", "20")),
        stateful_step_count=30,
        deadline=None,
        derandomize=os.environ.get("CI") == "true",
        suppress_health_check=list(HealthCheck),
    )
    run().runTest()
