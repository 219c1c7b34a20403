"""Build a :class:`World` from a validated scenario (generators and CSV loaders live here)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy.cluster.vq import kmeans2

from twinedge.errors import ScenarioError
from twinedge.scenario.schema import (
    DEMAND_FIELDS,
    CityGenerator,
    EuaSites,
    IfogsimHierarchy,
    NodeSpec,
    Scenario,
    Trace,
)
from twinedge.world.geo import latlon_to_xy_m
from twinedge.world.mobility import csv_problem, draw, make_mobility, read_trace
from twinedge.world.network import (
    TIER_CODE,
    check_connected,
    generate_links,
    make_links,
    shortest_paths,
)
from twinedge.world.state import World

_LAT = ("latitude", "lat")
_LON = ("longitude", "lon")


def _read_points(path: Path) -> tuple[np.ndarray, bool, list[dict[str, str]]]:
    """Read a CSV of points: ``Latitude,Longitude`` (any case, spaces allowed) or ``x_m,y_m``.

    Returns ``(points, is_latlon, rows)``.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [
                {k.strip().lower(): (v or "").strip() for k, v in r.items() if k}
                for r in csv.DictReader(f)
            ]
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise ScenarioError([f"{path}: cannot read the CSV file: {csv_problem(exc)}"]) from None
    if not rows:
        raise ScenarioError([f"{path}: no rows; expected a header and at least one point"])
    keys = rows[0].keys()
    lat = next((k for k in _LAT if k in keys), None)
    lon = next((k for k in _LON if k in keys), None)
    if lat and lon:
        cols, is_ll = (lat, lon), True
    elif "x_m" in keys and "y_m" in keys:
        cols, is_ll = ("x_m", "y_m"), False
    else:
        raise ScenarioError(
            [f"{path}: header {sorted(keys)}: expected Latitude,Longitude or x_m,y_m columns"]
        )
    pts = np.empty((len(rows), 2))
    for i, r in enumerate(rows):
        try:
            pts[i] = float(r[cols[0]]), float(r[cols[1]])
            if not np.isfinite(pts[i]).all():
                raise ValueError("not finite")
        except (ValueError, KeyError):
            raise ScenarioError(
                [f"{path}: line {i + 2}: got {r[cols[0]]!r},{r[cols[1]]!r}; expected two numbers"]
            ) from None
    return pts, is_ll, rows


