"""XR sessions as frame streams: per-frame delays, asynchronous time-warp, PDU-set loss
and the frame-level KPIs, vectorised over sessions x frames (docs/xr.md).

A session renders ``fps`` frames a second, either on its device or on a host (split
rendering). Each frame is one PDU set (3GPP TS 23.501 / TS 38.300): it counts only when
all of its packets arrive, and it is on time, warped or late as a whole:

* ``delay <= budget``: on time;
* ``budget < delay <= budget + atw_window``: re-projected by asynchronous time-warp on the
  device (warped: shown, at a cost in image quality);
* ``delay > budget + atw_window``: late (the previous frame is shown again).

A frame is lost when one of its packets is (5QI packet error rate), when the cell drops
it under congestion, or when its reference frame was lost (an I- or P-frame loss breaks
the rest of its group of pictures). A stall is a run of at least ``stall_frames``
consecutive late or lost frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twinedge.errors import InputError
from twinedge.world import models

#: 3GPP TS 23.501 Table 5.7.4-1: the 5QIs for XR: (packet delay budget ms, packet error rate)
QOS_PROFILES: dict[int, tuple[float, float]] = {
    80: (10.0, 1e-6),  # non-GBR, low-latency eMBB and augmented reality
    87: (5.0, 1e-3),  # delay-critical GBR, interactive service: motion tracking data
    88: (10.0, 1e-3),  # delay-critical GBR, interactive service: motion tracking data
    89: (15.0, 1e-4),  # delay-critical GBR, visual content for cloud/edge/split rendering
    90: (20.0, 1e-4),  # delay-critical GBR, visual content for cloud/edge/split rendering
}

#: payload bytes per packet when a frame is cut into packets (an Ethernet-sized MTU)
PACKET_BYTES = 1500.0


@dataclass(frozen=True)
class FrameSpec:
    """The frame stream of every session, ``(S,)`` arrays (scalars broadcast).

    Attributes:
        fps: frames per second.
        p_frame_bytes: mean size of a P-frame, in bytes.
        i_ratio: an I-frame is ``i_ratio`` times a P-frame.
        gop_frames: a group of pictures: an I-frame every ``gop_frames`` frames.
        size_cv: coefficient of variation of frame sizes (lognormal).
        budget_ms: motion-to-photon budget (the PDU-set delay budget).
        atw_window_ms: how much later than the budget time-warp still re-projects a frame.
        per: packet error rate (of the session's 5QI).
        stall_frames: a stall is at least this many consecutive late or lost frames.
    """

    fps: np.ndarray
    p_frame_bytes: np.ndarray
    i_ratio: np.ndarray
    gop_frames: np.ndarray
    size_cv: np.ndarray
    budget_ms: np.ndarray
    atw_window_ms: np.ndarray
    per: np.ndarray
    stall_frames: int = 3

    @classmethod
    def make(
        cls,
        n: int,
        *,
        fps: float | np.ndarray = 90.0,
        p_frame_bytes: float | np.ndarray = 40_000.0,
        i_ratio: float | np.ndarray = 5.0,
        gop_frames: int | np.ndarray = 60,
        size_cv: float | np.ndarray = 0.2,
        budget_ms: float | np.ndarray = 10.0,
        atw_window_ms: float | np.ndarray = 10.0,
        per: float | np.ndarray = 1e-6,
        stall_frames: int = 3,
    ) -> FrameSpec:
        """``n`` sessions with these values (scalars or ``(n,)`` arrays).

        Raises:
            InputError: a value is out of range.

        Examples:
            >>> FrameSpec.make(2, fps=[60, 90]).fps.tolist()
            [60.0, 90.0]
        """

        def arr(v: object, name: str, lo: float, strict: bool = True) -> np.ndarray:
            a = np.broadcast_to(np.asarray(v, dtype=float), (n,)).copy()
            bad = ~np.isfinite(a) | ((a <= lo) if strict else (a < lo))
            if bad.any():
                rel = ">" if strict else ">="
                raise InputError(f"xr: {name} must be finite and {rel} {lo}, got {a[bad][0]}")
            return a

        per_a = arr(per, "per", 0.0, strict=False)
        if (per_a >= 1).any():
            raise InputError("xr: per must be below 1")
        if stall_frames < 1:
            raise InputError(f"xr: stall_frames must be >= 1, got {stall_frames}")
        return cls(
            fps=arr(fps, "fps", 0.0),
            p_frame_bytes=arr(p_frame_bytes, "p_frame_bytes", 0.0),
            i_ratio=arr(i_ratio, "i_ratio", 1.0, strict=False),
            gop_frames=arr(gop_frames, "gop_frames", 1.0, strict=False).astype(np.int64),
            size_cv=arr(size_cv, "size_cv", 0.0, strict=False),
            budget_ms=arr(budget_ms, "budget_ms", 0.0),
            atw_window_ms=arr(atw_window_ms, "atw_window_ms", 0.0, strict=False),
            per=per_a,
            stall_frames=int(stall_frames),
        )

    @property
    def n(self) -> int:
        return int(self.fps.size)

    def mean_frame_bytes(self) -> np.ndarray:
        """Mean frame size over a group of pictures: ``P (g - 1 + r) / g``, in bytes."""
        g = self.gop_frames
        return self.p_frame_bytes * (g - 1 + self.i_ratio) / g

    def bitrate_bps(self) -> np.ndarray:
        """Mean video bit rate ``8 * mean frame bytes * fps``, in bit/s."""
        return 8.0 * self.mean_frame_bytes() * self.fps


def frames_in_step(fps: np.ndarray, k: int, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Frames of each session in step ``k``: ``floor((k+1) T fps) - floor(k T fps)`` (so
    a non-integer ``T * fps`` adds up exactly over steps), and the first frame's index.

    Examples:
        >>> frames_in_step(np.array([90.0, 72.0]), 0, 0.5)[0].tolist()
        [45, 36]
    """
    first = np.floor(k * step_s * fps + 1e-9).astype(np.int64)
    last = np.floor((k + 1) * step_s * fps + 1e-9).astype(np.int64)
    return last - first, first


@dataclass
class StreamState:
    """What carries over from one step to the next, per session: whether the current
    group of pictures is broken, and how many late or lost frames end the last step."""

    gop_broken: np.ndarray
    bad_run: np.ndarray

    @classmethod
    def fresh(cls, n: int) -> StreamState:
        return cls(np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64))


