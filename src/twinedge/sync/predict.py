"""Reports, predictions and the predictors that a device and its twin share.

A :class:`Report` is what a device sends: the time of the measurement, the value (a
position in metres, or any other numeric property, as a vector of one or more numbers)
and, for dead reckoning, its rate of change. A :class:`Predictor` holds the last report
and predicts the value at a later time:

* :class:`ConstantValue` (order 0): the last reported value, ``p(t) = p0``;
* :class:`FirstOrder` (order 1): ``p(t) = p0 + v0·dt``;
* :class:`SecondOrder` (order 2): ``p(t) = p0 + v0·dt + ½·a0·dt²``,

with ``dt = t - t0`` seconds since the report. These are the dead-reckoning algorithms
of IEEE 1278.1 (DIS) in a fixed world frame without rotation, DRM(F, P, W) and
DRM(F, V, W) (IEEE Std 1278.1-2012, its dead-reckoning algorithms).

Every predictor is built with the contract that the sender and the receiver share:
``threshold`` (the largest error the sender lets stand, in the value's unit: metres for
a position) and ``heartbeat_s`` (the longest time between two reports). Hence the error
bound of a :class:`Prediction`: ``threshold`` while the report is at most
``heartbeat_s`` old, infinite afterwards (a report is overdue, the bound no longer
holds). The bound holds at the device's sample times (where the rule is checked), see
:mod:`twinedge.sync.sender`.

References:
    IEEE Std 1278.1-2012, Standard for Distributed Interactive Simulation — Application
    Protocols: entity state updates by dead reckoning (thresholds, heartbeat) and the
    dead-reckoning algorithms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from twinedge.sync.errors import SyncError

__all__ = [
    "PREDICTORS",
    "ConstantValue",
    "FirstOrder",
    "Prediction",
    "Predictor",
    "Report",
    "SecondOrder",
    "check_contract",
    "extrapolate",
    "make_predictor",
]


def _finite_tuple(name: str, v: Sequence[float] | np.ndarray | float) -> tuple[float, ...]:
    arr = np.atleast_1d(np.asarray(v, dtype=float))
    if arr.ndim != 1 or arr.size == 0:
        raise SyncError(f"{name} must be a number or a vector of numbers, got {v!r}")
    if not np.all(np.isfinite(arr)):
        raise SyncError(f"{name} must be finite, got {v!r}")
    return tuple(float(x) for x in arr)


@dataclass(frozen=True, slots=True)
class Report:
    """One report of a device: the value measured at ``t_s`` and its derivatives.

    Parameters:
        t_s: when the value was measured (seconds, on the clock the device and the
            receiver share).
        value: the value, one or more numbers (``(x_m, y_m)`` for a position).
        velocity: the value's rate of change per second (dead reckoning of order 1 and
            2), or ``None``.
        acceleration: its second derivative per second² (order 2), or ``None``.

    Raises:
        SyncError: a number that is not finite, an empty value, or a derivative of
            another length than the value.

    Examples:
        >>> Report(2.0, (10.0, 0.0), velocity=(1.0, -1.0))
        Report(t_s=2.0, value=(10.0, 0.0), velocity=(1.0, -1.0), acceleration=None)
        >>> Report(2.0, (1.0, 2.0), velocity=(1.0,))
        Traceback (most recent call last):
        ...
        twinedge.sync.errors.SyncError: velocity has 1 numbers, the value 2; give one per coordinate
    """

    t_s: float
    value: tuple[float, ...]
    velocity: tuple[float, ...] | None = None
    acceleration: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.t_s, int | float) or not math.isfinite(self.t_s):
            raise SyncError(f"t_s must be a finite number of seconds, got {self.t_s!r}")
        object.__setattr__(self, "value", _finite_tuple("value", self.value))
        for name in ("velocity", "acceleration"):
            v = getattr(self, name)
            if v is None:
                continue
            t = _finite_tuple(name, v)
            if len(t) != len(self.value):
                raise SyncError(
                    f"{name} has {len(t)} numbers, the value {len(self.value)}; "
                    "give one per coordinate"
                )
            object.__setattr__(self, name, t)


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the receiver knows of the value at a time: the prediction, how old the
    report it came from is, and the error bound the sender promises.

    Attributes:
        value: the predicted value.
        age_s: seconds since the report's measurement.
        error_bound: the largest error the sender lets stand (the value's unit), or
            ``math.inf`` when the report is older than the heartbeat (one is overdue).
    """

    value: tuple[float, ...]
    age_s: float
    error_bound: float


