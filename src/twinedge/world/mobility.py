"""Mobility models, vectorised over the entities of a group.

Each model is a small class with ``step(xy_m, t_s, dt_s, rng)`` that moves the ``(n, 2)``
position array of its group in place. Every random draw uses the generator passed in.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from twinedge.errors import ScenarioError
from twinedge.scenario import schema
from twinedge.world.sumo import is_fcd, read_fcd


def draw(value: float | tuple[float, float], n: int, rng: np.random.Generator) -> np.ndarray:
    """A fixed value repeated, or ``n`` uniform draws from ``[min, max]``."""
    if isinstance(value, tuple):
        return rng.uniform(value[0], value[1], n)
    return np.full(n, float(value))


class Static:
    """Entities stay where they are."""

    def __init__(self, n: int, bounds_m: np.ndarray, xy_m: np.ndarray, rng: np.random.Generator):
        self.n = n

    def step(self, xy_m: np.ndarray, t_s: float, dt_s: float, rng: np.random.Generator) -> None:
        return None


class RandomWaypoint:
    """Random waypoint (Johnson & Maltz 1996): move at a uniform random speed to a uniform
    random point of the area, pause for a uniform random time, repeat. Movement left over
    within a step after reaching a waypoint is dropped.

    The distance to the waypoint is ``sqrt(dx*dx + dy*dy)``, not ``hypot`` (five times
    slower): the two differ by at most an ulp, so positions differ from those of earlier
    versions in the last bits (over 100 steps of the built-in city, every summary number
    is the same but the device energy, 2e-16 apart)."""

    def __init__(
        self,
        spec: schema.RandomWaypoint,
        n: int,
        bounds_m: np.ndarray,
        xy_m: np.ndarray,
        rng: np.random.Generator,
    ):
        self.spec, self.n, self.bounds = spec, n, bounds_m
        self.waypoint = self._points(n, rng)
        self.speed = draw(spec.speed_mps, n, rng)
        self.pause_left = np.zeros(n)

    def _points(self, k: int, rng: np.random.Generator) -> np.ndarray:
        lo, hi = self.bounds[:2], self.bounds[2:]
        return lo + rng.random((k, 2)) * (hi - lo)

    def step(self, xy_m: np.ndarray, t_s: float, dt_s: float, rng: np.random.Generator) -> None:
        self.pause_left -= dt_s
        moving = self.pause_left <= 0
        d = self.waypoint - xy_m
        dx, dy = d[:, 0], d[:, 1]
        dist = dx * dx
        dist += dy * dy
        np.sqrt(dist, out=dist)
        travel = self.speed * dt_s
        arrive = dist <= travel
        arrive &= moving
        go = moving > arrive  # moving and not arriving
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.divide(travel, dist, out=travel)  # the ones that go: dist > travel >= 0
        frac = np.where(go, frac, 0.0)
        d *= frac[:, None]
        xy_m += d
        at = np.flatnonzero(arrive)  # few: index them rather than mask every array
        k = at.size
        if k:
            xy_m[at] = self.waypoint[at]
            self.pause_left[at] = draw(self.spec.pause_s, k, rng)
            self.waypoint[at] = self._points(k, rng)
            self.speed[at] = draw(self.spec.speed_mps, k, rng)


class GaussMarkov:
    """Gauss–Markov mobility (Liang & Haas, INFOCOM 1999): speed and heading are AR(1)
    processes, ``s' = a s + (1-a) s_mean + sqrt(1-a^2) sigma N(0,1)``. Near the border
    the mean heading points back to the centre; positions are reflected at the border."""

    def __init__(
        self,
        spec: schema.GaussMarkov,
        n: int,
        bounds_m: np.ndarray,
        xy_m: np.ndarray,
        rng: np.random.Generator,
    ):
        self.spec, self.n, self.bounds = spec, n, bounds_m
        self.speed = np.full(n, spec.mean_speed_mps)
        self.heading = rng.uniform(0, 2 * np.pi, n)
        self.mean_heading = self.heading.copy()

    def step(self, xy_m: np.ndarray, t_s: float, dt_s: float, rng: np.random.Generator) -> None:
        a, s = self.spec.alpha, self.spec
        noise = np.sqrt(1 - a * a)
        lo, hi = self.bounds[:2], self.bounds[2:]
        margin = 0.1 * (hi - lo)
        near = np.any((xy_m < lo + margin) | (xy_m > hi - margin), axis=1)
        if near.any():
            centre = (lo + hi) / 2
            v = centre - xy_m[near]
            self.mean_heading[near] = np.arctan2(v[:, 1], v[:, 0])
        z = rng.standard_normal((2, self.n))
        self.speed = np.maximum(
            a * self.speed + (1 - a) * s.mean_speed_mps + noise * s.speed_sigma_mps * z[0], 0.0
        )
        self.heading = (
            a * self.heading + (1 - a) * self.mean_heading + noise * s.heading_sigma_rad * z[1]
        )
        xy_m[:, 0] += self.speed * np.cos(self.heading) * dt_s
        xy_m[:, 1] += self.speed * np.sin(self.heading) * dt_s
        # reflect at the border
        for axis in (0, 1):
            below = xy_m[:, axis] < lo[axis]
            above = xy_m[:, axis] > hi[axis]
            xy_m[below, axis] = 2 * lo[axis] - xy_m[below, axis]
            xy_m[above, axis] = 2 * hi[axis] - xy_m[above, axis]
            if below.any() or above.any():
                flip = below | above
                if axis == 0:
                    self.heading[flip] = np.pi - self.heading[flip]
                else:
                    self.heading[flip] = -self.heading[flip]
            np.clip(xy_m[:, axis], lo[axis], hi[axis], out=xy_m[:, axis])


DEFAULT_PATH_STEP_S = 10.0
"""Seconds between the points of a path file (no time column) unless the scenario says.

