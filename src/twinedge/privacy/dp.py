"""Differentially private releases of counts, sums, means and histograms (OpenDP).

The neighbouring relation is add/remove one twin (OpenDP's symmetric distance 1 on the
multiset of twins). The exact aggregate is computed here; the noise comes from OpenDP's
measurements (its secure samplers; discrete noise for integer answers):

* **Laplace**, pure ε-DP: noise scale b = Δ₁ / ε (standard deviation √2·b).
* **Gaussian**, (ε, δ)-DP: σ = Δ₂ / √(2ρ) with the zero-concentrated budget
  ρ = (√(ln(1/δ) + ε) − √(ln(1/δ)))², the largest ρ whose conversion
  ε = ρ + 2√(ρ·ln(1/δ)) (Bun and Steinke, 2016) stays within the caller's ε.

Sensitivities (add/remove one twin): a count and every histogram bin vector 1; a sum of
values clamped into [lower, upper] max(|lower|, |upper|). A mean is a noisy clamped sum
divided by a noisy count, each with half of ε (and of δ), clamped into [lower, upper].
Every :class:`Release` carries the mechanism, ε, δ and, per noisy part, its sensitivity
and noise scale, in the unit of the answer.

Examples:
    >>> r = release_count(42, mechanism="laplace", epsilon=0.5)
    >>> (r.mechanism, r.epsilon, r.noise[0].sensitivity, r.noise[0].scale)
    ('laplace', 0.5, 1.0, 2.0)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from twinedge.errors import InvalidInput

Mechanism = Literal["laplace", "gaussian"]
#: The mechanisms a release may use.
MECHANISMS: tuple[str, ...] = ("laplace", "gaussian")
#: the range of ε a release may ask for (the budget counts whole nano-ε)
MIN_EPSILON, MAX_EPSILON = 1e-9, 1e6
#: the largest magnitude of a clamping bound (keeps sums and noise scales finite)
MAX_BOUND = 1e15


@dataclass(frozen=True)
class Noise:
    """One noisy part of a release.

    Parameters:
        part: what was perturbed (``count``, ``sum``, ``histogram``).
        sensitivity: Δ of that part (L1 for Laplace, L2 for Gaussian), unit of the answer.
        scale: the noise scale: Laplace b, or Gaussian σ, unit of the answer.
        epsilon: the ε spent on this part.
        delta: the δ spent on this part (0 for Laplace).
    """

    part: str
    sensitivity: float
    scale: float
    epsilon: float
    delta: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "sensitivity": self.sensitivity,
            "scale": self.scale,
            "epsilon": self.epsilon,
            "delta": self.delta,
        }


@dataclass(frozen=True)
class Release:
    """A differentially private answer.

    Parameters:
        kind: ``count``, ``sum``, ``mean`` or ``histogram``.
        value: the noisy answer (a list of bin counts for a histogram).
        mechanism: ``laplace`` or ``gaussian``.
        epsilon: the total ε of the release.
        delta: the total δ (0 for Laplace).
        noise: the noisy parts, each with sensitivity and scale.
        bounds: the clamping bounds of a sum or mean (``None`` otherwise).
        edges: the bin edges of a histogram (``None`` otherwise).
    """

    kind: str
    value: Any
    mechanism: str
    epsilon: float
    delta: float
    noise: tuple[Noise, ...] = field(default_factory=tuple)
    bounds: tuple[float, float] | None = None
    edges: tuple[float, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "value": self.value,
            "mechanism": self.mechanism,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "noise": [n.to_json() for n in self.noise],
        }
        if self.bounds is not None:
            out["lower"], out["upper"] = self.bounds
        if self.edges is not None:
            out["edges"] = list(self.edges)
        return out


def _finite(x: Any, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise InvalidInput(f"{name} must be a finite number, got {x!r}", f"/{name}")
    return float(x)


def check_params(mechanism: str, epsilon: Any, delta: Any) -> tuple[float, float]:
    """(ε, δ) checked for ``mechanism``.

    Raises:
        InvalidInput: an unknown mechanism; ε not a finite number in [10⁻⁹, 10⁶]; for Laplace a δ
            other than 0; for Gaussian a δ not in (0, 1).

    Examples:
        >>> check_params("gaussian", 1.0, 1e-6)
        (1.0, 1e-06)
    """
    if mechanism not in MECHANISMS:
        raise InvalidInput(
            f"unknown mechanism {mechanism!r}; use one of {', '.join(MECHANISMS)}", "/mechanism"
        )
    eps = _finite(epsilon, "epsilon")
    if eps <= 0:
        raise InvalidInput(f"epsilon must be > 0, got {eps}", "/epsilon")
    if not MIN_EPSILON <= eps <= MAX_EPSILON:
        raise InvalidInput(
            f"epsilon must lie in {MIN_EPSILON:g}..{MAX_EPSILON:g}, got {eps}", "/epsilon"
        )
    if mechanism == "laplace":
        if delta not in (None, 0, 0.0):
            raise InvalidInput(
                "the Laplace mechanism is pure ε-DP: give no delta (or 0); "
                "use mechanism=gaussian for (ε, δ)",
                "/delta",
            )
        return eps, 0.0
    if delta is None:
        raise InvalidInput("the Gaussian mechanism needs delta, in (0, 1)", "/delta")
    d = _finite(delta, "delta")
    if not 0 < d < 1:
        raise InvalidInput(f"delta must lie in (0, 1), got {d}", "/delta")
    return eps, d


def check_bounds(lower: Any, upper: Any) -> tuple[float, float]:
    """The clamping bounds, checked: both given, finite, lower ≤ upper.

    Raises:
        InvalidInput: a bound is missing (the sensitivity depends on it), not finite,
            beyond ±10¹⁵, or lower > upper.
    """
    for name, v in (("lower", lower), ("upper", upper)):
        if v is None:
            raise InvalidInput(
                f"a sum or mean needs both bounds: {name} is missing (the sensitivity, hence "
                "the noise, depends on it; values are clamped into [lower, upper])",
                f"/{name}",
            )
    lo, hi = _finite(lower, "lower"), _finite(upper, "upper")
    for name, v in (("lower", lo), ("upper", hi)):
        if abs(v) > MAX_BOUND:
            raise InvalidInput(f"|{name}| must be at most {MAX_BOUND:g}, got {v}", f"/{name}")
    if lo > hi:
        raise InvalidInput(f"lower ({lo}) must not exceed upper ({hi})", "/lower")
    return lo, hi


def laplace_scale(sensitivity: float, epsilon: float) -> float:
    """The Laplace noise scale b = Δ₁/ε.

    Examples:
        >>> laplace_scale(10.0, 0.5)
        20.0
    """
    return sensitivity / epsilon


def gaussian_rho(epsilon: float, delta: float) -> float:
    """The zCDP budget ρ = (√(ln(1/δ) + ε) − √(ln(1/δ)))² that converts to (ε, δ)-DP."""
    lg = math.log(1.0 / delta)
    return (math.sqrt(lg + epsilon) - math.sqrt(lg)) ** 2


def gaussian_scale(sensitivity: float, epsilon: float, delta: float) -> float:
    """The Gaussian noise scale σ = Δ₂/√(2ρ) with ρ from :func:`gaussian_rho`.

    Examples:
        >>> round(gaussian_scale(1.0, 1.0, 1e-6), 4)
        5.35
    """
    return sensitivity / math.sqrt(2.0 * gaussian_rho(epsilon, delta))


def _dp() -> Any:
    try:
        import opendp.prelude as dp
    except ImportError as e:  # pragma: no cover - the extra is installed in tests
        raise InvalidInput(
            "differential privacy needs OpenDP: pip install 'twinedge[privacy]'"
        ) from e
    dp.enable_features("contrib")
    return dp


def _noisy(value: Any, *, integer: bool, size: int | None, mechanism: str, scale: float) -> Any:
    """``value`` (a number, or a vector of ``size`` integers) with OpenDP's noise."""
    dp = _dp()
    atom = dp.atom_domain(T=int) if integer else dp.atom_domain(T=float, nan=False)
    if size is None:
        space = (atom, dp.absolute_distance(T=int if integer else float))
    else:
        metric = dp.l1_distance(T=int) if mechanism == "laplace" else dp.l2_distance(T=int)
        space = (dp.vector_domain(atom, size=size), metric)
    make = dp.m.make_laplace if mechanism == "laplace" else dp.m.make_gaussian
    meas = make(*space, scale=scale)
    return meas(value)


