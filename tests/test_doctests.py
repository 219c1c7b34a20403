"""Every example in the package's docstrings runs, in every module (the examples are
documentation: one that no longer runs is a wrong doc)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import twinedge

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(twinedge.__path__, "twinedge.")
    if not m.name.endswith("__main__")  # importing it runs the command line
)

#: modules whose docstrings must carry examples (so a lost example is noticed), and how
#: many at least where more than one
AT_LEAST = {"twinedge.textinput": 6, "twinedge.jsontext": 3}
WITH_EXAMPLES = {
    *(f"twinedge.carbon.{m}" for m in ("series", "scheduler")),
    *(f"twinedge.devices.{m}" for m in ("motion", "provision", "client", "runner")),
    *(f"twinedge.fl.{m}" for m in ("model", "schedulers", "experiment")),
    *(f"twinedge.gym.{m}" for m in ("features", "policy", "envs")),
    *(f"twinedge.market.{m}" for m in ("bids", "mechanisms", "ledger", "period", "check")),
    *(f"twinedge.offload.{m}" for m in ("tasks", "policies")),
    *(f"twinedge.sync.{m}" for m in ("predict", "sender", "traces", "meter", "properties")),
    *(f"twinedge.xr.{m}" for m in ("frames", "score", "sessions")),
    "twinedge.engine.simulation",
    "twinedge.policies.capacity",
    "twinedge.gcpauses",
    "twinedge.jsontext",
    "twinedge.textinput",
}


def test_the_modules_named_exist():
    assert WITH_EXAMPLES <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if name in WITH_EXAMPLES:
        assert result.attempted >= AT_LEAST.get(name, 1)
