"""Settlement recomputed from the logs, checked against totals computed by hand."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twinedge.errors import LedgerError
from twinedge.ledger import LedgerDir, PriceTable, settle
from twinedge.ledger.cli import app

runner = CliRunner()

PRICES = {
    "currency": "EUR",
    "tiers": {
        "edge": {
            "per_cpu_ghz_s": "0.001",
            "per_mem_gb_s": "0.0005",
            "per_migrated_gb": "0.05",
            "per_kwh": "0.30",
        },
        "region": {
            "per_cpu_ghz_s": "0.0008",
            "per_mem_gb_s": "0.0004",
            "per_migrated_gb": "0.02",
            "per_kwh": "0.20",
        },
    },
}


def _tiny(tmp_path: Path, end: bool = True) -> Path:
    """Twin e17 of owner 'c': 10 s on an edge host of 'a' (0.5 GHz, 1 GB), then migrates
    100 MB to a region host of 'b' and runs there until t = 20 s."""
    path = tmp_path / "L"
    with LedgerDir.create(path, ["a", "b", "c"]) as ld:
        entries = [
            {
                "type": "placement",
                "domain": "a",
                "time": 0.0,
                "actor": "twinedge-run",
                "body": {
                    "twin": "e17",
                    "owner": "c",
                    "host": "edge-3",
                    "tier": "edge",
                    "cpu_ghz": 0.5,
                    "mem_gb": 1.0,
                },
            },
            {
                "type": "migration",
                "domain": "b",
                "time": 10.0,
                "actor": "twinedge-run",
                "body": {
                    "twin": "e17",
                    "owner": "c",
                    "from_host": "edge-3",
                    "from_tier": "edge",
                    "from_domain": "a",
                    "to_host": "region-1",
                    "to_tier": "region",
                    "cpu_ghz": 0.5,
                    "mem_gb": 1.0,
                    "bytes": 100_000_000,
                    "downtime_s": 0.02,
                },
            },
            {
                "type": "usage",
                "domain": "a",
                "time": 10.0,
                "body": {"host": "edge-3", "tier": "edge", "energy_j": 36000.0, "from_time": 0.0},
            },
        ]
        if end:
            entries.append(
                {"type": "policy", "domain": "b", "time": 20.0, "body": {"event": "end"}}
            )
        ld.append_many(entries)
        ld.checkpoint_all()
    return path


def test_hand_computed_bill(tmp_path: Path) -> None:
    path = _tiny(tmp_path)
    bills = settle(path, PriceTable.from_dict(PRICES))
    # edge, 10 s: cpu 0.5*10 = 5 GHz*s * 0.001 = 0.005; mem 1*10 = 10 GB*s * 0.0005 = 0.005
    # migration: 0.1 GB * 0.02 (destination tier region) = 0.002
    # region, 10 s: cpu 5 * 0.0008 = 0.004; mem 10 * 0.0004 = 0.004
    # energy: 36000 J = 0.01 kWh * 0.30 = 0.003, paid by a to the grid
    a, b, c = bills.bills["a"], bills.bills["b"], bills.bills["c"]
    assert (a.earns_micro, a.owes_micro) == (10_000, 3_000)
    assert (b.earns_micro, b.owes_micro) == (10_000, 0)
    assert (c.earns_micro, c.owes_micro) == (0, 20_000)
    assert bills.until == Decimal("20.0")
    items = {(li.kind, li.payee, li.tier): (li.quantity, li.amount_micro) for li in bills.lines}
    assert items[("cpu", "a", "edge")] == (Decimal("5"), 5000)
    assert items[("memory", "b", "region")] == (Decimal("10"), 4000)
    assert items[("migration", "b", "region")] == (Decimal("0.1"), 2000)
    assert items[("energy", "(grid)", "edge")] == (Decimal("0.01"), 3000)
    d = bills.to_dict()
    assert d["bills"]["c"]["owes"] == "0.020000"
    assert set(d["inputs"]) == {"a", "b", "c"}


def test_until_cuts_the_run_and_prorates_energy(tmp_path: Path) -> None:
    path = _tiny(tmp_path, end=False)
    with pytest.raises(LedgerError, match="--until"):
        settle(path, PriceTable.from_dict(PRICES))
    bills = settle(path, PriceTable.from_dict(PRICES), until=5)
    # 5 s on the edge only: cpu 2.5 * 0.001 = 0.0025, mem 5 * 0.0005 = 0.0025
    assert bills.bills["c"].owes_micro == 5000
    # half of the usage interval [0, 10]: 0.005 kWh * 0.30 = 0.0015
    assert bills.bills["a"].owes_micro == 1500
    bills = settle(path, PriceTable.from_dict(PRICES), until=15)
    assert bills.bills["c"].owes_micro == 5000 + 5000 + 2000 + 2000 + 2000


def test_settlement_is_reproducible_and_recordable(tmp_path: Path) -> None:
    path = _tiny(tmp_path)
    table = PriceTable.from_dict(PRICES)
    first = settle(path, table)
    again = settle(path, table)
    assert first.to_dict() == again.to_dict()
    with LedgerDir.open(path) as ld:
        ld.append_many(first.settlement_entries())
        ld.checkpoint_all()
        assert all(r.ok for r in ld.verify())
    # settlement and witness entries do not change the totals; the heads are recorded
    later = settle(path, table)
    assert {d: b.to_dict()["owes"] for d, b in later.bills.items()} == {
        d: b.to_dict()["owes"] for d, b in first.bills.items()
    }
    recorded = {d: v["size"] for d, v in first.inputs.items()}
    assert settle(path, table, sizes=recorded).digest == first.digest


def test_price_table_files_and_errors(tmp_path: Path) -> None:
    y = tmp_path / "p.yaml"
    y.write_text(
        "currency: EUR\ntiers:\n  edge: {per_cpu_ghz_s: 0.00001, per_mem_gb_s: 0.000002,"
        " per_migrated_gb: 0.02, per_kwh: 0.3}\n"
    )
    t = PriceTable.load(y)
    assert t.tiers["edge"].per_cpu_ghz_s == Decimal("0.00001")
    j = tmp_path / "p.json"
    j.write_text(json.dumps(PRICES))
    assert PriceTable.load(j).tiers["region"].per_kwh == Decimal("0.20")
    bad = json.loads(json.dumps(PRICES))
    del bad["tiers"]["edge"]["per_kwh"]
    with pytest.raises(LedgerError, match=r"tiers\.edge: missing field 'per_kwh'"):
        PriceTable.from_dict(bad)
    bad["tiers"]["edge"]["per_kwh"] = "-1"
    with pytest.raises(LedgerError, match="must not be negative"):
        PriceTable.from_dict(bad)
    with pytest.raises(LedgerError, match="cannot be read"):
        PriceTable.load(tmp_path / "missing.yaml")
    only_edge = {"tiers": {"edge": PRICES["tiers"]["edge"]}}
    with pytest.raises(LedgerError, match="no tier 'region'"):
        settle(_tiny(tmp_path), PriceTable.from_dict(only_edge))


def test_settle_cli(tmp_path: Path) -> None:
    path = _tiny(tmp_path)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    r = runner.invoke(app, ["settle", str(path), "--prices", str(prices), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["bills"]["c"]["owes_micro"] == 20000
    r = runner.invoke(app, ["settle", str(path), "-p", str(prices), "--append"])
    assert r.exit_code == 0 and "c: owes 0.020000" in r.output
    with LedgerDir.open(path) as ld:
        assert [e["body"]["owes"] for _, e in ld.log("c").find_type("settlement")] == ["0.020000"]
    r = runner.invoke(app, ["settle", str(path), "-p", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2 and r.output.startswith("error: price table")
