"""``twinedge run/compare --seeds --param`` as a real subprocess: bad input, and a sweep
killed half-way that resumes from its output folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.cli.test_cli import twinedge
from twinedge.engine.metrics import SUMMARY_KEYS


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "5..2"], "error: --seeds '5..2': the range 5..2 is empty (it ends before it starts); write 2..5"),
        (["--param", "nosuch.x=1"], "error: --param nosuch.x=1: 'nosuch' is neither a policy (greedy, nearest, "),
        (["--param", "utility.beta=abc"], "error: --param utility.beta=abc: 'abc' is not a number (utility.beta defaults to 0.7)"),
        (["--seed", "1", "--seeds", "0..2"], "error: give --seed or --seeds, not both"),
        (
            ["--out", "x"],
            "error: --out keeps the runs of a sweep or the files of --figures: give --seeds, "
            "--param or --figures too",
        ),
    ],
)  # fmt: skip
def test_bad_sweeps_are_one_line(tmp_path, args, message):
    p = twinedge("compare", "city-small", "--steps", 2, *args, cwd=tmp_path, check=False)
    assert p.returncode == 2
    assert p.stderr.startswith(message), p.stderr
    assert len(p.stderr.splitlines()) == 1 and p.stdout == ""


def test_compare_prints_mean_and_interval(tmp_path):
    p = twinedge("compare", "city-small", "--steps", 3, "--seeds", "0..2", "--placement", "nearest",
                 "--migration", "never", "--json", cwd=tmp_path)  # fmt: skip
    doc = json.loads(p.stdout)
    (g,) = doc["groups"]
    assert g["policy"] == "nearest+never" and g["seeds"] == [0, 1, 2]
    assert g["metrics"]["migrations"] == {"mean": 0.0, "ci95": 0.0, "n": 3}
    assert doc["runs"] == {"total": 3, "kept": 0, "ran": 3}


def test_a_killed_sweep_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "sweep"
    args = [sys.executable, "-m", "twinedge", "run", "city-small", "--steps", 40, "--seeds", "0..9",
            "--placement", "nearest", "--migration", "never,threshold", "--out", out, "-q"]  # fmt: skip
    proc = subprocess.Popen(list(map(str, args)), cwd=tmp_path, stderr=subprocess.PIPE)
    runs = out / "runs"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if runs.is_dir() and len(list(runs.glob("*.json"))) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    before = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
    assert 3 <= len(before) < 20
    assert not (out / "results.parquet").exists()
    p = twinedge(*args[3:-1], "--json", cwd=tmp_path)
    doc = json.loads(p.stdout)
    assert doc["runs"] == {"total": 20, "kept": len(before), "ran": 20 - len(before)}
    # the runs found were read, not run again
    assert all(runs.joinpath(n).stat().st_mtime_ns == t for n, t in before.items())
    assert not list(runs.glob("*.tmp*"))
    # the resumed tables are those of one uninterrupted sweep
    fresh = tmp_path / "fresh"
    twinedge(*args[3:-3], "--out", fresh, "-q", cwd=tmp_path)
    a = pd.read_parquet(out / "results.parquet")
    b = pd.read_parquet(fresh / "results.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 20 * len(SUMMARY_KEYS)  # 20 runs, one row per metric
