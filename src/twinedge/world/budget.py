"""Memory budget of a run: refuse a scenario that cannot fit before allocating anything.

A run holds, per entity, its ids, demand, position and state (about
:data:`BYTES_PER_ENTITY`); per entity and host the placement problem's latency matrix and
its temporaries (:data:`BYTES_PER_PAIR`); per host and node the backbone's shortest
paths; per step the metrics (utilisation of every host, trails, step values). The
estimate is deliberately rough (within a small factor) and is compared with the
machine's physical memory: ``count: 1e9`` or ``steps: 1e12`` is refused with the estimate
instead of dying in the allocator.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from twinedge.errors import ScenarioError
from twinedge.scenario.schema import Scenario, Trace

BYTES_PER_ENTITY = 1024
BYTES_PER_PAIR = 64
BYTES_PER_PATH = 48
BYTES_PER_NODE = 512
BYTES_PER_TRACE_ROW = 128
TRAILS = 12


def machine_memory_bytes() -> int:
    """Physical memory of this machine (8 GiB when the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not on Linux/macOS
        return 8 * 2**30


@dataclass(frozen=True)
class Sizes:
    """What a run's memory grows with."""

    entities: int
    hosts: int
    nodes: int
    steps: int
    trace_rows: int = 0

    def terms(self) -> dict[str, int]:
        """Bytes by cause."""
        return {
            "entities": self.entities * BYTES_PER_ENTITY
            + self.entities * self.hosts * BYTES_PER_PAIR
            + self.trace_rows * BYTES_PER_TRACE_ROW,
            "nodes": self.nodes * BYTES_PER_NODE + self.hosts * self.nodes * BYTES_PER_PATH,
            "steps": self.steps * (self.hosts * 4 + TRAILS * 8 + 11 * 8),
        }

    def bytes(self) -> int:
        return sum(self.terms().values())


FCD_GZ_BYTES_PER_ROW = 18
"""Compressed bytes per sample of a gzipped SUMO FCD file (SUMO's default sample line is
about 145 bytes and gzip shrinks it about eightfold): the row estimate of a ``.gz``
trace."""


def _lines(path: Path) -> int:
    """Data rows of a CSV file (lines after the header), counted without parsing; for a
    gzipped file, estimated from its size."""
    if path.name.lower().endswith(".gz"):
        try:
            return path.stat().st_size // FCD_GZ_BYTES_PER_ROW + 1
        except OSError:
            return 0
    n = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                n += chunk.count(b"\n")
    except OSError:
        return 0  # the loader reports the unreadable file
    return max(n - 1, 0) + 1


def declared_sizes(sc: Scenario, steps: int | None = None) -> tuple[Sizes, dict[str, str]]:
    """Sizes a scenario declares (counts, generator sizes, CSV line counts), before
    anything is built, and for each cause the field that drives it."""
    infra = sc.infrastructure
    nodes = len(infra.nodes)
    hosts = sum(1 for n in infra.nodes if n.tier != "access")
    node_field = "infrastructure.nodes"
    if infra.generate is not None:
        g = infra.generate
        nodes += 2 * g.edge_sites + g.regions + 1
        hosts += g.edge_sites + g.regions + 1
        node_field = "infrastructure.generate." + (
            "edge_sites" if g.edge_sites >= g.regions else "regions"
        )
    if infra.eua is not None:
        sites = _lines(infra.eua.sites_csv)
        nodes += 2 * sites + infra.eua.regions + 1
        hosts += sites + infra.eua.regions + 1
        node_field = "infrastructure.eua.sites_csv"
    if infra.ifogsim is not None:
        rows = _lines(infra.ifogsim.resources_csv)
        nodes += 2 * rows  # a gateway is an edge server and an access point
        hosts += rows
        node_field = "infrastructure.ifogsim.resources_csv"
    entities, rows, biggest, ent_field = 0, 0, -1, "entities"
    for i, grp in enumerate(sc.entities):
        if grp.count is not None:
            n, f = grp.count, f"entities[{i}].count"
        elif grp.positions_m is not None:
            n, f = len(grp.positions_m), f"entities[{i}].positions_m"
        elif grp.positions_csv is not None:
            n, f = _lines(grp.positions_csv), f"entities[{i}].positions_csv"
        else:
            assert isinstance(grp.mobility, Trace)
            r = _lines(grp.mobility.file)
            rows += r
            n, f = 1, f"entities[{i}].mobility.file"
        entities += n
        if n > biggest:
            biggest, ent_field = n, f
    s = steps if steps is not None else sc.run.steps
    fields = {"entities": ent_field, "nodes": node_field, "steps": "run.steps"}
    return Sizes(entities, max(hosts, 1), max(nodes, 1), s, rows), fields


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n < 1e12 else f"{n / 1e12:,.3g} TB"


def check_memory(
    sizes: Sizes, fields: dict[str, str], source: str, values: dict[str, object] | None = None
) -> None:
    """Raise :class:`ScenarioError` naming the field that drives the estimate when a run of
    ``sizes`` would need more memory than the machine has."""
    need, have = sizes.bytes(), machine_memory_bytes()
    if need <= have:
        return
    terms = sizes.terms()
    cause = max(terms, key=lambda k: terms[k])
    field = fields[cause]
    got = (values or {}).get(field)
    got_text = f"got {got!r}; " if got is not None else ""
    raise ScenarioError(
        [
            f"{source}: {field}: {got_text}a run would need about {_gb(need)} of memory "
            f"({sizes.entities:,} entities, {sizes.hosts:,} hosts, {sizes.nodes:,} nodes, "
            f"{sizes.steps:,} steps) and this machine has {_gb(have)}; expected a smaller scenario"
        ]
    )


def check_scenario_memory(sc: Scenario, source: str, steps: int | None = None) -> None:
    """The memory check of a scenario as declared, before anything is built; ``steps``
    overrides the scenario's (``--steps``)."""
    sizes, fields = declared_sizes(sc, steps)
    if steps is not None and steps != sc.run.steps:
        fields["steps"] = "--steps"
    values: dict[str, object] = {fields["steps"]: sizes.steps}
    infra = sc.infrastructure
    if infra.generate is not None:
        values["infrastructure.generate.edge_sites"] = infra.generate.edge_sites
        values["infrastructure.generate.regions"] = infra.generate.regions
    for i, g in enumerate(sc.entities):
        if g.count is not None:
            values[f"entities[{i}].count"] = g.count
    check_memory(sizes, fields, source, values)
