"""Every shell command of README.md and docs/*.md works when copy-pasted in order.

Each document's shell blocks (```bash, ```sh, ```console, ```shell) are joined in
document order into one bash script, run with ``set -euo pipefail`` in a fresh temporary
working directory, with the ``twinedge`` of this tree on ``PATH`` (``PYTHONPATH=src``).
The working directory holds a copy of ``examples/`` (the dataset paths of
``examples/eua-melbourne.yaml`` and ``examples/ifogsim-melbourne.yaml`` pointed at
``$TWINEDGE_DATASETS``, as docs/scenario.md tells the reader to do) and a link to ``benchmarks/``.

What the documents assume is started by the test itself:

* api.md and mqtt.md: a real ``twinedge serve --port P --mqtt-port Q --data-dir
  twinedge-data`` on 127.0.0.1 with free ports, stopped (SIGINT, exit status 0) at the
  end; ``127.0.0.1:8080`` in the text becomes ``127.0.0.1:P`` and ``-p 1883`` becomes
  ``-p Q``. Everything else each document makes itself (mqtt.md its thing and device
  password, with the password api.md sets).
* README's "Using it": the reader's own files, made from the docs (my-scenario.yaml,
  instance.json, mypkg/policies.py); the policy modules are found in the current folder,
  with no ``PYTHONPATH``.

Claims: a comment ``# NNN ...`` (NNN an HTTP status) after a ``curl`` command, on its
line or the next, is checked against the status the command received (the test's
``curl`` is a shell function that adds ``-w`` writing the status to a log, nothing else).

Substitutions (the only commands not run exactly as written; ``TWINEDGE_DOCS_FULL=1``
turns off the size reductions 4-6):

1. README ``python3 -m pip install -e . && twinedge run``: the install is dropped (the
   tree under test is already importable; installing would replace it).
2. ``twinedge serve`` lines (README, api.md): each is run briefly by ``serve_briefly``:
   the same arguments plus free ``--port``/``--mqtt-port`` and a fresh ``--data-dir``,
   until ``/healthz`` answers 200, then SIGINT and exit status 0 is required.
3. The SSE stream ``curl -sN $TE/api/2/events ...`` (endless) gets ``--max-time 3``;
   curl's time-out status 28 is accepted and the documented ``retry: 2000`` checked.
4. ``twinedge run`` / ``twinedge compare`` without ``--steps`` get ``--steps 10``
   (the built-in city runs 600 steps, ~30 s).
5. README ``twinedge run city --placement greedy,optimal ...``: ``city`` becomes
   ``city-small`` (``optimal`` on the 2,000-entity city takes minutes).
6. benchmarks.md ``bench_ledger.py`` lines get ``--entries 2000 --batch 500
   --samples 20`` (the smallest sizes that still time everything it reports).
7. gym.md ``python3 gym_baseline.py`` gets ``--iterations 2 --population 4
   --eval-seeds 0,1 --eval-steps 10`` (the full training takes about half a minute).

Skipped, with the reason:

* README ``./scripts/test.sh``: it runs the whole test suite, this test included.
* README ``twinedge serve --db postgresql://user@host/db --mqtt mqtt://svc:pass@broker:1883``
  and mqtt.md ``twinedge serve --mqtt 'mqtt://twinedge-service:service-pass@127.0.0.1:1884'``:
  they name the reader's own PostgreSQL / Mosquitto (TLS certificates, password file).
* api.md ``websocat ...``: an endless WebSocket stream, and websocat is not a dependency.
* mqtt.md ``mosquitto_pub``: only when mosquitto_pub is not installed.
* scenario.md's EUA block: only when the EUA dataset is absent (``TWINEDGE_DATASETS``);
  its iFogSim2 block when that dataset is absent; its SUMO block when Eclipse SUMO is not
  installed (the ``sumo`` extra).

The five console transcripts (``$ twinedge ...`` and its output in a plain ``` block:
scenario.md's bad.yaml, shared.yaml, big.yaml, api.md's serve.yaml) run on files made as
their text describes and must print the documented lines (api.md also has a bad
``TWINEDGE_PORT``).

mqtt.md's ```python device is run too (its port substituted): it must answer a command
and report a desired mode back until the twin is in sync.

The other benchmark commands of benchmarks.md and mqtt.md are written inline
(``Command: `python benchmarks/bench_*.py ...` ``); they run for minutes, so only the
script's existence and that its ``--help`` lists every option the docs give are checked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_scenario

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("TWINEDGE_DATASETS", ROOT.parent / "shared" / "datasets"))
FULL = os.environ.get("TWINEDGE_DOCS_FULL") == "1"
SHELL_LANGS = {"bash", "sh", "console", "shell"}
DOCS = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]


@dataclass
class Block:
    doc: str
    line: int  # 1-based line of the opening fence
    lang: str
    text: str


def shell_blocks(doc: str) -> list[Block]:
    out = []
    lines = (ROOT / doc).read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            if m.group(1) in SHELL_LANGS:
                out.append(Block(doc, i + 1, m.group(1), "\n".join(lines[i + 1 : j]) + "\n"))
            i = j + 1
        else:
            i += 1
    return out


def commands(text: str) -> list[list[str]]:
    """Lines grouped into commands: a line ending in ``\\`` or ``|`` continues."""
    cmds: list[list[str]] = []
    cur: list[str] = []
    for line in text.splitlines():
        cur.append(line)
        if not re.search(r"(\\|\|)\s*$", line):
            cmds.append(cur)
            cur = []
    if cur:
        cmds.append(cur)
    return cmds


# --- substitutions: (doc, a regex the command's first line must match, action, reason) ---
# action: "skip", or a function(first_line) -> replacement first line.
def _steps(line: str) -> str:
    if FULL or "--steps" in line:
        return line
    return re.sub(
        r"((?:python3 -m )?twinedge (?:run|compare)\b[^#]*?)(\s*(?:#.*)?)$",
        r"\1 --steps 10\2",
        line,
    )


SUBSTITUTIONS: list[tuple[str, str, object, str]] = [
    (
        "README.md",
        r"^python3 -m pip install -e \. && twinedge run$",
        lambda s: _steps("twinedge run"),
        "the tree under test is already importable",
    ),
    ("README.md", r"^\./scripts/test\.sh$", "skip", "runs the whole test suite"),
    (
        "README.md",
        r"^twinedge serve --db postgresql://user@host",
        "skip",
        "names the reader's own PostgreSQL and broker",
    ),
    (
        "docs/mqtt.md",
        r"^twinedge serve --mqtt 'mqtt://twinedge-service",
        "skip",
        "needs the reader's Mosquitto with TLS certificates and a password file",
    ),
    ("docs/api.md", r"^websocat ", "skip", "an endless WebSocket stream; websocat not required"),
    (
        "README.md",
        r"^twinedge run city --placement greedy,optimal",
        lambda s: s if FULL else _steps(s.replace("run city ", "run city-small ", 1)),
        "optimal on the built-in city takes minutes",
    ),
    (
        "docs/benchmarks.md",
        r"^python benchmarks/bench_ledger\.py",
        lambda s: (
            s
            if FULL
            else re.sub(
                r"(\.py(?: --quick)?)", r"\1 --entries 2000 --batch 500 --samples 20", s, count=1
            )
        ),
        "the full run builds two 1,000,000-entry logs",
    ),
    (
        "docs/gym.md",
        r"^python3 gym_baseline\.py",
        lambda s: (
            s
            if FULL
            else s.replace(
                "gym_baseline.py",
                "gym_baseline.py --iterations 2 --population 4 --eval-seeds 0,1 --eval-steps 10",
                1,
            )
        ),
        "the full training takes about half a minute",
    ),
    (
        "docs/api.md",
        r"^curl -sN \$TE/api/2/events",
        lambda s: s.replace("curl -sN", "curl --max-time 3 -sN", 1) + " || [ $? -eq 28 ]",
        "an endless event stream",
    ),
]
if shutil.which("mosquitto_pub") is None:
    SUBSTITUTIONS.append(
        ("docs/mqtt.md", r"^mosquitto_pub ", "skip", "mosquitto_pub not installed")
    )
if importlib.util.find_spec("sumo") is None and not os.environ.get("SUMO_HOME"):
    for pattern in (r"^twinedge trace sumo ", r"^twinedge run examples/sumo-grid\.yaml"):
        SUBSTITUTIONS.append(("docs/scenario.md", pattern, "skip", "Eclipse SUMO not installed"))
if not (DATASETS / "ifogsim2-melbourne" / "edgeResources-melbCBD.csv").is_file():
    for pattern in (r"^twinedge scenario show examples/ifogsim", r"^twinedge run examples/ifogsim"):
        SUBSTITUTIONS.append(
            ("docs/scenario.md", pattern, "skip", "iFogSim2 dataset absent (TWINEDGE_DATASETS)")
        )

STATUS_CLAIM = re.compile(r"^#\s*([1-5]\d\d)(?:[\s,]|$)")


def build_script(doc: str) -> tuple[str, dict[int, int], list[str]]:
    """The bash script of a document, its status claims {claim id: status}, the skips."""
    claims: dict[int, int] = {}
    skipped: list[str] = []
    used: set[int] = set()
    out = []
    for block in shell_blocks(doc):
        out.append(f"# ---- {doc}:{block.line} ({block.lang})")
        cmds = commands(block.text)
        for k, cmd in enumerate(cmds):
            first = cmd[0]
            if doc in ("docs/api.md", "docs/mqtt.md", "README.md"):
                cmd = [ln.replace("127.0.0.1:8080", "127.0.0.1:$TE_PORT") for ln in cmd]
                cmd = [ln.replace("-p 1883 ", "-p $TE_MQTT_PORT ") for ln in cmd]
            if doc == "docs/live.md":  # it starts its own servers: on free ports
                cmd = [ln.replace("127.0.0.1:8090", "127.0.0.1:$TE_PORT") for ln in cmd]
                cmd = [ln.replace("--port 8090", "--port $TE_PORT") for ln in cmd]
                cmd = [ln.replace("--mqtt-port 1890", "--mqtt-port $TE_MQTT_PORT") for ln in cmd]
                cmd = [ln.replace("127.0.0.1:8091", "127.0.0.1:$TE_PORT2") for ln in cmd]
                cmd = [ln.replace("--port 8091", "--port $TE_PORT2") for ln in cmd]
                cmd = [ln.replace("--mqtt-port 1891", "--mqtt-port $TE_MQTT_PORT2") for ln in cmd]
                cmd = [ln.replace("127.0.0.1:1891", "127.0.0.1:$TE_MQTT_PORT2") for ln in cmd]
            for n, (d, pattern, action, reason) in enumerate(SUBSTITUTIONS):
                if d == doc and re.search(pattern, first.strip()):
                    used.add(n)
                    if action == "skip":
                        skipped.append(f"{first.strip()}  ({reason})")
                        cmd = ["# skipped: " + ln for ln in cmd]
                    else:
                        cmd = [action(cmd[0]), *cmd[1:]]
                    break
            else:
                if re.match(r"^twinedge serve\b", first.strip()) and doc != "docs/live.md":
                    cmd = [re.sub(r"^twinedge serve", "serve_briefly", cmd[0]), *cmd[1:]]
                elif re.match(r"^(python3 -m )?twinedge (run|compare)\b", first.strip()):
                    cmd = [_steps(cmd[0]), *cmd[1:]]
            # a status claim: trailing comment of the last line, or the next line
            last = cmd[-1]
            claim = None
            m = re.search(r"\s#\s*([1-5]\d\d)(?:\s|$)", last)
            if m:
                claim = int(m.group(1))
            elif k + 1 < len(cmds):
                m = STATUS_CLAIM.match(cmds[k + 1][0].strip())
                if m:
                    claim = int(m.group(1))
            if claim and re.match(r"^curl\b", cmd[0].strip()):
                cid = len(claims) + 1
                claims[cid] = claim
                cmd = [f"TE_CLAIM={cid} {cmd[0]}", *cmd[1:]]
            out.extend(cmd)
    missing = [s[1] for n, s in enumerate(SUBSTITUTIONS) if s[0] == doc and n not in used]
    assert not missing, f"substitutions that no longer match {doc}: {missing}"
    return "\n".join(out) + "\n", claims, skipped


PRELUDE = r"""
set -euo pipefail
trap 'echo "@@failed (status $?) at: $BASH_COMMAND" >&2' ERR
curl() {  # the documented curl, plus the status code written to a log for the claims
  command curl -w "%{stderr}@@status ${TE_CLAIM:-0} %{http_code}\n" "$@" 2>>"$TE_STATUS_LOG"
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
serve_briefly() {  # a documented `twinedge serve ...`, run until healthy, then SIGINT
  local args=() d hp mp pid i
  while [ $# -gt 0 ]; do
    case "$1" in
      --port|--mqtt-port|--data-dir) shift 2 ;;
      *) args+=("$1"); shift ;;
    esac
  done
  d=$(mktemp -d); hp=$(free_port); mp=$(free_port)
  twinedge serve "${args[@]}" --port "$hp" --mqtt-port "$mp" --data-dir "$d/data" >"$d/log" 2>&1 &
  pid=$!
  for i in $(seq 150); do
    command curl -sf -o /dev/null "http://127.0.0.1:$hp/healthz" && break
    kill -0 "$pid" 2>/dev/null || { cat "$d/log" >&2; return 1; }
    sleep 0.2
  done
  command curl -sf -o /dev/null "http://127.0.0.1:$hp/healthz" || { cat "$d/log" >&2; return 1; }
  kill -INT "$pid"
  wait "$pid" || { echo "twinedge serve ${args[*]} exited $?" >&2; cat "$d/log" >&2; return 1; }
  echo "@@served ${args[*]}"
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    for example in (tmp_path / "examples").glob("*.yaml"):  # EUA and iFogSim2 data
        example.write_text(example.read_text().replace("../../shared/datasets", str(DATASETS)))
    (tmp_path / "benchmarks").symlink_to(ROOT / "benchmarks")
    return tmp_path


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TE" and not k.startswith("TE_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    env["TE_STATUS_LOG"] = str(tmp_path / "status.log")
    env.update(extra)
    return env


#: a guard against a hung command, not a speed limit: a doc's commands take a minute or
#: two on a quiet 2-core machine and several times that on a busy one
DOC_TIMEOUT_S = 1200.0


def run_doc(doc: str, cwd: Path, env: dict[str, str], timeout: float = DOC_TIMEOUT_S):
    script, claims, skipped = build_script(doc)
    (cwd / "doc-script.sh").write_text(PRELUDE + script)
    p = subprocess.run(
        ["bash", str(cwd / "doc-script.sh")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    log = Path(env["TE_STATUS_LOG"])
    statuses = log.read_text() if log.exists() else ""
    report = (
        f"--- script\n{script}\n--- stdout (tail)\n{p.stdout[-6000:]}\n"
        f"--- stderr (tail)\n{p.stderr[-4000:]}\n--- statuses\n{statuses}"
    )
    assert p.returncode == 0, report
    got = {}
    for m in re.finditer(r"@@status (\d+) (\d+)", statuses):
        if int(m.group(1)):
            got[int(m.group(1))] = int(m.group(2))
    bad = {c: (want, got.get(c)) for c, want in claims.items() if got.get(c) != want}
    assert not bad, f"status claims (claim: (documented, got)): {bad}\n{report}"
    print(report)  # shown with -rP
    return p, skipped


# --- the server api.md and mqtt.md assume ------------------------------------------------


def http(method: str, url: str, token: str, body=None) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url, method=method, data=None if body is None else json.dumps(body).encode()
    )
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    def __init__(self, cwd: Path, env: dict[str, str]):
        self.port, self.mqtt_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(cwd / "serve.log", "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twinedge",
                "serve",
                "--port",
                str(self.port),
                "--mqtt-port",
                str(self.mqtt_port),
                "--data-dir",
                "twinedge-data",
            ],
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, (cwd / "serve.log").read_text()
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "twinedge serve did not become healthy"
            time.sleep(0.2)
        self.token_file = cwd / "twinedge-data" / "admin.token"
        self.admin = self.token_file.read_text().strip()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def server(tmp_path):
    cwd = workdir(tmp_path)
    s = Server(cwd, env_for(tmp_path))
    try:
        yield s
    finally:
        code = s.stop()
    assert code == 0, f"twinedge serve exited {code}\n{(cwd / 'serve.log').read_text()[-3000:]}"


def served_env(tmp_path: Path, s: Server) -> dict[str, str]:
    return env_for(tmp_path, TE_PORT=str(s.port), TE_MQTT_PORT=str(s.mqtt_port))


# --- the documents ---------------------------------------------------------------------


def test_every_document_with_shell_blocks_is_covered():
    with_blocks = {d for d in DOCS if shell_blocks(d)}
    assert with_blocks <= COVERED, f"documents whose commands no test runs: {with_blocks - COVERED}"


COVERED = {
    "README.md",
    "docs/api.md",
    "docs/mqtt.md",
    "docs/ledger.md",
    "docs/policies.md",
    "docs/scenario.md",
    "docs/benchmarks.md",
    "docs/experiments.md",
    "docs/gym.md",
    "docs/live.md",
    "docs/devices.md",  # run by tests/devices/test_devices_docs.py
    "docs/carbon.md",  # run by tests/carbon/test_carbon_docs.py
    "docs/market.md",  # run by tests/market/test_market_docs.py
    "docs/offload.md",
    "docs/xr.md",  # run by tests/xr/test_xr_docs.py
    "docs/privacy.md",  # run by tests/privacy/test_privacy_docs.py
    "docs/fl.md",  # run by tests/fl/test_fl_docs.py
    "docs/attention.md",  # run by tests/attention/test_attention_docs.py
    "docs/sync.md",  # run by tests/sync/test_sync_docs.py
}


def doc_block(doc: str, lang: str, starts: str) -> str:
    """The text of the first ```lang block of doc that starts with `starts`."""
    for m in re.finditer(rf"^```{lang}\n(.*?)^```", (ROOT / doc).read_text(), re.S | re.M):
        if m.group(1).startswith(starts):
            return m.group(1)
    raise AssertionError(f"no ```{lang} block starting with {starts!r} in {doc}")


def test_readme_commands(tmp_path):
    cwd = workdir(tmp_path)
    # The README's "Using it" names the reader's own files; the test writes them from the
    # docs: my-scenario.yaml = docs/scenario.md's complete example, instance.json =
    # docs/placement.md's example instance, mypkg.policies:my_placement =
    # docs/policies.md's cheapest_with_room (examples/mypolicies.py), in a package of the
    # current folder (found there as `python -m` would, without PYTHONPATH).
    (cwd / "my-scenario.yaml").write_text(doc_block("docs/scenario.md", "yaml", "version: 1"))
    (cwd / "instance.json").write_text(doc_block("docs/placement.md", "json", '{\n  "latency_ms"'))
    (cwd / "mypkg").mkdir()
    (cwd / "mypkg" / "__init__.py").write_text("")
    (cwd / "mypkg" / "policies.py").write_text(
        (ROOT / "examples" / "mypolicies.py").read_text()
        + "\n\nmy_placement = cheapest_with_room\n"
    )
    env = env_for(tmp_path)
    assert env["PYTHONPATH"] == str(ROOT / "src")
    p, skipped = run_doc("README.md", cwd, env)
    assert '"status": "optimal"' in p.stdout, p.stdout[-3000:]
    # the command line: the version, completion registered by the eval, validate --json
    assert re.search(r"^twinedge \d+\.\d+\.\d+\S*$", p.stdout, re.M), p.stdout[-3000:]
    assert '"ok": true' in p.stdout and '"problems": []' in p.stdout
    # "twinedge run city --ledger out/ledger ... then: twinedge ledger verify <path>": the
    # path is one of the run's ledgers, and the folder above it names them when given
    verified = re.findall(r"^twinedge ledger verify (\S+)", (ROOT / "README.md").read_text(), re.M)
    assert verified == ["out/ledger/greedy+threshold"], verified
    assert re.search(r"^ok: city-net: \d+ entries, checkpoint at size \d+ verified", p.stdout, re.M)
    parent = subprocess.run(
        ["twinedge", "ledger", "verify", "out/ledger"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert parent.returncode == 2, parent.stderr
    assert "holds 4 ledger dirs" in parent.stderr and "greedy+threshold" in parent.stderr
    assert "ledger init" not in parent.stderr, parent.stderr
    # "The first command ... writes out/summary.json, out/timeseries.csv, out/timing.json
    # and out/report.html"
    for f in ("summary.json", "timeseries.csv", "timing.json", "report.html"):
        assert (cwd / "out" / f).is_file(), f
    # serve, serve --network (host processes), serve --network --hosts none
    assert p.stdout.count("@@served") == 3
    assert len(skipped) == 2, skipped


def test_api_commands(server, tmp_path):
    # the document's serve.yaml ("every key optional; these are the defaults")
    (tmp_path / "serve.yaml").write_text(doc_block("docs/api.md", "yaml", "host: 127.0.0.1"))
    # "On first start the service admin token is written to twinedge-data/admin.token (mode 0600)"
    assert stat.S_IMODE(server.token_file.stat().st_mode) == 0o600
    p, skipped = run_doc("docs/api.md", tmp_path, served_env(tmp_path, server))
    assert "retry: 2000" in p.stdout
    assert p.stdout.count("@@served") == 2
    assert len(skipped) == 1, skipped


def test_live_commands(tmp_path):
    """live.md starts its own `twinedge serve --network ... &` and stops it itself."""
    cwd = workdir(tmp_path)
    ports = {k: str(free_port()) for k in ("TE_PORT", "TE_MQTT_PORT", "TE_PORT2", "TE_MQTT_PORT2")}
    p, skipped = run_doc("docs/live.md", cwd, env_for(tmp_path, **ports))
    assert not skipped
    assert '"_host":"edge-1"' in p.stdout
    status = json.loads(next(ln for ln in p.stdout.splitlines() if ln.startswith('{"network"')))
    assert {h["id"]: h["twins"] for h in status["hosts"]} == {"edge-1": 0, "edge-2": 1}
    # the walkthrough's default: host processes, and the move was a live migration
    assert (status["edge"]["host_processes"], status["edge"]["live_migrations"]) == (2, 1)
    assert 'twinedge_host_twins{host="edge-2"} 1.0' in p.stdout
    hosts = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith('{"network"')][-1])
    assert hosts["edge"]["host_processes"] == 2


def test_mqtt_commands(server, tmp_path):
    # the document makes its thing fleet:car-7 and sets its device password itself
    code, _ = http("GET", f"{server.url}/api/2/things/fleet:car-7", server.admin)
    assert code == 404
    _, skipped = run_doc("docs/mqtt.md", tmp_path, served_env(tmp_path, server))
    assert len(skipped) == (1 if shutil.which("mosquitto_pub") else 2), skipped
    if shutil.which("mosquitto_pub"):
        # "Each accepted report is one new revision of the twin" (QoS 1: committed when acknowledged)
        code, body = http(
            "GET",
            f"{server.url}/api/2/things/fleet:car-7/features/battery/properties",
            server.admin,
        )
        assert code == 200 and json.loads(body) == {"level": 71, "temp_c": 24.5}, body
    # the device of the ```python block: it answers commands and reports desired state back
    device = doc_block("docs/mqtt.md", "python", "import asyncio, json, aiomqtt")
    assert device.count('"127.0.0.1", 1883') == 1
    (tmp_path / "device.py").write_text(
        device.replace('"127.0.0.1", 1883', f'"127.0.0.1", {server.mqtt_port}')
    )
    proc = subprocess.Popen(
        [sys.executable, "device.py"], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        thing = f"{server.url}/api/2/things/fleet:car-7"
        deadline = time.monotonic() + 120  # a loaded 2-core machine starts slowly
        while True:  # until the device is connected and answers
            code, body = http(
                "POST", thing + "/inbox/messages/reboot?timeout=2", server.admin, {"delay_s": 5}
            )
            if code == 200 or time.monotonic() > deadline:
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.3)
        assert (code, json.loads(body)) == (200, {"done": "reboot"}), body
        code, body = http(
            "PATCH", thing + "/features/battery/desiredProperties", server.admin, {"mode": "eco"}
        )
        assert code == 204, body
        deadline = time.monotonic() + 15
        while True:  # the device applies it and reports it: the twin is in sync
            code, body = http("GET", thing + "/delta", server.admin)
            if json.loads(body).get("inSync") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert code == 200 and json.loads(body)["inSync"] is True, body
    finally:
        proc.kill()
        proc.wait()


def device_passwords(doc: str) -> set[str]:
    """Every device password the code blocks of a document set or log in with."""
    code = re.findall(r"^```\w*\n(.*?)^```", (ROOT / doc).read_text(), re.S | re.M)
    text = "\n".join(code)
    return set(
        re.findall(r'"password": "([^"]+)"', text)
        + re.findall(r"-P '([^']+)'", text)
        + re.findall(r'password="([^"]+)"', text)
    )


def test_api_and_mqtt_docs_use_one_device_password():
    """A reader who sets the password of api.md logs the device of mqtt.md in with it."""
    api, mqtt = device_passwords("docs/api.md"), device_passwords("docs/mqtt.md")
    assert len(api) == 1 and api == mqtt, (api, mqtt)


def test_ledger_commands(tmp_path):
    p, _ = run_doc("docs/ledger.md", workdir(tmp_path), env_for(tmp_path))
    out = p.stdout + p.stderr
    assert "ok: 2 logs" in out, out
    # the replay: verify "FAILED: metro: ... replay, exit 1", audit "replay: twinedge/metro: ..., exit 1"
    assert re.search(r"FAILED: metro: .*replay", out), out
    assert re.search(r"^replay: twinedge/metro", out, re.M), out
    assert p.stdout.count("exit 1") == 2, out


def test_policies_commands(tmp_path):
    cwd = workdir(tmp_path)
    # the document has the reader write mypolicies.py (tests/test_docs_examples.py keeps
    # examples/mypolicies.py equal to its blocks)
    shutil.copy(cwd / "examples" / "mypolicies.py", cwd / "mypolicies.py")
    p, _ = run_doc("docs/policies.md", cwd, env_for(tmp_path))
    assert "mypolicies:cheapest_with_room" in p.stdout


def test_offload_commands(tmp_path):
    cwd = workdir(tmp_path)
    p, _ = run_doc("docs/offload.md", cwd, env_for(tmp_path))
    assert "task hit" in p.stdout
    doc = json.loads((cwd / "out-offload" / "summary.json").read_text())
    (run,) = doc["policies"].values()
    assert run["offload_tasks"] > 0
    bench = json.loads(p.stdout[p.stdout.index('{\n  "machine"') :])
    assert bench["optimal"]["status"] == "optimal"


def test_experiments_commands(tmp_path):
    cwd = workdir(tmp_path)
    p, _ = run_doc("docs/experiments.md", cwd, env_for(tmp_path))
    assert "mean ± 95 % CI across seeds" in p.stdout
    assert "greedy+utility (utility.beta=0.3)" in p.stdout
    assert "greedy+mypolicies:FollowWithMargin" in p.stdout  # a class's parameter swept
    assert "(mypolicies:FollowWithMargin.margin_ms=2.0)" in p.stdout
    doc = (cwd / "sweep" / "summary.json").read_text()
    assert '"kept": 0' in doc and '"ran": 8' in doc


def test_gym_commands(tmp_path):
    cwd = workdir(tmp_path)
    p, _ = run_doc("docs/gym.md", cwd, env_for(tmp_path))
    assert "greedy+gym_baseline:Trained" in p.stdout
    assert (cwd / "examples" / "gym-policy.json").is_file()


@pytest.mark.slow  # ~45 s: the EUA scenario runs optimal (20 s time limit) twice
def test_scenario_commands(tmp_path):
    if not (DATASETS / "eua" / "site-optus-melbCBD.csv").is_file():
        pytest.skip(
            f"EUA dataset not found at {DATASETS / 'eua'} (set TWINEDGE_DATASETS to its parent folder)"
        )
    cwd = workdir(tmp_path)
    _, skipped = run_doc("docs/scenario.md", cwd, env_for(tmp_path))
    assert (cwd / "out" / "eua" / "summary.json").is_file()
    for name in ("sumo", "ifogsim"):  # unless the run was skipped, with its reason
        ran = (cwd / "out" / name / "summary.json").is_file()
        assert ran != any(f"examples/{name}" in s for s in skipped), (name, skipped)


def test_benchmarks_commands(tmp_path):
    p, _ = run_doc("docs/benchmarks.md", workdir(tmp_path), env_for(tmp_path))
    assert p.stdout.count('"benchmark": "ledger"') == 2, p.stdout[-2000:]


def test_inline_benchmark_commands_name_real_options():
    found = {}
    for doc in DOCS:
        for m in re.finditer(
            r"`python (benchmarks/bench_\w+\.py)([^`]*)`", (ROOT / doc).read_text()
        ):
            found.setdefault(m.group(1), set()).update(re.findall(r"--[\w-]+", m.group(2)))
    assert len(found) >= 5, found
    for script, options in found.items():
        assert (ROOT / script).is_file(), script
        p = subprocess.run(
            [sys.executable, str(ROOT / script), "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
        for opt in options:
            assert opt in p.stdout, f"{script} --help does not list {opt}"


# --- console transcripts: ``$ command`` and its output in a plain ``` block ---------------


def transcripts() -> list[tuple[str, str, list[str]]]:
    out = []
    for doc in DOCS:
        for m in re.finditer(r"^```\n(\$ .*?)^```", (ROOT / doc).read_text(), re.S | re.M):
            lines = m.group(1).splitlines()
            out.append((doc, lines[0][2:], lines[1:]))
    return out


def test_console_transcripts_show_what_the_commands_print(tmp_path):
    """Each ``$ twinedge ...`` transcript, on a file made as its text describes, prints
    the documented lines (only this machine's memory size is left out of the comparison)."""
    example = yaml.safe_load(doc_block("docs/scenario.md", "yaml", "version: 1"))
    bad = json.loads(json.dumps(example))
    bad["infrastructure"]["nodes"][1]["cpu_ghz"] = -3
    bad["entities"][0]["twin"]["latency_req_ms"] = "fast"
    shared = json.loads(json.dumps(example))
    shared["policies"]["placement"] = "os:system"
    big = tiny_scenario()
    big["entities"][0]["count"] = 1_000_000_000
    serve = doc_block("docs/api.md", "yaml", "host: 127.0.0.1").replace(
        "batch_max: 2000 ", "batch_max: abc  "
    )
    assert "batch_max: abc" in serve
    files = {"bad.yaml": bad, "shared.yaml": shared, "big.yaml": big, "serve.yaml": serve}
    for name, content in files.items():
        (tmp_path / name).write_text(
            content if isinstance(content, str) else yaml.safe_dump(content)
        )
    found = transcripts()
    assert len(found) == 5, found
    for doc, command, expected in found:
        p = subprocess.run(
            command,
            shell=True,
            cwd=tmp_path,
            env=env_for(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        # the serve configuration: "the exit status is 2"; validate: one line per problem
        assert p.returncode == (2 if "serve" in command else 1) or (
            "serve" not in command and p.returncode != 0
        ), f"{doc}: {command} exited {p.returncode}"
        got = (p.stdout + p.stderr).splitlines()
        mask = re.compile(r"this machine has [\d.]+ [KMGT]B")
        assert [mask.sub("...", x) for x in got] == [mask.sub("...", x) for x in expected], (
            f"{doc}: {command}"
        )
