"""Benchmark of the governance ledger: append throughput, proofs, full verification.

Prints one JSON document: machine (os.cpu_count, python/sqlite/cryptography versions),
parameters, measured numbers and the targets of docs/benchmarks.md (## Ledger).

    python benchmarks/bench_ledger.py                  # 1,000,000 entries
    python benchmarks/bench_ledger.py --quick          # 100,000 entries, fewer samples
    python benchmarks/bench_ledger.py --entries 200000 --batch 5000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from twinedge.ledger import LedgerDir, merkle


def _entries(domain: str, start: int, count: int) -> list[dict[str, Any]]:
    """Placement-like entries as the simulator writes them."""
    return [
        {
            "type": "placement",
            "domain": domain,
            "time": i * 0.01,
            "actor": "twinedge-run",
            "body": {
                "twin": f"e{i % 5000}",
                "owner": "d2",
                "host": f"edge-{i % 97}",
                "tier": "edge",
                "cpu_ghz": 0.5,
                "mem_gb": 1.0,
            },
        }
        for i in range(start, start + count)
    ]


def bench_append(root: Path, n: int, batch: int, sync: str) -> tuple[LedgerDir, dict[str, Any]]:
    ld = LedgerDir.create(root / f"ledger-{sync.lower()}", ["d1"], synchronous=sync)  # type: ignore[arg-type]
    log = ld.log("d1")
    busy = 0.0
    for start in range(0, n, batch):
        ents = _entries("d1", start, min(batch, n - start))  # built outside the timing
        t = time.perf_counter()
        log.append_many(ents)
        busy += time.perf_counter() - t
    t = time.perf_counter()
    ld.checkpoint("d1")
    sign_s = time.perf_counter() - t
    size_mb = (root / f"ledger-{sync.lower()}" / "d1" / "log.sqlite").stat().st_size / 1e6
    return ld, {
        "synchronous": sync,
        "entries": n,
        "batch": batch,
        "seconds": round(busy, 3),
        "entries_per_s": round(n / busy),
        "checkpoint_sign_s": round(sign_s, 4),
        "file_mb": round(size_mb, 1),
    }


def _stats(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "mean_ms": round(statistics.fmean(s) * 1e3, 4),
        "p50_ms": round(s[len(s) // 2] * 1e3, 4),
        "p99_ms": round(s[min(len(s) - 1, int(len(s) * 0.99))] * 1e3, 4),
        "max_ms": round(s[-1] * 1e3, 4),
    }


def bench_proofs(ld: LedgerDir, samples: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    log = ld.log("d1")
    n = log.size
    root = log.root()
    gen_i, ver_i, gen_c, ver_c = [], [], [], []
    for _ in range(samples):
        i = rng.randrange(n)
        leaf = merkle.leaf_hash(log.entry_bytes(i))
        t = time.perf_counter()
        proof = log.inclusion_proof(i)
        gen_i.append(time.perf_counter() - t)
        t = time.perf_counter()
        ok = merkle.verify_inclusion(leaf, i, n, proof, root)
        ver_i.append(time.perf_counter() - t)
        assert ok
        m = rng.randrange(1, n)
        old_root = log.root(m)
        t = time.perf_counter()
        cproof = log.consistency_proof(m)
        gen_c.append(time.perf_counter() - t)
        t = time.perf_counter()
        ok = merkle.verify_consistency(m, n, old_root, root, cproof)
        ver_c.append(time.perf_counter() - t)
        assert ok
    return {
        "tree_size": n,
        "samples": samples,
        "inclusion_generate": _stats(gen_i),
        "inclusion_verify": _stats(ver_i),
        "consistency_generate": _stats(gen_c),
        "consistency_verify": _stats(ver_c),
    }


def bench_verify(ld: LedgerDir) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for check in (True, False):
        t = time.perf_counter()
        rep = ld.verify(["d1"], check_entries=check)[0]
        dt = time.perf_counter() - t
        assert rep.ok, rep.problems
        key = "with_entry_check_s" if check else "hashes_only_s"
        out[key] = round(dt, 2)
        out["entries"] = rep.size
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000, help="log size (default 1e6)")
    ap.add_argument("--batch", type=int, default=10_000, help="entries per append_many")
    ap.add_argument("--samples", type=int, default=2_000, help="proofs to time")
    ap.add_argument("--quick", action="store_true", help="100k entries, 300 proof samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", type=Path, default=None, help="where to build (default: tmp)")
    args = ap.parse_args(argv)
    if args.quick:
        args.entries = min(args.entries, 100_000)
        args.samples = min(args.samples, 300)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        ld_normal, app_normal = bench_append(root, args.entries, args.batch, "NORMAL")
        ld_full, app_full = bench_append(root, args.entries, args.batch, "FULL")
        ld_full.close()
        proofs = bench_proofs(ld_normal, args.samples, args.seed)
        verify = bench_verify(ld_normal)
        ld_normal.close()
    result = {
        "benchmark": "ledger",
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            "cryptography": version("cryptography"),
        },
        "parameters": {
            "entries": args.entries,
            "batch": args.batch,
            "samples": args.samples,
            "seed": args.seed,
        },
        "append": [app_normal, app_full],
        "proofs": proofs,
        "verify": verify,
        "targets": {
            "append_entries_per_s>=100000 (NORMAL)": app_normal["entries_per_s"] >= 100_000,
            "append_entries_per_s>=100000 (FULL)": app_full["entries_per_s"] >= 100_000,
            "proofs_p99<1ms": all(
                proofs[k]["p99_ms"] < 1.0
                for k in (
                    "inclusion_generate",
                    "inclusion_verify",
                    "consistency_generate",
                    "consistency_verify",
                )
            ),
            "verify<30s": verify["with_entry_check_s"] < 30,
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
