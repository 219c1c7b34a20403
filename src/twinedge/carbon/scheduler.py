"""Carbon-aware scheduling of delay-tolerant jobs: shifting in time and in space.

A job needs ``power_kw`` for ``duration_min`` (IT energy ``E = power_kw * duration_min / 60``
kWh), may start at its ``release`` and must finish by its ``deadline``. Time is cut into
slots of ``step_min`` minutes on one grid shared by all regions (a :class:`Grid`); a job
occupies ``n = ceil(duration_min / step_min)`` slots, each drawing ``E / n`` kWh. In
region ``r`` with PUE ``p_r`` and intensity ``c_r[k]`` (gCO2/kWh) in slot ``k`` a job on
slots ``K`` emits::

    G = p_r * (E / n) * sum_{k in K} c_r[k]                      grams CO2
      + D * e_tr * c_o[release slot]     if r is not the origin o   (data transfer)

with ``D`` the job's input data in GB and ``e_tr`` the network's transfer energy in
kWh/GB. Policies (names accepted by :func:`schedule`):

* ``baseline``: run at release in the origin region (carbon-agnostic).
* ``shift``: the contiguous block of ``n`` slots inside ``[release, deadline)`` with the
  lowest forecast intensity sum, found with a sliding sum in O(window) time.
* ``interrupt``: jobs marked interruptible run in the ``n`` slots of the window with the
  lowest forecast intensity (ties to the earlier slot); other jobs as ``shift``.
* ``spatial``, ``spatial-shift``, ``spatial-interrupt``: the same in every region the
  job may move to (latency from its origin within ``max_latency_ms``), then the region
  with the lowest forecast emissions including transfer; the origin is always a candidate.

Decisions use a forecast of the intensity (the actual series when none is given: a
perfect forecast, as in the paper's baseline results); emissions are always accounted
with the actual series. With a perfect forecast each policy is optimal in its class, so
``interrupt <= shift <= baseline`` and every ``spatial-X <= X`` job by job.

References:
    P. Wiesner et al. "Let's Wait Awhile: How Temporal Workload Shifting Can Reduce
    Carbon Emissions in the Cloud." Middleware 2021, doi:10.1145/3464298.3493399.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from twinedge.carbon.series import Region, scenario_error
from twinedge.errors import InfeasibleError, PolicyError

POLICIES = ("baseline", "shift", "interrupt", "spatial", "spatial-shift", "spatial-interrupt")


@dataclass(frozen=True)
class Job:
    """A delay-tolerant job.

    Parameters:
        job_id: unique name.
        release: earliest start.
        duration_min: run time in minutes (> 0).
        deadline: latest finish.
        power_kw: IT power drawn while running.
        interruptible: may pause and resume between slots.
        origin: the region it was submitted to (``None``: the grid's first region).
        data_gb: input data to move when it runs elsewhere.
        max_latency_ms: the farthest (in one-way latency from the origin) it may move.

    Raises:
        ScenarioError: a non-positive duration, negative power or data, or a deadline
            before ``release + duration``.
    """

    job_id: str
    release: datetime
    duration_min: float
    deadline: datetime
    power_kw: float = 1.0
    interruptible: bool = False
    origin: str | None = None
    data_gb: float = 0.0
    max_latency_ms: float = math.inf

    def __post_init__(self) -> None:
        if not (math.isfinite(self.duration_min) and self.duration_min > 0):
            raise scenario_error(
                f"job {self.job_id}: duration_min: got {self.duration_min!r}; expected a finite value > 0"
            )
        if not (math.isfinite(self.power_kw) and self.power_kw >= 0):
            raise scenario_error(
                f"job {self.job_id}: power_kw: got {self.power_kw!r}; expected a finite value >= 0"
            )
        if not (math.isfinite(self.data_gb) and self.data_gb >= 0):
            raise scenario_error(
                f"job {self.job_id}: data_gb: got {self.data_gb!r}; expected a finite value >= 0"
            )
        if self.max_latency_ms < 0 or math.isnan(self.max_latency_ms):
            raise scenario_error(
                f"job {self.job_id}: max_latency_ms: got {self.max_latency_ms!r}; expected >= 0"
            )
        if self.deadline < self.release + timedelta(minutes=self.duration_min):
            raise scenario_error(
                f"job {self.job_id}: deadline {self.deadline} is before release {self.release} "
                f"+ duration {self.duration_min} min; expected a window that fits the job"
            )

    @property
    def energy_kwh(self) -> float:
        """IT energy in kWh (``power_kw * duration_min / 60``)."""
        return self.power_kw * self.duration_min / 60.0

    @classmethod
    def from_energy(
        cls,
        job_id: str,
        release: datetime,
        duration_min: float,
        deadline: datetime,
        energy_kwh: float,
        **options: Any,
    ) -> Job:
        """A job that needs ``energy_kwh`` over ``duration_min`` (constant power).

        Raises:
            ScenarioError: a negative or non-finite energy, or what :class:`Job` refuses.

        Examples:
            >>> t = datetime(2020, 1, 1)
            >>> Job.from_energy("j", t, 90, t + timedelta(hours=2), energy_kwh=3.0).power_kw
            2.0
        """
        if not (math.isfinite(energy_kwh) and energy_kwh >= 0):
            raise scenario_error(
                f"job {job_id}: energy_kwh: got {energy_kwh!r}; expected a finite value >= 0"
            )
        if not (math.isfinite(duration_min) and duration_min > 0):
            raise scenario_error(
                f"job {job_id}: duration_min: got {duration_min!r}; expected a finite value > 0"
            )
        power_kw = energy_kwh * 60.0 / duration_min
        return cls(job_id, release, duration_min, deadline, power_kw=power_kw, **options)


@dataclass(frozen=True)
class Network:
    """What moving a job between regions costs.

    Parameters:
        latency_ms: one-way latency between region pairs (either order; a region to
            itself is 0; a missing pair is unreachable).
        transfer_kwh_per_gb: network energy per GB of data moved.

    Examples:
        >>> Network({("DE", "FR"): 12.0}).latency("FR", "DE")
        12.0
    """

    latency_ms: Mapping[tuple[str, str], float] = field(default_factory=dict)
    transfer_kwh_per_gb: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.transfer_kwh_per_gb) and self.transfer_kwh_per_gb >= 0):
            raise scenario_error(
                f"network: transfer_kwh_per_gb: got {self.transfer_kwh_per_gb!r}; expected a finite value >= 0"
            )
        for pair, ms in self.latency_ms.items():
            if not ms >= 0:
                raise scenario_error(f"network: latency_ms{list(pair)}: got {ms!r}; expected >= 0")

    def latency(self, a: str, b: str) -> float:
        """One-way latency in ms between ``a`` and ``b`` (``inf`` when not connected)."""
        if a == b:
            return 0.0
        ms = self.latency_ms.get((a, b), self.latency_ms.get((b, a)))
        return math.inf if ms is None else float(ms)


@dataclass(frozen=True)
class Grid:
    """Regions sampled on one slot grid: ``values[r][k]`` is region ``r``'s intensity at
    ``start + k * step_min`` (step-hold from its series).

    Build one with :meth:`Grid.build`; :func:`schedule` then converts job times to slots.
    """

    regions: tuple[Region, ...]
    start: datetime
    step_min: float
    values: Mapping[str, Sequence[float]]

    @property
    def n_slots(self) -> int:
        """Number of slots."""
        return len(next(iter(self.values.values())))

    def region(self, name: str) -> Region:
        """The region called ``name``.

        Raises:
            ScenarioError: no such region.
        """
        for r in self.regions:
            if r.name == name:
                return r
        names = ", ".join(r.name for r in self.regions)
        raise scenario_error(f"region: got {name!r}; expected one of {names}")

    def slot_of(self, t: datetime) -> float:
        """``t`` in slots since ``start`` (fractional)."""
        return (t - self.start) / timedelta(minutes=self.step_min)

    @classmethod
    def build(
        cls,
        regions: Sequence[Region],
        start: datetime | None = None,
        step_min: float = 30.0,
        end: datetime | None = None,
    ) -> Grid:
        """Sample every region on ``start, start + step_min, ... <= end``.

        Parameters:
            regions: at least one, with distinct names.
            start: first slot (default: the latest series start).
            step_min: slot length in minutes.
            end: last slot instant (default: the earliest series end).

        Raises:
            ScenarioError: no regions, duplicate names, ``step_min <= 0``, or a range
                outside some series.
        """
        if not regions:
            raise scenario_error("regions: got none; expected at least one region")
        names = [r.name for r in regions]
        if len(set(names)) != len(names):
            raise scenario_error(f"regions: duplicate names in {names}; expected distinct names")
        if not (math.isfinite(step_min) and step_min > 0):
            raise scenario_error(f"step_min: got {step_min!r}; expected a finite value > 0")
        t0 = start if start is not None else max(r.series.start for r in regions)
        t1 = end if end is not None else min(r.series.end for r in regions)
        if t1 < t0:
            raise scenario_error(f"grid: end {t1} is before start {t0}; expected end >= start")
        n = int((t1 - t0) / timedelta(minutes=step_min)) + 1
        values = {r.name: r.series.on_grid(t0, step_min, n) for r in regions}
        return cls(tuple(regions), t0, float(step_min), values)


@dataclass(frozen=True)
class Placement:
    """Where and when one job runs, and what it cost.

    ``slots`` are grid slot indices (increasing); ``it_energy_kwh`` is the job's own
    energy, ``facility_energy_kwh`` that times the region's PUE, ``transfer_energy_kwh``
    the network energy of moving its data, ``emissions_g`` the grams of CO2 of both.
    """

    job_id: str
    origin: str
    region: str
    slots: tuple[int, ...]
    start: datetime
    end: datetime
    it_energy_kwh: float
    facility_energy_kwh: float
    transfer_energy_kwh: float
    emissions_g: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "job_id": self.job_id,
            "origin": self.origin,
            "region": self.region,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "slots": len(self.slots),
            "it_energy_kwh": self.it_energy_kwh,
            "facility_energy_kwh": self.facility_energy_kwh,
            "transfer_energy_kwh": self.transfer_energy_kwh,
            "emissions_g": self.emissions_g,
        }


@dataclass(frozen=True)
class Schedule:
    """The placements of all jobs under one policy, with totals."""

    policy: str
    placements: tuple[Placement, ...]

    @property
    def emissions_g(self) -> float:
        """Total grams of CO2."""
        return math.fsum(p.emissions_g for p in self.placements)

    @property
    def it_energy_kwh(self) -> float:
        """Total IT energy in kWh."""
        return math.fsum(p.it_energy_kwh for p in self.placements)

    @property
    def facility_energy_kwh(self) -> float:
        """Total IT energy times PUE in kWh."""
        return math.fsum(p.facility_energy_kwh for p in self.placements)

    @property
    def transfer_energy_kwh(self) -> float:
        """Total data-transfer energy in kWh."""
        return math.fsum(p.transfer_energy_kwh for p in self.placements)

    def summary(self) -> dict[str, Any]:
        """Totals as a JSON-ready dict."""
        energy = self.facility_energy_kwh + self.transfer_energy_kwh
        moved = sum(1 for p in self.placements if p.region != p.origin)
        return {
            "policy": self.policy,
            "jobs": len(self.placements),
            "emissions_g": self.emissions_g,
            "it_energy_kwh": self.it_energy_kwh,
            "facility_energy_kwh": self.facility_energy_kwh,
            "transfer_energy_kwh": self.transfer_energy_kwh,
            "energy_kwh": energy,
            "mean_intensity_g_per_kwh": self.emissions_g / energy if energy > 0 else 0.0,
            "regions": sorted({p.region for p in self.placements}),
            "moved_jobs": moved,
        }


def best_block(values: Sequence[float], lo: int, hi: int, n: int) -> int:
    """The start ``s`` in ``[lo, hi - n]`` minimising ``sum(values[s:s + n])`` (the first
    such start on ties), with a sliding sum: O(hi - lo).

    Raises:
        InfeasibleError: the window ``[lo, hi)`` is shorter than ``n``.

    Examples:
        >>> best_block([5, 1, 2, 9, 0, 0], 0, 6, 2)
        4
        >>> best_block([5, 1, 2, 9, 0, 0], 0, 4, 2)
        1
    """
    if n < 1 or hi - lo < n:
        raise InfeasibleError(f"window [{lo}, {hi}) holds {hi - lo} slots; the job needs {n}")
    window = math.fsum(values[lo : lo + n])
    best, best_sum = lo, window
    for s in range(lo + 1, hi - n + 1):
        window += values[s + n - 1] - values[s - 1]
        if window < best_sum:
            best, best_sum = s, window
    return best


def lowest_slots(values: Sequence[float], lo: int, hi: int, n: int) -> tuple[int, ...]:
    """The ``n`` slots of ``[lo, hi)`` with the lowest values (earlier first on ties), in
    time order.

    Raises:
        InfeasibleError: the window holds fewer than ``n`` slots.

    Examples:
        >>> lowest_slots([5, 1, 2, 9, 0, 0], 0, 4, 2)
        (1, 2)
    """
    if n < 1 or hi - lo < n:
        raise InfeasibleError(f"window [{lo}, {hi}) holds {hi - lo} slots; the job needs {n}")
    picked = sorted(range(lo, hi), key=lambda k: (values[k], k))[:n]
    return tuple(sorted(picked))


def _window(job: Job, grid: Grid) -> tuple[int, int, int]:
    """(first slot, end slot exclusive, slots needed) of ``job`` on ``grid``."""
    n = math.ceil(job.duration_min / grid.step_min - 1e-9)
    lo = max(0, math.ceil(grid.slot_of(job.release) - 1e-9))
    hi = min(grid.n_slots, math.floor(grid.slot_of(job.deadline) + 1e-9))
    if hi - lo < n:
        raise InfeasibleError(
            f"job {job.job_id}: its window {job.release} .. {job.deadline} holds {max(hi - lo, 0)} "
            f"slots of {grid.step_min} min inside the grid {grid.start} + {grid.n_slots} slots; it needs {n}"
        )
    return lo, hi, n


def _reachable(latency_ms: float, bound_ms: float) -> bool:
    """A region is reachable over a link (finite latency) within the job's bound."""
    return math.isfinite(latency_ms) and latency_ms <= bound_ms


def _plan(
    values: Sequence[float], lo: int, hi: int, n: int, mode: str, interruptible: bool
) -> tuple[int, ...]:
    if mode == "baseline":
        return tuple(range(lo, lo + n))
    if mode == "interrupt" and interruptible:
        return lowest_slots(values, lo, hi, n)
    s = best_block(values, lo, hi, n)
    return tuple(range(s, s + n))


def _cost(
    job: Job,
    region: Region,
    origin: str,
    values: Sequence[float],
    origin_values: Sequence[float],
    slots: tuple[int, ...],
    lo: int,
    network: Network,
) -> tuple[float, float, float]:
    """(facility kWh, transfer kWh, grams) of ``job`` on ``slots`` of ``region``."""
    per_slot_kwh = job.energy_kwh / len(slots)
    facility = job.energy_kwh * region.pue
    grams = region.pue * per_slot_kwh * math.fsum(values[k] for k in slots)
    transfer = 0.0
    if region.name != origin:
        transfer = job.data_gb * network.transfer_kwh_per_gb
        grams += transfer * origin_values[lo]
    return facility, transfer, grams


def schedule(
    jobs: Sequence[Job],
    grid: Grid,
    policy: str = "shift",
    *,
    forecast: Mapping[str, Sequence[float]] | None = None,
    network: Network | None = None,
) -> Schedule:
    """Place every job in time (and, for ``spatial*`` policies, in space).

    Parameters:
        jobs: the jobs; their windows must fit inside the grid.
        grid: the regions sampled on the slot grid (:meth:`Grid.build`).
        policy: one of :data:`POLICIES`.
        forecast: per region, the intensities the decisions see (one per slot); the
            actual ones (a perfect forecast) for a region not given.
        network: latencies and transfer energy for spatial policies (default: no links,
            so jobs stay at their origin).

    Returns:
        A :class:`Schedule` with one :class:`Placement` per job, in job order; emissions
        are accounted with the actual intensities.

    Raises:
        PolicyError: an unknown policy.
        ScenarioError: a job names an unknown origin, or a forecast has the wrong length.
        InfeasibleError: a job's window does not fit on the grid.

    Examples:
        >>> from twinedge.carbon.series import series_from_values
        >>> t0 = datetime(2020, 1, 1)
        >>> g = Grid.build([Region("A", series_from_values([4, 3, 1, 2], t0, 60))], step_min=60)
        >>> job = Job("j", t0, 60, t0 + timedelta(hours=3))
        >>> schedule([job], g, "baseline").emissions_g, schedule([job], g, "shift").emissions_g
        (4.0, 1.0)
    """
    if policy not in POLICIES:
        raise PolicyError(f"carbon policy: got {policy!r}; expected one of {', '.join(POLICIES)}")
    net = network if network is not None else Network()
    seen = forecast if forecast is not None else {}
    for name, f in seen.items():
        grid.region(name)
        if len(f) != grid.n_slots:
            raise scenario_error(
                f"forecast {name}: got {len(f)} values; expected one per slot ({grid.n_slots})"
            )
    spatial = policy.startswith("spatial")
    mode = policy.removeprefix("spatial").removeprefix("-") or "baseline"
    step = timedelta(minutes=grid.step_min)
    first = grid.regions[0].name
    placements: list[Placement] = []
    for job in jobs:
        origin = job.origin if job.origin is not None else first
        grid.region(origin)
        lo, hi, n = _window(job, grid)
        candidates = [origin]
        if spatial:
            candidates += [
                r.name
                for r in grid.regions
                if r.name != origin and _reachable(net.latency(origin, r.name), job.max_latency_ms)
            ]
        best: tuple[float, str, tuple[int, ...]] | None = None
        for name in candidates:
            region = grid.region(name)
            f = seen.get(name, grid.values[name])
            slots = _plan(f, lo, hi, n, mode, job.interruptible)
            _, _, predicted = _cost(
                job, region, origin, f, seen.get(origin, grid.values[origin]), slots, lo, net
            )
            if best is None or predicted < best[0]:
                best = (predicted, name, slots)
        assert best is not None
        _, name, slots = best
        region = grid.region(name)
        facility, transfer, grams = _cost(
            job, region, origin, grid.values[name], grid.values[origin], slots, lo, net
        )
        placements.append(
            Placement(
                job.job_id,
                origin,
                name,
                slots,
                grid.start + slots[0] * step,
                grid.start + (slots[-1] + 1) * step,
                job.energy_kwh,
                facility,
                transfer,
                grams,
            )
        )
    return Schedule(policy, tuple(placements))


def noisy_forecast(values: Sequence[float], error: float, rng: Any) -> list[float]:
    """``values`` plus Gaussian noise of standard deviation ``error * mean(values)`` (the
    paper's model of forecast error), drawn from the NumPy ``Generator`` ``rng``.

    Raises:
        ScenarioError: a negative or non-finite ``error``.

    Examples:
        >>> import numpy as np
        >>> noisy_forecast([1.0, 1.0], 0.0, np.random.default_rng(0))
        [1.0, 1.0]
    """
    if not (math.isfinite(error) and error >= 0):
        raise scenario_error(f"forecast error: got {error!r}; expected a finite fraction >= 0")
    mean = math.fsum(values) / len(values)
    noise = rng.normal(0.0, error * mean, size=len(values))
    return [v + float(e) for v, e in zip(values, noise, strict=True)]
