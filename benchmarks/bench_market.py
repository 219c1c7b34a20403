"""Market clearing time: every mechanism on one market of single-unit bids.

Prints one JSON document: the machine (core count, Python/NumPy versions, platform),
the market (buyers, sellers, seed) and, per mechanism, the median, minimum and maximum
wall time of ``repeats`` clearings of the same bids (``Bids`` built once, outside the
timing; its validation is timed on its own as ``bids_build_ms``), with the clearing's
units traded and welfare as a check that the runs did the work.

    python benchmarks/bench_market.py                              # 5,000 + 5,000 bids
    python benchmarks/bench_market.py --buyers 50000 --sellers 50000 --repeats 5

Values and costs per unit are uniform on [0, 1): about half the unit bids trade.
Target: McAfee clears 10,000 bids (5,000 buyers + 5,000 sellers) in <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from twinedge.market import Bids, Greedy, McAfee, PostedPrice


def timed_ms(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--buyers", type=int, default=5000, help="buyer bids (default 5000)")
    ap.add_argument("--sellers", type=int, default=5000, help="seller bids (default 5000)")
    ap.add_argument("--repeats", type=int, default=21, help="clearings timed per mechanism")
    ap.add_argument("--seed", type=int, default=0, help="seed of the values and costs")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    values, costs = rng.random(args.buyers), rng.random(args.sellers)
    build = timed_ms(lambda: Bids(values, costs), args.repeats)
    bids = Bids(values, costs)
    results = {}
    for mech in (McAfee(), Greedy(), PostedPrice(0.5)):
        clearing = mech.clear(bids, np.random.default_rng(1))  # warm-up, and the check
        times = timed_ms(lambda m=mech: m.clear(bids, np.random.default_rng(1)), args.repeats)
        results[mech.name] = {
            "median_ms": round(statistics.median(times), 3),
            "min_ms": round(min(times), 3),
            "max_ms": round(max(times), 3),
            "units_traded": clearing.units_traded,
            "welfare": round(clearing.welfare, 6),
            "optimal_welfare": round(clearing.optimal_welfare, 6),
        }
    report = {
        "benchmark": "market",
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
        "market": {
            "buyers": args.buyers,
            "sellers": args.sellers,
            "bids": args.buyers + args.sellers,
            "repeats": args.repeats,
            "seed": args.seed,
        },
        "bids_build_ms": round(statistics.median(build), 3),
        "mechanisms": results,
        "target": {"mcafee_median_ms_at_most": 50.0, "met": results["mcafee"]["median_ms"] <= 50.0},
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
