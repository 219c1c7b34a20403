"""Paper figures: valid files at the paper's width, the plotted numbers as CSV, series
told apart without colour, plain log ticks, no overlapping text, clear errors."""

from __future__ import annotations

import csv
import dataclasses
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from matplotlib.text import Text

from tests.conftest import tiny_scenario
from twinedge.engine import simulate
from twinedge.errors import ScenarioError
from twinedge.report import figures
from twinedge.scenario import load_scenario

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLAIN_NUMBER = re.compile(r"^(\d{1,3}(,\d{3})*(\.\d+)?|\d(\.\d+)?e\d+)$")


def twinedge(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "twinedge", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def city_results():
    sc = load_scenario("city-small")
    return [simulate(sc, steps=8, migration=m) for m in ("never", "threshold")]


def many(results, n: int):
    """n series from real runs (relabelled copies) to fill a legend."""
    return [
        dataclasses.replace(results[i % len(results)], label=f"policy-{i}+migration-{i}")
        for i in range(n)
    ]


# --- the files -----------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("columns", [1, 2])
def test_files_are_valid_and_exactly_one_or_two_columns_wide(city_results, tmp_path, columns):
    written = figures.write_figures(city_results, tmp_path, ["pdf", "svg", "png"], columns)
    names = ("latency_cdf", "over_time", "utilisation", "map")
    assert set(written) == {f"{n}.{e}" for n in names for e in ("pdf", "svg", "png", "csv")}
    width_in = {1: 3.5, 2: 7.16}[columns]
    for n in names:
        pdf = (tmp_path / f"{n}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
        box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
        assert box and float(box.group(1)) == pytest.approx(72 * width_in), n
        assert b"/Subtype /Type3" not in pdf and b"/Subtype /CIDFontType2" in pdf  # TrueType
        w, _ = png_size((tmp_path / f"{n}.png").read_bytes())
        assert w == round(300 * width_in), n
        root = ET.fromstring((tmp_path / f"{n}.svg").read_bytes())
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert float(root.attrib["width"].removesuffix("pt")) == pytest.approx(72 * width_in)
        assert read_csv(tmp_path / f"{n}.csv"), n


def test_same_run_gives_byte_identical_pdf_and_svg(city_results, tmp_path):
    figures.write_figures(city_results, tmp_path / "a", ["pdf", "svg"])
    figures.write_figures(city_results, tmp_path / "b", ["pdf", "svg"])
    for p in sorted((tmp_path / "a").iterdir()):
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes(), p.name


# --- the CSV is what the run measured (a run small enough to check by hand) ------------


def test_cli_figures_csv_holds_the_runs_numbers(tmp_path):
    # one static robot (5 GHz twin, 5 ms deadline) next to a 10 GHz edge server, a
    # 100 GHz region hub 500 m away; 3 steps of 1 s
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_scenario()))
    p = twinedge(
        "run", "tiny.yaml", "--migration", "never,threshold", "--figures", "png", "-q",
        cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    fig_dir = tmp_path / "out" / "figures"
    assert sorted(x.name for x in fig_dir.iterdir()) == sorted(
        f"{n}.{e}"
        for n in ("latency_cdf", "over_time", "utilisation", "map")
        for e in ("png", "csv")
    )
    summary = yaml.safe_load((tmp_path / "out" / "summary.json").read_text())["policies"]
    series = read_csv(tmp_path / "out" / "timeseries.csv")

    # over time: t = 1, 2, 3 s; never stays on the edge and misses every step (5.35 ms >
    # 5 ms), threshold moves once (step 1) and meets the deadline at step 3
    ot = read_csv(fig_dir / "over_time.csv")
    got = [(r["policy"], int(r["step"]), float(r["t_s"]), float(r["migrations"])) for r in ot]
    assert got == [
        ("nearest+never", 1, 1.0, 0.0),
        ("nearest+never", 2, 2.0, 0.0),
        ("nearest+never", 3, 3.0, 0.0),
        ("nearest+threshold", 1, 1.0, 1.0),
        ("nearest+threshold", 2, 2.0, 0.0),
        ("nearest+threshold", 3, 3.0, 0.0),
    ]
    assert [float(r["deadline_miss_ratio"]) for r in ot] == [1, 1, 1, 1, 1, 0]
    # ... the same numbers as timeseries.csv (one entity: misses = ratio)
    assert [float(r["deadline_miss_ratio"]) for r in ot] == [
        float(r["deadline_misses"]) for r in series
    ]

    # utilisation: 5 GHz of 10 on the edge (0.5), then 5 of 100 on the hub (0.05)
    ut = read_csv(fig_dir / "utilisation.csv")
    cell = {(r["policy"], r["host"], float(r["t_s"])): float(r["cpu_utilisation"]) for r in ut}
    assert len(cell) == 12
    assert [cell["nearest+never", "edge", t] for t in (1, 2, 3)] == [0.5, 0.5, 0.5]
    assert [cell["nearest+never", "region", t] for t in (1, 2, 3)] == [0, 0, 0]
    assert [cell["nearest+threshold", "region", t] for t in (2, 3)] == pytest.approx([0.05] * 2)
    assert [cell["nearest+threshold", "edge", t] for t in (2, 3)] == [0, 0]
    assert {r["host_rank"] for r in ut if r["host"] == "edge"} == {"0"}  # edge tier first

    # the latency CDF: never has one latency, so one point at fraction 1 (its median bin);
    # threshold's three twin-steps give 1/3, 2/3, 1; the deadline line at 5 ms
    cdf = read_csv(fig_dir / "latency_cdf.csv")
    never = [r for r in cdf if r["series"] == "nearest+never"]
    assert [(float(r["latency_ms"]), float(r["cumulative_fraction"])) for r in never] == [
        (pytest.approx(summary["nearest+never"]["p50_latency_ms"], rel=1e-9), 1.0)
    ]
    thr = [r for r in cdf if r["series"] == "nearest+threshold"]
    assert sorted({round(float(r["cumulative_fraction"]), 12) for r in thr}) == [
        round(1 / 3, 12),
        round(2 / 3, 12),
        1.0,
    ]
    assert float(thr[-1]["latency_ms"]) == pytest.approx(
        summary["nearest+threshold"]["p99_latency_ms"], rel=1e-9
    )
    dl = [
        (float(r["latency_ms"]), float(r["cumulative_fraction"]))
        for r in cdf
        if r["series"] == "deadline"
    ]
    assert dl == [(5.0, 0.0), (5.0, 1.0)]

    # the map: the three nodes where the scenario puts them, the trail's three steps
    mp = read_csv(fig_dir / "map.csv")
    nodes = [
        (r["layer"], r["id"], float(r["x_m"]), float(r["y_m"])) for r in mp if r["layer"] != "trail"
    ]
    assert nodes == [
        ("access point", "ap", 0, 0),
        ("edge server", "edge", 0, 0),
        ("region hub", "region", 500, 0),
    ]
    assert [r["step"] for r in mp if r["layer"] == "trail"] == ["1", "2", "3"]


def test_csv_reads_back_exactly_the_plotted_values(city_results, tmp_path):
    pfs = figures.paper_figures(city_results)
    try:
        figures.write_figures(city_results, tmp_path, [])
        for pf in pfs:
            rows = read_csv(tmp_path / f"{pf.name}.csv")
            assert len(rows) == len(pf.rows)
        cdf = next(pf for pf in pfs if pf.name == "latency_cdf")
        ax = cdf.figure.axes[0]
        for line in ax.get_lines():
            label = line.get_label()
            if label.startswith("_"):
                continue
            x, y = line.get_xdata(), line.get_ydata()
            rows = [r for r in read_csv(tmp_path / "latency_cdf.csv") if r["series"] == label]
            assert np.array_equal([float(r["latency_ms"]) for r in rows], x)
            assert np.array_equal([float(r["cumulative_fraction"]) for r in rows], y)
        r0 = city_results[0]
        ut = read_csv(tmp_path / "utilisation.csv")
        got = [float(r["cpu_utilisation"]) for r in ut if r["policy"] == r0.label]
        order = np.lexsort((r0.world.host_cpu_ghz, r0.world.host_tier))
        assert np.array_equal(got, r0.metrics.utilisation[:, order].T.ravel())
    finally:
        for pf in pfs:
            plt.close(pf.figure)


# --- told apart in greyscale --------------------------------------------------------


def greyscale_keys(fig: Figure) -> list[tuple[str, str]]:
    """(linestyle, marker) of every legend entry: what is left when colour is gone."""
    keys = []
    for legend in fig.legends:
        for h in legend.legend_handles:
            if hasattr(h, "get_linestyle") and hasattr(h, "get_marker"):
                keys.append((str(h.get_linestyle()), str(h.get_marker())))
    return keys


@given(st.integers(min_value=1, max_value=28))
def test_first_28_series_differ_in_linestyle_or_marker(n):
    keys = [
        (figures.series_style(i)["linestyle"], figures.series_style(i)["marker"]) for i in range(n)
    ]
    assert len(set(keys)) == n


@pytest.mark.parametrize("n", [2, 5, 9])
def test_line_figures_tell_every_policy_apart_without_colour(city_results, n):
    with figures.paper_style():
        for build in (figures.latency_cdf, figures.over_time):
            pf = build(many(city_results, n))
            try:
                keys = greyscale_keys(pf.figure)
                assert len(keys) == n and len(set(keys)) == n, (pf.name, keys)
                # the plotted lines themselves, not only the legend
                for ax in pf.figure.axes:
                    lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
                    styles = {(ln.get_linestyle(), ln.get_marker()) for ln in lines}
                    assert len(styles) == len(lines) == n
            finally:
                plt.close(pf.figure)


def test_greyscale_check_catches_two_series_drawn_alike():
    fig = plt.figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], "r-o", label="a")
    ax.plot([0, 1], [1, 0], "b-o", label="b")  # differs only in colour
    fig.legend()
    keys = greyscale_keys(fig)
    plt.close(fig)
    assert len(keys) == 2 and len(set(keys)) == 1


