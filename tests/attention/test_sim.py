"""The simulated comparison: a hand-computed three-entity world, the city (the built-in
scenario's movements), the iFogSim2 Melbourne paths when present, and bad settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import DATASETS
from twinedge.attention import AttentionError, Weights
from twinedge.attention.sim import (
    Movements,
    Setup,
    city_movements,
    compare,
    full_stream_bps,
    path_movements,
    run_policy,
)


def three() -> Movements:
    """Subscriber 0 static at the origin; 1 alternates (10, 0) <-> (0, 10), inside the
    100 m region; 2 alternates (1000, 0) <-> (0, 1000), 900 m outside it (value e^-9)."""
    xy = np.zeros((5, 3, 2))
    for t in range(5):
        xy[t, 1] = (10.0, 0.0) if t % 2 == 0 else (0.0, 10.0)
        xy[t, 2] = (1000.0, 0.0) if t % 2 == 0 else (0.0, 1000.0)
    return Movements(xy, 1.0, np.array(["a", "a", "b"]), "three")


def setup(**kw) -> Setup:
    # one subscriber (entity 0); a budget of half the stream: one update per tick
    base = {"subscribers": 1, "radius_m": 100.0, "update_bytes": 100, "budget_share": 0.5}
    return Setup(**{**base, **kw})


V2 = math.exp(-9.0)
DEN = 4 * (2 + V2)  # four ticks of values 1 (itself), 1 and e^-9


def test_the_full_stream_has_no_staleness():
    m = three()
    assert full_stream_bps(m, setup()) == 2 * 800.0  # two versions of 800 bits a second
    o = run_policy(m, setup(), "all")
    assert (o.bytes, o.share, o.vws_s, o.max_stale_s) == (800.0, 1.0, 0.0, 0.0)


def test_distance_interest_set_starves_the_far_entity():
    # interest set {1}: 1 every tick; 2 never: its copy is 1, 2, 3, 4 s out of date
    o = run_policy(m := three(), setup(interest_set=1), "distance")
    assert o.vws_s == pytest.approx(V2 * (1 + 2 + 3 + 4) / DEN)
    assert (o.bytes, o.share, o.max_stale_s) == (400.0, 0.5, 4.0)
    assert o.interest_set == 1 and m.n == 3


def test_attention_without_a_bound_prefers_the_near_entity():
    # e1 = ln(1 + 14.14/10) + ln(1 + 1) against e2 = -9 + ln(1 + 1414.2/10) + ln(1 + st):
    # 2 would need st > 273 s
    o = run_policy(three(), setup(max_staleness_s=math.inf), "attention")
    assert o.vws_s == pytest.approx(V2 * 10 / DEN)


def test_attention_bound_sends_the_far_entity_every_other_tick():
    # bound 2 s: tick 1 sends 1 (2 stale 1 s); tick 2 sends 2, overdue (1 stale 1 s);
    # tick 3 sends 1, overdue (2 stale 1 s); tick 4 sends 2 (1 stale 1 s)
    o = run_policy(three(), setup(max_staleness_s=2.0), "attention")
    assert o.vws_s == pytest.approx((2 * V2 + 2) / DEN)
    assert o.max_stale_s == 1.0


def test_a_filter_lowers_the_value_of_other_kinds():
    # kinds ("a",): entity 2 (kind b) is worth e^-9 * 0.1; distance starves it as before
    o = run_policy(three(), setup(interest_set=1, kinds=("a",)), "distance")
    v2 = V2 * 0.1
    assert o.vws_s == pytest.approx(v2 * 10 / (4 * (2 + v2)))


def test_bad_settings():
    with pytest.raises(AttentionError, match="policy: 'best'"):
        run_policy(three(), setup(), "best")  # type: ignore[arg-type]
    with pytest.raises(AttentionError, match="less than one 100-byte update"):
        run_policy(three(), setup(), "attention", budget_bps=799.0)
    with pytest.raises(AttentionError, match="budget_share"):
        Setup(budget_share=0.0)
    with pytest.raises(AttentionError, match="subscribers >= 1"):
        Setup(subscribers=0)
    with pytest.raises(AttentionError, match="ticks 0"):
        city_movements(ticks=0)


def test_city_attention_beats_the_interest_sets_at_a_tenth_of_the_stream():
    m = city_movements(ticks=150)
    r = compare(m, Setup(subscribers=8), interest_sets=(1, 10))
    by = {(o["policy"], o["interest_set"]): o for o in r["outcomes"]}
    att, base = by[("attention", None)], by[("distance", 5)]
    assert att["bytes"] == base["bytes"] <= 0.1 * by[("all", None)]["bytes"]
    assert r["ratio"] == att["vws_s"] / base["vws_s"] < 0.5
    assert r["ratio"] <= r["ratio_best"] < 0.5  # against the best interest-set size too
    # a staleness weight of 2 (value x age^2, the square-root rule) does better still
    better = run_policy(m, Setup(subscribers=8, weights=Weights(1, 1, 1, 2)), "attention")
    assert better.vws_s < att["vws_s"]


def test_ifogsim_paths_when_present():
    d = DATASETS / "ifogsim2-melbourne"
    files = sorted(d.glob("*usersLocation-melbCBD_*.csv"))
    if not files:
        pytest.skip(f"iFogSim2 user paths not found in {d} (set TWINEDGE_DATASETS)")
    m = path_movements(files, copies=10, ticks=100, tick_s=1.0)
    assert m.n == 60 and m.xy_m.shape == (101, 60, 2)
    # the paths stay in the CBD (about 1.3 km x 2 km)
    span = m.xy_m.reshape(-1, 2).max(axis=0) - m.xy_m.reshape(-1, 2).min(axis=0)
    assert (span < 3000).all()
    r = compare(m, Setup(subscribers=6), interest_sets=())
    assert r["ratio"] < 1.0
