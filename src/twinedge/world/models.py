"""Latency and energy models (formulas and units in docs/models.md).

All functions are vectorised over entities and take units in their argument names.
"""

from __future__ import annotations

import numpy as np

#: utilisation above which the queueing term is held (keeps T finite at rho -> 1)
RHO_CAP = 0.95


def path_loss_db(
    distance_m: np.ndarray, ref_db: float, exponent: float, min_distance_m: float
) -> np.ndarray:
    """Distance-based path loss ``PL = ref_db + 10 * exponent * log10(d_km)`` in dB."""
    d_km = np.maximum(np.asarray(distance_m, dtype=float), min_distance_m)
    if d_km.ndim == 0:
        return ref_db + 10.0 * exponent * np.log10(d_km / 1000.0)
    # in place, the same operations in the same order (the same bits)
    d_km /= 1000.0
    np.log10(d_km, out=d_km)
    d_km *= 10.0 * exponent
    d_km += ref_db
    return d_km


def uplink_rate_bps(
    distance_m: np.ndarray,
    tx_power_w: np.ndarray,
    bandwidth_hz: float,
    noise_dbm_per_hz: float,
    ref_db: float,
    exponent: float,
    min_distance_m: float,
) -> np.ndarray:
    """Shannon rate ``B log2(1 + P g / (N0 B))`` with ``g = 10^(-PL/10)``, in bit/s."""
    pl = path_loss_db(distance_m, ref_db, exponent, min_distance_m)
    noise_w = 10.0 ** ((noise_dbm_per_hz - 30.0) / 10.0) * bandwidth_hz
    if np.ndim(pl) == 0 or np.broadcast_shapes(np.shape(pl), np.shape(tx_power_w)) != pl.shape:
        gain = 10.0 ** (-pl / 10.0)
        snr = np.asarray(tx_power_w, dtype=float) * gain / noise_w
        return bandwidth_hz * np.log2(1.0 + snr)
    # in place, the same operations in the same order (the same bits)
    pl /= -10.0
    np.power(10.0, pl, out=pl)  # the gain
    pl *= np.asarray(tx_power_w, dtype=float)
    pl /= noise_w  # the SNR
    pl += 1.0
    np.log2(pl, out=pl)
    pl *= bandwidth_hz
    return pl


def uplink_ms(update_bytes: np.ndarray, rate_bps: np.ndarray) -> np.ndarray:
    """Time to send one state update of ``update_bytes`` at ``rate_bps``, in ms."""
    bits_ms = 1000.0 * 8.0 * np.asarray(update_bytes, dtype=float)
    if bits_ms.ndim == 0 or np.broadcast_shapes(bits_ms.shape, np.shape(rate_bps)) != bits_ms.shape:
        return bits_ms / np.maximum(rate_bps, 1e-9)
    bits_ms /= np.maximum(rate_bps, 1e-9)
    return bits_ms


def service_ms(work_gcycles: np.ndarray, host_cpu_ghz: np.ndarray) -> np.ndarray:
    """Service time of one update on an idle host: ``work / cpu``, in ms."""
    return 1000.0 * np.asarray(work_gcycles, dtype=float) / np.maximum(host_cpu_ghz, 1e-12)


def queue_factor(rho: np.ndarray) -> np.ndarray:
    """M/M/1 sojourn-time factor ``1 / (1 - rho)``, with rho held at :data:`RHO_CAP`."""
    return 1.0 / (1.0 - np.minimum(np.asarray(rho, dtype=float), RHO_CAP))


