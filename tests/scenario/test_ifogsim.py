"""iFogSim2's Melbourne hierarchy and user paths: the real files (skipped with the reason
when absent) and small files made here for the bad cases."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT
from twinedge.engine import simulate
from twinedge.errors import ScenarioError
from twinedge.scenario import load_scenario
from twinedge.world import build_world
from twinedge.world.geo import latlon_to_xy_m
from twinedge.world.mobility import read_trace

RESOURCES = "edgeResources-melbCBD.csv"


def resource_rows(d: Path) -> list[dict[str, str]]:
    """The file read on its own (not by twinedge): ID, Level, Parent, lat, lon."""
    with open(d / RESOURCES, newline="") as f:
        return list(csv.DictReader(f))


def path_points(f: Path) -> np.ndarray:
    """A user path read on its own: the non-blank rows after the header."""
    rows = [ln.split(",") for ln in f.read_text().splitlines()[1:] if ln.strip()]
    return np.array([[float(a), float(b)] for a, b in rows])


def scenario(tmp_path: Path, resources: Path, entities: list[dict] | None = None, **ifog) -> Path:
    sc = {
        "version": 1,
        "name": "ifogsim",
        "infrastructure": {"ifogsim": {"resources_csv": str(resources), **ifog}},
        "entities": entities or [{"count": 3, "mobility": {"model": "static"}}],
        "run": {"steps": 5, "step_s": 1.0, "seed": 0},
        "policies": {"placement": "nearest", "migration": "threshold"},
    }
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(sc))
    return p


def links_of(w, node: str) -> dict[str, float]:
    """The nodes linked to ``node`` and the links' latencies."""
    i = w.node_ids.index(node)
    out = {}
    for a, b, ms in zip(w.links.a, w.links.b, w.links.latency_ms, strict=True):
        if i in (a, b):
            out[w.node_ids[b if a == i else a]] = float(ms)
    return out


def test_the_hierarchy_is_kept(ifogsim_dir, tmp_path):
    rows = resource_rows(ifogsim_dir)
    levels = [r["Level"] for r in rows]
    assert (levels.count("0"), levels.count("1"), levels.count("2")) == (1, 12, 118)
    w = build_world(
        load_scenario(scenario(tmp_path, ifogsim_dir / RESOURCES)), np.random.default_rng(0)
    )
    tiers = {
        t: int((w.node_tier == c).sum())
        for c, t in enumerate(("access", "edge", "region", "cloud"))
    }
    assert tiers == {"access": 118, "edge": 118, "region": 12, "cloud": 1}
    # links follow Parent and nothing else: ap-gateway, gateway-proxy, proxy-data centre
    assert w.links.a.size == 118 + 118 + 12
    for r in rows:
        rid, parent = r["ID"], r["Parent"]
        if r["Level"] == "2":
            assert links_of(w, f"gw-{rid}") == {f"ap-{rid}": 2.0, f"proxy-{parent}": 4.0}, rid
            assert links_of(w, f"ap-{rid}") == {f"gw-{rid}": 2.0}
        elif r["Level"] == "1":
            ups = {k: v for k, v in links_of(w, f"proxy-{rid}").items() if k.startswith("dc-")}
            assert ups == {f"dc-{parent}": 100.0}
    # the file's Parent is not always the nearest proxy: links by distance would differ
    proxies = [w.node_ids.index(f"proxy-{r['ID']}") for r in rows if r["Level"] == "1"]
    not_nearest = 0
    for r in rows:
        if r["Level"] == "2":
            g = w.node_xy_m[w.node_ids.index(f"gw-{r['ID']}")]
            near = min(proxies, key=lambda i: np.hypot(*(w.node_xy_m[i] - g)))
            not_nearest += w.node_ids[near] != f"proxy-{r['Parent']}"
    assert not_nearest == 4
    # every gateway is where the file says, in metres about the mean of all rows
    ll = np.array([[float(r["Latitude"]), float(r["Longitude"])] for r in rows])
    xy = latlon_to_xy_m(ll[:, 0], ll[:, 1], *ll.mean(0))
    for k, r in enumerate(rows):
        name = {"0": "dc", "1": "proxy", "2": "gw"}[r["Level"]] + "-" + r["ID"]
        assert w.node_xy_m[w.node_ids.index(name)] == pytest.approx(xy[k], abs=1e-6)


