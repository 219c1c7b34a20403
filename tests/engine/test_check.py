"""check_run: the one validation that `scenario validate` and `run` share."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.conftest import tiny_scenario
from twinedge.engine import check_run, simulate
from twinedge.errors import PolicyError, ScenarioError
from twinedge.scenario import parse_scenario
from twinedge.world.budget import machine_memory_bytes


def scenario(**over):
    return parse_scenario(tiny_scenario(**over), "s.yaml")


def test_a_billion_entities_are_refused_with_the_memory_estimate():
    sc = tiny_scenario()
    sc["entities"][0]["count"] = 10**9
    sc = parse_scenario(sc, "s.yaml")
    for call in (lambda: check_run(sc, "s.yaml"), lambda: simulate(sc)):
        with pytest.raises(ScenarioError) as e:
            call()
        line = e.value.problems[0]
        assert "entities[0].count: got 1000000000; a run would need about" in line
        assert "1,000,000,000 entities" in line and "this machine has" in line


def test_1e12_steps_are_refused_from_the_file_and_from_the_command_line():
    sc = scenario(run={"steps": 10**12, "step_s": 1.0, "seed": 0})
    with pytest.raises(ScenarioError, match=r"s.yaml: run.steps: got 1000000000000; a run"):
        check_run(sc, "s.yaml")
    with pytest.raises(ScenarioError, match=r"s.yaml: --steps: got 1000000000000; a run"):
        check_run(scenario(), "s.yaml", steps=10**12)


def test_the_budget_is_the_machines_memory():
    assert machine_memory_bytes() > 2**28
    sc = tiny_scenario()
    sc["entities"][0]["count"] = 10_000
    check_run(parse_scenario(sc, "s.yaml"), "s.yaml")  # a modest scenario fits


def test_policies_are_resolved_with_their_parameters_before_running():
    sc = scenario(policies={"placement": ["nearest", "teleport"], "migration": "never"})
    with pytest.raises(PolicyError, match=r"^s.yaml: policies.placement: unknown placement"):
        check_run(sc, "s.yaml")
    sc = scenario(
        policies={
            "placement": "optimal",
            "migration": "never",
            "placement_params": {"optimal": {"speed": 3}},
        }
    )
    with pytest.raises(PolicyError, match="rejected parameters"):
        check_run(sc, "s.yaml")
    with pytest.raises(PolicyError, match=r"^--migration: unknown migration policy 'x'"):
        check_run(scenario(), "s.yaml", migration="never,x")


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("run", "step_s"), ".inf", "run.step_s: got inf; expected a finite number"),
        (("infrastructure", "nodes", 0, "x_m"), ".nan", "nodes[0].x_m: got nan"),
        (("run", "steps"), "1e12", "run.steps: got 1000000000000; a run would need"),
        (("area_m", 0), ".inf", "area_m[0]: got inf"),
        (("area_m", 0), "1.0e+300", "area_m[0]: got 1e+300; expected Input should be less"),
        (
            ("entities", 0, "mobility"),
            "{model: gauss_markov, mean_speed_mps: .inf}",
            "mean_speed_mps: got inf",
        ),
        (
            ("entities", 0, "mobility"),
            "{model: random_waypoint, speed_mps: 1.0e+200}",
            "speed_mps: got 1e+200",
        ),
        (("run", "seed"), "-1", "run.seed: got -1"),
        (("policies", "placement"), "teleport", "unknown placement policy 'teleport'"),
    ],
)
def test_validate_refuses_everything_run_refuses(tmp_path, path, value, needle):
    sc = tiny_scenario()
    d = sc
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = "@@"
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(sc).replace("'@@'", value))
    outs = []
    for args in (["scenario", "validate", f], ["run", f, "--out", tmp_path / "o", "-q"]):
        p = subprocess.run(
            [sys.executable, "-m", "twinedge", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert needle in p.stderr, p.stderr
        outs.append(p.stderr)
    assert outs[0] == outs[1]  # the same refusal, word for word
