"""Predictive sync live: emulated devices follow the sender rule over MQTT to a real
``twinedge serve``, and the twin API serves the prediction between reports
(``?estimate=``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from tests.devices.conftest import Serve, env, run_devices, trace_scenario
from tests.devices.test_devices_cli import one_error
from twinedge.sync import Report
from twinedge.sync.properties import estimate_document, predicted_properties, report_properties

HEARTBEAT_S = 2.0


def _get(serve: Serve, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{serve.url}{path}", params=params, headers=serve.headers, timeout=10)


@pytest.fixture
def serve(tmp_path):
    s = Serve(tmp_path / "data")
    try:
        yield s
    finally:
        s.stop()


def test_devices_send_only_what_the_twin_cannot_predict(serve, tmp_path):
    """Two trucks on straight lines at 10 samples/s with a 1 m threshold: first-order
    dead reckoning with the true velocity predicts them exactly, so only the heartbeat
    sends; the twin predicts them on their lines between reports."""
    sc = trace_scenario(tmp_path)
    args = [
        sys.executable, "-m", "twinedge", "devices", str(sc), "--count", "2",
        "--rate-hz", "10", "--duration-s", "6", "--json", "--quiet",
        "--sync-threshold-m", "1", "--sync-heartbeat-s", str(HEARTBEAT_S),
        "--url", serve.url, "--mqtt", serve.mqtt_url, "--api-key", serve.admin,
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    seen_bound: list[float | None] = []
    path = "/api/2/things/fleet:truck-a/features/position/properties"
    try:
        while proc.poll() is None:  # read predictions while the devices run
            r = _get(serve, path, estimate="prediction")
            if r.status_code == 200 and "predicted" in r.json():
                seen_bound.append(r.json()["predicted"]["error_bound_m"])
            time.sleep(0.2)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    total = json.loads(out)["total"]
    # every tick samples; the rule keeps most back (heartbeat 2 s vs 10 samples/s)
    assert total["sent"] >= 2 and total["suppressed"] > total["sent"], total
    assert total["acked"] == total["sent"]
    assert 1.0 in seen_bound  # within the heartbeat, the twin promises the threshold

    for truck in ("truck-a", "truck-b"):
        thing = f"/api/2/things/fleet:{truck}"
        reports = [h for h in serve.history(f"fleet:{truck}") if h["source"] == "mqtt"]
        dev = next(d for d in json.loads(out)["devices"] if d["thingId"] == f"fleet:{truck}")
        assert len(reports) == dev["sent"]
        stored = _get(serve, f"{thing}/features/position/properties").json()
        assert stored["sync"]["predictor"] == "first-order"
        assert stored["sync"]["threshold_m"] == 1.0 and "predicted" not in stored
        pred = _get(serve, f"{thing}/features/position/properties", estimate="prediction")
        assert pred.headers["cache-control"] == "no-store"
        p = pred.json()["predicted"]
        age = p["age_s"]
        assert age > 0
        assert p["x_m"] == pytest.approx(stored["x_m"] + stored["vx_mps"] * age, abs=1e-5)
        assert p["y_m"] == pytest.approx(stored["y_m"] + stored["vy_mps"] * age, abs=1e-5)
        if truck == "truck-a":  # on its line x = t, y = t / 2
            assert p["x_m"] == pytest.approx(2 * p["y_m"], abs=1e-5)
        else:  # x = 100, y = 900 - t
            assert p["x_m"] == pytest.approx(100.0, abs=1e-9)
            assert p["y_m"] < stored["y_m"]

    # the devices are gone: once the report is older than the heartbeat, no bound
    deadline = time.monotonic() + 30
    while True:
        p = _get(serve, path, estimate="prediction").json()["predicted"]
        if p["age_s"] > HEARTBEAT_S:
            assert p["error_bound_m"] is None
            break
        assert p["error_bound_m"] == 1.0
        assert time.monotonic() < deadline
        time.sleep(0.2)

    # the whole thing, one feature, one property: the same convention
    doc = _get(serve, "/api/2/things/fleet:truck-a", estimate="prediction").json()
    assert doc["features"]["position"]["properties"]["predicted"]["predictor"] == "first-order"
    one = _get(serve, f"{path}/predicted/x_m", estimate="prediction")
    assert isinstance(one.json(), float)
    assert "predicted" not in _get(serve, path, estimate="report").json()


def test_estimate_parameter_on_reads(serve):
    thing = "/api/2/things/fleet:plain"
    body = {"_domain": "fleet", "features": {"position": {"properties": {"x_m": 1.0, "y_m": 2.0}}}}
    r = httpx.put(f"{serve.url}{thing}", json=body, headers=serve.headers, timeout=10)
    assert r.status_code == 201, r.text
    path = f"{thing}/features/position/properties"
    # a feature without a sync report: nothing to predict, the report as it is
    assert _get(serve, path, estimate="prediction").json() == {"x_m": 1.0, "y_m": 2.0}
    # unknown values: 400 naming the parameter
    for bad in ("guess", "", "PREDICTION"):
        r = _get(serve, path, estimate=bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["invalid-params"][0]["name"] == "estimate"
    # a prediction is for now: not with ?revision= or ?at=
    r = _get(serve, path, estimate="prediction", revision="1")
    assert r.status_code == 400 and "predicts for now" in r.json()["detail"]
    # If-None-Match: a report read may answer 304, a prediction read never does
    tag = _get(serve, path).headers["etag"]
    h = {**serve.headers, "If-None-Match": tag}
    assert (
        httpx.get(f"{serve.url}{path}", headers=h, params={"estimate": "report"}).status_code == 304
    )
    assert (
        httpx.get(f"{serve.url}{path}", headers=h, params={"estimate": "prediction"}).status_code
        == 200
    )
    # levels that are not about features do not take it (unknown parameters are refused)
    r = _get(serve, f"{thing}/attributes", estimate="prediction")
    assert r.status_code == 400 and "estimate" in r.json()["detail"], r.text


def test_devices_refuse_bad_sync_options(tmp_path):
    sc = str(trace_scenario(tmp_path))
    line = one_error(run_devices(sc, "--count", "1", "--api-key", "k", "--sync-threshold-m", "-1"))
    assert line == "error: --sync-threshold-m: got -1.0; expected metres >= 0"
    bad = [sc, "--count", "1", "--api-key", "k", "--sync-threshold-m", "1"]
    line = one_error(run_devices(*bad, "--sync-heartbeat-s", "0"))
    assert line == "error: --sync-heartbeat-s: got 0.0; expected seconds > 0"
    line = one_error(run_devices(*bad, "--sync-predictor", "kalman"))
    assert line.startswith("error: --sync-predictor: unknown predictor 'kalman'")


# --- the property convention, by hand ------------------------------------------------------


def test_second_order_prediction_from_properties():
    r = Report(0.0, (0.0, 10.0), velocity=(2.0, 0.0), acceleration=(0.0, -2.0))
    props = {"x_m": 0.0, "y_m": 10.0, **report_properties(r, "second-order", 0.5, 5.0, 50.0)}
    assert props["ax_mps2"] == 0.0 and props["ay_mps2"] == -2.0
    p = predicted_properties(props, 53.0)  # dt 3: x = 6, y = 10 - 0.5*2*9 = 1
    assert p == {
        "x_m": 6.0,
        "y_m": 1.0,
        "age_s": 3.0,
        "error_bound_m": 0.5,
        "predictor": "second-order",
    }
    # a read a little before the report's time (clocks apart): the report, age 0
    assert predicted_properties(props, 49.9) == {**p, "x_m": 0.0, "y_m": 10.0, "age_s": 0.0}
    # incomplete reports predict nothing
    assert predicted_properties({**props, "ax_mps2": None}, 53.0) is None
    assert predicted_properties({**props, "sync": {**props["sync"], "predictor": "x"}}, 1.0) is None
    assert (
        predicted_properties({**props, "sync": {**props["sync"], "t_unix_s": "now"}}, 1.0) is None
    )


def test_estimate_document_keeps_a_stored_prediction_without_a_sync_report():
    stored = {"x_m": 1.0, "y_m": 1.0, "predicted": {"x_m": 2.0, "y_m": 1.0, "age_s": 1.0}}
    doc = {"thingId": "a:b", "features": {"position": {"properties": stored}, "lamp": {}}}
    out = estimate_document(doc, "prediction", 0.0)
    assert out["features"]["position"]["properties"]["predicted"] == stored["predicted"]
    assert out["features"]["lamp"] == {}
    assert estimate_document(doc, "report", 0.0)["features"]["position"]["properties"] == {
        "x_m": 1.0,
        "y_m": 1.0,
    }
    assert doc["features"]["position"]["properties"] is stored  # the input is not changed
