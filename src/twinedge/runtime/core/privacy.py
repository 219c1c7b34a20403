"""Differentially private aggregates across domains, with a durable budget per consumer.

A *consumer* is a domain reading another domain's twins (through read grants, or grants
with role aggregate, which share no value but these aggregates); the
*owner* domain's admin gives each consumer a privacy budget (ε, δ). A private aggregate
(count, sum, mean, histogram) over the owner's twins the consumer may see is released by
:mod:`twinedge.privacy.dp` only after its (ε, δ) has been spent from that budget, in one
conditional ``UPDATE`` of the store (so concurrent requests never overspend, and a
restart keeps what was spent). Reads within a domain stay exact (the ordinary
aggregate routes); a private aggregate of one's own domain is refused as pointless.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from twinedge.errors import Forbidden, InvalidInput, NotFound
from twinedge.privacy import dp
from twinedge.runtime import rql, things
from twinedge.runtime.auth import Principal
from twinedge.runtime.core.access import Access
from twinedge.runtime.core.pools import StorePools
from twinedge.runtime.core.reads import Reads
from twinedge.runtime.store.base import PrivacyBudget, Store

#: the aggregates a private release may compute
KINDS = ("count", "sum", "mean", "histogram")
NANO = 10**9  # budget units per ε
FEMTO = 10**15  # budget units per δ
MAX_EPSILON = 1e6


class BudgetExhausted(Forbidden):
    """The consumer's privacy budget does not cover the request (or there is none)."""


def to_units(epsilon: float, delta: float) -> tuple[int, int]:
    """(ε, δ) in whole nano-ε and femto-δ, rounded up (a spend never costs less than
    asked).

    Examples:
        >>> to_units(0.1, 1e-6)
        (100000000, 1000000000)
    """
    return math.ceil(epsilon * NANO - 1e-6), math.ceil(delta * FEMTO - 1e-6)


def budget_json(b: PrivacyBudget) -> dict[str, Any]:
    """A budget as the API shows it (ε, δ as numbers; nano/femto units exact)."""
    return {
        "owner": b.owner,
        "consumer": b.consumer,
        "epsilon": b.epsilon_nano / NANO,
        "delta": b.delta_femto / FEMTO,
        "spentEpsilon": b.spent_epsilon_nano / NANO,
        "spentDelta": b.spent_delta_femto / FEMTO,
        "remainingEpsilon": max(b.epsilon_nano - b.spent_epsilon_nano, 0) / NANO,
        "remainingDelta": max(b.delta_femto - b.spent_delta_femto, 0) / FEMTO,
    }


