"""Regression tests of the service's promises, on SQLite and PostgreSQL: nothing
acknowledged is lost, no domain sees or changes another's things without a grant, a
thing's credentials, history and group memberships end with it, one bad write never
fails its neighbours, and groups always match their filters.

Each test names the defect it guards against (see docs/api.md, "Guarantees")."""

from __future__ import annotations

import asyncio

import pytest

from twinedge.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    OperationFailed,
    ServiceError,
)
from twinedge.runtime.auth import Principal

from .service_run import run

A = Principal("key-a", "dom-a", "write")
A_ADMIN = Principal("admin-a", "dom-a", "admin")
B = Principal("key-b", "dom-b", "write")
B_ADMIN = Principal("admin-b", "dom-b", "admin")
ADMIN = Principal("admin", None, "admin")


async def problem(coro) -> ServiceError:
    with pytest.raises(ServiceError) as e:
        await coro
    return e.value


# --- 1. type-strict change detection --------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [(1, True), (True, 1), (0, False), (1, 1.0), ([1, 0], [True, False]), ({"a": 1}, {"a": True})],
)
def test_a_value_of_another_json_type_is_a_change(store_url, old, new):
    async def body(svc):
        await svc.put_thing(A, "ns:t", {"attributes": {"x": old}})
        doc, _ = await svc.put_thing(A, "ns:t", {"attributes": {"x": new}})
        assert doc["_revision"] == 2 and repr(doc["attributes"]["x"]) == repr(new)
        doc = await svc.patch(A, "ns:t", "attributes", {"x": old})
        assert doc["_revision"] == 3 and repr(doc["attributes"]["x"]) == repr(old)
        await svc.put_path(A, "ns:t", "attributes/x", new)
        assert repr(svc.things["ns:t"]["attributes"]["x"]) == repr(new)
        # device reports and desired state
        await svc.patch(A, "ns:t", "features/f", {"properties": {"v": old}})
        rev = await svc.device_report("ns:t", {"f": {"v": new}})
        assert rev == 6
        await svc.set_desired(A, "ns:t", "f", {"v": old})
        d = await svc.delta(A, "ns:t")
        assert not d["inSync"] and repr(d["delta"]["f"]["v"]) == repr(old)
        return svc.store.url

    url = run(store_url, body)

    async def reread(svc):  # what was acknowledged is what is stored
        doc = await svc.get_thing(A, "ns:t")
        assert repr(doc["attributes"]["x"]) == repr(new)
        assert repr(doc["features"]["f"]["properties"]["v"]) == repr(new)
        hist, _ = await svc.history(A, "ns:t")
        assert [h["revision"] for h in hist] == [1, 2, 3, 4, 5, 6, 7]

    run(url, reread)


def test_a_group_filter_tells_true_from_one(store_url):
    async def body(svc):
        await svc.put_thing(A, "ns:t", {"attributes": {"on": 1}})
        await svc.put_group(A, "on", filter="eq(attributes/on,true)")
        assert (await svc.get_group(A, "on"))["members"] == []
        await svc.patch(A, "ns:t", "attributes", {"on": True})
        assert (await svc.get_group(A, "on"))["members"] == ["ns:t"]
        await svc.patch(A, "ns:t", "attributes", {"on": 1})
        assert (await svc.get_group(A, "on"))["members"] == []

    run(store_url, body)


# --- 2. creation is decided in the writer; namespaces belong to domains ----------------


def test_two_domains_creating_one_id_at_once_cannot_both_win(store_url):
    async def body(svc):
        for i in range(20):
            tid = f"race{i}:thing"
            ra, rb = await asyncio.gather(
                svc.put_thing(A, tid, {"attributes": {"by": "a"}}),
                svc.put_thing(B, tid, {"attributes": {"by": "b"}}),
                return_exceptions=True,
            )
            wins = [r for r in (ra, rb) if not isinstance(r, BaseException)]
            losses = [r for r in (ra, rb) if isinstance(r, ServiceError)]
            assert len(wins) == 1 and len(losses) == 1, (ra, rb)
            assert type(losses[0]) is Forbidden
            doc = svc.things[tid]
            # the owner is the domain whose content is stored
            assert doc["attributes"]["by"] == doc["_domain"][-1]
            assert svc.namespaces[f"race{i}"] == doc["_domain"]

    run(store_url, body)


