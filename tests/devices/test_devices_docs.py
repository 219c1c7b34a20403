"""Every command of docs/devices.md works when copy-pasted in order: the document starts
its own ``twinedge serve`` in the background and stops it at the end (its ports are
replaced by free ones), run as one bash script with the prelude of
tests/test_docs_commands.py (``set -euo pipefail``, its ``curl``). Its Python example runs too, while the service is up, and
what the text says about the results holds."""

from __future__ import annotations

import json
import re
import subprocess

from tests.devices.conftest import free_port
from tests.test_docs_commands import PRELUDE, doc_block, env_for, shell_blocks, workdir

DOC = "docs/devices.md"


def substitute(text: str, http_port: int | str, mqtt_port: int | str) -> str:
    """The document's ports (8090, 1890) replaced."""
    text = text.replace("127.0.0.1:8090", f"127.0.0.1:{http_port}")
    text = text.replace("--port 8090", f"--port {http_port}")
    text = text.replace("127.0.0.1:1890", f"127.0.0.1:{mqtt_port}")
    return text.replace("--mqtt-port 1890", f"--mqtt-port {mqtt_port}")


def test_devices_doc_commands(tmp_path):
    cwd = workdir(tmp_path)
    http_port, mqtt_port = free_port(), free_port()
    blocks = [b.text for b in shell_blocks(DOC)]
    assert blocks[-1].startswith("kill -INT $TE_PID")  # the service is stopped last
    # the Python example runs where the reader meets it: before the service is stopped
    example = doc_block(DOC, "python", "import asyncio")
    (cwd / "example.py").write_text(substitute(example, http_port, mqtt_port))
    script = "".join(blocks[:-1]) + "python3 example.py > example.out\n" + blocks[-1]
    # whatever happens, the background service does not outlive the script
    script = "trap 'kill -9 ${TE_PID:-} 2>/dev/null || true' EXIT\n" + script
    (cwd / "doc-script.sh").write_text(PRELUDE + substitute(script, "$TE_PORT", "$TE_MQTT_PORT"))
    env = env_for(tmp_path, TE_PORT=str(http_port), TE_MQTT_PORT=str(mqtt_port))
    p = subprocess.run(
        ["bash", str(cwd / "doc-script.sh")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, f"{script}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
    # "prints a line per phase and one summary line"
    assert re.search(r"^20 devices: 100 reports sent, 100 acknowledged", p.stdout, re.M)
    assert "twinedge devices: provisioned 20 things" in p.stderr
    # the --duration-s run's summary
    summary = json.loads((cwd / "devices.json").read_text())
    assert summary["stopped"] == "duration" and summary["total"]["unacked"] == 0
    assert summary["total"]["acked"] == summary["total"]["sent"] > 0
    # the calibration: for the scenario's 10 GHz hosts, measured values
    cal = json.loads((cwd / "calibration.json").read_text())
    assert cal["cpu_ghz"] == 10.0 and cal["reports"] == 50
    assert cal["commit_ms"] > 0 and cal["work_gcycles"] >= 0
    assert re.search(r"^commit_ms: [0-9.]+  work_gcycles: [0-9.e-]+$", p.stdout, re.M)
    # the truck: "at virtual time t_s it is at (t_s, t_s / 2), moving at (1, 0.5) m/s"
    # (curl prints no newline: the position objects are picked out of the output)
    truck = json.loads(re.findall(r'\{"x_m"[^}]*\}', p.stdout)[-1])
    assert truck["seq"] == 3
    assert abs(truck["x_m"] - truck["t_s"]) < 1e-9 and abs(truck["y_m"] - truck["t_s"] / 2) < 1e-9
    assert (truck["vx_mps"], truck["vy_mps"]) == (1.0, 0.5)
    # the Python example: 20 devices x 5 reports
    assert (cwd / "example.out").read_text().strip() == "100"
