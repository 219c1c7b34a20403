"""Over-the-air federated edge learning: the training loop and the experiment grid.

One round t (Du et al., seed 002, algorithm 1):

1. every device n draws a mini-batch of |D^m| samples from its local data and computes
   its gradient g_n at the global model w_{t-1} (``local_steps`` > 1: the model change
   of that many local SGD steps, divided by the local step size);
2. its update is g~_n = g_n + r_n with residual r_n (eq. 7, schemes with residual
   feedback; otherwise g~_n = g_n);
3. the channel h_n ~ CN(0, 1) is drawn; devices with |h_n| < ``h_min`` are out of the
   round (truncated channel inversion: their power sigma_t^2 / |h_n|^2 would exceed the
   cap sigma_t^2 / h_min^2);
4. the scheduler returns the mask S_t;
5. the server receives y = sum_{n in S_t} a_n g~_n + z, z ~ N(0, sigma_0^2 I), with
   a_n = 1 under channel inversion (a_n = |h_n|^2 / (|h_n|^2 + c) under baseline 3's
   power rule), and updates w_t = w_{t-1} - eta y / |S_t| (eq. 5); with nobody
   scheduled the model stays;
6. unscheduled devices keep r_n = xi g~_n, scheduled ones reset r_n = 0.

The ideal scheme averages every device's gradient with no noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from twinedge.fl.errors import FLError
from twinedge.fl.model import CLASSES, Partition, accuracy, partition, softmax
from twinedge.fl.schedulers import (
    SCHEMES,
    BoolArray,
    FloatArray,
    PowerCost,
    RoundState,
    Scheduler,
    inversion_power,
    make_scheduler,
    power_cost_power,
    rayleigh,
)

NOISE_VARS = (0.5, 1.0, 3.0)
"""The receiver noise variances sigma_0^2 of the article."""


@dataclass(frozen=True)
class FLConfig:
    """The settings of one federated-learning experiment.

    Attributes:
        devices: N, the number of edge devices.
        rounds: T, communication rounds.
        batch: |D^m|, the local mini-batch size.
        local_steps: local SGD steps per round (1: the update is the mini-batch gradient).
        lr: eta, the global learning rate (and the local one).
        gamma_thr: gamma_thr, the target receive SNR; sigma_t^2 = gamma_thr sigma_0^2.
        h_min: the smallest |h| a device can invert (truncation).
        xi: the weight of the residual kept by an unscheduled device (eq. 7b).
        alpha: the Lyapunov factor of the proposed scheduler.
        residual: whether the proposed scheduler uses residual feedback.
        iid: IID shares of the data (True) or two label shards per device (False).
    """

    devices: int = 100
    rounds: int = 50
    batch: int = 10
    local_steps: int = 1
    lr: float = 0.5
    gamma_thr: float = 1.0
    h_min: float = 0.1
    xi: float = 0.5
    alpha: float = 5000.0
    residual: bool = True
    iid: bool = True

    def check(self) -> None:
        """Raise :class:`FLError` naming the first bad setting."""
        if self.devices < 1:
            raise FLError(f"devices: {self.devices}: expected at least 1 device")
        if self.rounds < 1:
            raise FLError(f"rounds: {self.rounds}: expected at least 1 round")
        if self.batch < 1 or self.local_steps < 1:
            raise FLError("batch and local_steps: expected at least 1")
        for name in ("lr", "gamma_thr", "alpha"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise FLError(f"{name}: {v}: expected a positive finite number")
        if not 0.0 <= self.xi <= 1.0:
            raise FLError(f"xi: {self.xi}: expected 0 <= xi <= 1")
        if not (self.h_min >= 0 and math.isfinite(self.h_min)):
            raise FLError(f"h_min: {self.h_min}: expected a finite number >= 0")


def check_noise_var(noise_var: float) -> None:
    """Raise :class:`FLError` unless ``noise_var`` (sigma_0^2) is finite and >= 0."""
    if not (noise_var >= 0 and math.isfinite(noise_var)):
        raise FLError(f"noise variance: {noise_var}: expected a finite number >= 0")


@dataclass
class RunResult:
    """One training run: a scheme at a noise variance under a seed.

    Attributes:
        accuracy: test accuracy after each round (length T).
        scheduled: devices scheduled in each round.
        energy: total transmit energy of the scheduled devices in each round (sum of
            P_n, unit-variance symbols of unit duration); 0 for the ideal scheme.
    """

    scheme: str
    noise_var: float
    seed: int
    alpha: float
    accuracy: list[float] = field(default_factory=list)
    scheduled: list[int] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        return self.accuracy[-1]


def _local_updates(
    w: FloatArray, data: Partition, cfg: FLConfig, rng: np.random.Generator
) -> FloatArray:
    """Every device's update, shape (N, 65, 10)."""
    n = len(data.device_rows)
    idx = np.empty((n, cfg.batch), dtype=np.int64)
    for i, rows in enumerate(data.device_rows):
        if rows.size >= cfg.batch:
            idx[i] = rows[rng.permutation(rows.size)[: cfg.batch]]
        else:
            idx[i] = rows[rng.integers(0, rows.size, cfg.batch)]
    x = data.x_train[idx]  # (N, B, 65)
    y = data.y_train[idx]  # (N, B)
    local = np.broadcast_to(w, (n, *w.shape)).copy()
    onehot = np.eye(CLASSES)[y]
    for _ in range(cfg.local_steps):
        z = np.einsum("nbd,ndc->nbc", x, local)
        p = np.exp(z - z.max(axis=2, keepdims=True))
        p /= p.sum(axis=2, keepdims=True)
        g = np.einsum("nbd,nbc->ndc", x, p - onehot) / cfg.batch
        local -= cfg.lr * g
    out: FloatArray = (w[None] - local) / cfg.lr
    return out