class _Nodes:
    """Accumulates nodes before they become arrays."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        # tier, x, y, cpu, mem, idle, max, coverage, domain, commit_ms
        self.rows: list[tuple] = []
        # node index -> its commit curve, (K, 2) [gap_ms, commit_ms] (explicit nodes only)
        self.curves: dict[int, np.ndarray] = {}

    def add(
        self,
        id_: str,
        tier: str,
        xy,
        cpu=0.0,
        mem=0.0,
        idle=0.0,
        mx=0.0,
        cov=np.nan,
        domain="operator",
        commit_ms=0.0,
    ):
        self.ids.append(id_)
        self.rows.append(
            (
                TIER_CODE[tier],
                float(xy[0]),
                float(xy[1]),
                cpu,
                mem,
                idle,
                mx,
                cov,
                domain,
                float(commit_ms),
            )
        )


def _city(gen: CityGenerator, nodes: _Nodes, rng: np.random.Generator) -> np.ndarray:
    w, h = gen.area_m
    centres = np.column_stack(
        [rng.uniform(0.15 * w, 0.85 * w, gen.regions), rng.uniform(0.15 * h, 0.85 * h, gen.regions)]
    )
    n_clustered = round(0.7 * gen.edge_sites)
    which = rng.integers(0, gen.regions, n_clustered)
    clustered = centres[which] + rng.normal(0, min(w, h) / 8, (n_clustered, 2))
    uniform = np.column_stack(
        [
            rng.uniform(0, w, gen.edge_sites - n_clustered),
            rng.uniform(0, h, gen.edge_sites - n_clustered),
        ]
    )
    sites = np.clip(np.vstack([clustered, uniform]), [0, 0], [w, h])
    # the domain of a site is that of its nearest region hub
    region_of = np.argmin(((sites[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    ids = [str(k + 1) for k in range(gen.edge_sites)]
    cloud_xy = (w / 2 + gen.cloud_distance_m, h / 2)
    _add_sites(gen, nodes, centres, sites, ids, region_of, cloud_xy, rng)
    return np.array([0.0, 0.0, w, h])


def _eua_sites(
    eua: EuaSites, origin: tuple[float, float] | None, nodes: _Nodes, rng: np.random.Generator
) -> None:
    pts, is_ll, rows = _read_points(eua.sites_csv)
    if not is_ll:
        raise ScenarioError(
            [f"{eua.sites_csv}: expected EUA site columns SITE_ID,LATITUDE,LONGITUDE"]
        )
    assert origin is not None  # without a configured origin, _origin averages these sites
    xy = latlon_to_xy_m(pts[:, 0], pts[:, 1], *origin)
    n = len(rows)
    site_ids = [r.get("site_id") or str(i + 1) for i, r in enumerate(rows)]
    centres, label = kmeans2(xy, min(eua.regions, n), seed=rng, minit="++")
    cloud_xy = xy.mean(0) + np.array([eua.cloud_distance_m, 0.0])
    _add_sites(eua, nodes, centres, xy, site_ids, label, cloud_xy, rng)


IFOGSIM_TIERS = {0: ("cloud", "dc"), 1: ("region", "proxy"), 2: ("edge", "gw")}
"""iFogSim2 level -> (twinedge tier, node id prefix); level 3, the users, are entities."""


def _read_ifogsim(path: Path) -> list[dict[str, str]]:
    """The rows of an iFogSim2 edge-resources CSV (header names stripped, lower case)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [
                {k.strip().lower(): (v or "").strip() for k, v in r.items() if k}
                for r in csv.DictReader(f, skipinitialspace=True)
            ]
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise ScenarioError([f"{path}: cannot read the CSV file: {csv_problem(exc)}"]) from None
    need = ("id", "latitude", "longitude", "level", "parent")
    if not rows or any(k not in rows[0] for k in need):
        got = sorted(rows[0]) if rows else []
        raise ScenarioError(
            [
                f"{path}: header {got}: expected iFogSim2 edge resources with columns "
                "ID,Latitude,Longitude,Block,Level,Parent,State,Details and at least one row"
            ]
        )
    return rows


