"""Attention-guided sharing: value-weighted staleness at a budget of a share (10 %) of the
full update stream, against distance-based interest sets (Donnybrook) and against sending
everything, on the built-in city's movements and, when present, on iFogSim2's Melbourne
user paths (each path walked by ``--copies`` users at random phases).

Prints one JSON object: machine (cores, versions), then per source the full stream, the
budget, every policy's bytes and value-weighted staleness, and ``ratio`` (attention /
interest sets of Donnybrook's size 5) and ``ratio_best`` (attention / the best size).
Also the wall time of each source's comparison and two attention variants (``variants``:
staleness weight 2; staleness weight 2 without the change term and without the bound).
docs/attention.md defines the measure.

    python benchmarks/bench_attention.py                    # city 60 s + iFogSim2 paths
    python benchmarks/bench_attention.py --ticks 200 --subscribers 8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy

from twinedge import __version__
from twinedge.attention import Weights
from twinedge.attention.sim import Setup, city_movements, compare, path_movements, run_policy

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TWINEDGE_DATASETS", ROOT.parent / "shared" / "datasets"))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="city-small")
    ap.add_argument("--ticks", type=int, default=600, help="ticks of the city run")
    ap.add_argument("--tick-s", type=float, default=0.1, help="tick of the city run, s")
    ap.add_argument("--subscribers", type=int, default=20)
    ap.add_argument("--share", type=float, default=0.1, help="budget / full stream")
    ap.add_argument("--copies", type=int, default=30, help="users per iFogSim2 path")
    ap.add_argument("--datasets", type=Path, default=DATASETS)
    args = ap.parse_args(argv)
    setup = Setup(subscribers=args.subscribers, budget_share=args.share)
    out: dict = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "twinedge": __version__,
            "platform": platform.platform(),
        },
        "runs": [],
    }
    sources = [
        ("city", lambda: city_movements(args.scenario, ticks=args.ticks, tick_s=args.tick_s))
    ]
    paths = sorted((args.datasets / "ifogsim2-melbourne").glob("*usersLocation-melbCBD_*.csv"))
    if paths:
        sources.append(
            ("ifogsim2", lambda: path_movements(paths, copies=args.copies, ticks=600, tick_s=1.0))
        )
    else:
        out["skipped"] = f"iFogSim2 user paths not found under {args.datasets}"
    for name, make in sources:
        mov = make()
        t0 = time.perf_counter()
        r = compare(mov, setup)
        r["wall_s"] = time.perf_counter() - t0
        # variants, for reference: the staleness weight of the square-root rule
        # (value x age^2), and that without the change term and without the bound
        r["variants"] = []
        for w, bound in (((1, 1, 1, 2), setup.max_staleness_s), ((1, 1, 0, 2), math.inf)):
            v = replace(setup, weights=Weights(*w), max_staleness_s=bound)
            o = run_policy(mov, v, "attention")
            r["variants"].append(
                {
                    "weights": list(w),
                    "max_staleness_s": bound if math.isfinite(bound) else None,
                    "vws_s": o.vws_s,
                    "max_stale_s": o.max_stale_s,
                }
            )
        r["name"] = name
        out["runs"].append(r)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