iFogSim2 replays its user path files one point per mobility event, the events
``1 + U{0, ..., 19}`` seconds apart (10.5 s on average, drawn afresh on every run); a
fixed step keeps a replay reproducible, and 10 s is that spacing rounded."""


def read_trace(
    path: Path, path_step_s: float = DEFAULT_PATH_STEP_S
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, bool]:
    """Read a trace: samples of the positions of entities over time.

    Three formats, told apart by the file:

    - a CSV trace, ``entity_id,t_s,x_m,y_m`` (or ``lat,lon``) rows, any number of
      entities;
    - a path file, a CSV of positions without ids or times (``Latitude,Longitude`` as in
      iFogSim2's user files, spaces after the commas allowed, or ``x_m,y_m``): one entity
      named after the file (its name without ``.csv``) at point ``k`` at ``k *
      path_step_s`` seconds;
    - SUMO floating car data (a file named ``*.xml`` or ``*.xml.gz``), read by
      :func:`twinedge.world.sumo.read_fcd`.

    Returns ``(ids, offsets, t_s, xy_or_latlon, is_latlon)`` sorted by entity then time:
    the samples of ``ids[k]`` are rows ``offsets[k]:offsets[k + 1]``.

    Raises:
        ScenarioError: the file cannot be read, has no samples, or a row is not numbers
            (the line is named).
    """
    if is_fcd(path):
        s = read_fcd(path)
        return _grouped(s.names, s.code, np.column_stack([s.t_s, s.a, s.b]), s.is_latlon)
    try:
        ids, rows, is_ll = _trace_rows(path, path_step_s)
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise ScenarioError([f"{path}: cannot read the CSV file: {csv_problem(exc)}"]) from None
    if not rows:
        raise ScenarioError([f"{path}: no samples; expected at least one row after the header"])
    uniq, inv = np.unique(np.array(ids), return_inverse=True)
    return _grouped([str(u) for u in uniq], inv, np.array(rows, dtype=float), is_ll)


def _grouped(
    names: list[str], code: np.ndarray, data: np.ndarray, is_ll: bool
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, bool]:
    """Samples ``data`` (rows ``t, a, b``) of entity ``names[code]``, sorted by entity
    name then time (stable: samples of one time keep their order)."""
    rank = np.argsort(np.array(names, dtype=object), kind="stable")
    where = np.empty_like(rank)
    where[rank] = np.arange(rank.size)
    inv = where[np.asarray(code)]
    order = np.lexsort((data[:, 0], inv))
    inv, data = inv[order], data[order]
    offsets = np.searchsorted(inv, np.arange(len(names) + 1))
    return [names[i] for i in rank], offsets, data[:, 0], data[:, 1:3], is_ll


def csv_problem(exc: Exception) -> str:
    """What went wrong reading a CSV file, in a few words."""
    if isinstance(exc, UnicodeDecodeError):
        return f"byte {exc.start} is not UTF-8; expected a UTF-8 text file"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"{exc}; expected comma-separated values"


def _trace_rows(path: Path, path_step_s: float) -> tuple[list[str], list[list[float]], bool]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, skipinitialspace=True)
        header = [h.strip().lower() for h in next(reader, [])]
        need_xy = ["entity_id", "t_s", "x_m", "y_m"]
        need_ll = ["entity_id", "t_s", "lat", "lon"]
        lat = next((h for h in ("lat", "latitude") if h in header), None)
        lon = next((h for h in ("lon", "longitude") if h in header), None)
        path_file = False
        if all(h in header for h in need_xy):
            cols, is_ll = [header.index(h) for h in need_xy], False
        elif all(h in header for h in need_ll):
            cols, is_ll = [header.index(h) for h in need_ll], True
        elif "t_s" not in header and lat and lon:
            cols, is_ll, path_file = [-1, -1, header.index(lat), header.index(lon)], True, True
        elif "t_s" not in header and "x_m" in header and "y_m" in header:
            cols, is_ll, path_file = [-1, -1, header.index("x_m"), header.index("y_m")], False, True
        else:
            raise ScenarioError(
                [
                    f"{path}: header {header}: expected columns entity_id,t_s,x_m,y_m or "
                    "entity_id,t_s,lat,lon (a trace), or Latitude,Longitude or x_m,y_m (a path)"
                ]
            )
        name = path.name.removesuffix(".csv").removesuffix(".CSV")
        ids: list[str] = []
        rows: list[list[float]] = []
        for line_no, row in enumerate(reader, start=2):
            if not row or not any(c.strip() for c in row):
                continue
            try:
                if path_file:
                    ids.append(name)
                    vals = [len(rows) * path_step_s, float(row[cols[2]]), float(row[cols[3]])]
                else:
                    ids.append(row[cols[0]].strip())
                    vals = [float(row[c]) for c in cols[1:]]
                if not all(math.isfinite(v) for v in vals):
                    raise ValueError("not finite")
                rows.append(vals)
            except (ValueError, IndexError):
                what = "the position" if path_file else "t_s and the position"
                raise ScenarioError(
                    [f"{path}: line {line_no}: got {row!r}; expected numbers for {what}"]
                ) from None
    return ids, rows, is_ll


class TraceReplay:
    """Replay recorded positions with linear interpolation between samples."""

    def __init__(
        self,
        spec: schema.Trace,
        ids: list[str],
        offsets: np.ndarray,
        t_s: np.ndarray,
        xy_m: np.ndarray,
    ):
        self.spec, self.ids, self.n = spec, ids, len(ids)
        self.offsets, self.t, self.xy = offsets, t_s, xy_m
        self.t0 = t_s[offsets[:-1]]
        self.t1 = t_s[offsets[1:] - 1]
        ent = np.repeat(np.arange(self.n), np.diff(offsets))
        self.span = float(t_s.max() - t_s.min()) + 1.0
        self.key = ent * self.span + (t_s - t_s.min())
        self.tmin = float(t_s.min())

    def positions(self, t_s: float) -> np.ndarray:
        t = np.full(self.n, float(t_s))
        if self.spec.loop:
            period = self.t1 - self.t0
            ok = period > 0
            t[ok] = self.t0[ok] + np.mod(t[ok] - self.t0[ok], period[ok])
        t = np.clip(t, self.t0, self.t1)
        q = np.arange(self.n) * self.span + (t - self.tmin)
        hi = np.searchsorted(self.key, q, side="left")
        hi = np.clip(hi, self.offsets[:-1], self.offsets[1:] - 1)
        lo = np.maximum(hi - 1, self.offsets[:-1])
        tl, th = self.t[lo], self.t[hi]
        w = np.divide(t - tl, th - tl, out=np.zeros(self.n), where=th > tl)
        return self.xy[lo] + (self.xy[hi] - self.xy[lo]) * w[:, None]

    def step(self, xy_m: np.ndarray, t_s: float, dt_s: float, rng: np.random.Generator) -> None:
        xy_m[:] = self.positions(t_s + dt_s)


def make_mobility(
    spec, n: int, bounds_m: np.ndarray, xy_m: np.ndarray, rng: np.random.Generator, trace=None
):
    if isinstance(spec, schema.Static):
        return Static(n, bounds_m, xy_m, rng)
    if isinstance(spec, schema.RandomWaypoint):
        return RandomWaypoint(spec, n, bounds_m, xy_m, rng)
    if isinstance(spec, schema.GaussMarkov):
        return GaussMarkov(spec, n, bounds_m, xy_m, rng)
    if isinstance(spec, schema.Trace):
        return TraceReplay(spec, *trace)
    raise ScenarioError([f"unknown mobility model {spec!r}"])
