"""``twinedge devices --compare``: the same scenario run two ways, side by side — what a
simulation predicts next to what a real ``serve --network`` with host processes and its
emulated devices measured, the devices' reports crossing the modelled network (link
emulation)."""

from __future__ import annotations

import math

import pytest
import yaml

from tests.devices.conftest import Serve, run_devices, summary
from tests.devices.test_links import radio_ms, robots
from twinedge.devices.compare import predict
from twinedge.engine import simulate
from twinedge.scenario import load_scenario

#: the two robots of these tests: one 1 km from ap-1, one 10 m from ap-2; each twin goes
#: to its own site's edge (0.5 ms from its access point), 1 GHz of 10: rho = 0.1
XY = ((1000.0, 0.0), (2990.0, 0.0))
SERVICE_MS = 1000.0 * 0.001 / 10.0 / (1.0 - 0.1)

ROWS = [
    "migrations per twin per minute",
    "mean latency, ms",
    "network (radio uplink + backbone), ms",
    "of which the backbone (access point -> the twin's host), ms",
    "processing (model: commit + service + migration downtime; live: the rest), ms",
    "the emulator's own time, left out of the measurement, ms",
    "twins placed",
]


def test_the_prediction_splits_the_models_latency_by_hand(tmp_path):
    path = tmp_path / "two-robots.yaml"
    path.write_text(yaml.safe_dump(robots(*XY)))
    sc = load_scenario(str(path))
    parts, run, n = predict(sc, seed=0, steps=4, placement="greedy", migration="threshold", count=2)
    assert n == 2 and parts["twin_steps"] == 8
    assert parts["uplink_mean_ms"] == pytest.approx(
        (radio_ms(1000.0, 200) + radio_ms(10.0, 200)) / 2, rel=1e-12
    )
    assert parts["backbone_mean_ms"] == pytest.approx(0.5, abs=1e-8)
    assert parts["service_mean_ms"] == pytest.approx(SERVICE_MS, rel=1e-9)
    assert parts["downtime_mean_ms"] == 0.0 and parts["commit_mean_ms"] == 0.0
    total = parts["uplink_mean_ms"] + 0.5 + SERVICE_MS
    assert parts["mean_ms"] == pytest.approx(total, abs=1e-8)
    # the same run simulate() makes: every twin is one of the devices here
    assert parts["mean_ms"] == pytest.approx(run["mean_latency_ms"], rel=1e-12)
    assert run == simulate(sc, seed=0, steps=4).summary


def test_a_hosts_commit_time_is_a_fixed_part_of_the_prediction_by_hand(tmp_path):
    # edge-1 commits in 1.5 ms, edge-2 in 0.25 ms: each twin's latency gains its own
    # host's commit, not stretched by the host's load; the rest is unchanged
    sc_doc = robots(*XY)
    commit = {"edge-1": 1.5, "edge-2": 0.25}
    for node in sc_doc["infrastructure"]["nodes"]:
        if node["id"] in commit:
            node["commit_ms"] = commit[node["id"]]
    path = tmp_path / "two-robots-commit.yaml"
    path.write_text(yaml.safe_dump(sc_doc))
    sc = load_scenario(str(path))
    parts, run, n = predict(sc, seed=0, steps=4, placement="greedy", migration="threshold", count=2)
    assert n == 2 and parts["commit_mean_ms"] == pytest.approx((1.5 + 0.25) / 2, rel=1e-12)
    assert parts["service_mean_ms"] == pytest.approx(SERVICE_MS, rel=1e-9)
    up = (radio_ms(1000.0, 200) + radio_ms(10.0, 200)) / 2
    assert parts["mean_ms"] == pytest.approx(up + 0.5 + 0.875 + SERVICE_MS, abs=1e-8)
    assert parts["mean_ms"] == pytest.approx(run["mean_latency_ms"], rel=1e-12)
    assert parts["model"]["commit_ms"] == commit


def test_the_prediction_of_the_first_devices_only():
    # a moving scenario of 200 entities: the first 20 are a part of the run's mean
    sc = load_scenario("city-small")
    parts, run, n = predict(
        sc, seed=1, steps=3, placement="greedy", migration="threshold", count=20
    )
    assert n == 200 and parts["twin_steps"] == 60
    assert parts["mean_ms"] == pytest.approx(
        parts["uplink_mean_ms"] + parts["backbone_mean_ms"] + parts["commit_mean_ms"]
        + parts["service_mean_ms"] + parts["downtime_mean_ms"], rel=1e-12
    )  # fmt: skip
    assert parts["mean_ms"] != pytest.approx(run["mean_latency_ms"], rel=1e-9)


