"""Vehicle traces from Eclipse SUMO: the real simulator, its FCD output read as a trace.

The SUMO run is small (a 3 x 3 grid of 200 m streets, 20 vehicles, 60 s) and made once
per module. Tests that need SUMO skip with the reason when the ``sumo`` extra is absent.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from twinedge.engine import simulate
from twinedge.errors import ScenarioError, TwinedgeError
from twinedge.scenario import load_scenario
from twinedge.world import build_world
from twinedge.world.mobility import read_trace
from twinedge.world.sumo import fcd_to_csv, read_fcd, sumo_home, sumo_trace

GRID_M = (0.0, 200.0, 400.0)  # the junction lines of a 3 x 3 grid of 200 m streets
LANE_W_M = 3.2  # netgenerate's default lane width; one lane each way


def have_sumo() -> bool:
    try:
        sumo_home()
    except TwinedgeError:
        return False
    return True


needs_sumo = pytest.mark.skipif(
    not have_sumo(), reason="Eclipse SUMO not installed (pip install 'twinedge[sumo]')"
)


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """One real SUMO run: ``(summary, csv path, work folder with net.net.xml and fcd.xml)``."""
    if not have_sumo():
        pytest.skip("Eclipse SUMO not installed (pip install 'twinedge[sumo]')")
    d = tmp_path_factory.mktemp("sumo")
    s = sumo_trace(
        d / "trace.csv",
        size=3,
        length_m=200,
        vehicles=20,
        duration_s=60,
        seed=7,
        work_dir=d / "work",
    )
    return s, d / "trace.csv", d / "work"


def csv_xy(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    ids = [r["entity_id"] for r in rows]
    t = np.array([float(r["t_s"]) for r in rows])
    xy = np.array([[float(r["x_m"]), float(r["y_m"])] for r in rows])
    return ids, t, xy


def lane_segments(net: Path) -> np.ndarray:
    """Every straight piece ``(x0, y0, x1, y1)`` of every lane of a SUMO network, the
    lanes inside junctions included (read with sumolib)."""
    sumolib = pytest.importorskip("sumolib", reason="sumolib not installed (twinedge[sumo])")
    n = sumolib.net.readNet(str(net), withInternal=True)
    segs = []
    for edge in n.getEdges(withInternal=True):
        for lane in edge.getLanes():
            shape = lane.getShape()
            segs += [(*a, *b) for a, b in itertools.pairwise(shape)]
    return np.array(segs, dtype=float)


def distance_to_lanes(xy: np.ndarray, segs: np.ndarray) -> np.ndarray:
    """Distance of each point to the nearest lane centre line."""
    a, b = segs[None, :, :2], segs[None, :, 2:]
    p = xy[:, None, :]
    ab = b - a
    L2 = np.maximum((ab**2).sum(-1), 1e-12)
    u = np.clip(((p - a) * ab).sum(-1) / L2, 0, 1)
    return np.hypot(*(p - (a + u[..., None] * ab)).transpose(2, 0, 1)).min(1)


# --- the generated trace ----------------------------------------------------------------


def test_every_vehicle_sample_lies_on_a_lane(grid_run):
    s, path, work = grid_run
    ids, t, xy = csv_xy(path)
    assert s.vehicles == len(set(ids)) == 20
    assert s.samples == len(ids)
    assert (t.min(), t.max()) == (0.0, 59.0)  # --end 60 with 1 s steps: samples 0..59
    # SUMO writes positions to 0.01 m: every sample is on a lane's centre line
    d = distance_to_lanes(xy, lane_segments(work / "net.net.xml"))
    assert d.max() <= 0.02, d.max()
    # by hand, for the grid: a lane centre is half a lane (1.6 m) beside its road's
    # axis; inside a junction (a square of one road width, 2 x 3.2 m) a point is at most
    # half that width, 3.2 m, from both of its lines
    to_line = np.minimum(
        np.abs(xy[:, 0, None] - np.array(GRID_M)).min(1),
        np.abs(xy[:, 1, None] - np.array(GRID_M)).min(1),
    )
    assert to_line.max() <= LANE_W_M
    assert xy.min() >= -LANE_W_M and xy.max() <= 400 + LANE_W_M
    # and they move: on straight lanes most samples sit exactly 1.6 m off an axis
    assert np.mean(np.isclose(to_line, LANE_W_M / 2, atol=0.011)) > 0.5
    for v in set(ids):
        mine = xy[[i for i, x in enumerate(ids) if x == v]]
        assert np.hypot(*(mine.max(0) - mine.min(0))) > 50, v


def test_the_seed_decides_the_trace(grid_run, tmp_path):
    _, path, _ = grid_run
    again = sumo_trace(tmp_path / "again.csv", size=3, vehicles=20, duration_s=60, seed=7)
    assert again.path.read_bytes() == path.read_bytes()
    other = sumo_trace(tmp_path / "other.csv", size=3, vehicles=20, duration_s=60, seed=8)
    assert other.path.read_bytes() != path.read_bytes()


def test_fcd_file_is_a_trace_as_xml_gz_and_csv(grid_run, tmp_path):
    _, path, work = grid_run
    fcd = work / "fcd.xml"
    gz = tmp_path / "fcd.xml.gz"
    gz.write_bytes(gzip.compress(fcd.read_bytes()))
    ref = read_trace(path)
    for f in (fcd, gz):
        ids, offsets, t, xy, is_ll = read_trace(f)
        assert ids == ref[0] and not is_ll
        assert np.array_equal(offsets, ref[1])
        assert np.array_equal(t, ref[2]) and np.array_equal(xy, ref[3])
    # the converter writes the same rows as sumo_trace did
    s = fcd_to_csv(fcd, tmp_path / "conv.csv")
    assert (tmp_path / "conv.csv").read_bytes() == path.read_bytes()
    assert s.vehicles == 20


def road_scenario(trace: str) -> dict:
    """Access points with edge servers at the 9 junctions of the grid, a region hub."""
    nodes = [{"id": "hub", "tier": "region", "x_m": 200, "y_m": 200, "cpu_ghz": 64, "mem_gb": 256}]
    for i, x in enumerate(GRID_M):
        for j, y in enumerate(GRID_M):
            nodes.append({"id": f"ap-{i}{j}", "tier": "access", "x_m": x, "y_m": y})
            nodes.append(
                {
                    "id": f"edge-{i}{j}",
                    "tier": "edge",
                    "x_m": x,
                    "y_m": y,
                    "cpu_ghz": 8,
                    "mem_gb": 16,
                }
            )
    return {
        "version": 1,
        "name": "grid-roads",
        "infrastructure": {"nodes": nodes},
        "entities": [{"kind": "car", "mobility": {"model": "trace", "file": trace}}],
        "run": {"steps": 59, "step_s": 1.0, "seed": 0},
        "policies": {"placement": "nearest", "migration": "threshold"},
    }


def test_vehicles_drive_on_roads_in_a_scenario(grid_run, tmp_path):
    _, path, work = grid_run
    segs = lane_segments(work / "net.net.xml")
    for trace in (path, work / "fcd.xml"):
        p = tmp_path / "s.yaml"
        p.write_text(yaml.safe_dump(road_scenario(str(trace))))
        sc = load_scenario(p)
        w = build_world(sc, np.random.default_rng(0))
        assert w.n_entities == 20 and list(w.entity_ids)[:2] == ["veh0", "veh1"]
        # the area (no area_m) covers the access points and the trace
        assert w.bounds_m[0] <= -1.6 and w.bounds_m[2] >= 401.6
        xy = w.xy_m.copy()
        rng = np.random.default_rng(0)
        aps = [w.attach(xy)[0]]
        for k in range(59):  # every step of the run: each car on a lane
            w.mobility[0][1].step(xy, float(k), 1.0, rng)
            assert distance_to_lanes(xy, segs).max() <= 0.02, k
            aps.append(w.attach(xy)[0])
        # cars drive past junctions: most are handed over to another access point
        handed_over = (np.array(aps) != aps[0]).any(axis=0)
        assert handed_over.sum() >= 10, handed_over
        result = simulate(sc)
        assert result.world.n_entities == 20 and result.summary["mean_latency_ms"] > 0


# --- bad input ------------------------------------------------------------------------


def test_bad_arguments_and_networks_are_one_line_errors(tmp_path):
    with pytest.raises(TwinedgeError, match=r"^--vehicles: got 0; expected at least 1 vehicle$"):
        sumo_trace(tmp_path / "t.csv", vehicles=0)
    with pytest.raises(
        TwinedgeError, match=r"^--net: got '.*missing\.net\.xml'; expected an existing"
    ):
        sumo_trace(tmp_path / "t.csv", net=tmp_path / "missing.net.xml")
    notnet = tmp_path / "roads.net.xml"
    notnet.write_text("<routes/>")
    with pytest.raises(TwinedgeError, match=r"roads\.net\.xml: not a SUMO network"):
        sumo_trace(tmp_path / "t.csv", net=notnet)
    assert not (tmp_path / "t.csv").exists()


@needs_sumo
def test_a_failing_tool_shows_the_tail_of_its_stderr(tmp_path):
    # a network with a location but no roads: randomTrips finds no edge to start from
    empty = tmp_path / "empty.net.xml"
    empty.write_text(
        '<net version="1.20"><location netOffset="0,0" convBoundary="0,0,10,10" '
        'origBoundary="0,0,10,10" projParameter="!"/></net>'
    )
    with pytest.raises(TwinedgeError) as e:
        sumo_trace(tmp_path / "t.csv", net=empty, vehicles=2, duration_s=10)
    msg = str(e.value)
    assert msg.startswith("randomTrips.py failed (exit "), msg
    assert "\n" not in msg and len(msg) > len("randomTrips.py failed (exit 1): ") + 5


def test_sumo_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sumo", None)  # `import sumo` fails, as without the wheel
    monkeypatch.delenv("SUMO_HOME", raising=False)
    with pytest.raises(
        TwinedgeError, match=r"Eclipse SUMO is not installed: pip install 'twinedge\[sumo\]'"
    ):
        sumo_home()
    monkeypatch.setenv("SUMO_HOME", "/nonexistent/sumo")
    with pytest.raises(TwinedgeError, match=r"no SUMO binaries under /nonexistent/sumo/bin"):
        sumo_home()


FCD_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<fcd-export>\n'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            FCD_HEAD + '<timestep time="0.00"><vehicle id="a" x="1" y="2"/>\n<timestep',
            r"fcd\.xml: line 4: not well-formed XML \(column \d+: [a-z ]+\); expected SUMO FCD",
        ),
        ("<routes><vehicle id='a'/></routes>", r"root element <routes>; expected <fcd-export>"),
        (
            FCD_HEAD
            + '<timestep time="0.00"><vehicle id="a" x="east" y="2"/></timestep></fcd-export>',
            r"fcd\.xml: line 3: 'a' at time '0\.00': x='east', y='2'; expected finite numbers",
        ),
        (
            FCD_HEAD + '<timestep time="0.00"><vehicle id="a" x="1"/></timestep></fcd-export>',
            r"fcd\.xml: line 3: <vehicle> without id, x or y",
        ),
        (
            FCD_HEAD + '<timestep time="0.00"/><timestep time="1.00"/></fcd-export>',
            r"no vehicle samples; expected <timestep> elements with <vehicle> samples",
        ),
        ("", r"line 1: not well-formed XML"),
    ],
)
def test_malformed_fcd_is_refused_with_the_place(tmp_path, body, expected):
    f = tmp_path / "fcd.xml"
    f.write_text(body)
    with pytest.raises(ScenarioError, match=expected):
        read_fcd(f)
    with pytest.raises(ScenarioError, match=expected):
        fcd_to_csv(f, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.csv.part").exists()


def test_fcd_samples_sorted_by_vehicle_then_time_and_geo_output(tmp_path):
    f = tmp_path / "fcd.xml"
    f.write_text(
        FCD_HEAD
        + '<timestep time="0.00"><vehicle id="b" x="10" y="0"/><person id="a" x="0" y="5"/></timestep>'
        + '<timestep time="2.00"><vehicle id="b" x="30" y="0"/><person id="a" x="0" y="9"/></timestep>'
        + "</fcd-export>\n"
    )
    ids, offsets, t, xy, is_ll = read_trace(f)
    assert ids == ["a", "b"] and offsets.tolist() == [0, 2, 4] and not is_ll
    assert t.tolist() == [0, 2, 0, 2]
    assert xy.tolist() == [[0, 5], [0, 9], [10, 0], [30, 0]]
    # with --fcd-output.geo SUMO writes lon in x and lat in y (and says so at the top)
    g = tmp_path / "geo.xml"
    g.write_text(
        '<?xml version="1.0"?>\n<!-- <configuration><fcd-output.geo value="true"/></configuration> -->\n'
        '<fcd-export><timestep time="0.00"><vehicle id="v" x="144.9631" y="-37.8136"/>'
        "</timestep></fcd-export>"
    )
    ids, _, _, latlon, is_ll = read_trace(g)
    assert is_ll and latlon.tolist() == [[-37.8136, 144.9631]]
    s = fcd_to_csv(g, tmp_path / "geo.csv")
    assert (tmp_path / "geo.csv").read_text() == "entity_id,t_s,lat,lon\nv,0.00,-37.8136,144.9631\n"
    assert s.is_latlon and "lat -37.813600..-37.813600" in s.describe()


def test_a_large_fcd_file_is_streamed(tmp_path):
    """50,000 samples: the samples themselves take 50,000 x 32 bytes = 1.6 MB; a whole
    element tree of the file would take tens of MB (an element and its attribute dict
    are several hundred bytes each)."""
    f = tmp_path / "big.xml"
    with open(f, "w") as out:
        out.write(FCD_HEAD)
        for k in range(1000):
            out.write(f'<timestep time="{k}.00">')
            for v in range(50):
                out.write(
                    f'<vehicle id="veh{v}" x="{k}.50" y="{v}.25" angle="90.00" speed="1.00"/>'
                )
            out.write("</timestep>\n")
        out.write("</fcd-export>\n")
    tracemalloc.start()
    try:
        s = read_fcd(f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert s.code.size == 50_000 and len(s.names) == 50
    assert s.a[-1] == 999.5 and s.b[-1] == 49.25
    assert peak < 8e6, peak


# --- the command line -----------------------------------------------------------------


def twinedge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "twinedge", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_sumo
def test_trace_sumo_command(tmp_path):
    p = twinedge(
        "trace", "sumo", "--size", "3", "--vehicles", "5", "--duration-s", "20",
        "--out", "cars.csv", cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("wrote cars.csv: 5 vehicles, "), p.stdout
    assert "t 0..19 s, x " in p.stdout
    # 200 cars cannot enter 24 roads of 200 m within 5 s: the command says so
    full = twinedge(
        "trace", "sumo", "--size", "3", "--vehicles", "200", "--duration-s", "5",
        "--out", "full.csv", cwd=tmp_path,
    )  # fmt: skip
    assert full.returncode == 0, full.stderr
    entered = int(full.stdout.split(": ")[1].split()[0])
    assert 0 < entered < 200
    assert full.stderr == (
        f"note: {200 - entered} of 200 vehicles found no room to enter the network within "
        "5 s (a longer run or a larger network lets them in)\n"
    )
    bad = twinedge("trace", "sumo", "--net", "nowhere.net.xml", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr == "error: --net: got 'nowhere.net.xml'; expected an existing .net.xml file\n"
    conv = twinedge("trace", "fcd", "nothing.xml", cwd=tmp_path)
    assert conv.returncode == 2
    assert conv.stderr.startswith("error: nothing.xml: cannot read the file ("), conv.stderr


# --- invariants -----------------------------------------------------------------------

SAMPLES = st.lists(
    st.tuples(
        st.sampled_from(["car", "bus", "veh10", "veh9", "tram"]),
        st.integers(0, 50),  # time step
        st.floats(-1e5, 1e5, allow_nan=False).map(lambda v: round(v, 2)),
        st.floats(-1e5, 1e5, allow_nan=False).map(lambda v: round(v, 2)),
    ),
    min_size=1,
    max_size=40,
    unique_by=lambda s: (s[0], s[1]),  # one sample per vehicle and time step
)


@given(samples=SAMPLES)
@settings(max_examples=60, deadline=None)
def test_fcd_xml_gz_and_csv_read_as_the_same_trace(samples, tmp_path_factory):
    """Whatever the samples, the FCD file, its gzipped copy and its CSV conversion are
    one trace: each vehicle's samples, sorted by time, under its id (ids sorted)."""
    d = tmp_path_factory.mktemp("fcd")
    steps: dict[int, list[str]] = {}
    for vid, k, x, y in samples:
        steps.setdefault(k, []).append(f'<vehicle id="{vid}" x="{x:.2f}" y="{y:.2f}"/>')
    body = "".join(
        f'<timestep time="{k}.00">{"".join(v)}</timestep>\n' for k, v in sorted(steps.items())
    )
    fcd = d / "f.xml"
    fcd.write_text(FCD_HEAD + body + "</fcd-export>\n")
    (d / "f.xml.gz").write_bytes(gzip.compress(fcd.read_bytes()))
    fcd_to_csv(fcd, d / "f.csv")
    want_ids = sorted({s[0] for s in samples})
    for f in (fcd, d / "f.xml.gz", d / "f.csv"):
        ids, offsets, t, xy, is_ll = read_trace(f)
        assert ids == want_ids and not is_ll
        for i, vid in enumerate(ids):
            mine = sorted((k, x, y) for v, k, x, y in samples if v == vid)
            got = slice(offsets[i], offsets[i + 1])
            assert t[got].tolist() == [float(k) for k, _, _ in mine]
            assert xy[got].tolist() == [[x, y] for _, x, y in mine]


@given(
    points=st.lists(
        st.tuples(st.floats(-89, 89), st.floats(-179, 179)).map(
            lambda p: (round(p[0], 9), round(p[1], 9))
        ),
        min_size=1,
        max_size=30,
    ),
    step_s=st.floats(0.1, 100),
    spaces=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_a_path_file_replays_its_points_in_order(points, step_s, spaces, tmp_path_factory):
    f = tmp_path_factory.mktemp("path") / "user_7.csv"
    sep = ", " if spaces else ","
    f.write_text("Latitude,Longitude\n" + "".join(f"{a!r}{sep}{b!r}\n" for a, b in points))
    ids, offsets, t, ll, is_ll = read_trace(f, path_step_s=step_s)
    assert ids == ["user_7"] and is_ll and offsets.tolist() == [0, len(points)]
    assert t.tolist() == [k * step_s for k in range(len(points))]
    assert ll.tolist() == [list(p) for p in points]
