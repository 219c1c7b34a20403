"""``twinedge devices`` against a real ``twinedge serve`` (embedded broker, SQLite): the
things it provisions, the positions their twins store, the report sequence numbers, and
one clear line for every bad input."""

from __future__ import annotations

import httpx
import pytest

from tests.devices.conftest import (
    STATIC_XY,
    Serve,
    free_port,
    run_devices,
    static_scenario,
    summary,
    trace_scenario,
)


def fleet_args(s: Serve, *more: str) -> list[str]:
    return ["--url", s.url, "--mqtt", s.mqtt_url, "--api-key", s.admin, "--json", *more]


def test_static_devices_report_their_positions(serve, tmp_path):
    sc = static_scenario(tmp_path)
    p = run_devices(
        str(sc), "--count", "3", "--reports", "4", "--rate-hz", "20", *fleet_args(serve)
    )
    out = summary(p)
    assert out["total"]["sent"] == out["total"]["acked"] == 12
    assert out["total"]["unacked"] == out["total"]["errors"] == 0
    assert out["stopped"] == "reports"
    for i, (x, y) in enumerate(STATIC_XY):
        tid = f"fleet:sensor-0-{i}"
        dev = next(d for d in out["devices"] if d["thingId"] == tid)
        assert (dev["sent"], dev["acked"], dev["redirects_followed"]) == (4, 4, 0)
        assert dev["latency_ms"]["p50"] > 0
        thing = serve.thing(tid)
        pos = thing["features"]["position"]["properties"]
        assert (pos["x_m"], pos["y_m"], pos["vx_mps"], pos["vy_mps"], pos["seq"]) == (x, y, 0, 0, 4)
        assert pos["t_s"] > 0
        assert thing["attributes"]["kind"] == "sensor" and thing["attributes"]["owner"] == "city"
        assert thing["attributes"]["twin"]["cpu_ghz"] == 5.0
        assert thing["attributes"]["twin"]["latency_req_ms"] == 5
        assert thing["_domain"] == "fleet"
        # every report of the device became one revision, in order, none lost
        assert [r["seq"] for r in serve.reported_positions(tid)] == [1, 2, 3, 4]


def test_trace_devices_follow_the_trace(serve, tmp_path):
    sc = trace_scenario(tmp_path)
    p = run_devices(
        str(sc), "--count", "2", "--reports", "6", "--rate-hz", "10", *fleet_args(serve)
    )
    assert summary(p)["total"]["acked"] == 12
    for tid, expect in (
        ("fleet:truck-a", lambda t: (t, t / 2, 1.0, 0.5)),
        ("fleet:truck-b", lambda t: (100.0, 900.0 - t, 0.0, -1.0)),
    ):
        reports = serve.reported_positions(tid)
        assert [r["seq"] for r in reports] == [1, 2, 3, 4, 5, 6]
        ts = [r["t_s"] for r in reports]
        assert ts == sorted(ts) and ts[0] >= 0
        for r in reports:
            got = (r["x_m"], r["y_m"], r["vx_mps"], r["vy_mps"])
            assert got == pytest.approx(expect(r["t_s"]), abs=1e-9)


def test_a_second_run_replaces_the_things(serve, tmp_path):
    sc = static_scenario(tmp_path)
    for _ in range(2):
        p = run_devices(
            str(sc), "--count", "1", "--reports", "2", "--rate-hz", "20", *fleet_args(serve)
        )
        assert summary(p)["total"]["acked"] == 2
    assert serve.thing("fleet:sensor-0-0")["features"]["position"]["properties"]["seq"] == 2


def test_a_domain_admin_key_and_another_namespace(serve, tmp_path):
    r = httpx.post(
        f"{serve.url}/api/2/keys", json={"domain": "plant", "role": "admin"}, headers=serve.headers
    )
    assert r.status_code == 201, r.text
    key = r.json()["token"]
    p = run_devices(
        str(static_scenario(tmp_path)),
        "--count", "1", "--reports", "1", "--namespace", "robots", "--quiet",
        "--url", serve.url, "--mqtt", serve.mqtt_url, "--json",
        TWINEDGE_API_KEY=key,
    )  # fmt: skip
    assert summary(p)["total"]["acked"] == 1
    assert serve.thing("robots:sensor-0-0")["_domain"] == "plant"


