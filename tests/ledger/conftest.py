"""Shared fixtures of the ledger tests: small ledgers built in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ledger.ledger_helpers import make_entry
from twinedge.ledger import LedgerDir


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """A ledger dir with domains a, b: 50 entries in a, 5 in b, witnessed checkpoints."""
    path = tmp_path / "ledger"
    with LedgerDir.create(path, ["a", "b"]) as ld:
        ld.log("a").append_many([make_entry("a", i) for i in range(25)])
        ld.checkpoint("a")
        ld.log("a").append_many([make_entry("a", i) for i in range(25, 50)])
        ld.log("b").append_many([make_entry("b", i) for i in range(5)])
        ld.checkpoint("a")
        ld.checkpoint("b")
    return path