def extrapolate(
    value: np.ndarray,
    velocity: np.ndarray | None,
    acceleration: np.ndarray | None,
    dt_s: np.ndarray | float,
) -> np.ndarray:
    """Dead reckoning ``p + v·dt + ½·a·dt²``, vectorised (rows are entities).

    The one formula of the package: the scalar and the vectorised senders, the
    receivers and the live twins all call it, so they agree to the last bit.

    Parameters:
        value: ``(d,)`` or ``(n, d)`` values at the report.
        velocity: same shape, or ``None`` (order 0).
        acceleration: same shape, or ``None`` (order 0 and 1).
        dt_s: seconds since the report, a number or ``(n,)``.

    Returns:
        The predicted values, the shape of ``value``.

    Examples:
        >>> extrapolate(np.array([10.0, 0.0]), np.array([2.0, -1.0]), None, 1.5).tolist()
        [13.0, -1.5]
        >>> extrapolate(np.array([0.0]), np.array([1.0]), np.array([2.0]), 3.0).tolist()
        [12.0]
    """
    dt = np.asarray(dt_s, dtype=float)
    if dt.ndim == 1:
        dt = dt[:, None]
    out = np.array(value, dtype=float, copy=True)
    if velocity is not None:
        out = out + velocity * dt
    if acceleration is not None:
        out = out + (0.5 * acceleration) * (dt * dt)
    return out


def check_contract(threshold: float, heartbeat_s: float | None) -> None:
    """Refuse a threshold that is negative or not finite, and a heartbeat that is not a
    positive finite number (``None`` means no heartbeat).

    Raises:
        SyncError: naming the parameter and the value.

    Examples:
        >>> check_contract(1.0, 5.0)
        >>> check_contract(-1.0, 5.0)
        Traceback (most recent call last):
        ...
        twinedge.sync.errors.SyncError: threshold must be a finite number >= 0, got -1.0
    """
    if not isinstance(threshold, int | float) or not math.isfinite(threshold) or threshold < 0:
        raise SyncError(f"threshold must be a finite number >= 0, got {threshold!r}")
    if heartbeat_s is not None and (
        not isinstance(heartbeat_s, int | float)
        or not math.isfinite(heartbeat_s)
        or heartbeat_s <= 0
    ):
        raise SyncError(
            f"heartbeat_s must be a finite number of seconds > 0 (or None: no heartbeat), "
            f"got {heartbeat_s!r}"
        )


class Predictor:
    """The base of the predictors: the last report, and the value predicted from it.

    A subclass sets :attr:`order` (0, 1 or 2: which derivatives its reports carry) and
    :attr:`name`. Parameters come from ``__init__``, so ``repr`` is complete and the
    device and the twin build the same predictor from the same parameters.

    Parameters:
        threshold: the largest error the sender lets stand, in the value's unit (metres
            for a position); 0 lets none stand.
        heartbeat_s: the longest time between two reports (seconds), or ``None`` for no
            heartbeat. 5 s is DIS's default entity-state heartbeat.

    Raises:
        SyncError: a negative or non-finite threshold, a heartbeat that is not a
            positive number.
    """

    order: ClassVar[int] = 0
    name: ClassVar[str] = ""

    def __init__(self, threshold: float = 1.0, heartbeat_s: float | None = 5.0):
        check_contract(threshold, heartbeat_s)
        self.threshold = float(threshold)
        self.heartbeat_s = None if heartbeat_s is None else float(heartbeat_s)
        self.last: Report | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(threshold={self.threshold!r}, heartbeat_s={self.heartbeat_s!r})"
        )

    def report(
        self,
        t_s: float,
        value: Sequence[float] | np.ndarray,
        velocity: Sequence[float] | np.ndarray | None = None,
        acceleration: Sequence[float] | np.ndarray | None = None,
    ) -> Report:
        """The report this predictor's sender sends: the derivatives its order needs
        (zeros when not given), the others left out.

        Examples:
            >>> FirstOrder().report(1.0, [3.0, 4.0], acceleration=[1.0, 1.0])
            Report(t_s=1.0, value=(3.0, 4.0), velocity=(0.0, 0.0), acceleration=None)
        """
        val = _finite_tuple("value", value)
        zero = (0.0,) * len(val)
        vel = None if self.order < 1 else (zero if velocity is None else velocity)
        acc = None if self.order < 2 else (zero if acceleration is None else acceleration)
        return Report(float(t_s), val, vel, acc)  # type: ignore[arg-type]

    def update(self, report: Report) -> None:
        """Take a report (on the device when it sends it, on the twin when it arrives).

        Raises:
            SyncError: a report older than the last one, one of another dimension, or
                one that lacks a derivative this predictor's order needs.
        """
        if self.order >= 1 and report.velocity is None:
            raise SyncError(f"a {self.name} predictor needs the velocity in every report")
        if self.order >= 2 and report.acceleration is None:
            raise SyncError(f"a {self.name} predictor needs the acceleration in every report")
        if self.last is not None:
            if report.t_s < self.last.t_s:
                raise SyncError(
                    f"report at t_s={report.t_s} is older than the last one "
                    f"(t_s={self.last.t_s}); reports must arrive in time order"
                )
            if len(report.value) != len(self.last.value):
                raise SyncError(
                    f"report has {len(report.value)} numbers, the last one "
                    f"{len(self.last.value)}; a predictor follows one value"
                )
        self.last = report

    def predict(self, t_s: float) -> Prediction:
        """The value at ``t_s`` (not before the last report), its age and error bound.

        Raises:
            SyncError: no report yet, or ``t_s`` before the last report.
        """
        r = self.last
        if r is None:
            raise SyncError(f"the {self.name} predictor has had no report yet")
        age_s = float(t_s) - r.t_s
        if not math.isfinite(age_s) or age_s < 0:
            raise SyncError(f"cannot predict at t_s={t_s!r}, before the last report (t_s={r.t_s})")
        vel = None if self.order < 1 or r.velocity is None else np.array(r.velocity)
        acc = None if self.order < 2 or r.acceleration is None else np.array(r.acceleration)
        value = extrapolate(np.array(r.value), vel, acc, age_s)
        overdue = self.heartbeat_s is not None and age_s > self.heartbeat_s
        bound = math.inf if overdue else self.threshold
        return Prediction(tuple(float(x) for x in value), age_s, bound)


