"""Channel model, power control and the device schedulers of over-the-air FL.

Every scheduler has one contract, ``schedule(state, rng) -> mask``: given a round's
channels and local updates it returns a boolean mask over the N devices (True =
transmits this round). The formulas follow Du et al. (seed 002, eqs. 3, 6, 13, 15-18)
and Zhu, Wang and Huang, "Broadband analog aggregation for low-latency federated edge
learning", IEEE TWC 2020 (truncated channel inversion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from twinedge.fl.errors import FLError

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def rayleigh(n: int, rng: np.random.Generator) -> NDArray[np.complex128]:
    """``n`` i.i.d. channel gains h ~ CN(0, 1): real and imaginary parts N(0, 1/2), so
    E|h|^2 = 1 and |h| is Rayleigh distributed."""
    re = rng.normal(0.0, math.sqrt(0.5), n)
    im = rng.normal(0.0, math.sqrt(0.5), n)
    return re + 1j * im


def inversion_power(h_abs: FloatArray, sigma_t2: float) -> FloatArray:
    """Channel-inversion transmit power P_n = sigma_t^2 / |h_n|^2 (eq. 3: the pre-scaler
    b_n = sigma_t h_n^H / |h_n|^2 has |b_n|^2 = sigma_t^2 / |h_n|^2), in units of the
    per-symbol energy of a unit-variance signal.

    Examples:
        >>> inversion_power(np.array([1.0, 0.5, 2.0]), 3.0).tolist()
        [3.0, 12.0, 0.75]
    """
    out: FloatArray = sigma_t2 / np.square(h_abs)
    return out


def quality(
    update_norm2: FloatArray,
    h_abs: FloatArray,
    energy: FloatArray,
    *,
    rho1: float = 0.5,
    lambda_v: float = 0.5,
) -> FloatArray:
    """The device-quality indicator I_n = lambda_V V_n - lambda_E E_n (eq. 16) with
    V_n = rho1 ||g~_n||^2 / g_max + rho2 |h_n| / h_max (eq. 15), rho2 = 1 - rho1 and
    lambda_E = 1 - lambda_V; g_max and h_max are the round's largest values.

    Examples:
        >>> quality(np.array([4.0, 2.0]), np.array([1.0, 2.0]), np.array([1.0, 0.25])).tolist()
        [-0.125, 0.25]
    """
    g_max = float(update_norm2.max()) if update_norm2.size else 0.0
    h_max = float(h_abs.max()) if h_abs.size else 0.0
    v_dsi = update_norm2 / g_max if g_max > 0 else np.zeros_like(update_norm2)
    v_csi = h_abs / h_max if h_max > 0 else np.zeros_like(h_abs)
    v = rho1 * v_dsi + (1.0 - rho1) * v_csi
    out: FloatArray = lambda_v * v - (1.0 - lambda_v) * energy
    return out


@dataclass(frozen=True)
class RoundState:
    """What a scheduler sees in one round.

    Attributes:
        h_abs: |h_n| of every device this round.
        update_norm2: ||g~_n||^2, the squared norm of the update each device would send
            (its gradient plus its residual, where residual feedback is on).
        noise_var: sigma_0^2, the receiver noise variance.
        sigma_t2: sigma_t^2 = gamma_thr sigma_0^2, the power-scaling factor (eq. 6).
        eligible: devices whose channel-inversion power is within the cap (truncation).
        grad_var: G^2, the bound on the local gradient variance (eq. 10b).
        batch: |D^m|, the local mini-batch size.
        dim: d, the number of model parameters (baseline 3 measures updates in units
            where the round's mean squared norm is d).
    """

    h_abs: FloatArray
    update_norm2: FloatArray
    noise_var: float
    sigma_t2: float
    eligible: BoolArray
    grad_var: float = 0.0
    batch: int = 10
    dim: int = 1

    @property
    def devices(self) -> int:
        return int(self.h_abs.size)


class Scheduler(Protocol):
    """A device scheduler: ``schedule(state, rng)`` returns the round's mask."""

    name: str

    def schedule(self, state: RoundState, rng: np.random.Generator) -> BoolArray: ...


class Ideal:
    """Every device, noiseless: the benchmark average of all gradients."""

    name = "ideal"

    def schedule(self, state: RoundState, rng: np.random.Generator) -> BoolArray:
        return np.ones(state.devices, dtype=bool)


@dataclass
class ChannelThreshold:
    """Baseline 1: every device with |h_n| >= h_th (h_th = 1)."""

    h_th: float = 1.0
    name: str = "threshold"

    def schedule(self, state: RoundState, rng: np.random.Generator) -> BoolArray:
        out: BoolArray = (state.h_abs >= self.h_th) & state.eligible
        return out


@dataclass
class TopChannelsTopGradients:
    """Baseline 2: the k_c devices with the largest |h_n|, then among them the k with
    the largest ||g_n||^2 (k_c = 50, k = 20); ties go to the lower device index."""

    k_channels: int = 50
    k: int = 20
    name: str = "top-k"

    def schedule(self, state: RoundState, rng: np.random.Generator) -> BoolArray:
        n = state.devices
        cand = np.flatnonzero(state.eligible)
        cand = cand[np.argsort(-state.h_abs[cand], kind="stable")][: self.k_channels]
        cand = cand[np.argsort(-state.update_norm2[cand], kind="stable")][: self.k]
        mask = np.zeros(n, dtype=bool)
        mask[cand] = True
        return mask


def power_cost_power(h_abs: FloatArray, c: float) -> FloatArray:
    """Baseline 3's transmit power P_n = (|h_n| / (|h_n|^2 + c))^2 (eq. 18).

    Examples:
        >>> power_cost_power(np.array([1.0]), 1.0).tolist()
        [0.25]
    """
    out: FloatArray = np.square(h_abs / (np.square(h_abs) + c))
    return out


@dataclass
class PowerCost:
    """Baseline 3 (eq. 18): device n transmits when
    ||g~_n||^2 |h_n|^2 / (|h_n|^2 + c) >= c P_on (c = 1, P_on = 4).

    The rule compares a squared norm with a power, so it depends on the scale of the
    update. We measure ||g~_n||^2 after the pre-processing Phi that gives the
    transmitted symbols unit variance (Zhu et al. 2020), with one normalisation shared by
    the round: ||g~_n||^2 becomes d ||g~_n||^2 / mean_m ||g~_m||^2."""

    c: float = 1.0
    p_on: float = 4.0
    name: str = "power-cost"

    def schedule(self, state: RoundState, rng: np.random.Generator) -> BoolArray:
        h2 = np.square(state.h_abs)
        mean = float(state.update_norm2.mean()) if state.devices else 0.0
        scaled = state.dim * state.update_norm2 / mean if mean > 0 else state.update_norm2
        gain = scaled * h2 / (h2 + self.c)
        out: BoolArray = (gain >= self.c * self.p_on) & state.eligible
        return out


def convergence_term(k: NDArray[np.int64] | int, state: RoundState) -> FloatArray:
    """U_t(k) = delta^2 / (gamma_thr k^2) + G^2 / (k |D^m|) (eq. 13) for k scheduled
    devices, with delta^2 / gamma_thr taken as sigma_0^2: the variance, per model entry,
    of the receiver noise left in the average after division by k.

    Examples:
        >>> s = RoundState(np.ones(2), np.ones(2), 3.0, 3.0, np.ones(2, bool), 0.5, 10)
        >>> convergence_term(np.array([1, 2]), s).tolist()    # 3 + 0.05, 0.75 + 0.025
        [3.05, 0.775]
    """
    kk = np.asarray(k, dtype=np.float64)
    out: FloatArray = state.noise_var / np.square(kk) + state.grad_var / (kk * state.batch)
    return np.atleast_1d(out)


@dataclass
class Lyapunov:
    """The proposed scheduler (algorithm 1): sort I_n in descending order, compute the
    drift-plus-penalty p(k) = alpha U_t(k) - sum of the k largest I_n for k = 1..N and
    schedule the k* devices of the smallest p(k) (ties: the smallest k). Devices beyond
    the power cap are left out. alpha = 5000, rho1 = rho2 = lambda_V = lambda_E = 0.5."""

    alpha: float = 5000.0
    rho1: float = 0.5
    lambda_v: float = 0.5
    name: str = "lyapunov"

    def indicator(self, state: RoundState) -> FloatArray:
        """I_n of every device, with E_n = sigma_t^2 / |h_n|^2."""
        energy = inversion_power(np.maximum(state.h_abs, 1e-12), state.sigma_t2)
        return quality(
            state.update_norm2, state.h_abs, energy, rho1=self.rho1, lambda_v=self.lambda_v
        )

    def penalties(self, state: RoundState) -> tuple[NDArray[np.int64], FloatArray]:
        """The eligible devices sorted by I_n (descending) and p(k) for k = 1..len."""
        cand = np.flatnonzero(state.eligible)
        ind = self.indicator(state)[cand]
        order = np.argsort(-ind, kind="stable")
        k = np.arange(1, cand.size + 1)
        p = self.alpha * convergence_term(k, state) - np.cumsum(ind[order])
        return cand[order], p

    def schedule(self, state: RoundState, rng: np.random.Generator) -> BoolArray:
        mask = np.zeros(state.devices, dtype=bool)
        ranked, p = self.penalties(state)
        if ranked.size:
            mask[ranked[: int(np.argmin(p)) + 1]] = True
        return mask


SCHEMES = ("ideal", "lyapunov", "threshold", "top-k", "power-cost")
"""The scheme names, in the order tables and figures list them."""


def make_scheduler(name: str, *, alpha: float = 5000.0) -> Scheduler:
    """The scheduler called ``name`` (one of :data:`SCHEMES`).

    Raises:
        FLError: an unknown name; the message lists the known ones.
    """
    if name == "ideal":
        return Ideal()
    if name == "lyapunov":
        if not alpha > 0 or not math.isfinite(alpha):
            raise FLError(f"alpha: {alpha}: expected a positive finite number")
        return Lyapunov(alpha=alpha)
    if name == "threshold":
        return ChannelThreshold()
    if name == "top-k":
        return TopChannelsTopGradients()
    if name == "power-cost":
        return PowerCost()
    raise FLError(f"scheme: {name!r}: unknown; expected one of {', '.join(SCHEMES)}")
