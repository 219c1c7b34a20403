"""The differential-privacy releases at the library level: reported scales against the
hand-computed sensitivity/ε, the mean of many draws, clamping, and bad input."""

from __future__ import annotations

import math
import statistics

import opendp.prelude as dp_lib
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinedge.errors import InvalidInput
from twinedge.privacy import dp
from twinedge.runtime.core.privacy import to_units

dp_lib.enable_features("contrib")


def test_laplace_scales_are_sensitivity_over_epsilon():
    r = dp.release_count(10, mechanism="laplace", epsilon=0.5)
    assert (r.mechanism, r.epsilon, r.delta) == ("laplace", 0.5, 0.0)
    assert [(n.part, n.sensitivity, n.scale) for n in r.noise] == [("count", 1.0, 2.0)]
    s = dp.release_sum([1, 2], lower=-5, upper=20, mechanism="laplace", epsilon=2)
    assert (s.noise[0].sensitivity, s.noise[0].scale) == (20.0, 10.0)  # max(|-5|, 20) / 2
    m = dp.release_mean([1, 2], lower=0, upper=10, mechanism="laplace", epsilon=1)
    # half of ε each: sum 10 / 0.5 = 20, count 1 / 0.5 = 2
    assert [(n.part, n.scale, n.epsilon) for n in m.noise] == [
        ("sum", 20.0, 0.5),
        ("count", 2.0, 0.5),
    ]
    h = dp.release_histogram([1, 2, 3], edges=[0, 2, 4], mechanism="laplace", epsilon=0.25)
    assert (h.noise[0].sensitivity, h.noise[0].scale, len(h.value)) == (1.0, 4.0, 2)


def test_gaussian_scale_matches_the_hand_computed_zcdp_calibration():
    # ln(1/δ) = ln(1e6) = 13.815510557964274; ρ = (√14.8155… − √13.8155…)² = 0.0174693…
    r = dp.release_count(10, mechanism="gaussian", epsilon=1.0, delta=1e-6)
    assert r.noise[0].scale == pytest.approx(5.34998, abs=1e-4)
    s = dp.release_sum([1.0], lower=0, upper=3, mechanism="gaussian", epsilon=1.0, delta=1e-6)
    assert s.noise[0].scale == pytest.approx(3 * 5.34998, abs=3e-4)


def test_opendp_accounts_the_reported_scales_within_the_requested_budget():
    """OpenDP's own privacy map of a measurement with the reported scale."""
    lap = dp_lib.m.make_laplace(
        dp_lib.atom_domain(T=float, nan=False),
        dp_lib.absolute_distance(T=float),
        scale=dp.laplace_scale(20.0, 2.0),
    )
    assert lap.map(20.0) == pytest.approx(2.0, rel=1e-9)
    sigma = dp.gaussian_scale(1.0, 1.0, 1e-6)
    gauss = dp_lib.m.make_gaussian(
        dp_lib.atom_domain(T=float, nan=False), dp_lib.absolute_distance(T=float), scale=sigma
    )
    approx = dp_lib.c.make_zCDP_to_approxDP(gauss)
    assert approx.map(1.0).epsilon(1e-6) <= 1.0


def test_bounded_count_draws_have_the_right_mean_and_spread():
    draws = [dp.release_count(100, mechanism="laplace", epsilon=1.0).value for _ in range(2000)]
    # discrete Laplace, scale 1: mean 100, sd ≈ √2 (standard error of the mean ≈ 0.03)
    assert abs(statistics.fmean(draws) - 100) < 0.5
    assert 0.9 < statistics.pstdev(draws) < 2.0
    g = [
        dp.release_count(100, mechanism="gaussian", epsilon=1.0, delta=1e-6).value
        for _ in range(2000)
    ]
    assert abs(statistics.fmean(g) - 100) < 1.5  # σ ≈ 5.35, standard error ≈ 0.12
    assert 4.0 < statistics.pstdev(g) < 7.0


