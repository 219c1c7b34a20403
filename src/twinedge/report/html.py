"""The HTML report: one self-contained file (inline SVG plots, no network access).

The plots are the paper figures of :mod:`twinedge.report.figures` at two-column width.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

# files, not windows; but a backend chosen for the process stays (Jupyter sets MPLBACKEND
# to its inline backend: importing twinedge must not stop a notebook's plots showing)
if not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from twinedge import __version__
from twinedge.engine.simulation import RunResult
from twinedge.report import figures
from twinedge.report.ranking import POLICY_INDEPENDENT, all_equal, unique_best


def _svg(pf: figures.PaperFigure) -> str:
    """A paper figure (two-column width) as inline SVG."""
    try:
        text = figures.render(pf, "svg").decode()
    finally:
        plt.close(pf.figure)
    return text[text.index("<svg") :]


def _cdf(results: list[RunResult]) -> str:
    with figures.paper_style():
        return _svg(figures.latency_cdf(results, columns=2))


def _over_time(results: list[RunResult]) -> str:
    with figures.paper_style():
        return _svg(figures.over_time(results, columns=2))


def _heatmaps(results: list[RunResult]) -> str:
    with figures.paper_style():
        return _svg(figures.utilisation(results, columns=2))


def _map(r: RunResult) -> str:
    with figures.paper_style():
        return _svg(figures.infrastructure_map(r, columns=2))


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222;padding:0 1em}
table{border-collapse:collapse;font-size:0.9em}td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}.best{color:#0a7d2c;font-weight:600}td.note{text-align:left;color:#666;font-size:0.9em}
code,pre{background:#f6f6f6;padding:2px 4px}pre{padding:8px;overflow-x:auto}
figure{margin:1.5em 0}figcaption{font-size:0.9em;color:#555}
"""

_ROWS = (
    ("mean latency (ms)", "mean_latency_ms", "{:.2f}", min),
    ("p50 (ms)", "p50_latency_ms", "{:.2f}", min),
    ("p95 (ms)", "p95_latency_ms", "{:.2f}", min),
    ("p99 (ms)", "p99_latency_ms", "{:.2f}", min),
    ("deadline-miss ratio", "deadline_miss_ratio", "{:.4f}", min),
    ("migrations", "migrations", "{:d}", min),
    ("migrations by re-placement", "replacement_migrations", "{:d}", None),
    ("migration downtime (s)", "migration_downtime_s", "{:.1f}", min),
    ("GB migrated", "bytes_migrated", "{:.2f}", min),
    ("device energy (J)", "device_energy_j", "{:.1f}", min),
    ("server energy (MJ)", "server_energy_j", "{:.3f}", min),
    ("mean utilisation", "mean_utilisation", "{:.3f}", None),
    ("max utilisation", "max_utilisation", "{:.3f}", None),
)

#: rows of a run with tasks (docs/offload.md)
_OFFLOAD_ROWS: tuple = (
    ("tasks", "offload_tasks", "{:d}", None),
    ("task deadline hit ratio", "offload_hit_ratio", "{:.4f}", max),
    ("task p50 (ms)", "offload_p50_latency_ms", "{:.2f}", min),
    ("task p95 (ms)", "offload_p95_latency_ms", "{:.2f}", min),
    ("task p99 (ms)", "offload_p99_latency_ms", "{:.2f}", min),
    ("task device energy (J)", "offload_device_energy_j", "{:.2f}", min),
    ("task server energy (J)", "offload_server_energy_j", "{:.2f}", min),
    ("task cost", "offload_cost", "{:.4f}", min),
    ("tasks offloaded", "offload_offloaded_ratio", "{:.3f}", None),
)


#: shown when the scenario has XR sessions (docs/xr.md)
_XR_ROWS: tuple[tuple[str, str, str, Callable | None], ...] = (
    ("XR sessions", "xr_sessions", "{:d}", None),
    ("XR experience (XRMI 1-5)", "xr_score", "{:.2f}", max),
    ("XR late-frame ratio", "xr_late_frame_ratio", "{:.4f}", min),
    ("XR time-warped-frame ratio", "xr_warped_frame_ratio", "{:.4f}", min),
    ("XR lost-frame ratio", "xr_lost_frame_ratio", "{:.4f}", min),
    ("XR stalls", "xr_stalls", "{:d}", min),
    ("XR p99 frame delay (ms)", "xr_p99_frame_delay_ms", "{:.2f}", min),
    ("XR jitter (ms)", "xr_jitter_ms", "{:.2f}", min),
    ("XR render moves", "xr_migrations", "{:d}", None),
)


#: shown when the scenario has a carbon section (docs/carbon.md)
_CARBON_ROWS: tuple[tuple[str, str, str, Callable | None], ...] = (
    ("server CO2 (g)", "carbon_server_g", "{:.1f}", min),
    ("server facility energy (MJ)", "carbon_server_facility_j", "{:.3f}", min),
    ("server mean intensity (g/kWh)", "carbon_server_g_per_kwh", "{:.1f}", min),
    ("device CO2 (g)", "carbon_device_g", "{:.2f}", min),
    ("delay-tolerant jobs", "carbon_jobs", "{:d}", None),
    ("job energy incl. PUE and transfer (kWh)", "carbon_jobs_energy_kwh", "{:.2f}", None),
    ("job CO2 (g)", "carbon_jobs_g", "{:.1f}", min),
    ("job CO2 at release, at origin (g)", "carbon_jobs_baseline_g", "{:.1f}", None),
    ("job CO2 saved (ratio)", "carbon_jobs_saving_ratio", "{:.4f}", max),
    ("jobs moved to another region", "carbon_jobs_moved", "{:d}", None),
    ("total CO2 (g)", "carbon_total_g", "{:.1f}", min),
)

