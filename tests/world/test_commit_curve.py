"""A host's commit curve (``commit_curve_ms``): the commit time per report read at the
spacing of the reports arriving at the host (``1000 / sum of its twins' update_hz``),
linear between points; the same term in the simulator, the orchestrator's view, the
policies and the gym features; absent, every number is what it was; a bad curve is one
clear line from the loader and the command line."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.devices.conftest import env
from tests.devices.test_links import robots
from twinedge.engine import simulate
from twinedge.engine.simulation import build_simulation
from twinedge.errors import ScenarioError
from twinedge.gym.features import placement_observation
from twinedge.orchestrator.core import latency_on_hosts
from twinedge.orchestrator.view import NetworkView, latency_ms
from twinedge.scenario import load_scenario, parse_scenario
from twinedge.world import models

#: three robots by edge-1 (ap-1 at x = 0), one by edge-2 (ap-2 at x = 3000)
XY = ((10.0, 0.0), (20.0, 0.0), (1000.0, 0.0), (2990.0, 0.0))
CURVES = {
    "edge-1": [[0.0, 1.0], [100.0, 3.0], [1000.0, 5.0]],
    "edge-2": [[0.0, 0.5], [200.0, 2.5]],  # shorter: padded with its last point
}


def fleet(update_hz: float, curves: dict | None = CURVES) -> dict:
    """The four robots at ``update_hz``, a loose deadline (no twin misses it, so no
    policy moves one) and ``curves`` on the edges."""
    doc = robots(*XY)
    doc["entities"][0]["twin"].update(update_hz=update_hz, latency_req_ms=100.0)
    for node in doc["infrastructure"]["nodes"]:
        if curves and node["id"] in curves:
            node["commit_curve_ms"] = curves[node["id"]]
    return doc


def test_the_interpolation_by_hand():
    g, c = np.array([0.0, 10.0, 40.0]), np.array([1.0, 2.0, 4.0])
    at = models.curve_ms(np.array([0.0, 5.0, 10.0, 25.0, 40.0, 100.0, np.inf]), g, c)
    # 5 ms: halfway from 1 to 2; 25 ms: halfway from 2 to 4; beyond the ends: the ends
    assert at.tolist() == [1.0, 1.5, 2.0, 3.0, 4.0, 4.0, 4.0]
    # a curve that starts above 0 holds its first value below it
    assert models.curve_ms(
        np.array([0.0, 3.0]), np.array([5.0, 15.0]), np.array([2.0, 1.0])
    ).tolist() == [2.0, 2.0]
    # one point: a fixed commit whatever the spacing
    assert models.curve_ms(np.array([0.0, 1e9]), np.array([7.0]), np.array([0.3])).tolist() == [
        0.3,
        0.3,
    ]
    # rates to spacings: 25 reports/s are 40 ms apart, none are infinitely far apart
    assert models.report_gap_ms(np.array([25.0, 250.0, 0.0])).tolist() == [40.0, 4.0, math.inf]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=6, unique=True),
    st.lists(st.floats(0, 100, allow_nan=False), min_size=6, max_size=6),
    st.floats(0, 2000, allow_nan=False),
)
def test_the_interpolation_is_numpys_interp(gaps, values, q):
    xp = np.array(sorted(gaps))
    fp = np.array(values[: xp.size])
    got = float(models.curve_ms(np.array(q), xp, fp))
    assert got == pytest.approx(float(np.interp(q, xp, fp)), rel=1e-9, abs=1e-9)
    assert fp.min() - 1e-9 <= got <= fp.max() + 1e-9


def test_per_host_curves_padded_and_read_at_a_rate():
    sim = build_simulation(parse_scenario(fleet(2.0), "s.yaml"), seed=0, steps=2)
    w = sim.world
    gap, ms = w.host_commit_curve
    assert gap.tolist() == [[0.0, 100.0, 1000.0], [0.0, 200.0, 200.0]]
    assert ms.tolist() == [[1.0, 3.0, 5.0], [0.5, 2.5, 2.5]]
    # edge-1 at 20 reports/s (50 ms apart): 2.0; edge-2 at 10/s (100 ms apart): 1.5
    assert w.commit_ms_at(np.array([0, 1]), np.array([20.0, 10.0])).tolist() == [2.0, 1.5]


@pytest.mark.parametrize(
    ("hz", "commit"),
    [
        # 2 reports/s per robot: edge-1 gets 6/s (166.67 ms apart): 3 + 2 * 66.67 / 900;
        # edge-2 gets 2/s (500 ms apart): past its last point, 2.5
        (2.0, [3.0 + 2.0 * (1000.0 / 6.0 - 100.0) / 900.0, 2.5]),
        # 10 reports/s: edge-1 30/s (33.33 ms apart): 1 + 2 * 33.33 / 100; edge-2 10/s
        # (100 ms apart): 0.5 + 2 * 100 / 200
        (10.0, [1.0 + 2.0 * (100.0 / 3.0) / 100.0, 1.5]),
    ],
)
def test_the_simulators_latency_pays_the_curve_at_its_hosts_rate_by_hand(hz, commit):
    sim = build_simulation(parse_scenario(fleet(hz), "s.yaml"), seed=0, steps=2)
    base = build_simulation(parse_scenario(fleet(hz, None), "s.yaml"), seed=0, steps=2)
    for s in (sim, base):
        s.reset()
        s.observe()
    w, s = sim.world, sim.state
    assert [w.host_ids[h] for h in s.host] == ["edge-1", "edge-1", "edge-1", "edge-2"]
    assert np.array_equal(s.host, base.state.host)
    np.testing.assert_allclose(s.report_hz, [3 * hz, hz], rtol=1e-12)
    # every twin's latency: the model without a commit, plus its host's commit there
    expected = base.state.latency_ms + np.array(commit)[s.host]
    np.testing.assert_allclose(s.latency_ms, expected, rtol=1e-12)
    # the same formula in the view (the orchestrator, live or simulated) and the fast path
    np.testing.assert_allclose(latency_ms(w, s, slice(None), s.host), s.latency_ms, rtol=1e-12)
    np.testing.assert_allclose(latency_on_hosts(w, s), s.latency_ms, rtol=1e-12)
    # a twin that would move adds its own reports to the host's rate (as its CPU to the
    # load): robot 3 on edge-1 makes 4 robots there, 4 * hz reports/s
    moved = latency_ms(w, s, np.array([3]), np.array([0]))[0]
    own = w.commit_ms_at(np.array([0]), np.array([4 * hz]))[0]
    assert own == pytest.approx(
        float(np.interp(1000.0 / (4 * hz), [0, 100, 1000], [1.0, 3.0, 5.0])), rel=1e-12
    )
    rho = (3 + 1) * 1.0 / 10.0  # 4 twins of 1 GHz on 10 GHz
    assert moved == pytest.approx(
        s.uplink_ms[3] + w.ap_host_ms[s.ap[3], 0] + own + 0.1 / (1.0 - rho), rel=1e-12
    )


def test_placement_limits_and_gym_features_use_the_same_term():
    sim = build_simulation(parse_scenario(fleet(10.0), "s.yaml"), seed=0, steps=2)
    sim.reset()
    sim.observe()
    w, s = sim.world, sim.state
    view = NetworkView(w, s, step_s=1.0)
    prob = view.placement_problem()
    # idle pricing: the host receiving this twin's reports alone (10/s, 100 ms apart):
    # edge-1 3.0, edge-2 0.5 + 2 * 100 / 200 = 1.5
    idle = np.array([3.0, 1.5])
    np.testing.assert_allclose(
        prob.rows(np.array([0]))[0], s.uplink_ms[0] + w.ap_host_ms[s.ap[0]] + idle + 0.1, rtol=1e-12
    )
    cand, cand_lat = prob.candidates, prob.candidate_latency_ms
    for i in range(w.n_entities):
        assert np.array_equal(prob.latency_of(np.full(cand.shape[1], i), cand[i]), cand_lat[i])
    # the load limit leaves the commit at the host's rate now out of a twin's room
    now = s.commit_ms(w)
    np.testing.assert_allclose(now, [1.0 + 2.0 / 3.0, 1.5], rtol=1e-12)
    back = w.ap_host_ms[s.ap, s.host]
    room = 100.0 - s.uplink_ms - back - now[s.host]
    assert (room > 0.1 / (1 - models.RHO_CAP)).all()  # no twin limits its host
    np.testing.assert_allclose(view.load_limit_ghz(), w.host_cpu_ghz, rtol=1e-12)
    # the gym's idle latency feature is the placement problem's
    obs = placement_observation(view, placed=True)
    assert np.array_equal(obs.cand, prob.candidates)
    np.testing.assert_allclose(obs.idle_ms, prob.candidate_latency_ms, rtol=1e-12)


def test_no_curve_changes_no_number():
    w = build_simulation(parse_scenario(fleet(10.0, None), "s.yaml"), seed=0, steps=2).world
    assert w.host_commit_curve is None and not w.commits
    # without a curve the commit is the fixed commit_ms whatever the rate
    assert w.commit_ms_at(np.array([0, 1]), np.array([1.0, 500.0])).tolist() == [0.0, 0.0]
    # the fleet example's mean latency as docs/benchmarks.md quotes it, unchanged
    fleet_run = simulate(load_scenario("examples/two-sites-fleet.yaml"), seed=0).summary
    assert fleet_run["mean_latency_ms"] == pytest.approx(0.8921759012, abs=1e-10)
    # a curve of one point is a fixed commit: the same numbers as commit_ms
    fixed = robots(*XY)
    curve = robots(*XY)
    for a, b in zip(
        fixed["infrastructure"]["nodes"], curve["infrastructure"]["nodes"], strict=True
    ):
        if a["id"] in CURVES:
            a["commit_ms"] = 1.25
            b["commit_curve_ms"] = [[40.0, 1.25]]
    one = simulate(parse_scenario(fixed, "s.yaml"), seed=0, steps=3).summary
    two = simulate(parse_scenario(curve, "s.yaml"), seed=0, steps=3).summary
    assert one["mean_latency_ms"] == pytest.approx(two["mean_latency_ms"], rel=1e-12)
    assert one["migrations"] == two["migrations"]


@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        ("[[5, 1.0], [2, 2.0]]", "with gap_ms increasing, each once (gap 2 ms after 5 ms)"),
        ("[[5, 1.0], [5, 2.0]]", "(gap 5 ms after 5 ms)"),
        (
            "[[0, -1.0]]",
            "commit_curve_ms[0][1]: got -1.0; expected Input should be greater than or equal to 0",
        ),
        (
            "[[-3, 1.0]]",
            "commit_curve_ms[0][0]: got -3; expected Input should be greater than or equal to 0",
        ),
        ("[[0, .nan]]", "commit_curve_ms[0][1]: got nan; expected"),
        ("[]", "commit_curve_ms: got []; expected List should have at least 1 item"),
        (
            "[[0, 1, 2]]",
            "commit_curve_ms[0]: got [0, 1, 2]; expected Tuple should have at most 2 items",
        ),
    ],
)
def test_a_bad_curve_is_one_clear_line_from_the_loader_and_the_command(tmp_path, curve, expected):
    text = yaml.safe_dump(fleet(1.0, {"edge-2": "CURVE"})).replace("CURVE", curve)
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ScenarioError) as e:
        load_scenario(str(p))
    (line,) = e.value.problems
    assert line.startswith(f"{p}: infrastructure.nodes[") and expected in line, line
    run = subprocess.run(
        [sys.executable, "-m", "twinedge", "run", str(p), "--steps", "1"],
        capture_output=True, text=True, timeout=120, env=env(),
    )  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert expected in run.stderr


def test_commit_ms_and_a_curve_on_one_node_are_refused():
    doc = fleet(1.0)
    doc["infrastructure"]["nodes"][2]["commit_ms"] = 1.0
    name = doc["infrastructure"]["nodes"][2]["id"]
    with pytest.raises(
        ScenarioError, match=f"node {name}: give commit_ms \\(1\\) or commit_curve_ms, not both"
    ):
        parse_scenario(doc, "s.yaml")
