"""What a compute market is given (:class:`Bids`) and what it decides (:class:`Clearing`).

A bid is one row of a side: a buyer's value per unit of compute (or a seller's cost per
unit) and the number of units it bids for. A row with ``units = q`` stands for ``q``
unit bids of one trader at the same price; the mechanisms rank and clear *unit* bids
(see docs/market.md for what that means for truthfulness).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from twinedge.errors import MarketError

__all__ = ["Bids", "Clearing"]

#: Largest accepted value or cost per unit (keeps every sum of prices finite).
MAX_PRICE = 1e15
#: Most units one bid may carry, and most units a side may hold in all.
MAX_UNITS = 10_000_000


def _prices(a: Any, side: str, what: str) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MarketError(f"{side}: {what} must be numbers ({exc})") from None
    if arr.ndim != 1:
        raise MarketError(f"{side}: {what} must be a 1-D sequence, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0) | (arr > MAX_PRICE))
    if bad.size:
        i = int(bad[0])
        raise MarketError(
            f"{side}: bid {i}: {what} got {float(arr[i])!r}; expected a finite number in "
            f"[0, {MAX_PRICE:g}]"
        )
    return arr


def _units(a: Any, n: int, side: str) -> np.ndarray:
    if a is None:
        return np.ones(n, dtype=np.int64)
    arr = np.asarray(a)
    if arr.shape != (n,):
        raise MarketError(f"{side}: units has shape {arr.shape}; expected one per bid ({n},)")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "f":
        whole = np.isfinite(arr) & (arr == np.round(arr))
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise MarketError(
                f"{side}: bid {i}: units got {float(arr[i])!r}; expected an integer >= 1"
            )
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu" or arr.dtype.kind == "b":
        raise MarketError(f"{side}: units must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    bad = np.flatnonzero((arr < 1) | (arr > MAX_UNITS))
    if bad.size:
        i = int(bad[0])
        raise MarketError(
            f"{side}: bid {i}: units got {int(arr[i])}; expected an integer in [1, {MAX_UNITS}]"
        )
    if int(arr.sum()) > MAX_UNITS:
        raise MarketError(f"{side}: {int(arr.sum())} units in all; at most {MAX_UNITS}")
    return arr


def _ids(a: Any, n: int, side: str) -> np.ndarray:
    if a is None:
        return np.arange(n)
    arr = np.asarray(a)
    if arr.shape != (n,):
        raise MarketError(f"{side}: ids has shape {arr.shape}; expected one per bid ({n},)")
    return arr


@dataclass(frozen=True, eq=False)
class Bids:
    """The sealed bids of one market period.

    Parameters:
        values: ``(n,)`` each buyer's value per unit (currency per unit), finite, >= 0.
        costs: ``(m,)`` each seller's cost per unit (currency per unit), finite, >= 0.
        buyer_units, seller_units: units each bid is for, integers >= 1 (default 1 each).
        buyer_ids, seller_ids: a name per bid (default its index), used by the ledger.

    Raises:
        MarketError: a side is empty, a value is NaN, infinite, negative or above
            :data:`MAX_PRICE`, a count of units is not an integer >= 1, or the arrays
            disagree in length.

    Examples:
        >>> bids = Bids([10.0, 8.0], [2.0, 6.0], buyer_units=[1, 2])
        >>> bids.n_buyers, bids.n_sellers, int(bids.buyer_units.sum())
        (2, 2, 3)
    """

    values: np.ndarray
    costs: np.ndarray
    buyer_units: np.ndarray
    seller_units: np.ndarray
    buyer_ids: np.ndarray
    seller_ids: np.ndarray

    def __init__(
        self,
        values: Sequence[float] | np.ndarray,
        costs: Sequence[float] | np.ndarray,
        *,
        buyer_units: Sequence[int] | np.ndarray | None = None,
        seller_units: Sequence[int] | np.ndarray | None = None,
        buyer_ids: Sequence[Any] | np.ndarray | None = None,
        seller_ids: Sequence[Any] | np.ndarray | None = None,
    ):
        v = _prices(values, "buyers", "value")
        c = _prices(costs, "sellers", "cost")
        for side, arr in (("buyers", v), ("sellers", c)):
            if arr.size == 0:
                raise MarketError(
                    f"{side}: no bids; a double auction needs at least one buyer and one "
                    "seller (a period without them has no clearing)"
                )
        fields = {
            "values": v,
            "costs": c,
            "buyer_units": _units(buyer_units, v.size, "buyers"),
            "seller_units": _units(seller_units, c.size, "sellers"),
            "buyer_ids": _ids(buyer_ids, v.size, "buyers"),
            "seller_ids": _ids(seller_ids, c.size, "sellers"),
        }
        for name, arr in fields.items():
            arr = arr.view()
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @property
    def n_buyers(self) -> int:
        return int(self.values.size)

    @property
    def n_sellers(self) -> int:
        return int(self.costs.size)

    def replace(
        self,
        *,
        buyer: int | None = None,
        value: float | None = None,
        seller: int | None = None,
        cost: float | None = None,
    ) -> Bids:
        """The same bids with buyer ``buyer`` reporting ``value`` (and/or seller
        ``seller`` reporting ``cost``): one trader's misreport, the others unchanged."""
        v, c = self.values.copy(), self.costs.copy()
        if buyer is not None:
            v[buyer] = value
        if seller is not None:
            c[seller] = cost
        return Bids(
            v,
            c,
            buyer_units=self.buyer_units,
            seller_units=self.seller_units,
            buyer_ids=self.buyer_ids,
            seller_ids=self.seller_ids,
        )


