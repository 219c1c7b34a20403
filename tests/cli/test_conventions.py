"""The command-line conventions every sub-command keeps: ``--version``, shell completion
from the command's own parser, ``--json`` (one document on stdout, nothing else there),
progress lines on stderr when it is not a terminal, ``NO_COLOR``, policy modules found in
the current folder.

The real command runs in a subprocess where the process matters (its streams, a
terminal or not, the environment, a shell's completion); ``main(argv)`` in this process
otherwise.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
import typer
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import tiny_scenario
from twinedge.cli import app, main
from twinedge.errors import Problem, ScenarioError
from twinedge.progress import ProgressLines, duration

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

# a progress line as twinedge.progress writes it
PROGRESS = re.compile(
    r"^twinedge (?:run|compare): (\d+)/(\d+) (?:steps|runs)(?: \((\d+)%\) after [\d a-z]+?"
    r"(?:, about [\d a-z]+? left)?(?: \(.+\))?| done in [\d a-z]+)$"
)


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "CI")}
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    e.pop("TWINEDGE_PROGRESS_EVERY_S", None)
    e.update(extra)
    return e


def twinedge(*args, cwd=None, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twinedge", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env(**extra),
        timeout=300,
    )


def run_main(capsys, *argv) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit status, stdout, stderr)."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def scenario_file(tmp_path: Path, name: str = "s.yaml", **over) -> Path:
    f = tmp_path / name
    f.write_text(yaml.safe_dump(tiny_scenario(**over)))
    return f


# --- --version -------------------------------------------------------------------------


def test_version_is_the_package_version_and_exits_0(capsys):
    assert installed_version("twinedge") == VERSION
    p = twinedge("--version")
    assert (p.returncode, p.stdout, p.stderr) == (0, f"twinedge {VERSION}\n", "")
    # before any sub-command is needed, and ahead of other arguments
    assert run_main(capsys, "--version") == (0, f"twinedge {VERSION}\n", "")
    assert run_main(capsys, "--version", "run", "--steps", "nonsense")[:2] == (
        0,
        f"twinedge {VERSION}\n",
    )


# --- shell completion ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory) -> Path:
    """A ``twinedge`` on PATH that is this tree's (what a completion script calls)."""
    d = tmp_path_factory.mktemp("bin")
    exe = d / "twinedge"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} -m twinedge "$@"\n')
    exe.chmod(0o755)
    return d


def shell_env(bin_dir: Path) -> dict[str, str]:
    return env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def top_level_commands() -> set[str]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return {name for name, cmd in group.commands.items() if not cmd.hidden}


BASH_CASES = [
    # (words on the line, the word completed, the candidates), worked out from the commands
    (["twinedge", "co"], 1, ["compare", "completion"]),
    (["twinedge", "run", "--pl"], 2, ["--placement"]),
    (["twinedge", "ledger", "ve"], 2, ["verify"]),
    (["twinedge", "completion", ""], 2, ["bash", "zsh", "fish"]),
    (["twinedge", "scenario", "validate", "--"], 3, ["--json", "--help"]),
]