def _noise(part: str, mechanism: str, sensitivity: float, eps: float, delta: float) -> Noise:
    scale = (
        laplace_scale(sensitivity, eps)
        if mechanism == "laplace"
        else gaussian_scale(sensitivity, eps, delta)
    )
    return Noise(part, sensitivity, scale, eps, delta)


def release_count(
    count: int, *, mechanism: str, epsilon: float, delta: float | None = None
) -> Release:
    """A noisy count (sensitivity 1; discrete noise, an integer answer).

    Raises:
        InvalidInput: bad mechanism, ε or δ (see :func:`check_params`).
    """
    eps, d = check_params(mechanism, epsilon, delta)
    n = _noise("count", mechanism, 1.0, eps, d)
    value = _noisy(int(count), integer=True, size=None, mechanism=mechanism, scale=n.scale)
    return Release("count", int(value), mechanism, eps, d, (n,))


def _clamped_sum(values: Sequence[float], lo: float, hi: float) -> float:
    return math.fsum(min(max(float(v), lo), hi) for v in values)


def release_sum(
    values: Sequence[float],
    *,
    lower: float | None,
    upper: float | None,
    mechanism: str,
    epsilon: float,
    delta: float | None = None,
) -> Release:
    """A noisy sum of ``values`` clamped into [lower, upper] (sensitivity
    max(|lower|, |upper|)).

    Raises:
        InvalidInput: a missing or bad bound, bad mechanism, ε or δ.
    """
    eps, d = check_params(mechanism, epsilon, delta)
    lo, hi = check_bounds(lower, upper)
    n = _noise("sum", mechanism, max(abs(lo), abs(hi)), eps, d)
    exact = _clamped_sum(values, lo, hi)
    value = _noisy(exact, integer=False, size=None, mechanism=mechanism, scale=n.scale)
    return Release("sum", float(value), mechanism, eps, d, (n,), bounds=(lo, hi))


