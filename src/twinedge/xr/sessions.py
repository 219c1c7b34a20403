"""XR sessions over the network: where each session renders (device, or a host among the
:class:`~twinedge.orchestrator.NetworkView`'s candidates), the frame delay on each
option, and the run's frame-level KPIs per session, per cell and overall (docs/xr.md).

Remote rendering of one frame, in ms (every term from :mod:`twinedge.world.models`)::

    pose uplink  = uplink_ms(pose_bytes, Shannon uplink rate at the entity's distance)
    backbone     = 2 * ap_host_ms[ap, host]                    (pose up, frame down)
    render       = service_ms(render_gcycles, host_cpu) * queue_factor(rho_host)
    downlink     = 8 * frame_bytes / (cell rate / XR sessions in the cell) * 1000
    delay        = pose uplink + backbone + render + encode + downlink + decode

``rho_host = (twins' CPU load + XR render load) / host CPU``, where every remote session
loads its host with ``render_gcycles * fps`` GHz. The cell rate is the Shannon rate of
the access point's ``downlink_power_w`` over ``downlink_mhz`` at the entity's distance; when a session's
bit rate exceeds its share, the cell drops the excess frames (``1 - share / bitrate``).
Device rendering: ``device_render_ms`` and no network, at image quality
``device_image`` instead of 5.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from twinedge.engine.metrics import _N_BINS, histogram_bins, histogram_quantile
from twinedge.orchestrator.view import NetworkState, NetworkView, candidate_hosts
from twinedge.scenario.schema import Xr
from twinedge.world import models
from twinedge.world.state import World
from twinedge.xr.frames import (
    QOS_PROFILES,
    FrameSpec,
    StreamState,
    frames_in_step,
    generate_frames,
)
from twinedge.xr.score import Kpis, xrmi

DEVICE = -1
"""The placement of a session rendered on its device."""

PLACEMENTS = ("device", "nearest-edge", "best-latency")

#: the XR numbers of a run's summary (present only when the scenario has ``xr:``)
XR_SUMMARY_KEYS = (
    "xr_sessions",
    "xr_score",
    "xr_late_frame_ratio",
    "xr_warped_frame_ratio",
    "xr_lost_frame_ratio",
    "xr_stalls",
    "xr_p99_frame_delay_ms",
    "xr_jitter_ms",
    "xr_migrations",
)

# per-session delay histograms: 50 log bins per decade from 0.5 ms to 500 ms (a
# quantile read at its bin's geometric centre is within 2.3 % of the true one)
_S_LO, _S_PER_DECADE, _S_BINS = 0.5, 50, 150


def _session_bins(delay_ms: np.ndarray) -> np.ndarray:
    x = np.log10(np.clip(delay_ms, _S_LO, _S_LO * 10 ** (_S_BINS / _S_PER_DECADE) * 0.9999) / _S_LO)
    return (x * _S_PER_DECADE).astype(np.int64)


@dataclass
class SessionTotals:
    """Per-session counters accumulated over a run, ``(S,)``."""

    frames: np.ndarray
    warped: np.ndarray
    late: np.ndarray
    lost: np.ndarray
    stalls: np.ndarray
    absdiff_ms: np.ndarray
    diffs: np.ndarray
    migrations: np.ndarray
    device_frames: np.ndarray
    hist: np.ndarray  # (S, _S_BINS) delivered-frame delays

    @classmethod
    def zeros(cls, n: int) -> SessionTotals:
        z = lambda: np.zeros(n, dtype=np.int64)  # noqa: E731
        return cls(z(), z(), z(), z(), z(), np.zeros(n), z(), z(), z(),
                   np.zeros((n, _S_BINS), dtype=np.int32))  # fmt: skip


class XrRun:
    """The XR sessions of one run: :meth:`step` once per step after the twins' latency
    is evaluated, :meth:`summary` at the end.

    Parameters:
        world: the network.
        spec: the scenario's ``xr:`` section.
        rng: XR's own random stream (the run's other streams are untouched).
        candidates_k: nearest hosts offered per access point (plus one per tier above).

    Examples:
        >>> from twinedge.scenario import load_scenario
        >>> from twinedge.scenario.schema import Xr
        >>> from twinedge.world import build_world
        >>> world = build_world(load_scenario("city-small"), np.random.default_rng(0))
        >>> run = XrRun(world, Xr(kinds=["pedestrian"], share=0.5), np.random.default_rng(1))
        >>> from twinedge.orchestrator import NetworkState
        >>> state = NetworkState.at(world, world.xy_m)
        >>> run.step(run.view(state, 1.0), 0)
        >>> 1.0 <= run.summary()["xr_score"] <= 5.0
        True
    """

    def __init__(
        self, world: World, spec: Xr, rng: np.random.Generator, candidates_k: int = 8
    ) -> None:
        self.world, self.cfg, self.rng = world, spec, rng
        kinds = spec.kinds
        if kinds is None:
            eligible = np.arange(world.n_entities)
        else:
            codes = [i for i, k in enumerate(world.kinds) if k in set(kinds)]
            eligible = np.flatnonzero(np.isin(world.entity_kind, codes))
        n = round(spec.share * eligible.size)
        self.entity = np.sort(rng.permutation(eligible)[:n]).astype(np.int64)
        s = self.entity.size
        _, per = QOS_PROFILES[spec.qos_5qi]
        self.frames = FrameSpec.make(
            s,
            fps=spec.fps,
            p_frame_bytes=spec.p_frame_bytes,
            i_ratio=spec.i_ratio,
            gop_frames=spec.gop_frames,
            size_cv=spec.size_cv,
            budget_ms=spec.budget_ms,
            atw_window_ms=spec.atw_window_ms,
            per=per,
            stall_frames=spec.stall_frames,
        )
        self.ap_candidates = candidate_hosts(world, candidates_k)
        self.candidates_k = candidates_k
        self.where = np.full(s, DEVICE if spec.placement == "device" else -2, dtype=np.int64)
        self.downtime_left_s = np.zeros(s)
        self.moved_at = np.full(s, -(10**9), dtype=np.int64)
        self.carry = StreamState.fresh(s)
        self.totals = SessionTotals.zeros(s)
        self.cell_frames = np.zeros(world.access.size, dtype=np.int64)
        self.cell_bad = np.zeros(world.access.size, dtype=np.int64)
        self.cell_late = np.zeros(world.access.size, dtype=np.int64)
        self.cell_lost = np.zeros(world.access.size, dtype=np.int64)
        self.cell_stalls = np.zeros(world.access.size, dtype=np.int64)
        self.hist = np.zeros(_N_BINS, dtype=np.int64)
        self.steps = 0
        self.step_s = 0.0

    @property
    def n_sessions(self) -> int:
        return int(self.entity.size)

    def view(self, state: NetworkState, step_s: float) -> NetworkView:
        """The network view XR decides on (the candidates computed once)."""
        return NetworkView(
            self.world, state, step_s, self.candidates_k, ap_candidates=self.ap_candidates
        )

    # --- the model -----------------------------------------------------------------------
    def _radio(self, view: NetworkView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pose uplink ms, downlink share bit/s and congestion drop probability."""
        w, s, c = self.world, view.state, self.cfg
        r = w.radio
        ent = self.entity
        dist = s.dist_m[ent]
        args = (r.bandwidth_mhz * 1e6, r.noise_dbm_per_hz, r.path_loss_ref_db,
                r.path_loss_exponent, r.min_distance_m)  # fmt: skip
        up_bps = models.uplink_rate_bps(dist, w.tx_power_w[ent], *args)
        pose_ms = models.uplink_ms(np.full(ent.size, c.pose_bytes), up_bps)
        dl_args = (c.downlink_mhz * 1e6, *args[1:])
        cell_bps = models.uplink_rate_bps(dist, np.full(ent.size, c.downlink_power_w), *dl_args)
        ap = s.ap[ent]
        remote = self.where != DEVICE
        in_cell = np.bincount(ap[remote], minlength=w.access.size)
        share_bps = cell_bps / np.maximum(in_cell[ap], 1)
        drop = np.clip(1.0 - share_bps / self.frames.bitrate_bps(), 0.0, 1.0)
        return pose_ms, share_bps, drop

    def _host_rho(self, view: NetworkView, where: np.ndarray) -> np.ndarray:
        """``(H,)`` utilisation of every host with the XR render load of ``where``."""
        w = self.world
        remote = where >= 0
        xr_ghz = np.bincount(
            where[remote],
            weights=self.cfg.render_gcycles * self.frames.fps[remote],
            minlength=w.n_hosts,
        )
        return (view.state.used_cpu_ghz + xr_ghz) / w.host_cpu_ghz

    def expected_ms(
        self, view: NetworkView, hosts: np.ndarray, radio: tuple, rho: np.ndarray
    ) -> np.ndarray:
        """Mean frame delay of every session on ``hosts`` (``(S,)`` or ``(S, c)``; a
        negative host is the device), in ms."""
        c, w = self.cfg, self.world
        pose_ms, share_bps, _ = radio
        hosts = np.asarray(hosts)
        col = (lambda a: a[:, None]) if hosts.ndim == 2 else (lambda a: a)
        h = np.maximum(hosts, 0)
        ap = view.state.ap[self.entity]
        render = models.service_ms(np.asarray(c.render_gcycles), w.host_cpu_ghz[h])
        remote = (
            col(pose_ms)
            + 2.0 * w.ap_host_ms[col(ap), h]
            + render * models.queue_factor(rho[h])
            + c.encode_ms
            + c.decode_ms
            + 8000.0 * col(self.frames.mean_frame_bytes()) / col(share_bps)
        )
        return np.where(hosts < 0, c.device_render_ms, remote)

    def _place(self, view: NetworkView, radio: tuple, k: int) -> np.ndarray:
        """The placement policy with its migration rule: a session moves to the policy's
        target only when its mean frame delay there beats the current one by more than
        ``hysteresis_ms`` and it has stayed ``min_dwell_s`` where it is (or the current
        one is not an option); returns the moved mask."""
        c = self.cfg
        s_n = self.n_sessions
        if c.placement == "device" or s_n == 0:
            return np.zeros(s_n, dtype=bool)
        ent = self.entity
        cand, lat = view.candidates(ent)
        ok = np.isfinite(lat)
        rho = self._host_rho(view, self.where)
        if c.placement == "nearest-edge":
            first = np.argmax(ok, axis=1)
            target = np.where(ok.any(axis=1), cand[np.arange(s_n), first], DEVICE)
            target_ms = self.expected_ms(view, target, radio, rho)
        else:
            opts = np.concatenate([np.full((s_n, 1), DEVICE), cand], axis=1)
            ms = self.expected_ms(view, opts, radio, rho)
            ms[:, 1:][~ok] = np.inf
            best = np.argmin(ms, axis=1)
            target = opts[np.arange(s_n), best]
            target_ms = ms[np.arange(s_n), best]
        new = self.where == -2  # not placed yet
        allowed_now = np.ones(s_n, dtype=bool)
        on_host = self.where >= 0
        allowed_now[on_host] = self.world.allowed_on(ent[on_host], self.where[on_host])
        cur_ms = np.where(
            new | ~allowed_now, np.inf, self.expected_ms(view, self.where, radio, rho)
        )
        settled = (k - self.moved_at) * view.step_s >= c.min_dwell_s
        better = (target_ms < cur_ms - c.hysteresis_ms) & (settled | ~np.isfinite(cur_ms))
        move = (target != self.where) & (new | better)
        moved = move & ~new
        # the cost of a move: stop-and-copy between hosts, a fixed switch to/from the device
        frm, to = self.where[moved], target[moved]
        both = (frm >= 0) & (to >= 0)
        down = np.full(frm.size, c.switch_downtime_ms / 1000.0)
        w = self.world
        down[both] = models.migration_downtime_s(
            np.full(int(both.sum()), c.state_bytes),
            w.host_host_mbps[frm[both], to[both]],
            w.host_host_ms[frm[both], to[both]],
        )
        self.downtime_left_s[moved] += down
        self.where = np.where(move, target, self.where)
        self.moved_at[move] = k
        return moved

    # --- one step ------------------------------------------------------------------------
    def step(self, view: NetworkView, k: int) -> None:
        """Place (and move) the sessions on ``view``, then generate and measure step
        ``k``'s frames."""
        c, w = self.cfg, self.world
        step_s = view.step_s
        self.step_s = step_s
        radio = self._radio(view)
        moved = self._place(view, radio, k)
        self.totals.migrations += moved
        pose_ms, share_bps, drop = radio
        where = self.where
        remote = where >= 0
        h = np.maximum(where, 0)
        rho = self._host_rho(view, where)[h]
        ap = view.state.ap[self.entity]
        fixed = np.where(
            remote,
            pose_ms + 2.0 * w.ap_host_ms[ap, h] + c.encode_ms + c.decode_ms,
            c.device_render_ms,
        )
        render = np.where(
            remote, models.service_ms(np.asarray(c.render_gcycles), w.host_cpu_ghz[h]), 0.0
        )
        spec = dataclasses.replace(self.frames, per=np.where(remote, self.frames.per, 0.0))
        blackout = np.ceil(np.minimum(self.downtime_left_s, step_s) * self.frames.fps - 1e-9)
        self.downtime_left_s = np.maximum(self.downtime_left_s - step_s, 0.0)
        b = generate_frames(
            spec, k, step_s, fixed,
            np.where(remote, share_bps, np.inf), render, np.where(remote, rho, 0.0),
            np.where(remote, drop, 0.0), self.rng, self.carry, blackout.astype(np.int64),
        )  # fmt: skip
        t = self.totals
        # per-session counts; valid frames are the step's first n of each row, and late
        # and lost frames are disjoint, so the sums are taken once each
        n_valid = frames_in_step(self.frames.fps, k, step_s)[0]
        n_warped = np.count_nonzero(b.warped, axis=1)
        n_late = np.count_nonzero(b.late, axis=1)
        n_lost = np.count_nonzero(b.lost, axis=1)
        t.frames += n_valid
        t.warped += n_warped
        t.late += n_late
        t.lost += n_lost
        t.stalls += b.stalls
        t.device_frames += np.where(remote, 0, n_valid)
        if b.delay_ms.shape[1] > 1:
            both = b.valid[:, 1:] & b.valid[:, :-1]
            step_diff = np.diff(b.delay_ms, axis=1)
            np.abs(step_diff, out=step_diff)
            step_diff[~both] = 0.0
            t.absdiff_ms += step_diff.sum(axis=1)
            t.diffs += np.maximum(n_valid - 1, 0)
        else:
            t.absdiff_ms += 0.0
        shown = b.valid & ~b.lost
        rows, _ = np.nonzero(shown)
        d = b.delay_ms[shown]
        self.hist += np.bincount(histogram_bins(d), minlength=_N_BINS)
        rows *= _S_BINS
        rows += _session_bins(d)
        counts = np.bincount(rows, minlength=self.n_sessions * _S_BINS)
        np.add(t.hist, counts.reshape(self.n_sessions, _S_BINS), out=t.hist, casting="unsafe")
        a_n = w.access.size
        for total, per_session in (
            (self.cell_frames, n_valid),
            (self.cell_bad, n_late + n_lost),
            (self.cell_late, n_late),
            (self.cell_lost, n_lost),
            (self.cell_stalls, b.stalls),
        ):
            total += np.bincount(ap, weights=per_session, minlength=a_n).astype(np.int64)
        self.steps += 1

    # --- results -------------------------------------------------------------------------
    def session_p99_ms(self) -> np.ndarray:
        """Each session's 99th-percentile delivered-frame delay (centre of its histogram
        bin, within 2.3 %; delays beyond 500 ms count as 500 ms), in ms; ``nan`` for a session with no frame delivered."""
        h = self.totals.hist.astype(np.int64)
        tot = h.sum(axis=1)
        cum = np.cumsum(h, axis=1)
        k = np.argmax(cum >= np.ceil(0.99 * tot)[:, None], axis=1)
        centre = _S_LO * 10 ** ((k + 0.5) / _S_PER_DECADE)
        return np.where(tot > 0, centre, np.nan)

    def session_scores(self) -> np.ndarray:
        """Each session's XRMI over the run (``(S,)``, in [1, 5])."""
        t, c = self.totals, self.cfg
        frames = np.maximum(t.frames, 1)
        minutes = max(self.steps * self.step_s / 60.0, 1e-9)
        p99 = self.session_p99_ms()
        dev_share = t.device_frames / frames
        kpis = Kpis(
            bad_ratio=(t.late + t.lost) / frames,
            stalls_per_min=t.stalls / minutes,
            p99_delay_ms=np.where(np.isnan(p99), np.inf, p99),
            jitter_ms=t.absdiff_ms / np.maximum(t.diffs, 1),
            budget_ms=c.budget_ms,
            warped_ratio=t.warped / frames,
            image_base=5.0 - dev_share * (5.0 - c.device_image),
        )
        return xrmi(kpis, c.interaction)

    def cell_kpis(self) -> dict[str, np.ndarray]:
        """``(A,)`` per cell (the access point a session was attached to when its frames
        were sent): frames, late, lost and late-or-lost frames, and stalls."""
        return {
            "frames": self.cell_frames.copy(),
            "late": self.cell_late.copy(),
            "lost": self.cell_lost.copy(),
            "bad": self.cell_bad.copy(),
            "stalls": self.cell_stalls.copy(),
        }

    def cell_bad_ratio(self) -> np.ndarray:
        """``(A,)`` late or lost frames / frames per cell (``nan`` where no session was)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.cell_bad / self.cell_frames

    def summary(self) -> dict:
        """The run's XR numbers (:data:`XR_SUMMARY_KEYS`)."""
        t = self.totals
        frames = max(int(t.frames.sum()), 1)
        scores = self.session_scores() if self.n_sessions else np.zeros(0)
        return {
            "xr_sessions": self.n_sessions,
            "xr_score": float(scores.mean()) if scores.size else float("nan"),
            "xr_late_frame_ratio": int(t.late.sum()) / frames,
            "xr_warped_frame_ratio": int(t.warped.sum()) / frames,
            "xr_lost_frame_ratio": int(t.lost.sum()) / frames,
            "xr_stalls": int(t.stalls.sum()),
            "xr_p99_frame_delay_ms": histogram_quantile(self.hist, 0.99),
            "xr_jitter_ms": float(t.absdiff_ms.sum() / max(int(t.diffs.sum()), 1)),
            "xr_migrations": int(t.migrations.sum()),
        }
