"""Fixed-seed runs give the same numbers, to the bit, as when they were pinned.

The engine, offloading and XR are optimised for speed with the same operations in the
same order, so a change of any summary number of these small runs (8 steps, seed 0) is a
change of the model, not of its speed: the run's numbers below were recorded from the
implementation they guard (``float.hex`` strings, exact). A deliberate change of a model
updates them in the same commit and says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from twinedge.engine.simulation import simulate
from twinedge.scenario import load_scenario

EXAMPLES = Path(__file__).parents[2] / "examples"

PINNED = {
    "offload-local": {
        "offload_tasks": 2906,
        "offload_hit_ratio": "0x1.3073942c66304p-2",
        "offload_p50_latency_ms": "0x1.64b4a5a37861ap+6",
        "offload_p95_latency_ms": "0x1.7ff467a74c0d0p+7",
        "offload_p99_latency_ms": "0x1.385d01bb542f5p+11",
        "offload_device_energy_j": "0x1.987e63baad0a6p+9",
        "offload_server_energy_j": "0x0.0p+0",
        "offload_cost": "0x0.0p+0",
        "offload_offloaded_ratio": "0x0.0p+0",
    },
    "offload-nearest": {
        "offload_tasks": 2906,
        "offload_hit_ratio": "0x1.6c88043a7e80ap-1",
        "offload_p50_latency_ms": "0x1.413f67541daa5p+5",
        "offload_p95_latency_ms": "0x1.c5b6332216418p+7",
        "offload_p99_latency_ms": "0x1.a4002cf94ed6fp+8",
        "offload_device_energy_j": "0x1.f33e5cc70b3ecp+4",
        "offload_server_energy_j": "0x1.976971026ce02p+11",
        "offload_cost": "0x1.507cb107bb5e4p-5",
        "offload_offloaded_ratio": "0x1.0000000000000p+0",
    },
    "offload-greedy": {
        "offload_tasks": 2906,
        "offload_hit_ratio": "0x1.baef43209839dp-1",
        "offload_p50_latency_ms": "0x1.a32686cb67ebfp+4",
        "offload_p95_latency_ms": "0x1.4bbfd0ee777d3p+6",
        "offload_p99_latency_ms": "0x1.b7daffb17519ep+6",
        "offload_device_energy_j": "0x1.07256da8bf334p+8",
        "offload_server_energy_j": "0x1.4c634a6a3366dp+11",
        "offload_cost": "0x1.96ee84aca5fa4p-6",
        "offload_offloaded_ratio": "0x1.da4bc2afd5b71p-1",
    },
    "offload-deadline-energy": {
        "offload_tasks": 2906,
        "offload_hit_ratio": "0x1.baef43209839dp-1",
        "offload_p50_latency_ms": "0x1.fad6c56fc2436p+4",
        "offload_p95_latency_ms": "0x1.76cf1986f62f9p+6",
        "offload_p99_latency_ms": "0x1.e2d8f610c0093p+6",
        "offload_device_energy_j": "0x1.064961de5d4a3p+7",
        "offload_server_energy_j": "0x1.9a4a9376c23e9p+11",
        "offload_cost": "0x1.e208c6c5cdc2ap-6",
        "offload_offloaded_ratio": "0x1.db002d1a9ab14p-1",
    },
    "offload-lyapunov": {
        "offload_tasks": 2906,
        "offload_hit_ratio": "0x1.baef43209839dp-1",
        "offload_p50_latency_ms": "0x1.610d95b69e993p+5",
        "offload_p95_latency_ms": "0x1.af549018672cap+6",
        "offload_p99_latency_ms": "0x1.3a9d8bbe53ce8p+7",
        "offload_device_energy_j": "0x1.7082271b9e275p+8",
        "offload_server_energy_j": "0x1.29c114303abb0p+9",
        "offload_cost": "0x1.bc7d5c23f4a19p-7",
        "offload_offloaded_ratio": "0x1.6af214ca434dbp-1",
    },
    "xr-best-latency": {
        "xr_sessions": 60,
        "xr_score": "0x1.dba6bc2d51750p+1",
        "xr_late_frame_ratio": "0x1.fb72ea61d950dp-7",
        "xr_warped_frame_ratio": "0x1.433944a55b66cp-4",
        "xr_lost_frame_ratio": "0x1.2894ab6cd8efbp-7",
        "xr_stalls": 52,
        "xr_p99_frame_delay_ms": "0x1.78286085be981p+4",
        "xr_jitter_ms": "0x1.26788b248eb8dp+0",
        "xr_migrations": 13,
    },
    "xr-nearest-edge": {
        "xr_sessions": 60,
        "xr_score": "0x1.19e709e3b054dp+1",
        "xr_late_frame_ratio": "0x1.1684bda12f685p-3",
        "xr_warped_frame_ratio": "0x1.bf9ee8dd7cc6cp-3",
        "xr_lost_frame_ratio": "0x1.4611722833945p-2",
        "xr_stalls": 704,
        "xr_p99_frame_delay_ms": "0x1.23f375cd1c627p+6",
        "xr_jitter_ms": "0x1.070004b938c10p+3",
        "xr_migrations": 0,
    },
    "engine-nearest+never": {
        "mean_latency_ms": "0x1.db38ef04e04c8p+1",
        "p50_latency_ms": "0x1.45ce81db2027fp+1",
        "p95_latency_ms": "0x1.660393cc5415dp+3",
        "p99_latency_ms": "0x1.12134a5b0abdcp+4",
        "deadline_miss_ratio": "0x1.8f5c28f5c28f6p-6",
        "migrations": 0,
        "replacement_migrations": 0,
        "migration_downtime_s": "0x0.0p+0",
        "bytes_migrated": "0x0.0p+0",
        "device_energy_j": "0x1.5f5847f068d52p+2",
        "server_energy_j": "0x1.953ad58f5e034p+17",
        "mean_utilisation": "0x1.35d9de0000000p-2",
        "max_utilisation": "0x1.3851b80000000p-1",
    },
    "engine-greedy+threshold": {
        "mean_latency_ms": "0x1.d587864d576acp+1",
        "p50_latency_ms": "0x1.462e967c89878p+1",
        "p95_latency_ms": "0x1.6252d205c8b9ep+3",
        "p99_latency_ms": "0x1.11c28ef741cb7p+4",
        "deadline_miss_ratio": "0x1.6666666666666p-6",
        "migrations": 1,
        "replacement_migrations": 0,
        "migration_downtime_s": "0x1.b69a9bc761de0p-6",
        "bytes_migrated": "0x1.5a11bfdf880cep+23",
        "device_energy_j": "0x1.5f5847f068d52p+2",
        "server_energy_j": "0x1.953b1039fbf36p+17",
        "mean_utilisation": "0x1.35dde00000000p-2",
        "max_utilisation": "0x1.3bdaf40000000p-1",
    },
}


def _exact(summary: dict, keys: dict) -> dict:
    return {
        k: (float(summary[k]).hex() if isinstance(v, str) else summary[k]) for k, v in keys.items()
    }


@pytest.mark.parametrize("policy", ["local", "nearest", "greedy", "deadline-energy", "lyapunov"])
def test_offloading_summary_is_unchanged(policy: str) -> None:
    sc = load_scenario(EXAMPLES / "offload-city.yaml")
    expect = PINNED[f"offload-{policy}"]
    assert _exact(simulate(sc, steps=8, offload=policy).summary, expect) == expect


@pytest.mark.parametrize("placement", ["best-latency", "nearest-edge"])
def test_xr_summary_is_unchanged(placement: str) -> None:
    sc = load_scenario(EXAMPLES / "xr-city.yaml")
    assert sc.xr is not None
    sc = sc.model_copy(update={"xr": sc.xr.model_copy(update={"placement": placement})})
    expect = PINNED[f"xr-{placement}"]
    assert _exact(simulate(sc, steps=8, migration="threshold").summary, expect) == expect


@pytest.mark.parametrize("pair", [("nearest", "never"), ("greedy", "threshold")])
def test_engine_summary_is_unchanged(pair: tuple[str, str]) -> None:
    run = simulate(load_scenario("city-small"), steps=8, placement=pair[0], migration=pair[1])
    expect = PINNED["engine-" + "+".join(pair)]
    assert _exact(run.summary, expect) == expect