def test_compare_puts_the_prediction_next_to_the_measurement(tmp_path):
    path = tmp_path / "two-robots.yaml"
    path.write_text(yaml.safe_dump(robots(*XY)))
    serve = Serve(
        tmp_path / "data",
        extra=("--network", str(path), "--hosts", "local", "--cycle-s", "0.2"),
    )
    try:
        args = ["--url", serve.url, "--mqtt", serve.mqtt_url, "--api-key", serve.admin, "--json"]
        p = run_devices(
            str(path), "--count", "2", "--duration-s", "3", "--rate-hz", "5", "--compare", *args
        )
        # without link emulation the latencies are not the same quantity, and it says so
        plain = run_devices(
            str(path), "--count", "2", "--reports", "2", "--compare", "--no-emulate-links",
            "--namespace", "plain", *args,
        )  # fmt: skip
    finally:
        serve.stop()
    out = summary(p)
    # redirected devices close connections their MQTT client still has callbacks for: no
    # error from the event loop may come of it
    assert "Traceback" not in p.stderr and "Exception in callback" not in p.stderr, p.stderr
    c = out["comparison"]
    assert c["policies"] == {"placement": "greedy", "migration": "threshold"}
    steps = math.ceil(out["virtual_t_s"] / 1.0 - 1e-9)
    assert c["steps"] == steps
    assert [r["quantity"] for r in c["rows"]] == ROWS
    rows = {r["quantity"]: r for r in c["rows"]}

    # predicted: the model's parts, by hand
    pred = c["predicted"]
    assert pred["backbone_mean_ms"] == pytest.approx(0.5, abs=1e-4)
    assert pred["service_mean_ms"] == pytest.approx(SERVICE_MS, abs=1e-4)
    assert pred["downtime_mean_ms"] == 0.0 and pred["twin_steps"] == 2 * steps

    # measured: every report acknowledged by a twin host crossed the emulated network
    t = out["total"]
    link = t["link"]
    assert t["unacked"] == 0 and link["reports"] + link["unemulated"] == t["acked"]
    assert link["reports"] > 0
    assert link["mean_ms"] == pytest.approx(
        link["network_mean_ms"] + link["live_mean_ms"], abs=1e-5
    )
    assert link["live_mean_ms"] > 0 and link["timer_late_mean_ms"] >= 0
    assert link["emulator_mean_ms"] == pytest.approx(
        link["timer_late_mean_ms"] + link["send_mean_ms"] + link["resume_mean_ms"], abs=1e-5
    )
    # the hand check: robot 0 is 1 km from ap-1 and its twin on edge-1, so each of its
    # reports waited 0.5 ms of backbone + its bytes over the radio at 1 km (linear in
    # the bytes: the mean delay is that of the mean size)
    dev = out["devices"][0]
    assert dev["host"] == "edge-1" and dev["thingId"].endswith("robot-0-0")
    d = dev["link"]
    assert d["reports"] > 0
    assert d["network_mean_ms"] == pytest.approx(0.5 + radio_ms(1000.0, d["bytes_mean"]), abs=1e-5)
    assert out["devices"][1]["host"] == "edge-2"

    lat = rows["mean latency, ms"]
    assert (lat["predicted"], lat["measured"]) == (round(pred["mean_ms"], 4), link["mean_ms"])
    assert lat["comparable"] is True
    assert lat["ratio"] == round(link["mean_ms"] / round(pred["mean_ms"], 4), 3)
    net = rows["network (radio uplink + backbone), ms"]
    assert net["measured"] == link["network_mean_ms"] and net["comparable"] is True
    assert "same model function" in net["note"]
    back = rows["of which the backbone (access point -> the twin's host), ms"]
    # both twins on their own site's edge, in both faces
    assert back["predicted"] == pytest.approx(0.5, abs=1e-4)
    assert back["measured"] == pytest.approx(0.5, abs=1e-6) and back["ratio"] == 1.0
    proc = rows["processing (model: commit + service + migration downtime; live: the rest), ms"]
    assert proc["predicted"] == pytest.approx(SERVICE_MS, abs=1e-4)
    assert proc["measured"] == link["live_mean_ms"]
    assert "durable commit" in proc["note"]
    own = rows["the emulator's own time, left out of the measurement, ms"]
    assert own["measured"] == link["emulator_mean_ms"] and own["comparable"] is False
    assert c["model"] == {
        "commit_ms": {"edge-1": 0.0, "edge-2": 0.0},
        "cpu_ghz": {"edge-1": 10.0, "edge-2": 10.0},
        "work_gcycles_mean": 0.001,
    }
    # static robots: nobody migrates, in either face
    assert rows["migrations per twin per minute"]["predicted"] == 0.0
    assert rows["migrations per twin per minute"]["measured"] == 0.0
    assert rows["twins placed"] == {
        "quantity": "twins placed", "predicted": 2, "measured": 2, "ratio": 1.0,
        "comparable": True,
        "note": "the simulation places every entity of the scenario; live, the devices that ran",
    }  # fmt: skip
    assert "agree on it by construction" in c["note"]

    bare = summary(plain)
    assert "link" not in bare["total"]
    row = next(r for r in bare["comparison"]["rows"] if r["quantity"] == "mean latency, ms")
    assert row["comparable"] is False and row["ratio"] is None
    assert "not the same quantity: run with --emulate-links" in row["note"]
    assert row["measured"] == bare["total"]["latency_ms"]["mean"]


