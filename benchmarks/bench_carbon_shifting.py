"""Reproduce "Let's Wait Awhile" (Wiesner et al., Middleware 2021) with twinedge's carbon
scheduler, and extend it with spatial shifting. Prints JSON.

Reads the paper's carbon-intensity files (``ger_ci.csv``, ``gb_ci.csv``, ``fr_ci.csv``)
from ``--data`` (default: ``$TWINEDGE_DATASETS/carbon-intensity``, else
``../shared/datasets/carbon-intensity`` next to the project). For each country it
prints the 2020 mean intensity, the nightly-job savings per flexibility window and the
ML-job savings, each next to the number the paper's repository publishes, and the
largest gap in percentage points. ``--quick`` leaves out the runs with forecast error
(ten seeds each; the published nightly and ML figures are with 5 % error) and the
spatial extension.

    python benchmarks/bench_carbon_shifting.py [--data DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from twinedge.carbon import paper

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = (
    Path(os.environ.get("TWINEDGE_DATASETS", ROOT.parent / "shared" / "datasets"))
    / "carbon-intensity"
)


def gaps(result: dict) -> dict[str, float]:
    """The largest |ours - published| (percentage points, or g/kWh for means) per kind."""
    means = max(abs(v["ours"] - v["published"]) for v in result["mean_2020_g_per_kwh"].values())
    out = {"mean_2020_g_per_kwh": means}
    rows = [row for ml in result["ml"].values() for row in ml.values()]
    keys = ("non_interrupting", "interrupting")
    out["ml_perfect_pp"] = max(
        abs(r["perfect_forecast"][k] - r["published_perfect_forecast"][k])
        for r in rows
        for k in keys
    )
    if "error_5pct" in rows[0]:
        out["nightly_error_5pct_pp"] = max(
            abs(a - b)
            for n in result["nightly"].values()
            for a, b in zip(n["error_5pct"], n["published_error_5pct"], strict=True)
        )
        out["ml_error_5pct_pp"] = max(
            abs(r["error_5pct"][k] - r["published_error_5pct"][k]) for r in rows for k in keys
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=DEFAULT, help="folder of ger_ci.csv, gb_ci.csv, fr_ci.csv"
    )
    ap.add_argument(
        "--quick", action="store_true", help="perfect forecasts only; no spatial extension"
    )
    args = ap.parse_args()
    missing = [f for f in paper.FILES.values() if not (args.data / f).is_file()]
    if missing:
        print(
            f"error: {args.data}: missing {', '.join(missing)} (pass --data or set TWINEDGE_DATASETS)",
            file=sys.stderr,
        )
        return 2
    t0 = time.perf_counter()
    result = paper.reproduce(args.data, errors=not args.quick)
    if not args.quick:
        result["spatial"] = paper.spatial_extension(args.data)
    result["max_gap"] = gaps(result)
    result["benchmark"] = "carbon_shifting"
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["machine"] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
