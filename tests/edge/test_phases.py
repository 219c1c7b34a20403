"""Phase marks of migrations (a diagnostic aid): written only when the variable names a
directory, one JSON line per step, in the order the steps happen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from twinedge.edge import phases
from twinedge.edge.phases import ENV

MIGRATE = """
import asyncio, sys, pathlib
from twinedge.edge.host import EdgeHost
from twinedge.edge.migrate import pre_copy

async def main():
    d = pathlib.Path(sys.argv[1])
    a, b = EdgeHost.open(d / "a.sqlite", "a"), EdgeHost.open(d / "b.sqlite", "b")
    await a.place("fleet:r1")
    await a.apply("fleet:r1", {"position": {"x_m": 1.0}})
    await pre_copy(a, b, "fleet:r1")
    await a.close(); await b.close()

asyncio.run(main())
"""


def test_unset_it_writes_nothing():
    assert phases._OUT is None  # this process started without the variable
    phases.mark("driver.fence-call", "fleet:r1")  # returns


def test_a_migration_in_one_process_marks_its_cut_over_in_order(tmp_path: Path):
    trace = tmp_path / "trace"
    env = {**os.environ, ENV: str(trace)}
    p = subprocess.run(
        [sys.executable, "-c", MIGRATE, str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    (f,) = trace.glob("phases-*.jsonl")
    marks = [json.loads(line) for line in f.read_text().splitlines()]
    assert [m["event"] for m in marks] == [
        "driver.fence-call",
        "source.fence-batch",
        "driver.fence-answer",
        "target.adopt-batch",
        "driver.adopt-answer",
    ]
    assert {m["twin"] for m in marks} == {"fleet:r1"}
    assert {m["pid"] for m in marks} == {int(f.stem.removeprefix("phases-"))}
    times = [m["t"] for m in marks]
    assert times == sorted(times)
    assert (marks[0]["epoch"], marks[0]["rounds"], marks[2]["changes"]) == (2, 1, 0)
