"""Twin placement: choose one edge host per twin, minimising total latency under capacity.

A placement policy is any callable ``policy(problem, rng)`` returning either a
:class:`PlacementResult` or a bare integer array of host indices (one per twin). The
built-ins are small classes configured in ``__init__`` (like scikit-learn estimators)
and registered by name in :data:`PLACEMENT_POLICIES`; a user policy is loaded by import
path (``mypkg.mymod:my_policy``) and treated exactly like a built-in: the runner
:func:`solve_placement` times it and checks its answer against the capacities.

Example::

    import numpy as np
    from twinedge.policies.placement import load_instance, resolve_placement, solve_placement

    problem = load_instance("instance.json")
    policy = resolve_placement("optimal", time_limit_s=10)
    result = solve_placement(policy, problem, np.random.default_rng(0))
    print(result.status, result.objective_ms, result.gap)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from twinedge.errors import (
    InfeasibleError,
    InputError,
    PolicyError,
    ScenarioError,
    TwinedgeError,
)
from twinedge.policies.placement.base import (
    PlacementProblem,
    PlacementResult,
    candidate_hosts,
    check_totals,
    random_instance,
    relative_gap,
    residual_capacity,
)
from twinedge.policies.placement.greedy import GreedyPlacement
from twinedge.policies.placement.nearest import NearestPlacement
from twinedge.policies.placement.optimal import OptimalPlacement
from twinedge.policies.registry import resolve
from twinedge.scenario.inputs import load_json, read_text

PlacementPolicy = Callable[[PlacementProblem, np.random.Generator], "np.ndarray | PlacementResult"]

PLACEMENT_POLICIES: dict[str, type] = {
    "nearest": NearestPlacement,
    "greedy": GreedyPlacement,
    "optimal": OptimalPlacement,
}

__all__ = [
    "PLACEMENT_POLICIES",
    "GreedyPlacement",
    "NearestPlacement",
    "OptimalPlacement",
    "PlacementPolicy",
    "PlacementProblem",
    "PlacementResult",
    "candidate_hosts",
    "check_totals",
    "load_instance",
    "problem_from_json",
    "random_instance",
    "relative_gap",
    "residual_capacity",
    "resolve_placement",
    "solve_placement",
]


def resolve_placement(spec: str, **params: Any) -> PlacementPolicy:
    """Turn a policy name or import path into a callable ``policy(problem, rng)``.

    ``spec`` is a registered name (see :data:`PLACEMENT_POLICIES`) or
    ``"package.module:attribute"``. A class is instantiated with ``params``; a
    function is used as is (it cannot take ``params``). Raises :class:`PolicyError`
    naming the known policies when ``spec`` cannot be resolved.
    """
    return resolve(spec, PLACEMENT_POLICIES, "placement", **params)


def _policy_label(policy: Any) -> str:
    name = getattr(policy, "name", None)
    if isinstance(name, str):
        return name
    return getattr(policy, "__name__", None) or type(policy).__name__


def solve_placement(
    policy: PlacementPolicy, problem: PlacementProblem, rng: np.random.Generator
) -> PlacementResult:
    """Run ``policy`` on ``problem``, check its answer and time it.

    A bare host array is wrapped as a ``"feasible"`` result with its objective and no
    bound. Any answer that breaks a capacity, uses a disallowed pair or has the wrong
    shape raises :class:`PolicyError` naming the host and resource. A result whose
    ``info`` names a ``utilisation_cap`` is checked and scored on the load-aware problem
    it solved (:meth:`PlacementProblem.with_utilisation_cap`).
    :class:`InfeasibleError` from the policy propagates unchanged.
    """
    label = _policy_label(policy)
    t0 = time.perf_counter()
    try:
        out = policy(problem, rng)
    except TwinedgeError:
        raise
    except Exception as exc:
        raise PolicyError(f"placement policy {label!r} raised {type(exc).__name__}: {exc}") from exc
    solve_s = time.perf_counter() - t0
    if isinstance(out, PlacementResult):
        result = out
        if result.status == "infeasible":
            raise InfeasibleError(f"placement policy {label!r} reported the instance infeasible")
    else:
        try:
            raw = np.asarray(out)
        except Exception as exc:
            raise PolicyError(
                f"placement policy {label!r} returned {type(out).__name__}; expected an "
                "integer array of host indices or a PlacementResult"
            ) from exc
        if (
            raw.dtype.kind == "f"
            and raw.size
            and np.all(np.isfinite(raw))
            and np.all(raw == np.round(raw))
        ):
            raw = raw.astype(np.int64)
        result = PlacementResult(status="feasible", hosts=raw, objective_ms=float("nan"))
    hosts = np.asarray(result.hosts)
    cap = result.info.get("utilisation_cap")
    if cap is not None:  # a load-aware policy: its objective and bound are of this problem
        problem = problem.with_utilisation_cap(float(cap))
    try:
        problem.check(hosts)
    except InfeasibleError as exc:
        raise PolicyError(
            f"placement policy {label!r} returned an invalid placement: {exc}"
        ) from exc
    result.hosts = hosts.astype(np.int64)
    result.objective_ms = problem.objective_ms(result.hosts)
    if math.isfinite(result.lower_bound_ms):
        result.gap = (
            0.0
            if result.status == "optimal"
            else relative_gap(result.objective_ms, result.lower_bound_ms)
        )
    result.solve_s = solve_s
    return result


# -- the instance JSON format -----------------------------------------------------------


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _vector(obj: Any, path: str, size: int | None, where: str, problems: list[str]):
    if not isinstance(obj, list):
        problems.append(f"{where}: {path}: got {_show(obj)}; expected a list of numbers >= 0")
        return None
    bad = 0
    for k, v in enumerate(obj):
        if not _is_num(v) or v < 0:
            if bad < 5:
                problems.append(f"{where}: {path}[{k}]: got {_show(v)}; expected a number >= 0")
            bad += 1
    if bad > 5:
        problems.append(f"{where}: {path}: ... and {bad - 5} more bad values")
    if size is not None and len(obj) != size:
        problems.append(
            f"{where}: {path}: got {len(obj)} values; expected {size} (one per "
            f"{'twin' if path.startswith('demand') else 'host'})"
        )
    return None if bad else np.asarray(obj, dtype=float)


def problem_from_json(obj: Any, source: str = "<instance>") -> PlacementProblem:
    """Build a :class:`PlacementProblem` from the instance JSON object.

    Format: ``{"latency_ms": [[...], ...] (twins x hosts, null = not allowed),
    "demand": {"cpu_ghz": [...], "mem_gb": [...]},
    "capacity": {"cpu_ghz": [...], "mem_gb": [...]}}``. Raises :class:`ScenarioError`
    with one ``SOURCE: field.path: got VALUE; expected ...`` line per problem.
    """
    where = source
    problems: list[str] = []
    if not isinstance(obj, dict):
        raise ScenarioError(
            [
                f"{where}: (top level): got {_show(obj)}; expected an object with keys "
                "latency_ms, demand, capacity"
            ]
        )
    for key in obj:
        if key not in ("latency_ms", "demand", "capacity"):
            problems.append(
                f"{where}: {key}: got an unknown field; expected only latency_ms, demand, capacity"
            )
    groups: dict[str, dict] = {}
    for group in ("demand", "capacity"):
        g = obj.get(group)
        if g is None:
            problems.append(
                f"{where}: {group}: got nothing; expected an object "
                '{"cpu_ghz": [...], "mem_gb": [...]}'
            )
        elif not isinstance(g, dict):
            problems.append(
                f"{where}: {group}: got {_show(g)}; expected an object "
                '{"cpu_ghz": [...], "mem_gb": [...]}'
            )
        else:
            for key in g:
                if key not in ("cpu_ghz", "mem_gb"):
                    problems.append(
                        f"{where}: {group}.{key}: got an unknown field; expected cpu_ghz, mem_gb"
                    )
            groups[group] = g
    lat = obj.get("latency_ms")
    n = m = None
    rows: list[list[float]] | None = None
    if lat is None:
        problems.append(
            f"{where}: latency_ms: got nothing; expected a twins x hosts list of lists "
            "(null = pair not allowed)"
        )
    elif not isinstance(lat, list) or not lat:
        problems.append(
            f"{where}: latency_ms: got {_show(lat)}; expected a non-empty twins x hosts "
            "list of lists"
        )
    else:
        n = len(lat)
        cap = groups.get("capacity", {})
        cap_cpu = cap.get("cpu_ghz")
        m = len(cap_cpu) if isinstance(cap_cpu, list) and cap_cpu else None
        if m is None and isinstance(lat[0], list):
            m = len(lat[0])
        rows = []
        bad = 0
        for i, row in enumerate(lat):
            if not isinstance(row, list):
                problems.append(
                    f"{where}: latency_ms[{i}]: got {_show(row)}; expected a list of "
                    f"{m} numbers or nulls"
                )
                rows = None
                continue
            if len(row) != m:
                problems.append(
                    f"{where}: latency_ms[{i}]: got {len(row)} values; expected {m} "
                    "(one per host; rows must all have the same length)"
                )
                rows = None
                continue
            clean = []
            for j, v in enumerate(row):
                if v is None:
                    clean.append(math.inf)
                elif _is_num(v) and v >= 0:
                    clean.append(float(v))
                else:
                    if bad < 5:
                        problems.append(
                            f"{where}: latency_ms[{i}][{j}]: got {_show(v)}; expected a "
                            "number >= 0 or null (not allowed)"
                        )
                    bad += 1
                    clean.append(math.inf)
            if rows is not None:
                rows.append(clean)
        if bad > 5:
            problems.append(f"{where}: latency_ms: ... and {bad - 5} more bad values")
        if bad:
            rows = None
    vecs = {}
    for group, size in (("demand", n), ("capacity", m)):
        g = groups.get(group)
        if g is None:
            continue
        for res in ("cpu_ghz", "mem_gb"):
            path = f"{group}.{res}"
            if res not in g:
                problems.append(f"{where}: {path}: got nothing; expected a list of numbers >= 0")
                continue
            vecs[path] = _vector(g[res], path, size, where, problems)
    if problems:
        raise ScenarioError(problems)
    try:
        return PlacementProblem(
            latency_ms=np.asarray(rows, dtype=float),
            demand_cpu_ghz=vecs["demand.cpu_ghz"],
            demand_mem_gb=vecs["demand.mem_gb"],
            capacity_cpu_ghz=vecs["capacity.cpu_ghz"],
            capacity_mem_gb=vecs["capacity.mem_gb"],
        )
    except ScenarioError as exc:
        raise ScenarioError([f"{where}: {p}" for p in exc.problems]) from exc


def load_instance(path: str | Path) -> PlacementProblem:
    """Read an instance JSON file (format in :func:`problem_from_json`) under the limits of
    :mod:`twinedge.scenario.inputs` (size, UTF-8, nesting, number length, finite numbers,
    no NUL or lone surrogates)."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError([f"{p}: got no such file; expected an instance JSON file"])
    try:
        obj = load_json(read_text(p), str(p))
    except InputError as exc:
        raise ScenarioError([str(exc)]) from None
    return problem_from_json(obj, source=str(p))


def problem_to_json(problem: PlacementProblem) -> dict:
    """The instance JSON object of ``problem`` (inverse of :func:`problem_from_json`)."""
    lat = problem.latency_ms
    return {
        "latency_ms": [[float(v) if math.isfinite(v) else None for v in row] for row in lat],
        "demand": {
            "cpu_ghz": problem.demand_cpu_ghz.tolist(),
            "mem_gb": problem.demand_mem_gb.tolist(),
        },
        "capacity": {
            "cpu_ghz": problem.capacity_cpu_ghz.tolist(),
            "mem_gb": problem.capacity_mem_gb.tolist(),
        },
    }


__all__ += ["problem_to_json"]
