"""The linear migration policy, and the training example that produces one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twinedge.engine import simulate
from twinedge.errors import PolicyError
from twinedge.gym import LINEAR_FEATURES, LinearMigrationPolicy, linear_actions
from twinedge.orchestrator import as_policy, check_policy
from twinedge.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]


def one_twin_two_candidates(**cols: float) -> np.ndarray:
    """A migration observation of one twin with two candidates (c = 2: 15 columns)."""
    names = ["latency_ratio", "late", "migrating", "speed", "host_utilisation"] + [
        f"cand{j}_{f}"
        for f in ("latency_ratio", "utilisation", "fits", "current", "downtime_ratio")
        for j in range(2)
    ]
    obs = np.zeros((1, len(names)), np.float32)
    for k, v in cols.items():
        obs[0, names.index(k)] = v
    return obs


def test_linear_actions_by_hand():
    late_twin = one_twin_two_candidates(
        latency_ratio=1.5, late=1, cand0_latency_ratio=0.5, cand1_latency_ratio=1.2,
        cand0_fits=1, cand1_fits=1,
    )  # fmt: skip
    w = np.array([-0.1, 0, 1, 0, 0, 0, 0, 0])  # move a late twin that gains > 0.1
    # scores: candidate 0: -0.1 + 1.0 = 0.9; candidate 1: -0.1 + 0.3 = 0.2 -> candidate 0
    assert linear_actions(late_twin, w).tolist() == [1]
    # it does not fit on candidate 0: candidate 1
    no_room = late_twin.copy()
    no_room[0, 9] = 0
    assert linear_actions(no_room, w).tolist() == [2]
    # on time: the late-gain term is 0, the bias -0.1 keeps it
    on_time = late_twin.copy()
    on_time[0, 1] = 0
    assert linear_actions(on_time, w).tolist() == [0]
    # the downtime weight: moving costs 0.5 * 2 = 1.0 > 0.9 -> it stays
    slow_copy = one_twin_two_candidates(
        latency_ratio=1.5, late=1, cand0_latency_ratio=0.5, cand0_fits=1, cand0_downtime_ratio=2
    )
    assert linear_actions(slow_copy, np.array([-0.1, 0, 1, -0.5, 0, 0, 0, 0])).tolist() == [0]
    # never to the host it is on, even with a large score
    current = one_twin_two_candidates(cand0_fits=1, cand0_current=1)
    assert linear_actions(current, np.array([5.0, 0, 0, 0, 0, 0, 0, 0])).tolist() == [0]


def test_linear_actions_refuse_bad_shapes():
    with pytest.raises(ValueError, match="8 weights"):
        linear_actions(np.zeros((1, 15)), np.zeros(3))
    with pytest.raises(ValueError, match=r"\(n, 5 \+ 5c\)"):
        linear_actions(np.zeros((1, 14)), np.zeros(8))


def test_the_policy_passes_the_conformance_checks_and_runs():
    policy = LinearMigrationPolicy([-0.05, 0, 1, 0, 0, 0, 0, 0])
    passed = check_policy(policy)
    assert {"params", "valid decisions", "deterministic", "no twins", "one twin"} <= set(passed)
    assert policy.get_params() == {"weights": (-0.05, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0)}
    assert repr(policy).startswith("LinearMigrationPolicy(weights=(-0.05,")
    res = simulate(load_scenario("city-small"), steps=12, migration=policy)
    assert res.label == "greedy+LinearMigrationPolicy" and res.summary["migrations"] > 0


def test_all_zero_weights_never_move():
    res = simulate(load_scenario("city-small"), steps=12, migration=LinearMigrationPolicy())
    ref = simulate(load_scenario("city-small"), steps=12, migration="never")
    assert res.summary == ref.summary


def test_save_and_load(tmp_path):
    policy = LinearMigrationPolicy(np.arange(8) / 10)
    path = policy.save(tmp_path / "p.json")
    doc = json.loads(path.read_text())
    assert doc["features"] == list(LINEAR_FEATURES) and doc["weights"][3] == 0.3
    assert LinearMigrationPolicy.load(path).weights == policy.weights
    path.write_text('{"features": ["bias"], "weights": [1]}')
    with pytest.raises(ValueError, match=r"p\.json: features \['bias'\] are not"):
        LinearMigrationPolicy.load(path)
    path.write_text("not json")
    with pytest.raises(ValueError, match="not a saved LinearMigrationPolicy"):
        LinearMigrationPolicy.load(path)


@pytest.mark.parametrize("weights", [[1.0, 2.0], [float("nan")] * 8])
def test_bad_weights_are_refused(weights):
    with pytest.raises(ValueError, match="8 finite numbers"):
        LinearMigrationPolicy(weights)
    with pytest.raises(PolicyError, match="bad parameter"):
        as_policy(LinearMigrationPolicy, "migration", weights=weights)


def test_the_training_example_trains_and_its_policy_is_a_migration_policy(tmp_path):
    """A small run of examples/gym_baseline.py (2 iterations, 2 eval seeds): it writes the
    policy, prints the compare table with the trained policy beside the built-ins, and
    ``gym_baseline:Trained`` passes ``check_policy`` and runs by import path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = ["--iterations", "2", "--population", "4", "--train-seeds", "100", "--steps", "5"]
    args += ["--eval-seeds", "0,1", "--eval-steps", "5"]
    p = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "gym_baseline.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("best mean return") == 2
    for policy in ("never", "threshold", "utility", "predictive", "gym_baseline:Trained"):
        assert re.search(rf"│ greedy\+{re.escape(policy)} +│ +2 │", p.stdout), p.stdout
    saved = json.loads((tmp_path / "gym-policy.json").read_text())
    assert len(saved["weights"]) == 8
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from gym_baseline import Trained
    finally:
        sys.path.remove(str(ROOT / "examples"))
    trained = Trained(str(tmp_path / "gym-policy.json"))
    assert list(trained.weights) == saved["weights"]
    assert "valid decisions" in check_policy(trained)
    with pytest.raises(PolicyError, match=r"run examples/gym_baseline\.py first"):
        as_policy(Trained, "migration", path=str(tmp_path / "missing.json"))
    # by import path from the command line, in the folder of the saved policy
    cli = subprocess.run(
        [sys.executable, "-m", "twinedge", "compare", "city-small", "--steps", "5", "--json",
         "--migration", "never,gym_baseline:Trained"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'examples'}"},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert set(json.loads(cli.stdout)["policies"]) == {
        "greedy+never",
        "greedy+gym_baseline:Trained",
    }
