"""docs/fl.md's commands run as written and write what the document says."""

from __future__ import annotations

import json

from tests.test_docs_commands import env_for, run_doc, workdir

DOC = "docs/fl.md"


def test_fl_doc_commands(tmp_path):
    wd = workdir(tmp_path)
    p, skipped = run_doc(DOC, wd, env_for(tmp_path), timeout=600)
    assert not skipped
    assert "| 3 | lyapunov |" in p.stdout
    out = wd / "fl-results"
    summary = json.loads((out / "fl-summary.json").read_text())
    assert {s["noise_var"] for s in summary} == {0.5, 3.0}
    assert {s["seeds"] for s in summary} == {2}
    assert (out / "fl-accuracy.png").is_file() and (out / "fl-rounds.csv").is_file()