def test_compare_without_an_orchestrator_says_what_to_start(serve, tmp_path):
    from tests.devices.conftest import static_scenario

    p = run_devices(
        str(static_scenario(tmp_path)), "--count", "1", "--reports", "1", "--compare",
        "--url", serve.url, "--mqtt", serve.mqtt_url, "--api-key", serve.admin,
    )  # fmt: skip
    assert p.returncode == 2
    assert "the service runs no orchestrator; start it with twinedge serve --network" in p.stderr


@pytest.mark.parametrize(
    ("rate_hz", "commit"),
    [
        # one robot per edge at 5 reports/s: 200 ms apart; edge-1's curve past its last
        # point (4.0), edge-2's halfway between 100 and 300 ms (1 + 2 * 0.5 = 2.0)
        (5.0, {"edge-1": 4.0, "edge-2": 2.0}),
        # at 20 reports/s: 50 ms apart; edge-1 2 + 2 * 10 / 30, edge-2 its first point
        (20.0, {"edge-1": 2.0 + 2.0 * 10.0 / 30.0, "edge-2": 1.0}),
    ],
)
def test_the_prediction_reads_each_hosts_curve_at_the_devices_rate_by_hand(
    tmp_path, rate_hz, commit
):
    from twinedge.devices.compare import model_line

    sc_doc = robots(*XY)
    curves = {"edge-1": [[10, 1.0], [40, 2.0], [70, 4.0]], "edge-2": [[100, 1.0], [300, 3.0]]}
    for node in sc_doc["infrastructure"]["nodes"]:
        if node["id"] in curves:
            node["commit_curve_ms"] = curves[node["id"]]
    path = tmp_path / "curves.yaml"
    path.write_text(yaml.safe_dump(sc_doc))
    sc = load_scenario(str(path))
    kw = {"seed": 0, "steps": 4, "placement": "greedy", "migration": "threshold", "count": 2}
    parts, _, _ = predict(sc, rates_hz=rate_hz, **kw)
    # robot 0 on edge-1, robot 1 on edge-2 every step: the mean of the two commits
    assert parts["commit_mean_ms"] == pytest.approx(
        (commit["edge-1"] + commit["edge-2"]) / 2, rel=1e-12
    )
    assert parts["service_mean_ms"] == pytest.approx(SERVICE_MS, rel=1e-9)
    model = parts["model"]
    assert model["commit_curve_ms"] == {
        h: [[float(g), float(c)] for g, c in v] for h, v in curves.items()
    }
    assert model["report_hz"] == {"edge-1": rate_hz, "edge-2": rate_hz}
    assert model["report_gap_ms"] == {"edge-1": 1000.0 / rate_hz, "edge-2": 1000.0 / rate_hz}
    assert model["commit_at_rate_ms"] == pytest.approx(commit, rel=1e-3)
    line = model_line(model)
    assert line.startswith(
        "commit_curve_ms edge-1 [[10, 1], [40, 2], [70, 4]], edge-2 [[100, 1], [300, 3]]; "
        f"at each host's report rate edge-1 {rate_hz:g}/s ({1000.0 / rate_hz:g} ms apart): "
    )
    # without the devices' rate, the scenario's update_hz (10) decides: 100 ms apart
    parts10, _, _ = predict(sc, **kw)
    assert parts10["model"]["commit_at_rate_ms"] == {"edge-1": 4.0, "edge-2": 1.0}
