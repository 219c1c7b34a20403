"""What a subscriber declares: a region (a circle or a box, metres in the scenario's local
frame), the weights of the four score terms, the scales that make the terms unit-free,
the staleness bound and the bandwidth budget; and the parsing of all that from the
``key=value`` strings of a query or a subscription message.

The value of an update to a subscriber (the weight of value-weighted staleness, and the
part of the score that does not depend on time) is its relevance by distance times its
filter factor::

    d   = distance from the update's position to the region, m (0 inside)
    rho = exp(-d / falloff_m)                  relevance by distance, in (0, 1]
    phi = 1 if the update matches the filter, else miss_factor (in (0, 1])
    v   = rho * phi
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from twinedge.attention.errors import AttentionError

__all__ = ["Box", "Circle", "Interest", "Weights", "parse_interest", "value"]


def _finite(name: str, x: float | str, *, low: float = -math.inf, strict: bool = False) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise AttentionError(name, f"{name}: {x!r} is not a number") from None
    if not math.isfinite(v) or v < low or (strict and v == low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        what = "a finite number" if low == -math.inf else f"a finite number {bound}"
        raise AttentionError(name, f"{name}: {x!r}: expected {what}")
    return v


@dataclass(frozen=True)
class Circle:
    """A circular region: centre ``(x_m, y_m)`` and ``radius_m`` (>= 0).

    Raises:
        AttentionError: a coordinate is not finite or the radius is negative.

    Examples:
        >>> Circle((0.0, 0.0), 100.0).distance_m(np.array([[50.0, 0.0], [300.0, 400.0]]))
        array([  0., 400.])
    """

    centre_m: tuple[float, float]
    radius_m: float

    def __post_init__(self) -> None:
        x, y = self.centre_m
        object.__setattr__(self, "centre_m", (_finite("region.x_m", x), _finite("region.y_m", y)))
        object.__setattr__(self, "radius_m", _finite("region.radius_m", self.radius_m, low=0.0))

    def distance_m(self, xy_m: np.ndarray) -> np.ndarray:
        """Distance of each point of ``xy_m`` (``(n, 2)``) to the circle, 0 inside."""
        d = np.hypot(xy_m[:, 0] - self.centre_m[0], xy_m[:, 1] - self.centre_m[1])
        return np.maximum(d - self.radius_m, 0.0)

    @property
    def scale_m(self) -> float:
        """The default fall-off length: the radius (1 m for a point)."""
        return self.radius_m or 1.0


@dataclass(frozen=True)
class Box:
    """An axis-aligned box from ``min_m`` to ``max_m`` (``(x_m, y_m)`` corners).

    Raises:
        AttentionError: a coordinate is not finite or a max is below its min.

    Examples:
        >>> Box((0.0, 0.0), (10.0, 10.0)).distance_m(np.array([[5.0, 5.0], [13.0, 14.0]]))
        array([0., 5.])
    """

    min_m: tuple[float, float]
    max_m: tuple[float, float]

    def __post_init__(self) -> None:
        lo = (_finite("region.x0_m", self.min_m[0]), _finite("region.y0_m", self.min_m[1]))
        hi = (_finite("region.x1_m", self.max_m[0]), _finite("region.y1_m", self.max_m[1]))
        if hi[0] < lo[0] or hi[1] < lo[1]:
            raise AttentionError("region", f"region: box {lo} to {hi}: a max is below its min")
        object.__setattr__(self, "min_m", lo)
        object.__setattr__(self, "max_m", hi)

    def distance_m(self, xy_m: np.ndarray) -> np.ndarray:
        """Distance of each point of ``xy_m`` (``(n, 2)``) to the box, 0 inside."""
        dx = np.maximum(np.maximum(self.min_m[0] - xy_m[:, 0], xy_m[:, 0] - self.max_m[0]), 0.0)
        dy = np.maximum(np.maximum(self.min_m[1] - xy_m[:, 1], xy_m[:, 1] - self.max_m[1]), 0.0)
        return np.hypot(dx, dy)

    @property
    def scale_m(self) -> float:
        """The default fall-off length: half the shorter side (1 m for a degenerate box)."""
        return 0.5 * min(self.max_m[0] - self.min_m[0], self.max_m[1] - self.min_m[1]) or 1.0


Region = Circle | Box


@dataclass(frozen=True)
class Weights:
    """The weights of the four score terms (each >= 0): relevance by ``distance``,
    ``filter`` match, ``change`` magnitude and ``staleness``.

    Raises:
        AttentionError: a weight is negative or not finite.
    """

    distance: float = 1.0
    filter: float = 1.0
    change: float = 1.0
    staleness: float = 1.0

    def __post_init__(self) -> None:
        for name in ("distance", "filter", "change", "staleness"):
            _finite(f"weights.{name}", getattr(self, name), low=0.0)


@dataclass(frozen=True)
class Interest:
    """One subscriber's interest and budget.

    Parameters:
        region: where the subscriber looks (``None``: everywhere, every distance is 0).
        weights: the weights of the score terms.
        budget_bps: the bandwidth budget, bits per second (``inf``: no budget).
        window_s: the budget holds over every window of this length: at most
            ``budget_bps * window_s`` bits are sent in any ``window_s`` seconds.
        max_staleness_s: the staleness bound: an update whose subscriber copy has been
            out of date this long is sent before any other (``inf``: no bound).
        falloff_m: relevance falls by ``e`` every ``falloff_m`` metres outside the
            region (default: the circle's radius or half the box's shorter side).
        miss_factor: the filter factor of an update that does not match the filter.
        change_scale: the change magnitude that doubles the change term (metres for
            positions).
        staleness_scale_s: the staleness that doubles the staleness term.
        temperature: the softmax temperature.

    Raises:
        AttentionError: a value is out of range (the error's ``field`` names it).

    Examples:
        >>> i = Interest(Circle((0.0, 0.0), 100.0), budget_bps=8000.0)
        >>> i.falloff, i.budget_bits_per_window
        (100.0, 8000.0)
    """

    region: Region | None = None
    weights: Weights = field(default_factory=Weights)
    budget_bps: float = math.inf
    window_s: float = 1.0
    max_staleness_s: float = math.inf
    falloff_m: float | None = None
    miss_factor: float = 0.1
    change_scale: float = 10.0
    staleness_scale_s: float = 1.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.budget_bps != math.inf:
            _finite("budget_bps", self.budget_bps, low=0.0, strict=True)
        _finite("window_s", self.window_s, low=0.0, strict=True)
        if self.max_staleness_s != math.inf:
            _finite("max_staleness_s", self.max_staleness_s, low=0.0, strict=True)
        if self.falloff_m is not None:
            _finite("falloff_m", self.falloff_m, low=0.0, strict=True)
        m = _finite("miss_factor", self.miss_factor, low=0.0, strict=True)
        if m > 1.0:
            raise AttentionError("miss_factor", f"miss_factor: {m:g}: expected at most 1")
        _finite("change_scale", self.change_scale, low=0.0, strict=True)
        _finite("staleness_scale_s", self.staleness_scale_s, low=0.0, strict=True)
        _finite("temperature", self.temperature, low=0.0, strict=True)

    @property
    def falloff(self) -> float:
        """The fall-off length in metres (``falloff_m`` or the region's default)."""
        if self.falloff_m is not None:
            return self.falloff_m
        return self.region.scale_m if self.region is not None else 1.0

    @property
    def budget_bits_per_window(self) -> float:
        """``budget_bps * window_s``: the bits any window may carry."""
        return self.budget_bps * self.window_s

    def distance_m(self, xy_m: np.ndarray | None, n: int) -> np.ndarray:
        """Distance of ``n`` positions to the region (zeros without a region or
        positions; a row of NaN, an update without a position, counts as inside)."""
        if self.region is None or xy_m is None:
            return np.zeros(n)
        d = self.region.distance_m(np.asarray(xy_m, dtype=float).reshape(n, 2))
        return np.nan_to_num(d, nan=0.0)


def value(interest: Interest, distance_m: np.ndarray, matches: np.ndarray | None) -> np.ndarray:
    """The value ``v = exp(-d / falloff_m) * (1 if matches else miss_factor)`` of updates
    at ``distance_m`` from the region.

    Examples:
        >>> i = Interest(Circle((0.0, 0.0), 10.0), miss_factor=0.5)
        >>> value(i, np.array([0.0, 10.0, 0.0]), np.array([True, True, False])).round(4)
        array([1.    , 0.3679, 0.5   ])
    """
    v = np.exp(-np.asarray(distance_m, dtype=float) / interest.falloff)
    if matches is not None:
        v = np.where(np.asarray(matches, dtype=bool), v, v * interest.miss_factor)
    return v


def _floats(name: str, text: str, n: int) -> list[float]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != n:
        raise AttentionError(name, f"{name}: {text!r}: expected {n} comma-separated numbers")
    return [_finite(name, p) for p in parts]


def parse_region(text: str) -> Region:
    """A region from ``circle:x_m,y_m,radius_m`` or ``box:x0_m,y0_m,x1_m,y1_m``.

    Raises:
        AttentionError: another form, or numbers out of range.

    Examples:
        >>> parse_region("circle:10,20,50")
        Circle(centre_m=(10.0, 20.0), radius_m=50.0)
    """
    kind, _, rest = text.partition(":")
    if kind == "circle":
        x, y, r = _floats("region", rest, 3)
        return Circle((x, y), r)
    if kind == "box":
        x0, y0, x1, y1 = _floats("region", rest, 4)
        return Box((x0, y0), (x1, y1))
    raise AttentionError(
        "region", f"region: {text!r}: expected circle:x_m,y_m,radius_m or box:x0_m,y0_m,x1_m,y1_m"
    )


#: the parameters :func:`parse_interest` reads (every one optional)
PARAMETERS = (
    "budget_bps",
    "region",
    "weights",
    "window_s",
    "max_staleness_s",
    "falloff_m",
    "miss_factor",
    "change_scale",
    "staleness_scale_s",
    "temperature",
)


def parse_interest(params: Mapping[str, str | float]) -> Interest:
    """An :class:`Interest` from text parameters (a query string's or a message's):
    ``budget_bps``, ``region`` (see :func:`parse_region`), ``weights``
    (``distance,filter,change,staleness``), ``window_s``, ``max_staleness_s``,
    ``falloff_m``, ``miss_factor``, ``change_scale``, ``staleness_scale_s``,
    ``temperature``. Other keys are ignored (the caller's own parameters).

    Raises:
        AttentionError: a value is malformed or out of range; ``field`` names it.

    Examples:
        >>> i = parse_interest({"budget_bps": "8000", "region": "box:0,0,100,50",
        ...                     "weights": "1,0,0,2", "max_staleness_s": "5"})
        >>> i.budget_bps, i.region, i.weights.staleness, i.max_staleness_s
        (8000.0, Box(min_m=(0.0, 0.0), max_m=(100.0, 50.0)), 2.0, 5.0)
        >>> parse_interest({"budget_bps": "-1"})
        Traceback (most recent call last):
        ...
        twinedge.attention.errors.AttentionError: budget_bps: '-1': expected a finite number > 0
    """
    kw: dict = {}
    for name in PARAMETERS:
        raw = params.get(name)
        if raw is None:
            continue
        if name == "region":
            kw["region"] = parse_region(str(raw))
        elif name == "weights":
            kw["weights"] = Weights(*_floats("weights", str(raw), 4))
        else:
            text = str(raw).strip()
            if name in ("budget_bps", "max_staleness_s") and text.lower() in ("inf", "infinity"):
                kw[name] = math.inf
                continue
            try:
                kw[name] = float(text)
            except ValueError:
                raise AttentionError(name, f"{name}: {raw!r}: expected a number") from None
            if not math.isfinite(kw[name]) or kw[name] <= 0:
                raise AttentionError(name, f"{name}: {raw!r}: expected a finite number > 0")
    return Interest(**kw)
