"""Helpers shared by the ledger tests (a uniquely named module, not conftest)."""

from __future__ import annotations

from typing import Any


def make_entry(domain: str, i: int, **body: Any) -> dict[str, Any]:
    return {
        "type": "provenance",
        "domain": domain,
        "time": float(i),
        "actor": "test",
        "body": {"i": i, "marker": f"marker-{i:04d}", **body},
    }
