"""Scale a scenario up (or down) with its capacity in proportion.

Multiplying only the entities of a scenario overloads its hosts: at ten times the
built-in city's entities every edge host is full, no twin finds a host with room and every
migration policy gives the ``never`` result. :func:`scale_scenario` multiplies the
entities *and* the infrastructure that serves them, so the load per host, and with it
the comparison between policies, stays what it was:

- a generated city (``infrastructure.generate``) becomes ``factor`` times larger in
  area (each side times ``sqrt(factor)``) with ``factor`` times the edge sites and
  region hubs, and the cloud's capacity times ``factor``: the density of sites and of
  entities, the capacity of every edge and region host, and the distances between an
  entity and its nearest sites stay as they were (it is like laying ``factor`` cities
  side by side);
- an EUA site file or explicit nodes cannot grow in area: there the capacity (CPU and
  memory) of every edge, region and cloud host is multiplied by ``factor`` instead (the
  load per host stays; service times, ``work / cpu``, shrink in proportion);
- every entity group given by ``count`` has ``round(factor * count)`` entities; a
  scenario-level ``area_m`` grows like a generated city's.

Entities given one by one (``positions_m``, ``positions_csv``, a trace) cannot be
multiplied, and such a scenario is refused.
"""

from __future__ import annotations

import math
from typing import Any

from twinedge.errors import ScenarioError
from twinedge.scenario.schema import Scenario, Trace

_HOST_TIERS = ("edge", "region", "cloud")


def scale_scenario(sc: Scenario, factor: float) -> Scenario:
    """``sc`` with ``factor`` times the entities and the capacity to serve them.

    Parameters:
        sc: a validated scenario.
        factor: how many times larger (``> 0``; ``1`` returns ``sc`` itself).

    Returns:
        A new, validated scenario named ``{name}-x{factor}``.

    Raises:
        ScenarioError: ``factor`` is not a positive finite number, or an entity group is
            given one entity at a time (positions or a trace), which cannot be scaled.

    Examples:
        >>> from twinedge.scenario import load_scenario
        >>> big = scale_scenario(load_scenario("city"), 3)
        >>> big.name, big.infrastructure.generate.edge_sites, [g.count for g in big.entities]
        ('city-x3', 180, [3600, 1800, 600])
    """
    if not (isinstance(factor, int | float) and math.isfinite(factor) and factor > 0):
        raise ScenarioError([f"--scale: got {factor!r}; expected a number > 0"])
    if factor == 1:
        return sc
    bad = [
        f"entities[{i}] ({g.kind}): --scale multiplies entity counts; this group is given "
        "one entity at a time (positions or a trace); give it a count instead"
        for i, g in enumerate(sc.entities)
        if g.count is None or isinstance(g.mobility, Trace)
    ]
    if bad:
        raise ScenarioError(bad)
    side = math.sqrt(factor)
    d = sc.model_dump()
    d["name"] = f"{sc.name}-x{factor:g}"
    if d.get("area_m") is not None:
        d["area_m"] = [v * side for v in d["area_m"]]
    for g in d["entities"]:
        g["count"] = round(g["count"] * factor)
    infra: dict[str, Any] = d["infrastructure"]
    gen = infra.get("generate")
    if gen is not None:
        gen["area_m"] = [v * side for v in gen["area_m"]]
        gen["edge_sites"] = max(1, round(gen["edge_sites"] * factor))
        gen["regions"] = max(1, round(gen["regions"] * factor))
        gen["cloud_cpu_ghz"] *= factor
        gen["cloud_mem_gb"] *= factor
    eua = infra.get("eua")
    if eua is not None:
        for key in ("edge_cpu_ghz", "edge_mem_gb", "region_cpu_ghz", "region_mem_gb"):
            eua[key] = _times(eua[key], factor)
        eua["cloud_cpu_ghz"] *= factor
        eua["cloud_mem_gb"] *= factor
    for node in infra.get("nodes") or []:
        if node.get("tier") in _HOST_TIERS:
            node["cpu_ghz"] *= factor
            node["mem_gb"] *= factor
    return Scenario.model_validate(d)


def _times(value: Any, factor: float) -> Any:
    """A number or a ``[min, max]`` range times ``factor``."""
    if isinstance(value, list | tuple):
        return [v * factor for v in value]
    return value * factor