def _ifogsim(
    spec: IfogsimHierarchy,
    origin: tuple[float, float] | None,
    nodes: _Nodes,
    rng: np.random.Generator,
) -> list[tuple[str, str, float]]:
    """Add the nodes of an iFogSim2 hierarchy; return its links ``(a, b, latency_ms)``.

    Level 0 rows become ``dc-ID`` (cloud), level 1 ``proxy-ID`` (region), level 2
    ``gw-ID`` (edge) with an access point ``ap-ID`` at the same place. Every node is
    linked to its ``Parent`` (which must be a row of the level above) and to nothing
    else; each access point to its gateway.
    """
    path = spec.resources_csv
    rows = _read_ifogsim(path)
    level: dict[str, int] = {}
    where: dict[str, tuple[float, float]] = {}
    for line, r in enumerate(rows, start=2):
        try:
            lv = int(r["level"])
            lat, lon = float(r["latitude"]), float(r["longitude"])
        except ValueError:
            raise ScenarioError(
                [
                    f"{path}: line {line}: got Level {r['level']!r}, Latitude {r['latitude']!r}, "
                    f"Longitude {r['longitude']!r}; expected an integer level and two numbers"
                ]
            ) from None
        if lv not in IFOGSIM_TIERS:
            raise ScenarioError(
                [
                    f"{path}: line {line}: Level: got {lv}; expected 0 (data centre), "
                    "1 (proxy) or 2 (gateway): users are entities, not resources"
                ]
            )
        if not (abs(lat) <= 90 and abs(lon) <= 180):
            raise ScenarioError(
                [f"{path}: line {line}: got {lat}, {lon}; expected a latitude and a longitude"]
            )
        if r["id"] in level:
            raise ScenarioError([f"{path}: line {line}: ID: got {r['id']!r}; expected a new ID"])
        level[r["id"]] = lv
        where[r["id"]] = (lat, lon)
    for line, r in enumerate(rows, start=2):
        lv = level[r["id"]]
        if lv > 0 and level.get(r["parent"]) != lv - 1:
            above = IFOGSIM_TIERS[lv - 1][1]
            raise ScenarioError(
                [
                    f"{path}: line {line}: Parent: got {r['parent']!r}; expected the ID of a "
                    f"level-{lv - 1} row ({above}) for this level-{lv} row"
                ]
            )
    assert origin is not None  # without a configured origin, _origin averages these rows
    ll = np.array([where[r["id"]] for r in rows])
    xy = latlon_to_xy_m(ll[:, 0], ll[:, 1], *origin)
    lv_arr = np.array([level[r["id"]] for r in rows])
    n_edge, n_region = int((lv_arr == 2).sum()), int((lv_arr == 1).sum())
    cpu = {2: draw(spec.edge_cpu_ghz, n_edge, rng), 1: draw(spec.region_cpu_ghz, n_region, rng)}
    mem = {2: draw(spec.edge_mem_gb, n_edge, rng), 1: draw(spec.region_mem_gb, n_region, rng)}
    k = {1: 0, 2: 0}
    links: list[tuple[str, str, float]] = []
    name = {rid: f"{IFOGSIM_TIERS[lv][1]}-{rid}" for rid, lv in level.items()}
    for i, r in enumerate(rows):
        rid, lv = r["id"], level[r["id"]]
        tier = IFOGSIM_TIERS[lv][0]
        if lv == 0:
            c, m = spec.cloud_cpu_ghz, spec.cloud_mem_gb
            idle, mx = spec.cloud_idle_w, spec.cloud_max_w
        else:
            c, m = float(cpu[lv][k[lv]]), float(mem[lv][k[lv]])
            k[lv] += 1
            idle, mx = (
                (spec.edge_idle_w, spec.edge_max_w)
                if lv == 2
                else (spec.region_idle_w, spec.region_max_w)
            )
        nodes.add(
            name[rid], tier, xy[i], c, m, idle, mx, domain=spec.domain, commit_ms=spec.commit_ms
        )
        if lv == 2:
            nodes.add(f"ap-{rid}", "access", xy[i], cov=spec.coverage_m, domain=spec.domain)
            links.append((f"ap-{rid}", name[rid], spec.access_gateway_ms))
            links.append((name[rid], name[r["parent"]], spec.gateway_proxy_ms))
        elif lv == 1:
            links.append((name[rid], name[r["parent"]], spec.proxy_cloud_ms))
    return links


def _add_sites(
    spec: CityGenerator | EuaSites,
    nodes: _Nodes,
    centres: np.ndarray,
    sites: np.ndarray,
    site_ids: list[str],
    region_of: np.ndarray,
    cloud_xy,
    rng: np.random.Generator,
) -> None:
    """Region hubs at ``centres``; at every site an access point and an edge server of the
    domain of its region; the cloud at ``cloud_xy``. Capacities are drawn from ``spec``."""
    n = len(sites)
    cpu = draw(spec.edge_cpu_ghz, n, rng)
    mem = draw(spec.edge_mem_gb, n, rng)
    doms = spec.domains
    for r in range(len(centres)):
        region_cpu, region_mem = (
            draw(v, 1, rng)[0] for v in (spec.region_cpu_ghz, spec.region_mem_gb)
        )
        nodes.add(
            f"region-{r + 1}",
            "region",
            centres[r],
            region_cpu,
            region_mem,
            spec.region_idle_w,
            spec.region_max_w,
            domain=doms[r % len(doms)],
            commit_ms=spec.commit_ms,
        )
    for k in range(n):
        d = doms[region_of[k] % len(doms)]
        nodes.add(f"ap-{site_ids[k]}", "access", sites[k], cov=spec.coverage_m, domain=d)
        nodes.add(
            f"edge-{site_ids[k]}",
            "edge",
            sites[k],
            cpu[k],
            mem[k],
            spec.edge_idle_w,
            spec.edge_max_w,
            domain=d,
            commit_ms=spec.commit_ms,
        )
    if spec.cloud:
        nodes.add(
            "cloud",
            "cloud",
            cloud_xy,
            spec.cloud_cpu_ghz,
            spec.cloud_mem_gb,
            spec.cloud_idle_w,
            spec.cloud_max_w,
            domain=doms[0],
            commit_ms=spec.commit_ms,
        )


