"""Over-the-air federated edge learning with device scheduling (see docs/fl.md)."""

from twinedge.fl.errors import FLError
from twinedge.fl.experiment import NOISE_VARS, FLConfig, RunResult, grid, run
from twinedge.fl.schedulers import (
    SCHEMES,
    ChannelThreshold,
    Ideal,
    Lyapunov,
    PowerCost,
    RoundState,
    Scheduler,
    TopChannelsTopGradients,
    make_scheduler,
)

__all__ = [
    "NOISE_VARS",
    "SCHEMES",
    "ChannelThreshold",
    "FLConfig",
    "FLError",
    "Ideal",
    "Lyapunov",
    "PowerCost",
    "RoundState",
    "RunResult",
    "Scheduler",
    "TopChannelsTopGradients",
    "grid",
    "make_scheduler",
    "run",
]
