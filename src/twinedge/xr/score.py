"""The XR experience score on the XRMI scale (1-5) of the XR service-network article in
seed 002 (its Table 2): presentation, interaction and image sub-scores, combined with
weights for weak- and strong-interaction scenarios.

The article names the dimensions (presentation: stalls, corruption, black edges;
interaction: response delay, jitter, sync; image: bit rate, frame rate, resolution) and
the five levels, and says the scenarios weigh interaction differently, but gives no
formula. This module defines one (docs/xr.md has the rationale):

* every sub-score is a monotone piecewise-linear map of one KPI through anchor points
  (KPI value -> score), a sub-score with two KPIs the lower of the two maps;
* XRMI = min(weighted mean of the sub-scores, lowest essential sub-score + 0.5): the
  weighted mean lets the scenario weigh the dimensions; the cap makes an unusable
  essential dimension make the experience unusable (the level descriptions are keyed on
  stalls, so presentation is essential everywhere; in a strong-interaction scenario a
  game that answers late is unusable too, so interaction is essential there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: (KPI value, score) anchors; values between anchors are interpolated, beyond clamped
BAD_RATIO_ANCHORS = ((0.0, 5.0), (0.005, 4.0), (0.03, 3.0), (0.15, 2.0), (0.5, 1.0))
STALLS_PER_MIN_ANCHORS = ((0.0, 5.0), (1.0, 4.0), (6.0, 3.0), (30.0, 2.0), (120.0, 1.0))
DELAY_RATIO_ANCHORS = ((0.8, 5.0), (1.0, 4.0), (1.5, 3.0), (2.5, 2.0), (4.0, 1.0))
JITTER_RATIO_ANCHORS = ((0.1, 5.0), (0.25, 4.0), (0.5, 3.0), (1.0, 2.0), (2.0, 1.0))
WARP_RATIO_ANCHORS = ((0.0, 0.0), (0.05, 0.5), (0.2, 1.5), (0.5, 3.0), (1.0, 4.0))

#: (presentation, interaction, image) weights per scenario
WEIGHTS: dict[str, tuple[float, float, float]] = {
    "weak": (0.45, 0.15, 0.40),  # panoramic video, XR cinema: watching matters most
    "strong": (0.35, 0.45, 0.20),  # real-time XR games: response matters most
}
#: the sub-scores that cap the XRMI per scenario (presentation, interaction, image)
ESSENTIAL: dict[str, tuple[bool, bool, bool]] = {
    "weak": (True, False, False),
    "strong": (True, True, False),
}
#: how far above its lowest essential sub-score the XRMI may be
CAP_ABOVE_MIN = 0.5


def _map(x: np.ndarray | float, anchors: tuple[tuple[float, float], ...]) -> np.ndarray:
    xs, ys = zip(*anchors, strict=True)
    return np.interp(np.asarray(x, dtype=float), xs, ys)


@dataclass(frozen=True)
class Kpis:
    """The KPIs the score reads, per session (``(S,)`` arrays or scalars).

    Attributes:
        bad_ratio: late or lost frames / frames.
        stalls_per_min: stalls per minute of session.
        p99_delay_ms, jitter_ms: frame delay percentile and jitter, in ms.
        budget_ms: the motion-to-photon budget.
        warped_ratio: time-warped frames / frames.
        image_base: image quality of the stream when nothing is warped (5 for the
            profile's full resolution and bit rate; less for device rendering).
    """

    bad_ratio: np.ndarray | float
    stalls_per_min: np.ndarray | float
    p99_delay_ms: np.ndarray | float
    jitter_ms: np.ndarray | float
    budget_ms: np.ndarray | float
    warped_ratio: np.ndarray | float
    image_base: np.ndarray | float = 5.0


def sub_scores(k: Kpis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Presentation, interaction and image sub-scores, each in [1, 5].

    Examples:
        >>> p, i, q = sub_scores(Kpis(0.03, 0.0, 15.0, 1.0, 10.0, 0.05))
        >>> float(p), float(i), float(q)
        (3.0, 3.0, 4.5)
    """
    budget = np.asarray(k.budget_ms, dtype=float)
    pres = np.minimum(
        _map(k.bad_ratio, BAD_RATIO_ANCHORS), _map(k.stalls_per_min, STALLS_PER_MIN_ANCHORS)
    )
    inter = np.minimum(
        _map(np.asarray(k.p99_delay_ms) / budget, DELAY_RATIO_ANCHORS),
        _map(np.asarray(k.jitter_ms) / budget, JITTER_RATIO_ANCHORS),
    )
    image = np.clip(
        np.asarray(k.image_base, dtype=float) - _map(k.warped_ratio, WARP_RATIO_ANCHORS),
        1.0,
        5.0,
    )
    return pres, inter, image


def xrmi(k: Kpis, scenario: str = "strong") -> np.ndarray:
    """The XRMI score in [1, 5]: ``min(w . (P, I, Q), min(essential of P, I, Q) + 0.5)``.

    Raises:
        ValueError: ``scenario`` is not ``weak`` or ``strong``.

    Examples:
        >>> float(xrmi(Kpis(0.0, 0.0, 5.0, 0.2, 10.0, 0.0)))
        5.0
    """
    if scenario not in WEIGHTS:
        raise ValueError(f"scenario must be one of {sorted(WEIGHTS)}, got {scenario!r}")
    p, i, q = sub_scores(k)
    wp, wi, wq = WEIGHTS[scenario]
    mean = wp * p + wi * i + wq * q
    ep, ei, eq = ESSENTIAL[scenario]
    low = np.full(np.shape(mean), np.inf)
    for essential, sub in ((ep, p), (ei, i), (eq, q)):
        if essential:
            low = np.minimum(low, sub)
    return np.clip(np.minimum(mean, low + CAP_ABOVE_MIN), 1.0, 5.0)
