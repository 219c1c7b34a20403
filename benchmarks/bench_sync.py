"""Predictive sync on real traces: uplink bytes saved against sending every sample.

For each trace, predictor (constant, first-order, second-order dead reckoning) and error
threshold (0.5, 1 and 5 m), with DIS's 5 s heartbeat and without a heartbeat, the
sender rule of :mod:`twinedge.sync` is replayed over every sample and compared with
sending every sample at the same rate (:func:`twinedge.sync.traces.simulate`). Traces:

* ``ifogsim2-10s``: iFogSim2's six Melbourne user paths (the 87-point path and the five
  100-point random ones), one point every 10 s as twinedge replays them; read from
  ``$TWINEDGE_DATASETS/ifogsim2-melbourne`` (default ``../shared/datasets`` beside the
  repository), left out with a reason when absent;
* ``ifogsim2-1s``: the same paths sampled every second (linear interpolation between
  the points, as ``twinedge run`` moves a trace entity);
* ``sumo-grid``: 50 vehicles for 600 s on a 5 x 5 grid of 200 m streets, Eclipse SUMO's
  1 s floating car data (``twinedge trace sumo --seed 0``), left out when SUMO is absent.

A last part times the vectorised sender alone: seconds per step of 100,000 entities.

    python benchmarks/bench_sync.py
    python benchmarks/bench_sync.py --no-sumo --entities 10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from twinedge import __version__
from twinedge.sync import SenderArray
from twinedge.sync.traces import Trace, load_traces, resample, simulate

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TWINEDGE_DATASETS", ROOT.parent / "shared" / "datasets"))
PREDICTORS = ("constant", "first-order", "second-order")
THRESHOLDS_M = (0.5, 1.0, 5.0)
HEARTBEATS_S = (5.0, None)


def traces(skipped: dict[str, str], sumo: bool = True) -> list[Trace]:
    """The traces that are available here; the others named in ``skipped`` with why."""
    out = []
    d = DATASETS / "ifogsim2-melbourne"
    paths = [d / "usersLocation-melbCBD_1.csv", *sorted(d.glob("random_usersLocation-*.csv"))]
    if all(p.is_file() for p in paths) and len(paths) == 6:
        native = load_traces(paths, name="ifogsim2-10s", path_step_s=10.0)
        out.append(native)
        one = resample(native, 1.0)
        out.append(Trace("ifogsim2-1s", one.ids, one.offsets, one.t_s, one.xy_m))
    else:
        skipped["ifogsim2"] = f"iFogSim2 user paths not found in {d}"
    if not sumo:
        skipped["sumo-grid"] = "left out (--no-sumo)"
        return out
    try:
        from twinedge.world.sumo import sumo_trace

        with tempfile.TemporaryDirectory() as tmp:
            csv_path = Path(tmp) / "sumo.csv"
            sumo_trace(csv_path, size=5, length_m=200.0, vehicles=50, duration_s=600.0, seed=0)
            out.append(load_traces([csv_path], name="sumo-grid"))
    except Exception as e:  # no SUMO here: say so and go on
        skipped["sumo-grid"] = f"Eclipse SUMO trace not made: {e}"
    return out


def sender_step_s(n: int = 100_000, steps: int = 20) -> float:
    """Median seconds of one :meth:`SenderArray.step` over ``n`` entities (first order,
    1 m, random walk at about 10 m/s)."""
    rng = np.random.default_rng(0)
    s = SenderArray(n, 2, 1, 1.0, 5.0)
    xy = rng.uniform(0, 1000, (n, 2))
    v = rng.normal(0, 10, (n, 2))
    times = []
    for k in range(steps):
        v += rng.normal(0, 1, (n, 2))
        xy += v
        t0 = time.perf_counter()
        s.step(float(k), xy)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-sumo", action="store_true", help="leave the SUMO trace out")
    ap.add_argument("--entities", type=int, default=100_000, help="entities of the sender timing")
    args = ap.parse_args()
    skipped: dict[str, str] = {}
    rows = []
    for tr in traces(skipped, sumo=not args.no_sumo):
        for hb in HEARTBEATS_S:
            for p in PREDICTORS:
                for th in THRESHOLDS_M:
                    rows.append({**simulate(tr, p, th, hb).row(), "entities": len(tr.ids)})
    step_s = sender_step_s(args.entities)
    print(
        json.dumps(
            {
                "benchmark": "sync",
                "machine": {
                    "cores": os.cpu_count(),
                    "python": sys.version.split()[0],
                    "platform": platform.platform(),
                    "twinedge": __version__,
                    "numpy": np.__version__,
                },
                "byte_model": {"header_bytes": 32, "number_bytes": 8},
                "results": rows,
                "skipped": skipped,
                "sender_array": {"entities": args.entities, "step_s": round(step_s, 6)},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
