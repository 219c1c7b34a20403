"""The compute market inside a run: periods, totals by hand, the invariants of the
mechanisms over a run (hypothesis), trades in the run's ledger, settled, and the
table and report."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cli.test_cli import twinedge
from tests.conftest import ROOT, tiny_scenario
from twinedge.engine import simulate
from twinedge.market import McAfee
from twinedge.market.period import clear_period
from twinedge.market.run import MARKET_KEYS, MarketRun
from twinedge.orchestrator import NetworkState, NetworkView
from twinedge.scenario.loader import parse_scenario
from twinedge.scenario.schema import Market
from twinedge.world import build_world

#: a fixed value and cost: the tiny world's twin (5 GHz: 10 units of 0.5 GHz) buys from
#: the edge host (10 GHz: 20 units) and the region hub (100 GHz: 200 units)
FIXED = {"value_per_unit": 0.01, "cost_per_unit": 0.002}


def market_scenario(market: dict, **run) -> dict:
    return tiny_scenario(market=market, run={"steps": 3, "step_s": 1.0, "seed": 1, **run})


@pytest.fixture(scope="module")
def view() -> NetworkView:
    world = build_world(parse_scenario(tiny_scenario()), np.random.default_rng(0))
    return NetworkView(world, NetworkState.at(world, world.xy_m), step_s=1.0)


@pytest.mark.parametrize(
    ("period_s", "step_s", "steps", "per_step"),
    [
        (1.0, 1.0, 3, [1, 1, 1]),  # ends at 1, 2, 3
        (2.0, 1.0, 5, [0, 1, 0, 1, 0]),  # ends at 2, 4
        (2.0, 5.0, 3, [2, 3, 2]),  # ends 2, 4 | 6, 8, 10 | 12, 14
        (60.0, 1.0, 10, [0] * 10),  # a run shorter than a period trades nothing
    ],
)
def test_periods_end_in_the_step_that_reaches_them(view, period_s, step_s, steps, per_step):
    m = MarketRun(Market(period_s=period_s, **FIXED), np.random.default_rng(0))
    got = [m.step(view, k * step_s, (k + 1) * step_s) for k in range(steps)]
    assert got == per_step and m.summary()["market_periods"] == sum(per_step)


def test_posted_price_totals_by_hand():
    sc = parse_scenario(
        market_scenario({"mechanism": "posted", "posted_price": 0.005, "period_s": 1.0, **FIXED})
    )
    s = simulate(sc).summary
    # three periods; each: the twin's 10 units trade at 0.005 (supply 220 >= 10)
    assert s["market_periods"] == 3 and s["market_units_traded"] == 30
    assert s["market_buyer_payments"] == pytest.approx(0.15)
    assert s["market_seller_receipts"] == pytest.approx(0.15)
    assert s["market_surplus"] == pytest.approx(0.0, abs=1e-15)
    assert s["market_mean_buyer_price"] == s["market_mean_seller_price"] == pytest.approx(0.005)
    # gains from trade 10 x (0.01 - 0.002) a period, all of the optimum
    assert s["market_welfare"] == pytest.approx(0.24)
    assert s["market_optimal_welfare"] == pytest.approx(0.24)
    assert s["market_efficiency"] == pytest.approx(1.0)
    assert set(MARKET_KEYS) <= set(s)


def test_a_posted_price_above_every_value_trades_nothing():
    sc = parse_scenario(
        market_scenario({"mechanism": "posted", "posted_price": 0.02, "period_s": 1.0, **FIXED})
    )
    s = simulate(sc).summary
    assert s["market_units_traded"] == s["market_trades"] == 0
    assert s["market_mean_buyer_price"] == 0.0 and s["market_welfare"] == 0.0
    assert s["market_efficiency"] == 0.0  # the optimum (0.24) was possible


def test_the_run_totals_are_the_sum_of_its_periods(view):
    """McAfee over a run equals McAfee cleared period by period on the same stream."""
    spec = Market(period_s=1.0, value_per_unit=(0.001, 0.02), cost_per_unit=(0.0, 0.01))
    m = MarketRun(spec, np.random.default_rng(7))
    for k in range(4):
        m.step(view, float(k), float(k + 1))
    rng = np.random.default_rng(7)
    paid = welfare = 0.0
    units = 0
    for _ in range(4):
        c = clear_period(view, rng, spec, McAfee()).clearing
        assert c is not None
        paid += float(c.buyer_payment.sum())
        welfare += c.welfare
        units += c.units_traded
    s = m.summary()
    assert s["market_buyer_payments"] == pytest.approx(paid)
    assert s["market_welfare"] == pytest.approx(welfare)
    assert s["market_units_traded"] == units


@settings(max_examples=40, deadline=None)
@given(
    mechanism=st.sampled_from(["mcafee", "greedy", "posted"]),
    value=st.tuples(st.floats(0, 0.02), st.floats(0, 0.02)).map(sorted),
    cost=st.tuples(st.floats(0, 0.02), st.floats(0, 0.02)).map(sorted),
    price=st.floats(0, 0.02),
    seed=st.integers(0, 2**32 - 1),
)
def test_run_invariants(mechanism, value, cost, price, seed):
    # the built-in world once per example is slow: the tiny world, several entities
    data = market_scenario(
        {
            "mechanism": mechanism,
            "period_s": 1.0,
            "value_per_unit": list(value),
            "cost_per_unit": list(cost),
            **({"posted_price": price} if mechanism == "posted" else {}),
        }
    )
    data["entities"][0]["count"] = 6
    data["entities"][0].pop("positions_m", None)
    s = simulate(parse_scenario(data), seed=seed % 1000).summary
    # weak budget balance: buyers pay at least what sellers receive
    assert s["market_surplus"] >= -1e-12
    assert s["market_buyer_payments"] >= s["market_seller_receipts"] - 1e-12
    # individual rationality over the run: prices within the reported values and costs
    if s["market_units_traded"]:
        assert s["market_mean_buyer_price"] <= value[1] + 1e-12
        assert s["market_mean_seller_price"] >= cost[0] - 1e-12
    # no mechanism beats the efficient allocation; gains from trade are never negative
    assert -1e-12 <= s["market_welfare"] <= s["market_optimal_welfare"] + 1e-12
    assert 0.0 <= s["market_efficiency"] <= 1.0 + 1e-12
    if mechanism == "greedy":
        assert s["market_efficiency"] == pytest.approx(1.0)


def test_the_table_has_the_market_columns():
    from rich.console import Console

    from twinedge.report import summary_table

    data = market_scenario({"mechanism": "posted", "posted_price": 0.005, "period_s": 1.0, **FIXED})
    res = simulate(parse_scenario(data))
    console = Console(width=400, record=True)
    console.print(summary_table([res]))
    text = console.export_text()
    for head in ("trades", "units", "price", "efficiency %"):
        assert head in text
    row = next(ln for ln in text.splitlines() if "nearest+never" in ln)
    assert [c.strip() for c in row.split("│")[-5:-1]] == ["3", "30", "0.005", "100.0"]


def test_trades_go_to_the_runs_ledger_and_settle(tmp_path):
    data = market_scenario({"mechanism": "posted", "posted_price": 0.005, "period_s": 1.0, **FIXED})
    f = tmp_path / "m.yaml"
    f.write_text(yaml.safe_dump(data))
    led, out = tmp_path / "ledger", tmp_path / "out"
    twinedge("run", f, "--out", out, "--ledger", led, "-q")
    s = json.loads((out / "summary.json").read_text())["policies"]["nearest+never"]
    assert s["market_units_traded"] == 30
    twinedge("ledger", "verify", led)
    doc = json.loads(
        twinedge(
            "ledger", "settle", led, "--prices", ROOT / "examples" / "prices.yaml", "--json"
        ).stdout
    )
    lines = [ln for b in doc["bills"].values() for ln in b["lines"] if ln["kind"] == "market"]
    # every bill lists the lines its domain pays or earns: count each line once
    unique = {json.dumps(ln, sort_keys=True) for ln in lines}
    total = sum(Decimal(json.loads(u)["amount"]) for u in unique)
    assert total == Decimal("0.15")  # 30 units at 0.005, from tenant to operator
    assert {json.loads(u)["payer"] for u in unique} == {"tenant"}
    html = (out / "report.html").read_text()
    assert "efficiency (welfare / optimum)" in html and "market operator" in html
