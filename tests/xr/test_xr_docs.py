"""docs/xr.md: its shell commands run as written (with the prelude of
tests/test_docs_commands.py), its Python example prints what its comments say, and its
``xr:`` section is the schema's defaults."""

from __future__ import annotations

import contextlib
import io
import json
import re

import yaml

from tests.test_docs_commands import ROOT, env_for, run_doc, workdir
from twinedge.scenario.schema import Xr

DOC = "docs/xr.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", (ROOT / DOC).read_text(), re.S | re.M)


def test_xr_doc_commands(tmp_path):
    cwd = workdir(tmp_path)
    run_doc(DOC, cwd, env_for(tmp_path))
    summary = json.loads((cwd / "xr-out" / "summary.json").read_text())
    assert summary["policies"] and all(
        1.0 <= v["xr_score"] <= 5.0 for v in summary["policies"].values()
    )


def test_python_example_prints_what_the_comments_say():
    (code,) = blocks("python")
    expected = [
        m.group(1).strip()
        for line in code.splitlines()
        if (m := re.match(r"\s*print\(.*\)\s+# (.*)$", line))
    ]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, DOC, "exec"), {})
    assert out.getvalue().splitlines() == expected


def test_the_documented_section_is_the_defaults():
    yml = next(b for b in blocks("yaml") if b.startswith("xr:"))
    doc = Xr.model_validate(yaml.safe_load(yml)["xr"])
    assert doc == Xr(kinds=["pedestrian"])
