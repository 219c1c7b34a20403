"""Predictive sync on a live twin: how a report sits in a feature's properties, and the
prediction a read computes from it.

A device that follows the sender rule (``twinedge devices --sync-threshold-m``)
reports its position feature as usual (``x_m``, ``y_m``, ``vx_mps``, ``vy_mps``, ``t_s``
on its own clock) plus the shared contract and the measurement time on a clock the
twin shares (Unix seconds; DIS assumes synchronised clocks too)::

    {"position": {"x_m": 812.4, "y_m": 90.1, "vx_mps": 3.2, "vy_mps": -1.0, "t_s": 12.5,
                  "sync": {"predictor": "first-order", "threshold_m": 1.0,
                           "heartbeat_s": 5.0, "t_unix_s": 1764500000.25}}}

(second order adds ``ax_mps2``, ``ay_mps2``). A read that asks for the prediction
(``?estimate=prediction``) gets, beside the report, the value predicted for the time of
the read, marked as such, in the convention of the edge host's dead-reckoning
behaviour (:class:`twinedge.edge.behaviour.DeadReckoning`)::

    "predicted": {"x_m": 815.6, "y_m": 89.1, "age_s": 1.0, "error_bound_m": 1.0,
                  "predictor": "first-order"}

``error_bound_m`` is ``null`` once the report is older than the heartbeat (a report is
overdue: the bound no longer holds). ``?estimate=report`` gives the last report alone
(any stored ``predicted`` left out).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from twinedge.sync.errors import SyncError
from twinedge.sync.predict import PREDICTORS, Report, extrapolate

__all__ = [
    "ESTIMATES",
    "estimate_document",
    "predicted_properties",
    "report_properties",
]

ESTIMATES = ("report", "prediction")
"""The values of a read's ``estimate`` parameter."""

Estimate = Literal["report", "prediction"]

_VEL = ("vx_mps", "vy_mps")
_ACC = ("ax_mps2", "ay_mps2")


def report_properties(
    report: Report, predictor: str, threshold_m: float, heartbeat_s: float, t_unix_s: float
) -> dict[str, Any]:
    """The properties a device adds to its position report for the twin to predict:
    the derivatives of the predictor's order and the ``sync`` contract.

    Examples:
        >>> r = Report(3.0, (1.0, 2.0), velocity=(0.5, 0.0))
        >>> report_properties(r, "first-order", 1.0, 5.0, 1000.0)
        {'vx_mps': 0.5, 'vy_mps': 0.0, 'sync': {'predictor': 'first-order', 'threshold_m': 1.0, 'heartbeat_s': 5.0, 't_unix_s': 1000.0}}
    """
    out: dict[str, Any] = {}
    if report.velocity is not None:
        out.update(zip(_VEL, report.velocity, strict=True))
    if report.acceleration is not None:
        out.update(zip(_ACC, report.acceleration, strict=True))
    out["sync"] = {
        "predictor": predictor,
        "threshold_m": threshold_m,
        "heartbeat_s": heartbeat_s,
        "t_unix_s": t_unix_s,
    }
    return out


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def predicted_properties(props: Mapping[str, Any], now_unix_s: float) -> dict[str, Any] | None:
    """The prediction for ``now_unix_s`` from a feature's reported properties, or
    ``None`` when they hold no complete sync report (no ``sync`` object, an unknown
    predictor, or a number missing).

    The age is never negative: a read a little before the report's time on the twin's
    clock (clocks a little apart) gets the report itself, age 0.

    Examples:
        >>> props = {"x_m": 10.0, "y_m": 0.0, "vx_mps": 2.0, "vy_mps": -1.0,
        ...          "sync": {"predictor": "first-order", "threshold_m": 1.0,
        ...                   "heartbeat_s": 5.0, "t_unix_s": 100.0}}
        >>> predicted_properties(props, 101.5)
        {'x_m': 13.0, 'y_m': -1.5, 'age_s': 1.5, 'error_bound_m': 1.0, 'predictor': 'first-order'}
        >>> predicted_properties(props, 106.0)["error_bound_m"] is None
        True
        >>> predicted_properties({"x_m": 1.0}, 0.0) is None
        True
    """
    sync = props.get("sync")
    if not isinstance(sync, Mapping):
        return None
    name, thr, hb, t0 = (
        sync.get(k) for k in ("predictor", "threshold_m", "heartbeat_s", "t_unix_s")
    )
    cls = PREDICTORS.get(name) if isinstance(name, str) else None
    if cls is None or not (_num(thr) and _num(t0)) or not (hb is None or _num(hb)):
        return None
    need = ["x_m", "y_m", *(_VEL if cls.order >= 1 else ()), *(_ACC if cls.order >= 2 else ())]
    if not all(_num(props.get(k)) for k in need):
        return None
    assert isinstance(t0, int | float) and isinstance(thr, int | float)
    age_s = max(0.0, float(now_unix_s) - float(t0))
    vel = np.array([props[k] for k in _VEL], dtype=float) if cls.order >= 1 else None
    acc = np.array([props[k] for k in _ACC], dtype=float) if cls.order >= 2 else None
    x, y = extrapolate(np.array([props["x_m"], props["y_m"]], dtype=float), vel, acc, age_s)
    overdue = hb is not None and age_s > hb
    return {
        "x_m": float(x),
        "y_m": float(y),
        "age_s": round(age_s, 6),
        "error_bound_m": None if overdue else float(thr),
        "predictor": name,
    }


def estimate_document(doc: dict[str, Any], estimate: str, now_unix_s: float) -> dict[str, Any]:
    """A twin document as a read with ``?estimate=`` sees it (a copy; ``doc`` is not
    changed): ``report`` leaves ``predicted`` out of every feature, ``prediction`` sets
    it, in every feature whose properties hold a sync report, to the prediction for
    ``now_unix_s``.

    Raises:
        SyncError: another value of ``estimate``.

    Examples:
        >>> doc = {"features": {"position": {"properties": {"x_m": 1.0, "predicted": {}}}}}
        >>> estimate_document(doc, "report", 0.0)
        {'features': {'position': {'properties': {'x_m': 1.0}}}}
        >>> estimate_document(doc, "guess", 0.0)
        Traceback (most recent call last):
        ...
        twinedge.sync.errors.SyncError: estimate must be one of report, prediction, got 'guess'
    """
    if estimate not in ESTIMATES:
        raise SyncError(f"estimate must be one of {', '.join(ESTIMATES)}, got {estimate!r}")
    feats = doc.get("features")
    if not isinstance(feats, dict):
        return doc
    out_feats: dict[str, Any] = {}
    for fid, f in feats.items():
        props = f.get("properties") if isinstance(f, dict) else None
        if not isinstance(props, dict):
            out_feats[fid] = f
            continue
        new = {k: v for k, v in props.items() if k != "predicted"}
        if estimate == "prediction":
            pred = predicted_properties(props, now_unix_s)
            if pred is not None:
                new["predicted"] = pred
            elif "predicted" in props:  # a prediction the twin stored (edge behaviour)
                new["predicted"] = props["predicted"]
        out_feats[fid] = {**f, "properties": new}
    return {**doc, "features": out_feats}