def _origin(sc: Scenario) -> tuple[float, float] | None:
    infra = sc.infrastructure
    if infra.origin_lat is not None and infra.origin_lon is not None:
        return infra.origin_lat, infra.origin_lon
    lats: list[np.ndarray] = []
    if infra.eua is not None:
        pts, is_ll, _ = _read_points(infra.eua.sites_csv)
        lats.append(pts)
    if infra.ifogsim is not None:
        rows = _read_ifogsim(infra.ifogsim.resources_csv)
        try:
            lats.append(np.array([[float(r["latitude"]), float(r["longitude"])] for r in rows]))
        except ValueError:
            pass  # _ifogsim names the bad line
    ll = [(n.lat, n.lon) for n in infra.nodes if n.lat is not None]
    if ll:
        lats.append(np.array(ll))
    for g in sc.entities:
        if g.positions_csv is not None:
            pts, is_ll, _ = _read_points(g.positions_csv)
            if is_ll:
                lats.append(pts)
    if not lats:
        return None
    allp = np.vstack(lats)
    return float(allp[:, 0].mean()), float(allp[:, 1].mean())


def _node_xy(n: NodeSpec, origin: tuple[float, float] | None) -> tuple[float, float]:
    if n.x_m is not None and n.y_m is not None:
        return n.x_m, n.y_m
    # the schema's other choice: lat and lon, which also give _origin its points
    if n.lat is None or n.lon is None or origin is None:
        raise ScenarioError([f"node {n.id!r} has no position (x_m and y_m, or lat and lon)"])
    x, y = latlon_to_xy_m(np.array([n.lat]), np.array([n.lon]), *origin)[0]
    return float(x), float(y)


