"""The orchestrator sits below the live runtime: no module of ``twinedge.orchestrator``
imports ``twinedge.runtime`` (at its top or inside a function), read from the source
(``ast``, nothing imported); the live driver is given the service it drives."""

from __future__ import annotations

from pathlib import Path

import twinedge.orchestrator
from tests.runtime.test_layers import imported

ORCHESTRATOR = Path(twinedge.orchestrator.__file__).parent


def test_the_orchestrator_imports_nothing_of_the_live_runtime():
    modules = sorted(ORCHESTRATOR.rglob("*.py"))
    assert {p.name for p in modules} >= {"live.py", "hosts.py", "rayhosts.py", "core.py"}
    offenders = {
        p.name: sorted(m for m in imported(p, ORCHESTRATOR) if m.startswith("twinedge.runtime"))
        for p in modules
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_import_reader_sees_an_import_inside_a_function(tmp_path):
    """The check above would catch a lazy import too."""
    pkg = tmp_path / "twinedge" / "orchestrator"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("def f():\n    from twinedge.runtime.things import merge_patch\n")
    assert "twinedge.runtime.things" in imported(pkg / "x.py", pkg)