def test_bash_completion_is_generated_from_the_parser(bin_dir, tmp_path):
    script = ['set -e; eval "$(twinedge completion bash)"', "complete -p twinedge"]
    for words, cword, _ in [*BASH_CASES, (["twinedge", ""], 1, None)]:
        quoted = " ".join(f"'{w}'" for w in words)
        script += [
            f"COMP_WORDS=({quoted}); COMP_CWORD={cword}; _twinedge_completion twinedge",
            'echo "@@ ${COMPREPLY[*]}"',
        ]
    (tmp_path / "c.sh").write_text("\n".join(script) + "\n")
    p = subprocess.run(
        ["bash", str(tmp_path / "c.sh")],
        capture_output=True,
        text=True,
        env=shell_env(bin_dir),
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "complete -o default -F _twinedge_completion twinedge" in p.stdout
    got = [ln[3:].split() for ln in p.stdout.splitlines() if ln.startswith("@@ ")]
    assert got[:-1] == [want for _, _, want in BASH_CASES]
    # every command of the parser, and nothing else: the script cannot go stale
    assert set(got[-1]) == top_level_commands() and "completion" in got[-1]


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completion_is_generated_from_the_parser(bin_dir):
    p = subprocess.run(
        [
            "fish",
            "-c",
            'twinedge completion fish | source; complete -C "twinedge co"; echo @@; '
            'complete -C "twinedge run --mi"',
        ],
        capture_output=True,
        text=True,
        env=shell_env(bin_dir),
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    first, second = p.stdout.split("@@\n")
    assert [ln.split("\t")[0] for ln in first.splitlines()] == ["compare", "completion"]
    assert [ln.split("\t")[0] for ln in second.splitlines()] == ["--migration"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completion_registers_and_answers(bin_dir):
    # zsh completes only in its line editor; what can run here: the script loads and
    # registers its function, and the function's question gets the candidates
    p = subprocess.run(
        [
            "zsh",
            "-f",
            "-c",
            'autoload -U compinit && compinit -u && eval "$(twinedge completion zsh)" && '
            'echo "@@ ${_comps[twinedge]}" && '
            '_TYPER_COMPLETE_ARGS="twinedge co" _TWINEDGE_COMPLETE=complete_zsh twinedge',
        ],
        capture_output=True,
        text=True,
        env=shell_env(bin_dir),
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "@@ _twinedge_completion" in p.stdout
    assert re.findall(r'"(\w+)":"', p.stdout) == ["compare", "completion"], p.stdout


def test_completion_of_an_unknown_shell_is_a_usage_error(capsys):
    code, out, err = run_main(capsys, "completion", "tcsh")
    assert code == 2 and out == ""
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in err


# --- --json ----------------------------------------------------------------------------


def test_validate_json_gives_every_problem_as_an_object(tmp_path, capsys):
    sc = tiny_scenario()
    sc["infrastructure"]["nodes"][1]["cpu_ghz"] = -3
    sc["entities"][0]["twin"]["latency_req_ms"] = "fast"
    sc["run"]["steps"] = None
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(sc))
    code, out, err = run_main(capsys, "scenario", "validate", bad, "--json")
    assert code == 2 and err == ""
    doc = json.loads(out)
    assert doc["file"] == str(bad) and doc["ok"] is False
    got = {p["field"]: p for p in doc["problems"]}
    assert set(got) == {
        "infrastructure.nodes[1].cpu_ghz",
        "entities[0].twin.latency_req_ms",
        "run.steps",
    }
    assert all(set(p) == {"file", "field", "value", "expected", "message"} for p in got.values())
    assert all(p["file"] == str(bad) for p in got.values())
    cpu = got["infrastructure.nodes[1].cpu_ghz"]
    assert cpu["value"] == -3 and cpu["expected"] == "Input should be greater than or equal to 0"
    assert got["entities[0].twin.latency_req_ms"]["value"] == "fast"
    assert got["run.steps"]["value"] is None  # null in the file
    # the same problems, one line each, without --json
    code, out, err = run_main(capsys, "scenario", "validate", bad)
    assert code == 2 and out == ""
    assert err.splitlines() == [f"error: {p['message']}" for p in doc["problems"]]


def test_validate_json_names_the_file_of_problems_found_after_parsing(tmp_path, capsys):
    # no access point: found when the world is built, the message names no file itself
    sc = tiny_scenario()
    sc["infrastructure"]["nodes"] = sc["infrastructure"]["nodes"][1:]
    f = scenario_file(tmp_path, "noap.yaml")
    f.write_text(yaml.safe_dump(sc))
    code, out, _ = run_main(capsys, "scenario", "validate", f, "--json")
    assert code == 2
    (problem,) = json.loads(out)["problems"]
    assert problem["file"] == str(f) and problem["field"] == "infrastructure"
    assert problem["message"].startswith("infrastructure: no access points")
    # a missing file: what is expected instead
    code, out, _ = run_main(capsys, "scenario", "validate", tmp_path / "nope.yaml", "--json")
    (problem,) = json.loads(out)["problems"]
    assert code == 2 and problem["file"] == str(tmp_path / "nope.yaml")
    assert problem["expected"] == "a scenario file, or a built-in scenario: city, city-small"


def test_validate_json_of_a_good_file(tmp_path, capsys):
    f = scenario_file(tmp_path)
    code, out, err = run_main(capsys, "scenario", "validate", f, "--json")
    # tiny: ap, edge, region = 3 nodes, 2 of them hosts; 1 entity; 3 steps
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "file": str(f),
        "ok": True,
        "nodes": 3,
        "hosts": 2,
        "entities": 1,
        "steps": 3,
        "problems": [],
    }


def test_run_json_is_the_only_thing_on_stdout(tmp_path):
    f = scenario_file(tmp_path)
    out_dir = tmp_path / "o"
    p = twinedge(
        "run", f, "--out", out_dir, "--migration", "never,threshold", "--json", "--ledger",
        tmp_path / "ledger", "--no-report",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)  # the whole of stdout is one JSON document
    summary = json.loads((out_dir / "summary.json").read_text())
    assert set(doc["policies"]) == {"nearest+never", "nearest+threshold"}
    for label, row in doc["policies"].items():
        assert row["wall_s"] >= 0
        assert {k: v for k, v in row.items() if k != "wall_s"} == summary["policies"][label]
    assert (doc["scenario"], doc["seed"], doc["steps"]) == ("tiny", 1, 3)
    assert doc["files"] == {
        "summary": str(out_dir / "summary.json"),
        "timeseries": str(out_dir / "timeseries.csv"),
        "timing": str(out_dir / "timing.json"),
    }
    assert doc["ledgers"] == [
        str(tmp_path / "ledger" / "nearest+never"),
        str(tmp_path / "ledger" / "nearest+threshold"),
    ]


def test_json_errors_go_to_stderr_with_a_non_zero_exit(tmp_path):
    for command in ("run", "compare"):
        p = twinedge(command, tmp_path / "nope.yaml", "--json", cwd=tmp_path)
        assert p.returncode == 2 and p.stdout == ""
        assert (
            p.stderr
            == f"error: {tmp_path / 'nope.yaml'}: no such file (built-in scenarios: city, city-small)\n"
        )


# --- Problem: the parts of a problem line ----------------------------------------------


@pytest.mark.parametrize(
    "line, file, parts",
    [
        (
            "s.yaml: run.steps: got 0; expected Input should be greater than or equal to 1",
            None,
            ("s.yaml", "run.steps", 0, "Input should be greater than or equal to 1"),
        ),
        (
            "builtin:city: entities[0].twin: got missing; expected Field required",
            None,
            ("builtin:city", "entities[0].twin", None, "Field required"),
        ),
        (
            "s.yaml: run.steps: got 1000000000000; a run would need about 9 TB of memory; "
            "expected a smaller scenario",
            None,
            (
                "s.yaml",
                "run.steps",
                1000000000000,
                "a smaller scenario (a run would need about 9 TB of memory)",
            ),
        ),
        (
            "--placement: unknown placement policy 'x'; known: nearest, greedy",
            "s.yaml",
            ("s.yaml", "--placement", None, None),
        ),
        (
            "infrastructure.nodes: duplicate node ids ['a']",
            "s.yaml",
            ("s.yaml", "infrastructure.nodes", None, None),
        ),
        ("something went wrong", "s.yaml", ("s.yaml", None, None, None)),
        ("/d/sites.csv: cannot read the CSV file: bad", None, ("/d/sites.csv", None, None, None)),
        (
            "/d/sites.csv: line 3: got 'x','1'; expected two numbers",
            None,
            ("/d/sites.csv", "line 3", ("x", "1"), "two numbers"),
        ),
    ],
)
def test_problem_parse(line, file, parts):
    p = Problem.parse(line, file)
    assert (p.file, p.field, p.value, p.expected) == parts and p.message == str(p) == line


FIELDS = st.from_regex(r"\A[a-z_]{1,8}(\[[0-9]{1,2}\])?(\.[a-z_]{1,8}(\[[0-9]\])?){0,3}\Z")
VALUES = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(st.characters(blacklist_characters=";", blacklist_categories=["Cs"]), max_size=20),
    st.lists(st.integers(), max_size=4),
)


@given(
    file=st.from_regex(r"\A[a-z0-9_/.-]{1,20}\.ya?ml\Z"),
    field=FIELDS,
    value=VALUES,
    expected=st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=40),
)
def test_problem_parse_recovers_what_a_line_was_made_of(file, field, value, expected):
    p = Problem.parse(f"{file}: {field}: got {value!r}; expected {expected}")
    assert (p.file, p.field, p.value, p.expected) == (file, field, value, expected)
    assert json.loads(json.dumps(p.to_json()))["value"] == value