def build_world(sc: Scenario, rng: np.random.Generator, *, network_only: bool = False) -> World:
    """Turn a scenario into arrays. Every random draw uses ``rng``.

    With ``network_only`` a scenario without entities is accepted (a live network: the
    entities are the devices that connect).
    """
    origin = _origin(sc)
    nodes = _Nodes()
    bounds = None
    infra = sc.infrastructure
    if infra.generate is not None:
        bounds = _city(infra.generate, nodes, rng)
    if infra.eua is not None:
        _eua_sites(infra.eua, origin, nodes, rng)
    hierarchy: list[tuple[str, str, float]] = []
    first_ifog = len(nodes.ids)
    if infra.ifogsim is not None:
        hierarchy = _ifogsim(infra.ifogsim, origin, nodes, rng)
    end_ifog = len(nodes.ids)
    for n in infra.nodes:
        nodes.add(
            n.id,
            n.tier,
            _node_xy(n, origin),
            n.cpu_ghz,
            n.mem_gb,
            n.idle_w,
            n.max_w,
            n.coverage_m or np.nan,
            n.domain,
            commit_ms=n.commit_ms,
        )
        if n.commit_curve_ms is not None:
            nodes.curves[len(nodes.ids) - 1] = np.asarray(n.commit_curve_ms, dtype=float)
    dup = (
        {i for i in nodes.ids if nodes.ids.count(i) > 1}
        if len(set(nodes.ids)) != len(nodes.ids)
        else set()
    )
    if dup:
        raise ScenarioError(
            [
                f"infrastructure.nodes: duplicate node ids {sorted(dup)} (generated ids are ap-K, edge-K, region-K, cloud; of an iFogSim2 hierarchy dc-ID, proxy-ID, gw-ID, ap-ID)"
            ]
        )
    rows = nodes.rows
    tier = np.array([r[0] for r in rows], dtype=np.int8)
    xy = np.array([(r[1], r[2]) for r in rows], dtype=float)
    cpu, mem, idle, mx, cov = (np.array([r[k] for r in rows], dtype=float) for k in range(3, 8))
    commit = np.array([r[9] for r in rows], dtype=float)
    domains = sorted({r[8] for r in rows})
    dom = np.array([domains.index(r[8]) for r in rows], dtype=np.int32)
    index = {nid: i for i, nid in enumerate(nodes.ids)}

    access = np.flatnonzero(tier == 0)
    hosts = np.flatnonzero((tier > 0) & (cpu > 0) & (mem > 0))
    if access.size == 0:
        raise ScenarioError(
            ["infrastructure: no access points (tier: access); entities cannot attach"]
        )
    if hosts.size == 0:
        raise ScenarioError(
            ["infrastructure: no hosts (edge/region/cloud nodes with cpu_ghz > 0 and mem_gb > 0)"]
        )

    # an iFogSim2 hierarchy keeps its own links (to each node's Parent): no generated ones
    gen_tier = tier.copy()
    gen_tier[first_ifog:end_ifog] = -1
    link_rows = generate_links(gen_tier, xy, infra.link_rules)
    if infra.ifogsim is not None:
        bw = infra.ifogsim.bandwidth_mbps
        link_rows += [(index[a], index[b], ms, bw) for a, b, ms in hierarchy]
    bad = []
    for i, lk in enumerate(infra.links):
        for end in ("a", "b"):
            if getattr(lk, end) not in index:
                bad.append(
                    f"infrastructure.links[{i}].{end}: got {getattr(lk, end)!r}; expected a node id"
                )
        if not bad:
            link_rows.append((index[lk.a], index[lk.b], lk.latency_ms, lk.bandwidth_mbps))
    if bad:
        raise ScenarioError(bad)
    links = make_links(link_rows)
    paths = shortest_paths(len(nodes.ids), links, hosts)
    check_connected(paths, access, nodes.ids, hosts)

    # entities
    traces, origin = _traces(sc, origin)
    if sc.area_m is not None:
        bounds = np.array([0.0, 0.0, *sc.area_m])
    elif bounds is None:
        # the box of the access points and of every trace
        pts = [xy[access], *(tr[3] for tr in traces.values())]
        lo = np.min([p.min(0) for p in pts], axis=0)
        hi = np.max([p.max(0) for p in pts], axis=0)
        pad = 0.05 * np.maximum(hi - lo, 100.0)
        bounds = np.concatenate([lo - pad, hi + pad])
    groups = _entities(sc, bounds, origin, rng, network_only, traces)
    ent = {k: np.concatenate([g[k] for g in groups]) for k in groups[0] if k not in ("mobility",)}
    kinds = sorted({g.kind for g in sc.entities})
    owners = sorted({g.owner for g in sc.entities})
    gi = np.concatenate([np.full(len(g["xy"]), i) for i, g in enumerate(groups)])
    host_tier = tier[hosts]
    allowed = np.array(
        [
            [({1: "edge", 2: "region", 3: "cloud"}[int(t)] in g.allowed_tiers) for t in host_tier]
            for g in sc.entities
        ],
        dtype=bool,
    )
    mobility = []
    start = 0
    for g in groups:
        count = len(g["xy"])
        mobility.append((slice(start, start + count), g["mobility"]))
        start += count
    return World(
        name=sc.name,
        bounds_m=np.asarray(bounds, dtype=float),
        node_ids=nodes.ids,
        node_tier=tier,
        node_xy_m=xy,
        node_cpu_ghz=cpu,
        node_mem_gb=mem,
        node_idle_w=idle,
        node_max_w=mx,
        node_coverage_m=cov,
        node_domain=dom,
        node_commit_ms=commit,
        node_commit_curve=nodes.curves or None,
        domains=domains,
        links=links,
        access=access,
        hosts=hosts,
        ap_host_ms=np.ascontiguousarray(paths.host_node_ms[:, access].T),
        host_host_ms=paths.host_node_ms[:, hosts],
        host_host_mbps=paths.host_node_mbps[:, hosts],
        entity_ids=ent["ids"],
        entity_kind=np.array([kinds.index(k) for k in ent["kind"]], dtype=np.int32),
        kinds=kinds,
        entity_owner=np.array([owners.index(o) for o in ent["owner"]], dtype=np.int32),
        owners=owners,
        entity_group=gi.astype(np.int32),
        group_allowed=allowed,
        xy_m=ent["xy"],
        cpu_ghz=ent["cpu_ghz"],
        mem_gb=ent["mem_gb"],
        state_bytes=ent["state_bytes"],
        update_bytes=ent["update_bytes"],
        update_hz=ent["update_hz"],
        work_gcycles=ent["work_gcycles"],
        latency_req_ms=ent["latency_req_ms"],
        tx_power_w=ent["tx_power_w"],
        radio=sc.radio,
        mobility=mobility,
    )


