"""Scoring, choice and budgets of attention-guided sharing: hand-computed cases, bad
input, and the invariants (the budget is never exceeded over a window; the staleness
bound holds when the budget can carry it; a budget that carries the full stream sends
everything)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinedge.attention import (
    AttentionError,
    AttentionQueue,
    Box,
    Circle,
    Interest,
    Weights,
    WindowBudget,
    choose,
    parse_interest,
    scores,
    value,
)

# --- hand-computed values ---------------------------------------------------------------


def test_scores_are_the_softmax_of_the_log_features():
    # falloff 100 m; update 0 inside, fresh, unchanged; update 1 100 m out, 1 s stale,
    # changed by change_scale (10 m), not matching (miss 0.1)
    i = Interest(Circle((0.0, 0.0), 100.0))
    a = scores(
        i,
        np.array([0.0, 100.0]),
        np.array([0.0, 1.0]),
        matches=np.array([True, False]),
        change=np.array([0.0, 10.0]),
    )
    # e0 = 0; e1 = -1 + ln 0.1 + ln 2 + ln 2 -> weight ratio exp(e1) = 0.4 / e
    r = 0.4 / math.e
    assert a == pytest.approx([1 / (1 + r), r / (1 + r)], rel=1e-12)
    assert a.sum() == pytest.approx(1.0)


def test_weights_and_temperature_shape_the_scores():
    d, stl = np.array([0.0, 0.0]), np.array([3.0, 0.0])
    # only staleness, weight 2: (1 + 3)^2 : 1 = 16 : 1
    i = Interest(weights=Weights(0, 0, 0, 2))
    assert scores(i, d, stl) == pytest.approx([16 / 17, 1 / 17])
    # temperature 2 halves the exponents: 4 : 1
    i2 = Interest(weights=Weights(0, 0, 0, 2), temperature=2.0)
    assert scores(i2, d, stl) == pytest.approx([4 / 5, 1 / 5])
    # every weight 0: uniform
    assert scores(Interest(weights=Weights(0, 0, 0, 0)), d, stl) == pytest.approx([0.5, 0.5])


def test_scores_of_nothing_and_bad_input():
    assert scores(Interest(), np.zeros(0), np.zeros(0)).shape == (0,)
    with pytest.raises(AttentionError, match="staleness_s: every value"):
        scores(Interest(), np.zeros(2), np.array([1.0, -1.0]))
    with pytest.raises(AttentionError, match=r"distance_m: every value"):
        scores(Interest(), np.array([np.nan]), np.zeros(1))
    with pytest.raises(AttentionError, match=r"staleness_s: shape \(3,\), expected \(2,\)"):
        scores(Interest(), np.zeros(2), np.zeros(3))


def test_regions_and_value():
    c = Circle((10.0, 0.0), 5.0)
    assert c.distance_m(np.array([[10.0, 3.0], [10.0, 25.0]])).tolist() == [0.0, 20.0]
    b = Box((0.0, 0.0), (4.0, 2.0))
    assert b.distance_m(np.array([[-3.0, -4.0], [7.0, 1.0]])).tolist() == [5.0, 3.0]
    assert Interest(b).falloff == 1.0 and Interest(c).falloff == 5.0
    i = Interest(c, falloff_m=20.0)
    assert value(i, np.array([20.0]), np.array([False])) == pytest.approx([0.1 / math.e])


def test_choose_orders_by_weight_per_bit_and_fills_what_fits():
    w = np.array([0.1, 0.5, 0.4])
    b = np.array([100.0, 1000.0, 200.0])
    # weight per bit: 1e-3, 5e-4, 2e-3 -> 2, 0, 1; 350 bits: 2 (200) and 0 (100)
    assert choose(w, b, np.zeros(3), 350.0).tolist() == [2, 0]
    # 1,300 bits: 2, 0, then 1 (1,000) fits
    assert choose(w, b, np.zeros(3), 1300.0).tolist() == [2, 0, 1]
    # a big one that does not fit does not stop a smaller one further down
    assert choose(np.array([0.6, 0.4]), np.array([1000.0, 100.0]), np.zeros(2), 500.0).tolist() == [
        1
    ]


def test_overdue_updates_go_first_oldest_first_and_block_the_rest():
    w = np.array([0.7, 0.2, 0.1])
    b = np.array([100.0, 100.0, 300.0])
    stale = np.array([0.0, 6.0, 8.0])
    assert choose(w, b, stale, 400.0, max_staleness_s=5.0).tolist() == [2, 1]
    # the oldest overdue (300 bits) does not fit 250: nothing overtakes it
    assert choose(w, b, stale, 250.0, max_staleness_s=5.0).tolist() == []


def test_window_budget_is_a_sliding_window():
    b = WindowBudget(1000.0, 2.0)  # 2,000 bits in any 2 s
    assert b.available_bits(0.0) == 2000.0
    b.spend(0.0, 1500.0)
    b.spend(1.0, 500.0)
    assert b.available_bits(1.5) == 0.0
    assert b.available_bits(2.0) == 1500.0  # the send at 0 left (0, 2]
    assert b.available_bits(3.0) == 2000.0
    with pytest.raises(AttentionError, match="time went backwards"):
        b.available_bits(2.5)
    with pytest.raises(AttentionError, match="both must be > 0"):
        WindowBudget(0.0)


def test_queue_coalesces_by_key_and_keeps_the_first_out_of_date_time():
    q = AttentionQueue(Interest(budget_bps=1000.0, window_s=1.0, max_staleness_s=2.0))
    q.offer("a", "a1", bits=1000, now_s=0.0)
    q.offer("b", "b1", bits=1000, now_s=0.0)
    assert [p.payload for p in q.due(0.0)] == ["a1"]  # equal scores: first offered
    q.offer("b", "b2", bits=1000, now_s=0.5)  # replaces b1; out of date since 0.0
    assert len(q) == 1 and q.pending["b"].since_s == 0.0
    assert q.due(0.5) == []  # the window (−0.5, 0.5] is full
    (p,) = q.due(1.0)
    assert p.payload == "b2"
    assert q.budget.sent_bits_total == 2000.0


def test_queue_skips_an_update_the_window_can_never_carry():
    q = AttentionQueue(Interest(budget_bps=100.0, window_s=1.0))
    q.offer("a", "big", bits=101, now_s=0.0)
    assert len(q) == 0 and q.oversize_skipped == 1
    with pytest.raises(AttentionError, match="bits: 0"):
        q.offer("a", "x", bits=0, now_s=0.0)


def test_queue_change_is_the_distance_from_the_copy_sent():
    q = AttentionQueue(Interest(weights=Weights(0, 0, 1, 0), budget_bps=1000.0))
    q.offer("a", 1, bits=1000, now_s=0.0, xy_m=(0.0, 0.0))
    q.due(0.0)
    assert q.sent_xy_m["a"] == (0.0, 0.0)
    q.offer("a", 2, bits=1000, now_s=1.0, xy_m=(30.0, 40.0))
    assert q._change(q.pending["a"]) == 50.0


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"budget_bps": "0"}, "budget_bps", "expected a finite number > 0"),
        ({"budget_bps": "lots"}, "budget_bps", "expected a number"),
        ({"budget_bps": "nan"}, "budget_bps", "expected a finite number > 0"),
        ({"region": "square:1,2"}, "region", "expected circle:"),
        ({"region": "circle:1,2"}, "region", "expected 3 comma-separated numbers"),
        ({"region": "circle:0,0,-5"}, "region.radius_m", "expected a finite number >= 0"),
        ({"region": "box:0,0,-1,5"}, "region", "a max is below its min"),
        ({"weights": "1,1,1"}, "weights", "expected 4 comma-separated numbers"),
        ({"weights": "1,-1,1,1"}, "weights.filter", "expected a finite number >= 0"),
        ({"miss_factor": "2"}, "miss_factor", "expected at most 1"),
        ({"max_staleness_s": "-3"}, "max_staleness_s", "expected a finite number > 0"),
        ({"window_s": "inf"}, "window_s", "expected a finite number > 0"),
    ],
)
def test_bad_parameters_name_the_field(params, field, message):
    with pytest.raises(AttentionError, match=message) as exc:
        parse_interest(params)
    assert exc.value.field == field


def test_parse_reads_every_parameter():
    i = parse_interest(
        {
            "budget_bps": "inf",
            "region": "circle:1,2,3",
            "weights": "0.5,1,2,3",
            "window_s": "0.5",
            "max_staleness_s": "4",
            "falloff_m": "50",
            "miss_factor": "0.2",
            "change_scale": "2",
            "staleness_scale_s": "0.25",
            "temperature": "3",
            "filter": "ignored: the caller's own",
        }
    )
    assert i == Interest(
        Circle((1.0, 2.0), 3.0),
        Weights(0.5, 1.0, 2.0, 3.0),
        budget_bps=math.inf,
        window_s=0.5,
        max_staleness_s=4.0,
        falloff_m=50.0,
        miss_factor=0.2,
        change_scale=2.0,
        staleness_scale_s=0.25,
        temperature=3.0,
    )


# --- invariants ---------------------------------------------------------------------------

# a stream: per tick, which keys get a new version and of what size
streams = st.lists(
    st.lists(st.tuples(st.integers(0, 7), st.integers(1, 4)), max_size=8), min_size=1, max_size=30
)


def _run(stream, interest, tick_s=1.0):
    """Feed ``stream`` tick by tick; return the sends ``(t, key, bits, staleness)``."""
    q = AttentionQueue(interest)
    sends = []
    for k, offers in enumerate(stream):
        now = k * tick_s
        for key, size in offers:
            q.offer(key, (key, k), bits=size * 100, now_s=now, xy_m=(key * 10.0, 0.0))
        for p in q.due(now):
            sends.append((now, p.key, p.bits, now - p.since_s))
    return q, sends


@settings(max_examples=150, deadline=None)
@given(
    stream=streams,
    budget=st.floats(400, 3000),
    window=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    stale=st.sampled_from([1.0, 3.0, math.inf]),
)
def test_the_budget_is_never_exceeded_over_any_window(stream, budget, window, stale):
    interest = Interest(
        Circle((0.0, 0.0), 20.0), budget_bps=budget, window_s=window, max_staleness_s=stale
    )
    _, sends = _run(stream, interest)
    times = np.array([s[0] for s in sends])
    bits = np.array([s[2] for s in sends])
    for t in set(times.tolist()):  # windows ending at a send hold the most
        in_window = (times > t - window) & (times <= t)
        assert bits[in_window].sum() <= budget * window + 1e-6


# near keys 0-2 change every tick (400 bits each), the others now and then
dense = streams.map(lambda s: [[(0, 4), (1, 4), (2, 4), *offers] for offers in s])


@settings(max_examples=150, deadline=None)
@given(
    stream=dense, stale=st.sampled_from([1.0, 2.0, 4.0]), window=st.sampled_from([2.0, 3.0, 4.0])
)
def test_the_staleness_bound_holds_when_the_budget_can_carry_it(stream, stale, window):
    # the window carries one update of every key (8 keys x 400 bits): an overdue update
    # waits at most one window after it was first seen overdue (docs/attention.md)
    # distance weighs heavily (key k sits k * 10 m out, falloff 10 m): without the bound,
    # near keys offered every tick would starve the far ones
    budget = 8 * 400 / window
    interest = Interest(
        Circle((0.0, 0.0), 0.0),
        Weights(5, 0, 0, 1),
        budget_bps=budget,
        window_s=window,
        max_staleness_s=stale,
        falloff_m=10.0,
    )
    q, sends = _run(stream, interest)
    bound = stale + window + 1.0  # + one tick: overdue is noticed at the next tick
    assert all(s[3] <= bound for s in sends)
    # and nothing left pending is older than the bound either
    end = (len(stream) - 1) * 1.0
    assert all(end - p.since_s <= bound for p in q.pending.values())


@settings(max_examples=150, deadline=None)
@given(stream=streams, weights=st.tuples(*[st.floats(0, 3)] * 4))
def test_a_budget_that_carries_the_full_stream_sends_everything(stream, weights):
    # the biggest tick carries at most 8 keys x 400 bits: a 1 s window of that budget
    # carries every tick's versions as they come
    peak = max((sum(s * 100 for _, s in dict(offers).items()) for offers in stream), default=0)
    interest = Interest(budget_bps=max(peak, 400), window_s=1.0, weights=Weights(*weights))
    q, sends = _run(stream, interest)
    assert len(q) == 0
    assert all(s[3] == 0.0 for s in sends)  # every version the tick it came
    expected = sum(len(dict(offers)) for offers in stream)
    assert len(sends) == expected
