"""docs/offload.md: its Python block runs and its YAML section is a valid scenario section."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import yaml

from twinedge.scenario.schema import Offloading

DOC = Path(__file__).resolve().parents[2] / "docs" / "offload.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", DOC.read_text(), re.S | re.M)


def test_python_example_runs() -> None:
    (code,) = blocks("python")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {})
    lines = out.getvalue().splitlines()
    assert [ln.split()[0] for ln in lines[:3]] == ["local", "greedy", "optimal"]
    assert "optimal" in lines[3]


def test_the_yaml_section_is_valid() -> None:
    (block,) = blocks("yaml")
    spec = Offloading.model_validate(yaml.safe_load(block)["offloading"])
    assert spec.policy == "greedy" and set(spec.tasks) == {"vehicle", "sensor"}
    assert spec.tasks["sensor"].period_s == 5.0
