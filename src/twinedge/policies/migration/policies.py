"""Built-in migration policies: ``never``, ``threshold``, ``utility``, ``predictive``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from twinedge.policies.base import MigrationPolicy, Moves
from twinedge.policies.migration.base import NO_MOVES, assign_under_capacity

if TYPE_CHECKING:
    from twinedge.orchestrator.view import NetworkView


def _moves(ctx: NetworkView, twins, cand, score, priority, bound_ms) -> Moves:
    """Assign under capacity, load-aware (no move may leave a twin above ``bound_ms`` or
    push a twin on time past its deadline), and drop no-op moves (to the twin's own host)."""
    t, h = assign_under_capacity(ctx, twins, cand, score, priority, bound_ms=bound_ms)
    keep = h != ctx.state.host[t]
    return Moves(t[keep], h[keep])


class Never(MigrationPolicy):
    """Twins stay where placement put them (the baseline)."""

    def __call__(self, ctx: NetworkView, rng: np.random.Generator):
        return NO_MOVES


class Threshold(MigrationPolicy):
    """Migrate a twin when its latency exceeds its requirement ``latency_req_ms``.

    The twin moves to the lowest-latency candidate host with room (the ``k`` hosts nearest
    its access point and the nearest regional hub and cloud), if that beats its current
    latency by at least ``hysteresis_ms``.
    Twins that miss their deadline by the most go first.

    Parameters:
        hysteresis_ms: minimum latency improvement to move (default 0.5).
    """

    def __init__(self, hysteresis_ms: float = 0.5):
        self.hysteresis_ms = float(hysteresis_ms)

    def __call__(self, ctx: NetworkView, rng: np.random.Generator):
        s, w = ctx.state, ctx.world
        twins = np.flatnonzero((s.latency_ms > w.latency_req_ms) & ~ctx.migrating)
        if twins.size == 0:
            return NO_MOVES
        cand, lat = ctx.candidates(twins)
        lat = np.where(lat < s.latency_ms[twins, None] - self.hysteresis_ms, lat, np.inf)
        return _moves(
            ctx,
            twins,
            cand,
            lat,
            s.latency_ms[twins] - w.latency_req_ms[twins],
            s.latency_ms[twins] - self.hysteresis_ms,
        )


class Utility(MigrationPolicy):
    """Seed 000's utility: move a twin to the host that maximises

        U_j = beta * exp((T_req - T_j) / T_req) - (1 - beta) * E_j / E_ref_mj
              - penalty * [T_j > T_req]

    where T_j is the twin's latency on host j (ms), the slack is measured in units of
    T_req so the exponential stays in (0, e] whatever the deadline, and E_j = p * t
    (seed 000: transmit power times transmit time) is the device's radio energy over one
    step in mJ: its uplink time for every update, plus, when j is not the current host,
    the migration downtime during which the device keeps its radio on to buffer and
    resend. ``E_ref_mj`` sets how many mJ weigh as much as a full unit of slack. The
    explicit ``penalty`` makes a missed deadline cost more than any energy saving of
    ordinary size. Only twins whose latency exceeds ``trigger`` * T_req are evaluated.

    Parameters:
        beta: weight of latency slack versus energy, in [0, 1] (default 0.7).
        energy_ref_mj: energy scale in mJ (default 1.0).
        penalty: utility lost by a missed deadline (default 1.0).
        trigger: fraction of T_req above which a twin is reconsidered (default 0.8).
        margin: minimum utility gain to move (default 0.05).
    """

    def __init__(
        self,
        beta: float = 0.7,
        energy_ref_mj: float = 1.0,
        penalty: float = 1.0,
        trigger: float = 0.8,
        margin: float = 0.05,
    ):
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        self.beta, self.energy_ref_mj, self.penalty = (
            float(beta),
            float(energy_ref_mj),
            float(penalty),
        )
        self.trigger, self.margin = float(trigger), float(margin)

    def utility(self, latency_ms, req_ms, energy_mj):
        """U for latency (ms), requirement (ms) and device energy (mJ); broadcasts."""
        slack = (req_ms - latency_ms) / req_ms
        return (
            self.beta * np.exp(np.minimum(slack, 1.0))
            - (1 - self.beta) * energy_mj / self.energy_ref_mj
            - self.penalty * (latency_ms > req_ms)
        )

    def __call__(self, ctx: NetworkView, rng: np.random.Generator):
        s, w = ctx.state, ctx.world
        twins = np.flatnonzero((s.latency_ms > self.trigger * w.latency_req_ms) & ~ctx.migrating)
        if twins.size == 0:
            return NO_MOVES
        cand, lat = ctx.candidates(twins)
        p = w.tx_power_w[twins]
        # p [W] * uplink time [ms] = energy [mJ] per update
        base_mj = p * s.uplink_ms[twins] * w.update_hz[twins] * ctx.step_s
        down = ctx.downtime_s(
            twins[:, None].repeat(cand.shape[1], 1).ravel(), cand.ravel()
        ).reshape(cand.shape)
        moved = cand != s.host[twins, None]
        energy = base_mj[:, None] + 1000 * p[:, None] * down * moved
        req = w.latency_req_ms[twins]
        u = self.utility(lat, req[:, None], energy)
        u_now = self.utility(s.latency_ms[twins], req, base_mj)
        score = np.where(np.isfinite(lat) & (u > u_now[:, None] + self.margin), -u, np.inf)
        return _moves(ctx, twins, cand, score, u_now.max() - u_now, s.latency_ms[twins])


class Predictive(MigrationPolicy):
    """Pre-migration: extrapolate each entity ``horizon_s`` ahead at its current velocity,
    find the access point it will reach, and move the twin *before* its deadline is missed
    to the host that is best for both now and then (lowest ``max(T_now, T_future)``).

    Twins are reconsidered when their current or predicted latency exceeds
    ``trigger`` * T_req.

    Live, the view also carries the network's forecast (the live state run ahead in the
    simulator): a host forecast to reach ``spike_utilisation`` within its horizon is not
    chosen as a target, so twins do not pile onto a host about to be overloaded.

    Parameters:
        horizon_s: how far ahead to extrapolate (default 5).
        trigger: fraction of T_req that triggers a pre-migration (default 0.9).
        hysteresis_ms: minimum improvement of the score to move (default 0.5).
        spike_utilisation: forecast CPU utilisation from which a host is avoided
            (default 0.8; only with a forecast).
    """

    def __init__(
        self,
        horizon_s: float = 5.0,
        trigger: float = 0.9,
        hysteresis_ms: float = 0.5,
        spike_utilisation: float = 0.8,
    ):
        self.horizon_s, self.trigger, self.hysteresis_ms = (
            float(horizon_s),
            float(trigger),
            float(hysteresis_ms),
        )
        self.spike_utilisation = float(spike_utilisation)

    def __call__(self, ctx: NetworkView, rng: np.random.Generator):
        s, w = ctx.state, ctx.world
        future_xy = s.xy_m + ctx.velocity_mps() * self.horizon_s
        np.clip(future_xy, w.bounds_m[:2], w.bounds_m[2:], out=future_xy)
        idle = ~ctx.migrating
        # cheap pre-filter: only entities that are moving or already near their deadline
        moving = np.any(s.xy_m != s.prev_xy_m, axis=1)
        pre = np.flatnonzero(idle & (moving | (s.latency_ms > self.trigger * w.latency_req_ms)))
        if pre.size == 0:
            return NO_MOVES
        f_ap, f_dist = w.attach(future_xy[pre])
        f_up = w.uplink_ms(f_dist, pre)
        f_lat_now_host = ctx.latency_ms(pre, s.host[pre], ap=f_ap, uplink_ms=f_up)
        req = w.latency_req_ms[pre]
        need = (f_lat_now_host > self.trigger * req) | (s.latency_ms[pre] > self.trigger * req)
        twins, f_ap, f_up = pre[need], f_ap[need], f_up[need]
        if twins.size == 0:
            return NO_MOVES
        # candidates near the current and the future access point
        c_now, l_now = ctx.candidates(twins)
        c_fut = ctx.ap_candidates[f_ap]
        cand = np.concatenate([c_now, c_fut], axis=1)
        lat_now = np.concatenate([l_now, ctx.latency_ms(twins, c_fut)], axis=1)
        ok = w.allowed_on(twins, cand)
        peak = ctx.forecast_peak_utilisation
        if peak is not None:  # live: hosts the forecast sees overloaded are no targets
            ok &= (peak[cand] < self.spike_utilisation) | (cand == s.host[twins][:, None])
        lat_fut = ctx.latency_ms(twins, cand, ap=f_ap, uplink_ms=f_up)
        score = np.where(ok, np.maximum(lat_now, lat_fut), np.inf)
        cur = np.maximum(s.latency_ms[twins], f_lat_now_host[need])
        improves = score < cur[:, None] - self.hysteresis_ms
        # no host is good both now and then: when the miss is imminent (the entity will
        # leave its twin's reach within one step), move to the best host for then
        step_xy = s.xy_m[twins] + ctx.velocity_mps()[twins] * ctx.step_s
        n_ap, n_dist = w.attach(step_xy)
        imminent = (
            ctx.latency_ms(twins, s.host[twins], ap=n_ap, uplink_ms=w.uplink_ms(n_dist, twins))
            > req[need]
        )
        fut_score = np.where(ok, lat_fut, np.inf)
        fallback = (
            imminent[:, None]
            & ~improves.any(axis=1, keepdims=True)
            & (fut_score < f_lat_now_host[need][:, None] - self.hysteresis_ms)
        )
        score = np.where(improves, score, np.where(fallback, fut_score, np.inf))
        # an improving move must stay better now; a move for then may be worse now
        bound = np.where(improves.any(axis=1), cur - self.hysteresis_ms, np.inf)
        return _moves(ctx, twins, cand, score, cur - w.latency_req_ms[twins], bound)
