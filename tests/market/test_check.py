"""check_mechanism passes the built-ins and catches each kind of broken mechanism."""

from __future__ import annotations

import numpy as np
import pytest

from twinedge.errors import MarketError
from twinedge.market import Bids, Clearing, Greedy, McAfee, PostedPrice, check_mechanism


def test_the_built_in_mechanisms_pass():
    check_mechanism(McAfee())
    check_mechanism(PostedPrice(4.5))
    check_mechanism(PostedPrice(3.0, rationing="order"))
    check_mechanism(Greedy())  # not flagged truthful: no misreport search


def test_greedy_claimed_truthful_is_caught_with_the_misreport():
    with pytest.raises(
        MarketError, match=r"Greedy on values .*: (buyer|seller) \d+ gains .* by reporting"
    ):
        check_mechanism(Greedy(), truthful=True)


class Overcharge(McAfee):
    """Buyers pay one more than the price: not individually rational."""

    def clear(self, bids: Bids, rng: np.random.Generator) -> Clearing:
        c = super().clear(bids, rng)
        if c.buyer_price is None:
            return c
        return Clearing(**{**c.__dict__, "buyer_price": c.buyer_price + 1.0})


class Subsidy(Greedy):
    """Sellers receive more than buyers pay: not budget balanced."""

    def clear(self, bids: Bids, rng: np.random.Generator) -> Clearing:
        c = super().clear(bids, rng)
        if c.buyer_price is None:
            return c
        return Clearing(
            **{**c.__dict__, "buyer_price": c.buyer_price - 1e-3, "seller_price": c.buyer_price}
        )


class Dice(Greedy):
    """Uses a clock instead of the rng it is given: not reproducible."""

    calls = 0

    def clear(self, bids: Bids, rng: np.random.Generator) -> Clearing:
        Dice.calls += 1
        c = super().clear(bids, rng)
        if c.buyer_price is None or Dice.calls % 2:
            return c
        return Clearing(
            **{
                **c.__dict__,
                "buyer_price": c.buyer_price + 0.0,
                "seller_price": c.seller_price - 1e-9,
            }
        )


class Lost(Greedy):
    """Reports a unit bought that no trade carries."""

    def clear(self, bids: Bids, rng: np.random.Generator) -> Clearing:
        c = super().clear(bids, rng)
        return Clearing(**{**c.__dict__, "buyer_units": c.buyer_units + 1})


@pytest.mark.parametrize(
    ("mech", "message"),
    [
        (Overcharge(), r"not individually rational: buyer \d+ values a unit at"),
        (Subsidy(), r"not individually rational|not weakly budget balanced"),
        (Dice(), "two clearings with one rng seed differ"),
        (Lost(), "the trades do not add up to buyer_units"),
    ],
)
def test_broken_mechanisms_are_caught(mech, message):
    with pytest.raises(MarketError, match=message):
        check_mechanism(mech)


def test_not_a_mechanism():
    with pytest.raises(MarketError, match="has no clear"):
        check_mechanism(object())

    class Wrong:
        def clear(self, bids, rng):
            return {"price": 1}

    with pytest.raises(MarketError, match=r"Wrong\.clear returned dict; expected a Clearing"):
        check_mechanism(Wrong())