def test_a_foreign_namespace_answers_alike_for_taken_and_free_ids(store_url):
    async def body(svc):
        await svc.put_thing(A, "fleet:car-1", {})
        taken = await problem(svc.put_thing(B, "fleet:car-1", {}))
        free = await problem(svc.put_thing(B, "fleet:car-2", {}))
        assert type(taken) is type(free) is Forbidden and taken.detail == free.detail
        assert "fleet:car-2" not in svc.things
        # the namespace stays A's after its last thing is deleted
        await svc.delete(A, "fleet:car-1")
        assert type(await problem(svc.put_thing(B, "fleet:car-1", {}))) is Forbidden
        # the service admin may give it away; things then belong to the new owner
        assert type(await problem(svc.put_thing(ADMIN, "fleet:x", {}, domain="dom-b"))) is Conflict
        await svc.assign_namespace(ADMIN, "fleet", "dom-b")
        doc, created = await svc.put_thing(B, "fleet:car-1", {})
        assert created and doc["_domain"] == "dom-b"
        assert type(await problem(svc.assign_namespace(A_ADMIN, "fleet", "dom-a"))) is Forbidden
        return svc.store.url

    url = run(store_url, body)

    async def after_restart(svc):
        assert svc.namespaces["fleet"] == "dom-b"
        assert type(await problem(svc.put_thing(A, "fleet:car-9", {}))) is Forbidden

    run(url, after_restart)


def test_a_write_grant_replaces_but_never_creates_in_a_foreign_namespace(store_url):
    async def body(svc):
        await svc.put_thing(A, "fleet:car-1", {"attributes": {"shared": True}})
        await svc.grant(A_ADMIN, "dom-b", "eq(attributes/shared,true)", "write")
        doc, created = await svc.put_thing(B, "fleet:car-1", {"attributes": {"shared": True}})
        assert not created and doc["_domain"] == "dom-a"
        assert type(await problem(svc.put_thing(B, "fleet:car-2", {}))) is Forbidden

    run(store_url, body)


# --- 3. an incarnation ends with its thing ---------------------------------------------


def test_credentials_history_and_groups_do_not_survive_a_deletion(store_url):
    async def body(svc):
        await svc.put_thing(A, "ns:dev", {"attributes": {"secret": "old"}})
        await svc.set_device_secret(A_ADMIN, "ns:dev", "password-1")
        assert await svc.authenticate_device("ns:dev", "password-1")
        await svc.put_group(A, "fixed", members=["ns:dev"])
        await svc.put_group(A, "all", filter="exists(attributes)")
        await svc.delete(A, "ns:dev")
        await svc.put_thing(A, "ns:dev", {"attributes": {"fresh": True}})
        assert not await svc.authenticate_device("ns:dev", "password-1")
        hist, _ = await svc.history(A, "ns:dev")
        assert [h["revision"] for h in hist] == [1]
        assert "old" not in repr(hist)
        assert (await svc.get_group(A, "fixed"))["members"] == []
        assert (await svc.get_group(A, "all"))["members"] == ["ns:dev"]
        return svc.store.url

    url = run(store_url, body)

    async def after_restart(svc):
        assert not await svc.authenticate_device("ns:dev", "password-1")
        assert (await svc.get_group(A, "fixed"))["members"] == []

    run(url, after_restart)


