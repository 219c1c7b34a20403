"""The training loop: residual feedback, determinism, invariants, bad input, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinedge.fl import SCHEMES, FLConfig, FLError, RoundState, grid, run
from twinedge.fl.model import partition

ROOT = Path(__file__).resolve().parents[2]


class Silent:
    """Schedules nobody and records what it saw; named like the proposed scheduler so the
    loop gives it residual feedback."""

    name = "lyapunov"

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def schedule(self, state: RoundState, rng: np.random.Generator) -> np.ndarray:
        self.seen.append(state.update_norm2.copy())
        return np.zeros(state.devices, dtype=bool)


@pytest.mark.parametrize("residual", [True, False])
def test_residual_feedback_accumulates_unsent_updates(residual: bool) -> None:
    # 2 devices hold 719 of the 1,438 training samples each, the mini-batch is all of them, so with nobody
    # scheduled the model stays and every round's gradient g is the same: the update is
    # g, then g + xi g, then g + xi (g + xi g); its squared norm grows by (1 + xi)^2 and
    # (1 + xi + xi^2)^2 = 2.25 and 3.0625 for xi = 0.5 (and stays without feedback)
    cfg = FLConfig(devices=2, rounds=3, batch=719, xi=0.5, residual=residual)
    sched = Silent()
    r = run(sched, 1.0, np.random.default_rng(0), cfg)
    first, second, third = sched.seen
    assert r.scheduled == [0, 0, 0] and r.energy == [0.0, 0.0, 0.0]
    want = (2.25, 3.0625) if residual else (1.0, 1.0)
    assert second / first == pytest.approx(np.full(2, want[0]))
    assert third / first == pytest.approx(np.full(2, want[1]))


def test_a_seed_gives_the_same_run() -> None:
    cfg = FLConfig(rounds=4)
    a = run("lyapunov", 3.0, np.random.default_rng(7), cfg)
    b = run("lyapunov", 3.0, np.random.default_rng(7), cfg)
    c = run("lyapunov", 3.0, np.random.default_rng(8), cfg)
    assert (a.accuracy, a.scheduled, a.energy) == (b.accuracy, b.scheduled, b.energy)
    assert (a.accuracy, a.scheduled) != (c.accuracy, c.scheduled)


def test_schemes_of_one_seed_see_the_same_channels() -> None:
    # baseline 1 schedules |h| >= 1 whatever the noise: same channels, same counts
    res = grid(["threshold"], [0.5, 3.0], [0], FLConfig(rounds=5))
    assert res[0].scheduled == res[1].scheduled


def test_ideal_ignores_noise_and_schedules_everyone() -> None:
    res = grid(["ideal"], [0.0, 3.0], [0], FLConfig(rounds=5))
    assert res[0].accuracy == res[1].accuracy
    assert res[0].scheduled == [100] * 5


def test_non_iid_split_gives_most_devices_two_labels() -> None:
    p = partition(100, np.random.default_rng(0), iid=False)
    labels = [len(set(p.y_train[rows].tolist())) for rows in p.device_rows]
    assert sum(p.device_rows[i].size for i in range(100)) == p.y_train.size
    assert np.median(labels) <= 3


@settings(max_examples=15, deadline=None)
@given(
    st.sampled_from(SCHEMES),
    st.floats(0.0, 10.0),
    st.integers(1, 12),
    st.integers(0, 2**32 - 1),
)
def test_runs_are_well_formed(scheme: str, noise: float, devices: int, seed: int) -> None:
    r = run(scheme, noise, np.random.default_rng(seed), FLConfig(devices=devices, rounds=3))
    assert len(r.accuracy) == len(r.scheduled) == len(r.energy) == 3
    assert all(0.0 <= a <= 1.0 for a in r.accuracy)
    assert all(0 <= k <= devices for k in r.scheduled)
    assert all(e >= 0.0 for e in r.energy)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: run("ideal", -0.5, np.random.default_rng(0)), "noise variance: -0.5"),
        (lambda: run("ideal", float("nan"), np.random.default_rng(0)), "noise variance: nan"),
        (lambda: run("ideal", 1.0, np.random.default_rng(0), FLConfig(devices=0)), "devices: 0"),
        (lambda: run("best", 1.0, np.random.default_rng(0)), "scheme: 'best': unknown"),
        (lambda: grid(["ideal"], [1.0], []), "seeds: expected at least one"),
        (lambda: grid(["ideal"], [1.0], [0], FLConfig(xi=2.0)), "xi: 2.0"),
        (lambda: partition(5000, np.random.default_rng(0)), "more devices than"),
    ],
)
def test_bad_input_is_refused_clearly(call, message: str) -> None:
    with pytest.raises(FLError, match=message.replace("(", r"\(")):
        call()


def test_a_scheduler_returning_a_bad_mask_is_refused() -> None:
    class Wrong:
        name = "wrong"

        def schedule(self, state: RoundState, rng: np.random.Generator) -> np.ndarray:
            return np.ones(state.devices + 1, dtype=bool)

    with pytest.raises(FLError, match="scheduler mask: shape"):
        run(Wrong(), 1.0, np.random.default_rng(0), FLConfig(rounds=1))


def twinedge(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **extra}
    return subprocess.run(
        [sys.executable, "-m", "twinedge", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_cli_writes_the_table_and_files(tmp_path: Path) -> None:
    p = twinedge(
        "fl",
        "--schemes",
        "ideal,top-k",
        "--noise",
        "1",
        "--seeds",
        "2",
        "--rounds",
        "3",
        "--out",
        "out",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert "| 1 | ideal |" in p.stdout and "| 1 | top-k |" in p.stdout
    assert "| 20.0 |" in p.stdout  # top-k schedules 20 devices a round
    rows = (tmp_path / "out" / "fl-rounds.csv").read_text().splitlines()
    assert rows[0] == "scheme,noise_var,seed,alpha,round,accuracy,scheduled,energy"
    assert len(rows) == 1 + 2 * 2 * 3
    summary = json.loads((tmp_path / "out" / "fl-summary.json").read_text())
    assert [s["scheme"] for s in summary] == ["ideal", "top-k"]
    assert (tmp_path / "out" / "fl-accuracy.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--noise=-1"], "error: noise variance: -1.0"),
        (["--schemes", "random"], "error: scheme: 'random': unknown"),
        (["--devices", "0"], "error: devices: 0"),
        (["--noise", "a,b"], "error: --noise: 'a,b'"),
    ],
)
def test_cli_bad_input(args: list[str], message: str, tmp_path: Path) -> None:
    p = twinedge("fl", "--rounds", "1", "--seeds", "1", *args, cwd=tmp_path)
    assert p.returncode == 2 and message in p.stderr, p.stderr


def test_cli_progress_lines_go_to_stderr(tmp_path: Path) -> None:
    p = twinedge(
        "fl",
        "--schemes",
        "ideal",
        "--noise",
        "1",
        "--seeds",
        "3",
        "--rounds",
        "2",
        cwd=tmp_path,
        TWINEDGE_PROGRESS_EVERY_S="0.001",
    )
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert lines[-1].startswith("twinedge fl: 3/3 runs done in ")
    assert any(line.startswith("twinedge fl: 1/3 runs (33%)") for line in lines)
    assert "twinedge fl:" not in p.stdout
