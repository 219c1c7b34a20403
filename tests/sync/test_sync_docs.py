"""docs/sync.md's commands run as written and print the numbers the document shows."""

from __future__ import annotations

import json
import re

import pytest

from tests.test_docs_commands import DATASETS, ROOT, env_for, run_doc, workdir
from tests.world.test_sumo import have_sumo

DOC = "docs/sync.md"


def test_sync_doc_commands(tmp_path):
    if not (DATASETS / "ifogsim2-melbourne" / "usersLocation-melbCBD_1.csv").is_file():
        pytest.skip(
            f"iFogSim2 dataset not found at {DATASETS / 'ifogsim2-melbourne'} "
            "(set TWINEDGE_DATASETS to its parent folder)"
        )
    if not have_sumo():
        pytest.skip("Eclipse SUMO not installed (pip install 'twinedge[sumo]')")
    cwd = workdir(tmp_path)
    p, skipped = run_doc(DOC, cwd, env_for(tmp_path, TWINEDGE_DATASETS=str(DATASETS)), 600)
    assert not skipped
    text = (ROOT / DOC).read_text()
    # the SUMO table rows of the document are what the command printed
    out = p.stdout.splitlines()
    rows = {
        tuple(ln.split()[:2]): ln.split()
        for ln in out
        if ln.startswith(("constant", "first", "second"))
    }
    for pred, th, saved in [("first-order", "1", "36.3%"), ("second-order", "0.5", "-8.1%")]:
        assert rows[(pred, th)][3] == saved
        assert f"{saved[:-1]} %".replace("-", "−") in text
    series = (cwd / "sumo-sync.csv").read_text().splitlines()
    assert series[0] == "predictor,threshold_m,t_s,reports,bytes,mean_error_m,max_error_m"
    assert len(series) == 1 + 9 * 600
    # the iFogSim2 JSON: 74.2 % of the bytes saved at 1 m, as the table says
    doc = json.loads(p.stdout[p.stdout.index("{") :])
    (r,) = doc["results"]
    assert round(100 * r["bytes_saved"], 1) == 74.2 and r["max_error_m"] <= 1.0


def test_sync_doc_python_example_prints_what_it_shows(capsys):
    text = (ROOT / DOC).read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    shown = re.search(r"^prints\n\n```\n(.*?)^```", text, re.S | re.M)
    assert code is not None and shown is not None
    exec(compile(code.group(1), DOC, "exec"), {})
    assert capsys.readouterr().out == shown.group(1)
