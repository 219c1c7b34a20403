"""`twinedge run --ledger`: every decision recorded, verifiable, and billable from the log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from twinedge.ledger import LedgerDir

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, check=True):
    p = subprocess.run(
        [sys.executable, "-m", "twinedge", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_run_records_every_decision_and_the_log_verifies_and_settles(tmp_path):
    led, out = tmp_path / "ledger", tmp_path / "out"
    cli(
        "run",
        "city-small",
        "--steps",
        12,
        "--migration",
        "threshold",
        "--out",
        out,
        "--ledger",
        led,
        "--ledger-every",
        5,
        "--quiet",
    )
    summary = json.loads((out / "summary.json").read_text())["policies"]["greedy+threshold"]
    domains = sorted(p.name for p in led.iterdir() if p.is_dir())
    assert domains == ["city-net", "metro-op"]
    counts = {"placement": 0, "migration": 0, "usage": 0, "policy": 0, "witness": 0}
    with LedgerDir.open(led) as ld:
        for d in domains:
            log = ld.log(d)
            for i in range(log.size):
                counts[log.entry(i)["type"]] += 1
    assert counts["placement"] == 200  # every twin of city-small placed once
    assert counts["migration"] == summary["migrations"]
    assert counts["usage"] == 12 + 2 + 1  # one per host: 12 edge, 2 region, 1 cloud
    assert counts["policy"] == 2 and counts["witness"] >= 2
    report = (out / "report.html").read_text()
    assert "Governance ledger" in report and f"twinedge ledger verify {led}" in report
    v = cli("ledger", "verify", led)
    assert v.stdout.count("verified") == 2
    a = cli("ledger", "settle", led, "--prices", ROOT / "examples" / "prices.yaml", "--json").stdout
    b = cli("ledger", "settle", led, "--prices", ROOT / "examples" / "prices.yaml", "--json").stdout
    assert a == b and "fleet" in a


def test_a_changed_byte_in_a_recorded_decision_fails_verification(tmp_path):
    led = tmp_path / "ledger"
    cli(
        "run",
        "city-small",
        "--steps",
        3,
        "--migration",
        "never",
        "--out",
        tmp_path / "o",
        "--ledger",
        led,
        "--quiet",
        "--no-report",
    )
    db = led / "metro-op" / "log.sqlite"
    raw = db.read_bytes()
    i = raw.find(b'"placement"')
    assert i > 0
    db.write_bytes(raw[:i] + b'"placemenT"' + raw[i + len(b'"placement"') :])
    p = cli("ledger", "verify", led, check=False)
    assert p.returncode != 0
    assert "metro-op" in p.stdout + p.stderr
