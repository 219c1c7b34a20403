"""Turn whatever the user passed as a policy (a name, a class, an instance, a function)
into an object with the one contract ``decide(view, rng) -> decision``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from twinedge.errors import PolicyError, TwinedgeError
from twinedge.orchestrator.view import NetworkView
from twinedge.policies.base import KINDS, Moves, PolicyKind
from twinedge.policies.migration import MIGRATION_POLICIES
from twinedge.policies.placement import PLACEMENT_POLICIES, PlacementResult, solve_placement
from twinedge.policies.registry import resolve

REGISTRIES: dict[str, dict[str, type]] = {
    "placement": PLACEMENT_POLICIES,
    "migration": MIGRATION_POLICIES,
}


@runtime_checkable
class Policy(Protocol):
    """What the orchestrator drives: ``kind`` and ``decide(view, rng)``."""

    kind: PolicyKind

    def decide(self, view: NetworkView, rng: np.random.Generator) -> PlacementResult | Moves: ...


class FunctionPolicy:
    """A plain function in a policy's short form, given the one contract.

    Parameters:
        fn: ``fn(problem, rng)`` for placement, ``fn(view, rng)`` for migration.
        kind: ``"placement"`` or ``"migration"``.
        name: how messages and reports call it (default: the function's name).
    """

    def __init__(self, fn: Callable[..., Any], kind: PolicyKind, name: str | None = None):
        self.fn, self.kind = fn, kind
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__

    def decide(self, view: NetworkView, rng: np.random.Generator) -> PlacementResult | Moves:
        if self.kind == "placement":
            return solve_placement(self.fn, view.placement_problem(), rng)
        return Moves.of(self.fn(view, rng), repr(self.name))

    def __repr__(self) -> str:
        return f"FunctionPolicy({self.name!r}, kind={self.kind!r})"


def policy_name(policy: Any) -> str:
    """A short human name for ``policy`` (for messages, labels and the ledger)."""
    name = getattr(policy, "name", None)
    if isinstance(name, str):
        return name
    return getattr(policy, "__name__", None) or type(policy).__name__


def as_policy(spec: Any, kind: PolicyKind, **params: Any) -> Policy:
    """A ready policy of ``kind`` from a registered or plug-in name, an import path
    ``package.module:attr``, a class (instantiated with ``params``), an instance with
    ``decide``, or a plain function in the short form of its kind.

    Raises:
        PolicyError: unknown name, wrong kind, parameters a function cannot take, or an
            object that is not callable.

    Examples:
        >>> as_policy("threshold", "migration", hysteresis_ms=1.0)
        Threshold(hysteresis_ms=1.0)
        >>> as_policy(lambda problem, rng: [0] * problem.n_twins, "placement").kind
        'placement'
    """
    if kind not in KINDS:
        raise PolicyError(f"unknown policy kind {kind!r}; expected one of {', '.join(KINDS)}")
    if isinstance(spec, str):
        obj: Any = resolve(spec, REGISTRIES[kind], kind, **params)
        label = spec.strip()
    elif inspect.isclass(spec):
        obj = resolve_class(spec, kind, params)
        label = spec.__name__
    else:
        if params:
            if not hasattr(spec, "set_params"):
                raise PolicyError(
                    f"{kind} policy {policy_name(spec)!r} is already built, so it cannot take "
                    f"parameters {sorted(params)}; pass its class or set them yourself"
                )
            spec.set_params(**params)
        obj, label = spec, policy_name(spec)
    own = getattr(obj, "kind", kind)
    if own != kind:
        raise PolicyError(f"{label!r} is a {own} policy; a {kind} policy is needed here")
    if callable(getattr(obj, "decide", None)):
        return obj
    if not callable(obj):
        raise PolicyError(f"{kind} policy {label!r} is neither callable nor has decide()")
    return FunctionPolicy(obj, kind, label if isinstance(spec, str) else None)


def resolve_class(cls: type, kind: PolicyKind, params: dict[str, Any]) -> Any:
    """Instantiate a policy class with ``params``, with the registry's error messages."""
    from twinedge.policies.registry import _instantiate

    return _instantiate(cls, params, kind, cls.__name__)


def decide(policy: Policy, view: NetworkView, rng: np.random.Generator) -> PlacementResult | Moves:
    """Ask ``policy`` for its decision; anything it raises that is not a twinedge error
    becomes a :class:`PolicyError` naming it, and the answer must have its kind's type."""
    name = policy_name(policy)
    try:
        out = policy.decide(view, rng)
    except TwinedgeError:
        raise
    except ValueError as exc:
        if "read-only" in str(exc):
            raise PolicyError(
                f"{policy.kind} policy {name!r} tried to write to the network view, which is "
                "read-only; copy an array before changing it"
            ) from exc
        raise PolicyError(f"{policy.kind} policy {name!r} raised ValueError: {exc}") from exc
    except Exception as exc:
        raise PolicyError(
            f"{policy.kind} policy {name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    if policy.kind == "placement":
        if not isinstance(out, PlacementResult):
            raise PolicyError(
                f"placement policy {name!r} decided {type(out).__name__}; expected a PlacementResult"
            )
        return out
    return Moves.of(out, repr(name))
