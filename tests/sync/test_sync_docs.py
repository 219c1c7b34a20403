"""docs/sync.md's commands run as written and print the numbers the document shows."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.devices.conftest import free_port
from tests.test_docs_commands import DATASETS, PRELUDE, ROOT, env_for, shell_blocks, workdir
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
    blocks = [b.text for b in shell_blocks(DOC)]
    assert blocks[-1].rstrip().endswith("kill -INT $TE_PID && wait $TE_PID")
    # the document's ports (8092, 1892) become free ones; the service never outlives it
    script = "trap 'kill -9 ${TE_PID:-} 2>/dev/null || true' EXIT\n" + "".join(blocks)
    script = script.replace(":8092", ":$TE_PORT").replace("--port 8092", "--port $TE_PORT")
    script = script.replace(":1892", ":$TE_MQTT_PORT").replace(
        "--mqtt-port 1892", "--mqtt-port $TE_MQTT_PORT"
    )
    (cwd / "doc-script.sh").write_text(PRELUDE + script)
    env = env_for(
        tmp_path,
        TWINEDGE_DATASETS=str(DATASETS),
        TE_PORT=str(free_port()),
        TE_MQTT_PORT=str(free_port()),
    )
    p = subprocess.run(
        ["bash", str(cwd / "doc-script.sh")], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert p.returncode == 0, f"--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
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
    doc = json.loads(p.stdout[p.stdout.index("{") : p.stdout.index("\n}\n") + 2])
    (r,) = doc["results"]
    assert round(100 * r["bytes_saved"], 1) == 74.2 and r["max_error_m"] <= 1.0
    # the scenario's sync section: the numbers the document gives
    run = json.loads((cwd / "out" / "sync-sumo" / "summary.json").read_text())
    (pol,) = run["policies"].values()
    assert (pol["sync_bytes_saved"], pol["sync_reports"], pol["sync_samples"]) == (
        0.3808,
        14448,
        30000,
    )
    assert "`sync_bytes_saved` 0.3808 (14,448 reports for 30,000 samples" in text
    # live: most samples predicted, not sent; the read carries the prediction
    m = re.search(
        r"^20 devices: ([\d,]+) reports sent, \1 acknowledged .*, 0 unacknowledged, "
        r"([\d,]+) samples predicted \(not sent\)",
        p.stdout,
        re.M,
    )
    assert m is not None, p.stdout
    sent, predicted = (int(g.replace(",", "")) for g in m.groups())
    assert predicted > sent > 0
    props = json.loads(re.findall(r'^\{"x_m".*\}$', p.stdout, re.M)[-1])
    assert props["sync"]["threshold_m"] == 1.0
    assert props["predicted"]["predictor"] == "first-order" and props["predicted"]["age_s"] > 0


def test_sync_doc_python_example_prints_what_it_shows(capsys):
    text = (ROOT / DOC).read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    shown = re.search(r"^prints\n\n```\n(.*?)^```", text, re.S | re.M)
    assert code is not None and shown is not None
    exec(compile(code.group(1), DOC, "exec"), {})
    assert capsys.readouterr().out == shown.group(1)