# --- no overlapping text ------------------------------------------------------------


def drawn_texts(fig: Figure) -> list[Text]:
    """Every non-empty text the figure draws (tick labels only for ticks in view)."""
    fig.canvas.draw()
    out = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip():
            continue
        out.append(t)
    ticks = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                inside = lo - 1e-9 * abs(hi - lo) <= tick.get_loc() <= hi + 1e-9 * abs(hi - lo)
                for label in (tick.label1, tick.label2):
                    if not inside:
                        ticks.add(id(label))
    return [t for t in out if id(t) not in ticks]


def overlaps(fig: Figure) -> list[tuple[str, str]]:
    r = fig.canvas.get_renderer()
    texts = drawn_texts(fig)
    boxes = [t.get_window_extent(r) for t in texts]
    bad = []
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            a, b = boxes[i], boxes[j]
            w = min(a.x1, b.x1) - max(a.x0, b.x0)
            h = min(a.y1, b.y1) - max(a.y0, b.y0)
            if w > 0.5 and h > 0.5:
                bad.append((texts[i].get_text(), texts[j].get_text()))
    fw, fh = fig.bbox.width, fig.bbox.height
    for t, b in zip(texts, boxes, strict=True):
        if b.x0 < -0.5 or b.y0 < -0.5 or b.x1 > fw + 0.5 or b.y1 > fh + 0.5:
            bad.append((t.get_text(), "<outside the figure>"))
    return bad


