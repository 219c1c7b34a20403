"""The sender rule on traces: hand-computed small traces, the iFogSim2 user paths and a
real SUMO run, and the ``twinedge sync`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.world.test_sumo import have_sumo
from twinedge.cli import main
from twinedge.errors import ScenarioError
from twinedge.sync import ByteModel, SyncError
from twinedge.sync.traces import Trace, load_traces, resample, simulate


def _trace(rows: list[tuple[str, float, float, float]]) -> Trace:
    ids = sorted({r[0] for r in rows})
    rows = sorted(rows, key=lambda r: (ids.index(r[0]), r[1]))
    counts = [sum(1 for r in rows if r[0] == i) for i in ids]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    t = np.array([r[1] for r in rows])
    xy = np.array([[r[2], r[3]] for r in rows])
    return Trace("hand", ids, offsets, t, xy)


def test_two_entities_by_hand():
    # a: parked at (0, 0) for t = 0..4; b: 0, 1, 2, 2, 2 along x (moves, then stops)
    tr = _trace(
        [("a", float(t), 0.0, 0.0) for t in range(5)]
        + [("b", float(t), float(min(t, 2)), 0.0) for t in range(5)]
    )
    r = simulate(tr, "first-order", threshold_m=0.5, heartbeat_s=None)
    # a: only its first sample. b: t=0 (first, v=0); t=1 predicted 0, true 1 -> sent (v=1);
    # t=2 predicted 2: exact; t=3 predicted 3, true 2 -> sent (v=0); t=4 exact.
    assert (r.samples, r.reports) == (10, 4)
    assert r.reports_at.tolist() == [2, 1, 0, 1, 0]
    assert r.report_bytes == 4 * (32 + 8 * 5)
    assert r.full_bytes == 10 * (32 + 8 * 3)
    assert r.bytes_saved == pytest.approx(1 - 288 / 560)
    assert r.max_error_m == 0.0 and r.mean_error_m == 0.0
    # constant: b is sent at t = 1 and 2 (1 m > 0.5 m), a never again
    c = simulate(tr, "constant", threshold_m=0.5, heartbeat_s=None)
    assert c.reports_at.tolist() == [2, 1, 1, 0, 0]
    # constant with a 1.5 m threshold: b at t=2 is 2 m from 0 -> sent; t=1 (1 m) is not
    c2 = simulate(tr, "constant", threshold_m=1.5, heartbeat_s=None)
    assert c2.reports_at.tolist() == [2, 0, 1, 0, 0]
    assert c2.max_error_at_m.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert c2.mean_error_at_m.tolist() == [0.0, 0.5, 0.0, 0.0, 0.0]
    # the heartbeat: every 2 s at least
    h = simulate(tr, "constant", threshold_m=10.0, heartbeat_s=2.0)
    assert h.reports_at.tolist() == [2, 0, 2, 0, 2]
    assert h.max_age_s == 1.0


def test_entities_with_their_own_times():
    tr = _trace([("a", 0.0, 0.0, 0.0), ("a", 2.0, 5.0, 0.0), ("b", 1.0, 0.0, 0.0)])
    r = simulate(tr, "constant", threshold_m=1.0, heartbeat_s=None)
    assert r.t_s.tolist() == [0.0, 1.0, 2.0]
    assert r.reports_at.tolist() == [1, 1, 1]


def test_bad_input_is_refused():
    tr = _trace([("a", 0.0, 0.0, 0.0), ("a", 0.0, 1.0, 0.0)])
    with pytest.raises(SyncError, match=r"two samples at t_s=0\.0"):
        simulate(tr, "constant", 1.0)
    with pytest.raises(SyncError, match="unknown predictor 'linear'"):
        simulate(tr, "linear", 1.0)
    with pytest.raises(SyncError, match="resampling step must be a number of seconds > 0"):
        resample(tr, 0.0)
    with pytest.raises(SyncError, match="no trace file given"):
        load_traces([])
    with pytest.raises(SyncError, match="header_bytes"):
        ByteModel(header_bytes=-5)


def test_load_traces_converts_latlon_and_refuses_mixes(tmp_path):
    a = tmp_path / "walk.csv"
    a.write_text("Latitude,Longitude\n-37.8100, 144.9600\n-37.8110, 144.9600\n")
    tr = load_traces([a], path_step_s=10.0)
    assert tr.ids == ["walk"] and tr.t_s.tolist() == [0.0, 10.0]
    d = float(np.hypot(*(tr.xy_m[1] - tr.xy_m[0])))
    assert d == pytest.approx(111.195, abs=0.01)  # 0.001 degree of latitude
    m = tmp_path / "m.csv"
    m.write_text("entity_id,t_s,x_m,y_m\nx,0,0,0\n")
    with pytest.raises(SyncError, match="mix metres and latitude/longitude"):
        load_traces([a, m])
    with pytest.raises(SyncError, match="entity ids in more than one trace file: walk"):
        load_traces([a, a])
    bad = tmp_path / "bad.csv"
    bad.write_text("entity_id,t_s,x_m,y_m\nx,0,zero,0\n")
    with pytest.raises(ScenarioError, match="line 2"):
        load_traces([bad])


def test_ifogsim2_user_paths(ifogsim_dir):
    paths = [
        ifogsim_dir / "usersLocation-melbCBD_1.csv",
        *sorted(ifogsim_dir.glob("random_usersLocation-*.csv")),
    ]
    tr = load_traces(paths, name="ifogsim2")
    assert (len(tr.ids), tr.samples) == (6, 582)
    one = resample(tr, 1.0)
    for p in ("constant", "first-order", "second-order"):
        for th in (0.5, 1.0, 5.0):
            r = simulate(one, p, th, heartbeat_s=5.0)
            assert r.max_error_m <= th
            assert r.max_age_s < 5.0
            assert 0 < r.reports < r.samples
    # straight walks between points: first order sends little more than the heartbeats
    r = simulate(one, "first-order", 1.0, heartbeat_s=5.0)
    assert r.bytes_saved > 0.7
    # at the paths' own 10 s spacing a 5 s heartbeat sends every point
    native = simulate(tr, "first-order", 1.0, heartbeat_s=5.0)
    assert native.reports == native.samples


@pytest.mark.skipif(not have_sumo(), reason="Eclipse SUMO not installed (twinedge[sumo])")
def test_sumo_vehicles(tmp_path):
    from twinedge.world.sumo import sumo_trace

    sumo_trace(tmp_path / "t.csv", size=3, length_m=200, vehicles=10, duration_s=120, seed=1)
    tr = load_traces([tmp_path / "t.csv"])
    rs = {p: simulate(tr, p, 5.0, heartbeat_s=5.0) for p in ("constant", "first-order")}
    for r in rs.values():
        assert r.max_error_m <= 5.0
    # cars drive straight most of the time: dead reckoning sends fewer reports
    assert rs["first-order"].reports < rs["constant"].reports


def test_the_command(tmp_path, capsys):
    f = tmp_path / "t.csv"
    f.write_text("entity_id,t_s,x_m,y_m\n" + "".join(f"a,{t},{10 * t},0\n" for t in range(6)))
    main(
        [
            "sync",
            str(f),
            "--predictor",
            "first-order",
            "--threshold-m",
            "1",
            "--heartbeat-s",
            "none",
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "t: 1 entities, 6 samples; heartbeat none; a sample 56 B"
    assert out[2].split() == ["first-order", "1", "2", "57.1%", "0.000", "0.000", "0.000"]
    main(["sync", str(f), "--json", "--threshold-m", "0.5,5", "--out", str(tmp_path / "s.csv")])
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["results"]) == 6
    assert {r["predictor"] for r in doc["results"]} == {"constant", "first-order", "second-order"}
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "predictor,threshold_m,t_s,reports,bytes,mean_error_m,max_error_m"
    assert len(lines) == 1 + 6 * 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--predictor", "kalman"], "error: --predictor: unknown predictor 'kalman'"),
        (["--threshold-m", "one"], "error: --threshold-m: 'one': expected comma-separated numbers"),
        (["--threshold-m", "-1"], "error: threshold must be a finite number >= 0, got -1.0"),
        (["--heartbeat-s", "soon"], "error: --heartbeat-s: 'soon': expected seconds or 'none'"),
        (["--resample-s", "0"], "error: the resampling step must be a number of seconds > 0"),
    ],
)
def test_the_command_refuses_bad_options_with_one_line(tmp_path, capsys, args, message):
    f = tmp_path / "t.csv"
    f.write_text("entity_id,t_s,x_m,y_m\na,0,0,0\na,1,1,0\n")
    with pytest.raises(SystemExit) as e:
        main(["sync", str(f), *args])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
