"""docs/privacy.md's commands run as written and print what the document says."""

from __future__ import annotations

from tests.test_docs_commands import env_for, run_doc, workdir

DOC = "docs/privacy.md"


def test_privacy_doc_commands(tmp_path):
    p, skipped = run_doc(DOC, workdir(tmp_path), env_for(tmp_path), timeout=300)
    assert not skipped
    lines = p.stdout.splitlines()
    assert "sum laplace 0.5 [(100.0, 200.0)]" in lines, p.stdout
    assert "5.3499800619762965" in lines, p.stdout
    assert "1301.75" in lines, p.stdout  # the Paillier total, exact in fixed point
