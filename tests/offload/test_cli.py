"""Choosing the offloading policy on the command line (``--offload``), its checks, and
``twinedge policies``."""

from __future__ import annotations

import json

import yaml

from tests.cli.test_cli import twinedge
from tests.conftest import ROOT
from twinedge.engine import simulate
from twinedge.market.mechanisms import MECHANISMS
from twinedge.offload import OFFLOAD_POLICIES
from twinedge.offload.run import OFFLOAD_KEYS
from twinedge.policies.migration import MIGRATION_POLICIES
from twinedge.policies.placement import PLACEMENT_POLICIES
from twinedge.scenario import load_scenario
from twinedge.scenario.schema import CARBON_POLICIES

EXAMPLE = ROOT / "examples" / "offload-city.yaml"


def test_offload_runs_every_policy_given_and_matches_python(tmp_path):
    p = twinedge("run", EXAMPLE, "--steps", 2, "--offload", "local,greedy", "--out", tmp_path, "-q")
    assert p.returncode == 0
    runs = json.loads((tmp_path / "summary.json").read_text())["policies"]
    assert set(runs) == {"greedy+threshold+offload-local", "greedy+threshold+offload-greedy"}
    sc = load_scenario(EXAMPLE)
    for name in ("local", "greedy"):
        s = simulate(sc, steps=2, offload=name).summary
        got = runs[f"greedy+threshold+offload-{name}"]
        for k in OFFLOAD_KEYS:
            assert got[k] == float(f"{s[k]:.10g}"), (name, k)
    # local computes everything on the device: nothing offloaded
    assert runs["greedy+threshold+offload-local"]["offload_offloaded_ratio"] == 0.0


def test_offload_takes_an_import_path(tmp_path):
    (tmp_path / "mine.py").write_text(
        "import numpy as np\n"
        "def everything_local(batch, view, rng):\n"
        "    return np.full(len(batch), -1), np.ones(len(batch))\n"
    )
    p = twinedge(
        "run", EXAMPLE, "--steps", 2, "--offload", "mine:everything_local", "--json", "-q",
        "--out", tmp_path / "out", cwd=tmp_path,
    )  # fmt: skip
    (run,) = json.loads(p.stdout)["policies"].values()
    assert run["offload_offloaded_ratio"] == 0.0 and run["offload_tasks"] > 0


def test_bad_offload_choices_are_one_line_errors(tmp_path):
    p = twinedge(
        "run", EXAMPLE, "--steps", 2, "--offload", "nosuch", "-q", "--out", tmp_path, check=False
    )
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.startswith(
        "error: --offload: offloading policy got 'nosuch'; expected one of local"
    )
    p = twinedge("compare", "city-small", "--steps", 2, "--offload", "greedy", check=False)
    assert p.returncode != 0
    assert "--offload greedy: city-small has no offloading section" in p.stderr


def test_validate_refuses_an_unknown_offloading_policy_in_the_file(tmp_path):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["offloading"]["policy"] = "fastest"
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    for cmd in (("scenario", "validate", f), ("run", f, "-q", "--out", tmp_path / "o")):
        p = twinedge(*cmd, check=False)
        assert p.returncode != 0, cmd
        assert f"{f}: offloading.policy: offloading policy got 'fastest'" in p.stderr, p.stderr
    # bad parameters of a known policy too
    data["offloading"]["policy"] = "lyapunov"
    data["offloading"]["policy_params"] = {"lyapunov": {"speed": 3}}
    f.write_text(yaml.safe_dump(data))
    p = twinedge("scenario", "validate", f, check=False)
    assert p.returncode != 0 and "offloading.policy" in p.stderr and "speed" in p.stderr


def test_a_sweep_over_offload_keeps_the_task_metrics(tmp_path):
    p = twinedge(
        "run", EXAMPLE, "--steps", 2, "--offload", "local,greedy", "--seeds", "0..1",
        "--out", tmp_path, "--json", "-q",
    )  # fmt: skip
    doc = json.loads(p.stdout)
    groups = {g["params"]["offloading.policy"]: g for g in doc["groups"]}
    assert set(groups) == {"local", "greedy"}
    assert groups["local"]["metrics"]["offload_offloaded_ratio"]["mean"] == 0.0
    assert groups["greedy"]["metrics"]["offload_hit_ratio"]["mean"] > 0.0
    assert groups["greedy"]["metrics"]["offload_tasks"]["n"] == 2


def test_policies_lists_every_kind_with_how_to_choose_it():
    rows = json.loads(twinedge("policies", "--json").stdout)
    by_kind: dict[str, list[str]] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r["name"])
        assert r["does"], r
    assert by_kind["placement"] == list(PLACEMENT_POLICIES)
    assert by_kind["migration"] == list(MIGRATION_POLICIES)
    assert by_kind["offloading"] == list(OFFLOAD_POLICIES)
    assert by_kind["market"] == list(MECHANISMS)
    assert by_kind["carbon"] == list(CARBON_POLICIES)
    assert by_kind["xr"] == ["device", "nearest-edge", "best-latency"]
    off = next(r for r in rows if r["kind"] == "offloading")
    assert off["chosen_by"] == "--offload / offloading.policy"
    table = twinedge("policies", "offloading").stdout
    assert "lyapunov" in table and "greedy" in table and "mcafee" not in table
    p = twinedge("policies", "nope", check=False)
    assert p.returncode != 0 and p.stderr.startswith("error: policies: got kind 'nope'")
