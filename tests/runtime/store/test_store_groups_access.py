"""Both stores: groups and their membership (kept in the commit's transaction), API keys,
device secrets and grants."""

from __future__ import annotations

import pytest

from twinedge.errors import ServiceError
from twinedge.runtime.store import ApiKey, Grant, GroupSpec, StoreError


def all_members(store, domain, name, limit=3):
    out, cursor = [], None
    while True:
        page, cursor = store.group_members(domain, name, limit=limit, cursor=cursor)
        out += page
        if cursor is None:
            return out


def test_groups_and_membership(store, twins):
    spec = GroupSpec("d", "low", "lt(features/battery/properties/level,20)", (), 5.0)
    store.put_group(spec, ["ns:a", "ns:b"])
    store.put_group(GroupSpec("d", "vip", None, ("ns:c", "ns:a")), ["ns:c", "ns:a", "ns:c"])
    store.put_group(GroupSpec("e", "other", None, ()), [])
    assert store.groups("d") == [spec, GroupSpec("d", "vip", None, ("ns:c", "ns:a"))]
    assert [g.name for g in store.groups()] == ["low", "vip", "other"]
    assert all_members(store, "d", "low") == ["ns:a", "ns:b"]
    assert all_members(store, "d", "vip") == ["ns:a", "ns:c"]
    # membership changes ride along with the changes that cause them
    store.commit(
        [
            twins.put("ns:a", {}, joins=()),
            twins.put("ns:d", {}, joins=("d/low",)),
            twins.put("ns:b", {}, leaves=("d/low",)),
        ]
    )
    assert all_members(store, "d", "low") == ["ns:a", "ns:d"]
    # joined then left in one batch: the last word counts
    store.commit(
        [
            twins.edit("ns:d", lambda d: None, leaves=("d/low",)),
            twins.edit("ns:d", lambda d: None, joins=("d/low",)),
        ]
    )
    assert all_members(store, "d", "low") == ["ns:a", "ns:d"]
    # a deleted thing leaves every group
    store.commit([twins.delete("ns:a")])
    assert all_members(store, "d", "low") == ["ns:d"] and all_members(store, "d", "vip") == ["ns:c"]
    # replacing a group replaces its members
    store.put_group(spec, ["ns:z"])
    assert all_members(store, "d", "low") == ["ns:z"]
    assert store.delete_group("d", "low") is True
    assert store.delete_group("d", "low") is False
    assert all_members(store, "d", "low") == []
    assert [g.name for g in store.groups("d")] == ["vip"]


def test_group_membership_rolls_back_with_a_failed_batch(store, twins):
    store.put_group(GroupSpec("d", "g", None), [])
    ok = twins.put("ns:a", {}, joins=("d/g",))
    with pytest.raises(StoreError):
        store.commit([ok, ok])
    assert all_members(store, "d", "g") == []


def test_group_errors(store):
    with pytest.raises(ServiceError, match="unknown operator"):
        store.put_group(GroupSpec("d", "bad", "lower(a)"), [])
    with pytest.raises(ServiceError, match=r"not a group-members cursor|not one this service made"):
        store.group_members("d", "x", cursor="eyJ4IjoxfQ")
    with pytest.raises(ServiceError, match="limit"):
        store.group_members("d", "x", limit=0)


def test_api_keys_and_device_secrets(store):
    assert store.get_api_key("k1") is None
    key = ApiKey("k1", "pbkdf2_sha256$1$salt$hash", "dom-a", "write", 12.5, {"label": "ci"})
    store.put_api_key(key)
    assert store.get_api_key("k1") == key
    store.put_api_key(ApiKey("k1", "pbkdf2_sha256$1$salt$other", "dom-a", "admin", 13.0))
    assert store.get_api_key("k1").role == "admin" and store.get_api_key("k1").extra == {}
    assert store.get_device_secret("ns:a") is None
    store.put_device_secret("ns:a", "scrypt$abc")
    store.put_device_secret("ns:a", "scrypt$def")
    assert store.get_device_secret("ns:a") == "scrypt$def"


def test_grants(store):
    g1 = Grant("dom-a", "dom-b", "gt(attributes/level,50)", "read")
    g2 = Grant("dom-c", "dom-b", 'eq(attributes/kind,"car")', "write")
    store.put_grant(g1)
    store.put_grant(g2)
    store.put_grant(Grant("dom-a", "dom-x", "exists(attributes)", "read"))
    assert store.grants_for("dom-b") == [g1, g2]
    store.put_grant(Grant(g1.grantor, g1.grantee, g1.filter, "write"))  # same grant, new role
    assert [g.role for g in store.grants_for("dom-b")] == ["write", "write"]
    assert store.delete_grant(Grant(g1.grantor, g1.grantee, g1.filter, "write")) is True
    assert store.delete_grant(g1) is False
    assert store.grants_for("dom-b") == [g2]
    with pytest.raises(ServiceError, match="column"):
        store.put_grant(Grant("a", "b", "eq(x,", "read"))
    with pytest.raises(ServiceError, match="role is read, write or aggregate, got 'admin'"):
        store.put_grant(Grant("a", "b", "exists(x)", "admin"))
    # an aggregate-only grant is stored like the others; grants_from lists what one gives
    g3 = Grant("dom-a", "dom-c", "exists(attributes)", "aggregate")
    store.put_grant(g3)
    assert store.grants_for("dom-c") == [g3]
    gx = Grant("dom-a", "dom-x", "exists(attributes)", "read")
    assert store.grants_from("dom-a") == [g3, gx]  # by grantee, then filter
    assert store.grants_from("dom-c") == [g2] and store.grants_from("dom-z") == []
    assert store.grants_from(None) == [g3, gx, g2]  # every grant, by grantor first
