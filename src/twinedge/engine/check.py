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
    offload: str | None = None,
) -> World:
    """Check that ``sc`` can run with these overrides; return the world it builds.

    Parameters:
        sc: a validated scenario.
        source: where it came from (a file name), for the messages.
        steps, placement, migration, offload: command-line overrides (``None``: the
            scenario's); policies are comma-separated names or import paths.

    Raises:
        ScenarioError: the run would not fit in memory, or the world cannot be built.
        PolicyError: a policy cannot be resolved with its parameters.
        InfeasibleError: a carbon job's window does not fit (:func:`check_services`).
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
    check_services(sc, world, source, steps=steps, offload=offload)
    return world


def check_services(
    sc: Scenario, world: World, source: str, *, steps: int, offload: str | None = None
) -> None:
    """The checks of the scenario's service sections that need the world: the
    offloading policy (or ``offload``, from the command line) resolves with its
    parameters, and the carbon section's series cover the run and its jobs fit.

    Raises:
        PolicyError: an unknown offloading policy or bad parameters.
        ScenarioError: a series does not cover the run, or a node is not a host.
        InfeasibleError: a carbon job's window does not fit the scheduler's slots.
    """
    if offload is not None and sc.offloading is None:
        raise PolicyError(
            f"--offload {offload}: {source} has no offloading section (docs/offload.md)"
        )
    if sc.offloading is not None:
        from twinedge.errors import OffloadError
        from twinedge.offload.policies import resolve_offload_policy

        given = offload or sc.offloading.policy
        where = "--offload" if offload else f"{source}: offloading.policy"
        for name in Policies.as_list(given):
            try:
                resolve_offload_policy(name, **sc.offloading.policy_params.get(name, {}))
            except (OffloadError, PolicyError) as exc:
                raise PolicyError(f"{where}: {exc}") from None
    if sc.carbon is not None:
        from twinedge.carbon.run import CarbonRun

        CarbonRun(sc.carbon, world, sc.run.step_s, steps, np.random.default_rng(0))


def check_world_memory(world: World, steps: int, source: str) -> None:
    """The memory budget with the sizes a built world has."""
    sizes = Sizes(world.n_entities, world.n_hosts, len(world.node_ids), steps)
    fields = {"entities": "entities", "nodes": "infrastructure", "steps": "run.steps"}
    check_memory(sizes, fields, source)
