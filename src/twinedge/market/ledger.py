"""A clearing as ledger entries: one ``trade`` entry per trade, in the seller's log.

Body (docs/ledger.md; :func:`twinedge.ledger.settle` bills it)::

    {"mechanism": "mcafee", "buyer": "e17", "buyer_domain": "telco",
     "seller": "edge-3", "seller_domain": "metro", "tier": "edge", "units": 2,
     "buyer_price": 5.5, "seller_price": 5.5, "operator": "(market)"}

Settlement charges the buyer's domain ``units * seller_price`` to the seller's domain
and, when ``buyer_price > seller_price`` (a reduced McAfee trade), ``units *
(buyer_price - seller_price)`` to ``operator``, who keeps the budget surplus.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twinedge.errors import MarketError
from twinedge.market.bids import Bids, Clearing

__all__ = ["MARKET", "trade_entries"]

#: The default market operator: a party without a log, like the grid.
MARKET = "(market)"


def _per_bid(values: Sequence[str], n: int, what: str) -> list[str]:
    out = [str(v) for v in values]
    if len(out) != n:
        raise MarketError(f"trade entries: {what} has {len(out)} names; expected one per bid ({n})")
    return out


def trade_entries(
    clearing: Clearing,
    bids: Bids,
    *,
    time_s: float,
    buyer_domains: Sequence[str],
    seller_domains: Sequence[str],
    seller_tiers: Sequence[str],
    operator: str = MARKET,
    actor: str = "twinedge-market",
) -> list[dict[str, Any]]:
    """The ``trade`` entries of ``clearing``, ready for ``LedgerDir.append_many``.

    Parameters:
        clearing, bids: a clearing and the bids it cleared.
        time_s: the entries' time (the end of the market period).
        buyer_domains, seller_domains: the owner domain of every buyer / seller bid.
        seller_tiers: the tier of every seller (``edge``, ``region``, ``cloud``).
        operator: who keeps the budget surplus (default ``(market)``, no log).
        actor: the entries' ``actor``.

    Raises:
        MarketError: a list of names does not have one name per bid.

    Examples:
        >>> import numpy as np
        >>> from twinedge.market import McAfee
        >>> bids = Bids([10, 8, 6, 5], [1, 3, 4, 9], buyer_ids=["a", "b", "c", "d"],
        ...             seller_ids=["h1", "h2", "h3", "h4"])
        >>> c = McAfee().clear(bids, np.random.default_rng(0))
        >>> e = trade_entries(c, bids, time_s=60.0, buyer_domains=["t"] * 4,
        ...                   seller_domains=["m"] * 4, seller_tiers=["edge"] * 4)
        >>> [(x["body"]["buyer"], x["body"]["seller"], x["body"]["buyer_price"]) for x in e]
        [('a', 'h1', 6.0), ('b', 'h2', 6.0)]
    """
    bdom = _per_bid(buyer_domains, bids.n_buyers, "buyer_domains")
    sdom = _per_bid(seller_domains, bids.n_sellers, "seller_domains")
    tiers = _per_bid(seller_tiers, bids.n_sellers, "seller_tiers")
    if clearing.buyer_units.shape != (bids.n_buyers,) or clearing.seller_units.shape != (
        bids.n_sellers,
    ):
        raise MarketError("trade entries: the clearing is not of these bids")
    out: list[dict[str, Any]] = []
    pb, ps = clearing.buyer_price, clearing.seller_price
    if pb is None or ps is None:
        return out
    for b, s, u in zip(
        clearing.trade_buyer.tolist(),
        clearing.trade_seller.tolist(),
        clearing.trade_units.tolist(),
        strict=True,
    ):
        out.append(
            {
                "type": "trade",
                "domain": sdom[s],
                "time": float(time_s),
                "actor": actor,
                "body": {
                    "mechanism": clearing.mechanism,
                    "buyer": str(bids.buyer_ids[b]),
                    "buyer_domain": bdom[b],
                    "seller": str(bids.seller_ids[s]),
                    "seller_domain": sdom[s],
                    "tier": tiers[s],
                    "units": int(u),
                    "buyer_price": float(pb),
                    "seller_price": float(ps),
                    "operator": operator,
                },
            }
        )
    return out
