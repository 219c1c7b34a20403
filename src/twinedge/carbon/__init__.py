"""Carbon-aware scheduling: grid carbon-intensity series, regions with a PUE, and the
temporal and spatial shifting of delay-tolerant jobs (see docs/carbon.md)."""

from twinedge.carbon.scheduler import (
    POLICIES,
    Grid,
    Job,
    Network,
    Placement,
    Schedule,
    best_block,
    lowest_slots,
    noisy_forecast,
    schedule,
)
from twinedge.carbon.series import CarbonSeries, Region, load_carbon_csv, series_from_values

__all__ = [
    "POLICIES",
    "CarbonSeries",
    "Grid",
    "Job",
    "Network",
    "Placement",
    "Region",
    "Schedule",
    "best_block",
    "load_carbon_csv",
    "lowest_slots",
    "noisy_forecast",
    "schedule",
    "series_from_values",
]
