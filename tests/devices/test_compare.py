"""``twinedge devices --compare``: the same scenario run two ways, side by side — what a
simulation predicts next to what a real ``serve --network`` and its emulated devices
measured."""

from __future__ import annotations

import math

import yaml

from tests.devices.conftest import Serve, run_devices, summary
from tests.orchestrator.test_live import two_sites
from twinedge.engine import simulate
from twinedge.scenario import load_scenario


def test_compare_puts_the_prediction_next_to_the_measurement(tmp_path):
    sc = two_sites()
    group = sc["entities"][0]
    del group["count"]
    group["positions_m"] = [[10.0, 0.0], [2990.0, 0.0]]  # one robot at each site
    path = tmp_path / "two-robots.yaml"
    path.write_text(yaml.safe_dump(sc))
    serve = Serve(tmp_path / "data", extra=("--network", str(path), "--cycle-s", "0.2"))
    try:
        p = run_devices(
            str(path), "--count", "2", "--duration-s", "2", "--rate-hz", "2", "--compare",
            "--url", serve.url, "--mqtt", serve.mqtt_url, "--api-key", serve.admin, "--json",
        )  # fmt: skip
    finally:
        serve.stop()
    out = summary(p)
    c = out["comparison"]
    assert c["policies"] == {"placement": "greedy", "migration": "threshold"}
    steps = math.ceil(out["virtual_t_s"] / 1.0 - 1e-9)
    assert c["steps"] == steps
    predicted = simulate(load_scenario(str(path)), seed=out["seed"], steps=steps).summary
    rows = {r["quantity"]: r for r in c["rows"]}
    assert rows["twins placed"] == {
        "quantity": "twins placed", "predicted": 2, "measured": 2, "ratio": 1.0,
        "comparable": True,
        "note": "the simulation places every entity of the scenario; live, the devices that ran",
    }  # fmt: skip
    # static robots: nobody migrates, in either face
    assert rows["migrations per twin per minute"]["predicted"] == 0.0
    assert rows["migrations per twin per minute"]["measured"] == 0.0
    lat = rows["latency p50, ms"]
    assert lat["predicted"] == round(predicted["p50_latency_ms"], 3)
    assert lat["measured"] == out["total"]["latency_ms"]["p50"]
    assert lat["comparable"] is False and "not the same quantity" in lat["note"]


def test_compare_without_an_orchestrator_says_what_to_start(serve, tmp_path):
    from tests.devices.conftest import static_scenario

    p = run_devices(
        str(static_scenario(tmp_path)), "--count", "1", "--reports", "1", "--compare",
        "--url", serve.url, "--mqtt", serve.mqtt_url, "--api-key", serve.admin,
    )  # fmt: skip
    assert p.returncode == 2
    assert "the service runs no orchestrator; start it with twinedge serve --network" in p.stderr
