"""Double-auction mechanisms: ``mechanism.clear(bids, rng) -> Clearing``.

Every mechanism ranks *unit* bids (a bid for ``q`` units is ``q`` unit bids at its
price): buyers by value, highest first, sellers by cost, lowest first. Ties keep the
order of the bids (the lower row first; a bid's units stay together), so the ranking,
and every clearing but :class:`PostedPrice`'s random rationing, is deterministic. With
``b_1 >= b_2 >= ...`` and ``s_1 <= s_2 <= ...`` the ranked unit bids, the efficient
number of trades ``k`` is the largest ``i`` with ``b_i >= s_i`` (``b_i - s_i`` does not
increase with ``i``), and the optimal (reported) welfare is ``sum_{i<=k} (b_i - s_i)``.
The ``i``-th ranked buying unit trades with the ``i``-th ranked selling unit.

* :class:`McAfee` — trade reduction (McAfee 1992): with the candidate price
  ``p0 = (b_{k+1} + s_{k+1}) / 2``, if ``s_k <= p0 <= b_k`` the ``k`` efficient pairs
  trade at ``p0``; otherwise only the first ``k - 1`` pairs trade, every buyer pays
  ``b_k`` and every seller receives ``s_k``. When a side has no ``(k+1)``-th unit bid,
  ``p0`` is undefined (a dummy buyer of value ``-inf`` or seller of cost ``+inf``) and
  the trade is reduced. Dominant-strategy truthful for single-unit traders, individually
  rational, weakly budget balanced, welfare ``>= (1 - 1/k)`` of the optimum.
* :class:`Greedy` — the ``k`` efficient pairs trade at ``(b_k + s_k) / 2``: efficient and
  budget balanced, but the ``k``-th buyer and seller can move the price by misreporting.
* :class:`PostedPrice` — a fixed price ``p``: buyers with value ``>= p`` and sellers with
  cost ``<= p`` are willing; the short side trades in full, the long side is rationed in
  a random order (from ``rng``; or in bid order). Truthful (a report only says whether the
  trader is willing at ``p``) but not efficient.

References:
    R. P. McAfee, "A dominant strategy double auction", Journal of Economic Theory 56
    (1992) 434-450.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from twinedge.errors import MarketError
from twinedge.market.bids import Bids, Clearing
from twinedge.policies.base import BasePolicy

__all__ = ["MECHANISMS", "Greedy", "McAfee", "Mechanism", "PostedPrice", "resolve_mechanism"]


def _stable_order(x: np.ndarray) -> np.ndarray:
    """The order that sorts ``x`` ascending, equal values in index order: the same as
    ``np.argsort(x, kind="stable")``, but from two unstable (SIMD) sorts, which are
    several times faster than numpy's stable sort for floats. Equal values get one rank;
    ``rank * n + index`` is then a unique key, so any sort orders it the same way."""
    n = x.size
    if n < 2:
        return np.arange(n)
    o = np.argsort(x)
    xs = x[o]
    rank = np.empty(n, dtype=np.int64)
    rank[o[0]] = 0
    rank[o[1:]] = np.cumsum(xs[1:] != xs[:-1])
    key = np.sort(rank * n + np.arange(n, dtype=np.int64))
    return key % n


@dataclass(frozen=True)
class _Ranked:
    """Unit bids ranked: ``b`` descending values with their buyer rows ``b_row``, ``s``
    ascending costs with their seller rows ``s_row``, and the efficient ``k``."""

    b: np.ndarray
    b_row: np.ndarray
    s: np.ndarray
    s_row: np.ndarray
    k: int

    @classmethod
    def of(cls, bids: Bids) -> _Ranked:
        b_row = np.repeat(np.arange(bids.n_buyers), bids.buyer_units)
        s_row = np.repeat(np.arange(bids.n_sellers), bids.seller_units)
        b_all = bids.values[b_row]
        s_all = bids.costs[s_row]
        # stable orders: equal prices keep the bids' order (lower row first)
        ob = _stable_order(-b_all)
        os_ = _stable_order(s_all)
        b, s = b_all[ob], s_all[os_]
        n = min(b.size, s.size)
        k = int(np.count_nonzero(b[:n] >= s[:n]))
        return cls(b, b_row[ob], s, s_row[os_], k)

    def optimal_welfare(self) -> float:
        return float(self.b[: self.k].sum() - self.s[: self.k].sum())


def _clearing(
    name: str,
    bids: Bids,
    ranked: _Ranked,
    buy_rows: np.ndarray,
    sell_rows: np.ndarray,
    buyer_price: float | None,
    seller_price: float | None,
) -> Clearing:
    """The clearing where unit ``i`` of ``buy_rows`` trades with unit ``i`` of
    ``sell_rows`` (equal lengths), runs of one pair of bids merged into one trade."""
    q = int(buy_rows.size)
    if q == 0:
        buyer_price = seller_price = None
        tb = ts = tu = np.zeros(0, dtype=np.int64)
    else:
        change = np.empty(q, dtype=bool)
        change[0] = True
        np.not_equal(buy_rows[1:], buy_rows[:-1], out=change[1:])
        change[1:] |= sell_rows[1:] != sell_rows[:-1]
        starts = np.flatnonzero(change)
        tb, ts = buy_rows[starts], sell_rows[starts]
        tu = np.diff(np.append(starts, q))
    bu = np.bincount(buy_rows, minlength=bids.n_buyers).astype(np.int64)
    su = np.bincount(sell_rows, minlength=bids.n_sellers).astype(np.int64)
    # (x * u).sum(), not x @ u: a BLAS dot may start threads, slow on a busy machine
    welfare = float((bids.values * bu).sum() - (bids.costs * su).sum())
    return Clearing(
        mechanism=name,
        buyer_units=bu,
        seller_units=su,
        trade_buyer=tb.astype(np.int64),
        trade_seller=ts.astype(np.int64),
        trade_units=tu.astype(np.int64),
        buyer_price=None if buyer_price is None else float(buyer_price),
        seller_price=None if seller_price is None else float(seller_price),
        efficient_units=ranked.k,
        optimal_welfare=ranked.optimal_welfare(),
        welfare=welfare,
    )


def _check_bids(bids: Any, name: str) -> Bids:
    if not isinstance(bids, Bids):
        raise MarketError(
            f"{name}.clear: bids must be a twinedge.market.Bids, got {type(bids).__name__}"
        )
    return bids


class Mechanism(BasePolicy):
    """Base of the market mechanisms: scikit-learn style parameters (``get_params``,
    ``set_params``, ``repr``) and one method, ``clear(bids, rng) -> Clearing``."""

    name: ClassVar[str] = "mechanism"
    truthful: ClassVar[bool] = False

    def clear(self, bids: Bids, rng: np.random.Generator) -> Clearing:  # pragma: no cover
        raise NotImplementedError


class McAfee(Mechanism):
    """McAfee's trade-reduction double auction (the module docstring has the rule).

    Properties (for bids of one unit each; docs/market.md states them exactly):
    individually rational, weakly budget balanced (surplus ``(k-1)(b_k - s_k)`` when the
    trade is reduced, 0 otherwise), dominant-strategy truthful, and welfare at least
    ``(1 - 1/k)`` of the optimum. Deterministic: ``rng`` is not used.

    Examples:
        >>> c = McAfee().clear(Bids([10, 8, 6, 2], [1, 3, 5, 9]), np.random.default_rng(0))
        >>> c.units_traded, c.buyer_price, c.seller_price   # k=3, p0=(2+9)/2=5.5 in [5, 6]
        (3, 5.5, 5.5)
        >>> c = McAfee().clear(Bids([10, 8, 6, 5], [1, 3, 4, 9]), np.random.default_rng(0))
        >>> c.units_traded, c.buyer_price, c.seller_price   # p0=7 > b_3=6: reduced
        (2, 6.0, 4.0)

    References:
        R. P. McAfee, "A dominant strategy double auction", J. Econ. Theory 56 (1992)
        434-450.
    """

    name: ClassVar[str] = "mcafee"
    truthful: ClassVar[bool] = True

    def __init__(self) -> None:
        pass

    def clear(self, bids: Bids, rng: np.random.Generator) -> Clearing:
        r = _Ranked.of(_check_bids(bids, "McAfee"))
        k = r.k
        if k == 0:
            return _clearing(self.name, bids, r, r.b_row[:0], r.s_row[:0], None, None)
        b_next = r.b[k] if k < r.b.size else -np.inf
        s_next = r.s[k] if k < r.s.size else np.inf
        # halves first: exact, and no overflow; -inf + inf is NaN, which fails the test
        with np.errstate(invalid="ignore"):
            p0 = 0.5 * b_next + 0.5 * s_next
        if r.s[k - 1] <= p0 <= r.b[k - 1]:
            return _clearing(self.name, bids, r, r.b_row[:k], r.s_row[:k], p0, p0)
        q = k - 1
        return _clearing(self.name, bids, r, r.b_row[:q], r.s_row[:q], r.b[k - 1], r.s[k - 1])


class Greedy(Mechanism):
    """Efficient clearing at the midpoint price ``(b_k + s_k) / 2`` — manipulable.

    All ``k`` efficient pairs trade, so welfare is optimal and the budget balances
    exactly; but the price depends on the ``k``-th buyer's and seller's own reports, so
    they gain by shading them (docs/market.md has a worked example).

    Examples:
        >>> c = Greedy().clear(Bids([10, 8], [2, 6]), np.random.default_rng(0))
        >>> c.units_traded, c.buyer_price
        (2, 7.0)
    """

    name: ClassVar[str] = "greedy"

    def __init__(self) -> None:
        pass

    def clear(self, bids: Bids, rng: np.random.Generator) -> Clearing:
        r = _Ranked.of(_check_bids(bids, "Greedy"))
        k = r.k
        if k == 0:
            return _clearing(self.name, bids, r, r.b_row[:0], r.s_row[:0], None, None)
        p = 0.5 * r.b[k - 1] + 0.5 * r.s[k - 1]
        return _clearing(self.name, bids, r, r.b_row[:k], r.s_row[:k], p, p)


class PostedPrice(Mechanism):
    """Trade at a posted ``price`` per unit.

    Parameters:
        price: the price per unit, finite and >= 0.
        rationing: how the long side is rationed — ``"random"`` (a uniformly random
            order of its bids from ``rng``) or ``"order"`` (the bids' order). Either is
            independent of the reports, which keeps the mechanism truthful.

    Raises:
        MarketError: the price is not a finite number >= 0 or ``rationing`` is unknown.

    Examples:
        >>> c = PostedPrice(5.0, rationing="order").clear(
        ...     Bids([10, 8, 6, 2], [1, 3, 7]), np.random.default_rng(0))
        >>> c.units_traded, c.buyer_units.tolist(), c.seller_units.tolist()
        (2, [1, 1, 0, 0], [1, 1, 0])
    """

    name: ClassVar[str] = "posted"
    truthful: ClassVar[bool] = True

    def __init__(self, price: float, rationing: Literal["random", "order"] = "random"):
        self.price = price
        self.rationing = rationing

    def _validated(self) -> float:
        try:
            p = float(self.price)
        except (TypeError, ValueError):
            p = float("nan")
        if not np.isfinite(p) or p < 0:
            raise MarketError(
                f"PostedPrice: price got {self.price!r}; expected a finite number >= 0"
            )
        if self.rationing not in ("random", "order"):
            raise MarketError(
                f"PostedPrice: rationing got {self.rationing!r}; expected 'random' or 'order'"
            )
        return p

    def _take(
        self, willing: np.ndarray, units: np.ndarray, q: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Unit rows of the first ``q`` units of the ``willing`` bids in rationing order.

        The random order is drawn over *all* bids of the side, willing or not, so it does
        not depend on anyone's report (a report only decides whether a bid is in it)."""
        if self.rationing == "random":
            order = rng.permutation(units.size)
            rows = order[willing[order]]
        else:
            rows = np.flatnonzero(willing)
        u = units[rows]
        before = np.cumsum(u) - u
        take = np.clip(q - before, 0, u)
        return np.repeat(rows, take)

    def clear(self, bids: Bids, rng: np.random.Generator) -> Clearing:
        p = self._validated()
        bids = _check_bids(bids, "PostedPrice")
        r = _Ranked.of(bids)
        wb = bids.values >= p
        ws = bids.costs <= p
        q = int(min(bids.buyer_units[wb].sum(), bids.seller_units[ws].sum()))
        if q == 0:
            return _clearing(self.name, bids, r, r.b_row[:0], r.s_row[:0], None, None)
        buy = self._take(wb, bids.buyer_units, q, rng)
        sell = self._take(ws, bids.seller_units, q, rng)
        return _clearing(self.name, bids, r, buy, sell, p, p)


MECHANISMS: dict[str, type[Mechanism]] = {
    "mcafee": McAfee,
    "greedy": Greedy,
    "posted": PostedPrice,
}


def resolve_mechanism(spec: str | Mechanism, **params: Any) -> Mechanism:
    """A mechanism from its name (``mcafee``, ``greedy``, ``posted``) and parameters, or
    the instance itself.

    Raises:
        MarketError: an unknown name, or parameters the mechanism does not take.

    Examples:
        >>> resolve_mechanism("posted", price=2.5)
        PostedPrice(price=2.5, rationing='random')
    """
    if isinstance(spec, Mechanism):
        if params:
            raise MarketError("parameters are given with a mechanism instance; set them on it")
        return spec
    cls = MECHANISMS.get(str(spec).strip().lower()) if isinstance(spec, str) else None
    if cls is None:
        raise MarketError(
            f"mechanism got {spec!r}; expected one of {', '.join(sorted(MECHANISMS))}"
        )
    try:
        return cls(**params)
    except TypeError as exc:
        raise MarketError(f"mechanism {spec!r}: {exc}") from None