def utilisation_limit(room_ms: np.ndarray, service_ms: np.ndarray) -> np.ndarray:
    """The highest utilisation rho at which ``service_ms * queue_factor(rho)`` still fits
    in ``room_ms``: ``1 - service / room``; ``inf`` when it fits even at the held factor
    (rho at :data:`RHO_CAP`), ``-inf`` when it does not fit on an idle host.

    Examples:
        >>> float(utilisation_limit(np.array(4.0), np.array(1.0)))  # 1 / (1 - rho) <= 4
        0.75
    """
    room = np.asarray(room_ms, dtype=float)
    svc = np.asarray(service_ms, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - svc / room
    rho = np.where(room >= svc * queue_factor(np.asarray(RHO_CAP)), np.inf, rho)
    return np.where(room < svc, -np.inf, rho)


def report_gap_ms(report_hz: np.ndarray) -> np.ndarray:
    """Mean time between two reports arriving at a host that receives ``report_hz``
    reports per second: ``1000 / report_hz`` ms, ``inf`` at no reports.

    Examples:
        >>> report_gap_ms(np.array([25.0, 250.0, 0.0])).tolist()
        [40.0, 4.0, inf]
    """
    hz = np.asarray(report_hz, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(hz > 0, 1000.0 / np.where(hz > 0, hz, 1.0), np.inf)


def curve_ms(gap_ms: np.ndarray, curve_gap_ms: np.ndarray, curve_ms: np.ndarray) -> np.ndarray:
    """A host's commit time per report at a report spacing ``gap_ms``, from its calibrated
    curve: linear between the two points around ``gap_ms``, the end point's value beyond
    either end (as :func:`numpy.interp`), row by row.

    Parameters:
        gap_ms: the spacings, any shape ``S``.
        curve_gap_ms, curve_ms: the curves' points, ``S + (K,)`` (or broadcastable to
            it), spacings increasing along the last axis (a shorter curve padded with
            copies of its last point).

    Examples:
        >>> g, c = np.array([0.0, 10.0, 40.0]), np.array([1.0, 2.0, 4.0])
        >>> curve_ms(np.array([0.0, 5.0, 25.0, 100.0, np.inf]), g, c).tolist()
        [1.0, 1.5, 3.0, 4.0, 4.0]
    """
    q = np.asarray(gap_ms, dtype=float)
    xp = np.asarray(curve_gap_ms, dtype=float)
    fp = np.asarray(curve_ms, dtype=float)
    shape = np.broadcast_shapes((*q.shape, 1), xp.shape, fp.shape)
    xp, fp = np.broadcast_to(xp, shape), np.broadcast_to(fp, shape)
    k = shape[-1]
    above = (xp <= q[..., None]).sum(axis=-1)  # points at or below each spacing
    lo = np.clip(above - 1, 0, k - 1)[..., None]
    hi = np.clip(above, 0, k - 1)[..., None]
    x0, x1 = np.take_along_axis(xp, lo, -1)[..., 0], np.take_along_axis(xp, hi, -1)[..., 0]
    y0, y1 = np.take_along_axis(fp, lo, -1)[..., 0], np.take_along_axis(fp, hi, -1)[..., 0]
    span = x1 - x0
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(span > 0, (q - x0) / np.where(span > 0, span, 1.0), 0.0)
    return y0 + np.clip(t, 0.0, 1.0) * (y1 - y0)


def device_energy_j(tx_power_w: np.ndarray, tx_time_s: np.ndarray) -> np.ndarray:
    """Seed 000's device energy ``E = p * t`` (transmit power times transmit time), in J."""
    return np.asarray(tx_power_w, dtype=float) * np.asarray(tx_time_s, dtype=float)


def server_power_w(idle_w: np.ndarray, max_w: np.ndarray, utilisation: np.ndarray) -> np.ndarray:
    """Linear server power ``idle + (max - idle) * u`` with u clipped to [0, 1], in W."""
    u = np.clip(np.asarray(utilisation, dtype=float), 0.0, 1.0)
    return idle_w + (max_w - idle_w) * u


def migration_downtime_s(
    state_bytes: np.ndarray, bottleneck_mbps: np.ndarray, path_ms: np.ndarray
) -> np.ndarray:
    """Stop-and-copy migration: ``8 * bytes / bottleneck bandwidth + path latency``, in s."""
    return (
        8.0 * np.asarray(state_bytes, dtype=float) / (np.asarray(bottleneck_mbps) * 1e6)
        + np.asarray(path_ms) / 1000.0
    )
