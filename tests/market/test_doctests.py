"""The examples in the market modules' docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["bids", "mechanisms", "ledger", "period", "check"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"twinedge.market.{name}")
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0