def _number(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise InvalidInput(f"{name} must be a finite number, got {v!r}", f"/{name}")
    return float(v)


class PrivateAggregates:
    """Budgets and private releases.

    Parameters:
        store: where the budgets are kept.
        pools: the store threads.
        access: who may do what.
        reads: the search the values come from.
    """

    def __init__(self, store: Store, pools: StorePools, access: Access, reads: Reads):
        self.store = store
        self.pools = pools
        self.access = access
        self.reads = reads

    def _owner_admin(self, p: Principal) -> str:
        self.access.require(p, "admin")
        if p.domain is None:
            raise Forbidden(
                "privacy budgets are set by the owner domain's admin; use a domain admin key"
            )
        return p.domain

    async def put_budget(
        self, p: Principal, consumer: str, epsilon: Any, delta: Any = 0.0
    ) -> dict[str, Any]:
        """Give ``consumer`` a budget of (ε, δ) on the caller's domain (what it spent
        stays).

        Raises:
            Forbidden: the caller is not a domain admin.
            InvalidInput: a bad domain name, ε not in [0, 10⁶], δ not in [0, 1], or the
                caller's own domain.
        """
        owner = self._owner_admin(p)
        things.check_domain(consumer)
        if consumer == owner:
            raise InvalidInput(
                "a domain reads its own twins exactly; give budgets to other domains",
                "/consumer",
            )
        eps = _number(epsilon, "epsilon")
        d = _number(0.0 if delta is None else delta, "delta")
        if not 0 <= eps <= MAX_EPSILON:
            raise InvalidInput(f"epsilon must lie in 0..{MAX_EPSILON:g}, got {eps}", "/epsilon")
        if not 0 <= d <= 1:
            raise InvalidInput(f"delta must lie in 0..1, got {d}", "/delta")
        # a budget is rounded down, a spend up: the sum of spends never exceeds what was given
        b = PrivacyBudget(owner, consumer, math.floor(eps * NANO), math.floor(d * FEMTO))
        return budget_json(await self.pools.read(self.store.put_privacy_budget, b))

    async def list_budgets(self, p: Principal) -> list[dict[str, Any]]:
        """The budgets the caller's domain gives."""
        owner = self._owner_admin(p)
        return [budget_json(b) for b in await self.pools.read(self.store.privacy_budgets, owner)]

    async def delete_budget(self, p: Principal, consumer: str) -> None:
        """Take the budget back (a later one starts at zero spent).

        Raises:
            NotFound: there is none.
        """
        owner = self._owner_admin(p)
        if not await self.pools.read(self.store.delete_privacy_budget, owner, consumer):
            raise NotFound(f"domain {owner!r} gives {consumer!r} no privacy budget")

    async def my_budget(self, p: Principal, owner: str) -> dict[str, Any]:
        """The budget ``owner`` gives the caller's domain.

        Raises:
            NotFound: there is none.
        """
        self.access.require(p, "read")
        if p.domain is None:
            raise InvalidInput("the service admin has no privacy budget; it reads exactly")
        b = await self.pools.read(self.store.privacy_budget, owner, p.domain)
        if b is None:
            raise NotFound(f"domain {owner!r} gives {p.domain!r} no privacy budget")
        return budget_json(b)

    async def _values(self, p: Principal, filter: str, field: str) -> list[float]:
        """The numbers at ``field`` of the twins ``p`` sees that match ``filter``."""
        tokens = things.split_path(field)
        out: list[float] = []
        cursor: str | None = None
        while True:
            page = await self.reads.search(
                p, filter=filter, limit=1000, cursor=cursor, fields=(field,), aggregates=True
            )
            for doc in page.items:
                try:
                    v = things.get_path(doc, tokens)
                except KeyError:
                    continue
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                    out.append(float(v))
            if page.cursor is None:
                return out
            cursor = page.cursor

    async def release(
        self,
        p: Principal,
        *,
        owner: str,
        fn: str,
        epsilon: Any,
        mechanism: str = "laplace",
        delta: Any = None,
        field: str | None = None,
        filter: str | None = None,
        lower: Any = None,
        upper: Any = None,
        edges: list[Any] | None = None,
    ) -> dict[str, Any]:
        """A differentially private ``fn`` over the twins of ``owner`` that ``p`` sees and
        that match ``filter``; the (ε, δ) is spent from the budget ``owner`` gives ``p``'s
        domain first.

        Raises:
            InvalidInput: a bad fn, mechanism, ε, δ, bound, edge, field or filter; the
                caller's own domain or the service admin (they read exactly).
            BudgetExhausted: no budget, or its rest does not cover (ε, δ); ``extra`` names
                the remaining ε and δ.
        """
        self.access.require(p, "read")
        if p.domain is None or p.domain == owner:
            raise InvalidInput(
                "reads within a domain (and the service admin's) are exact: use "
                "/api/2/search/things/aggregate; private aggregates are for another domain's "
                "twins",
                "/owner",
            )
        things.check_domain(owner)
        if fn not in KINDS:
            raise InvalidInput(f"fn must be one of {', '.join(KINDS)}, got {fn!r}", "/fn")
        eps, d = dp.check_params(mechanism, epsilon, delta)
        if fn in ("sum", "mean"):
            dp.check_bounds(lower, upper)
        if fn == "histogram":
            dp.check_edges(edges or [])
        if fn != "count" and not field:
            raise InvalidInput(f"{fn} needs a field (a path to a number)", "/field")
        if filter:
            rql.parse(filter)
        scope = f'eq(_domain,"{owner}")'
        full = f"and({filter},{scope})" if filter else scope
        if fn == "count":
            values: list[float] = []
            n = await self.reads.count(p, full, aggregates=True)
        else:
            assert field is not None
            values = await self._values(p, full, field.strip("/"))
            n = len(values)
        eps_u, d_u = to_units(eps, d)
        ok = await self.pools.read(self.store.spend_privacy_budget, owner, p.domain, eps_u, d_u)
        if not ok:
            b = await self.pools.read(self.store.privacy_budget, owner, p.domain)
            rest = budget_json(b) if b else None
            rem_e = rest["remainingEpsilon"] if rest else 0.0
            rem_d = rest["remainingDelta"] if rest else 0.0
            raise BudgetExhausted(
                (
                    f"the privacy budget domain {owner!r} gives {p.domain!r} does not cover "
                    f"epsilon={eps:g}, delta={d:g}: {rem_e:g} epsilon and {rem_d:g} delta remain"
                    if rest
                    else f"domain {owner!r} gives {p.domain!r} no privacy budget; its admin "
                    "sets one with PUT /api/2/privacy/budgets/{consumer}"
                ),
                error="twinedge:privacy.budget.exhausted",
                remainingEpsilon=rem_e,
                remainingDelta=rem_d,
            )
        dl = d or None
        # in a worker thread: OpenDP's first use loads it (seconds), and the loop serves on
        if fn == "count":
            r = await asyncio.to_thread(dp.release_count, n, mechanism=mechanism, epsilon=eps,
                                        delta=dl)  # fmt: skip
        elif fn in ("sum", "mean"):
            release = dp.release_sum if fn == "sum" else dp.release_mean
            r = await asyncio.to_thread(release, values, lower=lower, upper=upper,
                                        mechanism=mechanism, epsilon=eps, delta=dl)  # fmt: skip
        else:
            r = await asyncio.to_thread(dp.release_histogram, values, edges=edges or [],
                                        mechanism=mechanism, epsilon=eps, delta=dl)  # fmt: skip
        b = await self.pools.read(self.store.privacy_budget, owner, p.domain)
        out = {"owner": owner, "consumer": p.domain, "field": field, "filter": filter}
        out.update(r.to_json())
        if b is not None:
            out["remainingEpsilon"] = budget_json(b)["remainingEpsilon"]
            out["remainingDelta"] = budget_json(b)["remainingDelta"]
        return out


MAX_SUMS = 1000  # open secure sums kept in memory
MAX_CONTRIBUTORS = 100


class SecureSums:
    """Cross-domain sums under Paillier encryption, with the service as the combiner
    (:mod:`twinedge.privacy.paillier`): a requester domain opens a sum with its public
    key and the contributor domains; each contributor sends one encrypted share; once all
    have, the requester reads the one combined ciphertext and decrypts the total on its
    side. The service never holds a private key. Open sums live in memory (a restart
    forgets them; the requester opens a new one).

    Parameters:
        access: who may do what.
    """

    def __init__(self, access: Access):
        self.access = access
        self.sums: dict[str, dict[str, Any]] = {}

    def _domain(self, p: Principal) -> str:
        if p.domain is None:
            raise InvalidInput("a secure sum is between domains; use a domain's key")
        return p.domain

    async def open(
        self, p: Principal, *, n: Any, contributors: Any, digits: Any = 0
    ) -> dict[str, Any]:
        """Open a sum: ``n`` the requester's Paillier modulus (a decimal string),
        ``contributors`` the domains that will each send one share, ``digits`` the
        fixed-point digits they encode with.

        Raises:
            InvalidInput: a bad modulus, contributor list or digits; too many open sums.
        """
        from twinedge.privacy import paillier

        self.access.require(p, "read")
        requester = self._domain(p)
        if not (isinstance(n, str) and n.isascii() and n.isdigit() and len(n) <= 2500):
            raise InvalidInput("n must be the public modulus as a decimal string", "/n")
        paillier.public_key_from_n(int(n))
        if not (
            isinstance(contributors, list)
            and 1 <= len(contributors) <= MAX_CONTRIBUTORS
            and all(isinstance(c, str) for c in contributors)
            and len(set(contributors)) == len(contributors)
        ):
            raise InvalidInput(
                f"contributors must be 1..{MAX_CONTRIBUTORS} distinct domain names",
                "/contributors",
            )
        for c in contributors:
            things.check_domain(c)
        if isinstance(digits, bool) or not isinstance(digits, int):
            raise InvalidInput("digits must be a whole number", "/digits")
        paillier.decode(0, digits)
        if len(self.sums) >= MAX_SUMS:
            raise InvalidInput(f"at most {MAX_SUMS} secure sums may be open; finish some first")
        import uuid

        sid = uuid.uuid4().hex[:16]
        self.sums[sid] = {
            "id": sid,
            "requester": requester,
            "n": n,
            "contributors": list(contributors),
            "digits": digits,
            "shares": {},
        }
        return self._view(sid, requester)

    def _get(self, p: Principal, sid: str) -> tuple[dict[str, Any], str]:
        self.access.require(p, "read")
        d = self._domain(p)
        s = self.sums.get(sid)
        if s is None or (d != s["requester"] and d not in s["contributors"]):
            raise NotFound(f"no secure sum {sid!r} that domain {d!r} takes part in")
        return s, d

    def _view(self, sid: str, domain: str) -> dict[str, Any]:
        from twinedge.privacy import paillier

        s = self.sums[sid]
        out = {k: s[k] for k in ("id", "requester", "n", "contributors", "digits")}
        out["received"] = sorted(s["shares"])
        done = len(s["shares"]) == len(s["contributors"])
        out["complete"] = done
        if domain == s["requester"]:
            pk = paillier.public_key_from_n(int(s["n"]))
            out["total"] = paillier.combine(pk, list(s["shares"].values())) if done else None
        return out

    async def get(self, p: Principal, sid: str) -> dict[str, Any]:
        """The sum as ``p``'s domain may see it: the requester also gets ``total``, the
        combined ciphertext, once every contributor has sent its share.

        Raises:
            NotFound: no such sum, or ``p``'s domain takes no part in it.
        """
        _, d = self._get(p, sid)
        return self._view(sid, d)

    async def contribute(self, p: Principal, sid: str, ciphertext: Any) -> dict[str, Any]:
        """The encrypted share of ``p``'s domain (once per domain).

        Raises:
            NotFound: no such sum, or ``p``'s domain takes no part in it.
            Forbidden: ``p`` cannot write, or is the requester and no contributor.
            Conflict: this domain has sent its share already.
            InvalidInput: the ciphertext is no ciphertext of the requester's key.
        """
        from twinedge.errors import Conflict
        from twinedge.privacy import paillier

        s, d = self._get(p, sid)
        self.access.require(p, "write")
        if d not in s["contributors"]:
            raise Forbidden(f"domain {d!r} is not a contributor of secure sum {sid!r}")
        if d in s["shares"]:
            raise Conflict(f"domain {d!r} has sent its share of secure sum {sid!r} already")
        paillier.parse_ciphertext(paillier.public_key_from_n(int(s["n"])), ciphertext)
        s["shares"][d] = ciphertext
        return self._view(sid, d)
