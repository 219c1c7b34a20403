"""The one policy contract: ``policy.decide(view, rng) -> decision``.

Every policy, placement or migration, simulated or live, receives the same read-only
:class:`twinedge.orchestrator.NetworkView` and a ``numpy.random.Generator`` and returns a
typed decision:

- a **placement** policy returns a :class:`~twinedge.policies.placement.base.PlacementResult`
  (one host per twin, with its quality certificate when it has one);
- a **migration** policy returns :class:`Moves` (which twins move to which hosts).

Built-ins are small classes configured in ``__init__`` like scikit-learn estimators
(:class:`BasePolicy` gives them ``get_params``, ``set_params`` and a ``repr``). A plain
function works wherever a policy is accepted, in its short form: ``fn(problem, rng)``
for placement (``problem = view.placement_problem()``) and ``fn(view, rng)`` for
migration; :func:`twinedge.orchestrator.as_policy` wraps it.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from twinedge.errors import PolicyError

if TYPE_CHECKING:
    from twinedge.orchestrator.view import NetworkView
    from twinedge.policies.placement.base import PlacementResult

PolicyKind = Literal["placement", "migration"]
KINDS: tuple[PolicyKind, ...] = ("placement", "migration")


@dataclass(frozen=True)
class Moves:
    """A migration decision: twin ``twins[i]`` moves to host ``hosts[i]`` (indices into
    the view's twins and ``world.hosts``).

    Unpacks like the pair it replaces: ``twins, hosts = moves``.

    Raises:
        PolicyError: the two arrays are not equal-length 1-D integer arrays.

    Examples:
        >>> m = Moves([3, 5], [0, 2])
        >>> len(m), m.twins.dtype
        (2, dtype('int64'))
    """

    twins: np.ndarray
    hosts: np.ndarray

    def __post_init__(self) -> None:
        t, h = _int_array(self.twins, "twins"), _int_array(self.hosts, "hosts")
        if t.ndim != 1 or h.ndim != 1 or t.shape != h.shape:
            raise PolicyError(
                f"moves need two equal 1-D arrays of twins and hosts, got {t.shape} and {h.shape}"
            )
        object.__setattr__(self, "twins", t)
        object.__setattr__(self, "hosts", h)

    @classmethod
    def none(cls) -> Moves:
        """No twin moves."""
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    @classmethod
    def of(cls, answer: Any, label: str = "policy") -> Moves:
        """Normalise a policy's answer (``Moves`` or a ``(twins, hosts)`` pair)."""
        if isinstance(answer, Moves):
            return answer
        if isinstance(answer, tuple | list) and len(answer) == 2:
            try:
                return cls(answer[0], answer[1])
            except PolicyError as exc:
                raise PolicyError(f"migration policy {label}: {exc}") from None
        raise PolicyError(
            f"migration policy {label} returned {type(answer).__name__}; expected Moves or a "
            "(twins, hosts) pair of integer arrays"
        )

    def __len__(self) -> int:
        return int(self.twins.size)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.twins, self.hosts))


def _int_array(a: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(a)
    except Exception as exc:
        raise PolicyError(f"moves: {what} is not an array ({exc})") from None
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.int64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise PolicyError(f"moves: {what} must be integer indices, got dtype {arr.dtype}")


class BasePolicy:
    """Base class of the built-in policies: scikit-learn style parameters.

    The parameters are the keyword arguments of ``__init__``, stored under the same
    names; ``get_params`` reads them, ``set_params`` writes them, and
    ``type(p)(**p.get_params())`` is an equal, independent policy.
    """

    kind: ClassVar[PolicyKind]

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The policy's parameters by name."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> BasePolicy:
        """Set parameters by name; unknown names raise :class:`PolicyError`."""
        known = set(self._param_names())
        unknown = sorted(set(params) - known)
        if unknown:
            raise PolicyError(
                f"{type(self).__name__} has no parameters {unknown}; it accepts {sorted(known)}"
            )
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class PlacementPolicy(BasePolicy):
    """Base of placement policies: implement ``__call__(problem, rng)`` returning host
    indices or a :class:`PlacementResult`; :meth:`decide` builds the problem from the view
    and checks the answer."""

    kind: ClassVar[PolicyKind] = "placement"

    def __call__(self, problem: Any, rng: np.random.Generator) -> Any:  # pragma: no cover
        raise NotImplementedError

    def decide(self, view: NetworkView, rng: np.random.Generator) -> PlacementResult:
        from twinedge.policies.placement import solve_placement

        return solve_placement(self, view.placement_problem(), rng)


class MigrationPolicy(BasePolicy):
    """Base of migration policies: implement ``__call__(view, rng)`` returning
    :class:`Moves` (or a ``(twins, hosts)`` pair)."""

    kind: ClassVar[PolicyKind] = "migration"

    def __call__(self, view: NetworkView, rng: np.random.Generator) -> Any:  # pragma: no cover
        raise NotImplementedError

    def decide(self, view: NetworkView, rng: np.random.Generator) -> Moves:
        return Moves.of(self(view, rng), type(self).__name__)