#: shown when the scenario has a compute market (docs/market.md)
_MARKET_ROWS: tuple[tuple[str, str, str, Callable | None], ...] = (
    ("market periods", "market_periods", "{:d}", None),
    ("trades", "market_trades", "{:d}", None),
    ("units traded", "market_units_traded", "{:d}", None),
    ("mean buyer price per unit", "market_mean_buyer_price", "{:.6g}", None),
    ("mean seller price per unit", "market_mean_seller_price", "{:.6g}", None),
    ("gains from trade (welfare)", "market_welfare", "{:.6g}", max),
    ("efficiency (welfare / optimum)", "market_efficiency", "{:.4f}", max),
    ("buyers paid", "market_buyer_payments", "{:.6g}", None),
    ("sellers received", "market_seller_receipts", "{:.6g}", None),
    ("market operator's surplus", "market_surplus", "{:.6g}", None),
)


#: shown when the scenario has predictive sync (docs/sync.md)
_SYNC_ROWS: tuple[tuple[str, str, str, Callable | None], ...] = (
    ("sync threshold (m)", "sync_threshold_m", "{:.2f}", None),
    ("sync reports sent", "sync_reports", "{:d}", min),
    ("sync uplink bytes", "sync_bytes", "{:d}", min),
    ("sync bytes saved (ratio)", "sync_bytes_saved", "{:.4f}", max),
    ("sync mean twin error (m)", "sync_mean_error_m", "{:.3f}", min),
    ("sync max twin error (m)", "sync_max_error_m", "{:.3f}", min),
)


def table_rows(summaries: Sequence[Mapping[str, Any]]) -> tuple:
    """The rows of a comparison table (title, summary key, format, best-of): the engine's
    metrics, then those of the services every run in ``summaries`` has (offloading, XR, carbon, the market, predictive sync)."""
    rows: tuple = _ROWS
    for key, extra in (
        ("offload_tasks", _OFFLOAD_ROWS),
        ("xr_score", _XR_ROWS),
        ("carbon_server_g", _CARBON_ROWS),
        ("market_trades", _MARKET_ROWS),
        ("sync_reports", _SYNC_ROWS),
    ):
        if summaries and all(key in s for s in summaries):
            rows += extra
    return rows


def _table(results: list[RunResult]) -> str:
    """The comparison table: one policy alone at the best value is marked best (a tie is
    no winner); a metric that is the same for every policy says so, and why when it
    cannot differ."""
    head = "".join(f"<th>{html.escape(r.label)}</th>" for r in results)
    rows = []
    for title, key, fmt, best in table_rows([r.summary for r in results]):
        vals = [r.summary[key] for r in results]
        scale = (
            1e-9
            if key == "bytes_migrated"
            else 1e-6
            if key in ("server_energy_j", "carbon_server_facility_j")
            else 1
        )

        def shown(v: float, fmt: str = fmt, scale: float = scale) -> str:
            return fmt.format(int(v) if fmt == "{:d}" else v * scale)

        b = unique_best(vals, shown, best) if best else None
        cells = "".join(
            f'<td class="{"best" if i == b else ""}">{shown(v)}</td>' for i, v in enumerate(vals)
        )
        note = POLICY_INDEPENDENT.get(key, "")
        if not note and all_equal(vals, shown):
            note = "equal for every policy in this run"
        rows.append(f"<tr><td>{title}</td>{cells}<td class='note'>{html.escape(note)}</td></tr>")
    rows.append(
        "<tr><td>wall time (s)</td>"
        + "".join(f"<td>{r.wall_s:.2f}</td>" for r in results)
        + "<td></td></tr>"
    )
    return f"<table><tr><th>metric</th>{head}<th></th></tr>{''.join(rows)}</table>"


def write_report(results: list[RunResult], path: Path, *, summary: dict, extra: dict) -> Path:
    w = results[0].world
    tiers = {
        name: int(np.count_nonzero(w.host_tier == c))
        for c, name in ((1, "edge"), (2, "region"), (3, "cloud"))
    }
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>twinedge report: {html.escape(summary['scenario'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>twinedge report — {html.escape(summary['scenario'])}</h1>",
        f"<p>{w.n_entities:,} entities ({', '.join(html.escape(k) for k in w.kinds)}), {w.access.size} access points, "
        f"hosts: {tiers['edge']} edge, {tiers['region']} region, {tiers['cloud']} cloud; "
        f"{summary['steps']} steps; seed {summary['seed']}; twinedge {__version__}.</p>",
        "<h2>Policies compared</h2>",
        _table(results),
        "<p>Latency is the time from a device's state update to its processing by the twin: uplink + backbone + host processing (with queueing), "
        "plus any remaining migration downtime. A deadline miss is a twin-step above the twin's <code>latency_req_ms</code>. "
        "A value is marked best only when one policy alone reaches it. Migrations include the moves of every periodic re-placement "
        "(the spikes at the end of each placement period); no decision is taken in the last step, whose effect would fall after the run.</p>",
        f"<figure>{_cdf(results)}<figcaption>Latency CDF over all twin-steps, per policy.</figcaption></figure>",
        f"<figure>{_over_time(results)}<figcaption>Migrations and deadline misses over time.</figcaption></figure>",
        f"<figure>{_heatmaps(results)}<figcaption>CPU utilisation of every host over time (hosts sorted by tier, then capacity).</figcaption></figure>",
        f"<figure>{_map(results[0])}<figcaption>Infrastructure map and sample entity trails ({html.escape(results[0].label)}).</figcaption></figure>",
    ]
    ledger = extra.get("ledger")
    if ledger:
        parts.append("<h2>Governance ledger</h2>")
        parts.append(ledger)
    parts.append("</body></html>")
    path.write_text("\n".join(parts))
    return path