@dataclass
class FrameBatch:
    """One step's frames, ``(S, F)`` arrays (``valid`` marks the frames that exist:
    sessions with a lower fps have fewer)."""

    valid: np.ndarray
    delay_ms: np.ndarray
    lost: np.ndarray
    warped: np.ndarray
    late: np.ndarray
    i_frame: np.ndarray
    stalls: np.ndarray  # (S,) stalls that reached stall_frames in this step


def generate_frames(
    spec: FrameSpec,
    k: int,
    step_s: float,
    fixed_ms: np.ndarray,
    downlink_bps: np.ndarray,
    render_ms: np.ndarray,
    rho: np.ndarray,
    congestion_drop: np.ndarray,
    rng: np.random.Generator,
    carry: StreamState,
    blackout_frames: np.ndarray | None = None,
) -> FrameBatch:
    """The frames of step ``k`` of every session: sizes, delays, losses and their ATW
    fate, with no loop over frames.

    Delay of frame f of session s, in ms::

        d = fixed_s + render_s + wait + 8 * bytes_f / downlink_s * 1000

    where ``fixed`` is everything that does not depend on the frame (pose uplink,
    backbone both ways, encode, decode), ``render`` the idle render time, ``wait`` the
    M/M/1 waiting time at the renderer's utilisation rho (0 with probability 1 - rho,
    else exponential with mean ``render / (1 - rho)``: its mean ``render * rho / (1 -
    rho)`` makes the mean sojourn ``render * queue_factor(rho)``), and ``bytes_f`` the
    frame's size (I or P, lognormal with the spec's coefficient of variation).

    Parameters:
        spec: the sessions' streams.
        k, step_s: the step (frame indexes continue across steps).
        fixed_ms, downlink_bps, render_ms, rho, congestion_drop: ``(S,)``; rho is held at
            :data:`~twinedge.world.models.RHO_CAP`; ``congestion_drop`` the probability
            the cell drops a frame.
        rng: the random stream.
        carry: updated in place.
        blackout_frames: ``(S,)`` frames lost at the start of the step (a migration's
            downtime), or ``None``.

    Examples:
        >>> spec = FrameSpec.make(1, fps=10, size_cv=0.0, per=0.0)
        >>> b = generate_frames(spec, 0, 1.0, np.array([2.0]), np.array([8e7]),
        ...                     np.array([1.0]), np.array([0.0]), np.array([0.0]),
        ...                     np.random.default_rng(0), StreamState.fresh(1))
        >>> round(float(b.delay_ms[0, 1]), 6)  # 2 + 1 + 8 * 40000 / 8e7 * 1000
        7.0
    """
    n_frames, first = frames_in_step(spec.fps, k, step_s)
    s_n = spec.n
    width = int(n_frames.max()) if s_n else 0
    cols = np.arange(width)
    valid = cols[None, :] < n_frames[:, None]
    index = first[:, None] + cols[None, :]
    g = spec.gop_frames
    # one group of pictures for every session (the usual case): a scalar divisor
    gop = int(g[0]) if s_n and (g == g[0]).all() else g[:, None]
    in_group = index % gop  # the frame's place in its group of pictures
    del index
    i_frame = in_group == 0
    size = spec.p_frame_bytes[:, None] * np.where(i_frame, spec.i_ratio[:, None], 1.0)
    cv = spec.size_cv[:, None]
    if (spec.size_cv > 0).any():
        sigma = np.sqrt(np.log1p(cv**2))
        # size * exp(sigma * z - sigma^2 / 2), in place
        z = rng.standard_normal((s_n, width))
        z *= sigma
        z -= sigma**2 / 2
        np.exp(z, out=z)
        size *= z
        del z
    rho_c = np.minimum(np.asarray(rho, dtype=float), models.RHO_CAP)[:, None]
    svc = np.asarray(render_ms, dtype=float)[:, None]
    waits = rng.random((s_n, width)) < rho_c
    # delay = fixed + svc + wait + 8000 * size / downlink, in place in the same order
    delay = rng.exponential(1.0, (s_n, width))
    delay *= svc
    delay /= 1.0 - rho_c
    delay[~waits] = 0.0
    del waits
    delay += np.asarray(fixed_ms, dtype=float)[:, None] + svc
    down = 8000.0 * size
    down /= np.maximum(np.asarray(downlink_bps, dtype=float), 1e-9)[:, None]
    delay += down
    # PDU-set loss: any packet lost (5QI PER), or dropped by the congested cell
    packets = np.divide(size, PACKET_BYTES, out=down)
    np.ceil(packets, out=packets)
    p_ok = (1.0 - spec.per[:, None]) ** packets
    p_ok *= 1.0 - np.asarray(congestion_drop)[:, None]
    lost = rng.random((s_n, width)) >= p_ok
    lost &= valid
    del p_ok, packets
    if blackout_frames is not None:
        lost |= cols[None, :] < np.asarray(blackout_frames)[:, None]
    # a lost frame breaks its group of pictures until the next I-frame: a frame is lost
    # or broken when the last loss up to it lies in its group (at or after the group's
    # first column in this step)
    since_group = cols[None, :] - in_group  # <= 0 in the step's first group
    last_lost = np.where(lost, cols[None, :], -1)
    np.maximum.accumulate(last_lost, axis=1, out=last_lost)
    lost = last_lost >= np.maximum(since_group, 0, out=since_group)
    del last_lost
    # a group the last step ended broken stays broken, unless this step opens with an I
    carried = carry.gop_broken & ~i_frame[:, 0] if width else carry.gop_broken
    if carried.any():
        first_group = (cols[None, :] - in_group) <= 0
        first_group &= carried[:, None]
        lost |= first_group
    lost &= valid
    # a loss breaks the rest of its group, so the group is broken iff its last frame is lost
    if width:  # a step may hold no frame of any session (step_s * fps < 1)
        last_col = np.maximum(n_frames - 1, 0)[:, None]
        ends_broken = np.take_along_axis(lost, last_col, axis=1)[:, 0]
        carry.gop_broken = np.where(n_frames > 0, ends_broken, carry.gop_broken)
    budget = spec.budget_ms[:, None]
    shown = valid & ~lost
    over = delay > budget + spec.atw_window_ms[:, None]
    late = shown & over
    warped = delay > budget
    warped &= shown
    warped &= ~over
    bad = late | lost
    stalls, carry.bad_run = count_runs(bad, n_frames, carry.bad_run, spec.stall_frames)
    return FrameBatch(valid, delay, lost, warped, late, i_frame & valid, stalls)


