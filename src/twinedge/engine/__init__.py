"""The time-stepped simulation engine over a virtual clock."""

from twinedge.engine.check import check_run
from twinedge.engine.simulation import RunResult, Simulation, simulate

__all__ = ["RunResult", "Simulation", "check_run", "simulate"]
