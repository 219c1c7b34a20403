"""Scenario schema (version 1): pydantic models with units in every field name.

A scenario describes the infrastructure (nodes and links, written out or generated),
the moving entities with the demand of their twins, the radio model, the run length and
the default policies. Files are YAML; see ``docs/scenario.md`` for the reference.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Tier = Literal["access", "edge", "region", "cloud"]
TIERS: tuple[str, ...] = ("access", "edge", "region", "cloud")


MAX_COORD_M = 1e8
"""Largest coordinate, area side or distance in metres (100,000 km: 2.5 times round the Earth)."""
MAX_SPEED_MPS = 299_792_458.0
"""Fastest speed: the speed of light."""
PLUGIN_GROUPS = {
    "placement": "twinedge.policies.placement",
    "migration": "twinedge.policies.migration",
}
"""Entry-point groups through which installed packages add named policies."""


class _Model(BaseModel):
    # every number must be finite: .inf and .nan are refused in every field
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _check_range(v: float | tuple[float, float]) -> float | tuple[float, float]:
    if isinstance(v, tuple):
        lo, hi = v
        if lo > hi:
            raise ValueError(f"range [{lo}, {hi}] has min > max")
    return v


NonNeg = Annotated[float, Field(ge=0)]
Coord = Annotated[float, Field(ge=-MAX_COORD_M, le=MAX_COORD_M)]
Length = Annotated[float, Field(gt=0, le=MAX_COORD_M)]
Distance = Annotated[float, Field(ge=0, le=MAX_COORD_M)]
Speed = Annotated[float, Field(ge=0, le=MAX_SPEED_MPS)]
Range = float | tuple[NonNeg, NonNeg]
"""A fixed value or ``[min, max]`` drawn uniformly per entity."""
MAX_COMMIT_MS = 10_000.0
"""Longest durable commit a host may be given, in ms (10 s: beyond it a report's
acknowledgement has timed out on every MQTT client)."""
CommitMs = Annotated[float, Field(ge=0, le=MAX_COMMIT_MS)]
"""A host's fixed time per report for its durable commit, ms (``twinedge calibrate``
measures it on a machine; 0: the model leaves it out)."""
MAX_CURVE_POINTS = 64
"""Most points of a host's ``commit_curve_ms``."""
GapMs = Annotated[float, Field(ge=0, le=3_600_000.0)]
"""The mean spacing of two reports arriving at a host, ms (at most an hour)."""


