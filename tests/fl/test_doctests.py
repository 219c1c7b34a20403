"""The examples in the federated-learning modules' docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["model", "schedulers", "experiment"])
def test_doctests(name: str) -> None:
    module = importlib.import_module(f"twinedge.fl.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
