"""docs/attention.md: its shell commands run as written (with the prelude of
tests/test_docs_commands.py) and its Python example prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import json
import re

from tests.test_docs_commands import ROOT, env_for, run_doc, workdir

DOC = "docs/attention.md"


def test_attention_doc_commands(tmp_path):
    cwd = workdir(tmp_path)
    p, skipped = run_doc(DOC, cwd, env_for(tmp_path), timeout=600)
    assert not skipped
    assert "attention / interest sets:" in p.stdout
    r = json.loads((cwd / "attention.json").read_text())
    assert r["setup"]["weights"]["staleness"] == 2.0
    assert [o["policy"] for o in r["outcomes"]] == ["all", "distance", "attention"]


def test_python_example_prints_what_the_comments_say():
    (code,) = re.findall(r"^```python\n(.*?)^```", (ROOT / DOC).read_text(), re.S | re.M)
    expected = [
        m.group(1).strip()
        for line in code.splitlines()
        if (m := re.match(r"\s*print\(.*\)\s+# (.*)$", line))
    ]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, DOC, "exec"), {})
    assert out.getvalue().splitlines() == expected