@pytest.mark.parametrize("columns", [1, 2])
@pytest.mark.parametrize("n", [1, 4, 8])
def test_no_text_overlaps_another_or_leaves_the_figure(city_results, columns, n):
    for pf in figures.paper_figures(many(city_results, n), columns):
        try:
            with figures.paper_style():
                assert overlaps(pf.figure) == [], (pf.name, columns, n)
        finally:
            plt.close(pf.figure)


def test_overlap_check_catches_overlapping_titles():
    fig = plt.figure(figsize=(3.5, 2.5))  # no constrained layout: stacked panels collide
    ax1, ax2 = fig.subplots(2, 1)
    ax1.set_xlabel("a long x label under the top panel")
    ax2.set_title("a title over the bottom panel")
    bad = overlaps(fig)
    plt.close(fig)
    assert bad


# --- log axes -----------------------------------------------------------------------


def log_tick_labels(fig: Figure) -> list[str]:
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    return [
        t.label1.get_text()
        for t in ax.xaxis.get_major_ticks()
        if lo * (1 - 1e-9) <= t.get_loc() <= hi * (1 + 1e-9)
    ]


def test_latency_axis_ticks_are_plain_numbers(city_results):
    with figures.paper_style():
        pf = figures.latency_cdf(city_results)
    labels = log_tick_labels(pf.figure)
    plt.close(pf.figure)
    assert len(labels) >= 2 and all(PLAIN_NUMBER.match(s) for s in labels), labels


