"""Frame streams: hand-computed delays, ATW classes, PDU-set loss, GOP breakage, runs."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinedge.errors import InputError
from twinedge.xr.frames import (
    QOS_PROFILES,
    FrameSpec,
    StreamState,
    count_runs,
    frames_in_step,
    generate_frames,
    jitter_ms,
    row_quantiles,
)


def gen(
    spec, fixed, rate, render=0.0, rho=0.0, drop=0.0, k=0, carry=None, blackout=None, step_s=1.0
):
    s = spec.n
    return generate_frames(
        spec,
        k,
        step_s,
        np.full(s, fixed),
        np.full(s, rate),
        np.full(s, render),
        np.full(s, rho),
        np.full(s, drop),
        np.random.default_rng(1),
        carry or StreamState.fresh(s),
        blackout,
    )


def test_qos_table_of_ts_23_501():
    assert QOS_PROFILES[80] == (10.0, 1e-6)
    assert [QOS_PROFILES[q][0] for q in (87, 88, 89, 90)] == [5.0, 10.0, 15.0, 20.0]


def test_delays_hand_computed_with_i_frames():
    # 10 fps, GOP 5, P = 10 kB, I = 3 x P; 8e7 bit/s: P 1 ms, I 3 ms on air
    spec = FrameSpec.make(
        1,
        fps=10,
        p_frame_bytes=10_000,
        i_ratio=3,
        gop_frames=5,
        size_cv=0.0,
        per=0.0,
        budget_ms=4.0,
        atw_window_ms=1.0,
    )
    b = gen(spec, fixed=2.0, rate=8e7, render=0.5)
    assert b.delay_ms[0].tolist() == pytest.approx([5.5, 3.5, 3.5, 3.5, 3.5] * 2)
    assert b.i_frame[0].tolist() == [True, False, False, False, False] * 2
    # 5.5 > 4 + 1: the I-frames are late (the previous frame is shown); no warps
    assert b.late[0].sum() == 2 and b.warped[0].sum() == 0 and b.lost.sum() == 0
    spec2 = FrameSpec.make(
        1,
        fps=10,
        p_frame_bytes=10_000,
        i_ratio=3,
        gop_frames=5,
        size_cv=0.0,
        per=0.0,
        budget_ms=4.0,
        atw_window_ms=2.0,
    )
    b2 = gen(spec2, fixed=2.0, rate=8e7, render=0.5)
    assert b2.warped[0].sum() == 2 and b2.late[0].sum() == 0  # 5.5 <= 4 + 2: warped


def test_frames_per_step_add_up_for_non_integer_rates():
    fps = np.array([72.0, 90.0, 59.94])
    total = sum(frames_in_step(fps, k, 0.25)[0] for k in range(40))
    assert total.tolist() == [720, 900, 599]


def test_mm1_waiting_time_has_the_queueing_mean():
    spec = FrameSpec.make(1, fps=200_000, size_cv=0.0, per=0.0)
    b = gen(spec, fixed=0.0, rate=1e15, render=2.0, rho=0.5)
    # mean sojourn = render / (1 - rho) = 4 ms (the models' queue factor)
    assert b.delay_ms[0].mean() == pytest.approx(4.0, rel=0.02)


def test_pdu_set_loss_breaks_the_gop_until_the_next_i_frame():
    spec = FrameSpec.make(1, fps=20, gop_frames=10, size_cv=0.0, per=0.0)
    b = gen(spec, fixed=1.0, rate=1e12, blackout=np.array([3]))
    # frames 0-2 blacked out: the first GOP is broken to its end, the second is whole
    assert b.lost[0].tolist() == [True] * 10 + [False] * 10
    # a GOP the last step ended broken stays broken into this step
    spec = FrameSpec.make(1, fps=4, gop_frames=8, size_cv=0.0, per=0.0)
    carry = StreamState.fresh(1)
    gen(spec, fixed=1.0, rate=1e12, carry=carry, blackout=np.array([1]))
    assert carry.gop_broken.tolist() == [True]
    b = gen(spec, fixed=1.0, rate=1e12, k=1, carry=carry)
    assert b.lost[0].all()  # frames 4-7: same GOP
    b = gen(spec, fixed=1.0, rate=1e12, k=2, carry=carry)
    assert not b.lost[0].any()  # frame 8 is an I-frame


def test_packet_error_rate_loses_pdu_sets():
    # 15 kB P-frames = 10 packets; PER 0.01 -> P(frame ok) = 0.99^10; GOP 1 (all I, r=1)
    spec = FrameSpec.make(
        1, fps=100_000, p_frame_bytes=15_000, i_ratio=1, gop_frames=1, size_cv=0.0, per=0.01
    )
    b = gen(spec, fixed=1.0, rate=1e12)
    assert b.lost.mean() == pytest.approx(1 - 0.99**10, abs=0.005)


def test_congestion_drop():
    spec = FrameSpec.make(1, fps=100_000, gop_frames=1, i_ratio=1, size_cv=0.0, per=0.0)
    assert gen(spec, 1.0, 1e12, drop=0.25).lost.mean() == pytest.approx(0.25, abs=0.01)


def test_stall_runs():
    bad = np.array([[1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1]], dtype=bool)
    stalls, end = count_runs(bad, np.array([11]), np.array([0]), 3)
    assert stalls.tolist() == [2] and end.tolist() == [3]
    # padding beyond n_frames is not counted
    stalls, end = count_runs(bad, np.array([8]), np.array([0]), 3)
    assert stalls.tolist() == [1] and end.tolist() == [0]


def test_quantiles_and_jitter_hand_computed():
    d = np.array([[1.0, 2.0, 3.0, 4.0, 100.0], [5.0, 5.0, 0.0, 0.0, 0.0]])
    v = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], bool)
    q = row_quantiles(d, v, (0.5, 0.99))
    assert q[0].tolist() == pytest.approx([3.0, 4.0 + 0.96 * 96.0])
    assert q[1].tolist() == [5.0, 5.0]
    assert jitter_ms(d, v).tolist() == [(1 + 1 + 1 + 96) / 4, 0.0]


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"fps": 0}, "fps must be"),
        ({"per": 1.0}, "per must be below 1"),
        ({"budget_ms": float("nan")}, "budget_ms"),
        ({"stall_frames": 0}, "stall_frames"),
    ],
)
def test_bad_spec_is_refused(kw, msg):
    with pytest.raises(InputError, match=msg):
        FrameSpec.make(2, **kw)


@given(st.lists(st.booleans(), min_size=1, max_size=40), st.integers(1, 5), st.integers(1, 39))
def test_runs_split_anywhere_count_the_same(bits, k, cut):
    bad = np.array([bits])
    n = len(bits)
    whole, _ = count_runs(bad, np.array([n]), np.array([0]), k)
    cut = min(cut, n)
    a, run = count_runs(bad[:, :cut], np.array([cut]), np.array([0]), k)
    b, _ = count_runs(bad[:, cut:], np.array([n - cut]), run, k)
    assert whole.tolist() == (a + b).tolist()
    # brute force: runs of length >= k
    runs, cur = 0, 0
    for x in [*bits, False]:
        if x:
            cur += 1
        else:
            runs += cur >= k
            cur = 0
    assert whole.tolist() == [runs]


@given(st.floats(0, 50), st.floats(0, 50))
def test_lower_delay_never_more_late_frames(a, b):
    spec = FrameSpec.make(3, fps=90, size_cv=0.2, per=0.0)
    lo, hi = sorted((a, b))
    late_lo = gen(spec, lo, 1e9).late.sum()
    late_hi = gen(spec, hi, 1e9).late.sum()
    assert late_lo <= late_hi


def test_steps_shorter_than_a_frame_interval_hold_no_frame_and_lose_none():
    """At 90 fps and 5 ms steps most steps hold no frame of any session: they yield an
    empty batch, and over 40 steps the frames still add up to 40 · 0.005 · 90 = 18."""
    spec = FrameSpec.make(2, fps=90, size_cv=0.0, per=0.0)
    carry = StreamState.fresh(2)
    shown = 0
    for k in range(40):
        b = gen(spec, 2.0, 8e7, render=1.0, k=k, carry=carry, step_s=0.005)
        assert b.valid.shape[1] in (0, 1)
        shown += int((b.valid & ~b.lost).sum())
    assert shown == 2 * 18
    assert not carry.gop_broken.any() and (carry.bad_run == 0).all()
