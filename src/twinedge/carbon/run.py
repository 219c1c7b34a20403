"""Carbon inside a run: the grams of CO2 of the energy the engine computes, and the
carbon-aware scheduling of delay-tolerant jobs released during the run.

Every step ``k`` (the interval ``[k * step_s, (k + 1) * step_s)`` after the scenario's
``carbon.start``) the engine hands over each host's server energy ``E_h`` (J) and the
devices' radio energy ``E_dev`` (J); with ``c_r(t)`` the intensity (gCO2/kWh) in force
in region ``r`` at the step's start ``t`` (step-hold), ``p_h`` the host's PUE and
``r(h)`` its region::

    G_server = sum_h E_h / 3.6e6 * p_h * c_{r(h)}(t)      grams CO2
    G_device = E_dev / 3.6e6 * c_{device region}(t)       (no facility overhead)

so 1 kWh (3.6 MJ) at 300 g/kWh in a data centre of PUE 1.5 is 450 g. The jobs of
``carbon.jobs`` that are released in step ``k`` are placed then by
:func:`twinedge.carbon.scheduler.schedule` under ``carbon.policy`` (in time within their
window and, for ``spatial*`` policies, in space), and also under ``baseline`` (at release,
at their origin) to report what the policy saved. The latency between two regions is the
lowest host-to-host backbone latency between their hosts (a region without hosts is
reachable only as a job's origin).

A job is accounted whole when it is released, also when its window ends after the run;
a job whose release falls after the run's end is not released (``carbon_jobs`` counts
those that were).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from twinedge.carbon.profiles import PROFILES_G_PER_KWH
from twinedge.carbon.scheduler import Grid, Job, Network, noisy_forecast, schedule
from twinedge.carbon.series import CarbonSeries, Region, load_carbon_csv, series_from_values
from twinedge.errors import InfeasibleError, ScenarioError
from twinedge.scenario.schema import TIERS, Carbon, CarbonRegion

if TYPE_CHECKING:
    from twinedge.world import World

__all__ = ["CARBON_KEYS", "CarbonRun", "grams", "region_series"]

J_PER_KWH = 3.6e6
#: Most samples a region's series may be expanded to (a profile or values repeated).
MAX_SAMPLES = 5_000_000

#: The summary keys a run with a ``carbon`` section adds (in the order of the tables).
CARBON_KEYS = (
    "carbon_server_g",
    "carbon_server_facility_j",
    "carbon_server_g_per_kwh",
    "carbon_device_g",
    "carbon_jobs",
    "carbon_jobs_energy_kwh",
    "carbon_jobs_g",
    "carbon_jobs_baseline_g",
    "carbon_jobs_saving_ratio",
    "carbon_jobs_moved",
    "carbon_total_g",
)


def grams(energy_j: Any, intensity_g_per_kwh: Any, pue: Any = 1.0) -> Any:
    """Grams of CO2 of ``energy_j`` joules of IT energy drawn at ``intensity_g_per_kwh``
    in a facility of PUE ``pue``: ``energy_j / 3.6e6 * pue * intensity`` (element-wise on
    arrays).

    Examples:
        >>> grams(3.6e6, 300.0, 1.5)   # 1 kWh at 300 g/kWh, PUE 1.5
        450.0
    """
    return energy_j / J_PER_KWH * pue * intensity_g_per_kwh


def region_series(spec: CarbonRegion, start: datetime, end: datetime, where: str) -> CarbonSeries:
    """The intensity series of one region of a ``carbon:`` section, covering
    ``start .. end``: the CSV file as it is, or the profile or values repeated.

    Raises:
        ScenarioError: the file does not cover ``start .. end``, it is malformed, or a
            repeated series would need more than :data:`MAX_SAMPLES` samples.
        InputError: the file cannot be read.

    Examples:
        >>> spec = CarbonRegion(name="X", values_g_per_kwh=[100, 200], step_min=30)
        >>> s = region_series(spec, datetime(2020, 1, 1), datetime(2020, 1, 1, 1), "r")
        >>> s.values_g_per_kwh
        (100.0, 200.0, 100.0)
    """
    if spec.csv is not None:
        s = load_carbon_csv(spec.csv, spec.name)
        if s.start > start or s.end < end:
            raise ScenarioError(
                [
                    f"{where}.csv: the series covers {s.start} .. {s.end}; the run and its "
                    f"jobs need {start} .. {end} (set carbon.start inside the series)"
                ]
            )
        return s
    if spec.profile is not None:
        values: tuple[float, ...] | list[float] = PROFILES_G_PER_KWH[spec.profile]
        t0 = start.replace(minute=0, second=0, microsecond=0)
        step_min, offset = 60.0, t0.hour
    else:
        assert spec.values_g_per_kwh is not None  # the schema gives exactly one source
        values, t0, step_min, offset = spec.values_g_per_kwh, start, spec.step_min, 0
    n = math.ceil((end - t0) / timedelta(minutes=step_min)) + 1  # a sample at or after end
    if n > MAX_SAMPLES:
        raise ScenarioError(
            [
                f"{where}: {n:,} samples of {step_min} min to cover {start} .. {end}; "
                f"at most {MAX_SAMPLES:,} (use a longer step_min)"
            ]
        )
    seq = [float(values[(offset + k) % len(values)]) for k in range(n)]
    return series_from_values(seq, t0, step_min, spec.name)


def _at_offsets(series: CarbonSeries, start: datetime, offsets_s: np.ndarray) -> np.ndarray:
    """The intensity in force at ``start + offsets_s`` (step-hold), vectorised."""
    secs = np.array([(t - start).total_seconds() for t in series.times])
    idx = np.searchsorted(secs, offsets_s, side="right") - 1
    return np.asarray(series.values_g_per_kwh)[idx]


class CarbonRun:
    """The ``carbon:`` section over one run: :meth:`record` once per step, then
    :meth:`summary` (the :data:`CARBON_KEYS`).

    Parameters:
        spec: the scenario's ``carbon`` section.
        world: the run's world (hosts, tiers, backbone latencies).
        step_s, steps: the run's clock.
        rng: the jobs' release draws and the forecast noise.

    Raises:
        ScenarioError: a node of ``node_regions`` is not a host, or a series does not cover the run and the jobs' windows.
        InfeasibleError: a job's window holds fewer scheduler slots than it needs.
        InputError: a series file cannot be read.

    Examples:
        >>> from twinedge.scenario import load_scenario
        >>> from twinedge.world import build_world
        >>> world = build_world(load_scenario("city-small"), np.random.default_rng(0))
        >>> run = CarbonRun(Carbon(), world, 1.0, 10, np.random.default_rng(0))
        >>> run.record(0, np.full(world.n_hosts, 3.6e6 / world.n_hosts), 0.0)
        >>> round(run.summary()["carbon_server_g"], 1)   # 1 kWh at DE's 0:00 mean, PUE 1
        308.7
    """

    def __init__(
        self, spec: Carbon, world: World, step_s: float, steps: int, rng: np.random.Generator
    ):
        self.spec, self.step_s = spec, step_s
        names = [r.name for r in spec.regions]
        host_ids = list(world.host_ids)
        unknown = [n for n in spec.node_regions if n not in host_ids]
        if unknown:
            raise ScenarioError(
                [
                    f"carbon.node_regions: got node {unknown[0]!r}; expected a host id "
                    f"(edge, region or cloud node), e.g. {', '.join(host_ids[:5])}"
                ]
            )
        tiers = [TIERS[t] for t in world.host_tier]
        region_of = [
            spec.node_regions.get(h, spec.tier_regions.get(t, names[0]))
            for h, t in zip(host_ids, tiers, strict=True)
        ]
        self.host_region = np.array([names.index(r) for r in region_of], dtype=np.int64)
        region_pue = np.array([r.pue for r in spec.regions])
        self.host_pue = np.array(
            [
                spec.tier_pue.get(t, region_pue[i])
                for t, i in zip(tiers, self.host_region, strict=True)
            ]
        )
        self.device_region = names.index(spec.device_region or names[0])
        run_s = steps * step_s
        self.jobs, by_step = self._jobs(spec, rng, step_s, steps)
        end = spec.start + timedelta(seconds=run_s)
        slot = timedelta(minutes=spec.slot_min)
        if self.jobs:
            last = max(j.deadline for j in self.jobs)
            end = max(end, spec.start + math.ceil((last - spec.start) / slot) * slot)
        series = [
            region_series(r, spec.start, end, f"carbon.regions[{i}]")
            for i, r in enumerate(spec.regions)
        ]
        offsets = np.arange(steps, dtype=np.float64) * step_s
        self.step_g_per_kwh = np.stack([_at_offsets(s, spec.start, offsets) for s in series])
        self.grid: Grid | None = None
        self.network = Network()
        self.forecast: dict[str, list[float]] | None = None
        self._by_step = by_step
        if self.jobs:
            regions = [Region(r.name, s, r.pue) for r, s in zip(spec.regions, series, strict=True)]
            self.grid = Grid.build(regions, start=spec.start, step_min=spec.slot_min, end=end)
            self.network = Network(
                _region_latency_ms(world, self.host_region, names), spec.transfer_kwh_per_gb
            )
            if spec.forecast_error > 0:
                self.forecast = {
                    n: noisy_forecast(self.grid.values[n], spec.forecast_error, rng) for n in names
                }
            try:  # every window must fit: fail before the run, not in its middle
                schedule(self.jobs, self.grid, "baseline", network=self.network)
            except InfeasibleError as exc:
                raise InfeasibleError(f"carbon.jobs: {exc}") from None
        self.server_g = self.facility_j = self.device_g = 0.0
        self.jobs_g = self.jobs_base_g = self.jobs_kwh = 0.0
        self.released = self.moved = 0

    @staticmethod
    def _jobs(
        spec: Carbon, rng: np.random.Generator, step_s: float, steps: int
    ) -> tuple[list[Job], dict[int, list[Job]]]:
        """The jobs, and those released in each step (by step index)."""
        run_s = steps * step_s
        jobs: list[Job] = []
        first = spec.regions[0].name
        for g in spec.jobs:
            r = g.release_s
            rel = rng.uniform(r[0], r[1], g.count) if isinstance(r, tuple) else np.full(g.count, r)
            for j, t in enumerate(rel):
                if t >= run_s:  # released after the run (a shorter --steps): not run
                    continue
                release = spec.start + timedelta(seconds=float(t))
                jobs.append(
                    Job(
                        f"{g.name}-{j}" if g.count > 1 else g.name,
                        release,
                        g.duration_min,
                        release + timedelta(minutes=g.window_min),
                        power_kw=g.power_kw,
                        interruptible=g.interruptible,
                        origin=g.origin or first,
                        data_gb=g.data_gb,
                        max_latency_ms=math.inf if g.max_latency_ms is None else g.max_latency_ms,
                    )
                )
        by_step: dict[int, list[Job]] = defaultdict(list)
        for job in jobs:
            k = int((job.release - spec.start).total_seconds() // step_s)
            by_step[min(k, steps - 1)].append(job)
        return jobs, dict(by_step)

    def record(self, k: int, server_j: np.ndarray, device_j: float) -> None:
        """Account step ``k``: each host's server energy ``server_j`` (J, one per host)
        and the devices' energy ``device_j`` (J); schedule the jobs released in it."""
        c = self.step_g_per_kwh[:, k]
        self.server_g += float(grams(server_j, c[self.host_region], self.host_pue).sum())
        self.facility_j += float((server_j * self.host_pue).sum())
        self.device_g += float(grams(device_j, c[self.device_region]))
        released = self._by_step.get(k)
        if not released or self.grid is None:
            return
        done = schedule(
            released, self.grid, self.spec.policy, forecast=self.forecast, network=self.network
        )
        base = schedule(released, self.grid, "baseline", network=self.network)
        self.released += len(released)
        self.jobs_g += done.emissions_g
        self.jobs_base_g += base.emissions_g
        self.jobs_kwh += done.facility_energy_kwh + done.transfer_energy_kwh
        self.moved += sum(1 for p in done.placements if p.region != p.origin)

    def summary(self) -> dict[str, float]:
        """The run's carbon numbers (:data:`CARBON_KEYS`)."""
        kwh = self.facility_j / J_PER_KWH
        return {
            "carbon_server_g": self.server_g,
            "carbon_server_facility_j": self.facility_j,
            "carbon_server_g_per_kwh": self.server_g / kwh if kwh > 0 else 0.0,
            "carbon_device_g": self.device_g,
            "carbon_jobs": self.released,
            "carbon_jobs_energy_kwh": self.jobs_kwh,
            "carbon_jobs_g": self.jobs_g,
            "carbon_jobs_baseline_g": self.jobs_base_g,
            "carbon_jobs_saving_ratio": (
                1.0 - self.jobs_g / self.jobs_base_g if self.jobs_base_g > 0 else 0.0
            ),
            "carbon_jobs_moved": self.moved,
            "carbon_total_g": self.server_g + self.device_g + self.jobs_g,
        }


def _region_latency_ms(
    world: World, host_region: np.ndarray, names: list[str]
) -> dict[tuple[str, str], float]:
    """One-way latency between regions: the lowest backbone latency between a host of
    one and a host of the other (pairs without hosts on both sides are left out)."""
    out: dict[tuple[str, str], float] = {}
    members = [np.flatnonzero(host_region == r) for r in range(len(names))]
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            if members[a].size and members[b].size:
                ms = float(world.host_host_ms[np.ix_(members[a], members[b])].min())
                if math.isfinite(ms):
                    out[(names[a], names[b])] = ms
    return out