def test_a_scenario_error_keeps_lines_and_parts():
    given_problem = Problem("a.yaml", "x", [1], "a number", "a.yaml: x: got [1]; expected a number")
    e = ScenarioError([given_problem, "b.yaml: y: got 'z'; expected a mapping"])
    assert e.problems == [given_problem.message, "b.yaml: y: got 'z'; expected a mapping"]
    assert e.details[0] is given_problem
    assert (e.details[1].file, e.details[1].field, e.details[1].value) == ("b.yaml", "y", "z")
    assert str(e) == "\n".join(e.problems)


# --- progress --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_come_at_most_every_interval_with_hand_computed_estimates():
    clock, out = Clock(), io.StringIO()
    p = ProgressLines(400, "steps", stream=out, every_s=5, clock=clock, prefix="twinedge run")
    for t, done in [(1, 10), (4.9, 40)]:
        clock.now = 100 + t
        p.update(done, "a+b: step 40/200")
    assert out.getvalue() == ""  # nothing within the first interval
    clock.now = 105.0
    p.update(50, "a+b: step 50/200")
    clock.now = 109.9
    p.update(99)  # 4.9 s after the last line
    clock.now = 112.0
    p.update(100, "a+b: step 100/200")
    clock.now = 112.5
    p.tick()
    clock.now = 117.0
    p.tick()  # a heartbeat: the last progress again, with the time grown
    clock.now = 300.0
    p.update(400, "c+d: step 200/200")
    p.finish()
    assert out.getvalue().splitlines() == [
        # 50 of 400 in 5 s: 350 left at 0.1 s each
        "twinedge run: 50/400 steps (12%) after 5 s, about 35 s left (a+b: step 50/200)",
        # 100 in 12 s: 300 left at 0.12 s each
        "twinedge run: 100/400 steps (25%) after 12 s, about 36 s left (a+b: step 100/200)",
        "twinedge run: 100/400 steps (25%) after 17 s, about 51 s left (a+b: step 100/200)",
        "twinedge run: 400/400 steps (100%) after 3 min 20 s (c+d: step 200/200)",
        "twinedge run: 400/400 steps done in 3 min 20 s",
    ]
    assert all(PROGRESS.match(line) for line in out.getvalue().splitlines())


