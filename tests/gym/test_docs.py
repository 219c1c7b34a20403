"""The Python blocks of docs/gym.md run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from twinedge.gym import LinearMigrationPolicy

ROOT = Path(__file__).resolve().parents[2]


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / "docs" / "gym.md").read_text(), re.S | re.M)


def run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_loop_example_runs_an_episode(tmp_path):
    (block,) = [b for b in python_blocks() if b.startswith("# gym example")]
    p = run(block, tmp_path)
    assert p.returncode == 0, p.stderr
    miss, migrations = p.stdout.split()
    assert 0 <= float(miss) <= 1 and int(migrations) > 0


def test_the_trained_policy_example_loads_and_runs(tmp_path):
    (block,) = [b for b in python_blocks() if "LinearMigrationPolicy.load" in b]
    LinearMigrationPolicy([-0.05, 0, 1, 0, 0, 0, 0, 0]).save(tmp_path / "gym-policy.json")
    p = run(block, tmp_path)
    assert p.returncode == 0, p.stderr
    assert 0 <= float(p.stdout) <= 1