def test_latency_runs_up_and_down_the_tree(ifogsim_dir, tmp_path):
    rows = resource_rows(ifogsim_dir)
    w = build_world(
        load_scenario(scenario(tmp_path, ifogsim_dir / RESOURCES)), np.random.default_rng(0)
    )
    gw = [r for r in rows if r["Level"] == "2"]
    a = gw[0]
    same = next(r for r in gw[1:] if r["Parent"] == a["Parent"])
    other = next(r for r in gw[1:] if r["Parent"] != a["Parent"])
    ap = list(w.access).index(w.node_ids.index(f"ap-{a['ID']}"))
    host = {w.node_ids[h]: k for k, h in enumerate(w.hosts)}
    ms = w.ap_host_ms[ap]
    assert ms[host[f"gw-{a['ID']}"]] == pytest.approx(2.0)  # its own gateway
    assert ms[host[f"proxy-{a['Parent']}"]] == pytest.approx(2.0 + 4.0)
    assert ms[host[f"gw-{same['ID']}"]] == pytest.approx(2.0 + 4.0 + 4.0)  # via their proxy
    assert ms[host["dc-0"]] == pytest.approx(2.0 + 4.0 + 100.0)
    # a gateway under another proxy: up to the data centre and down again
    assert ms[host[f"gw-{other['ID']}"]] == pytest.approx(2 + 4 + 100 + 100 + 4)
    # iFogSim2's capacities: 2,800 MIPS and 4 GB per gateway and proxy, 44,800 and 40 GB
    assert w.node_cpu_ghz[w.hosts].min() == 2.8 and w.node_cpu_ghz[w.node_ids.index("dc-0")] == 44.8


def test_a_user_path_replays_its_points_in_order(ifogsim_dir):
    for name in ("usersLocation-melbCBD_1.csv", "random_usersLocation-melbCBD_4.csv"):
        pts = path_points(ifogsim_dir / name)
        ids, offsets, t, latlon, is_ll = read_trace(ifogsim_dir / name, path_step_s=10.0)
        assert ids == [name.removesuffix(".csv")] and is_ll
        assert offsets.tolist() == [0, len(pts)]
        assert t.tolist() == [10.0 * k for k in range(len(pts))]
        assert np.array_equal(latlon, pts)
    # the 87-row file has 5 blank lines at its end: 82 points
    assert len(path_points(ifogsim_dir / "usersLocation-melbCBD_1.csv")) == 82


def test_users_walk_their_paths_through_the_hierarchy(ifogsim_dir, tmp_path):
    users = [
        {
            "kind": "user",
            "mobility": {"model": "trace", "file": str(ifogsim_dir / f), "path_step_s": 5},
        }
        for f in ("usersLocation-melbCBD_1.csv", "random_usersLocation-melbCBD_2.csv")
    ]
    sc = load_scenario(scenario(tmp_path, ifogsim_dir / RESOURCES, users))
    w = build_world(sc, np.random.default_rng(0))
    rows = resource_rows(ifogsim_dir)
    origin = np.array([[float(r["Latitude"]), float(r["Longitude"])] for r in rows]).mean(0)
    pts = path_points(ifogsim_dir / "usersLocation-melbCBD_1.csv")
    want = latlon_to_xy_m(pts[:, 0], pts[:, 1], *origin)
    model = w.mobility[0][1]
    for k in (0, 1, 2, 40, 81, 90):  # point k at k * 5 s; held after the last
        assert model.positions(5.0 * k)[0] == pytest.approx(want[min(k, 81)], abs=1e-6)
    # between two points: on the straight line half-way
    assert model.positions(7.5)[0] == pytest.approx((want[1] + want[2]) / 2, abs=1e-6)
    res = simulate(sc, steps=30)
    assert res.world.n_entities == 2 and res.summary["mean_latency_ms"] > 0


def test_the_example_scenario_builds(ifogsim_dir, tmp_path):
    text = (ROOT / "examples" / "ifogsim-melbourne.yaml").read_text()
    assert text.count("../../shared/datasets/ifogsim2-melbourne/") == 7
    p = tmp_path / "ifogsim-melbourne.yaml"
    p.write_text(text.replace("../../shared/datasets/ifogsim2-melbourne", str(ifogsim_dir)))
    w = build_world(load_scenario(p), np.random.default_rng(0))
    assert w.n_entities == 6 and len(w.hosts) == 131


# --- bad files, made here ---------------------------------------------------------------