def gradient_variance_bound(w: FloatArray, data: Partition) -> float:
    """G^2 (eq. 10b): the largest, over devices, of the mean squared distance of a
    sample's gradient from the device's mean gradient, at the model ``w`` (the article
    measures it in pre-training; we measure it at the initial model)."""
    worst = 0.0
    for rows in data.device_rows:
        x, y = data.x_train[rows], data.y_train[rows]
        p = softmax(x @ w)
        p[np.arange(len(y)), y] -= 1.0
        per = np.einsum("bd,bc->bdc", x, p)
        worst = max(worst, float(np.mean(np.sum(np.square(per - per.mean(axis=0)), axis=(1, 2)))))
    return worst


def run(
    scheme: str | Scheduler,
    noise_var: float,
    rng: np.random.Generator,
    cfg: FLConfig | None = None,
    *,
    seed: int = 0,
    data: Partition | None = None,
) -> RunResult:
    """Train one model with ``scheme`` at receiver noise variance ``noise_var``.

    Parameters:
        scheme: a name of :data:`~twinedge.fl.schedulers.SCHEMES` or a scheduler object.
        noise_var: sigma_0^2 >= 0.
        rng: the run's only source of randomness (data split, channels, mini-batches,
            noise); the same seed gives the same run, and every scheme draws the same
            numbers in the same order, so schemes under one seed see the same channels.
        cfg: the settings (:class:`FLConfig` defaults).
        seed: recorded in the result.
        data: a ready split (drawn from ``rng`` when None).

    Raises:
        FLError: a bad setting, noise variance or scheme name.

    Examples:
        >>> r = run("lyapunov", 1.0, np.random.default_rng(0), FLConfig(rounds=3))
        >>> len(r.accuracy), all(0 <= a <= 1 for a in r.accuracy)
        (3, True)
    """
    cfg = cfg or FLConfig()
    cfg.check()
    check_noise_var(noise_var)
    sched = make_scheduler(scheme, alpha=cfg.alpha) if isinstance(scheme, str) else scheme
    data = data or partition(cfg.devices, rng, iid=cfg.iid)
    n = len(data.device_rows)
    w = np.zeros((data.x_train.shape[1], CLASSES))
    g2 = gradient_variance_bound(w, data)
    sigma_t2 = cfg.gamma_thr * noise_var
    residual = np.zeros((n, *w.shape))
    uses_residual = cfg.residual and sched.name == "lyapunov"
    result = RunResult(sched.name, noise_var, seed, cfg.alpha)
    for _ in range(cfg.rounds):
        h_abs = np.abs(rayleigh(n, rng))
        grads = _local_updates(w, data, cfg, rng)
        noise = rng.normal(0.0, math.sqrt(noise_var), w.shape)
        updates = grads + residual if uses_residual else grads
        norm2 = np.sum(np.square(updates), axis=(1, 2))
        state = RoundState(
            h_abs, norm2, noise_var, sigma_t2, h_abs >= cfg.h_min, g2, cfg.batch, w.size
        )
        mask = check_mask(sched.schedule(state, rng), n)
        k = int(mask.sum())
        energy = 0.0
        if sched.name == "ideal":
            w = w - cfg.lr * grads.mean(axis=0)
            k = n
        elif k:
            if isinstance(sched, PowerCost):
                h2 = np.square(h_abs[mask])
                amp = h2 / (h2 + sched.c)
                energy = float(power_cost_power(h_abs[mask], sched.c).sum())
            else:
                amp = np.ones(k)
                energy = float(inversion_power(h_abs[mask], sigma_t2).sum())
            received = np.einsum("n,ndc->dc", amp, updates[mask]) + noise
            w = w - cfg.lr * received / k
        if uses_residual:
            residual = np.where(mask[:, None, None], 0.0, cfg.xi * updates)
        result.accuracy.append(accuracy(w, data.x_test, data.y_test))
        result.scheduled.append(k)
        result.energy.append(energy)
    return result


def check_mask(mask: BoolArray, devices: int) -> BoolArray:
    """``mask`` as a boolean vector of length ``devices``.

    Raises:
        FLError: a mask of another shape or type.
    """
    m = np.asarray(mask)
    if m.dtype != np.bool_ or m.shape != (devices,):
        raise FLError(f"scheduler mask: shape {m.shape} of {m.dtype}: expected {devices} booleans")
    return m


def grid(
    schemes: Sequence[str],
    noise_vars: Sequence[float],
    seeds: Sequence[int],
    cfg: FLConfig | None = None,
    *,
    on_run: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Every scheme at every noise variance under every seed.

    Each (seed, noise variance) pair draws its data split once, from
    ``default_rng(seed)``, and every scheme then runs from a copy of that generator,
    so the schemes see the same data, channels, mini-batches and noise draws.

    Raises:
        FLError: an unknown scheme, a bad noise variance or setting, no seeds.
    """
    cfg = cfg or FLConfig()
    cfg.check()
    if not seeds:
        raise FLError("seeds: expected at least one seed")
    for s in schemes:
        make_scheduler(s, alpha=cfg.alpha)
    for v in noise_vars:
        check_noise_var(v)
    out = []
    for seed in seeds:
        for v in noise_vars:
            base = np.random.default_rng(seed)
            data = partition(cfg.devices, base, iid=cfg.iid)
            state = base.bit_generator.state
            for s in schemes:
                rng = np.random.default_rng(seed)
                rng.bit_generator.state = state
                r = run(s, v, rng, cfg, seed=seed, data=data)
                out.append(r)
                if on_run is not None:
                    on_run(r)
    return out


def scheme_names() -> tuple[str, ...]:
    """The known scheme names."""
    return SCHEMES
