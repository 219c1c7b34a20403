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
    if script == "bench_edge_ingest.py":  # the core's /metrics and each host's /status
        assert_gc_pauses(r["gc_pauses"])


def assert_gc_pauses(pauses):
    assert sorted(pauses) == ["core", "edge-1", "edge-2"]
    for gens in pauses.values():
        assert sorted(gens) == ["0", "1", "2"]
        assert all(g["count"] >= 0 and g["max_ms"] >= 0 for g in gens.values())
    # every process collects its youngest generation within seconds of running
    assert all(gens["0"]["count"] > 0 for gens in pauses.values()), pauses


@pytest.mark.parametrize("method", ["pre-copy", "stop-and-copy"])
def test_the_migration_benchmark_moves_twins_and_loses_no_acknowledged_report(method):
    # 4 devices shuttling 3 km at 1,500 m/s: each crosses the midpoint every 2 s
    out = bench(
        "bench_edge_migration.py", "--devices", "4", "--rate-hz", "5", "--speed-mps", "1500",
        "--duration-s", "3", "--warmup-s", "2", "--state-bytes", "2000", "--phases",
        "--migration-method", method,
    )  # fmt: skip
    assert out["benchmark"] == "edge_migration"
    (r,) = out["results"]
    assert r["devices"] == 4 and r["offered_reports_per_s"] == 20.0 and r["speed_mps"] == 1500.0
    assert r["migration_method"] == method
    # the steps of each cut-over are traced for pre-copy (stop-and-copy has its parts in
    # the ledger's handover entries)
    assert (r["migration_phases_ms"] is not None) == (method == "pre-copy")
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
    assert_gc_pauses(r["gc_pauses"])
    cpu = r["cpu_ms_per_acked_report"]
    assert set(cpu) >= {"core", "edge-1", "edge-2", "load generator", "all"}
    assert set(r["replication_lag_s"]) == {"edge-1", "edge-2"}


def test_the_host_benchmark_replicates_every_record_it_commits():
    """4 twins at 20 reports/s for 1 s of warm-up and 1 s measured: twin i's reports are
    due at (k + phase_i) * 0.2 s for k = 0..9 (10 each, 40 in all), those from 1 s on
    (k = 5..9) measured; the records are the 4 placements and the 40 reports."""
    out = bench(
        "bench_host.py", "--twins", "4", "--rates", "20", "--duration-s", "1",
        "--warmup-s", "1", "--mode", "apply",
    )  # fmt: skip
    assert out["benchmark"] == "host"
    (r,) = out["results"]
    assert (r["mode"], r["offered_reports_per_s"], r["commit"]) == ("apply", 20.0, "default")
    assert r["reports_measured"] == 20
    assert r["records_committed"] == r["replicated_records"] == 44
    assert r["records_per_commit"] >= 1
    assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
    assert r["cpu_ms_per_report"] > 0


def test_the_host_benchmark_over_mqtt_acknowledges_and_replicates_every_report():
    out = bench(
        "bench_host.py", "--twins", "4", "--rates", "20", "--duration-s", "1",
        "--warmup-s", "1", "--mode", "mqtt",
    )  # fmt: skip
    (r,) = out["results"]
    assert r["mode"] == "mqtt" and r["unacked_at_end"] == 0
    # 4 devices at 5/s for 2 s send at most 40 reports, about 20 of them measured
    assert 0 < r["reports_measured"] <= 40
    # every record committed (4 placements, then every report, measured or not) replicated
    assert 4 + r["reports_measured"] <= r["records_committed"] <= 44
    assert r["replicated_records"] == r["records_committed"]
    assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]


def test_the_replica_benchmark_applies_every_record_it_sends():
    """20 records measured per size after the warm-up (2 records, at least one request):
    1 per request is 20 requests; 7 per request sends 27 records as 7+7+7+6, the first
    request the warm-up, so 3 requests (7+7+6) are measured."""
    out = bench(
        "bench_replica.py", "--sizes", "1,7", "--records", "20", "--twins", "5",
        "--features", "1",
    )  # fmt: skip
    assert out["benchmark"] == "replica" and out["store"].startswith("sqlite")
    one, seven = out["results"]
    assert (one["records_per_request"], one["requests"], one["records"]) == (1, 20, 20)
    assert (seven["records_per_request"], seven["requests"], seven["records"]) == (7, 3, 20)
    for r in (one, seven):
        assert r["records_per_s"] > 0 and r["cpu_ms_per_record"] > 0
        assert r["cpu_ms_per_request"] == pytest.approx(
            r["cpu_ms_per_record"] * r["records"] / r["requests"], rel=0.01, abs=0.002
        )
