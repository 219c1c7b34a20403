"""A compute market: double auctions that price units of compute between twins (buyers)
and hosts (sellers), with trades and payments recorded in the governance ledger.

``mechanism.clear(bids, rng) -> Clearing`` is the one contract (:mod:`.mechanisms`);
:mod:`.ledger` turns a clearing into ``trade`` entries that settlement bills, and
:mod:`.period` builds one period's bids from a network view, and
:func:`check_mechanism` runs the contract and the properties on any mechanism. docs/market.md has the
mechanisms, their properties and the formulas.
"""

from twinedge.market.bids import Bids, Clearing
from twinedge.market.check import check_mechanism
from twinedge.market.ledger import MARKET, trade_entries
from twinedge.market.mechanisms import (
    MECHANISMS,
    Greedy,
    McAfee,
    Mechanism,
    PostedPrice,
    resolve_mechanism,
)

__all__ = [
    "MARKET",
    "MECHANISMS",
    "Bids",
    "Clearing",
    "Greedy",
    "McAfee",
    "Mechanism",
    "PostedPrice",
    "check_mechanism",
    "resolve_mechanism",
    "trade_entries",
]
