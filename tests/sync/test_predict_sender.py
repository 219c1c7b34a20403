"""Predictors and the sender rule: hand-computed cases, bad input, and the rule's
guarantees as hypothesis invariants (scalar and vectorised senders agree bit for bit)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinedge.sync import (
    ByteModel,
    ConstantValue,
    FirstOrder,
    Report,
    SecondOrder,
    Sender,
    SenderArray,
    SyncError,
    make_predictor,
)
from twinedge.sync.predict import PREDICTORS
from twinedge.sync.sender import norm

# --- predictors, by hand -------------------------------------------------------------------


def test_first_order_extrapolates_position_plus_velocity_times_dt():
    p = FirstOrder(threshold=1.0, heartbeat_s=5.0)
    p.update(Report(10.0, (100.0, -20.0), velocity=(3.0, 0.5)))
    got = p.predict(14.0)
    assert got.value == (112.0, -18.0)  # 100 + 3*4, -20 + 0.5*4
    assert got.age_s == 4.0
    assert got.error_bound == 1.0


def test_second_order_adds_half_a_dt_squared():
    p = SecondOrder(threshold=0.5, heartbeat_s=None)
    p.update(Report(0.0, (1.0, 2.0), velocity=(2.0, 0.0), acceleration=(-1.0, 4.0)))
    # x = 1 + 2*2 - 0.5*1*4 = 3; y = 2 + 0 + 0.5*4*4 = 10
    assert p.predict(2.0).value == (3.0, 10.0)


def test_constant_ignores_derivatives_and_keeps_the_value():
    p = ConstantValue(threshold=0.2)
    p.update(Report(0.0, (21.5,), velocity=(9.0,)))
    assert p.predict(3.0).value == (21.5,)


def test_error_bound_is_the_threshold_until_the_heartbeat_then_infinite():
    p = FirstOrder(threshold=2.0, heartbeat_s=5.0)
    p.update(p.report(0.0, [0.0, 0.0], velocity=[1.0, 0.0]))
    assert p.predict(5.0).error_bound == 2.0
    assert p.predict(5.001).error_bound == math.inf
    nohb = FirstOrder(threshold=2.0, heartbeat_s=None)
    nohb.update(nohb.report(0.0, [0.0, 0.0]))
    assert nohb.predict(1e6).error_bound == 2.0


def test_report_carries_exactly_the_derivatives_of_the_order():
    assert ConstantValue().report(1.0, [1.0], velocity=[2.0]).velocity is None
    r = SecondOrder().report(1.0, [1.0, 2.0])
    assert r.velocity == (0.0, 0.0) and r.acceleration == (0.0, 0.0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FirstOrder(threshold=-0.1), "threshold must be a finite number >= 0, got -0.1"),
        (lambda: FirstOrder(threshold=math.nan), "threshold must be a finite number >= 0"),
        (lambda: FirstOrder(heartbeat_s=0.0), "heartbeat_s must be a finite number of seconds > 0"),
        (lambda: FirstOrder(heartbeat_s=math.inf), "heartbeat_s must be a finite number"),
        (lambda: make_predictor("kalman"), "unknown predictor 'kalman'; use one of constant"),
        (lambda: Report(0.0, (math.inf,)), "value must be finite"),
        (lambda: Report(math.nan, (1.0,)), "t_s must be a finite number of seconds"),
        (lambda: Report(0.0, ()), "value must be a number or a vector of numbers"),
        (lambda: Report(0.0, (1.0, 2.0), acceleration=(1.0,)), "acceleration has 1 numbers"),
        (lambda: FirstOrder().predict(0.0), "has had no report yet"),
        (lambda: FirstOrder().update(Report(0.0, (1.0,))), "needs the velocity in every report"),
        (
            lambda: SecondOrder().update(Report(0.0, (1.0,), velocity=(1.0,))),
            "needs the acceleration in every report",
        ),
        (lambda: ByteModel(header_bytes=-1), "header_bytes must be an integer >= 0, got -1"),
        (lambda: SenderArray(2, 2, order=3, threshold=1.0, heartbeat_s=None), "order must be"),
    ],
)
def test_bad_input_is_refused_with_the_parameter_named(make, message):
    with pytest.raises(SyncError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_prediction_before_the_report_and_reports_out_of_order_are_refused():
    p = ConstantValue()
    p.update(Report(5.0, (1.0,)))
    with pytest.raises(SyncError, match="before the last report"):
        p.predict(4.0)
    with pytest.raises(SyncError, match="older than the last one"):
        p.update(Report(4.0, (1.0,)))
    with pytest.raises(SyncError, match="a predictor follows one value"):
        p.update(Report(6.0, (1.0, 2.0)))


# --- the sender rule, by hand --------------------------------------------------------------


def test_sender_sends_when_the_error_passes_the_threshold():
    # a car that brakes: x = 10 t - t^2 (v = 10 - 2t), first order with true velocities
    s = Sender(FirstOrder(threshold=1.0, heartbeat_s=None))
    sent, errors = [], []
    for t in range(5):
        r = s.offer(float(t), [10.0 * t - t * t, 0.0], velocity=[10.0 - 2.0 * t, 0.0])
        sent.append(r is not None)
        errors.append(s.error)
    # t=1: predicted 10, true 9 -> 1.0 (not > 1); t=2: 20 vs 16 -> 4.0, sent (x=16, v=6)
    # t=3: 22 vs 21 -> 1.0; t=4: 28 vs 24 -> 4.0, sent
    assert sent == [True, False, True, False, True]
    assert errors == [0.0, 1.0, 4.0, 1.0, 4.0]
    assert (s.sent, s.samples) == (3, 5)


def test_sender_heartbeat_sends_at_the_first_sample_at_or_after_the_period():
    s = Sender(ConstantValue(threshold=1.0, heartbeat_s=2.5))
    sent = [s.offer(t, 7.0) is not None for t in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.5, 6.0)]
    # reports at 0, then 3 (age 3 >= 2.5), then 5.5 (age 2.5)
    assert sent == [True, False, False, True, False, False, True, False]


def test_sender_estimates_velocity_and_acceleration_by_backward_differences():
    s = Sender(SecondOrder(threshold=0.0, heartbeat_s=None))
    for t in range(4):  # x = t^2: v estimates 1, 3, 5; a estimates 2, 2
        s.offer(float(t), [float(t * t)])
    last = s.predictor.last
    assert last is not None
    # threshold 0: every sample is sent; t=1: v=1, a=0 (one velocity only); t=2: v=3, a=2;
    # t=3: predicted 4 + 3 + 0.5*2 = 8, true 9 -> sent with v=5, a=2
    assert last.t_s == 3.0 and last.velocity == (5.0,) and last.acceleration == (2.0,)


def test_sender_refuses_time_going_backwards_and_a_change_of_dimension():
    s = Sender(FirstOrder())
    s.offer(1.0, [0.0, 0.0])
    with pytest.raises(SyncError, match="increasing time order"):
        s.offer(1.0, [0.0, 0.0])
    with pytest.raises(SyncError, match="value must be 2 numbers"):
        s.offer(2.0, [0.0, 0.0, 0.0])
    a = SenderArray(2, 2, 1, 1.0, None)
    a.step(0.0, np.zeros((2, 2)))
    with pytest.raises(SyncError, match="increasing time order for every entity"):
        a.step(0.0, np.zeros((2, 2)))
    with pytest.raises(SyncError, match=r"value must have shape \(2, 2\)"):
        a.step(1.0, np.zeros((3, 2)))


def test_byte_model_counts_time_value_and_derivatives():
    b = ByteModel(header_bytes=10, number_bytes=4)
    assert b.sample_bytes(2) == 10 + 4 * 3
    assert b.report_bytes(0, 2) == 10 + 4 * 3
    assert b.report_bytes(2, 3) == 10 + 4 * (1 + 9)


# --- invariants ----------------------------------------------------------------------------

_coord = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
_steps = st.lists(
    st.tuples(st.floats(0.05, 10.0), _coord, _coord), min_size=1, max_size=40
)  # (time step, x, y)


def _track(steps):
    t = np.cumsum([s[0] for s in steps])
    xy = np.array([[s[1], s[2]] for s in steps])
    return t, xy


@settings(max_examples=150, deadline=None)
@given(
    tracks=st.lists(_steps, min_size=1, max_size=4),
    order=st.sampled_from([0, 1, 2]),
    threshold=st.sampled_from([0.0, 0.5, 1.0, 5.0, 1e3]),
    heartbeat=st.sampled_from([None, 1.0, 5.0]),
)
def test_scalar_and_vectorised_senders_agree_and_keep_the_bounds(
    tracks, order, threshold, heartbeat
):
    """For random tracks: the vectorised sender decides exactly as one scalar sender per
    entity; a receiver fed the reports is within the threshold of the truth at every
    sample (0 where a report was sent); the age at a sample after the rule stays below
    the heartbeat; with threshold 0 the receiver is exact."""
    name = {0: "constant", 1: "first-order", 2: "second-order"}[order]
    n = len(tracks)
    data = [_track(s) for s in tracks]
    senders = [Sender(make_predictor(name, threshold, heartbeat)) for _ in range(n)]
    receivers = [make_predictor(name, threshold, heartbeat) for _ in range(n)]
    arr = SenderArray(n, 2, order, threshold, heartbeat)
    # merge the samples of every entity in time order (ties: one step each)
    events = sorted((t[k], i, k) for i, (t, _) in enumerate(data) for k in range(len(t)))
    for t_s, i, k in events:
        xy = data[i][1][k]
        rep = senders[i].offer(t_s, xy)
        value = np.zeros((n, 2))
        value[i] = xy
        present = np.zeros(n, dtype=bool)
        present[i] = True
        sent = arr.step(t_s, value, present)
        assert bool(sent[i]) == (rep is not None)
        assert arr.error[i] == senders[i].error
        if rep is not None:
            receivers[i].update(rep)
        pred = receivers[i].predict(t_s)
        err = float(norm(np.array(pred.value) - xy))
        assert err <= threshold
        assert err == arr.receiver_error[i]
        if rep is not None:
            assert err == 0.0
        if heartbeat is not None:
            assert pred.age_s < heartbeat
            assert pred.error_bound == threshold
        if threshold == 0.0:
            assert err == 0.0


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(_coord, min_size=1, max_size=50, unique=True),
    heartbeat=st.sampled_from([None, 2.0]),
)
def test_zero_threshold_constant_sends_every_changed_sample(values, heartbeat):
    """With the constant predictor and threshold 0, a value that differs from the last
    one is always sent: here every value differs, so every sample is sent."""
    s = Sender(ConstantValue(threshold=0.0, heartbeat_s=heartbeat))
    assert all(s.offer(float(k), v) is not None for k, v in enumerate(values))


@settings(max_examples=100, deadline=None)
@given(
    gaps=st.lists(st.floats(0.1, 3.0), min_size=1, max_size=60),
    heartbeat=st.floats(0.5, 10.0),
)
def test_heartbeat_bounds_the_age_even_when_the_prediction_is_perfect(gaps, heartbeat):
    """A parked car (perfect prediction) still reports: the age at any sample before the
    rule is below heartbeat + the largest gap, and after the rule below the heartbeat."""
    s = Sender(FirstOrder(threshold=1.0, heartbeat_s=heartbeat))
    t = 0.0
    s.offer(t, [5.0, 5.0])
    for g in gaps:
        t += g
        last = s.predictor.last
        assert last is not None
        # below heartbeat + gap in exact arithmetic; the times here are sums of floats,
        # so the two sides may differ by rounding (an ulp of t)
        assert t - last.t_s < heartbeat + max(gaps) + 1e-9
        s.offer(t, [5.0, 5.0])
        last = s.predictor.last
        assert last is not None
        assert t - last.t_s < heartbeat


def test_every_predictor_is_registered_with_its_order():
    assert {n: c.order for n, c in PREDICTORS.items()} == {
        "constant": 0,
        "first-order": 1,
        "second-order": 2,
    }


@settings(max_examples=150, deadline=None)
@given(
    steps=_steps,
    lost=st.lists(st.booleans(), min_size=40, max_size=40),
    order=st.sampled_from([0, 1, 2]),
    threshold=st.sampled_from([0.0, 1.0, 5.0]),
    heartbeat=st.sampled_from([None, 2.0]),
)
def test_lost_reports_are_the_only_way_past_the_bound(steps, lost, order, threshold, heartbeat):
    """With reports lost on the way, the twin's error at a sample passes the threshold
    only while a report sent after the twin's last one was lost; the first report that
    arrives makes it exact again; and past the heartbeat the twin's bound says so."""
    name = {0: "constant", 1: "first-order", 2: "second-order"}[order]
    t, xy = _track(steps)
    device = Sender(make_predictor(name, threshold, heartbeat))
    twin = make_predictor(name, threshold, heartbeat)
    for k in range(len(t)):
        rep = device.offer(t[k], xy[k])
        delivered = rep is not None and not lost[k]
        if delivered:
            twin.update(rep)
        if twin.last is None:  # the first report was lost: the twin has nothing to serve
            continue
        pred = twin.predict(t[k])
        err = float(norm(np.array(pred.value) - xy[k]))
        assert device.predictor.last is not None and twin.last is not None
        missed = device.predictor.last.t_s > twin.last.t_s  # a later report was lost
        if not missed:
            assert err <= threshold
            assert twin.last == device.predictor.last
        if delivered:
            assert err == 0.0
        if heartbeat is not None and pred.age_s > heartbeat:
            assert pred.error_bound == math.inf
