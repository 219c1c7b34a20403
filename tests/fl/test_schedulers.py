"""Power control, the quality indicator and every scheduler on tiny hand-made rounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinedge.fl import FLError, make_scheduler
from twinedge.fl.schedulers import (
    SCHEMES,
    ChannelThreshold,
    Lyapunov,
    PowerCost,
    RoundState,
    TopChannelsTopGradients,
    convergence_term,
    inversion_power,
    power_cost_power,
    quality,
    rayleigh,
)

RNG = np.random.default_rng(0)


def state(h, norm2, *, noise=1.0, sigma_t2=1.0, h_min=0.1, g2=0.0, dim=1) -> RoundState:
    h = np.asarray(h, dtype=float)
    return RoundState(h, np.asarray(norm2, dtype=float), noise, sigma_t2, h >= h_min, g2, 10, dim)


def test_channel_inversion_power_is_sigma_t2_over_gain() -> None:
    # P |h|^2 = sigma_t^2: every device arrives with the same amplitude
    p = inversion_power(np.array([0.5, 2.0, 1.0]), 2.0)
    assert p.tolist() == [8.0, 0.5, 2.0]


def test_rayleigh_gains_have_unit_mean_power() -> None:
    h = rayleigh(200_000, np.random.default_rng(1))
    assert abs(float(np.mean(np.abs(h) ** 2)) - 1.0) < 0.01
    # |h|^2 is exponential(1): P(|h| >= 1) = e^-1
    assert abs(float(np.mean(np.abs(h) >= 1.0)) - np.exp(-1)) < 0.005


def test_quality_indicator_by_hand() -> None:
    # V_DSI = [1, 0.5], V_CSI = [0.5, 1] -> V = [0.75, 0.75]
    # I = 0.5 V - 0.5 E = [0.375 - 0.5, 0.375 - 0.125]
    got = quality(np.array([4.0, 2.0]), np.array([1.0, 2.0]), np.array([1.0, 0.25]))
    assert got.tolist() == [-0.125, 0.25]
    # all weight on the data state: I = V_DSI
    got = quality(np.array([4.0, 2.0]), np.array([1.0, 2.0]), np.zeros(2), rho1=1.0, lambda_v=1.0)
    assert got.tolist() == [1.0, 0.5]


ROUND = dict(h=[1.5, 0.9, 1.0, 0.05], norm2=[0.2, 0.8, 0.4, 1.0])


def test_baseline1_channel_threshold() -> None:
    mask = ChannelThreshold().schedule(state(**ROUND), RNG)
    assert mask.tolist() == [True, False, True, False]


def test_baseline2_top_channels_then_top_gradients() -> None:
    # the two best channels: devices 0 (1.5) and 2 (1.0); of these, the larger norm: 2
    mask = TopChannelsTopGradients(k_channels=2, k=1).schedule(state(**ROUND), RNG)
    assert mask.tolist() == [False, False, True, False]
    # the defaults keep 50 then 20: with 4 devices every eligible one
    assert TopChannelsTopGradients().schedule(state(**ROUND), RNG).tolist() == [True] * 3 + [False]


def test_baseline3_power_cost_rule() -> None:
    # scaled norms d ||g||^2 / mean = 3 [0.2, 0.8, 0.4, 1.0] / 0.6 = [1, 4, 2, 5]
    # |h|^2/(|h|^2 + 1) = [0.692, 0.448, 0.5, 0.0025] -> gains [0.69, 1.79, 1.0, 0.012]
    s = state(**ROUND, dim=3)
    assert PowerCost(c=1.0, p_on=0.9).schedule(s, RNG).tolist() == [False, True, True, False]
    assert PowerCost(c=1.0, p_on=4.0).schedule(s, RNG).tolist() == [False] * 4
    assert power_cost_power(np.array([1.0, 2.0]), 1.0).tolist() == [0.25, 0.16000000000000003]


# h = [2, 1, 0.5], ||g~||^2 = [1, 1, 0.5], sigma_t^2 = 1 -> E = [0.25, 1, 4]
# V = 0.5 [1, 1, 0.5] + 0.5 [1, 0.5, 0.25] = [1, 0.75, 0.375]
# I = 0.5 V - 0.5 E = [0.375, -0.125, -1.8125]; cumulative sums [0.375, 0.25, -1.5625]
# U(k) = sigma_0^2 / k^2 = [1, 0.25, 1/9]
TINY = dict(h=[2.0, 1.0, 0.5], norm2=[1.0, 1.0, 0.5])


@pytest.mark.parametrize(
    ("alpha", "expected"),
    [
        (0.1, [True, False, False]),  # p = [-0.275, -0.225, 1.57]
        (1.0, [True, True, False]),  # p = [0.625, 0, 1.67]
        (100.0, [True, True, True]),  # p = [99.6, 24.75, 12.67]
    ],
)
def test_drift_plus_penalty_by_hand(alpha: float, expected: list[bool]) -> None:
    lyap = Lyapunov(alpha=alpha)
    s = state(**TINY)
    assert lyap.indicator(s).tolist() == [0.375, -0.125, -1.8125]
    assert lyap.schedule(s, RNG).tolist() == expected


def test_convergence_term_by_hand() -> None:
    s = state(**TINY, noise=3.0, g2=0.5)
    # 3/k^2 + 0.5/(10 k)
    assert convergence_term(np.array([1, 2]), s).tolist() == pytest.approx([3.05, 0.775])


def test_truncated_devices_are_never_scheduled() -> None:
    s = state(h=[0.05, 3.0], norm2=[100.0, 1.0])
    for name in SCHEMES[1:]:
        assert not make_scheduler(name).schedule(s, RNG)[0]


def test_unknown_scheme_and_bad_alpha_are_refused() -> None:
    with pytest.raises(FLError, match="unknown; expected one of ideal, lyapunov"):
        make_scheduler("random")
    with pytest.raises(FLError, match="alpha"):
        make_scheduler("lyapunov", alpha=-1.0)


rounds = st.integers(1, 30).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(0.0, 5.0), min_size=n, max_size=n),
        st.lists(st.floats(0.0, 100.0), min_size=n, max_size=n),
        st.floats(0.0, 5.0),
    )
)


@settings(max_examples=80, deadline=None)
@given(rounds, st.sampled_from(SCHEMES))
def test_masks_are_well_formed(r, name: str) -> None:
    h, norm2, noise = r
    s = state(h, norm2, noise=noise, sigma_t2=noise, g2=0.1, dim=650)
    mask = make_scheduler(name).schedule(s, RNG)
    assert mask.dtype == np.bool_ and mask.shape == (len(h),)
    if name != "ideal":
        assert not np.any(mask & ~s.eligible)


@settings(max_examples=80, deadline=None)
@given(rounds, st.floats(0.1, 1e4), st.floats(1.0, 100.0))
def test_more_alpha_never_schedules_fewer_devices_or_less_energy(r, alpha, factor) -> None:
    # p_a'(k) - p_a(k) = (a' - a) U(k) falls with k, so the minimiser cannot move down;
    # the sets are nested prefixes of one ranking, so the energy cannot fall either
    h, norm2, noise = r
    s = state(h, norm2, noise=max(noise, 0.01), sigma_t2=max(noise, 0.01), g2=0.1)
    small = Lyapunov(alpha=alpha).schedule(s, RNG)
    large = Lyapunov(alpha=alpha * factor).schedule(s, RNG)
    assert not np.any(small & ~large)
    power = inversion_power(np.maximum(s.h_abs, 1e-12), s.sigma_t2)
    assert power[large].sum() >= power[small].sum() >= 0.0