@dataclass(frozen=True, eq=False)
class Clearing:
    """The outcome of one market period.

    Every mechanism here charges one price per side: each unit bought costs its buyer
    ``buyer_price``, each unit sold earns its seller ``seller_price``
    (``buyer_price >= seller_price``; both ``None`` when nothing trades).

    Attributes:
        mechanism: the name of the mechanism that cleared the bids.
        buyer_units, seller_units: ``(n,)`` / ``(m,)`` units each bid bought / sold.
        trade_buyer, trade_seller, trade_units: the trades — bid ``trade_buyer[i]``
            buys ``trade_units[i]`` units from bid ``trade_seller[i]`` (indices into the
            bids' rows).
        buyer_price, seller_price: price per unit paid by buyers / received by sellers.
        efficient_units: units traded in the welfare-maximising allocation of the
            reports (``k``).
        optimal_welfare: the reported gains from trade of that allocation,
            ``sum_{i<=k} (b_i - s_i)`` over sorted unit bids.
        welfare: the reported gains from trade of this clearing,
            ``sum(values * buyer_units) - sum(costs * seller_units)``.
    """

    mechanism: str
    buyer_units: np.ndarray
    seller_units: np.ndarray
    trade_buyer: np.ndarray
    trade_seller: np.ndarray
    trade_units: np.ndarray
    buyer_price: float | None
    seller_price: float | None
    efficient_units: int
    optimal_welfare: float
    welfare: float

    @property
    def units_traded(self) -> int:
        """Units traded (one side's total; the two sides' totals are equal)."""
        return int(self.trade_units.sum())

    @property
    def buyer_payment(self) -> np.ndarray:
        """``(n,)`` what each buyer pays in all: ``buyer_units * buyer_price``."""
        return self.buyer_units * (self.buyer_price or 0.0)

    @property
    def seller_receipt(self) -> np.ndarray:
        """``(m,)`` what each seller receives in all: ``seller_units * seller_price``."""
        return self.seller_units * (self.seller_price or 0.0)

    @property
    def surplus(self) -> float:
        """The mechanism's budget surplus: payments minus receipts (>= 0: weak budget
        balance); kept by the market operator."""
        if self.buyer_price is None or self.seller_price is None:
            return 0.0
        return self.units_traded * (self.buyer_price - self.seller_price)

    def utility(self, values: np.ndarray, costs: np.ndarray) -> np.ndarray:
        """Each trader's utility under true ``values`` and ``costs`` (buyers first, then
        sellers): a buyer's ``units * (value - buyer_price)``, a seller's
        ``units * (seller_price - cost)``; 0 for a trader that does not trade."""
        pb, ps = self.buyer_price or 0.0, self.seller_price or 0.0
        bu = np.where(self.buyer_units > 0, self.buyer_units * (np.asarray(values) - pb), 0.0)
        su = np.where(self.seller_units > 0, self.seller_units * (ps - np.asarray(costs)), 0.0)
        return np.concatenate([bu, su])

    def to_json(self) -> dict[str, Any]:
        """A JSON summary (no per-bid arrays)."""
        return {
            "mechanism": self.mechanism,
            "units_traded": self.units_traded,
            "trades": int(self.trade_units.size),
            "buyer_price": self.buyer_price,
            "seller_price": self.seller_price,
            "surplus": self.surplus,
            "welfare": self.welfare,
            "optimal_welfare": self.optimal_welfare,
            "efficient_units": self.efficient_units,
        }
