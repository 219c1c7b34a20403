"""The examples in the edge modules' docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["behaviour", "document", "host", "log", "migrate", "replica"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"twinedge.edge.{name}")
    result = doctest.testmod(module)
    assert result.failed == 0