Samples = tuple[list[str], np.ndarray, np.ndarray, np.ndarray]
"""A read trace: ids, offsets, times and positions in metres."""


def _traces(
    sc: Scenario, origin: tuple[float, float] | None
) -> tuple[dict[int, Samples], tuple[float, float] | None]:
    """The trace of every trace group (by group index), positions in metres; lat/lon is
    projected about the origin (without one, the mean of the first lat/lon trace)."""
    out: dict[int, Samples] = {}
    for gi, g in enumerate(sc.entities):
        if isinstance(g.mobility, Trace):
            tids, offsets, t, pos, is_ll = read_trace(g.mobility.file, g.mobility.path_step_s)
            if is_ll:
                if origin is None:
                    origin = (float(pos[:, 0].mean()), float(pos[:, 1].mean()))
                pos = latlon_to_xy_m(pos[:, 0], pos[:, 1], *origin)
            out[gi] = (tids, offsets, t, pos)
    return out, origin


def _entities(
    sc: Scenario,
    bounds: np.ndarray,
    origin: tuple[float, float] | None,
    rng: np.random.Generator,
    network_only: bool,
    traces: dict[int, Samples],
) -> list[dict]:
    out = []
    lo, hi = bounds[:2], bounds[2:]
    for gi, g in enumerate(sc.entities):
        trace = None
        if g.count is not None:
            n = g.count
            xy = lo + rng.random((n, 2)) * (hi - lo)
            ids = [f"{g.kind}-{gi}-{k}" for k in range(n)]
        elif g.positions_m is not None:
            xy = np.array(g.positions_m, dtype=float).reshape(-1, 2)
            n = len(xy)
            ids = [f"{g.kind}-{gi}-{k}" for k in range(n)]
        elif g.positions_csv is not None:
            pts, is_ll, _ = _read_points(g.positions_csv)
            if is_ll:
                assert origin is not None  # without a configured origin, _origin averages these
                xy = latlon_to_xy_m(pts[:, 0], pts[:, 1], *origin)
            else:
                xy = pts
            n = len(xy)
            ids = [f"{g.kind}-{gi}-{k}" for k in range(n)]
        else:
            assert isinstance(g.mobility, Trace)
            trace = traces[gi]
            tids = trace[0]
            n = len(tids)
            ids = tids
            xy = None
        mob = make_mobility(g.mobility, n, bounds, xy, rng, trace)
        if xy is None:
            xy = mob.positions(0.0)
        d = g.twin
        out.append(
            {
                "ids": np.array(ids, dtype=object),
                "kind": np.array([g.kind] * n, dtype=object),
                "owner": np.array([g.owner] * n, dtype=object),
                "xy": np.asarray(xy, dtype=float).reshape(n, 2).copy(),
                **{f: draw(getattr(d, f), n, rng) for f in DEMAND_FIELDS},
                "mobility": mob,
            }
        )
    if sum(len(g["xy"]) for g in out) == 0 and not network_only:
        raise ScenarioError(["entities: the scenario has no entities (every group has count 0)"])
    return out
