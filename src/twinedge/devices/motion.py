"""Where the emulated devices are: the scenario's mobility models, stepped exactly as
``twinedge run`` steps them and sampled at any instant.

Randomness follows :func:`twinedge.engine.simulation.simulate`: the root generator of the
seed is split with ``spawn(3)`` into the world, mobility and policy streams; the world is
built from the first and the entities are moved with the second. The positions after
``k`` steps are therefore the simulator's positions at ``t_s = k * run.step_s`` for the
same scenario and seed, bit for bit.

Between two steps a position is interpolated linearly, and the velocity reported is
that of the step's straight segment, ``(xy(t_k+1) - xy(t_k)) / step_s``. The whole world
is stepped (not only the entities that have devices), because the mobility models draw
random numbers for every entity of a group and a partial step would change the stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from twinedge.errors import ScenarioError
from twinedge.scenario.schema import Scenario
from twinedge.world import World, build_world
from twinedge.world.budget import check_scenario_memory
from twinedge.world.network import TIER_CODE

#: the twin demand fields of an entity, as the scenario names them (``entities[].twin``)
DEMAND_FIELDS = (
    "cpu_ghz",
    "mem_gb",
    "state_bytes",
    "update_bytes",
    "update_hz",
    "work_gcycles",
    "latency_req_ms",
    "tx_power_w",
)


@dataclass(frozen=True)
class Entity:
    """One entity of the world, as a device describes itself when it is provisioned.

    Parameters:
        index: its row in the world's arrays.
        entity_id: its id in the scenario (``vehicle-0-3``, or the id of a trace).
        kind, owner: the labels of its group.
        demand: its twin's demand, keyed by :data:`DEMAND_FIELDS`.
        allowed_tiers: the host tiers its twin may use.
        xy_m: its initial position (metres in the scenario frame).
    """

    index: int
    entity_id: str
    kind: str
    owner: str
    demand: dict[str, float]
    allowed_tiers: tuple[str, ...]
    xy_m: tuple[float, float]


def split_seed(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The world and mobility streams of ``seed``, as ``simulate`` makes them.

    Examples:
        >>> w, m = split_seed(0)
        >>> float(w.random()) != float(m.random())
        True
    """
    world_rng, mobility_rng, _policy_rng = np.random.default_rng(seed).spawn(3)
    return world_rng, mobility_rng


