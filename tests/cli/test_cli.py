"""The twinedge command, run as a real subprocess (as a user would)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import tiny_scenario


def twinedge(*args, cwd=None, check=True):
    p = subprocess.run(
        [sys.executable, "-m", "twinedge", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def test_run_writes_every_output_and_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    p = twinedge("run", "city-small", "--out", a, "--steps", 15, "--seed", 4)
    assert "policy comparison" in p.stdout and "greedy+predictive" in p.stdout
    # no progress bar when piped: at most a plain line every few seconds
    assert "\r" not in p.stderr and "\x1b" not in p.stderr
    assert all(ln.startswith("twinedge run: ") for ln in p.stderr.splitlines()), p.stderr
    twinedge("run", "city-small", "--out", b, "--steps", 15, "--seed", 4, "--quiet")
    for name in ("summary.json", "timeseries.csv", "timing.json", "report.html"):
        assert (a / name).is_file()
    assert (a / "summary.json").read_bytes() == (b / "summary.json").read_bytes()
    s = json.loads((a / "summary.json").read_text())
    assert set(s["policies"]) == {
        "greedy+never",
        "greedy+threshold",
        "greedy+utility",
        "greedy+predictive",
    }
    keys = {
        "mean_latency_ms",
        "p50_latency_ms",
        "p95_latency_ms",
        "p99_latency_ms",
        "deadline_miss_ratio",
        "migrations",
        "replacement_migrations",
        "migration_downtime_s",
        "bytes_migrated",
        "device_energy_j",
        "server_energy_j",
        "mean_utilisation",
        "max_utilisation",
    }
    assert all(set(v) == keys for v in s["policies"].values())
    t = json.loads((a / "timing.json").read_text())
    assert all(v["wall_s"] > 0 for v in t["policies"].values())
    rows = (a / "timeseries.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 15 and rows[0].startswith("policy,step,t_s,mean_latency_ms")
    html = (a / "report.html").read_text()
    assert html.count("<svg") == 4 and "Latency CDF" in html and "greedy+utility" in html


def test_run_with_explicit_policies_and_a_user_policy(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(tiny_scenario()))
    r = twinedge(
        "run",
        p,
        "--out",
        tmp_path / "o",
        "--placement",
        "nearest,greedy",
        "--migration",
        "tests.engine.user_policies:stay_put",
        "--no-report",
    )
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert set(s["policies"]) == {
        "nearest+tests.engine.user_policies:stay_put",
        "greedy+tests.engine.user_policies:stay_put",
    }
    assert not (tmp_path / "o" / "report.html").exists()
    assert r.returncode == 0


def test_compare_prints_a_table_and_json():
    p = twinedge(
        "compare",
        "city-small",
        "--placement",
        "nearest",
        "--migration",
        "never,threshold",
        "--steps",
        5,
    )
    assert "nearest+never" in p.stdout and "nearest+threshold" in p.stdout
    p = twinedge(
        "compare",
        "city-small",
        "--placement",
        "nearest",
        "--migration",
        "never",
        "--steps",
        5,
        "--json",
    )
    d = json.loads(p.stdout)
    assert list(d["policies"]) == ["nearest+never"] and d["policies"]["nearest+never"]["wall_s"] > 0


def test_user_mistakes_print_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    sc = tiny_scenario()
    sc["run"]["steps"] = 0
    bad.write_text(yaml.safe_dump(sc))
    p = twinedge("scenario", "validate", bad, check=False)
    assert p.returncode == 2
    assert (
        p.stderr.strip()
        == f"error: {bad}: run.steps: got 0; expected Input should be greater than or equal to 1"
    )
    p = twinedge("run", "city-small", "--migration", "teleport", "--out", tmp_path, check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "unknown migration policy 'teleport'" in p.stderr
    p = twinedge("run", tmp_path / "nope.yaml", check=False)
    assert p.returncode == 2 and "no such file" in p.stderr
    p = twinedge("run", "--steps", "-1", check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_scenario_validate_and_show():
    p = twinedge("scenario", "validate", "city")
    assert p.stdout.startswith("ok: city: ") and "2000 entities" in p.stdout
    d = json.loads(twinedge("scenario", "show", "city", "--json").stdout)
    assert (
        d["tiers"]["edge"]["count"] == 60
        and d["tiers"]["region"]["count"] == 6
        and d["tiers"]["cloud"]["count"] == 1
    )
    assert sum(d["entities"].values()) == 2000
    assert "twin demand" in twinedge("scenario", "show", "city-small").stdout


def write_instance(tmp_path, inst, name="i.json"):
    p = tmp_path / name
    p.write_text(json.dumps(inst))
    return p


def test_place_solves_an_instance_to_proven_optimality(tmp_path):
    # 3 twins, 2 hosts of 2 GHz: nearest wants all on host 0 (infeasible); optimum by hand:
    # twins 0,1 on host 0 (1+1) and twin 2 on host 1 (3): 1 + 1 + 3 = 5... check all 8:
    inst = {
        "latency_ms": [[1, 2], [1, 4], [1, 3]],
        "demand": {"cpu_ghz": [1, 1, 1], "mem_gb": [1, 1, 1]},
        "capacity": {"cpu_ghz": [2, 2], "mem_gb": [8, 8]},
    }
    p = twinedge(
        "place",
        write_instance(tmp_path, inst),
        "--policy",
        "optimal",
        "--time-limit-s",
        10,
        "--json",
    )
    d = json.loads(p.stdout)
    assert (
        d["status"] == "optimal"
        and d["hosts"] == [1, 0, 0]
        and d["objective_ms"] == pytest.approx(4.0)
    )
    assert d["lower_bound_ms"] == pytest.approx(4.0) and d["gap"] == pytest.approx(0.0, abs=1e-9)
    d = json.loads(
        twinedge("place", write_instance(tmp_path, inst), "--policy", "greedy", "--json").stdout
    )
    assert d["status"] in ("feasible", "optimal") and d["objective_ms"] >= 4.0


def test_place_reports_infeasible_and_bad_files(tmp_path):
    inst = {
        "latency_ms": [[1, None], [1, None]],
        "demand": {"cpu_ghz": [2, 2], "mem_gb": [1, 1]},
        "capacity": {"cpu_ghz": [3, 9], "mem_gb": [9, 9]},
    }
    p = twinedge(
        "place", write_instance(tmp_path, inst), "--policy", "optimal", "--json", check=False
    )
    assert p.returncode == 3
    d = json.loads(p.stdout)
    assert d["status"] == "infeasible" and d["hosts"] == [] and "cpu_ghz" in d["reason"]
    p = twinedge(
        "place",
        write_instance(tmp_path, {"latency_ms": [[1]], "demand": {"cpu_ghz": [1]}}),
        check=False,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr and "capacity" in p.stderr
    p = twinedge(
        "place",
        write_instance(tmp_path, inst),
        "--policy",
        "nearest",
        "--time-limit-s",
        3,
        check=False,
    )
    assert p.returncode == 2 and "takes no time limit" in p.stderr
