"""The ```python blocks of docs/market.md run, in order, and print what their comments say."""

from __future__ import annotations

import contextlib
import io
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