def release_mean(
    values: Sequence[float],
    *,
    lower: float | None,
    upper: float | None,
    mechanism: str,
    epsilon: float,
    delta: float | None = None,
) -> Release:
    """A noisy mean: a noisy clamped sum over a noisy count (each with ε/2 and δ/2),
    clamped into [lower, upper] (``lower`` when the noisy count is below 1).

    Raises:
        InvalidInput: a missing or bad bound, bad mechanism, ε or δ.
    """
    eps, d = check_params(mechanism, epsilon, delta)
    lo, hi = check_bounds(lower, upper)
    ns = _noise("sum", mechanism, max(abs(lo), abs(hi)), eps / 2, d / 2)
    nc = _noise("count", mechanism, 1.0, eps / 2, d / 2)
    s = _noisy(
        _clamped_sum(values, lo, hi), integer=False, size=None, mechanism=mechanism, scale=ns.scale
    )
    c = _noisy(len(values), integer=True, size=None, mechanism=mechanism, scale=nc.scale)
    mean = lo if c < 1 else min(max(float(s) / int(c), lo), hi)
    return Release("mean", mean, mechanism, eps, d, (ns, nc), bounds=(lo, hi))


def check_edges(edges: Sequence[Any]) -> tuple[float, ...]:
    """Histogram bin edges, checked: at least 2, finite, strictly increasing, at most 1000.

    Raises:
        InvalidInput: otherwise.
    """
    es = tuple(_finite(e, "edges") for e in edges)
    if not 2 <= len(es) <= 1001:
        raise InvalidInput("a histogram needs 2 to 1001 bin edges", "/edges")
    if any(b <= a for a, b in itertools.pairwise(es)):
        raise InvalidInput("histogram edges must increase strictly", "/edges")
    return es


def histogram_counts(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    """Counts per bin [e_i, e_{i+1}) (the last bin includes its upper edge); values
    outside [e_0, e_last] are left out.

    Examples:
        >>> histogram_counts([0, 1, 1.5, 2, 9], [0, 1, 2])
        [1, 3]
    """
    import bisect

    k = len(edges) - 1
    counts = [0] * k
    for v in values:
        x = float(v)
        if not edges[0] <= x <= edges[-1]:
            continue
        i = min(bisect.bisect_right(edges, x) - 1, k - 1)
        counts[i] += 1
    return counts


def release_histogram(
    values: Sequence[float],
    *,
    edges: Sequence[Any],
    mechanism: str,
    epsilon: float,
    delta: float | None = None,
) -> Release:
    """Noisy counts per bin of ``edges`` (the bin vector has sensitivity 1 in L1 and L2:
    one twin is in one bin at most).

    Raises:
        InvalidInput: bad edges, mechanism, ε or δ.
    """
    eps, d = check_params(mechanism, epsilon, delta)
    es = check_edges(edges)
    n = _noise("histogram", mechanism, 1.0, eps, d)
    counts = histogram_counts(values, es)
    noisy = _noisy(counts, integer=True, size=len(counts), mechanism=mechanism, scale=n.scale)
    return Release("histogram", [int(x) for x in noisy], mechanism, eps, d, (n,), edges=es)
