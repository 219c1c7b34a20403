"""``twinedge calibrate``: a real EdgeLog, a real EdgeHost and its real MQTT endpoint
measure this machine; the scenario values follow from the measurements by the formulas
of the module; bad options are one clear line."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys

import pytest

from tests.devices.conftest import env
from twinedge.edge.calibrate import CalibrationError, calibrate, check_options


def test_a_calibration_measures_positive_finite_times_and_derives_the_values(tmp_path):
    c = asyncio.run(calibrate(tmp_path, reports=4, interval_ms=0, cpu_ghz=10.0))
    doc = c.to_json()
    for key in ("commit_p50_ms", "commit_mean_ms", "apply_p50_ms", "apply_mean_ms",
                "apply_cpu_ms", "mqtt_p50_ms", "mqtt_mean_ms"):  # fmt: skip
        assert math.isfinite(doc[key]) and doc[key] > 0, (key, doc)
    assert (c.reports, c.interval_ms, c.cpu_ghz) == (4, 0.0, 10.0)
    # the values by the module's formulas (rounded as printed)
    assert c.commit_ms == c.commit_mean_ms
    assert c.host_ms == pytest.approx(max(c.mqtt_mean_ms - c.commit_mean_ms, 0.0), abs=2e-4)
    assert c.work_gcycles == pytest.approx(c.host_ms / 1000.0 * 10.0, rel=1e-3, abs=1e-9)
    assert c.host_ms >= 0 and c.work_gcycles >= 0
    # it cleans up after itself
    assert list(tmp_path.iterdir()) == []
    text = "\n".join(c.lines())
    assert f"commit_ms: {c.commit_ms:.4g}" in text and f"work_gcycles: {c.work_gcycles:.4g}" in text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ((0, 20.0, 1.0), "--reports: got 0; expected 2..100000 reports per phase"),
        ((1, 20.0, 1.0), "--reports: got 1; expected 2..100000"),
        ((True, 20.0, 1.0), "--reports: got True; expected 2..100000"),
        ((100_001, 20.0, 1.0), "--reports: got 100001; expected 2..100000"),
        (
            (5, -1.0, 1.0),
            "--interval-ms: got -1.0; expected the spacing of two reports, 0 <= ms <= 10000",
        ),
        ((5, math.nan, 1.0), "--interval-ms: got nan; expected"),
        ((5, math.inf, 1.0), "--interval-ms: got inf; expected"),
        ((5, 20.0, 0.0), "--cpu-ghz: got 0.0; expected the cpu_ghz of the scenario's hosts, > 0"),
        ((5, 20.0, -2.0), "--cpu-ghz: got -2.0; expected"),
        ((5, 20.0, math.nan), "--cpu-ghz: got nan; expected"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(options, message):
    with pytest.raises(CalibrationError) as e:
        check_options(*options)
    assert str(e.value).startswith(message)
    with pytest.raises(CalibrationError):
        asyncio.run(calibrate(None, reports=options[0], interval_ms=options[1], cpu_ghz=options[2]))


def test_a_directory_that_is_not_one_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CalibrationError, match=f"--dir: {f} is not a directory"):
        asyncio.run(calibrate(f, reports=2, interval_ms=0))


def run_calibrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "twinedge", "calibrate", *args],
        capture_output=True, text=True, timeout=120, env=env(),
    )  # fmt: skip


def one_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    return lines[0]


def test_the_command_takes_cpu_ghz_from_the_scenario_and_prints_json(tmp_path):
    p = run_calibrate(
        "--scenario", "examples/two-sites-fleet.yaml", "--reports", "3", "--interval-ms", "0",
        "--dir", str(tmp_path), "--json",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["cpu_ghz"] == 10.0 and doc["reports"] == 3
    assert doc["commit_ms"] > 0 and math.isfinite(doc["commit_ms"])


def test_the_command_refuses_bad_input_in_one_line(tmp_path):
    assert one_error(run_calibrate("--reports", "1")) == (
        "error: --reports: got 1; expected 2..100000 reports per phase"
    )
    assert one_error(run_calibrate("--cpu-ghz", "0")).startswith("error: --cpu-ghz: got 0.0")
    assert one_error(run_calibrate("--dir", str(tmp_path / "nowhere"))) == (
        f"error: --dir: {tmp_path / 'nowhere'} is not a directory"
    )
    line = one_error(run_calibrate("--scenario", "city-small"))
    assert line.startswith("error: --scenario: the hosts of city-small have 14 different cpu_ghz")
    assert line.endswith("give the one to calibrate for with --cpu-ghz")
    assert "no-such.yaml" in one_error(run_calibrate("--scenario", str(tmp_path / "no-such.yaml")))


def test_curve_values_by_the_modules_formulas():
    import numpy as np

    from twinedge.edge.calibrate import curve_values

    commit = [np.array([1.0, 3.0]), np.array([4.0, 4.0]), np.array([2.0, 2.0])]  # 2, 4, 2
    mqtt = [np.array([5.0, 5.0]), np.array([9.0, 11.0]), np.array([1.0, 1.0])]  # 5, 10, 1
    # the host's own time where the processes are awake, the shortest spacing: 5 - 2 = 3;
    # the curve: each spacing's mqtt - 3, at least 0
    assert curve_values([0.0, 20.0, 50.0], commit, mqtt, cpu_ghz=10.0) == (
        3.0,
        0.03,
        [2.0, 7.0, 0.0],
    )


def test_a_curve_run_prints_values_the_scenario_loader_takes(tmp_path):
    import yaml

    from twinedge.scenario import parse_scenario

    p = run_calibrate(
        "--scenario", "examples/two-sites-fleet.yaml", "--reports", "2", "--spacings-ms", "0,1.5",
        "--dir", str(tmp_path), "--json",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["cpu_ghz"] == 10.0 and doc["reports"] == 2
    assert [pt["spacing_ms"] for pt in doc["points"]] == [0.0, 1.5]
    assert [g for g, _ in doc["commit_curve_ms"]] == [0.0, 1.5]
    host = doc["points"][0]["mqtt_mean_ms"] - doc["points"][0]["commit_mean_ms"]
    assert doc["host_ms"] == pytest.approx(max(host, 0.0), abs=2e-4)
    for pt, (_, v) in zip(doc["points"], doc["commit_curve_ms"], strict=True):
        assert v >= 0 and math.isfinite(v)
        assert v == pytest.approx(max(pt["mqtt_mean_ms"] - doc["host_ms"], 0.0), rel=1e-3, abs=2e-4)
    assert doc["work_gcycles"] == pytest.approx(doc["host_ms"] / 1000.0 * 10.0, rel=1e-3, abs=1e-9)
    assert list(tmp_path.iterdir()) == []
    # the text names the two values as scenario lines; pasted into the scenario, they load
    t = run_calibrate("--reports", "2", "--spacings-ms", "0,3", "--dir", str(tmp_path))
    assert t.returncode == 0, t.stderr
    (curve_line,) = [ln for ln in t.stdout.splitlines() if "commit_curve_ms:" in ln]
    (work_line,) = [ln for ln in t.stdout.splitlines() if "work_gcycles:" in ln]
    curve = yaml.safe_load(curve_line.split("commit_curve_ms:", 1)[1])
    work = float(work_line.split("work_gcycles:", 1)[1].split()[0])
    sc = yaml.safe_load(open("examples/two-sites-fleet.yaml"))
    for node in sc["infrastructure"]["nodes"]:
        if node["tier"] == "edge":
            node["commit_curve_ms"] = curve
    sc["entities"][0]["twin"]["work_gcycles"] = work
    nodes = parse_scenario(sc, "calibrated.yaml").infrastructure.nodes
    assert [n.commit_curve_ms for n in nodes if n.tier == "edge"] == [[tuple(p) for p in curve]] * 2


@pytest.mark.parametrize(
    ("spacings", "message"),
    [
        (
            "5,2",
            "error: --spacings-ms: 2 after 5; expected spacings in increasing order, each once",
        ),
        ("0,0", "error: --spacings-ms: 0 after 0; expected spacings in increasing order"),
        (
            "0,-1",
            "error: --spacings-ms: got -1.0; expected spacings of two reports, 0 <= ms <= 10000",
        ),
        ("0,nan", "error: --spacings-ms: got nan; expected spacings of two reports"),
        ("0,inf", "error: --spacings-ms: got inf; expected"),
        ("a,b", "error: --spacings-ms: got 'a,b'; expected comma-separated milliseconds"),
        ("", "error: --spacings-ms: got ''; expected comma-separated milliseconds"),
        (
            ",".join(str(i) for i in range(17)),
            "error: --spacings-ms: got 17 spacings; expected 1..16",
        ),
    ],
)
def test_bad_spacings_are_one_line(spacings, message):
    assert one_error(run_calibrate("--spacings-ms", spacings)).startswith(message)