class ConstantValue(Predictor):
    """The last reported value (order 0): for properties that are not positions, or a
    plain deadband on one (send when it moved more than ``threshold``).

    Examples:
        >>> p = ConstantValue(threshold=2.0, heartbeat_s=10.0)
        >>> p.update(p.report(0.0, [21.5]))
        >>> p.predict(4.0)
        Prediction(value=(21.5,), age_s=4.0, error_bound=2.0)
        >>> p.predict(11.0).error_bound
        inf
    """

    order = 0
    name = "constant"


class FirstOrder(Predictor):
    """Dead reckoning of first order, DIS DRM(F, P, W): ``p0 + v0·dt``.

    Examples:
        >>> p = FirstOrder(threshold=1.0)
        >>> p.update(p.report(100.0, [10.0, 0.0], velocity=[2.0, -1.0]))
        >>> p.predict(101.5)
        Prediction(value=(13.0, -1.5), age_s=1.5, error_bound=1.0)
    """

    order = 1
    name = "first-order"


class SecondOrder(Predictor):
    """Dead reckoning of second order, DIS DRM(F, V, W): ``p0 + v0·dt + ½·a0·dt²``.

    Examples:
        >>> p = SecondOrder(threshold=0.5, heartbeat_s=None)
        >>> p.update(p.report(0.0, [0.0, 0.0], velocity=[1.0, 0.0], acceleration=[0.0, 2.0]))
        >>> p.predict(3.0)
        Prediction(value=(3.0, 9.0), age_s=3.0, error_bound=0.5)
    """

    order = 2
    name = "second-order"


PREDICTORS: dict[str, type[Predictor]] = {
    "constant": ConstantValue,
    "first-order": FirstOrder,
    "second-order": SecondOrder,
}
"""The predictors by name."""


def make_predictor(name: str, threshold: float = 1.0, heartbeat_s: float | None = 5.0) -> Predictor:
    """A predictor by name (a key of :data:`PREDICTORS`).

    Raises:
        SyncError: an unknown name (the message lists the names), or a bad contract.

    Examples:
        >>> make_predictor("second-order", threshold=5.0)
        SecondOrder(threshold=5.0, heartbeat_s=5.0)
        >>> make_predictor("kalman")
        Traceback (most recent call last):
        ...
        twinedge.sync.errors.SyncError: unknown predictor 'kalman'; use one of constant, first-order, second-order
    """
    cls = PREDICTORS.get(name)
    if cls is None:
        raise SyncError(f"unknown predictor {name!r}; use one of {', '.join(PREDICTORS)}")
    return cls(threshold=threshold, heartbeat_s=heartbeat_s)
