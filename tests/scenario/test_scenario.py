"""Scenario files: validation errors, loaders (YAML, EUA CSV, traces), generators."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from tests.conftest import tiny_scenario
from twinedge.errors import ScenarioError
from twinedge.scenario import load_scenario, parse_scenario
from twinedge.world import build_world


def write(tmp_path, data, name="s.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return p


def problems(path) -> list[str]:
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    return e.value.problems


def test_builtin_scenarios_load_and_build():
    for name in ("city", "city-small"):
        sc = load_scenario(name)
        w = build_world(sc, np.random.default_rng(0))
        assert w.n_entities > 0 and w.n_hosts > 0
    w = build_world(load_scenario("city"), np.random.default_rng(0))
    assert (
        w.n_entities,
        int((w.node_tier == 1).sum()),
        int((w.node_tier == 2).sum()),
        int((w.node_tier == 3).sum()),
    ) == (2000, 60, 6, 1)


def test_one_line_per_problem_with_file_field_value_expected(tmp_path):
    sc = tiny_scenario()
    sc["infrastructure"]["nodes"][1]["cpu_ghz"] = -3
    sc["entities"][0]["twin"]["latency_req_ms"] = "fast"
    del sc["version"]
    p = write(tmp_path, sc)
    lines = problems(p)
    assert len(lines) == 3
    assert any(line.startswith(f"{p}: version: got missing; expected") for line in lines)
    cpu = next(line for line in lines if "nodes[1].cpu_ghz" in line)
    assert (
        cpu.startswith(f"{p}: infrastructure.nodes[1].cpu_ghz: got -3; expected")
        and "greater than or equal to 0" in cpu
    )
    assert any("entities[0].twin.latency_req_ms: got 'fast'" in line for line in lines)


def test_unknown_field_wrong_version_and_bad_yaml(tmp_path):
    sc = tiny_scenario(version=2)
    sc["entities"][0]["speed"] = 3
    lines = problems(write(tmp_path, sc))
    assert any("version: got 2" in line for line in lines)
    assert any(
        "entities[0].speed: got 3; expected Extra inputs are not permitted" in line
        for line in lines
    )
    lines = problems(write(tmp_path, "version: 1\nentities: [\n", "bad.yaml"))
    assert len(lines) == 1 and "not valid YAML" in lines[0] and "line" in lines[0]
    assert "no such file" in problems(tmp_path / "missing.yaml")[0]
    assert "expected a mapping" in problems(write(tmp_path, "- 1\n- 2\n", "list.yaml"))[0]


def test_impossible_instances_are_named(tmp_path):
    sc = tiny_scenario()
    sc["infrastructure"]["nodes"][0]["x_m"] = None
    lines = problems(write(tmp_path, sc))
    assert any("nodes[0]" in line and "x_m and y_m, or lat and lon" in line for line in lines)
    sc = tiny_scenario()
    sc["infrastructure"]["nodes"] = [
        n for n in sc["infrastructure"]["nodes"] if n["tier"] != "access"
    ]
    with pytest.raises(ScenarioError, match="no access points"):
        build_world(parse_scenario(sc), np.random.default_rng(0))
    sc = tiny_scenario()
    sc["infrastructure"]["link_rules"] = {
        "access_edge": None,
        "edge_edge": None,
        "edge_region": None,
        "region_cloud": None,
    }
    with pytest.raises(ScenarioError, match="access points reach no host: ap"):
        build_world(parse_scenario(sc), np.random.default_rng(0))
    sc = tiny_scenario()
    sc["infrastructure"]["links"] = [
        {"a": "ap", "b": "nowhere", "latency_ms": 1, "bandwidth_mbps": 10}
    ]
    with pytest.raises(ScenarioError, match=r"links\[0\].b: got 'nowhere'; expected a node id"):
        build_world(parse_scenario(sc), np.random.default_rng(0))
    sc = tiny_scenario()
    sc["entities"][0]["twin"]["cpu_ghz"] = [2.0, 1.0]
    assert any("min > max" in line for line in problems(write(tmp_path, sc)))


def test_explicit_links_and_latlon_nodes(tmp_path):
    sc = tiny_scenario()
    sc["infrastructure"]["link_rules"] = {
        "access_edge": None,
        "edge_edge": None,
        "edge_region": None,
        "region_cloud": None,
    }
    sc["infrastructure"]["links"] = [
        {"a": "ap", "b": "edge", "latency_ms": 1.0, "bandwidth_mbps": 100},
        {"a": "edge", "b": "region", "latency_ms": 4.0, "bandwidth_mbps": 50},
    ]
    w = build_world(parse_scenario(sc), np.random.default_rng(0))
    assert w.ap_host_ms[0] == pytest.approx([1.0, 5.0], abs=1e-6)
    assert w.host_host_mbps[0, 1] == 50.0
    sc["infrastructure"]["nodes"][2] = {
        "id": "region",
        "tier": "region",
        "lat": 0.001,
        "lon": 0.0,
        "cpu_ghz": 1,
        "mem_gb": 1,
    }
    sc["infrastructure"]["origin_lat"], sc["infrastructure"]["origin_lon"] = 0.0, 0.0
    w = build_world(parse_scenario(sc), np.random.default_rng(0))
    assert w.node_xy_m[2] == pytest.approx([0.0, 111.195], rel=1e-4)


def test_trace_mobility_interpolates(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("entity_id,t_s,x_m,y_m\na,0,0,0\na,10,100,0\nb,0,50,50\nb,4,50,90\n")
    sc = tiny_scenario()
    sc["entities"] = [{"kind": "car", "mobility": {"model": "trace", "file": "trace.csv"}}]
    p = write(tmp_path, sc)
    w = build_world(load_scenario(p), np.random.default_rng(0))
    assert list(w.entity_ids) == ["a", "b"]
    model = w.mobility[0][1]
    assert model.positions(2.5) == pytest.approx(np.array([[25.0, 0.0], [50.0, 75.0]]))
    assert model.positions(20.0) == pytest.approx(np.array([[100.0, 0.0], [50.0, 90.0]]))
    xy = w.xy_m.copy()
    model.step(xy, 0.0, 5.0, np.random.default_rng(0))
    assert xy == pytest.approx(np.array([[50.0, 0.0], [50.0, 90.0]]))
    bad = tmp_path / "bad.csv"
    bad.write_text("id,time\n1,2\n")
    sc["entities"][0]["mobility"]["file"] = "bad.csv"
    with pytest.raises(ScenarioError, match="expected columns entity_id,t_s,x_m,y_m"):
        build_world(load_scenario(write(tmp_path, sc)), np.random.default_rng(0))
    sc["entities"][0]["mobility"]["file"] = "absent.csv"
    assert "entities[0].mobility.file: got" in problems(write(tmp_path, sc))[0]


def test_eua_scenario_builds_from_the_real_files(eua_dir, tmp_path):
    sc = {
        "version": 1,
        "name": "eua",
        "infrastructure": {"eua": {"sites_csv": str(eua_dir / "site-optus-melbCBD.csv")}},
        "entities": [
            {
                "positions_csv": str(eua_dir / "users-melbcbd-generated.csv"),
                "mobility": {"model": "static"},
            }
        ],
    }
    w = build_world(parse_scenario(sc), np.random.default_rng(0))
    assert w.n_entities == 816
    assert int((w.node_tier == 0).sum()) == 125 and int((w.node_tier == 1).sum()) == 125
    # the CBD is about 1.3 km x 2.0 km: every user lies within a few km of the origin
    assert np.abs(w.xy_m).max() < 3000
    _, dist = w.attach(w.xy_m)
    assert np.median(dist) < 150


def test_inline_entity_positions():
    sc = tiny_scenario()
    sc["entities"][0].pop("count")
    sc["entities"][0]["positions_m"] = [[10, 20], [30, 40]]
    w = build_world(parse_scenario(sc), np.random.default_rng(0))
    assert w.xy_m.tolist() == [[10.0, 20.0], [30.0, 40.0]]
    sc["entities"][0]["count"] = 3
    with pytest.raises(ScenarioError, match="exactly one of count, positions_m"):
        parse_scenario(sc)


def test_disconnected_hosts_are_rejected():
    sc = tiny_scenario()
    sc["infrastructure"]["link_rules"]["edge_region"] = None
    with pytest.raises(ScenarioError, match="hosts edge and region are not connected"):
        build_world(parse_scenario(sc), np.random.default_rng(0))
