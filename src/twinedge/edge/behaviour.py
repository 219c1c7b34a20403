"""Twin behaviours: the Python code that runs beside a twin on its edge host.

A behaviour is a subclass of :class:`TwinBehaviour` with up to three hooks, each given a
read-only view of the twin (:class:`TwinView`) and the host's clock, and each returning a
JSON merge patch of the twin document (see :mod:`twinedge.edge.document`) or ``None``
for "no change":

* ``on_report(twin, report, now_s)`` — a device report ``{feature: properties patch}``;
  the default merges it into ``features.<feature>.properties`` exactly as ``twinedge
  serve`` does (docs/mqtt.md, "Reports");
* ``on_desired(twin, desired, now_s)`` — an application sets desired properties; the
  default merges them into ``features.<feature>.desiredProperties``;
* ``on_tick(twin, now_s)`` — called periodically by the host (``EdgeHost.tick``); the
  default does nothing.

Rules that follow from migration and recovery:

* **No state outside the document.** A twin moves between hosts and is rebuilt from a
  log; anything a behaviour must remember goes into the twin (a property), never into
  ``self``. One behaviour instance serves every twin that names it.
* **Deterministic patches, not deterministic hooks.** The host logs the patch a hook
  returned, not the input, so hooks may read the clock; replay never calls them.
* **Parameters come from ``__init__``** (scikit-learn style): a behaviour is named by a
  spec (a registered name such as ``"dead-reckoning"``, or an import path
  ``package.module:Class``) plus JSON parameters, which is what the log and a migration
  carry, so ``repr`` and :meth:`TwinBehaviour.get_params` are always complete.

A plain function ``f(twin, report, now_s) -> patch | None`` is accepted wherever a
behaviour is (by import path): it becomes the ``on_report`` hook of a default behaviour.
Resolution reuses :func:`twinedge.policies.registry.resolve` (the same error messages and
import-path rules as policies).

:class:`DeadReckoning` is the built-in example of "send only what the receiver cannot
predict" (dead reckoning, e.g. IEEE 1278.1 DIS): position and velocity reported now and
then, the position in between extrapolated on the twin with the first-order formula of
:mod:`twinedge.sync` (:func:`twinedge.sync.predict.extrapolate`), the package of the
predictors and of the sender rule devices follow (docs/sync.md).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from twinedge.edge.document import Patch, desired_patch, report_patch
from twinedge.edge.errors import BehaviourError
from twinedge.errors import PolicyError
from twinedge.policies import registry
from twinedge.sync.predict import extrapolate

__all__ = [
    "BEHAVIOURS",
    "DeadReckoning",
    "FunctionBehaviour",
    "TwinBehaviour",
    "TwinView",
    "resolve_behaviour",
]


@dataclass(frozen=True, slots=True)
class TwinView:
    """What a hook sees of a twin. ``document`` is shared with the host: never mutate it,
    return a patch instead.

    Attributes:
        twin_id: the thing id.
        epoch: the fencing epoch under which this host serves the twin.
        revision: the revision of ``document`` (committed).
        document: ``{"thingId", "attributes", "features"}``.
    """

    twin_id: str
    epoch: int
    revision: int
    document: Mapping[str, Any]

    def properties(self, feature_id: str) -> Mapping[str, Any]:
        """The reported properties of a feature (empty when it has none).

        Examples:
            >>> TwinView("a:b", 1, 0, {"features": {"f": {"properties": {"x": 1}}}}).properties("f")
            {'x': 1}
        """
        f = (self.document.get("features") or {}).get(feature_id)
        p = f.get("properties") if isinstance(f, dict) else None
        return p if isinstance(p, dict) else {}


class TwinBehaviour:
    """The default behaviour and the base class of user behaviours.

    Hooks return a JSON merge patch of the twin document or ``None`` (no change). A
    patch that changes nothing is not a new revision.

    Examples:
        >>> b = TwinBehaviour()
        >>> t = TwinView("fleet:car-7", 1, 0, {"thingId": "fleet:car-7", "features": {}})
        >>> b.on_report(t, {"battery": {"level": 71}}, now_s=0.0)
        {'features': {'battery': {'properties': {'level': 71}}}}
        >>> b.on_tick(t, now_s=1.0) is None
        True
    """

    #: Registered name of a built-in (``None`` for user classes, named by import path).
    name: ClassVar[str | None] = "default"

    def on_report(self, twin: TwinView, report: Mapping[str, Any], now_s: float) -> Patch | None:
        """A device report ``{feature_id: merge patch of its properties}`` (checked).

        Parameters:
            twin: the twin before the report.
            report: the report, already checked (non-empty object of objects).
            now_s: the host's clock.

        Returns:
            The document patch to commit; default: every feature's ``properties`` merged
            with its part of the report (a feature that does not exist is created).
        """
        return report_patch(report)

    def on_desired(self, twin: TwinView, desired: Mapping[str, Any], now_s: float) -> Patch | None:
        """An application sets desired properties ``{feature_id: merge patch}``; default:
        merged into every feature's ``desiredProperties``."""
        return desired_patch(desired)

    def on_tick(self, twin: TwinView, now_s: float) -> Patch | None:
        """Periodic work (``EdgeHost.tick``); default: nothing."""
        return None

    def __call__(self, twin: TwinView, report: Mapping[str, Any], now_s: float) -> Patch | None:
        """Calling a behaviour handles a report (:meth:`on_report`), so behaviours and
        plain report functions are interchangeable."""
        return self.on_report(twin, report, now_s)

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` parameters, read from attributes of the same names."""
        sig = inspect.signature(type(self).__init__)
        return {
            p: getattr(self, p)
            for p in sig.parameters
            if p != "self" and sig.parameters[p].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class FunctionBehaviour(TwinBehaviour):
    """A plain report function ``fn(twin, report, now_s) -> patch | None`` as a behaviour.

    Examples:
        >>> def note(twin, report, now_s):
        ...     return {"attributes": {"last_report_s": now_s}}
        >>> FunctionBehaviour(note).on_report(TwinView("a:b", 1, 0, {}), {"f": {}}, 5.0)
        {'attributes': {'last_report_s': 5.0}}
    """

    name = None

    def __init__(self, fn: Callable[[TwinView, Mapping[str, Any], float], Patch | None]):
        self.fn = fn

    def on_report(self, twin: TwinView, report: Mapping[str, Any], now_s: float) -> Patch | None:
        return self.fn(twin, report, now_s)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class DeadReckoning(TwinBehaviour):
    """Extrapolate a twin's position from its last reported position and velocity.

    Convention: the feature ``feature`` (default ``position``) has the properties
    ``x_m``, ``y_m`` (metres in the scenario frame), ``vx_mps``, ``vy_mps`` (metres per
    second, 0 when absent) and ``t_s`` (the time of the measurement on the host's
    clock). The prediction is written beside them, as a reported property of the same
    feature::

        features.position.properties.predicted = {"x_m": ..., "y_m": ..., "age_s": ...}

    where ``age_s`` is how old the measurement was when the prediction was written (the
    prediction is for time ``t_s + age_s``). It lives in ``properties`` (not a feature of
    its own) so that one read of the feature gives both measurement and estimate, and an
    application filters on it like any property.

    * **Report**: the report is merged as usual. A report that sets ``x_m`` or ``y_m``
      without ``t_s`` is a measurement made now (``t_s = now_s`` is added); a coordinate
      it leaves out keeps its extrapolated value. A report that changes only the velocity
      re-bases the track: position extrapolated to now with the old velocity, ``t_s =
      now_s``. ``predicted`` is then set to the measurement extrapolated to now.
    * **Tick**: ``predicted`` is recomputed for ``now_s``; it is written only when it
      moved more than ``min_change_m`` from the one stored (so a parked vehicle costs no
      revisions), and extrapolation stops ``horizon_s`` after the measurement.

    Parameters:
        feature: the feature that holds the position.
        min_change_m: do not write a prediction that moved this little (metres).
        horizon_s: extrapolate at most this long after the measurement (seconds).

    Raises:
        ValueError: a negative ``min_change_m`` or a ``horizon_s`` that is not positive.

    Examples:
        >>> dr = DeadReckoning()
        >>> doc = {"features": {"position": {"properties": {
        ...     "x_m": 10.0, "y_m": 0.0, "vx_mps": 2.0, "vy_mps": -1.0, "t_s": 100.0}}}}
        >>> dr.on_tick(TwinView("fleet:car-7", 1, 3, doc), now_s=101.5)
        {'features': {'position': {'properties': {'predicted': {'x_m': 13.0, 'y_m': -1.5, 'age_s': 1.5}}}}}
    """

    name = "dead-reckoning"

    def __init__(
        self, feature: str = "position", min_change_m: float = 0.0, horizon_s: float = 60.0
    ):
        if not _num(min_change_m) or min_change_m < 0:
            raise ValueError(f"min_change_m must be a number >= 0, got {min_change_m!r}")
        if not _num(horizon_s) or horizon_s <= 0:
            raise ValueError(f"horizon_s must be a number > 0, got {horizon_s!r}")
        self.feature = feature
        self.min_change_m = min_change_m
        self.horizon_s = horizon_s

    def _predict(self, props: Mapping[str, Any], now_s: float) -> dict[str, float] | None:
        x, y, t = props.get("x_m"), props.get("y_m"), props.get("t_s")
        vx, vy = props.get("vx_mps", 0.0), props.get("vy_mps", 0.0)
        if not (_num(x) and _num(y) and _num(t) and _num(vx) and _num(vy)):
            return None
        assert x is not None and y is not None and t is not None
        age_s = max(0.0, float(now_s) - t)
        dt = min(age_s, self.horizon_s)
        px, py = extrapolate(
            np.array([x, y], dtype=float), np.array([vx, vy], dtype=float), None, dt
        )
        return {"x_m": float(px), "y_m": float(py), "age_s": age_s}

    def on_report(self, twin: TwinView, report: Mapping[str, Any], now_s: float) -> Patch | None:
        patch = report_patch(report)
        part = report.get(self.feature)
        if not isinstance(part, dict) or not (
            part.keys() & {"x_m", "y_m", "vx_mps", "vy_mps", "t_s"}
        ):
            return patch
        old = twin.properties(self.feature)
        now_pos = self._predict(old, now_s)
        part = dict(part)
        if "t_s" not in part:
            if now_pos is not None:  # what the report leaves out keeps its value at now
                part.setdefault("x_m", now_pos["x_m"])
                part.setdefault("y_m", now_pos["y_m"])
            part["t_s"] = float(now_s)
        merged = {**old, **{k: v for k, v in part.items() if v is not None}}
        for k, v in part.items():
            if v is None:
                merged.pop(k, None)
        part["predicted"] = self._predict(merged, now_s)  # None removes a stale one
        patch["features"][self.feature] = {"properties": part}
        return patch

    def on_tick(self, twin: TwinView, now_s: float) -> Patch | None:
        props = twin.properties(self.feature)
        pred = self._predict(props, now_s)
        if pred is None:
            return None
        prev = props.get("predicted")
        if isinstance(prev, dict) and _num(prev.get("x_m")) and _num(prev.get("y_m")):
            moved_m = math.hypot(pred["x_m"] - prev["x_m"], pred["y_m"] - prev["y_m"])
            if moved_m <= self.min_change_m:
                return None
        return {"features": {self.feature: {"properties": {"predicted": pred}}}}


BEHAVIOURS: dict[str, type[TwinBehaviour]] = {
    "default": TwinBehaviour,
    "dead-reckoning": DeadReckoning,
}
"""Built-in behaviours by name."""


def resolve_behaviour(spec: str, **params: Any) -> TwinBehaviour:
    """A ready behaviour: a name of :data:`BEHAVIOURS` or an import path
    ``package.module:Class`` (a :class:`TwinBehaviour` subclass, given ``params``) or
    ``package.module:function`` (a report function, see :class:`FunctionBehaviour`).

    Parameters:
        spec: the name or import path.
        **params: JSON parameters for the class's ``__init__``.

    Raises:
        BehaviourError: unknown name, module or attribute, parameters the class refuses,
            or an object that is neither a behaviour nor callable. The message lists the
            built-in names.

    Examples:
        >>> resolve_behaviour("dead-reckoning", min_change_m=0.5)
        DeadReckoning(feature='position', min_change_m=0.5, horizon_s=60.0)
        >>> resolve_behaviour("teleport")
        Traceback (most recent call last):
        ...
        twinedge.edge.errors.BehaviourError: unknown behaviour policy 'teleport'; use one of dead-reckoning, default or an import path of the form 'package.module:function_or_class'
    """
    try:
        obj = registry.resolve(spec, BEHAVIOURS, "behaviour", **params)
    except PolicyError as e:
        raise BehaviourError(str(e)) from e
    if isinstance(obj, TwinBehaviour):
        return obj
    return FunctionBehaviour(obj)