def test_a_changed_device_password_refuses_the_old_one_it_accepted_before(store_url):
    """Accepted logins are remembered (a device logs in at the core, then at its host,
    then after every migration): the old password must stop working the moment it is
    changed, and a refused one is never remembered."""

    async def body(svc):
        await svc.put_thing(A, "ns:dev", {})
        await svc.set_device_secret(A_ADMIN, "ns:dev", "password-1")
        assert not await svc.authenticate_device("ns:dev", "password-2")
        for _ in range(3):  # the first by scrypt, then remembered
            assert await svc.authenticate_device("ns:dev", "password-1")
        assert len(svc._access.verified) == 1
        await svc.set_device_secret(A_ADMIN, "ns:dev", "password-2")
        assert not await svc.authenticate_device("ns:dev", "password-1")
        assert await svc.authenticate_device("ns:dev", "password-2")
        await svc.set_device_secret(A_ADMIN, "ns:dev", "password-1")  # back: a new salt
        assert not await svc.authenticate_device("ns:dev", "password-2")
        assert await svc.authenticate_device("ns:dev", "password-1")

    run(store_url, body)


def test_a_password_set_while_its_thing_is_deleted_does_not_reach_the_next_one(store_url):
    async def body(svc):
        for i in range(10):
            tid = f"ns:d{i}"
            await svc.put_thing(A, tid, {})
            r = await asyncio.gather(
                svc.set_device_secret(A_ADMIN, tid, "password-x"),
                svc.delete(A, tid),
                return_exceptions=True,
            )
            await svc.put_thing(A, tid, {})
            assert not await svc.authenticate_device(tid, "password-x"), r

    run(store_url, body)


# --- 4. grants ---------------------------------------------------------------------------


def test_granted_history_shows_only_revisions_that_matched_the_grant(store_url):
    async def body(svc):
        await svc.put_thing(A, "ns:t", {"attributes": {"public": False, "v": "secret-1"}})
        await svc.patch(A, "ns:t", "attributes", {"public": True, "v": "open-2"})
        await svc.patch(A, "ns:t", "attributes", {"public": False, "v": "secret-3"})
        await svc.patch(A, "ns:t", "attributes", {"public": True, "v": "open-4"})
        await svc.grant(A_ADMIN, "dom-b", "eq(attributes/public,true)", "read")
        hist, _ = await svc.history(B, "ns:t")
        assert [h["revision"] for h in hist] == [2, 4]
        assert "secret" not in repr(hist)
        for page_size in (1, 2, 3):  # the same entries, however it is paged
            seen, cursor = [], None
            while True:
                page, cursor = await svc.history(B, "ns:t", limit=page_size, cursor=cursor)
                seen += [h["revision"] for h in page]
                if cursor is None:
                    break
            assert seen == [2, 4]
        own, _ = await svc.history(A, "ns:t")
        assert [h["revision"] for h in own] == [1, 2, 3, 4]
        for rev in (1, 3):
            assert type(await problem(svc.get_thing(B, "ns:t", revision=rev))) is NotFound

    run(store_url, body)


def test_a_negated_grant_does_not_deliver_deletions_of_what_it_excludes(store_url):
    async def body(svc):
        await svc.put_thing(A, "ns:hidden", {"attributes": {"secret": True}})
        await svc.put_thing(A, "ns:shown", {"attributes": {"secret": False}})
        await svc.grant(A_ADMIN, "dom-b", "not(eq(attributes/secret,true))", "read")
        sub = svc.subscribe(B)
        await svc.delete(A, "ns:hidden")
        await svc.delete(A, "ns:shown")
        sub.close()
        events = [ev async for ev in sub]
        assert [(e["type"], e["subject"]) for e in events] == [
            ("dev.twinedge.thing.deleted", "ns:shown")
        ]

    run(store_url, body)


