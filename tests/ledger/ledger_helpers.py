"""Helpers shared by the ledger tests (a uniquely named module, not conftest)."""

from __future__ import annotations

import sqlite3
from typing import Any

from twinedge.ledger import merkle


def make_entry(domain: str, i: int, **body: Any) -> dict[str, Any]:
    return {
        "type": "provenance",
        "domain": domain,
        "time": float(i),
        "actor": "test",
        "body": {"i": i, "marker": f"marker-{i:04d}", **body},
    }


def rebuild_nodes(con: sqlite3.Connection) -> None:
    """Recompute a tampered log's stored Merkle nodes from its entries, as an attacker who
    rewrites entries would (so only checkpoints and witnesses can catch it)."""
    datas = [bytes(d) for (d,) in con.execute("SELECT data FROM entries ORDER BY idx")]
    level = [merkle.leaf_hash(d) for d in datas]
    con.execute("DELETE FROM nodes")
    lv = 0
    while level:
        con.execute("INSERT INTO nodes VALUES (?, ?, 0, ?)", (lv << 48, lv, b"".join(level)))
        level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        lv += 1
