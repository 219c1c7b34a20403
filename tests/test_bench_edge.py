"""The edge-tier benchmarks run end to end on a tiny load (real core, host processes and
devices; the numbers themselves are for docs/benchmarks.md, not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench(script: str, *args: str) -> dict:
    p = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True, text=True, timeout=600, cwd=ROOT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["cores"] >= 1 and out["python"]
    return out


@pytest.mark.parametrize(
    "script", ["bench_edge.py", "bench_edge_ingest.py"], ids=["emulator", "raw-mqtt"]
)
def test_the_edge_benchmarks_measure_every_acknowledged_report(script):
    out = bench(script, "--devices", "4", "--rates", "5", "--duration-s", "2", "--warmup-s", "1")
    (r,) = out["results"]
    assert r["devices"] == 4 and r["offered_reports_per_s"] == 20.0
    assert r["unacked_at_end"] == 0
    # 4 devices at 5/s for the 2 measured seconds: about 40 reports, each acknowledged
    assert 20 <= r["acked_per_s"] * r["duration_s"] <= 60, r
    assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
    cpu = r["cpu_ms_per_acked_report"]
    assert set(cpu) >= {"core", "edge-1", "edge-2", "all"}
    assert cpu["all"] == pytest.approx(sum(v for k, v in cpu.items() if k != "all"), abs=0.01)


def test_the_migration_benchmark_moves_twins_and_loses_no_acknowledged_report():
    # 4 devices shuttling 3 km at 1,500 m/s: each crosses the midpoint every 2 s
    out = bench(
        "bench_edge_migration.py", "--devices", "4", "--rate-hz", "5", "--speed-mps", "1500",
        "--duration-s", "3", "--warmup-s", "2", "--state-bytes", "2000", "--phases",
    )  # fmt: skip
    assert out["benchmark"] == "edge_migration"
    (r,) = out["results"]
    assert r["devices"] == 4 and r["offered_reports_per_s"] == 20.0 and r["speed_mps"] == 1500.0
    assert r["unacked_at_end"] == 0
    # 4 devices x 5/s framed over the 3 measured seconds: 60 reports, each acknowledged
    assert 55 <= r["acked_per_s"] * r["duration_s"] <= 65, r
    assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
    # each twin carries the state it was given: 2,000 characters and its other fields
    assert 2000 < r["twin_bytes"]["p50"] < 4000
    assert r["live_migrations"] >= 1 and r["migrations_failed"] == 0
    assert r["migration_downtime_ms"]["p50"] > 0
    assert r["devices_saw"]["redirects_followed"] >= 1
    check = r["exactly_once"]
    assert check["twins_checked"] == 4 and check["reports_checked"] == r["reports_made"]
    assert check["acknowledged_lost"] == 0 and check["applied_twice"] == 0
    assert check["twins_seq_sum_mismatch"] == 0
    cpu = r["cpu_ms_per_acked_report"]
    assert set(cpu) >= {"core", "edge-1", "edge-2", "load generator", "all"}
    assert set(r["replication_lag_s"]) == {"edge-1", "edge-2"}
