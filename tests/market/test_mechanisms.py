"""The market mechanisms on small markets computed by hand, ties, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from twinedge.errors import MarketError
from twinedge.market import Bids, Greedy, McAfee, PostedPrice, resolve_mechanism

RNG = np.random.default_rng


def clear(mech, values, costs, **kw):
    return mech.clear(Bids(values, costs, **kw), RNG(0))


def trades(c):
    return list(
        zip(c.trade_buyer.tolist(), c.trade_seller.tolist(), c.trade_units.tolist(), strict=True)
    )


# --- McAfee -----------------------------------------------------------------------------


def test_mcafee_all_k_trade_at_p0_when_it_lies_between_s_k_and_b_k():
    # b = 10 8 6 2, s = 1 3 5 9: k = 3 (6 >= 5, 2 < 9); p0 = (2 + 9) / 2 = 5.5 in [5, 6]
    c = clear(McAfee(), [10, 8, 6, 2], [1, 3, 5, 9])
    assert (c.efficient_units, c.units_traded) == (3, 3)
    assert c.buyer_price == c.seller_price == 5.5
    assert trades(c) == [(0, 0, 1), (1, 1, 1), (2, 2, 1)]
    assert c.buyer_units.tolist() == [1, 1, 1, 0] and c.seller_units.tolist() == [1, 1, 1, 0]
    assert c.surplus == 0.0
    assert c.welfare == c.optimal_welfare == (10 - 1) + (8 - 3) + (6 - 5)
    assert c.buyer_payment.tolist() == [5.5, 5.5, 5.5, 0] and c.seller_receipt.sum() == 16.5


def test_mcafee_reduces_the_trade_when_p0_is_outside_s_k_b_k():
    # b = 10 8 6 5, s = 1 3 4 9: k = 3; p0 = (5 + 9) / 2 = 7 > b_3 = 6: 2 trade,
    # buyers pay b_3 = 6, sellers receive s_3 = 4; surplus (k-1)(b_k - s_k) = 2 * 2 = 4
    c = clear(McAfee(), [10, 8, 6, 5], [1, 3, 4, 9])
    assert (c.efficient_units, c.units_traded) == (3, 2)
    assert (c.buyer_price, c.seller_price) == (6.0, 4.0)
    assert trades(c) == [(0, 0, 1), (1, 1, 1)]
    assert c.surplus == 4.0
    assert c.optimal_welfare == 9 + 5 + 2 and c.welfare == 9 + 5
    assert c.buyer_payment.sum() - c.seller_receipt.sum() == c.surplus


def test_mcafee_p0_below_s_k_reduces_too():
    # b = 9 7 1, s = 2 6 6.5: k = 2; p0 = (1 + 6.5) / 2 = 3.75 < s_2 = 6: one trade at 7 / 6
    c = clear(McAfee(), [9, 7, 1], [2, 6, 6.5])
    assert (c.units_traded, c.buyer_price, c.seller_price) == (1, 7.0, 6.0)


def test_mcafee_without_a_k_plus_1_th_bid_reduces():
    # one buyer, one seller: k = 1, no (k+1)-th: p0 undefined, the one trade is reduced
    c = clear(McAfee(), [10], [1])
    assert (c.efficient_units, c.units_traded, c.buyer_price) == (1, 0, None)
    # b = 9 8, s = 4: k = 1, b_2 = 8 but no s_2 (cost +inf): p0 = +inf > b_1: no trade
    assert clear(McAfee(), [9, 8], [4]).units_traded == 0
    # b = 9 8, s = 3 4: k = 2 = both sides: no trade left at k - 1 = 1? one trade at 8 / 4
    c = clear(McAfee(), [9, 8], [3, 4])
    assert (c.units_traded, c.buyer_price, c.seller_price) == (1, 8.0, 4.0)


def test_mcafee_no_efficient_trade():
    c = clear(McAfee(), [1, 2], [3, 4])
    assert (c.efficient_units, c.units_traded, c.optimal_welfare, c.welfare) == (0, 0, 0.0, 0.0)
    assert c.buyer_price is None and c.surplus == 0.0 and c.trade_units.size == 0


def test_units_are_unit_bids_and_trades_merge_per_pair():
    # buyer 0: 3 units at 10, buyer 1: 1 at 7; seller 0: 2 at 1, seller 1: 3 at 2;
    # unit bids b = 10 10 10 7, s = 1 1 2 2 2: k = 4 (7 >= 2), b_5 missing: reduced to 3
    # at b_4 = 7 / s_4 = 2; pairs (0,0) (0,0) (0,1) -> trades (0,0,2), (0,1,1)
    c = clear(McAfee(), [10, 7], [1, 2], buyer_units=[3, 1], seller_units=[2, 3])
    assert (c.efficient_units, c.units_traded) == (4, 3)
    assert (c.buyer_price, c.seller_price) == (7.0, 2.0)
    assert trades(c) == [(0, 0, 2), (0, 1, 1)]
    assert c.buyer_units.tolist() == [3, 0] and c.seller_units.tolist() == [2, 1]
    assert c.surplus == 3 * 5.0


def test_ties_rank_the_lower_row_first():
    # three buyers at 5, sellers 1 1 9: k = 2; p0 = (5 + 9) / 2 = 7 > 5: reduced to 1
    # trade; of the tied buyers the first row trades; of the tied sellers the first row
    c = clear(McAfee(), [5, 5, 5], [1, 1, 9])
    assert trades(c) == [(0, 0, 1)]
    c = clear(Greedy(), [5, 5, 5], [1, 1, 9])
    assert trades(c) == [(0, 0, 1), (1, 1, 1)] and c.buyer_price == 3.0
    # a tie b_k = s_k counts as an efficient trade (zero gain)
    c = clear(Greedy(), [4], [4])
    assert (c.efficient_units, c.units_traded, c.buyer_price) == (1, 1, 4.0)
    # the same bids in another order: the same prices, the other rows
    c = clear(Greedy(), [5, 5, 5], [9, 1, 1])
    assert trades(c) == [(0, 1, 1), (1, 2, 1)]


def test_mcafee_and_greedy_ignore_the_rng():
    bids = Bids([10, 8, 6, 5, 3], [1, 3, 4, 9, 2])
    for mech in (McAfee(), Greedy()):
        a, b = mech.clear(bids, RNG(1)), mech.clear(bids, RNG(2))
        assert trades(a) == trades(b) and a.buyer_price == b.buyer_price


# --- Greedy and PostedPrice -------------------------------------------------------------


def test_greedy_trades_all_k_at_the_midpoint():
    # b = 10 8, s = 2 6: k = 2, price (8 + 6) / 2 = 7
    c = clear(Greedy(), [10, 8], [2, 6])
    assert (c.units_traded, c.buyer_price, c.seller_price, c.surplus) == (2, 7.0, 7.0, 0.0)
    assert c.welfare == c.optimal_welfare == 10.0


def test_posted_price_in_bid_order():
    # p = 5: willing buyers 10, 8, 6 (3 units), sellers 1, 3 (2 units): 2 trade at 5,
    # buyers rationed in bid order
    c = clear(PostedPrice(5.0, rationing="order"), [6, 10, 8, 2], [1, 3, 7])
    assert c.buyer_units.tolist() == [1, 1, 0, 0] and c.seller_units.tolist() == [1, 1, 0]
    assert (c.buyer_price, c.seller_price) == (5.0, 5.0)
    assert c.welfare == (6 - 1) + (10 - 3)
    # a buyer of 2 units rationed to what is left
    c = clear(PostedPrice(5.0, rationing="order"), [6, 9], [1, 3], buyer_units=[1, 2])
    assert c.buyer_units.tolist() == [1, 1] and trades(c) == [(0, 0, 1), (1, 1, 1)]
    # nobody willing
    assert clear(PostedPrice(0.5), [6], [1]).units_traded == 0


def test_posted_price_rations_at_random_but_only_among_the_willing():
    bids = Bids([6, 10, 8, 2, 7], [1, 3])
    seen = set()
    for seed in range(40):
        c = PostedPrice(5.0).clear(bids, RNG(seed))
        assert c.units_traded == 2 and c.buyer_units[3] == 0
        seen.add(tuple(np.flatnonzero(c.buyer_units).tolist()))
    assert len(seen) == 6  # every pair of the 4 willing buyers came up


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"values": [1.0, float("nan")], "costs": [1.0]}, "buyers: bid 1: value got nan"),
        ({"values": [1.0], "costs": [float("inf")]}, "sellers: bid 0: cost got inf"),
        ({"values": [-1.0], "costs": [1.0]}, "buyers: bid 0: value got -1.0"),
        ({"values": [], "costs": [1.0]}, "buyers: no bids"),
        ({"values": [1.0], "costs": []}, "sellers: no bids"),
        ({"values": [[1.0]], "costs": [1.0]}, "buyers: value must be a 1-D sequence"),
        ({"values": ["x"], "costs": [1.0]}, "buyers: value must be numbers"),
        ({"values": [1.0], "costs": [1.0], "buyer_units": [-2]}, "buyers: bid 0: units got -2"),
        ({"values": [1.0], "costs": [1.0], "seller_units": [0]}, "sellers: bid 0: units got 0"),
        ({"values": [1.0], "costs": [1.0], "buyer_units": [1.5]}, "units got 1.5"),
        ({"values": [1.0], "costs": [1.0], "buyer_units": [1, 1]}, "units has shape (2,)"),
        ({"values": [1.0], "costs": [1.0], "seller_units": ["a"]}, "units must be integers"),
        ({"values": [1.0], "costs": [1.0], "buyer_ids": ["a", "b"]}, "ids has shape (2,)"),
        ({"values": [1e300], "costs": [1.0]}, "expected a finite number in [0, 1e+15]"),
    ],
)
def test_bad_bids_raise_market_errors(kwargs, message):
    values, costs = kwargs.pop("values"), kwargs.pop("costs")
    with pytest.raises(MarketError) as exc:
        Bids(values, costs, **kwargs)
    assert message in str(exc.value)


def test_bad_mechanisms_raise_market_errors():
    with pytest.raises(MarketError, match="price got nan"):
        PostedPrice(float("nan")).clear(Bids([1], [1]), RNG(0))
    with pytest.raises(MarketError, match="price got -1"):
        PostedPrice(-1).clear(Bids([1], [1]), RNG(0))
    with pytest.raises(MarketError, match="rationing got 'first'"):
        PostedPrice(1.0, rationing="first").clear(Bids([1], [1]), RNG(0))  # type: ignore[arg-type]
    with pytest.raises(MarketError, match="expected one of greedy, mcafee, posted"):
        resolve_mechanism("vickrey")
    with pytest.raises(MarketError, match="mechanism 'mcafee'"):
        resolve_mechanism("mcafee", price=1.0)
    with pytest.raises(MarketError, match=r"bids must be a twinedge\.market\.Bids"):
        McAfee().clear(([1.0], [1.0]), RNG(0))  # type: ignore[arg-type]


def test_mechanisms_are_scikit_learn_style():
    m = resolve_mechanism("posted", price=2.5, rationing="order")
    assert repr(m) == "PostedPrice(price=2.5, rationing='order')"
    clone = type(m)(**m.get_params())
    assert clone.get_params() == m.get_params() and clone is not m
    assert repr(McAfee()) == "McAfee()" and resolve_mechanism(" McAfee ").name == "mcafee"
    assert resolve_mechanism(m) is m


def test_bids_are_read_only():
    bids = Bids([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        bids.values[0] = 5.0
