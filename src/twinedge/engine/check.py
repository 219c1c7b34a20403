"""The one validation of a run, shared by ``twinedge scenario validate`` and ``twinedge run``.

``validate`` must refuse everything ``run`` would refuse, so both call
:func:`check_run`: the memory budget as declared (before anything is allocated), every
policy of every combination resolved with its parameters, the world built, and the
memory budget again with the sizes the world actually has.
"""

from __future__ import annotations

import numpy as np

from twinedge.errors import PolicyError
from twinedge.policies.migration import resolve_migration
from twinedge.policies.placement import resolve_placement
from twinedge.scenario.schema import Policies, Scenario
from twinedge.world import World, build_world
from twinedge.world.budget import Sizes, check_memory, check_scenario_memory


def check_run(
    sc: Scenario,
    source: str,
    *,
    steps: int | None = None,
    placement: str | None = None,
    migration: str | None = None,
) -> World:
    """Check that ``sc`` can run with these overrides; return the world it builds.

    Parameters:
        sc: a validated scenario.
        source: where it came from (a file name), for the messages.
        steps, placement, migration: command-line overrides (``None``: the scenario's);
            policies are comma-separated names or import paths.

    Raises:
        ScenarioError: the run would not fit in memory, or the world cannot be built.
        PolicyError: a policy cannot be resolved with its parameters.
    """
    steps = steps or sc.run.steps
    check_scenario_memory(sc, source, steps)
    pol = sc.policies
    for kind, given, resolver, params in (
        ("placement", placement, resolve_placement, pol.placement_params),
        ("migration", migration, resolve_migration, pol.migration_params),
    ):
        where = f"--{kind}" if given else f"{source}: policies.{kind}"
        names = Policies.as_list(given or getattr(pol, kind))
        if not names:
            raise PolicyError(f"{where}: expected at least one {kind} policy name")
        for name in names:
            try:
                resolver(name, **params.get(name, {}))
            except PolicyError as exc:
                raise PolicyError(f"{where}: {exc}") from exc
    world = build_world(sc, np.random.default_rng(sc.run.seed))
    check_world_memory(world, steps, source)
    return world


def check_world_memory(world: World, steps: int, source: str) -> None:
    """The memory budget with the sizes a built world has."""
    sizes = Sizes(world.n_entities, world.n_hosts, len(world.node_ids), steps)
    fields = {"entities": "entities", "nodes": "infrastructure", "steps": "run.steps"}
    check_memory(sizes, fields, source)
