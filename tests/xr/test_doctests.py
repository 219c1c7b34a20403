"""The examples in the XR modules' docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["frames", "score", "sessions"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"twinedge.xr.{name}")
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0
