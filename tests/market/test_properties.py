"""Mechanism-design properties on random markets (hypothesis).

Individual rationality, weak budget balance and consistency for every mechanism;
dominant-strategy truthfulness of McAfee and of the posted price for single-unit
traders (no buyer or seller gains by any misreport on a grid and at random, the others
truthful); McAfee's welfare >= (1 - 1/k) of the optimum; Greedy's optimum. Greedy's
manipulability and McAfee's with a multi-unit trader are shown on markets computed by
hand.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from twinedge.market import Bids, Greedy, McAfee, PostedPrice

# integer prices on a small range make ties (and ties between b_k and s_k) frequent
PRICE = st.one_of(
    st.integers(0, 12).map(float),
    st.floats(0, 12, allow_nan=False, allow_infinity=False, allow_subnormal=False),
)
SIDE = st.lists(PRICE, min_size=1, max_size=7)
MISREPORTS = [x / 2 for x in range(0, 27)] + [0.25, 5.75, 100.0]


@st.composite
def markets(draw, multi_unit: bool = False):
    values, costs = draw(SIDE), draw(SIDE)
    kw = {}
    if multi_unit:
        kw["buyer_units"] = draw(
            st.lists(st.integers(1, 4), min_size=len(values), max_size=len(values))
        )
        kw["seller_units"] = draw(
            st.lists(st.integers(1, 4), min_size=len(costs), max_size=len(costs))
        )
    return Bids(values, costs, **kw)


MECHS = [McAfee(), Greedy(), PostedPrice(5.0), PostedPrice(5.5, rationing="order")]


def check_consistent(bids: Bids, c) -> None:
    assert c.trade_units.sum() == c.buyer_units.sum() == c.seller_units.sum() == c.units_traded
    assert np.array_equal(np.bincount(c.trade_buyer, c.trade_units, bids.n_buyers), c.buyer_units)
    assert np.array_equal(
        np.bincount(c.trade_seller, c.trade_units, bids.n_sellers), c.seller_units
    )
    assert (c.buyer_units <= bids.buyer_units).all() and (c.seller_units <= bids.seller_units).all()
    assert (c.trade_units >= 1).all()


@settings(max_examples=300, deadline=None)
@given(markets(multi_unit=True), st.integers(0, 2**32 - 1))
def test_individually_rational_and_weakly_budget_balanced(bids, seed):
    for mech in MECHS:
        c = mech.clear(bids, np.random.default_rng(seed))
        check_consistent(bids, c)
        if c.units_traded == 0:
            assert c.buyer_price is None and c.surplus == 0.0
            continue
        # no trading buyer pays more than its value, no trading seller gets less than its cost
        assert (bids.values[c.buyer_units > 0] >= c.buyer_price).all()
        assert (bids.costs[c.seller_units > 0] <= c.seller_price).all()
        # payments >= receipts
        assert c.buyer_price >= c.seller_price
        assert c.buyer_payment.sum() >= c.seller_receipt.sum() - 1e-9
        assert c.surplus >= 0
        assert (c.utility(bids.values, bids.costs) >= -1e-12).all()


@settings(max_examples=300, deadline=None)
@given(markets(multi_unit=True))
def test_welfare_bounds(bids):
    m, g = (
        McAfee().clear(bids, np.random.default_rng(0)),
        Greedy().clear(bids, np.random.default_rng(0)),
    )
    k = m.efficient_units
    assert g.units_traded == k and abs(g.welfare - g.optimal_welfare) <= 1e-9
    assert m.units_traded in (k, max(k - 1, 0))
    assert m.optimal_welfare == g.optimal_welfare
    # McAfee drops at most the least valuable efficient pair: welfare >= (1 - 1/k) OPT
    if k:
        assert m.welfare >= (1 - 1 / k) * m.optimal_welfare - 1e-9
    # no mechanism beats the optimum
    for mech in MECHS:
        assert mech.clear(bids, np.random.default_rng(1)).welfare <= m.optimal_welfare + 1e-9


def best_deviation(mech, bids: Bids, seed: int, extra: list[float]) -> float:
    """The largest gain any one trader gets by any misreport (grid + ``extra``), the
    others truthful; utilities under the true (truthfully reported) values."""
    truth = mech.clear(bids, np.random.default_rng(seed)).utility(bids.values, bids.costs)
    best = 0.0
    for i in range(bids.n_buyers):
        for r in MISREPORTS + extra:
            lie = mech.clear(bids.replace(buyer=i, value=r), np.random.default_rng(seed))
            best = max(best, lie.utility(bids.values, bids.costs)[i] - truth[i])
    for j in range(bids.n_sellers):
        for r in MISREPORTS + extra:
            lie = mech.clear(bids.replace(seller=j, cost=r), np.random.default_rng(seed))
            u = lie.utility(bids.values, bids.costs)[bids.n_buyers + j]
            best = max(best, u - truth[bids.n_buyers + j])
    return best


@settings(max_examples=60, deadline=None)
@given(markets(), st.lists(PRICE, max_size=3), st.integers(0, 2**32 - 1))
def test_mcafee_and_posted_price_are_truthful_for_single_unit_traders(bids, extra, seed):
    # the misreports include every other trader's price, where ranks and ties flip
    near = sorted({*bids.values.tolist(), *bids.costs.tolist()})
    extra = extra + near + [x + 1e-9 for x in near] + [max(x - 1e-9, 0.0) for x in near]
    for mech in (McAfee(), PostedPrice(5.0), PostedPrice(5.5, rationing="order")):
        assert best_deviation(mech, bids, seed, extra) <= 1e-9, mech


def test_greedy_is_manipulable_hand_computed():
    # b = 10 8, s = 2 6: both trade at (8 + 6) / 2 = 7; buyer 1 (value 8) gains 1.
    # Reporting 6 instead keeps k = 2 (6 >= 6) and moves the price to (6 + 6) / 2 = 6:
    # it gains 2. The search below finds this misreport.
    bids = Bids([10.0, 8.0], [2.0, 6.0])
    mech = Greedy()
    truth = mech.clear(bids, np.random.default_rng(0)).utility(bids.values, bids.costs)
    assert truth.tolist() == [3.0, 1.0, 5.0, 1.0]
    gains = {
        r: mech.clear(bids.replace(buyer=1, value=r), np.random.default_rng(0)).utility(
            bids.values, bids.costs
        )[1]
        - truth[1]
        for r in MISREPORTS
    }
    best = max(gains, key=lambda r: gains[r])
    assert (best, gains[best]) == (6.0, 1.0)
    # the seller at 6 gains by asking 8: price (8 + 8) / 2 = 8, gain 1
    lie = mech.clear(bids.replace(seller=1, cost=8.0), np.random.default_rng(0))
    assert lie.utility(bids.values, bids.costs)[3] - truth[3] == 1.0
    # and McAfee on the same market leaves them nothing to gain
    assert best_deviation(McAfee(), bids, 0, []) == 0.0


def test_mcafee_is_not_truthful_for_a_multi_unit_buyer_hand_computed():
    # buyer 0 wants 2 units at 10; buyer 1 one at 1; sellers 1, 2, 11.
    # Truthful: b = 10 10 1, s = 1 2 11, k = 2, p0 = (1 + 11) / 2 = 6 in [2, 10]:
    # buyer 0 buys 2 at 6, utility 8. Bidding for 1 unit (demand reduction): b = 10 1,
    # k = 1, p0 = (1 + 2) / 2 = 1.5 in [1, 10]: 1 unit at 1.5, utility 8.5 > 8.
    truthful = McAfee().clear(
        Bids([10, 1], [1, 2, 11], buyer_units=[2, 1]), np.random.default_rng(0)
    )
    assert (truthful.buyer_units[0], truthful.buyer_price) == (2, 6.0)
    assert truthful.utility([10, 1], [1, 2, 11])[0] == 8.0
    reduced = McAfee().clear(
        Bids([10, 1], [1, 2, 11], buyer_units=[1, 1]), np.random.default_rng(0)
    )
    assert (reduced.buyer_units[0], reduced.buyer_price) == (1, 1.5)
    assert reduced.utility([10, 1], [1, 2, 11])[0] == 8.5


def test_the_deviation_search_finds_greedy_manipulable_on_random_markets():
    # the search of the truthfulness test is able to fail: on the same kind of markets
    # it finds a profitable misreport against Greedy in most of them
    rng = np.random.default_rng(5)
    found = 0
    for _ in range(20):
        bids = Bids(rng.integers(0, 12, 5).astype(float), rng.integers(0, 12, 5).astype(float))
        found += best_deviation(Greedy(), bids, 0, []) > 1e-9
        assert best_deviation(McAfee(), bids, 0, []) <= 1e-9
    assert found >= 10


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(-3, 3).map(float), st.floats(-1e15, 1e15)), max_size=80))
def test_the_fast_stable_order_is_numpys_stable_argsort(xs):
    from twinedge.market.mechanisms import _stable_order

    x = np.asarray(xs, dtype=float)
    assert np.array_equal(_stable_order(x), np.argsort(x, kind="stable"))
