"""The storage contract of the live service.

The service keeps the current twins in memory and funnels every mutation through one
writer, which commits them to a :class:`Store` in batches (group commit). A store is
synchronous and thread-confined: each thread gets its own connection. Two
implementations share one behaviour and one test suite: SQLite (WAL, the default) and
PostgreSQL.

Durability contract: when :meth:`Store.commit` returns, every change of the batch is on
stable storage (SQLite ``synchronous=FULL`` in WAL mode, or PostgreSQL commit), and a
crash at any moment leaves either all of a batch or none of it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from twinedge.errors import TwinedgeError

Role = Literal["read", "write", "admin"]
#: what a grant lets the grantee do: read, write, or only take private aggregates
GrantRole = Literal["read", "write", "aggregate"]
#: Where the core stands in a twin's replication from an edge host: ``(epoch, revision)``
#: of the last record applied (see :mod:`twinedge.runtime.core.replica`).
EdgePosition = tuple[int, int]


class StoreError(TwinedgeError):
    """The database refused or failed an operation; the message says what to do."""


@dataclass(frozen=True)
class Change:
    """One accepted mutation of one thing (a batch may hold several for one thing, in
    revision order)."""

    thing_id: str
    domain: str
    revision: int  # the new revision (1 for a created thing)
    time: float  # unix seconds
    new: dict[str, Any] | None  # the full new document with service fields; None = deleted
    ops: list[dict[str, Any]]  # RFC 6902 operations from the previous revision
    source: str  # "http", "mqtt", "orchestrator", ...
    actor: str  # API key id, device id, ...
    group_joins: tuple[str, ...] = ()  # group keys ("domain/name") the thing joined
    group_leaves: tuple[str, ...] = ()
    # the thing's edge replica position after this change, stored in the same transaction
    # (None: unchanged; a deletion always removes it)
    edge: EdgePosition | None = None


@dataclass(frozen=True)
class Grant:
    """``grantor`` lets ``grantee`` see (role read) or change (role write) the grantor's
    things that match ``filter`` (RQL text), or (role aggregate) only take differentially
    private aggregates over them (docs/privacy.md), never their values."""

    grantor: str
    grantee: str
    filter: str
    role: GrantRole


@dataclass(frozen=True)
class Scope:
    """Which things a query may see: every thing of ``domains`` (``None`` = all, for
    admins of the service) plus the things matched by the ``grants``."""

    domains: tuple[str, ...] | None
    grants: tuple[Grant, ...] = ()


@dataclass(frozen=True)
class SearchQuery:
    filter: str | None = None  # RQL text; parsed and compiled by the store
    scope: Scope = Scope(None)
    sort: tuple[tuple[str, bool], ...] = ()  # (field path, ascending)
    limit: int = 25
    cursor: str | None = None
    fields: tuple[str, ...] | None = None  # JSON pointers to keep (None = whole thing)


@dataclass
class SearchPage:
    items: list[dict[str, Any]]
    cursor: str | None  # pass back for the next page; None on the last page
    total: int | None = None


@dataclass(frozen=True)
class GroupSpec:
    domain: str
    name: str
    filter: str | None  # RQL text, or None for an explicit list
    members: tuple[str, ...] = ()  # explicit thing ids (when filter is None)
    created: float = 0.0


@dataclass
class ApiKey:
    key_id: str
    secret_hash: str
    domain: str
    role: Role
    created: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrivacyBudget:
    """The differential-privacy budget an owner domain gives a consumer domain, and what
    the consumer has spent, in whole nano-ε (10⁻⁹ ε) and femto-δ (10⁻¹⁵ δ) so that the
    accounting is exact."""

    owner: str
    consumer: str
    epsilon_nano: int
    delta_femto: int
    spent_epsilon_nano: int = 0
    spent_delta_femto: int = 0


class Store(Protocol):
    """What the service needs from a database."""

    url: str

    def migrate(self) -> None:
        """Create or upgrade the schema (idempotent)."""

    def close(self) -> None: ...

    # --- twins ------------------------------------------------------------------------
    def load_things(self) -> Iterator[dict[str, Any]]:
        """Every current thing (with its service fields), for the service's cache."""

    def commit(
        self, changes: Sequence[Change], namespaces: Sequence[tuple[str, str, float]] = ()
    ) -> None:
        """Apply a batch in one transaction: current documents, history rows, the search
        index of changed fields, group membership, and ``namespaces`` claimed by the batch
        (``(namespace, domain, time)``; an existing claim is kept). A thing deleted in the
        batch loses its device credentials and its edge replica position in the same
        transaction; a change with :attr:`Change.edge` stores that position. Durable when
        it returns."""

    def load_edge_positions(self) -> dict[str, EdgePosition]:
        """Every twin's edge replica position (thing id -> ``(epoch, revision)``), for the
        service's start."""

    def set_edge_position(self, thing_id: str, position: EdgePosition | None) -> None:
        """Store (``None``: remove) the edge replica position of ``thing_id``, durably."""

    def thing_at(
        self, thing_id: str, *, revision: int | None = None, at: float | None = None
    ) -> dict[str, Any] | None:
        """The thing as it was at ``revision`` or at time ``at`` (unix s); None if it did
        not exist then (or history was pruned)."""

    def history(
        self,
        thing_id: str,
        *,
        since: float | None = None,
        until: float | None = None,
        after_revision: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Changes of the thing's current (or, once deleted, last) incarnation in
        revision order: ``{"revision", "time", "source", "actor", "ops", "deleted"}``;
        ``after_revision`` pages on from the last revision of the previous page."""

    def prune_history(self, before: float) -> int:
        """Drop history older than ``before`` (keeping what as-of reads of the current
        revision need); returns the number of rows removed."""

    # --- search -----------------------------------------------------------------------
    def search(self, query: SearchQuery) -> SearchPage: ...

    def count(self, filter: str | None, scope: Scope) -> int: ...

    def aggregate(
        self, filter: str | None, scope: Scope, group_by: str, fn: str, field: str | None
    ) -> list[dict[str, Any]]:
        """``[{"key": value_of_group_by, "value": fn(field)}]`` with fn in count, min,
        max, avg."""

    # --- groups -----------------------------------------------------------------------
    def put_group(self, spec: GroupSpec, members: Sequence[str]) -> None:
        """Create or replace a group with its initial members."""

    def delete_group(self, domain: str, name: str) -> bool: ...

    def groups(self, domain: str | None = None) -> list[GroupSpec]: ...

    def group_members(
        self, domain: str, name: str, *, limit: int = 1000, cursor: str | None = None
    ) -> tuple[list[str], str | None]: ...

    # --- access -----------------------------------------------------------------------
    def put_api_key(self, key: ApiKey) -> None: ...

    def get_api_key(self, key_id: str) -> ApiKey | None: ...

    def put_device_secret(self, thing_id: str, secret_hash: str) -> None: ...

    def get_device_secret(self, thing_id: str) -> str | None: ...

    def namespaces(self) -> dict[str, str]:
        """Every claimed namespace -> its owner domain."""

    def put_namespace(self, ns: str, domain: str, created: float) -> None:
        """Assign ``ns`` to ``domain`` (the service admin's decision; replaces a claim)."""

    def put_grant(self, grant: Grant) -> None: ...

    def delete_grant(self, grant: Grant) -> bool: ...

    def grants_for(self, grantee: str) -> list[Grant]: ...

    def grants_from(self, grantor: str | None) -> list[Grant]:
        """The grants ``grantor`` gives (every grant for ``None``), by grantee and filter."""

    def put_privacy_budget(self, budget: PrivacyBudget) -> PrivacyBudget:
        """Set a consumer's budget (what it spent stays); returns the stored row."""

    def privacy_budgets(self, owner: str) -> list[PrivacyBudget]: ...

    def privacy_budget(self, owner: str, consumer: str) -> PrivacyBudget | None: ...

    def delete_privacy_budget(self, owner: str, consumer: str) -> bool: ...

    def spend_privacy_budget(
        self, owner: str, consumer: str, epsilon_nano: int, delta_femto: int
    ) -> bool:
        """Spend atomically; ``False`` when the rest of the budget does not cover it."""