@pytest.mark.parametrize(("warmup_s", "steady"), [(1e-9, 6), (1e6, 0)])
def test_the_steady_figures_leave_out_the_warm_up(serve, tmp_path, warmup_s, steady):
    """Every report is published after the devices connected, so a nanosecond of
    warm-up leaves all of them in the steady figures, and a warm-up longer than the run
    none."""
    sc = static_scenario(tmp_path)
    p = run_devices(
        str(sc), "--count", "2", "--reports", "3", "--rate-hz", "20",
        "--warmup-s", str(warmup_s), *fleet_args(serve),
    )  # fmt: skip
    out = summary(p)
    assert out["total"]["acked"] == 6
    st = out["total"]["steady"]
    assert st["from_s"] == warmup_s and st["acked"] == steady
    assert (st["latency_ms"]["p50"] is None) == (steady == 0)


def test_text_summary_without_json(serve, tmp_path):
    p = run_devices(
        str(static_scenario(tmp_path)), "--count", "2", "--reports", "1",
        "--url", serve.url, "--mqtt", serve.mqtt_url, "--api-key", serve.admin,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("2 devices: 2 reports sent, 2 acknowledged"), p.stdout
    assert "provisioned 2 things" in p.stderr


# --- bad input: one line on stderr, exit status 2 -------------------------------------
def one_error(p) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def test_more_devices_than_entities(tmp_path):
    sc = static_scenario(tmp_path)
    line = one_error(run_devices(str(sc), "--count", "4", "--api-key", "k"))
    assert line == f"error: {sc}: --count: got 4; expected 1..3 (the scenario has 3 entities)"


def test_unreachable_service(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    line = one_error(
        run_devices(str(static_scenario(tmp_path)), "--count", "1", "--url", url, "--api-key", "k")
    )
    assert line.startswith(f"error: {url}: cannot reach the twin service"), line
    assert "is twinedge serve running there (--url)?" in line


def test_wrong_api_key(serve, tmp_path):
    p = run_devices(
        str(static_scenario(tmp_path)), "--count", "1", "--url", serve.url,
        "--api-key", "te_nokey_nosecret", "--quiet",
    )  # fmt: skip
    line = one_error(p)
    assert "refused with 401 Unauthorized" in line and "admin.token" in line, line


def test_read_only_key(serve, tmp_path):
    r = httpx.post(
        f"{serve.url}/api/2/keys", json={"domain": "fleet", "role": "read"}, headers=serve.headers
    )
    args = [str(static_scenario(tmp_path)), "--count", "1", "--url", serve.url, "--quiet"]
    line = one_error(run_devices(*args, TWINEDGE_API_KEY=r.json()["token"]))
    assert "refused with 403 Forbidden" in line and "needs an admin key" in line, line


def test_unreachable_broker(serve, tmp_path):
    mqtt = f"mqtt://127.0.0.1:{free_port()}"
    p = run_devices(
        str(static_scenario(tmp_path)), "--count", "1", "--url", serve.url, "--mqtt", mqtt,
        "--api-key", serve.admin, "--quiet",
    )  # fmt: skip
    line = one_error(p)
    assert line.startswith(f"error: {mqtt}: cannot connect to the MQTT broker"), line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--count", "0"], "--count: got 0; expected at least 1"),
        (["--count", "1", "--rate-hz", "0"], "--rate-hz: got 0.0; expected reports per second"),
        (["--count", "1", "--rate-hz", "nan"], "--rate-hz: got nan"),
        (["--count", "1", "--duration-s", "-1"], "--duration-s: got -1.0; expected seconds > 0"),
        (["--count", "1", "--reports", "0"], "--reports: got 0; expected at least 1"),
        (["--count", "1", "--warmup-s", "-1"], "--warmup-s: got -1.0; expected seconds >= 0"),
        (["--count", "1", "--warmup-s", "inf"], "--warmup-s: got inf; expected seconds >= 0"),
        (
            ["--count", "1", "--mqtt", "http://x:1"],
            "--mqtt: url: got 'http://x:1'; expected mqtt://",
        ),
        (["--count", "1", "--url", "ftp://x"], "--url: got 'ftp://x'; expected http://"),
        (["--count", "1", "--namespace", "a b"], "--namespace: got 'a b'"),
        (["--count", "1", "--device-password", "short"], "--device-password: got 5 characters"),
        (["--count", "1", "--api-key", ""], "no API key: pass --api-key or set TWINEDGE_API_KEY"),
    ],
)
def test_bad_options(tmp_path, args, expected):
    if "--api-key" not in args:
        args = [*args, "--api-key", "k"]
    line = one_error(run_devices(str(static_scenario(tmp_path)), *args))
    assert expected in line, line


def test_missing_scenario_file(tmp_path):
    line = one_error(run_devices(str(tmp_path / "nope.yaml"), "--count", "1", "--api-key", "k"))
    assert "nope.yaml: no such file" in line