def test_short_work_prints_no_progress_and_a_bad_interval_is_refused():
    clock, out = Clock(), io.StringIO()
    p = ProgressLines(10, "steps", stream=out, every_s=5, clock=clock)
    clock.now += 4.0
    p.update(10)
    p.finish()
    assert out.getvalue() == ""
    for bad in (0, -1):
        with pytest.raises(ValueError, match="every_s must be positive"):
            ProgressLines(10, "steps", stream=out, every_s=bad)


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0 s"), (59.4, "59 s"), (59.6, "1 min 0 s"), (324, "5 min 24 s"), (7380, "2 h 3 min")],
)
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_the_documented_progress_line_is_one_twinedge_writes():
    text = " ".join((ROOT / "README.md").read_text().split())
    m = re.search(r"`(twinedge run: [^`]+)`", text)
    assert m is not None and PROGRESS.match(m.group(1)), m


def test_a_run_in_a_log_prints_progress_lines_and_no_bar(tmp_path):
    f = scenario_file(tmp_path)
    args = ["run", f, "--steps", 4, "--migration", "never,threshold", "--out", tmp_path / "o"]
    # every update is due with this interval: a line per step of each run, then the end
    p = twinedge(*args, "--no-report", TWINEDGE_PROGRESS_EVERY_S="0.000001")
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert "\r" not in p.stderr and "\x1b" not in p.stderr
    assert all(PROGRESS.match(ln) for ln in lines), lines
    done = [int(PROGRESS.match(ln).group(1)) for ln in lines[:-1]]
    assert done == [1, 2, 3, 4, 5, 6, 7, 8]  # 2 runs x 4 steps, in order
    assert "(nearest+threshold: step 3/4)" in lines[6]
    assert lines[-1].startswith("twinedge run: 8/8 steps done in ")
    # --quiet: nothing; and a bad interval is one line, exit 2
    assert twinedge(*args, "-q", TWINEDGE_PROGRESS_EVERY_S="0.000001").stderr == ""
    p = twinedge(*args, TWINEDGE_PROGRESS_EVERY_S="soon")
    assert p.returncode == 2
    assert p.stderr == (
        "error: TWINEDGE_PROGRESS_EVERY_S: got 'soon'; expected a positive number of seconds\n"
    )


