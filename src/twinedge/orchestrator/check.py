"""``check_policy``: the conformance checks every policy must pass, the way
scikit-learn's ``check_estimator`` checks an estimator. Run it on your own policy before
you use it in a study or a live network."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from twinedge.errors import PolicyError, TwinedgeError
from twinedge.orchestrator.view import NetworkState
from twinedge.policies.base import KINDS, PolicyKind
from twinedge.world.state import World


def check_policy(
    policy: Any, kind: PolicyKind | None = None, *, seed: int = 0, **params: Any
) -> list[str]:
    """Run the conformance checks on ``policy`` and return the names of those it passed.

    The checks drive the policy through a real :class:`~twinedge.orchestrator.Orchestrator`
    on the built-in ``city-small`` network: it resolves to the kind asked for; built-in
    style parameters survive ``get_params``/``set_params`` and cloning; its decision has
    its kind's type and passes the orchestrator's validation (indices, allowed hosts,
    capacity) at the start and after the entities have moved; it is deterministic for a
    given random stream; it does not write to the view; it copes with a network without
    twins and with a single twin.

    Parameters:
        policy: a name, import path, class, instance or function (as ``as_policy`` takes).
        kind: ``"placement"`` or ``"migration"``; may be left out when the policy has a
            ``kind`` attribute.
        seed: seeds the network and the random streams.
        params: parameters for a policy given by name or class.

    Raises:
        PolicyError: one line per failed check.

    Examples:
        >>> check_policy("threshold", "migration")[:2]
        ['resolves', 'params']
    """
    from twinedge.engine.simulation import move_entities
    from twinedge.orchestrator.core import Orchestrator
    from twinedge.orchestrator.policy import as_policy
    from twinedge.scenario import load_scenario
    from twinedge.world import build_world

    kind = kind or getattr(policy, "kind", None)
    if kind not in KINDS:
        raise PolicyError(f"check_policy: say which kind of policy this is: kind={KINDS}")
    pol = as_policy(policy, kind, **params)
    passed = ["resolves"]
    failures: list[str] = []

    def check(name: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except (TwinedgeError, AssertionError) as exc:
            failures.append(f"{name}: {exc}")
        else:
            passed.append(name)

    def fresh() -> World:
        return build_world(load_scenario("city-small"), np.random.default_rng(seed))

    placement, migration = (pol, "never") if kind == "placement" else ("greedy", pol)

    def run(world: World, steps: int) -> list[np.ndarray]:
        """Place, then move the entities and run a cycle (re-placing every step) ``steps``
        times; every decision passes the orchestrator's validation on the way."""
        state = NetworkState.at(world, world.xy_m)
        orch = Orchestrator(
            placement, migration, step_s=1.0, placement_period_s=1.0,
            rng=np.random.default_rng(seed),
        )  # fmt: skip
        decisions = [orch.place(world, state).hosts.copy()]
        mobility_rng = np.random.default_rng(seed + 1)
        for k in range(steps):
            move_entities(world, state, 1.0, mobility_rng)
            state.t_s = k + 1.0
            orch.evaluate(world, state)
            decisions += orch.cycle(world, state, k).moves()
        return decisions

    def params_roundtrip() -> None:
        get = getattr(pol, "get_params", None)
        if get is None:
            return
        p = get()
        clone: Any = type(pol)(**p)
        assert clone.get_params() == p, f"a clone has other parameters: {clone.get_params()} != {p}"
        pol.set_params(**p)  # type: ignore[attr-defined]
        assert get() == p, "set_params(**get_params()) changed the parameters"

    def deterministic() -> None:
        a, b = run(fresh(), 3), run(fresh(), 3)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), (
            "two runs with the same random streams decided differently"
        )

    check("params", params_roundtrip)
    check("valid decisions", lambda: run(fresh(), 3))
    check("deterministic", deterministic)
    check("no twins", lambda: run(fresh().select(np.zeros(0, dtype=np.int64)), 1))
    check("one twin", lambda: run(fresh().select(np.arange(1)), 1))
    if failures:
        from twinedge.orchestrator.policy import policy_name

        label = policy if isinstance(policy, str) else policy_name(pol)  # a function by name
        raise PolicyError(
            f"{kind} policy {label!r} failed {len(failures)} check(s):\n  " + "\n  ".join(failures)
        )
    return passed
