"""docs/carbon.md's commands run as written and print what the document says."""

from __future__ import annotations

import json
import re

import pytest

from tests.test_docs_commands import DATASETS, ROOT, env_for, run_doc, workdir

DOC = "docs/carbon.md"


def test_carbon_doc_commands(tmp_path):
    if not (DATASETS / "carbon-intensity" / "ger_ci.csv").is_file():
        pytest.skip(
            f"carbon-intensity dataset not found at {DATASETS / 'carbon-intensity'} "
            "(set TWINEDGE_DATASETS to its parent folder)"
        )
    p, skipped = run_doc(DOC, workdir(tmp_path), env_for(tmp_path), timeout=600)
    assert not skipped
    # the Python example prints the lines the document shows (computed there by hand)
    shown = re.search(r"^prints\n\n```\n(.*?)^```", (ROOT / DOC).read_text(), re.S | re.M)
    assert shown is not None
    for line in shown.group(1).splitlines():
        assert line in p.stdout.splitlines(), line
    # the benchmark's JSON follows; its gaps to the published numbers are as documented
    result = json.loads(p.stdout[p.stdout.index("{") :])
    assert result["max_gap"]["mean_2020_g_per_kwh"] < 1e-4
    assert result["max_gap"]["ml_perfect_pp"] < 0.0005