def test_parallel_runs_report_finished_runs_and_json_stays_alone_on_stdout(tmp_path):
    f = scenario_file(tmp_path)
    p = twinedge(
        "compare", f, "--placement", "nearest,greedy", "--steps", 2, "--workers", 2, "--json",
        TWINEDGE_PROGRESS_EVERY_S="0.000001",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert set(json.loads(p.stdout)["policies"]) == {"nearest+never", "greedy+never"}
    lines = p.stderr.splitlines()
    assert all(PROGRESS.match(ln) for ln in lines), lines
    assert any(ln.startswith("twinedge compare: 1/2 runs (50%)") for ln in lines), lines
    assert lines[-1].startswith("twinedge compare: 2/2 runs done in ")


# --- NO_COLOR --------------------------------------------------------------------------


def colour_codes(text: str) -> list[str]:
    """The SGR parameters of ``text`` that set a colour (30-49, 90-107)."""
    found = []
    for params in re.findall(r"\x1b\[([0-9;]*)m", text):
        for n in filter(None, params.split(";")):
            if 30 <= int(n) <= 49 or 90 <= int(n) <= 107:
                found.append(n)
    return found


def test_no_color_turns_colour_off():
    force = {"FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": "120"}
    coloured = twinedge("run", "--help", **force)
    assert coloured.returncode == 0 and colour_codes(coloured.stdout)  # the test can fail
    plain = twinedge("run", "--help", NO_COLOR="1", **force)
    assert plain.returncode == 0
    assert "--placement" in re.sub(r"\x1b\[[0-9;]*m", "", plain.stdout)
    assert colour_codes(plain.stdout) == []


# --- policy modules in the current folder ----------------------------------------------

POLICY = """
import numpy as np


def last_host(problem, rng):
    return np.full(problem.n_twins, problem.n_hosts - 1, dtype=np.int64)
"""


def test_a_policy_module_in_the_current_folder_is_found_without_pythonpath(tmp_path):
    """As the installed ``twinedge`` script runs: its own folder is on sys.path, the
    current one is not (unlike ``python -m``)."""
    launcher = tmp_path / "bin" / "twinedge-script.py"
    launcher.parent.mkdir()
    launcher.write_text(  # as pip writes it
        "import sys\nfrom twinedge.cli import main\n\nif __name__ == '__main__':\n    sys.exit(main())\n"
    )
    work = tmp_path / "work"
    (work / "mypkg").mkdir(parents=True)
    (work / "mypol.py").write_text(POLICY)
    (work / "mypkg" / "__init__.py").write_text("")
    (work / "mypkg" / "policies.py").write_text(POLICY)
    # twinedge's own imports never pick up a module of the current folder
    (work / "yaml.py").write_text("raise ImportError('the current folder shadowed PyYAML')\n")
    scenario_file(work)
    e = env(PYTHONPATH=str(ROOT / "src"))

    def run(*args):
        return subprocess.run(
            [sys.executable, str(launcher), *map(str, args)],
            capture_output=True,
            text=True,
            cwd=work,
            env=e,
            timeout=300,
        )

    p = run("compare", "s.yaml", "--placement", "nearest,mypol:last_host,mypkg.policies:last_host",
            "--json", "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)["policies"]
    assert set(got) == {"nearest+never", "mypol:last_host+never", "mypkg.policies:last_host+never"}
    # in worker processes too
    p = run(
        "compare",
        "s.yaml",
        "--placement",
        "nearest,mypol:last_host",
        "--workers",
        2,
        "--json",
        "-q",
    )
    assert p.returncode == 0, p.stderr
    assert set(json.loads(p.stdout)["policies"]) == {"nearest+never", "mypol:last_host+never"}
    # from another folder the module is not found: it is the current folder that counts
    p = subprocess.run(
        [sys.executable, str(launcher), "run", work / "s.yaml", "--placement", "mypol:last_host"],
        capture_output=True, text=True, cwd=tmp_path, env=e, timeout=300,
    )  # fmt: skip
    assert p.returncode == 2 and "cannot import module 'mypol'" in p.stderr, p.stderr