def test_a_grant_shows_things_but_not_the_grantors_groups(store_url):
    """A grantee receives the events of the things it may see, but not their joining or
    leaving the granting domain's groups (it cannot read those groups either)."""

    async def body(svc):
        await svc.put_thing(A, "ns:t", {"attributes": {"public": True, "recall": False}})
        await svc.put_group(A, "recall-list", filter="eq(attributes/recall,true)")
        await svc.grant(A_ADMIN, "dom-b", "eq(attributes/public,true)", "read")
        subs = {
            "owner": svc.subscribe(A),
            "grantee": svc.subscribe(B),
            "admin": svc.subscribe(ADMIN),
        }
        await svc.patch(A, "ns:t", "attributes", {"recall": True})
        await svc.patch(A, "ns:t", "attributes", {"recall": False})
        got = {}
        for who, sub in subs.items():
            sub.close()
            got[who] = [e["type"].removeprefix("dev.twinedge.") async for e in sub]
        both = ["thing.modified", "group.joined", "thing.modified", "group.left"]
        assert got["owner"] == got["admin"] == both
        assert got["grantee"] == ["thing.modified", "thing.modified"]
        assert type(await problem(svc.get_group(B, "recall-list"))) is NotFound

    run(store_url, body)


def test_a_write_grant_does_not_reach_credentials(store_url):
    async def body(svc):
        await svc.put_thing(A, "ns:dev", {"attributes": {"shared": True}})
        await svc.set_device_secret(A_ADMIN, "ns:dev", "owner-password")
        await svc.grant(A_ADMIN, "dom-b", "eq(attributes/shared,true)", "write")
        await svc.patch(B, "ns:dev", "attributes", {"x": 1})  # the grant works for data
        e = await problem(svc.set_device_secret(B_ADMIN, "ns:dev", "attacker-password"))
        assert type(e) is NotFound
        assert await svc.authenticate_device("ns:dev", "owner-password")
        assert not await svc.authenticate_device("ns:dev", "attacker-password")

    run(store_url, body)


def test_fixed_groups_hold_only_own_things_and_forget_deleted_ones(store_url):
    async def body(svc):
        await svc.put_thing(A, "a:1", {})
        await svc.put_thing(B, "b:1", {})
        e = await problem(svc.put_group(A, "g", members=["a:1", "b:1"]))
        missing = await problem(svc.put_group(A, "g", members=["a:1", "a:nope"]))
        assert type(e) is type(missing) is NotFound
        assert e.pointer == missing.pointer == "/members/1"
        await svc.put_group(A, "g", members=["a:1"])
        await svc.delete(A, "a:1")
        g = await svc.get_group(A, "g")
        assert g["members"] == [] and g["size"] == 0

    run(store_url, body)


# --- 5. poison is refused at the edge; a failing write fails alone --------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("\ud800", "lone surrogate"),
        ("a\x00b", "NUL"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
        (2**64, "64-bit"),
        ({"k\ud800": 1}, "lone surrogate"),
    ],
)
def test_values_the_stores_cannot_hold_are_refused_with_400(store_url, value, words):
    async def body(svc):
        await svc.put_thing(A, "ns:ok", {"attributes": {"v": 1}})
        for write in (
            svc.put_thing(A, "ns:bad", {"attributes": {"v": value}}),
            svc.patch(A, "ns:ok", "attributes", {"v": value}),
            svc.put_path(A, "ns:ok", "attributes/v", [value]),
            svc.device_report("ns:ok", {"f": {"v": value}}),
        ):
            e = await problem(write)
            assert type(e) is InvalidInput and words in e.detail, e.detail
        assert "ns:bad" not in svc.things
        assert (await svc.get_thing(A, "ns:ok"))["attributes"]["v"] == 1

    run(store_url, body)


POISON_TRIGGER = {
    "sqlite": [
        "CREATE TRIGGER poison BEFORE INSERT ON history WHEN NEW.thing_id = 'ns:poison' "
        "BEGIN SELECT RAISE(ABORT, 'this row cannot be stored'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
        "IF NEW.thing_id = 'ns:poison' THEN RAISE EXCEPTION 'this row cannot be stored'; "
        "END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER poison BEFORE INSERT ON history FOR EACH ROW EXECUTE FUNCTION poison()",
    ],
}


