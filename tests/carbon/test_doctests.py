"""The examples in the carbon modules' docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["series", "scheduler"])
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"twinedge.carbon.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
