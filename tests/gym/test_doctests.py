"""The examples in the docstrings of twinedge.gym (and of the stepping engine) run."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "name",
    [
        "twinedge.gym.features",
        "twinedge.gym.policy",
        "twinedge.gym.envs",
        "twinedge.engine.simulation",
    ],
)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
