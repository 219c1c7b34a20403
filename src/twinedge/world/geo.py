"""Latitude/longitude to local metres (equirectangular projection about an origin).

Accurate to well under 0.1% over a city (a few km), which is all a scenario needs.
"""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_M = 6_371_008.8


def latlon_to_xy_m(
    lat: np.ndarray, lon: np.ndarray, origin_lat: float, origin_lon: float
) -> np.ndarray:
    """Return ``(n, 2)`` east/north offsets in metres of each point from the origin."""
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    x = np.radians(lon - origin_lon) * EARTH_RADIUS_M * np.cos(np.radians(origin_lat))
    y = np.radians(lat - origin_lat) * EARTH_RADIUS_M
    return np.column_stack([x, y])
