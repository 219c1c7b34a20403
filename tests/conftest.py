from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same property-test examples every time (a failure there is reproducible);
# locally every run explores new ones.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TWINEDGE_DATASETS", ROOT.parent / "shared" / "datasets"))


@pytest.fixture
def eua_dir() -> Path:
    d = DATASETS / "eua"
    if not (d / "site-optus-melbCBD.csv").is_file():
        pytest.skip(f"EUA dataset not found at {d} (set TWINEDGE_DATASETS to its parent folder)")
    return d


@pytest.fixture
def ifogsim_dir() -> Path:
    d = DATASETS / "ifogsim2-melbourne"
    if not (d / "edgeResources-melbCBD.csv").is_file():
        pytest.skip(
            f"iFogSim2 Melbourne dataset not found at {d} (set TWINEDGE_DATASETS to its parent folder)"
        )
    return d


def tiny_scenario(**over) -> dict:
    """One access point + co-located edge, one region, one static entity 100 m away."""
    sc = {
        "version": 1,
        "name": "tiny",
        "area_m": [1000, 1000],
        "infrastructure": {
            "nodes": [
                {"id": "ap", "tier": "access", "x_m": 0, "y_m": 0, "coverage_m": 500},
                {
                    "id": "edge",
                    "tier": "edge",
                    "x_m": 0,
                    "y_m": 0,
                    "cpu_ghz": 10,
                    "mem_gb": 16,
                    "idle_w": 100,
                    "max_w": 300,
                },
                {
                    "id": "region",
                    "tier": "region",
                    "x_m": 500,
                    "y_m": 0,
                    "cpu_ghz": 100,
                    "mem_gb": 256,
                    "idle_w": 1000,
                    "max_w": 2000,
                },
            ],
            "link_rules": {
                "access_edge": {"latency_ms": 0.5, "latency_ms_per_km": 0, "bandwidth_mbps": 1000},
                "edge_edge": None,
                "edge_region": {"latency_ms": 2.0, "latency_ms_per_km": 0, "bandwidth_mbps": 1000},
                "region_cloud": None,
            },
        },
        "entities": [
            {
                "kind": "robot",
                "positions_csv": None,
                "count": 1,
                "mobility": {"model": "static"},
                "twin": {
                    "cpu_ghz": 5.0,
                    "mem_gb": 1.0,
                    "state_bytes": 1e7,
                    "update_bytes": 2000,
                    "update_hz": 10,
                    "work_gcycles": 0.02,
                    "latency_req_ms": 5,
                    "tx_power_w": 0.2,
                },
            }
        ],
        "run": {"steps": 3, "step_s": 1.0, "seed": 1},
        "policies": {"placement": "nearest", "migration": "never"},
    }
    del sc["entities"][0]["positions_csv"]
    sc.update(over)
    return sc
