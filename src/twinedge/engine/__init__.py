"""The time-stepped simulation engine over a virtual clock."""

from twinedge.engine.simulation import RunResult, Simulation, simulate

__all__ = ["RunResult", "Simulation", "simulate"]