def test_values_are_clamped_into_the_bounds():
    # three values of 1e9 clamped to 10: the sum is 30 give or take noise of scale 0.01
    r = dp.release_sum([1e9, 1e9, 1e9], lower=0, upper=10, mechanism="laplace", epsilon=1000)
    assert abs(r.value - 30) < 1
    m = dp.release_mean([1e9] * 50, lower=0, upper=10, mechanism="laplace", epsilon=1000)
    assert 0 <= m.value <= 10 and abs(m.value - 10) < 0.5


def test_histogram_counts_by_hand():
    assert dp.histogram_counts([0, 0.5, 1, 1.99, 2, 3, -1, 3.5], [0, 1, 2, 3]) == [2, 2, 2]
    h = dp.release_histogram(
        [0, 0.5, 1, 2, 3], edges=[0, 1, 2, 3], mechanism="laplace", epsilon=1e6
    )
    assert h.value == [2, 1, 2] and h.edges == (0.0, 1.0, 2.0, 3.0)


@given(st.lists(st.floats(-1e6, 1e6), max_size=50), st.integers(2, 8))
def test_histogram_counts_every_value_in_range_once(values, k):
    edges = [-1e6 + i * 2e6 / (k - 1) for i in range(k)]
    edges[-1] = 1e6
    assert sum(dp.histogram_counts(values, edges)) == len(values)


@given(st.floats(1e-9, 1e6), st.floats(0, 1))
def test_budget_units_never_undercharge(eps, delta):
    e, d = to_units(eps, delta)
    assert e >= eps * 1e9 - 1e-3 and d >= delta * 1e15 - 1e-3


@pytest.mark.parametrize(
    ("kwargs", "pointer"),
    [
        ({"mechanism": "laplace", "epsilon": 0}, "/epsilon"),
        ({"mechanism": "laplace", "epsilon": -1}, "/epsilon"),
        ({"mechanism": "laplace", "epsilon": math.nan}, "/epsilon"),
        ({"mechanism": "laplace", "epsilon": math.inf}, "/epsilon"),
        ({"mechanism": "laplace", "epsilon": "1"}, "/epsilon"),
        ({"mechanism": "laplace", "epsilon": 1e-300}, "/epsilon"),
        ({"mechanism": "laplace", "epsilon": 1e7}, "/epsilon"),
        ({"mechanism": "laplace", "epsilon": True}, "/epsilon"),
        ({"mechanism": "laplace", "epsilon": 1, "delta": 1e-6}, "/delta"),
        ({"mechanism": "gaussian", "epsilon": 1}, "/delta"),
        ({"mechanism": "gaussian", "epsilon": 1, "delta": 0}, "/delta"),
        ({"mechanism": "gaussian", "epsilon": 1, "delta": 1}, "/delta"),
        ({"mechanism": "gaussian", "epsilon": 1, "delta": math.nan}, "/delta"),
        ({"mechanism": "exponential", "epsilon": 1}, "/mechanism"),
    ],
)
def test_bad_parameters_are_refused(kwargs, pointer):
    with pytest.raises(InvalidInput) as e:
        dp.release_count(5, **kwargs)
    assert e.value.pointer == pointer


@pytest.mark.parametrize(
    ("lower", "upper", "pointer"),
    [
        (None, 10, "/lower"),
        (0, None, "/upper"),
        (5, 1, "/lower"),
        (0, math.nan, "/upper"),
        (-1e300, 0, "/lower"),
        (0, 1e16, "/upper"),
    ],
)
def test_sums_and_means_need_both_finite_bounds(lower, upper, pointer):
    for release in (dp.release_sum, dp.release_mean):
        with pytest.raises(InvalidInput) as e:
            release([1.0], lower=lower, upper=upper, mechanism="laplace", epsilon=1)
        assert e.value.pointer == pointer


@pytest.mark.parametrize("edges", [[], [1], [0, 0], [2, 1], [0, math.inf]])
def test_bad_histogram_edges_are_refused(edges):
    with pytest.raises(InvalidInput, match=r"edges|finite"):
        dp.release_histogram([1.0], edges=edges, mechanism="laplace", epsilon=1)
