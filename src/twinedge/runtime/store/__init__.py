"""Storage of the live service: the contract (:mod:`.base`) and its SQL implementations.

:func:`open_store` picks the implementation by URL scheme: ``sqlite:`` (or a bare file
path) -> :class:`SQLiteStore`, ``postgresql:``/``postgres:`` -> :class:`PostgresStore`
(psycopg 3). Both share one schema, one behaviour and one test suite
(``tests/runtime/store``); ``docs/search.md`` describes the filter language and how it
maps to indexed SQL.

Modules: :mod:`.base` (the contract and its records), :mod:`.sql_store` (the schema and
the storage both SQL stores share: connections, migration, commits, as-of reads,
history, groups, credentials, namespaces, grants), :mod:`.sql_commit` (a batch of changes
as the rows it writes), :mod:`.sql_query` (a search, count or aggregate as one SQL
statement: filter and scope, sort keys, cursors, fields), and the dialects
:mod:`.sqlite` and :mod:`.postgres` (DDL, connections, bulk writes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinedge.runtime.store.base import (
    ApiKey,
    Change,
    Grant,
    GroupSpec,
    Scope,
    SearchPage,
    SearchQuery,
    Store,
    StoreError,
)
from twinedge.runtime.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from twinedge.runtime.store.postgres import PostgresStore

__all__ = [
    "ApiKey",
    "Change",
    "Grant",
    "GroupSpec",
    "PostgresStore",
    "SQLiteStore",
    "Scope",
    "SearchPage",
    "SearchQuery",
    "Store",
    "StoreError",
    "open_store",
]


def __getattr__(name: str) -> object:
    if name == "PostgresStore":  # imported lazily: psycopg is needed only for PostgreSQL
        from twinedge.runtime.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(name)


def open_store(url: str, *, migrate: bool = True) -> Store:
    """The store for ``url``, with its schema created or upgraded when ``migrate``.

    ``sqlite:///abs/path.db``, ``sqlite://rel/path.db``, a bare path, or
    ``sqlite://:memory:``; ``postgresql://user:pass@host:5432/db`` (``postgres://`` too).
    """
    scheme = url.split(":", 1)[0].lower() if "://" in url else ""
    store: Store
    if scheme in ("", "sqlite", "file"):
        store = SQLiteStore(url[len("file://") :] if scheme == "file" else url)
    elif scheme in ("postgresql", "postgres"):
        from twinedge.runtime.store.postgres import PostgresStore

        store = PostgresStore(url)
    else:
        raise StoreError(
            f"unknown store URL scheme {scheme!r} in {url!r}: use sqlite:///path/to/twins.db "
            "or postgresql://user@host/dbname"
        )
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