class FleetMotion:
    """The positions of a world's entities over virtual time.

    Parameters:
        world: built with :func:`twinedge.world.build_world` (its mobility models carry
            state: give every ``FleetMotion`` a world of its own).
        step_s: the scenario's ``run.step_s``.
        rng: the mobility stream (see :func:`split_seed`).
        allowed_tiers: the host tiers of each entity group, as the scenario lists them
            (default: the tiers of the hosts the group may use).

    Time only moves forward: :meth:`sample` and :meth:`advance` refuse a time earlier
    than the step they are at.

    Examples:
        >>> from twinedge.scenario import load_scenario
        >>> motion = FleetMotion.from_scenario(load_scenario("city-small"), seed=0)
        >>> x, y, vx, vy = motion.sample(0, 0.5)
        >>> motion.step_index
        0
    """

    def __init__(
        self,
        world: World,
        step_s: float,
        rng: np.random.Generator,
        allowed_tiers: Sequence[tuple[str, ...]] | None = None,
    ):
        if not step_s > 0:
            raise ValueError(f"step_s must be positive, got {step_s!r}")
        self.world, self.step_s, self.rng = world, float(step_s), rng
        self.allowed_tiers = allowed_tiers
        self.step_index = 0
        self.lo_xy_m = world.xy_m.copy()  # positions at t_k = step_index * step_s
        self.hi_xy_m = self._stepped(self.lo_xy_m, 0)  # positions at t_k+1
        self.velocity_mps = (self.hi_xy_m - self.lo_xy_m) / self.step_s

    @classmethod
    def from_scenario(
        cls, scenario: Scenario, seed: int | None = None, source: str | None = None
    ) -> FleetMotion:
        """Build the world of ``scenario`` as ``twinedge run`` does for ``seed`` (default:
        the scenario's ``run.seed``).

        Raises:
            ScenarioError: the world cannot be built, or would not fit in memory.
        """
        seed = scenario.run.seed if seed is None else seed
        world_rng, mobility_rng = split_seed(seed)
        check_scenario_memory(scenario, source or scenario.name, steps=1)
        world = build_world(scenario, world_rng)
        tiers = [tuple(g.allowed_tiers) for g in scenario.entities]
        return cls(world, scenario.run.step_s, mobility_rng, tiers)

    @property
    def n_entities(self) -> int:
        return self.world.n_entities

    def entities(self, count: int, source: str | None = None) -> list[Entity]:
        """The first ``count`` entities of the world.

        Parameters:
            count: how many.
            source: how to name the scenario in the error (its file; default its name).

        Raises:
            ScenarioError: the world has fewer than ``count`` entities (or ``count < 1``).
        """
        w = self.world
        if count < 1 or count > w.n_entities:
            n = w.n_entities
            raise ScenarioError(
                [
                    f"{source or w.name}: --count: got {count}; expected 1..{n} "
                    f"(the scenario has {n:,} {'entity' if n == 1 else 'entities'})"
                ]
            )
        tier_name = {code: name for name, code in TIER_CODE.items()}
        host_tiers = [tier_name[int(t)] for t in w.host_tier]
        out = []
        for i in range(count):
            group = int(w.entity_group[i])
            if self.allowed_tiers is not None:
                tiers = self.allowed_tiers[group]
            else:  # the tiers of the hosts the group may use
                ok = w.group_allowed[group]
                tiers = tuple(sorted({t for t, a in zip(host_tiers, ok, strict=True) if a}))
            out.append(
                Entity(
                    index=i,
                    entity_id=str(w.entity_ids[i]),
                    kind=w.kinds[int(w.entity_kind[i])],
                    owner=w.owners[int(w.entity_owner[i])],
                    demand={f: float(getattr(w, f)[i]) for f in DEMAND_FIELDS},
                    allowed_tiers=tiers,
                    xy_m=(float(w.xy_m[i, 0]), float(w.xy_m[i, 1])),
                )
            )
        return out

    def _stepped(self, xy_m: np.ndarray, k: int) -> np.ndarray:
        """The positions one step after ``xy_m`` (at ``t_k``), as ``Simulation._move``
        moves them: each group's model on its slice, with the mobility stream."""
        xy = xy_m.copy()
        t_s = k * self.step_s
        for sl, model in self.world.mobility:
            view = xy[sl]
            model.step(view, t_s, self.step_s, self.rng)
            xy[sl] = view
        return xy

    def advance(self, t_s: float) -> None:
        """Step the world until ``t_s`` lies in the current step ``[t_k, t_k+1)``.

        Raises:
            ValueError: ``t_s`` is earlier than the current step.
        """
        t_k = self.step_index * self.step_s
        if t_s < t_k:
            raise ValueError(f"time moves forward only: asked for t_s={t_s}, at step t_s={t_k}")
        stepped = False
        while t_s >= (self.step_index + 1) * self.step_s:
            self.step_index += 1
            self.lo_xy_m = self.hi_xy_m
            self.hi_xy_m = self._stepped(self.lo_xy_m, self.step_index)
            stepped = True
        if stepped:
            self.velocity_mps = (self.hi_xy_m - self.lo_xy_m) / self.step_s

    def sample(self, index: int, t_s: float) -> tuple[float, float, float, float]:
        """``(x_m, y_m, vx_mps, vy_mps)`` of entity ``index`` at virtual time ``t_s``:
        the simulator's position at a step time, linear in between.

        Raises:
            ValueError: ``t_s`` is earlier than the current step.
        """
        self.advance(t_s)
        frac = (t_s - self.step_index * self.step_s) / self.step_s
        lo, v = self.lo_xy_m[index], self.velocity_mps[index]
        if frac == 0.0:  # at a step time: the simulator's value itself
            x, y = float(lo[0]), float(lo[1])
        else:
            d = self.hi_xy_m[index] - lo
            x, y = float(lo[0] + d[0] * frac), float(lo[1] + d[1] * frac)
        return x, y, float(v[0]), float(v[1])
