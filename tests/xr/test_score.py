"""The XRMI score against the level descriptions of seed 002's Table 2, and its
invariants."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinedge.xr.score import Kpis, sub_scores, xrmi

BUDGET = 10.0


@pytest.mark.parametrize("scenario", ["weak", "strong"])
def test_level_5_no_perceptible_stall(scenario):
    # level 5 (优): smooth, no perceptible stall, corruption or black screen; presence
    # like the real world; no dizziness, imperceptible
    k = Kpis(0.0, 0.0, 6.0, 0.5, BUDGET, 0.0)
    assert xrmi(k, scenario) >= 4.5


@pytest.mark.parametrize("scenario", ["weak", "strong"])
def test_level_4_occasional_slight_stall(scenario):
    # level 4 (良): occasionally a very slight stall; perceptible but not annoying
    k = Kpis(0.004, 0.8, 9.5, 1.5, BUDGET, 0.01)
    assert 3.5 <= xrmi(k, scenario) < 4.5


@pytest.mark.parametrize("scenario", ["weak", "strong"])
def test_level_3_a_few_perceptible_stalls(scenario):
    # level 3 (中): a few perceptible stalls, otherwise normal; no long runs of stalls;
    # slightly annoying
    k = Kpis(0.04, 5.0, 14.0, 3.0, BUDGET, 0.05)
    assert 2.5 <= xrmi(k, scenario) < 3.5


@pytest.mark.parametrize("scenario", ["weak", "strong"])
def test_level_2_many_continuous_stalls(scenario):
    # level 2 (差): many continuous stalls, much of the time not like the real world;
    # very annoying
    k = Kpis(0.2, 30.0, 24.0, 6.0, BUDGET, 0.15)
    assert 1.5 <= xrmi(k, scenario) < 2.5


@pytest.mark.parametrize("scenario", ["weak", "strong"])
def test_level_1_unusable(scenario):
    # level 1 (劣): perceptible stalls most of the time, dizziness most of the time;
    # the user does not want to go on
    k = Kpis(0.7, 200.0, 45.0, 12.0, BUDGET, 0.1)
    assert xrmi(k, scenario) <= 1.5


def test_hand_computed_sub_scores_and_weights():
    # P: bad 0.03 -> 3, stalls 0 -> 5, min 3; I: 15/10 = 1.5 -> 3, jitter 0.1 -> 5, min 3
    # Q: 5 - warp(0.05) = 4.5; strong: 0.35*3 + 0.45*3 + 0.2*4.5 = 3.3, cap 3.5 -> 3.3
    k = Kpis(0.03, 0.0, 15.0, 1.0, BUDGET, 0.05)
    assert [float(x) for x in sub_scores(k)] == [3.0, 3.0, 4.5]
    assert float(xrmi(k, "strong")) == pytest.approx(3.3)
    # weak: 0.45*3 + 0.15*3 + 0.4*4.5 = 3.6, capped at P 3 + 0.5 = 3.5
    assert float(xrmi(k, "weak")) == pytest.approx(3.5)
    # strong caps at min(P, I) + 0.5 too: an unanswering game is unusable
    laggy = Kpis(0.0, 0.0, 40.0, 1.0, BUDGET, 0.0)  # I = 1
    assert float(xrmi(laggy, "strong")) == pytest.approx(1.5)
    assert float(xrmi(laggy, "weak")) == pytest.approx(0.45 * 5 + 0.15 * 1 + 0.4 * 5)


def test_interaction_weighs_more_in_strong_scenarios():
    laggy = Kpis(0.0, 0.0, 20.0, 1.0, BUDGET, 0.0)  # interaction 2.5, the rest 5
    assert xrmi(laggy, "strong") < xrmi(laggy, "weak")


def test_device_rendering_penalty_lowers_image():
    assert sub_scores(Kpis(0.0, 0.0, 5.0, 0.5, BUDGET, 0.0, image_base=4.0))[2] == 4.0


def test_unknown_scenario_is_refused():
    with pytest.raises(ValueError, match="scenario must be one of"):
        xrmi(Kpis(0.0, 0.0, 5.0, 0.5, BUDGET, 0.0), "medium")


ratio = st.floats(0.0, 1.0)
delay = st.floats(0.0, 200.0)


@given(
    ratio,
    st.floats(0, 500),
    delay,
    st.floats(0, 50),
    ratio,
    st.floats(1, 5),
    st.sampled_from(["weak", "strong"]),
)
def test_score_in_range(bad, stalls, p99, jit, warp, base, scenario):
    s = float(xrmi(Kpis(bad, stalls, p99, jit, BUDGET, warp, base), scenario))
    assert 1.0 <= s <= 5.0


@given(
    ratio,
    ratio,
    st.floats(0, 500),
    delay,
    delay,
    st.floats(0, 50),
    ratio,
    st.sampled_from(["weak", "strong"]),
)
def test_score_monotone(bad_a, bad_b, stalls, p99_a, p99_b, jit, warp, scenario):
    lo_bad, hi_bad = sorted((bad_a, bad_b))
    lo_d, hi_d = sorted((p99_a, p99_b))
    # more late frames never raise it
    assert xrmi(Kpis(hi_bad, stalls, lo_d, jit, BUDGET, warp), scenario) <= xrmi(
        Kpis(lo_bad, stalls, lo_d, jit, BUDGET, warp), scenario
    )
    # lower delay never lowers it
    assert xrmi(Kpis(lo_bad, stalls, lo_d, jit, BUDGET, warp), scenario) >= xrmi(
        Kpis(lo_bad, stalls, hi_d, jit, BUDGET, warp), scenario
    )
    assert np.isfinite(xrmi(Kpis(lo_bad, stalls, lo_d, jit, BUDGET, warp), scenario))
