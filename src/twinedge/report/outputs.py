"""Write a run's results: ``summary.json``, ``timeseries.csv``, ``timing.json``,
``report.html`` and, when asked, ``figures/`` (each figure as PDF/SVG/PNG with its data
as CSV; see :mod:`twinedge.report.figures`).

``summary.json`` holds only what the seed determines, so the same seed gives a
byte-identical file; wall-clock times go to ``timing.json`` (and the table and report).
"""

from __future__ import annotations

import csv
import json
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from twinedge import __version__
from twinedge.engine.metrics import STEP_COLUMNS, SUMMARY_KEYS
from twinedge.engine.simulation import RunResult
from twinedge.report.ranking import POLICY_INDEPENDENT, unique_best


def _round(v):
    if isinstance(v, float):
        return float(f"{v:.10g}")
    return v


def summary_dict(results: list[RunResult], scenario_name: str, seed: int, steps: int) -> dict:
    return {
        "twinedge": __version__,
        "scenario": scenario_name,
        "seed": seed,
        "steps": steps,
        "entities": results[0].world.n_entities if results else 0,
        "hosts": results[0].world.n_hosts if results else 0,
        "policies": {
            r.label: {
                k: _round(r.summary[k])
                # the engine's metrics first, then every one the scenario's services add
                # (offload_*, xr_*, carbon_*, market_*, sync_*), as sweeps keep them
                for k in (*SUMMARY_KEYS, *(k for k in r.summary if k not in SUMMARY_KEYS))
                if k in r.summary
            }
            for r in results
        },
    }


def write_outputs(
    results: list[RunResult],
    out_dir: Path,
    *,
    scenario_name: str,
    seed: int,
    steps: int,
    extra: dict | None = None,
    report: bool = True,
    figure_formats: Sequence[str] = (),
    figure_columns: int = 1,
) -> dict[str, Path]:
    """Write every output file of a run into ``out_dir``; return their paths.

    ``figure_formats`` (some of ``pdf``, ``svg``, ``png``) also writes every figure in
    those formats, with its data as CSV, into ``out_dir/figures`` at the width of
    ``figure_columns`` (1: 3.5 in, 2: 7.16 in); the returned ``figures`` is that folder.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "summary": out_dir / "summary.json",
        "timeseries": out_dir / "timeseries.csv",
        "timing": out_dir / "timing.json",
    }
    summary = summary_dict(results, scenario_name, seed, steps)
    paths["summary"].write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    with open(paths["timeseries"], "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["policy", "step", *STEP_COLUMNS])
        for r in results:
            for k, row in enumerate(r.metrics.step_values):
                wr.writerow([r.label, k + 1, *(f"{v:.6g}" for v in row)])
    timing = {
        "cores": __import__("os").cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "policies": {
            r.label: {"wall_s": round(r.wall_s, 3), "placements": r.placements} for r in results
        },
    }
    paths["timing"].write_text(json.dumps(timing, indent=2) + "\n")
    if report:
        from twinedge.report.html import write_report

        paths["report"] = write_report(
            results, out_dir / "report.html", summary=summary, extra=extra or {}
        )
    if figure_formats:
        from twinedge.report.figures import write_figures

        write_figures(results, out_dir / "figures", figure_formats, figure_columns)
        paths["figures"] = out_dir / "figures"
    return paths


def summary_table(results: list[RunResult]):
    """A rich table comparing the policies of a run."""
    from rich.table import Table

    t = Table(title="twinedge: policy comparison", header_style="bold")
    cols = [
        ("policy", None),
        ("mean ms", "mean_latency_ms"),
        ("p95 ms", "p95_latency_ms"),
        ("p99 ms", "p99_latency_ms"),
        ("miss %", "deadline_miss_ratio"),
        ("migrations", "migrations"),
        ("downtime s", "migration_downtime_s"),
        ("GB moved", "bytes_migrated"),
        ("device J", "device_energy_j"),
        ("server MJ", "server_energy_j"),
        ("util mean/max", None),
        ("wall s", None),
    ]
    tasks = any("offload_tasks" in r.summary for r in results)
    if tasks:
        cols[-1:-1] = [("task hit %", None), ("task p95 ms", None), ("task device J", None)]
    xr = all("xr_score" in r.summary for r in results)
    if xr:  # a scenario with XR sessions
        cols += [("XRMI", None), ("XR late %", None), ("stalls", None), ("p99 frame ms", None)]
    carbon = all("carbon_server_g" in r.summary for r in results)
    if carbon:  # a scenario with a carbon section: grams next to energy
        cols += [("server gCO2", None), ("jobs gCO2", None), ("jobs saved %", None)]
    market = all("market_trades" in r.summary for r in results)
    if market:  # a scenario with a compute market
        cols += [("trades", None), ("units", None), ("price", None), ("efficiency %", None)]
    for name, _ in cols:
        t.add_column(name, justify="left" if name == "policy" else "right")

    def miss_pct(v: float) -> str:
        return f"{100 * v:.2f}"

    misses = [r.summary["deadline_miss_ratio"] for r in results]
    best_miss = unique_best(misses, miss_pct)  # a tie is no winner
    for i, r in enumerate(results):
        s = r.summary
        miss = miss_pct(s["deadline_miss_ratio"])
        t.add_row(
            r.label,
            f"{s['mean_latency_ms']:.2f}",
            f"{s['p95_latency_ms']:.2f}",
            f"{s['p99_latency_ms']:.2f}",
            f"[green]{miss}[/]" if i == best_miss else miss,
            f"{s['migrations']}",
            f"{s['migration_downtime_s']:.1f}",
            f"{s['bytes_migrated'] / 1e9:.1f}",
            f"{s['device_energy_j']:.0f}",
            f"{s['server_energy_j'] / 1e6:.2f}",
            f"{s['mean_utilisation']:.2f}/{s['max_utilisation']:.2f}",
            *(
                (
                    f"{100 * s.get('offload_hit_ratio', float('nan')):.2f}",
                    f"{s.get('offload_p95_latency_ms', float('nan')):.2f}",
                    f"{s.get('offload_device_energy_j', float('nan')):.1f}",
                )
                if tasks
                else ()
            ),
            f"{r.wall_s:.1f}",
            *(
                (
                    f"{s['xr_score']:.2f}",
                    f"{100 * s['xr_late_frame_ratio']:.2f}",
                    f"{s['xr_stalls']}",
                    f"{s['xr_p99_frame_delay_ms']:.1f}",
                )
                if xr
                else ()
            ),
            *(
                (
                    f"{s['carbon_server_g']:.0f}",
                    f"{s['carbon_jobs_g']:.0f}",
                    f"{100 * s['carbon_jobs_saving_ratio']:.1f}",
                )
                if carbon
                else ()
            ),
            *(
                (
                    f"{s['market_trades']}",
                    f"{s['market_units_traded']}",
                    f"{s['market_mean_buyer_price']:.4g}",
                    f"{100 * s['market_efficiency']:.1f}",
                )
                if market
                else ()
            ),
        )
    if len(results) > 1:
        notes = [f"device J: {POLICY_INDEPENDENT['device_energy_j']}"]
        replaced = [r.summary.get("replacement_migrations", 0) for r in results]
        if any(replaced):
            notes.append(
                "migrations include the re-placements' moves ("
                + ", ".join(f"{r.label} {n}" for r, n in zip(results, replaced, strict=True))
                + ")"
            )
        t.caption = "; ".join(notes)
    return t