@settings(max_examples=25, deadline=None)
@given(
    st.floats(min_value=1e-3, max_value=1e4),
    st.floats(min_value=1.01, max_value=1e5),
)
def test_log_axis_labels_any_range_with_plain_numbers(lo, ratio):
    with figures.paper_style():
        fig = plt.figure(figsize=(3.5, 2), layout="constrained")
        ax = fig.add_subplot()
        ax.plot([lo, lo * ratio], [0, 1])
        figures._log_axis(ax, lo, lo * ratio)
        labels = log_tick_labels(fig)
        xlo, xhi = ax.get_xlim()
        bad = overlaps(fig)
    plt.close(fig)
    assert len(labels) >= 2, labels
    assert all(PLAIN_NUMBER.match(s) or re.match(r"^0\.\d+$", s) for s in labels), labels
    assert xlo <= lo * (1 + 1e-9) and xhi >= lo * ratio * (1 - 1e-9)
    assert bad == [], (lo, ratio, bad)


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("jpg", "'jpg' is not a figure format"),
        ("pdf,eps", "'eps' is not a figure format"),
        ("pdf,", "an empty item is not a figure format"),
        ("png,PNG", "'png' is given twice"),
    ],
)
def test_bad_formats_are_named(value, says):
    with pytest.raises(ScenarioError, match=re.escape(says)):
        figures.parse_formats(value)


def test_formats_parse_in_order_and_none_means_none():
    assert figures.parse_formats(" SVG, .pdf ") == ("svg", "pdf")
    assert figures.parse_formats("none") == figures.parse_formats(None) == ()


def test_cli_rejects_bad_figures_before_running(tmp_path):
    p = twinedge("run", "city-small", "--figures", "pdf,jpeg", cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "error: --figures: 'jpeg' is not a figure format; give a comma-separated list of "
        "pdf, svg, png (or none)"
    ]
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written
    p = twinedge("compare", "city-small", "--figures", "pdf", "--figure-columns", "3", cwd=tmp_path)
    assert p.returncode == 2 and "--figure-columns" in p.stderr and "Traceback" not in p.stderr


def test_compare_writes_figures_into_out(tmp_path):
    p = twinedge(
        "compare", "city-small", "--steps", "4", "--migration", "never,threshold",
        "--figures", "svg", "--figure-columns", "2", "--out", "paper", cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    names = sorted(x.name for x in (tmp_path / "paper" / "figures").iterdir())
    assert names == sorted(
        f"{n}.{e}"
        for n in ("latency_cdf", "map", "over_time", "utilisation")
        for e in ("csv", "svg")
    )
    root = ET.fromstring((tmp_path / "paper" / "figures" / "map.svg").read_bytes())
    assert float(root.attrib["width"].removesuffix("pt")) == pytest.approx(72 * 7.16)


def test_run_without_figures_writes_no_figure_files(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_scenario()))
    p = twinedge("run", "tiny.yaml", "-q", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / "out" / "figures").exists()
    assert "<svg" in (tmp_path / "out" / "report.html").read_text()
