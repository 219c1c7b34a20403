"""The report of a sweep: every metric as mean ± 95 % confidence interval across seeds
(Student t; see :mod:`twinedge.engine.sweep`), per policy and parameter point, and the
time series as mean lines with their confidence bands."""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

# files, not windows; but a backend chosen for the process stays (Jupyter sets MPLBACKEND
# to its inline backend: importing twinedge must not stop a notebook's plots showing)
if not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from twinedge import __version__
from twinedge.engine.metrics import STEP_COLUMNS
from twinedge.report import figures
from twinedge.report.html import _CSS, _svg, table_rows

if TYPE_CHECKING:
    from twinedge.engine.sweep import SweepResult

_COL = {c: i for i, c in enumerate(STEP_COLUMNS)}


def _fmt(fmt: str, v: float) -> str:
    if math.isnan(v):
        return "–"
    return fmt.format(v) if fmt != "{:d}" else f"{v:.1f}"


def _group_label(k: tuple, paths: list[str]) -> str:
    extra = [f"{p}={v}" for p, v in zip(paths, k[1:], strict=True) if v is not None]
    return k[0] + (f" ({', '.join(extra)})" if extra else "")


def sweep_table_html(result: SweepResult) -> str:
    """One row per metric, one column per policy and parameter point: ``mean ± ci95``."""
    from twinedge.engine.sweep import ci95

    groups = result.groups()
    head = "".join(
        f"<th>{html.escape(_group_label(k, result.param_paths))}<br>n={len(runs)}</th>"
        for k, runs in groups.items()
    )
    rows = []
    for title, key, fmt, _best in table_rows([r.summary for r in result.records]):
        scale = 1e-9 if key == "bytes_migrated" else 1e-6 if key == "server_energy_j" else 1
        cells = []
        for runs in groups.values():
            mean, half = ci95([r.summary[key] * scale for r in runs])
            ci = "" if math.isnan(half) else f" ± {_fmt(fmt, half)}"
            cells.append(f"<td>{_fmt(fmt, mean)}{ci}</td>")
        rows.append(f"<tr><td>{title}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def _bands(result: SweepResult) -> str:
    fig, axes = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    for k, band in result.timeseries_bands().items():
        label = _group_label(k, result.param_paths)
        mean, half = band["mean"], band["ci95"]
        t = mean[:, _COL["t_s"]]
        for ax, col in zip(axes, ("migrations", "deadline_misses"), strict=True):
            (line,) = ax.plot(t, mean[:, _COL[col]], lw=1, label=label)
            if not np.isnan(half[:, _COL[col]]).all():
                ax.fill_between(
                    t,
                    mean[:, _COL[col]] - half[:, _COL[col]],
                    mean[:, _COL[col]] + half[:, _COL[col]],
                    color=line.get_color(),
                    alpha=0.2,
                    lw=0,
                )
    axes[0].set_ylabel("migrations per step")
    axes[1].set_ylabel("deadline misses per step")
    axes[1].set_xlabel("virtual time (s)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _svg(figures.PaperFigure("over_time_bands", fig, ()))


def write_sweep_report(result: SweepResult, path: Path) -> Path:
    """Write the sweep's HTML report to ``path`` and return it."""
    rec = result.records[0]
    params = "; ".join(f"{p.path} ∈ {{{', '.join(map(str, p.values))}}}" for p in result.params)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>twinedge sweep: {html.escape(result.scenario)}</title><style>{_CSS}</style></head><body>",
        f"<h1>twinedge sweep — {html.escape(result.scenario)}</h1>",
        f"<p>{len(result.records)} runs: seeds {html.escape(_seeds_text(result.seeds))}"
        f"{'; ' + html.escape(params) if params else ''}; {result.steps} steps; "
        f"{rec.entities:,} entities, {rec.hosts} hosts (first run); twinedge {__version__}.</p>",
        "<h2>Policies compared (mean ± 95 % confidence interval across seeds)</h2>",
        sweep_table_html(result),
        "<p>The interval is the Student t interval across the n seeds of each column: "
        "mean ± t<sub>0.975, n−1</sub>·s/√n, with s the sample standard deviation; "
        "no interval with one seed.</p>",
        f"<figure>{_bands(result)}<figcaption>Migrations and deadline misses over time: "
        "mean across seeds, shaded 95 % confidence band.</figcaption></figure>",
        "</body></html>",
    ]
    path.write_text("\n".join(parts))
    return path


def _seeds_text(seeds: list[int]) -> str:
    if seeds and seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{seeds[0]}..{seeds[-1]}"
    return ",".join(map(str, seeds))


def sweep_table(result: SweepResult):
    """A rich table of a sweep: one row per policy and parameter point, each metric as
    ``mean ± ci95`` across seeds."""
    from rich.table import Table

    from twinedge.engine.sweep import ci95

    cols = (
        ("mean ms", "mean_latency_ms", "{:.2f}", 1.0),
        ("p95 ms", "p95_latency_ms", "{:.2f}", 1.0),
        ("miss %", "deadline_miss_ratio", "{:.2f}", 100.0),
        ("migrations", "migrations", "{:.0f}", 1.0),
        ("GB moved", "bytes_migrated", "{:.1f}", 1e-9),
        ("server MJ", "server_energy_j", "{:.2f}", 1e-6),
    )
    t = Table(title="twinedge: mean ± 95 % CI across seeds", header_style="bold")
    t.add_column("policy", justify="left")
    t.add_column("seeds", justify="right")
    for name, *_ in cols:
        t.add_column(name, justify="right")
    for k, runs in result.groups().items():
        cells = []
        for _, key, fmt, scale in cols:
            mean, half = ci95([r.summary[key] * scale for r in runs])
            cells.append(fmt.format(mean) + ("" if math.isnan(half) else " ± " + fmt.format(half)))
        t.add_row(_group_label(k, result.param_paths), str(len(runs)), *cells)
    return t
