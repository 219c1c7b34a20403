"""Market trades as ledger entries, settled to the micro-unit."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from twinedge.errors import LedgerError, MarketError
from twinedge.ledger import LedgerDir, PriceTable, settle
from twinedge.market import Bids, McAfee, trade_entries
from twinedge.market.period import clear_period, mechanism_of
from twinedge.orchestrator import NetworkState, NetworkView
from twinedge.scenario import load_scenario
from twinedge.scenario.schema import Market
from twinedge.world import build_world

PRICES = PriceTable.from_dict(
    {
        "currency": "EUR",
        "tiers": {
            "edge": {
                "per_cpu_ghz_s": "0.001",
                "per_mem_gb_s": "0.0005",
                "per_migrated_gb": "0.05",
                "per_kwh": "0.30",
            }
        },
    }
)


def hand_market() -> tuple[Bids, list[str], list[str], list[str]]:
    """Buyers of domain telco: 3 units at 0.013, 2 at 0.011, 1 at 0.0097, 4 at 0.0041.
    Sellers: metro's edge hosts h0 (2 units at 0.002) and h1 (2 at 0.0035), city's region
    hub h2 (3 at 0.00512345), metro's h3 (5 at 0.012).

    Unit bids b = .013 .013 .013 .011 .011 .0097 .0041 ..., s = .002 .002 .0035 .0035
    .00512345 .00512345 .00512345 .012 ...: k = 6 (.0097 >= .00512345, .0041 < .00512345);
    p0 = (.0041 + .00512345) / 2 = .004611725 < s_6: reduced to 5 trades, buyers pay
    b_6 = 0.0097, sellers receive s_6 = 0.00512345. Pairs: (b0,h0) x2, (b0,h1), (b1,h1),
    (b1,h2)."""
    bids = Bids(
        [0.013, 0.011, 0.0097, 0.0041],
        [0.002, 0.0035, 0.00512345, 0.012],
        buyer_units=[3, 2, 1, 4],
        seller_units=[2, 2, 3, 5],
        buyer_ids=["b0", "b1", "b2", "b3"],
        seller_ids=["h0", "h1", "h2", "h3"],
    )
    return (
        bids,
        ["telco"] * 4,
        ["metro", "metro", "city", "metro"],
        ["edge", "edge", "region", "edge"],
    )


def test_trade_entries_of_a_hand_computed_market():
    bids, bdom, sdom, tiers = hand_market()
    c = McAfee().clear(bids, np.random.default_rng(0))
    assert (c.units_traded, c.buyer_price, c.seller_price) == (5, 0.0097, 0.00512345)
    entries = trade_entries(
        c, bids, time_s=60.0, buyer_domains=bdom, seller_domains=sdom, seller_tiers=tiers
    )
    got = [
        (
            e["domain"],
            e["body"]["buyer"],
            e["body"]["seller"],
            e["body"]["tier"],
            e["body"]["units"],
        )
        for e in entries
    ]
    assert got == [
        ("metro", "b0", "h0", "edge", 2),
        ("metro", "b0", "h1", "edge", 1),
        ("metro", "b1", "h1", "edge", 1),
        ("city", "b1", "h2", "region", 1),
    ]
    assert all(e["type"] == "trade" and e["body"]["operator"] == "(market)" for e in entries)


def test_settlement_bills_a_hand_computed_market_to_the_micro_unit(tmp_path):
    bids, bdom, sdom, tiers = hand_market()
    c = McAfee().clear(bids, np.random.default_rng(0))
    entries = trade_entries(
        c, bids, time_s=60.0, buyer_domains=bdom, seller_domains=sdom, seller_tiers=tiers
    )
    with LedgerDir.create(tmp_path / "L", ["telco", "metro", "city"]) as ld:
        ld.append_many(entries)
        bills = settle(ld, PRICES, until=100)
    # telco -> metro: 4 units at 0.00512345 = 0.0204938 -> 20,494 micro (half-even)
    # telco -> city: 1 unit at 0.00512345 = 0.00512345 -> 5,123 micro
    # telco -> (market): 5 units at 0.0097 - 0.00512345 = 0.00457655: 0.02288275 -> 22,883
    lines = {(li.kind, li.payer, li.payee, li.tier): li for li in bills.lines}
    assert set(lines) == {
        ("market", "telco", "metro", "edge"),
        ("market", "telco", "city", "region"),
        ("market_surplus", "telco", "(market)", "edge"),
        ("market_surplus", "telco", "(market)", "region"),
    }
    m = lines[("market", "telco", "metro", "edge")]
    assert (m.quantity, m.unit_price, m.amount_micro, m.unit) == (
        Decimal(4),
        Decimal("0.00512345"),
        20_494,
        "unit",
    )
    assert lines[("market", "telco", "city", "region")].amount_micro == 5_123
    fee_edge = lines[("market_surplus", "telco", "(market)", "edge")]
    assert (fee_edge.quantity, fee_edge.unit_price, fee_edge.amount_micro) == (
        Decimal(4),
        Decimal("0.00457655"),
        18_306,  # 0.0183062
    )
    assert (
        lines[("market_surplus", "telco", "(market)", "region")].amount_micro == 4_577
    )  # 0.00457655
    b = bills.bills
    assert b["telco"].owes_micro == 20_494 + 5_123 + 18_306 + 4_577
    assert b["metro"].earns_micro == 20_494 and b["city"].earns_micro == 5_123
    assert b["metro"].owes_micro == b["city"].owes_micro == b["telco"].earns_micro == 0
    assert not bills.warnings  # "(market)" is a party without a log, like the grid


def test_settlement_keeps_trade_prices_apart_skips_late_trades_and_internal_ones(tmp_path):
    def trade(t, buyer, seller, units, pb, ps):
        return {
            "type": "trade",
            "domain": seller,
            "time": t,
            "actor": "test",
            "body": {
                "mechanism": "mcafee",
                "buyer": "e1",
                "buyer_domain": buyer,
                "seller": "h1",
                "seller_domain": seller,
                "tier": "edge",
                "units": units,
                "buyer_price": pb,
                "seller_price": ps,
                "operator": "op",
            },
        }

    with LedgerDir.create(tmp_path / "L", ["a", "b", "op"]) as ld:
        ld.append_many(
            [
                trade(10.0, "a", "b", 3, 0.25, 0.25),
                trade(20.0, "a", "b", 2, 0.5, 0.125),
                trade(20.0, "b", "b", 7, 1.0, 1.0),  # internal: listed, not owed
                trade(150.0, "a", "b", 100, 9.0, 9.0),  # after the end
            ]
        )
        bills = settle(ld, PRICES, until=100)
    got = sorted(
        (li.kind, li.payer, li.payee, str(li.unit_price), li.amount_micro) for li in bills.lines
    )
    assert got == [
        ("market", "a", "b", "0.125", 250_000),
        ("market", "a", "b", "0.25", 750_000),
        ("market", "b", "b", "1.0", 7_000_000),
        ("market_surplus", "a", "op", "0.375", 750_000),
    ]
    assert bills.bills["a"].owes_micro == 1_750_000
    assert bills.bills["b"].earns_micro == 1_000_000 and bills.bills["b"].owes_micro == 0
    assert bills.bills["op"].earns_micro == 750_000


def test_settlement_refuses_a_trade_whose_seller_gets_more_than_its_buyer_pays(tmp_path):
    body = {
        "buyer_domain": "a",
        "seller_domain": "b",
        "tier": "edge",
        "units": 1,
        "buyer_price": 0.1,
        "seller_price": 0.2,
    }
    with LedgerDir.create(tmp_path / "L", ["a", "b"]) as ld:
        ld.append_many([{"type": "trade", "domain": "b", "time": 1.0, "actor": "t", "body": body}])
        with pytest.raises(LedgerError, match=r"seller_price 0\.2 exceeds buyer_price 0\.1"):
            settle(ld, PRICES, until=10)
    with LedgerDir.create(tmp_path / "M", ["a", "b"]) as ld:
        bad = {**body, "seller_price": 0.1}
        del bad["units"]
        ld.append_many([{"type": "trade", "domain": "b", "time": 1.0, "actor": "t", "body": bad}])
        with pytest.raises(LedgerError, match="entry 0 \\(trade\\): body field 'units' is missing"):
            settle(ld, PRICES, until=10)


def test_trade_entries_refuse_names_that_do_not_match_the_bids():
    bids, bdom, sdom, tiers = hand_market()
    c = McAfee().clear(bids, np.random.default_rng(0))
    with pytest.raises(
        MarketError, match="buyer_domains has 3 names; expected one per bid \\(4\\)"
    ):
        trade_entries(
            c, bids, time_s=0.0, buyer_domains=bdom[:3], seller_domains=sdom, seller_tiers=tiers
        )


# --- one market period of a simulated network, settled ----------------------------------


@pytest.fixture(scope="module")
def view():
    world = build_world(load_scenario("city-small"), np.random.default_rng(0))
    return NetworkView(world, NetworkState.at(world, world.xy_m), step_s=1.0)


def test_a_period_of_twins_and_hosts_clears_and_settles_exactly(view, tmp_path):
    w = view.world
    period = clear_period(view, np.random.default_rng(3))
    bids, c = period.bids, period.clearing
    assert bids is not None and c is not None and c.units_traded > 0
    # every twin bids ceil(cpu / 0.5 GHz) units, every host floor(cpu / 0.5 GHz)
    assert bids.n_buyers == w.n_entities
    assert bids.buyer_units.sum() == np.ceil(w.cpu_ghz / 0.5 - 1e-9).sum()
    assert bids.seller_units.sum() == np.floor(w.host_cpu_ghz / 0.5 + 1e-9).sum()
    # tighter latency requirements bid more per unit (value ∝ 1 / latency_req, noise 1 ± 0.5)
    ratio = bids.values * w.latency_req_ms / (0.004 * 20.0)
    assert ratio.min() >= 0.5 and ratio.max() <= 1.5
    entries = period.entries(60.0)
    domains = sorted({*w.domains, *w.owners})
    with LedgerDir.create(tmp_path / "L", domains) as ld:
        ld.append_many(entries)
        bills = settle(ld, PRICES, until=60)
    # the bills add up to the clearing, re-derived from the entries' decimals
    pay = sum(
        (Decimal(repr(e["body"]["buyer_price"])) * e["body"]["units"] for e in entries), Decimal(0)
    )
    total = sum(li.amount_micro for li in bills.lines)
    assert abs(total - pay * 1_000_000) <= len(bills.lines)  # one rounding per line
    assert abs(float(pay) - float(c.buyer_payment.sum())) < 1e-9
    assert sum(li.quantity for li in bills.lines if li.kind == "market") == c.units_traded


def test_scenario_market_section(view):
    spec = Market(
        mechanism="posted", posted_price=0.003, value_per_unit=(0.001, 0.01), cost_per_unit=0.002
    )
    assert repr(mechanism_of(spec)) == "PostedPrice(price=0.003, rationing='random')"
    p = clear_period(view, np.random.default_rng(0), spec)
    assert p.bids is not None and (p.bids.costs == 0.002).all()
    assert p.bids.values.min() >= 0.001 and p.bids.values.max() <= 0.01
    assert p.clearing is not None and p.clearing.buyer_price == 0.003
    with pytest.raises(ValueError, match="posted_price is given with, and only with"):
        Market(mechanism="posted")
    with pytest.raises(ValueError, match="posted_price is given with, and only with"):
        Market(posted_price=1.0)
    with pytest.raises(ValueError, match="min > max"):
        Market(value_per_unit=(2.0, 1.0))


def test_market_periods_recorded_by_the_run_recorder_settle_with_the_rest(view, tmp_path):
    from twinedge.engine.record import LedgerRecorder
    from twinedge.orchestrator import Orchestrator

    w = view.world
    state = NetworkState.at(w, w.xy_m)
    rec = LedgerRecorder(tmp_path / "L")
    orch = Orchestrator("greedy", "never", step_s=1.0, rng=np.random.default_rng(0), recorder=rec)
    orch.place(w, state)
    rng = np.random.default_rng(7)
    expected = Decimal(0)
    for k in range(3):  # three 60 s market periods
        state.t_s = 60.0 * (k + 1)
        period = clear_period(orch.view(w, state), rng, Market(mechanism="greedy"))
        entries = period.entries(state.t_s)
        expected += sum(
            (Decimal(repr(e["body"]["seller_price"])) * e["body"]["units"] for e in entries),
            Decimal(0),
        )
        rec.trades(state.t_s, w, entries)
        rec.step_end(k, state.t_s, w, state)
    rec.end(180.0, w, np.zeros(w.n_hosts))
    tier = {
        "per_cpu_ghz_s": "0.0001",
        "per_mem_gb_s": "0.00002",
        "per_migrated_gb": "0.02",
        "per_kwh": "0.30",
    }
    table = PriceTable.from_dict(
        {"currency": "EUR", "tiers": {t: tier for t in ("edge", "region", "cloud")}}
    )
    bills = settle(tmp_path / "L", table)
    market = [li for li in bills.lines if li.kind == "market"]
    assert {li.kind for li in bills.lines} >= {"cpu", "memory", "market"}
    assert "market_surplus" not in {li.kind for li in bills.lines}  # greedy: one price
    assert abs(sum(li.amount_micro for li in market) - expected * 1_000_000) <= len(market)
    # three periods of one clearing each: three unit prices per (payer, payee, tier) at most
    assert len({li.unit_price for li in market}) == 3


@pytest.mark.parametrize(
    ("market", "problem"),
    [
        ({"mechanism": "vickrey"}, "s.yaml: market.mechanism: got 'vickrey'; expected"),
        ({"mechanism": "posted"}, "expected posted_price is given with, and only with"),
        ({"unit_cpu_ghz": 0}, "s.yaml: market.unit_cpu_ghz: got 0; expected"),
        ({"per_cpu_ghz_s": {"edge": -1}}, "s.yaml: market.per_cpu_ghz_s.edge: got -1; expected"),
        ({"cost_spread": 1.0}, "s.yaml: market.cost_spread: got 1.0; expected"),
        ({"value_per_unit": float("nan")}, "s.yaml: market.value_per_unit"),
    ],
)
def test_a_bad_market_section_names_the_field(market, problem):
    from twinedge.errors import ScenarioError
    from twinedge.scenario.loader import parse_scenario

    data = load_scenario("city-small").model_dump(mode="json", exclude_none=True)
    with pytest.raises(ScenarioError) as exc:
        parse_scenario({**data, "market": market}, "s.yaml")
    assert problem in str(exc.value)
    assert parse_scenario({**data, "market": {"mechanism": "greedy"}}, "s.yaml").market == Market(
        mechanism="greedy"
    )
