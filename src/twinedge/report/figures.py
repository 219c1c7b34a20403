"""The figures of a run, sized for papers, and the data behind each one.

Every figure is built here once: ``report.html`` embeds it as SVG, and
:func:`write_figures` saves it as PDF, SVG and/or PNG into ``figures/`` together with
a CSV of the exact numbers plotted (``twinedge run --figures pdf,svg,png``).

What makes them fit for print:

* **Widths of a paper's columns.** ``columns=1`` is 3.5 in wide (one column of the
  IEEE and ACM two-column templates), ``columns=2`` is 7.16 in (the full text width).
  Files are saved at exactly that width (no tight cropping), text at 8 pt, PNG at 300 dpi;
  PDF fonts are embedded as TrueType (Type 42), never Type 3.
* **Greyscale-safe series.** Series ``i`` gets linestyle ``i mod 4`` and marker
  ``i mod 7`` of :data:`LINESTYLES` and :data:`MARKERS`: the first 28 series differ in
  line style or marker, so they stay apart without colour. The utilisation heat maps use
  ``magma``, whose lightness rises monotonically.
* **Readable log axes.** Log-scale ticks are plain numbers (``1``, ``2``, ``5``,
  ``10``..., ``1e5`` from 100,000 on), never ``10^0.3``; the axis limits snap outward to labelled ticks.
* **No overlapping text.** Constrained layout places titles, labels, colour bars and the
  legend (above the plot, outside the axes) so no two texts overlap.
* **Reproducible files.** No creation dates, fixed SVG ids: the same run gives
  byte-identical PDF and SVG files.

The CSV beside each figure has one row per plotted point, in long form:

=====================  ======================================================
``latency_cdf``        ``series, latency_ms, cumulative_fraction`` (a policy, or
                       ``deadline`` for the dotted deadline lines)
``over_time``          ``policy, step, t_s, migrations, deadline_miss_ratio``
``utilisation``        ``policy, host_rank, host, t_s, cpu_utilisation``
``map``                ``layer, id, step, x_m, y_m`` (access points, hosts, trails)
=====================  ======================================================
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

# files, not windows; but a backend chosen for the process stays (Jupyter sets MPLBACKEND
# to its inline backend: importing twinedge must not stop a notebook's plots showing)
if not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from twinedge.engine.metrics import HIST_EDGES_MS, STEP_COLUMNS
from twinedge.engine.simulation import RunResult
from twinedge.errors import ScenarioError

#: The file formats ``--figures`` accepts.
FORMATS = ("pdf", "svg", "png")
#: Figure widths (inches) for one column and for the full text width of a two-column paper.
WIDTH_IN = {1: 3.5, 2: 7.16}
#: PNG resolution.
PNG_DPI = 300
#: Series ``i`` uses ``LINESTYLES[i % 4]`` and ``MARKERS[i % 7]`` (28 distinct pairs).
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "x", "+")

_COL = {c: i for i, c in enumerate(STEP_COLUMNS)}
_TIERS = {1: ("edge server", "s", "#1f77b4", 18), 2: ("region hub", "D", "#d62728", 40)}
_RC: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.5,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.hashsalt": "twinedge",
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_METADATA: dict[str, dict[str, Any]] = {
    "pdf": {"CreationDate": None, "Creator": "twinedge", "Producer": None},
    "svg": {"Date": None, "Creator": "twinedge"},
    "png": {"Software": "twinedge"},
}


@dataclass
class PaperFigure:
    """A figure and the exact numbers it plots.

    Attributes:
        name: the file stem (``latency_cdf``, ``over_time``, ``utilisation``, ``map``).
        figure: the matplotlib figure (constrained layout, paper width).
        header: the CSV column names.
        rows: one row per plotted point.
    """

    name: str
    figure: Figure
    header: tuple[str, ...]
    rows: list[tuple[Any, ...]] = field(default_factory=list)


def parse_formats(text: str | None, option: str = "--figures") -> tuple[str, ...]:
    """The figure formats of a comma-separated list (``"pdf,svg,png"``), in order.

    Parameters:
        text: the list; ``None``, ``""`` or ``"none"`` means no figure files.
        option: the name the error message gives the list.

    Raises:
        ScenarioError: an unknown or repeated format, or an empty item.

    Examples:
        >>> parse_formats("png,pdf")
        ('png', 'pdf')
        >>> parse_formats(None)
        ()
    """
    if text is None or text.strip().lower() in ("", "none"):
        return ()
    out: list[str] = []
    for item in text.split(","):
        fmt = item.strip().lower().lstrip(".")
        if fmt not in FORMATS:
            shown = repr(item.strip()) if item.strip() else "an empty item"
            raise ScenarioError(
                [
                    f"{option}: {shown} is not a figure format; "
                    f"give a comma-separated list of {', '.join(FORMATS)} (or none)"
                ]
            )
        if fmt in out:
            raise ScenarioError([f"{option}: {fmt!r} is given twice"])
        out.append(fmt)
    return tuple(out)


def series_style(i: int) -> dict[str, Any]:
    """Line style, marker and colour of series ``i`` (distinct without colour for i < 28).

    Examples:
        >>> series_style(0)["linestyle"], series_style(5)["marker"]
        ('-', 'x')
    """
    return {
        "linestyle": LINESTYLES[i % len(LINESTYLES)],
        "marker": MARKERS[i % len(MARKERS)],
        "color": f"C{i % 10}",
    }


@contextmanager
def paper_style() -> Iterator[None]:
    """The rc settings figures are built and saved under."""
    with matplotlib.rc_context():
        for key, value in _RC.items():
            matplotlib.rcParams[key] = value  # type: ignore[index]
        yield


def _plain(x: float, _pos: Any = None) -> str:
    """A log-axis tick as a plain number: 0.5, 2, 1,000, 20,000; from 100,000 on as
    1e5, 2e6 (short enough for a one-column axis)."""
    if x <= 0 or not math.isfinite(x):
        return ""
    if x >= 1e5:
        e = math.floor(math.log10(x) + 1e-9)
        return f"{x / 10.0**e:.6g}e{e}"
    if x >= 1000:
        return f"{x:,.0f}"
    return f"{x:.6g}"


def _log_axis(ax: Axes, lo: float, hi: float) -> None:
    """Log x axis from lo to hi with plain-number ticks at 1-2-5 (short ranges), 1-10
    (a few decades) or powers of ten; the limits snap outward to labelled ticks."""
    lo, hi = max(lo, 1e-9), max(hi, lo * 1.0001)
    decades = math.log10(hi / lo)
    subs: tuple[float, ...]
    if decades < 0.6:
        subs = (1, 1.5, 2, 3, 4, 5, 6, 8)  # 7 and 9 would crowd 6, 8 and 10
    elif decades <= 1.6:
        subs = (1, 2, 5)
    else:
        subs = (1,)
    ticks = np.array(
        [
            s * 10.0**e
            for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 2)
            for s in subs
        ]
    )
    ax.set_xscale("log")
    ax.set_xlim(ticks[ticks <= lo * 1.0000001].max(), ticks[ticks >= hi / 1.0000001].min())
    # beyond four decades every other power of ten is labelled (numticks caps the count)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=40 if decades <= 4 else 6))
    ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10)), numticks=40))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _legend(fig: Figure, ax: Axes, columns: int, n: int) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        per_row = 2 if columns == 1 else 4
        fig.legend(handles, labels, loc="outside upper center", ncols=min(n, per_row))


def latency_cdf(results: Sequence[RunResult], columns: int = 1) -> PaperFigure:
    """The latency CDF over all twin-steps, one line per policy, deadlines dotted."""
    fig = plt.figure(
        figsize=(WIDTH_IN[columns], 2.6 if columns == 1 else 3.0), layout="constrained"
    )
    ax = fig.add_subplot()
    centres = np.sqrt(HIST_EDGES_MS[:-1] * HIST_EDGES_MS[1:])
    rows: list[tuple[Any, ...]] = []
    lo, hi = math.inf, 0.0
    for i, r in enumerate(results):
        hist = r.metrics.hist
        nz = np.flatnonzero(hist)
        if nz.size == 0:
            continue
        c = np.cumsum(hist) / hist.sum()
        a, b = nz[0], nz[-1] + 1
        x, y = centres[a:b], c[a:b]
        ax.plot(x, y, label=r.label, markevery=(0.03 * (i % 7), 0.18), **series_style(i))
        rows.extend((r.label, float(u), float(v)) for u, v in zip(x, y, strict=True))
        lo, hi = min(lo, float(x[0])), max(hi, float(x[-1]))
    deadlines = np.unique(results[0].world.latency_req_ms)[:4] if results else np.array([])
    for v in deadlines:
        ax.plot([v, v], [0.0, 1.0], color="grey", ls=":", lw=0.8)
        rows.extend([("deadline", float(v), 0.0), ("deadline", float(v), 1.0)])
        lo, hi = min(lo, float(v)), max(hi, float(v))
    if hi > 0:
        _log_axis(ax, lo, hi)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("twin latency (ms, log scale); dotted: deadlines")
    ax.set_ylabel("fraction of twin-steps")
    _legend(fig, ax, columns, len(results))
    return PaperFigure("latency_cdf", fig, ("series", "latency_ms", "cumulative_fraction"), rows)


def over_time(results: Sequence[RunResult], columns: int = 1) -> PaperFigure:
    """Migrations per step and the deadline-miss ratio over virtual time, per policy."""
    fig, axes = plt.subplots(
        2,
        1,
        figsize=(WIDTH_IN[columns], 3.4 if columns == 1 else 3.6),
        sharex=True,
        layout="constrained",
    )
    rows: list[tuple[Any, ...]] = []
    for i, r in enumerate(results):
        v = r.metrics.step_values
        t = v[:, _COL["t_s"]]
        mig = v[:, _COL["migrations"]]
        miss = v[:, _COL["deadline_misses"]] / r.world.n_entities
        every = (0.03 * (i % 7), 0.15)
        axes[0].plot(t, mig, label=r.label, markevery=every, **series_style(i))
        axes[1].plot(t, miss, label=r.label, markevery=every, **series_style(i))
        rows.extend(
            (r.label, k + 1, float(t[k]), float(mig[k]), float(miss[k])) for k in range(t.size)
        )
    axes[0].set_ylabel("migrations\nper step")
    axes[1].set_ylabel("deadline-miss\nratio")
    axes[1].set_xlabel("virtual time (s)")
    _legend(fig, axes[0], columns, len(results))
    header = ("policy", "step", "t_s", "migrations", "deadline_miss_ratio")
    return PaperFigure("over_time", fig, header, rows)


def utilisation(results: Sequence[RunResult], columns: int = 1) -> PaperFigure:
    """CPU utilisation of every host over time (hosts sorted by tier, then capacity),
    one panel per policy (the first four)."""
    shown = list(results[:4])
    panel_in = 1.0 if columns == 1 else 1.3
    fig, axes = plt.subplots(
        len(shown),
        1,
        figsize=(WIDTH_IN[columns], 0.7 + panel_in * len(shown)),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    rows: list[tuple[Any, ...]] = []
    w = shown[0].world
    order = np.lexsort((w.host_cpu_ghz, w.host_tier))
    ids = w.host_ids
    im = None
    for ax, r in zip(axes[:, 0], shown, strict=True):
        u = r.metrics.utilisation[:, order].T
        t = r.metrics.step_values[:, _COL["t_s"]]
        im = ax.imshow(
            u,
            aspect="auto",
            origin="lower",
            vmin=0,
            vmax=1,
            cmap="magma",
            extent=(0, float(t[-1]), 0, u.shape[0]),
            interpolation="nearest",
        )
        ax.grid(False)
        ax.set_ylabel("host")
        ax.set_title(r.label)
        for rank, h in enumerate(order):
            name = ids[h]
            rows.extend(
                (r.label, rank, name, float(t[k]), float(u[rank, k])) for k in range(t.size)
            )
    axes[-1, 0].set_xlabel("virtual time (s)")
    if im is not None:
        fig.colorbar(im, ax=axes[:, 0].tolist(), label="CPU utilisation")
    header = ("policy", "host_rank", "host", "t_s", "cpu_utilisation")
    return PaperFigure("utilisation", fig, header, rows)


def infrastructure_map(r: RunResult, columns: int = 1) -> PaperFigure:
    """Access points, edge servers and region hubs in the area, with sample entity trails."""
    w = r.world
    side = WIDTH_IN[columns] if columns == 1 else 5.5
    fig = plt.figure(figsize=(WIDTH_IN[columns], side), layout="constrained")
    ax = fig.add_subplot()
    ax.grid(False)
    rows: list[tuple[Any, ...]] = []
    acc = w.node_xy_m[w.access]
    ax.scatter(acc[:, 0], acc[:, 1], s=4, c="#999999", marker="o", label="access point", zorder=1)
    rows.extend(
        ("access point", w.node_ids[n], "", float(x), float(y))
        for n, (x, y) in zip(w.access, acc, strict=True)
    )
    lo, hi = w.bounds_m[:2], w.bounds_m[2:]
    for code, (name, marker, color, size) in _TIERS.items():
        idx = np.flatnonzero(w.node_tier == code)
        idx = idx[np.all((w.node_xy_m[idx] >= lo - 1) & (w.node_xy_m[idx] <= hi + 1), axis=1)]
        if idx.size:
            xy = w.node_xy_m[idx]
            ax.scatter(xy[:, 0], xy[:, 1], s=size, marker=marker, c=color, label=name, zorder=2)
            rows.extend(
                (name, w.node_ids[n], "", float(x), float(y))
                for n, (x, y) in zip(idx, xy, strict=True)
            )
    trails = r.metrics.trails
    for k in range(trails.shape[1]):
        ax.plot(trails[:, k, 0], trails[:, k, 1], lw=0.7, alpha=0.8, zorder=3)
        ax.plot(trails[-1, k, 0], trails[-1, k, 1], "o", ms=2.5, c="black", zorder=4)
        rows.extend(
            ("trail", k, s + 1, float(trails[s, k, 0]), float(trails[s, k, 1]))
            for s in range(trails.shape[0])
        )
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(f"infrastructure and {trails.shape[1]} sample entity trails")
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=len(handles))
    return PaperFigure("map", fig, ("layer", "id", "step", "x_m", "y_m"), rows)


def paper_figures(results: Sequence[RunResult], columns: int = 1) -> list[PaperFigure]:
    """Every figure of a run, built under :func:`paper_style`.

    Parameters:
        results: the runs (one per policy combination), the same world.
        columns: 1 (3.5 in wide) or 2 (7.16 in).

    Raises:
        ValueError: ``columns`` is not 1 or 2, or there are no results.
    """
    if columns not in WIDTH_IN:
        raise ValueError(f"columns must be 1 or 2, not {columns!r}")
    if not results:
        raise ValueError("no results to draw")
    with paper_style():
        return [
            latency_cdf(results, columns),
            over_time(results, columns),
            utilisation(results, columns),
            infrastructure_map(results[0], columns),
        ]


def render(pf: PaperFigure, fmt: str) -> bytes:
    """The figure as a PDF, SVG or PNG file's bytes (exact paper width, no cropping)."""
    buf = io.BytesIO()
    with paper_style():
        pf.figure.savefig(buf, format=fmt, dpi=PNG_DPI, metadata=_METADATA[fmt])
    return buf.getvalue()