HEADER = "ID,Latitude,Longitude,Block,Level,Parent,State,Details\n"
GOOD = HEADER + (
    "0,-37.8136,144.9631,0,0,-1,VIC,DataCenter\n"
    "1,-37.8139,144.9546,1,1,0,VIC,Block1 Proxy\n"
    "7,-37.8152,144.9525,1,2,1,VIC,a gateway\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD + "8,-37.81,144.95,1,2,7,VIC,under a gateway\n",
            r"line 5: Parent: got '7'; expected the ID of a level-1 row \(proxy\)",
        ),
        (
            GOOD + "8,-37.81,144.95,1,2,99,VIC,orphan\n",
            r"line 5: Parent: got '99'; expected the ID of a level-1 row",
        ),
        (
            GOOD + "9,-37.81,144.95,1,3,7,VIC,a user\n",
            r"line 5: Level: got 3; expected 0 \(data centre\), 1 \(proxy\) or 2 \(gateway\)",
        ),
        (GOOD + "7,-37.81,144.95,1,2,1,VIC,again\n", r"line 5: ID: got '7'; expected a new ID"),
        (GOOD + "8,north,144.95,1,2,1,VIC,x\n", r"line 5: got Level '2', Latitude 'north'"),
        ("ID,Lat,Lon\n0,1,2\n", r"header \['id', 'lat', 'lon'\]: expected iFogSim2 edge resources"),
    ],
)
def test_bad_resource_files_name_the_line(tmp_path, text, expected):
    f = tmp_path / "res.csv"
    f.write_text(text)
    with pytest.raises(ScenarioError, match=expected):
        build_world(load_scenario(scenario(tmp_path, f)), np.random.default_rng(0))


def test_a_small_hierarchy_by_hand(tmp_path):
    f = tmp_path / "res.csv"
    f.write_text(GOOD)
    p = scenario(tmp_path, f, gateway_proxy_ms=7.5, proxy_cloud_ms=50, edge_cpu_ghz=16)
    w = build_world(load_scenario(p), np.random.default_rng(0))
    assert w.node_ids == ["dc-0", "proxy-1", "gw-7", "ap-7"]
    assert links_of(w, "gw-7") == {"ap-7": 2.0, "proxy-1": 7.5}
    assert links_of(w, "proxy-1") == {"gw-7": 7.5, "dc-0": 50.0}
    assert w.node_cpu_ghz.tolist() == [44.8, 2.8, 16.0, 0.0]
    missing = scenario(tmp_path, tmp_path / "nope.csv")
    with pytest.raises(
        ScenarioError,
        match=r"infrastructure\.ifogsim\.resources_csv: got '.*nope\.csv'; expected an existing file",
    ):
        load_scenario(missing)


def test_path_files_by_hand(tmp_path):
    f = tmp_path / "walk.csv"
    f.write_text("Latitude, Longitude\n-37.81, 144.95\n\n-37.82, 144.96\n")
    ids, offsets, t, ll, is_ll = read_trace(f, path_step_s=2.5)
    assert offsets.tolist() == [0, 2]
    assert ids == ["walk"] and t.tolist() == [0.0, 2.5] and is_ll
    assert ll.tolist() == [[-37.81, 144.95], [-37.82, 144.96]]
    g = tmp_path / "robot.csv"
    g.write_text("x_m,y_m\n0,0\n30,40\n")
    ids, _, t, xy, is_ll = read_trace(g)
    assert ids == ["robot"] and t.tolist() == [0.0, 10.0] and not is_ll
    assert xy.tolist() == [[0, 0], [30, 40]]
    bad = tmp_path / "bad.csv"
    bad.write_text("Latitude,Longitude\n-37.81,144.95\n-37.82,east\n")
    with pytest.raises(
        ScenarioError,
        match=r"bad\.csv: line 3: got \['-37\.82', 'east'\]; expected numbers for the position",
    ):
        read_trace(bad)


def test_without_area_the_area_covers_the_traces(tmp_path):
    """A trace far from every access point: the area (no area_m) is the box of the access
    points and the trace, 5 % wider on each side."""
    (tmp_path / "t.csv").write_text("entity_id,t_s,x_m,y_m\nv,0,1000,0\nv,10,3000,2000\n")
    sc = {
        "version": 1,
        "infrastructure": {
            "nodes": [
                {"id": "ap", "tier": "access", "x_m": 0, "y_m": 0},
                {"id": "e", "tier": "edge", "x_m": 0, "y_m": 0, "cpu_ghz": 8, "mem_gb": 8},
            ]
        },
        "entities": [{"mobility": {"model": "trace", "file": "t.csv"}}],
    }
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(sc))
    w = build_world(load_scenario(p), np.random.default_rng(0))
    # box (0, 0)-(3000, 2000), padded by 5 % of its sides: 150 and 100 m
    assert w.bounds_m.tolist() == pytest.approx([-150, -100, 3150, 2100])
