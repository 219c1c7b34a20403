"""``check_mechanism``: the market contract as an executable check, for any mechanism.

Runs a mechanism on random small markets (seeded) and raises :class:`MarketError` at the
first market where it breaks the contract or a property, with the market and the numbers:

* contract — ``clear(bids, rng)`` returns a :class:`Clearing` of these bids whose trades
  add up to the units per bid, within what each bid offers, with one buyer price and one
  seller price when something trades, and the same clearing for the same ``rng`` seed;
* individual rationality — no trading buyer pays more than its value per unit, no
  trading seller receives less than its cost per unit;
* weak budget balance — ``buyer_price >= seller_price``;
* welfare — never above the optimum of the reports;
* truthfulness (when ``truthful``; default: the mechanism's ``truthful`` flag) — on
  single-unit markets, no trader gains by any misreport on a grid, every other trader's
  price, or just above or below it, the others truthful.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twinedge.errors import MarketError
from twinedge.market.bids import Bids, Clearing

__all__ = ["check_mechanism"]


def _describe(bids: Bids) -> str:
    return (
        f"values {bids.values.tolist()} x units {bids.buyer_units.tolist()}, "
        f"costs {bids.costs.tolist()} x units {bids.seller_units.tolist()}"
    )


def _clear(mech: Any, bids: Bids, seed: int) -> Clearing:
    name = type(mech).__name__
    c = mech.clear(bids, np.random.default_rng(seed))
    if not isinstance(c, Clearing):
        raise MarketError(f"{name}.clear returned {type(c).__name__}; expected a Clearing")
    return c


def _contract(name: str, bids: Bids, c: Clearing, where: str) -> None:
    def fail(what: str) -> None:
        raise MarketError(f"{name} on {where}: {what}")

    if c.buyer_units.shape != (bids.n_buyers,) or c.seller_units.shape != (bids.n_sellers,):
        fail("buyer_units / seller_units do not have one entry per bid")
    tb, ts, tu = c.trade_buyer, c.trade_seller, c.trade_units
    if not (tb.shape == ts.shape == tu.shape) or (tu < 1).any():
        fail("trades must be equal-length arrays with at least one unit each")
    if tb.size and (
        tb.min() < 0 or tb.max() >= bids.n_buyers or ts.min() < 0 or ts.max() >= bids.n_sellers
    ):
        fail("a trade names a bid that does not exist")
    if not np.array_equal(np.bincount(tb, tu, bids.n_buyers), c.buyer_units) or not np.array_equal(
        np.bincount(ts, tu, bids.n_sellers), c.seller_units
    ):
        fail("the trades do not add up to buyer_units / seller_units")
    if (c.buyer_units > bids.buyer_units).any() or (c.seller_units > bids.seller_units).any():
        fail("a bid trades more units than it offers")
    if (c.buyer_units < 0).any() or (c.seller_units < 0).any():
        fail("negative units")
    if tu.sum() and (c.buyer_price is None or c.seller_price is None):
        fail("units trade but buyer_price / seller_price is None")
    if tu.sum() == 0:
        return
    assert c.buyer_price is not None and c.seller_price is not None
    buyers = np.flatnonzero(c.buyer_units)
    sellers = np.flatnonzero(c.seller_units)
    over = buyers[bids.values[buyers] < c.buyer_price]
    if over.size:
        i = int(over[0])
        fail(
            f"not individually rational: buyer {i} values a unit at {bids.values[i]} "
            f"and pays {c.buyer_price}"
        )
    under = sellers[bids.costs[sellers] > c.seller_price]
    if under.size:
        j = int(under[0])
        fail(
            f"not individually rational: seller {j} costs {bids.costs[j]} a unit and "
            f"receives {c.seller_price}"
        )
    if c.buyer_price < c.seller_price:
        fail(
            f"not weakly budget balanced: buyers pay {c.buyer_price} a unit, sellers "
            f"receive {c.seller_price}"
        )


def _optimum(bids: Bids) -> float:
    b = np.sort(np.repeat(bids.values, bids.buyer_units))[::-1]
    s = np.sort(np.repeat(bids.costs, bids.seller_units))
    n = min(b.size, s.size)
    gain = b[:n] - s[:n]
    return float(gain[gain >= 0].sum())


def check_mechanism(
    mechanism: Any, *, markets: int = 40, seed: int = 0, truthful: bool | None = None
) -> None:
    """Check ``mechanism`` against the market contract and properties.

    Parameters:
        mechanism: anything with ``clear(bids, rng) -> Clearing``.
        markets: how many random markets (1-6 buyers and sellers; half of them with
            bids of several units) to try.
        seed: the seed of the markets and of the mechanism's ``rng``.
        truthful: also search for profitable misreports (default: the mechanism's
            ``truthful`` attribute, ``False`` when it has none).

    Raises:
        MarketError: the first failure, naming the mechanism, the market and the numbers.

    Examples:
        >>> from twinedge.market import Greedy, McAfee
        >>> check_mechanism(McAfee())
        >>> check_mechanism(Greedy(), truthful=True)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        twinedge.errors.MarketError: Greedy on values [...]: buyer ... gains ... by reporting ...
    """
    name = type(mechanism).__name__
    if not callable(getattr(mechanism, "clear", None)):
        raise MarketError(f"{name} has no clear(bids, rng) method")
    truthful = bool(getattr(mechanism, "truthful", False)) if truthful is None else truthful
    rng = np.random.default_rng(seed)
    for m in range(markets):
        n, k = int(rng.integers(1, 7)), int(rng.integers(1, 7))
        ints = m % 2 == 0
        values = rng.integers(0, 10, n).astype(float) if ints else rng.uniform(0, 10, n)
        costs = rng.integers(0, 10, k).astype(float) if ints else rng.uniform(0, 10, k)
        multi = m % 4 >= 2
        bids = Bids(
            values,
            costs,
            buyer_units=rng.integers(1, 4, n) if multi else None,
            seller_units=rng.integers(1, 4, k) if multi else None,
        )
        where = _describe(bids)
        c = _clear(mechanism, bids, seed)
        _contract(name, bids, c, where)
        again = _clear(mechanism, bids, seed)
        if not (
            np.array_equal(again.buyer_units, c.buyer_units)
            and np.array_equal(again.seller_units, c.seller_units)
            and again.buyer_price == c.buyer_price
            and again.seller_price == c.seller_price
        ):
            raise MarketError(f"{name} on {where}: two clearings with one rng seed differ")
        opt = _optimum(bids)
        if c.welfare > opt + 1e-9 * max(1.0, opt):
            raise MarketError(f"{name} on {where}: welfare {c.welfare} above the optimum {opt}")
        if truthful and not multi:
            _truthful(mechanism, name, bids, seed, where)


def _truthful(mech: Any, name: str, bids: Bids, seed: int, where: str) -> None:
    truth = _clear(mech, bids, seed).utility(bids.values, bids.costs)
    prices = sorted({*bids.values.tolist(), *bids.costs.tolist()})
    reports = sorted(
        {x / 2 for x in range(0, 23)}
        | set(prices)
        | {p + 1e-6 for p in prices}
        | {max(p - 1e-6, 0.0) for p in prices}
    )
    for side, count in (("buyer", bids.n_buyers), ("seller", bids.n_sellers)):
        for i in range(count):
            me = i if side == "buyer" else bids.n_buyers + i
            for r in reports:
                lie = (
                    bids.replace(buyer=i, value=r)
                    if side == "buyer"
                    else bids.replace(seller=i, cost=r)
                )
                u = _clear(mech, lie, seed).utility(bids.values, bids.costs)[me]
                if u > truth[me] + 1e-9:
                    true = bids.values[i] if side == "buyer" else bids.costs[i]
                    raise MarketError(
                        f"{name} on {where}: {side} {i} gains {u - truth[me]:.6g} by "
                        f"reporting {r} instead of {true} (utility {u:.6g} > "
                        f"{truth[me]:.6g}); not truthful"
                    )