def _cell(v: Any) -> Any:
    """Floats written with ``repr``: the CSV reads back to exactly the plotted value."""
    if isinstance(v, float):
        return repr(v)
    return v


def write_figures(
    results: Sequence[RunResult],
    out_dir: Path,
    formats: Sequence[str],
    columns: int = 1,
) -> dict[str, Path]:
    """Write every figure in each format, and its data as CSV, into ``out_dir``.

    Parameters:
        results: the runs to draw.
        out_dir: the folder (created); files are ``<name>.<format>`` and ``<name>.csv``.
        formats: some of :data:`FORMATS` (see :func:`parse_formats`).
        columns: 1 (3.5 in wide) or 2 (7.16 in).

    Returns:
        Every file written, keyed by its file name.

    Raises:
        ScenarioError: an unknown format.
        ValueError: ``columns`` is not 1 or 2.

    Examples:
        >>> write_figures([], Path("figs"), ["jpg"])
        Traceback (most recent call last):
        ...
        twinedge.errors.ScenarioError: --figures: 'jpg' is not a figure format; give a comma-separated list of pdf, svg, png (or none)
    """
    fmts = parse_formats(",".join(formats))
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for pf in paper_figures(results, columns):
        try:
            for fmt in fmts:
                p = out_dir / f"{pf.name}.{fmt}"
                p.write_bytes(render(pf, fmt))
                written[p.name] = p
            p = out_dir / f"{pf.name}.csv"
            with open(p, "w", newline="") as f:
                wr = csv.writer(f)
                wr.writerow(pf.header)
                wr.writerows([_cell(v) for v in row] for row in pf.rows)
            written[p.name] = p
        finally:
            plt.close(pf.figure)
    return written