class NodeSpec(_Model):
    """One infrastructure node. Position in metres (``x_m``, ``y_m``) or ``lat``/``lon``."""

    id: str = Field(min_length=1)
    tier: Tier
    x_m: Coord | None = None
    y_m: Coord | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    cpu_ghz: NonNeg = 0.0
    mem_gb: NonNeg = 0.0
    idle_w: NonNeg = 0.0
    max_w: NonNeg = 0.0
    coverage_m: Length | None = None
    domain: str = "operator"
    commit_ms: CommitMs = 0.0
    commit_curve_ms: (
        Annotated[list[tuple[GapMs, CommitMs]], Field(min_length=1, max_length=MAX_CURVE_POINTS)]
        | None
    ) = None
    """The host's time per report for its durable commit as a function of how far apart
    its reports arrive: ``[[gap_ms, commit_ms], ...]``, gaps increasing (``twinedge
    calibrate --spacings-ms`` measures it); the model interpolates it at the host's report
    rate (docs/models.md). Instead of ``commit_ms``."""

    @field_validator("commit_curve_ms")
    @classmethod
    def _curve(cls, v: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        if v is not None:
            for (g0, _), (g1, _) in itertools.pairwise(v):
                if not g1 > g0:
                    raise ValueError(
                        f"[[gap_ms, commit_ms], ...] with gap_ms increasing, each once "
                        f"(gap {g1:g} ms after {g0:g} ms)"
                    )
        return v

    @model_validator(mode="after")
    def _position(self) -> NodeSpec:
        if self.commit_curve_ms is not None and self.commit_ms:
            raise ValueError(
                f"node {self.id}: give commit_ms ({self.commit_ms:g}) or commit_curve_ms, not both"
            )
        has_xy = self.x_m is not None and self.y_m is not None
        has_ll = self.lat is not None and self.lon is not None
        if has_xy == has_ll:
            raise ValueError("give a position as either x_m and y_m, or lat and lon")
        if self.max_w < self.idle_w:
            raise ValueError(f"max_w ({self.max_w}) must be >= idle_w ({self.idle_w})")
        return self


class LinkSpec(_Model):
    """An explicit link between two nodes (undirected)."""

    a: str
    b: str
    latency_ms: NonNeg
    bandwidth_mbps: Annotated[float, Field(gt=0)]


class LinkRule(_Model):
    """Latency and bandwidth of generated links: ``latency_ms + latency_ms_per_km * distance``."""

    latency_ms: NonNeg
    latency_ms_per_km: NonNeg = 0.005
    bandwidth_mbps: Annotated[float, Field(gt=0)]


class LinkRules(_Model):
    """Generated links: each access point to its nearest edge site, each edge site to its
    nearest region hub (and to its ``edge_mesh_k`` nearest edge sites), each region to the
    nearest cloud. A rule set to ``null`` generates nothing for that tier pair."""

    access_edge: LinkRule | None = LinkRule(latency_ms=0.5, bandwidth_mbps=10_000)
    edge_edge: LinkRule | None = LinkRule(latency_ms=1.0, bandwidth_mbps=10_000)
    edge_mesh_k: Annotated[int, Field(ge=0, le=64)] = 2
    edge_region: LinkRule | None = LinkRule(latency_ms=2.0, bandwidth_mbps=40_000)
    region_cloud: LinkRule | None = LinkRule(latency_ms=10.0, bandwidth_mbps=100_000)


class CityGenerator(_Model):
    """A synthetic city: edge sites scattered in clusters over a rectangle, each with a
    co-located access point, region hubs at cluster centres, and one cloud far away."""

    area_m: tuple[Length, Length] = (4000.0, 4000.0)
    edge_sites: Annotated[int, Field(ge=1)] = 60
    regions: Annotated[int, Field(ge=1)] = 6
    cloud: bool = True
    cloud_distance_m: Distance = 50_000.0
    coverage_m: Length = 400.0
    edge_cpu_ghz: Range = (16.0, 48.0)
    edge_mem_gb: Range = (32.0, 96.0)
    edge_idle_w: NonNeg = 150.0
    edge_max_w: NonNeg = 400.0
    region_cpu_ghz: Range = 256.0
    region_mem_gb: Range = 1024.0
    region_idle_w: NonNeg = 1500.0
    region_max_w: NonNeg = 4000.0
    cloud_cpu_ghz: NonNeg = 20_000.0
    cloud_mem_gb: NonNeg = 100_000.0
    cloud_idle_w: NonNeg = 20_000.0
    cloud_max_w: NonNeg = 60_000.0
    domains: list[str] = Field(default_factory=lambda: ["metro-op", "city-net"], min_length=1)
    commit_ms: CommitMs = 0.0

    _check = field_validator("edge_cpu_ghz", "edge_mem_gb", "region_cpu_ghz", "region_mem_gb")(
        _check_range
    )


class EuaSites(_Model):
    """Infrastructure from an EUA site file (``SITE_ID,LATITUDE,LONGITUDE,...``): every
    site becomes an access point and a co-located edge server."""

    sites_csv: Path
    coverage_m: Length = 150.0
    edge_cpu_ghz: Range = (8.0, 32.0)
    edge_mem_gb: Range = (16.0, 64.0)
    edge_idle_w: NonNeg = 150.0
    edge_max_w: NonNeg = 400.0
    regions: Annotated[int, Field(ge=1)] = 4
    region_cpu_ghz: Range = 128.0
    region_mem_gb: Range = 512.0
    region_idle_w: NonNeg = 1500.0
    region_max_w: NonNeg = 4000.0
    cloud: bool = True
    cloud_distance_m: Distance = 50_000.0
    cloud_cpu_ghz: NonNeg = 20_000.0
    cloud_mem_gb: NonNeg = 100_000.0
    cloud_idle_w: NonNeg = 20_000.0
    cloud_max_w: NonNeg = 60_000.0
    domains: list[str] = Field(default_factory=lambda: ["optus"], min_length=1)
    commit_ms: CommitMs = 0.0


class IfogsimHierarchy(_Model):
    """Infrastructure from an iFogSim2 edge-resources file (``ID,Latitude,Longitude,Block,
    Level,Parent,State,Details``, as ``edgeResources-melbCBD.csv``) with its hierarchy
    kept: level 0 (data centre) becomes a cloud node, level 1 (block proxy) a region hub,
    level 2 (gateway) an edge server with a co-located access point; each node is linked
    to its ``Parent`` only. The defaults are iFogSim2's Melbourne examples: 100 ms proxy to
    cloud, 4 ms gateway to proxy, 2 ms device to gateway; 2.8 GHz (2,800 MIPS) and 4 GB
    per proxy and gateway, 44.8 GHz and 40 GB in the data centre; their power models."""

    resources_csv: Path
    coverage_m: Length = 300.0
    access_gateway_ms: NonNeg = 2.0
    gateway_proxy_ms: NonNeg = 4.0
    proxy_cloud_ms: NonNeg = 100.0
    bandwidth_mbps: Annotated[float, Field(gt=0)] = 10_000.0
    edge_cpu_ghz: Range = 2.8
    edge_mem_gb: Range = 4.0
    edge_idle_w: NonNeg = 83.4333
    edge_max_w: NonNeg = 107.339
    region_cpu_ghz: Range = 2.8
    region_mem_gb: Range = 4.0
    region_idle_w: NonNeg = 83.4333
    region_max_w: NonNeg = 107.339
    cloud_cpu_ghz: NonNeg = 44.8
    cloud_mem_gb: NonNeg = 40.0
    cloud_idle_w: NonNeg = 1332.0
    cloud_max_w: NonNeg = 1648.0
    domain: str = "operator"
    commit_ms: CommitMs = 0.0

    _check = field_validator("edge_cpu_ghz", "edge_mem_gb", "region_cpu_ghz", "region_mem_gb")(
        _check_range
    )


class Infrastructure(_Model):
    origin_lat: float | None = Field(default=None, ge=-90, le=90)
    origin_lon: float | None = Field(default=None, ge=-180, le=180)
    generate: CityGenerator | None = None
    eua: EuaSites | None = None
    ifogsim: IfogsimHierarchy | None = None
    nodes: list[NodeSpec] = Field(default_factory=list)
    links: list[LinkSpec] = Field(default_factory=list)
    link_rules: LinkRules = LinkRules()

    @model_validator(mode="after")
    def _some_nodes(self) -> Infrastructure:
        if self.generate is None and self.eua is None and self.ifogsim is None and not self.nodes:
            raise ValueError("no nodes: give nodes, a generate, eua or ifogsim block")
        ids = [n.id for n in self.nodes]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate node ids: {', '.join(dup)}")
        return self


class Static(_Model):
    model: Literal["static"] = "static"


class RandomWaypoint(_Model):
    """Pick a uniform waypoint in the area, move to it at a uniform speed, pause, repeat."""

    model: Literal["random_waypoint"] = "random_waypoint"
    speed_mps: Speed | tuple[Speed, Speed] = (1.0, 15.0)
    pause_s: Range = (0.0, 0.0)
    _check = field_validator("speed_mps", "pause_s")(_check_range)


class GaussMarkov(_Model):
    """Gauss–Markov mobility (Liang & Haas 1999): speed and heading are AR(1) processes
    with memory ``alpha`` around a mean speed; entities turn back at the area border."""

    model: Literal["gauss_markov"] = "gauss_markov"
    mean_speed_mps: Speed = 10.0
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.85
    speed_sigma_mps: Speed = 2.0
    heading_sigma_rad: NonNeg = 0.4


class Trace(_Model):
    """Replay positions from a file: a CSV trace (``entity_id,t_s,x_m,y_m`` or
    ``entity_id,t_s,lat,lon``), a path file of one entity (``Latitude,Longitude`` or
    ``x_m,y_m`` rows, one point every ``path_step_s`` seconds, as iFogSim2's user paths),
    or SUMO floating car data (``*.xml``, ``*.xml.gz``); linear interpolation between
    samples, position held before the first and after the last sample (or looped with
    ``loop: true``)."""

    model: Literal["trace"] = "trace"
    file: Path
    loop: bool = False
    path_step_s: Annotated[float, Field(gt=0)] = 10.0


Mobility = Annotated[Static | RandomWaypoint | GaussMarkov | Trace, Field(discriminator="model")]


class TwinDemand(_Model):
    """What the twin of each entity needs. Ranges are drawn uniformly per entity."""

    cpu_ghz: Range = (0.2, 1.0)
    mem_gb: Range = (0.25, 2.0)
    state_bytes: Range = (1e6, 20e6)
    update_bytes: Range = 2_000.0
    update_hz: Range = 10.0
    work_gcycles: Range = 0.02
    latency_req_ms: Range = 20.0
    tx_power_w: Range = 0.2
    _check = field_validator("*")(_check_range)


#: The per-twin demand fields, in order (the scenario's ``twin:``, the world's arrays,
#: a live twin's ``attributes.twin``).
DEMAND_FIELDS: tuple[str, ...] = tuple(TwinDemand.model_fields)


class EntityGroup(_Model):
    """A group of entities of one kind: ``count`` of them at uniform random positions, a
    list of ``positions_m`` (``[x, y]`` in metres), or positions from ``positions_csv`` (``Latitude,Longitude`` as in EUA user files, or
    ``x_m,y_m``), or one per id of a ``trace`` mobility file."""

    kind: str = "entity"
    count: Annotated[int, Field(ge=0)] | None = None
    positions_m: list[tuple[Coord, Coord]] | None = None
    positions_csv: Path | None = None
    owner: str = "tenant"
    mobility: Mobility = RandomWaypoint()
    twin: TwinDemand = TwinDemand()
    allowed_tiers: list[Literal["edge", "region", "cloud"]] = ["edge", "region", "cloud"]

    @model_validator(mode="after")
    def _one_source(self) -> EntityGroup:
        sources = sum(
            [
                self.count is not None,
                self.positions_m is not None,
                self.positions_csv is not None,
                isinstance(self.mobility, Trace),
            ]
        )
        if sources != 1:
            raise ValueError(
                "give exactly one of count, positions_m, positions_csv, or a trace mobility"
            )
        return self


class Radio(_Model):
    """Uplink: Shannon rate over a distance-based path loss ``PL_dB = ref_db + 10 * exponent
    * log10(d_km)`` (3GPP TR 36.814 urban macro defaults)."""

    bandwidth_mhz: Annotated[float, Field(gt=0)] = 10.0
    noise_dbm_per_hz: float = -174.0
    path_loss_ref_db: float = 128.1
    path_loss_exponent: Annotated[float, Field(gt=0)] = 3.76
    min_distance_m: Annotated[float, Field(gt=0)] = 10.0


class Run(_Model):
    steps: Annotated[int, Field(ge=1)] = 600
    step_s: Annotated[float, Field(gt=0)] = 1.0
    seed: Annotated[int, Field(ge=0)] = 0


class Policies(_Model):
    """Default policies of ``twinedge run``. A list runs every combination on the same
    seed; ``*_params`` map a policy name to its parameters.

    A file names registered policies and plug-ins (installed packages that declare the
    policy under an entry-point group of :data:`PLUGIN_GROUPS`) only: a shared scenario
    file must not run arbitrary code, so an import path ``module:attribute`` is refused
    here; it is accepted from the command line (``--placement mypkg.mod:fn``) and the
    Python API, where the user chose it.
    """

    placement: str | list[str] = "greedy"
    placement_period_s: Annotated[float, Field(gt=0)] | None = None
    placement_params: dict[str, dict] = Field(default_factory=dict)
    migration: str | list[str] = "threshold"
    migration_params: dict[str, dict] = Field(default_factory=dict)

    @field_validator("placement", "migration")
    @classmethod
    def _no_import_paths(cls, v: str | list[str], info) -> str | list[str]:
        for name in cls.as_list(v):
            if ":" in name:
                raise ValueError(
                    f"a policy name; {name!r} is an import path, and a scenario file may not "
                    "import code: pass it on the command line "
                    f"(--{info.field_name} {name}) or in Python, or install it as a plug-in "
                    f"under the entry-point group {PLUGIN_GROUPS[info.field_name]!r} and "
                    "use its name"
                )
        return v

    @staticmethod
    def as_list(v: str | list[str]) -> list[str]:
        items = v if isinstance(v, list) else v.split(",")
        return [x.strip() for x in items if x.strip()]


_TIER_PRICES: dict[Tier, float] = {"edge": 1e-4, "region": 8e-5, "cloud": 5e-5}


class Market(_Model):
    """A compute market cleared every ``period_s`` (docs/market.md): twins buy units of
    ``unit_cpu_ghz`` GHz for one period from the hosts. A twin's value per unit is
    ``value_per_unit`` when given (fixed or ``[min, max]`` uniform), else
    ``value_at_ref * latency_ref_ms / latency_req_ms`` times U(1 +- value_spread); a
    host's cost per unit is ``cost_per_unit`` when given, else its tier's
    ``per_cpu_ghz_s`` plus its marginal energy at ``per_kwh``, times U(1 +- cost_spread)."""

    mechanism: Literal["mcafee", "greedy", "posted"] = "mcafee"
    posted_price: NonNeg | None = None
    period_s: Annotated[float, Field(gt=0)] = 60.0
    unit_cpu_ghz: Annotated[float, Field(gt=0)] = 0.5
    value_per_unit: Range | None = None
    value_at_ref: NonNeg = 0.004
    latency_ref_ms: Annotated[float, Field(gt=0)] = 20.0
    value_spread: Annotated[float, Field(ge=0, lt=1)] = 0.5
    cost_per_unit: Range | None = None
    per_cpu_ghz_s: dict[Tier, NonNeg] = Field(default_factory=lambda: dict(_TIER_PRICES))
    per_kwh: NonNeg = 0.30
    cost_spread: Annotated[float, Field(ge=0, lt=1)] = 0.2

    @model_validator(mode="after")
    def _check(self) -> Market:
        for v in (self.value_per_unit, self.cost_per_unit):
            if v is not None:
                _check_range(v)
        if (self.mechanism == "posted") != (self.posted_price is not None):
            raise ValueError("posted_price is given with, and only with, mechanism: posted")
        return self


class TaskSpec(_Model):
    """The tasks one kind of entity offloads (docs/offload.md): every entity emits tasks
    at ``rate_hz`` (Poisson) or every ``period_s`` (periodic, random phase); per task
    ``gcycles`` of CPU work, ``input_bytes`` up and ``output_bytes`` down, a deadline
    ``deadline_ms`` (the time window of the physical event). The device computes at
    ``f_local_ghz`` with effective switched capacitance ``kappa`` (energy
    ``kappa * f^2 * cycles``, f in Hz) and transmits at ``tx_power_w`` (the twin's
    ``tx_power_w`` when ``None``). ``splittable`` tasks may run a fraction on the device
    and the rest on one host, in parallel. Ranges are drawn uniformly per task."""

    rate_hz: Annotated[float, Field(gt=0)] | None = None
    period_s: Annotated[float, Field(gt=0)] | None = None
    gcycles: NonNeg | tuple[NonNeg, NonNeg] = 0.5
    input_bytes: NonNeg | tuple[NonNeg, NonNeg] = 200_000.0
    output_bytes: NonNeg | tuple[NonNeg, NonNeg] = 10_000.0
    deadline_ms: NonNeg | tuple[NonNeg, NonNeg] = 100.0
    splittable: bool = False
    f_local_ghz: Annotated[float, Field(gt=0)] = 1.0
    kappa: Annotated[float, Field(gt=0)] = 1e-27
    tx_power_w: Annotated[float, Field(gt=0)] | None = None
    _check = field_validator("gcycles", "input_bytes", "output_bytes", "deadline_ms")(_check_range)

    @model_validator(mode="after")
    def _one_arrival(self) -> TaskSpec:
        if (self.rate_hz is None) == (self.period_s is None):
            raise ValueError("give exactly one of rate_hz (Poisson) or period_s (periodic)")
        lo = self.deadline_ms[0] if isinstance(self.deadline_ms, tuple) else self.deadline_ms
        if lo <= 0:
            raise ValueError(f"deadline_ms must be > 0, got {self.deadline_ms}")
        return self


class Offloading(_Model):
    """Task offloading (docs/offload.md): the tasks of each entity kind (``tasks``, by
    kind), the policy that places them every step (``policy``: a name or a list, run one
    after another; ``policy_params`` by name), the access point's downlink transmit
    power, the objective's weights and the price of host compute per GHz*s by tier."""

    tasks: dict[str, TaskSpec] = Field(min_length=1)
    policy: str = "greedy"
    policy_params: dict[str, dict] = Field(default_factory=dict)
    downlink_power_w: Annotated[float, Field(gt=0)] = 1.0
    miss_penalty: NonNeg = 10.0
    energy_weight_per_j: NonNeg = 1.0
    latency_weight_per_s: NonNeg = 1.0
    per_cpu_ghz_s: dict[Tier, NonNeg] = Field(default_factory=lambda: dict(_TIER_PRICES))


class Xr(_Model):
    """XR sessions with split rendering (docs/xr.md): ``share`` of the entities of
    ``kinds`` (every kind when ``None``) wear a headset streaming ``fps`` frames a
    second, rendered where ``placement`` puts them, judged on the XRMI scale."""

    kinds: list[str] | None = None
    share: Annotated[float, Field(gt=0, le=1)] = 1.0
    qos_5qi: Literal[80, 87, 88, 89, 90] = 80
    budget_ms: Annotated[float, Field(gt=0)] = 10.0
    atw_window_ms: NonNeg = 10.0
    fps: Annotated[float, Field(gt=0, le=1000)] = 90.0
    p_frame_bytes: Annotated[float, Field(gt=0)] = 40_000.0
    i_ratio: Annotated[float, Field(ge=1)] = 5.0
    gop_frames: Annotated[int, Field(ge=1)] = 60
    size_cv: NonNeg = 0.2
    stall_frames: Annotated[int, Field(ge=1)] = 3
    pose_bytes: Annotated[float, Field(gt=0)] = 200.0
    render_gcycles: Annotated[float, Field(gt=0)] = 0.02
    encode_ms: NonNeg = 2.0
    decode_ms: NonNeg = 2.0
    device_render_ms: NonNeg = 9.0
    device_image: Annotated[float, Field(ge=1, le=5)] = 4.0
    downlink_power_w: Annotated[float, Field(gt=0)] = 20.0
    downlink_mhz: Annotated[float, Field(gt=0)] = 100.0
    state_bytes: NonNeg = 2.0e7
    switch_downtime_ms: NonNeg = 100.0
    placement: Literal["device", "nearest-edge", "best-latency"] = "best-latency"
    hysteresis_ms: NonNeg = 2.0
    min_dwell_s: NonNeg = 5.0
    interaction: Literal["weak", "strong"] = "strong"


class Sync(_Model):
    """Predictive sync (docs/sync.md): every entity's device samples its position once a
    step and sends a report only when its twin's ``predictor`` is more than
    ``threshold_m`` off or ``heartbeat_s`` passed (``null``: no heartbeat); the run
    summary counts the reports, their bytes (a ``header_bytes`` header and
    ``number_bytes`` a number) and the twins' errors (``sync_*``)."""

    predictor: Literal["constant", "first-order", "second-order"] = "first-order"
    threshold_m: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0
    heartbeat_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = 5.0
    header_bytes: Annotated[int, Field(ge=0)] = 32
    number_bytes: Annotated[int, Field(ge=0)] = 8


CarbonPolicy = Literal[
    "baseline", "shift", "interrupt", "spatial", "spatial-shift", "spatial-interrupt"
]
#: The carbon scheduler's policies (``twinedge.carbon.scheduler.POLICIES``).
CARBON_POLICIES: tuple[str, ...] = get_args(CarbonPolicy)
HostTier = Literal["edge", "region", "cloud"]


class CarbonRegion(_Model):
    """A grid region (docs/carbon.md): its carbon intensity in gCO2/kWh from exactly one
    of ``csv`` (a ``Time,Carbon Intensity`` file), ``profile`` (a built-in mean day of
    2020: ``DE``, ``GB`` or ``FR``, repeated every day) or ``values_g_per_kwh`` (one value
    every ``step_min`` minutes from ``carbon.start``, repeated when the run outlasts
    them); and the PUE of its data centres."""

    name: str = Field(min_length=1)
    csv: Path | None = None
    profile: Literal["DE", "GB", "FR"] | None = None
    values_g_per_kwh: list[NonNeg] | None = Field(default=None, min_length=1)
    step_min: Annotated[float, Field(gt=0, le=525_600)] = 60.0
    pue: Annotated[float, Field(ge=1, le=10)] = 1.0

    @model_validator(mode="after")
    def _one_source(self) -> CarbonRegion:
        given = [k for k in ("csv", "profile", "values_g_per_kwh") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of csv, profile or values_g_per_kwh"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class CarbonJobs(_Model):
    """``count`` delay-tolerant jobs (training, batch analytics): each released at
    ``release_s`` seconds after the run's start (a value or ``[min, max]`` uniform per
    job), needing ``power_kw`` for ``duration_min``, due ``window_min`` after its release;
    submitted to region ``origin`` (the first region when ``None``) with ``data_gb`` of
    input, movable to regions within ``max_latency_ms`` (any reachable one when ``None``)."""

    name: str = Field(default="job", min_length=1)
    count: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    release_s: NonNeg | tuple[NonNeg, NonNeg] = 0.0
    duration_min: Annotated[float, Field(gt=0, le=525_600)]
    window_min: Annotated[float, Field(gt=0, le=525_600)]
    power_kw: Annotated[float, Field(ge=0, le=1e6)] = 1.0
    interruptible: bool = False
    origin: str | None = None
    data_gb: Annotated[float, Field(ge=0, le=1e9)] = 0.0
    max_latency_ms: NonNeg | None = None
    _check = field_validator("release_s")(_check_range)

    @model_validator(mode="after")
    def _fits(self) -> CarbonJobs:
        if self.window_min < self.duration_min:
            raise ValueError(
                f"window_min ({self.window_min}) must be >= duration_min ({self.duration_min})"
            )
        return self


class Carbon(_Model):
    """Carbon accounting and carbon-aware scheduling (docs/carbon.md): the run's time 0 is
    ``start`` (local wall time of the series); every host is in a region (``node_regions``
    by node id, else ``tier_regions`` by tier, else the first region) and draws its
    energy times a PUE (``tier_pue`` by tier, else its region's); devices charge in
    ``device_region`` (the first when ``None``) without facility overhead. ``jobs`` are
    scheduled in time and space by ``policy`` on a grid of ``slot_min`` minutes, moving
    data at ``transfer_kwh_per_gb``; decisions see the series plus Gaussian noise of
    ``forecast_error`` times its mean (0: a perfect forecast)."""

    start: datetime = datetime(2020, 1, 1)
    regions: list[CarbonRegion] = Field(
        default_factory=lambda: [CarbonRegion(name="DE", profile="DE")], min_length=1
    )
    tier_regions: dict[HostTier, str] = Field(default_factory=dict)
    node_regions: dict[str, str] = Field(default_factory=dict)
    tier_pue: dict[HostTier, Annotated[float, Field(ge=1, le=10)]] = Field(default_factory=dict)
    device_region: str | None = None
    policy: CarbonPolicy = "spatial-shift"
    slot_min: Annotated[float, Field(gt=0, le=1440)] = 30.0
    forecast_error: Annotated[float, Field(ge=0, le=10)] = 0.0
    transfer_kwh_per_gb: Annotated[float, Field(ge=0, le=1e3)] = 0.0
    jobs: list[CarbonJobs] = Field(default_factory=list)

    @field_validator("start")
    @classmethod
    def _naive(cls, v: datetime) -> datetime:
        if v.tzinfo is not None:
            raise ValueError(
                f"got {v.isoformat()}; expected a local wall time without a zone, as in the series"
            )
        return v

    @model_validator(mode="after")
    def _known_regions(self) -> Carbon:
        names = [r.name for r in self.regions]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate region names: {', '.join(dup)}")
        known = set(names)
        refs: list[tuple[str, str | None]] = [
            (f"tier_regions.{t}", r) for t, r in self.tier_regions.items()
        ]
        refs += [(f"node_regions.{n}", r) for n, r in self.node_regions.items()]
        refs += [("device_region", self.device_region)]
        refs += [(f"jobs[{i}].origin", j.origin) for i, j in enumerate(self.jobs)]
        for where, r in refs:
            if r is not None and r not in known:
                raise ValueError(f"{where}: got {r!r}; expected a region name: {', '.join(names)}")
        return self


class Scenario(_Model):
    """A whole scenario file."""

    version: Literal[1]
    name: str = "scenario"
    area_m: tuple[Length, Length] | None = None
    infrastructure: Infrastructure
    entities: list[EntityGroup] = Field(min_length=1)
    radio: Radio = Radio()
    run: Run = Run()
    policies: Policies = Policies()
    market: Market | None = None
    offloading: Offloading | None = None
    xr: Xr | None = None
    sync: Sync | None = None
    carbon: Carbon | None = None
