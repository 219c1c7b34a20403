"""The ```python blocks of docs/market.md run, in order, and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import yaml

from twinedge.scenario.schema import Market

DOC = Path(__file__).resolve().parents[2] / "docs" / "market.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", DOC.read_text(), re.S | re.M)


def test_python_examples_print_what_the_comments_say():
    code = blocks("python")
    assert len(code) == 3
    expected = [
        m.group(1).strip()
        for block in code
        for line in block.splitlines()
        if (m := re.match(r"\s*print\(.*\)\s+# (.*)$", line))
    ]
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out):
        for block in code:
            exec(compile(block, str(DOC), "exec"), namespace)
    assert out.getvalue().splitlines() == expected


def test_the_yaml_market_section_is_valid():
    (block,) = blocks("yaml")
    spec = Market.model_validate(yaml.safe_load(block)["market"])
    assert spec == Market()  # the documented values are the defaults


def test_market_doc_commands(tmp_path):
    from tests.test_docs_commands import env_for, run_doc, workdir

    cwd = workdir(tmp_path)
    p, skipped = run_doc("docs/market.md", cwd, env_for(tmp_path))
    assert not skipped
    (run,) = json.loads((cwd / "out-market" / "summary.json").read_text())["policies"].values()
    assert {"market_periods", "market_units_traded", "market_efficiency"} <= set(run)
    # the 24-step run clears two periods: the settlement bills their trades
    assert re.search(r"^  market +fleet -> metro-op \[cloud\] \d+ unit", p.stdout, re.M), p.stdout
    assert "market_surplus fleet -> (market)" in p.stdout


def test_the_documented_run_numbers():
    """docs/market.md's numbers of examples/market-city.yaml, full length."""
    from twinedge.engine import simulate
    from twinedge.engine.sweep import apply_overrides
    from twinedge.scenario import load_scenario

    sc = load_scenario(DOC.parents[1] / "examples" / "market-city.yaml")
    m = simulate(sc).summary
    assert m["market_periods"] == 10 and m["market_units_traded"] == 2050
    assert round(m["market_mean_buyer_price"], 5) == 0.00269
    assert round(m["market_mean_seller_price"], 5) == 0.00137
    assert f"{100 * m['market_efficiency']:.2f}" == "99.84"
    assert (round(m["market_welfare"], 3), round(m["market_optimal_welfare"], 3)) == (8.240, 8.254)
    assert round(m["market_surplus"], 3) == 2.703
    g = simulate(apply_overrides(sc, {"market.mechanism": "greedy"})).summary
    assert g["market_units_traded"] == 2060 and g["market_efficiency"] == 1.0
    assert g["market_surplus"] == 0.0
    text = DOC.read_text()
    for shown in ("2,050 units", "0.00269", "0.00137", "99.84 %", "8.240 of 8.254", "2.703"):
        assert shown in text, shown
