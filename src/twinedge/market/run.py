"""The compute market inside a run: the scenario's ``market:`` section cleared at the end
of every period of ``period_s`` seconds over the run's network view, its trades recorded
in the run's ledger (``twinedge run --ledger``) and its totals added to the summary.

A run of ``T = steps * step_s`` seconds clears ``floor(T / period_s)`` periods, period
``b`` at ``t = b * period_s`` (``b = 1, 2, ...``), in the step whose end reaches it; each
period draws fresh private values and costs from the market's own random stream
(:func:`twinedge.market.period.clear_period`). The totals::

    units traded          U = sum over periods of the units traded
    payments              P_buy = sum buyer_price * units,  P_sell = sum seller_price * units
    operator's surplus    P_buy - P_sell  (>= 0: weak budget balance)
    welfare               W = sum over trades of (value - cost) per unit, reported values
    efficiency            W / W*, W* the welfare of the efficient allocation of every period

Prices are in the currency of the section's values and costs, per unit of
``unit_cpu_ghz`` GHz for one period.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from twinedge.market.period import clear_period, mechanism_of
from twinedge.scenario.schema import Market

if TYPE_CHECKING:
    from twinedge.orchestrator.view import NetworkView

__all__ = ["MARKET_KEYS", "MarketRun"]

#: The summary keys a run with a ``market`` section adds (in the order of the tables).
MARKET_KEYS = (
    "market_periods",
    "market_trades",
    "market_units_traded",
    "market_mean_buyer_price",
    "market_mean_seller_price",
    "market_welfare",
    "market_optimal_welfare",
    "market_efficiency",
    "market_buyer_payments",
    "market_seller_receipts",
    "market_surplus",
)


class MarketRun:
    """One market over a run: :meth:`step` once per step, then :meth:`summary`.

    Parameters:
        spec: the scenario's ``market`` section.
        rng: the market's random stream (private values and costs, rationing).

    Examples:
        >>> from twinedge.scenario import load_scenario
        >>> from twinedge.world import build_world
        >>> from twinedge.orchestrator import NetworkState, NetworkView
        >>> world = build_world(load_scenario("city-small"), np.random.default_rng(0))
        >>> view = NetworkView(world, NetworkState.at(world, world.xy_m), step_s=1.0)
        >>> m = MarketRun(Market(period_s=2.0), np.random.default_rng(1))
        >>> [m.step(view, k * 1.0, (k + 1) * 1.0) for k in range(5)]
        [0, 1, 0, 1, 0]
        >>> s = m.summary()
        >>> s["market_periods"], s["market_surplus"] >= 0
        (2, True)
    """

    def __init__(self, spec: Market, rng: np.random.Generator):
        self.spec, self.rng = spec, rng
        self.mechanism = mechanism_of(spec)
        self.periods = self.trades = self.units = 0
        self.welfare = self.optimal = self.paid = self.received = 0.0

    def step(self, view: NetworkView, t0_s: float, t1_s: float, recorder: Any = None) -> int:
        """Clear every period that ends in ``(t0_s, t1_s]``; return how many did.

        ``recorder``: when it has ``trades(t_s, world, entries)`` (a
        :class:`twinedge.engine.record.LedgerRecorder`), it receives each period's
        ``trade`` entries.
        """
        p = self.spec.period_s
        first = math.floor(t0_s / p + 1e-9) + 1
        last = math.floor(t1_s / p + 1e-9)
        record = getattr(recorder, "trades", None)
        for b in range(first, last + 1):
            period = clear_period(view, self.rng, self.spec, self.mechanism)
            self.periods += 1
            c = period.clearing
            if c is None:
                continue
            self.trades += int(c.trade_units.size)
            self.units += c.units_traded
            self.welfare += float(c.welfare)
            self.optimal += float(c.optimal_welfare)
            self.paid += float(c.buyer_payment.sum())
            self.received += float(c.seller_receipt.sum())
            if record is not None:
                entries = period.entries(b * p)
                if entries:
                    record(b * p, view.world, entries)
        return max(last - first + 1, 0)

    def summary(self) -> dict[str, float]:
        """The run's market totals (:data:`MARKET_KEYS`); prices are means weighted by
        units (0 when nothing traded), efficiency is 1 when no trade was possible."""
        u = self.units
        return {
            "market_periods": self.periods,
            "market_trades": self.trades,
            "market_units_traded": u,
            "market_mean_buyer_price": self.paid / u if u else 0.0,
            "market_mean_seller_price": self.received / u if u else 0.0,
            "market_welfare": self.welfare,
            "market_optimal_welfare": self.optimal,
            "market_efficiency": self.welfare / self.optimal if self.optimal > 0 else 1.0,
            "market_buyer_payments": self.paid,
            "market_seller_receipts": self.received,
            "market_surplus": self.paid - self.received,
        }