def count_runs(
    bad: np.ndarray, n_frames: np.ndarray, run_before: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Runs of at least ``k`` consecutive ``bad`` frames per row that reach length ``k``
    in this step (a run continuing from the last step counts once, when it reaches k),
    and the length of the run each row ends with.

    Examples:
        >>> bad = np.array([[1, 1, 0, 1, 1, 1, 1, 0]], dtype=bool)
        >>> count_runs(bad, np.array([8]), np.array([0]), 3)[0].tolist()
        [1]
        >>> count_runs(bad[:, :2], np.array([2]), np.array([2]), 3)  # 2 carried + 2
        (array([1]), array([4]))
    """
    s_n, width = bad.shape
    if width == 0:
        return np.zeros(s_n, dtype=np.int64), run_before.copy()
    cols = np.arange(width)
    # length of the bad run ending at each column: column index minus the last good one
    last_good = np.where(bad, -1, cols[None, :])
    np.maximum.accumulate(last_good, axis=1, out=last_good)
    carried = last_good < 0
    run = np.subtract(cols[None, :], last_good, out=last_good)
    np.add(run, run_before[:, None], out=run, where=carried)  # continues the carry
    hit = run == k
    hit &= bad
    hit &= cols[None, :] < n_frames[:, None]
    stalls = np.count_nonzero(hit, axis=1)
    end = np.take_along_axis(run, np.maximum(n_frames - 1, 0)[:, None], axis=1)[:, 0]
    return stalls, np.where(n_frames > 0, end, run_before)


def row_quantiles(values: np.ndarray, valid: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """Per-row quantiles of the valid entries (linear interpolation, numpy's default),
    ``(S, len(qs))``; ``nan`` for a row with none.

    Examples:
        >>> row_quantiles(np.array([[4.0, 1.0, 9.0]]), np.array([[1, 1, 0]], bool), (0.5,))
        array([[2.5]])
    """
    s_n = values.shape[0]
    srt = np.sort(np.where(valid, values, np.inf), axis=1)
    cnt = valid.sum(axis=1)
    out = np.full((s_n, len(qs)), np.nan)
    has = cnt > 0
    rows = np.arange(s_n)[has]
    for j, q in enumerate(qs):
        pos = q * (cnt[has] - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, cnt[has] - 1)
        frac = pos - lo
        out[has, j] = srt[rows, lo] * (1 - frac) + srt[rows, hi] * frac
    return out


def jitter_ms(delay_ms: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean absolute difference of successive frames' delays per row, in ms (the
    RFC 3550 interarrival jitter's ``|D(i-1, i)|`` averaged plainly instead of with its
    1/16 exponential filter); 0 for a row with fewer than two frames.

    Examples:
        >>> jitter_ms(np.array([[5.0, 7.0, 6.0]]), np.ones((1, 3), bool)).tolist()
        [1.5]
    """
    if delay_ms.shape[1] < 2:
        return np.zeros(delay_ms.shape[0])
    both = valid[:, 1:] & valid[:, :-1]
    diff = np.where(both, np.abs(np.diff(delay_ms, axis=1)), 0.0)
    return diff.sum(axis=1) / np.maximum(both.sum(axis=1), 1)
