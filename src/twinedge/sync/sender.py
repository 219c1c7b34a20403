"""The sender rule: a device reports only what its twin cannot predict.

The device samples its value at times ``t_0 < t_1 < ...`` and keeps a copy of the
predictor its twin runs. At every sample ``t_k`` with true value ``z_k``:

1. the first sample is always sent;
2. otherwise the prediction ``p_k`` from the last report is compared with the truth:
   the sample is sent when ``‖p_k − z_k‖ > threshold`` (Euclidean norm; the absolute
   difference for one number), or when ``t_k − t_r ≥ heartbeat_s`` (``t_r`` the time of
   the last report);
3. a sent sample becomes the report: both copies of the predictor take it.

Hence, when every report arrives (the rule's guarantees; the tests check each):

* the receiver's error at a sample time, after the rule, is at most ``threshold``
  (0 for a sample that was sent); with ``threshold = 0`` the receiver is exact at every
  sample, and every sample whose value the predictor does not reproduce exactly is sent;
* the age of the receiver's report at a sample time, after the rule, is below
  ``heartbeat_s``, and never more than ``heartbeat_s`` plus one sample interval between
  samples;
* between sample times nothing is promised (the value is not observed there).

A lost report breaks the first guarantee until the next report arrives (the device
does not know the twin missed one), and only that: the twin's error passes the
threshold only while a report sent after the twin's last one was lost, and a report
that arrives makes it exact. The heartbeat bounds how long a twin can be wrong
unknowingly: its prediction says so by an infinite error bound once its report is older
than ``heartbeat_s``.

Derivatives: a device that knows its velocity (and acceleration) passes them; otherwise
they are estimated by backward differences of its own samples,
``v_k = (z_k − z_{k−1}) / (t_k − t_{k−1})`` and ``a_k = (v_k − v_{k−1}) / (t_k − t_{k−1})``
(0 until two samples, resp. two velocities, exist).

:class:`Sender` is the rule for one device; :class:`SenderArray` the same rule over the
rows of arrays (many entities, one NumPy operation per step), bit for bit the same
decisions. :class:`ByteModel` counts the bytes of reports.

References:
    IEEE Std 1278.1-2012 (DIS): dead-reckoning thresholds and the heartbeat.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from twinedge.sync.errors import SyncError
from twinedge.sync.predict import Predictor, Report, check_contract, extrapolate

__all__ = ["ByteModel", "Sender", "SenderArray", "norm"]


def norm(d: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis (the one formula both senders use), scaled by
    the largest coordinate so that a tiny difference does not square to zero (with a
    threshold of 0, any difference at all must count).

    Examples:
        >>> float(norm(np.array([3.0, 4.0])))
        5.0
        >>> float(norm(np.array([1e-300, 0.0])))
        1e-300
    """
    m = np.max(np.abs(d), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = d / np.expand_dims(m, -1)
    s = q[..., 0] * q[..., 0]
    for j in range(1, q.shape[-1]):  # a short axis: columns beat a reduction
        s += q[..., j] * q[..., j]
    return np.where(m > 0, m * np.sqrt(s), 0.0)


@dataclass(frozen=True, slots=True)
class ByteModel:
    """The size of a report on the uplink: a header plus a fixed size per number.

    A report of a predictor of order ``k`` over ``d`` coordinates carries the time and
    ``d·(1 + k)`` numbers (value, velocity, acceleration); a plain sample, the time and
    ``d`` numbers. The default header, 32 bytes, is IPv4 (20) + UDP (8) + a 4-byte
    entity id; numbers are 8-byte floats.

    Parameters:
        header_bytes: bytes of every message besides its numbers.
        number_bytes: bytes per number.

    Raises:
        SyncError: a negative size.

    Examples:
        >>> b = ByteModel()
        >>> b.sample_bytes(2), b.report_bytes(1, 2), b.report_bytes(2, 2)
        (56, 72, 88)
    """

    header_bytes: int = 32
    number_bytes: int = 8

    def __post_init__(self) -> None:
        for name in ("header_bytes", "number_bytes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise SyncError(f"{name} must be an integer >= 0, got {v!r}")

    def sample_bytes(self, dims: int) -> int:
        """Bytes of one plain sample (time and value)."""
        return self.header_bytes + self.number_bytes * (1 + dims)

    def report_bytes(self, order: int, dims: int) -> int:
        """Bytes of one report of a predictor of ``order``."""
        return self.header_bytes + self.number_bytes * (1 + dims * (1 + order))


def _vector(name: str, v: Sequence[float] | np.ndarray | float, dims: int | None) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(v, dtype=float))
    if arr.ndim != 1 or arr.size == 0 or (dims is not None and arr.size != dims):
        want = "a number or a vector" if dims is None else f"{dims} numbers"
        raise SyncError(f"{name} must be {want}, got {v!r}")
    if not np.all(np.isfinite(arr)):
        raise SyncError(f"{name} must be finite, got {v!r}")
    return arr


class Sender:
    """The sender rule for one device, around the predictor its twin also runs.

    Parameters:
        predictor: the device's copy of the shared predictor (its ``threshold`` and
            ``heartbeat_s`` are the rule's).

    Attributes:
        error: the prediction error at the last sample, before the rule (0 for the
            first sample).
        sent: reports sent so far; samples: samples offered so far.

    Examples:
        A car at 10 m/s sampled every second, first-order dead reckoning, 1 m threshold
        and a 5 s heartbeat: the first sample is sent, then only the heartbeat.

        >>> from twinedge.sync.predict import FirstOrder
        >>> s = Sender(FirstOrder(threshold=1.0, heartbeat_s=5.0))
        >>> [s.offer(t, [10.0 * t, 0.0], velocity=[10.0, 0.0]) is not None for t in range(7)]
        [True, False, False, False, False, True, False]

        Without a velocity the sender estimates one from its samples (backward
        differences): the second sample is sent as well, with the velocity.

        >>> s = Sender(FirstOrder(threshold=1.0, heartbeat_s=None))
        >>> [s.offer(t, [10.0 * t, 0.0]) is not None for t in range(4)]
        [True, True, False, False]
        >>> s.predictor.last
        Report(t_s=1.0, value=(10.0, 0.0), velocity=(10.0, 0.0), acceleration=None)
    """

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.error = 0.0
        self.sent = 0
        self.samples = 0
        self._t: float | None = None
        self._z: np.ndarray | None = None
        self._v: np.ndarray | None = None  # the last velocity, None until one is known

    def __repr__(self) -> str:
        return f"Sender({self.predictor!r})"

    def offer(
        self,
        t_s: float,
        value: Sequence[float] | np.ndarray | float,
        velocity: Sequence[float] | np.ndarray | None = None,
        acceleration: Sequence[float] | np.ndarray | None = None,
    ) -> Report | None:
        """Apply the rule to one sample; the report to send, or ``None``.

        Parameters:
            t_s: the sample's time; strictly after the previous sample's.
            value: the true value now.
            velocity, acceleration: the true derivatives when the device knows them
                (default: estimated from the samples, see the module docstring).

        Raises:
            SyncError: a time that does not increase or is not finite, or values of
                another dimension than before.
        """
        t = float(t_s)
        dims = None if self._z is None else self._z.size
        z = _vector("value", value, dims)
        if not math.isfinite(t) or (self._t is not None and t <= self._t):
            raise SyncError(
                f"sample at t_s={t_s!r} does not follow the previous one (t_s={self._t}); "
                "samples must come in increasing time order"
            )
        v = None if velocity is None else _vector("velocity", velocity, z.size)
        a = None if acceleration is None else _vector("acceleration", acceleration, z.size)
        if v is None:
            v = (
                (z - self._z) / (t - self._t)
                if self._z is not None and self._t is not None
                else None
            )
        if a is None:
            a = (
                (v - self._v) / (t - self._t)
                if v is not None and self._v is not None and self._t is not None
                else None
            )
        self._t, self._z, self._v = t, z, v
        self.samples += 1
        pr = self.predictor
        send = pr.last is None
        if not send:
            pred = pr.predict(t)
            self.error = float(norm(np.array(pred.value) - z))
            send = self.error > pr.threshold or (
                pr.heartbeat_s is not None and pred.age_s >= pr.heartbeat_s
            )
        else:
            self.error = 0.0
        if not send:
            return None
        report = pr.report(t, z, v, a)
        pr.update(report)
        self.sent += 1
        return report


class SenderArray:
    """The sender rule over ``n`` entities at once, each with its own last report.

    Parameters:
        n: entities (rows).
        dims: numbers per value (2 for a position).
        order: the predictor's order: 0 (constant), 1 or 2 (dead reckoning).
        threshold: as :class:`~twinedge.sync.predict.Predictor`.
        heartbeat_s: as :class:`~twinedge.sync.predict.Predictor`.

    Attributes:
        error: ``(n,)`` each entity's prediction error at its last sample, before the
            rule (0 for a first sample).
        receiver_error: ``(n,)`` the receiver's error there after the rule (0 where
            sent).
        age_s: ``(n,)`` the age of each receiver's report at the entity's last sample,
            after the rule (``nan`` before the first).
        report_t_s, report_value, report_velocity, report_acceleration: the last
            reports (``nan`` before the first).

    Raises:
        SyncError: an order other than 0, 1, 2, fewer than one entity or coordinate, or
            a bad threshold or heartbeat.

    Examples:
        Two cars, one at a constant 10 m/s, one that brakes at 2 m/s² from 10 m/s;
        first order, 1 m threshold, no heartbeat, given velocities:

        >>> s = SenderArray(2, 2, order=1, threshold=1.0, heartbeat_s=None)
        >>> for t in range(4):
        ...     x = np.array([[10.0 * t, 0.0], [10.0 * t - t * t, 0.0]])
        ...     v = np.array([[10.0, 0.0], [10.0 - 2.0 * t, 0.0]])
        ...     print(t, s.step(float(t), x, velocity=v).tolist(), s.error.tolist())
        0 [True, True] [0.0, 0.0]
        1 [False, False] [0.0, 1.0]
        2 [False, True] [0.0, 4.0]
        3 [False, False] [0.0, 1.0]
    """

    def __init__(self, n: int, dims: int, order: int, threshold: float, heartbeat_s: float | None):
        if order not in (0, 1, 2):
            raise SyncError(f"order must be 0, 1 or 2, got {order!r}")
        if n < 1 or dims < 1:
            raise SyncError(f"need at least one entity and one coordinate, got n={n}, dims={dims}")
        check_contract(threshold, heartbeat_s)
        self.n, self.dims, self.order = n, dims, order
        self.threshold = float(threshold)
        self.heartbeat_s = None if heartbeat_s is None else float(heartbeat_s)
        nan = np.full((n, dims), np.nan)
        self.report_t_s = np.full(n, np.nan)
        self.report_value = nan.copy()
        self.report_velocity = nan.copy()
        self.report_acceleration = nan.copy()
        self.error = np.zeros(n)
        self.receiver_error = np.zeros(n)
        self.age_s = np.full(n, np.nan)
        self._t = np.full(n, np.nan)  # last sample
        self._z = nan.copy()
        self._v = nan.copy()  # last velocity (nan until known)

    def __repr__(self) -> str:
        return (
            f"SenderArray(n={self.n}, dims={self.dims}, order={self.order}, "
            f"threshold={self.threshold!r}, heartbeat_s={self.heartbeat_s!r})"
        )

    def step(
        self,
        t_s: float | np.ndarray,
        value: np.ndarray,
        present: np.ndarray | None = None,
        velocity: np.ndarray | None = None,
        acceleration: np.ndarray | None = None,
    ) -> np.ndarray:
        """Apply the rule to one sample of every entity in ``present``.

        Parameters:
            t_s: the samples' time, one for all or ``(n,)``; after each entity's previous
                sample.
            value: ``(n, dims)`` true values (rows not present are ignored).
            present: ``(n,)`` booleans, the entities sampled now (default: all).
            velocity, acceleration: ``(n, dims)`` true derivatives, or ``None`` to
                estimate them from the samples.

        Returns:
            ``(n,)`` booleans: the entities that send a report now.

        Raises:
            SyncError: arrays of the wrong shape, values that are not finite, or a
                time that does not increase for an entity present.
        """
        n, d = self.n, self.dims
        mask = np.ones(n, dtype=bool) if present is None else np.asarray(present, dtype=bool)
        if mask.shape != (n,):
            raise SyncError(f"present must have shape ({n},), got {mask.shape}")
        t = np.broadcast_to(np.asarray(t_s, dtype=float), (n,))
        z = np.asarray(value, dtype=float)
        if z.shape != (n, d):
            raise SyncError(f"value must have shape ({n}, {d}), got {z.shape}")
        everyone = present is None or bool(mask.all())
        # every entity sampled (a simulation step): slices, no gathering copies
        idx: slice | np.ndarray = slice(None) if everyone else np.flatnonzero(mask)
        t, z = t[idx], z[idx]
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(z))):
            raise SyncError("times and values must be finite")
        t_prev = self._t[idx]
        if np.any(t <= t_prev):  # nan (no previous sample) compares False
            raise SyncError("samples must come in increasing time order for every entity")
        dt_prev = t - t_prev
        if velocity is None:
            v = (z - self._z[idx]) / dt_prev[:, None]  # nan for a first sample
        else:
            v = self._derivative("velocity", velocity, idx)
        if acceleration is None:
            a = (v - self._v[idx]) / dt_prev[:, None]
        else:
            a = self._derivative("acceleration", acceleration, idx)
        self._t[idx], self._z[idx], self._v[idx] = t, z, v
        v = np.nan_to_num(v, nan=0.0)
        a = np.nan_to_num(a, nan=0.0)

        t_rep = self.report_t_s[idx]
        first = np.isnan(t_rep)
        age = t - t_rep
        pred = extrapolate(
            self.report_value[idx],
            self.report_velocity[idx] if self.order >= 1 else None,
            self.report_acceleration[idx] if self.order >= 2 else None,
            age,
        )
        err = norm(pred - z)
        send = first | (err > self.threshold)
        if self.heartbeat_s is not None:
            send |= age >= self.heartbeat_s
        err[first] = 0.0
        self.error[idx] = err
        self.receiver_error[idx] = np.where(send, 0.0, err)
        self.age_s[idx] = np.where(send, 0.0, age)
        s = np.flatnonzero(send) if isinstance(idx, slice) else idx[send]
        self.report_t_s[s] = t[send]
        self.report_value[s] = z[send]
        self.report_velocity[s] = v[send]
        self.report_acceleration[s] = a[send]
        out = np.zeros(n, dtype=bool)
        out[s] = True
        return out

    def _derivative(self, name: str, arr: np.ndarray, idx: slice | np.ndarray) -> np.ndarray:
        x = np.asarray(arr, dtype=float)
        if x.shape != (self.n, self.dims):
            raise SyncError(f"{name} must have shape ({self.n}, {self.dims}), got {x.shape}")
        x = x[idx]
        if not np.all(np.isfinite(x)):
            raise SyncError(f"{name} must be finite")
        return x
