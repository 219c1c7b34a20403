"""The runnable examples of the docs run, and the example policies behave."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_example_policies_in_docs_match_examples_folder():
    doc = (ROOT / "docs" / "policies.md").read_text()
    example = (ROOT / "examples" / "mypolicies.py").read_text()
    for block in re.findall(r"```python\n# mypolicies.py\n(.*?)```", doc, re.S):
        for line in block.splitlines():
            if line.strip() and not line.startswith(("import ", "from ")):
                assert line in example, line


def test_example_user_policies_run_through_the_cli(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "examples")}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "twinedge",
            "compare",
            "city-small",
            "--steps",
            "8",
            "--json",
            "--placement",
            "greedy,mypolicies:cheapest_with_room",
            "--migration",
            "mypolicies:follow_when_late",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)["policies"]
    assert set(d) == {
        "greedy+mypolicies:follow_when_late",
        "mypolicies:cheapest_with_room+mypolicies:follow_when_late",
    }
    assert all(v["migrations"] >= 0 and 0 <= v["deadline_miss_ratio"] <= 1 for v in d.values())
