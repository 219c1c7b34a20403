"""Scenarios: the versioned schema, loaders (YAML, EUA CSV, traces) and generators."""

from twinedge.scenario.loader import load_scenario, parse_scenario
from twinedge.scenario.scale import scale_scenario
from twinedge.scenario.schema import Scenario

__all__ = ["Scenario", "load_scenario", "parse_scenario", "scale_scenario"]
