"""Every command of docs/devices.md works when copy-pasted in order, against the
``twinedge serve`` the document assumes (started here on free ports, its addresses
substituted), with the machinery of tests/test_docs_commands.py; its Python example runs
too, and what the text says about the results holds."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.test_docs_commands import (
    PRELUDE,
    Server,
    build_script,
    doc_block,
    env_for,
    workdir,
)

DOC = "docs/devices.md"


def substitute(text: str, server: Server) -> str:
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}")
    return text.replace("127.0.0.1:1883", f"127.0.0.1:{server.mqtt_port}")


def test_devices_doc_commands(tmp_path):
    cwd = workdir(tmp_path)
    server = Server(cwd, env_for(tmp_path))
    try:
        script, claims, skipped = build_script(DOC)
        assert claims == {} and skipped == []
        (cwd / "doc-script.sh").write_text(PRELUDE + substitute(script, server))
        p = subprocess.run(
            ["bash", str(cwd / "doc-script.sh")],
            cwd=cwd,
            env=env_for(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0, f"{script}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}"
        # "prints a line per phase and one summary line"
        assert re.search(r"^20 devices: 100 reports sent, 100 acknowledged", p.stdout, re.M)
        assert "twinedge devices: provisioned 20 things" in p.stderr
        # the --duration-s run's summary, printed by the python3 one-liner
        summary = json.loads((cwd / "devices.json").read_text())
        assert summary["stopped"] == "duration" and summary["total"]["unacked"] == 0
        assert summary["total"]["acked"] == summary["total"]["sent"] > 0
        # the truck: "at virtual time t_s it is at (t_s, t_s / 2), moving at (1, 0.5) m/s"
        truck = json.loads(p.stdout.strip().splitlines()[-1])
        assert truck["seq"] == 3
        assert (
            abs(truck["x_m"] - truck["t_s"]) < 1e-9 and abs(truck["y_m"] - truck["t_s"] / 2) < 1e-9
        )
        assert (truck["vx_mps"], truck["vy_mps"]) == (1.0, 0.5)
        # the Python example
        code = substitute(doc_block(DOC, "python", "import asyncio"), server)
        p = subprocess.run(
            [sys.executable, "-c", code],
            cwd=cwd,
            env=env_for(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0 and p.stdout.strip() == "100", p.stderr
    finally:
        code = server.stop()
    assert code == 0, (cwd / "serve.log").read_text()[-3000:]