def test_a_write_the_store_refuses_fails_alone(store_url):
    """The store itself refuses one thing's rows (a trigger in the real database); the
    other writes of the same commit batch are acknowledged and stored."""

    async def body(svc):
        await svc.put_thing(A, "ns:warm", {})
        conn = svc.store._conn()
        kind = "sqlite" if store_url.startswith("sqlite") else "postgresql"
        for stmt in POISON_TRIGGER[kind]:
            conn.execute(stmt)
        if kind == "postgresql":
            conn.commit()
        writes = [svc.put_thing(A, f"ns:good{i}", {"attributes": {"i": i}}) for i in range(40)]
        writes.insert(17, svc.put_thing(A, "ns:poison", {"attributes": {"i": -1}}))
        results = await asyncio.gather(*writes, return_exceptions=True)
        bad = [r for r in results if isinstance(r, BaseException)]
        # refused for good (a device is acknowledged and told), not "retry"
        assert len(bad) == 1 and type(bad[0]) is OperationFailed
        assert "will not help" in bad[0].detail
        assert "ns:poison" not in svc.things
        for i in range(40):
            assert svc.things[f"ns:good{i}"]["attributes"]["i"] == i
        return svc.store.url

    url = run(store_url, body, batch_max=100)

    async def reread(svc):
        assert sorted(t for t in svc.things if t.startswith("ns:good")) == sorted(
            f"ns:good{i}" for i in range(40)
        )

    run(url, reread)


# --- 8. groups match their filters, whatever runs at the same time --------------------------


def test_a_filter_group_put_during_writes_matches_its_filter(store_url):
    async def body(svc):
        for i in range(40):
            await svc.put_thing(A, f"ns:{i}", {"attributes": {"on": False}})

        async def flip(i: int, k: int) -> None:
            await svc.patch(A, f"ns:{i}", "attributes", {"on": (i + k) % 3 == 0})

        async def check() -> None:
            want = sorted(t for t, d in svc.things.items() if d["attributes"]["on"] is True)
            for name in ("on", "on2"):
                g = await svc.get_group(A, name, limit=1000)
                assert sorted(g["members"]) == want and g["size"] == len(want), name

        for rnd in range(6):  # the groups are put while queued writes are being applied
            jobs: list = [flip(i, rnd) for i in range(40)]
            jobs.insert(20, svc.put_group(A, "on", filter="eq(attributes/on,true)"))
            jobs.append(svc.put_group(A, "on2", filter="eq(attributes/on,true)"))
            await asyncio.gather(*jobs)
            await check()
        return svc.store.url

    url = run(store_url, body, batch_max=8)

    async def after_restart(svc):
        want = sorted(t for t, d in svc.things.items() if d["attributes"]["on"] is True)
        for name in ("on", "on2"):
            g = await svc.get_group(A, name, limit=1000)
            assert sorted(g["members"]) == want and g["size"] == len(want)

    run(url, after_restart)


# --- names that are not text -----------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\ud800", "a\x00", "x\n"])
def test_names_that_are_not_valid_text_are_refused(store_url, bad):
    async def body(svc):
        await svc.put_thing(A, "ns:t", {})
        checks = [
            svc.put_group(A, bad, filter="exists(attributes)"),
            svc.put_group(A, "g", members=[f"ns:{bad}"]),
            svc.grant(A_ADMIN, bad, "exists(attributes)", "read"),
            svc.get_group(A, "g", cursor=bad),
            svc.put_thing(A, f"ns:t{bad}", {}),
            svc.create_api_key(ADMIN, bad, "read"),
        ]
        await svc.put_group(A, "g", filter="exists(attributes)")
        for c in checks:
            e = await problem(c)
            assert type(e) is InvalidInput, e.detail

    run(store_url, body)
