"""A policy named by import path on the command line (``mypol:fn``) is the ``mypol.py`` of
the current folder, as ``python -m`` would find it: without PYTHONPATH, ahead of a module
of the same name elsewhere on the path, in worker processes too; a missing one is one
line naming where it was looked for.

The command runs as the installed ``twinedge`` script does: a launcher in its own folder
(that folder is on ``sys.path``, the current one is not), never ``python -m`` (which would
put the current folder on the path by itself, so the tests could not fail).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from twinedge.errors import PolicyError
from twinedge.orchestrator import as_policy
from twinedge.policies.registry import search_first, searched_first

ROOT = Path(__file__).resolve().parents[2]

# delegates to the built-in greedy through a module it imports only when called (which
# must be found then too, in a worker as well): its results must equal greedy's
MYPOL = """
def fn(problem, rng):
    import mypol_helper

    return mypol_helper.place(problem, rng)
"""
HELPER = """
from twinedge.policies.placement import GreedyPlacement


def place(problem, rng):
    return GreedyPlacement()(problem, rng)
"""


@pytest.fixture
def launcher(tmp_path: Path) -> Path:
    f = tmp_path / "bin" / "twinedge-script.py"
    f.parent.mkdir()
    f.write_text(  # as pip writes it
        "import sys\nfrom twinedge.cli import main\n\nif __name__ == '__main__':\n    sys.exit(main())\n"
    )
    return f


@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    (d / "mypol.py").write_text(MYPOL)
    (d / "mypol_helper.py").write_text(HELPER)
    return d


def run(launcher: Path, cwd: Path, *args, pythonpath: tuple[Path, ...] = (), **extra: str):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "CI")}
    env["PYTHONPATH"] = os.pathsep.join(map(str, (ROOT / "src", *pythonpath)))
    env.update(extra)
    return subprocess.run(
        [sys.executable, str(launcher), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


COMPARE = ("compare", "city-small", "--placement", "greedy,mypol:fn", "--steps", 5)


def same_as_greedy(stdout: str) -> dict[str, dict]:
    got = json.loads(stdout)["policies"]
    assert set(got) == {f"{p}+{m}" for p in ("greedy", "mypol:fn") for m in MIGRATIONS}
    for m in MIGRATIONS:
        mine, greedy = got[f"mypol:fn+{m}"], got[f"greedy+{m}"]
        mine.pop("wall_s"), greedy.pop("wall_s")
        assert mine == greedy, m
    return got


MIGRATIONS = ("never", "threshold", "utility", "predictive")  # city-small's


def test_a_policy_of_the_current_folder_runs_without_pythonpath(launcher, work):
    p = run(launcher, work, *COMPARE, "--json", "-q")
    assert p.returncode == 0, p.stderr
    here = same_as_greedy(p.stdout)
    # in two spawned worker processes: the same numbers
    p = run(launcher, work, *COMPARE, "--workers", 2, "--json", "-q")
    assert p.returncode == 0, p.stderr
    assert same_as_greedy(p.stdout) == here


def test_a_sweep_over_seeds_and_parameters_finds_it_in_its_workers(launcher, work):
    p = run(launcher, work, *COMPARE, "--migration", "never", "--seeds", "0..1",
            "--param", "entities.count=40,50", "--workers", 2, "--json", "-q")  # fmt: skip
    assert p.returncode == 0, p.stderr
    groups = json.loads(p.stdout)["groups"]
    by = {(g["policy"], g["params"]["entities.count"]): g["metrics"] for g in groups}
    assert len(by) == 4 and all(len(g["seeds"]) == 2 for g in groups)
    for n in (40, 50):
        mine, greedy = by[("mypol:fn+never", n)], by[("greedy+never", n)]
        assert mine == greedy and mine["mean_latency_ms"]["ci95"] > 0


def test_the_current_folder_comes_before_the_rest_of_the_path(launcher, work, tmp_path):
    # a module of the same name elsewhere on the path, without `fn`: appended after it, the
    # current folder would lose and the run would fail with "has no attribute 'fn'"
    other = tmp_path / "site"
    other.mkdir()
    (other / "mypol.py").write_text("raise ImportError('the path shadowed the current folder')\n")
    for workers in (1, 2):
        p = run(launcher, work, *COMPARE, "--migration", "never", "--workers", workers,
                "--json", "-q", pythonpath=(other,))  # fmt: skip
        assert p.returncode == 0, p.stderr
        assert set(json.loads(p.stdout)["policies"]) == {"greedy+never", "mypol:fn+never"}
    # twinedge's own imports still come first: a yaml.py here shadows nothing of ours
    (work / "yaml.py").write_text("raise ImportError('the current folder shadowed PyYAML')\n")
    p = run(launcher, work, *COMPARE, "--migration", "never", "--json", "-q")
    assert p.returncode == 0, p.stderr


def test_a_module_that_is_not_there_is_one_line_naming_the_current_folder(launcher, work):
    p = run(launcher, work, "compare", "city-small", "--placement", "greedy,nosuchmod:fn",
            "--steps", 5)  # fmt: skip
    assert p.returncode == 2 and p.stdout == "", p.stdout
    assert p.stderr == (
        "error: --placement: cannot import module 'nosuchmod' for placement policy "
        f"'nosuchmod:fn': no module named 'nosuchmod' in the current folder ({work}) or on "
        "the Python path (sys.path, PYTHONPATH); use one of greedy, nearest, optimal or an "
        "import path of the form 'package.module:function_or_class'\n"
    )
    # as a migration policy, in a sweep with workers: refused before anything runs
    p = run(launcher, work, "compare", "city-small", "--migration", "never,nosuchpkg.mod:fn",
            "--seeds", "0..1", "--workers", 2, "--steps", 5)  # fmt: skip
    assert p.returncode == 2, p.stderr
    assert "no module named 'nosuchpkg' in the current folder" in p.stderr, p.stderr
    assert "runs" not in p.stderr, p.stderr  # no progress: nothing ran
    # the module is there but what it imports is not: that is what the message names
    (work / "needs.py").write_text("import nosuchdependency\n")
    p = run(launcher, work, "run", "city-small", "--placement", "needs:fn", "--steps", 5)
    assert p.returncode == 2
    assert p.stderr == (
        "error: --placement: cannot import module 'needs' for placement policy 'needs:fn': "
        "importing it raised ModuleNotFoundError: No module named 'nosuchdependency' "
        "(install what it needs)\n"
    )
    # from another folder the module is not found: it is the current folder that counts
    p = run(launcher, work.parent, *COMPARE)
    assert p.returncode == 2 and "no module named 'mypol' in the current folder" in p.stderr


def test_pythonsafepath_keeps_the_current_folder_out(launcher, work):
    p = run(launcher, work, *COMPARE, PYTHONSAFEPATH="1")
    assert p.returncode == 2
    assert (
        "no module named 'mypol' on the Python path (sys.path, PYTHONPATH); the current folder "
        "is not searched when PYTHONSAFEPATH or -P is set" in p.stderr
    ), p.stderr


def test_search_first_puts_folders_in_front_only_while_the_policy_imports(tmp_path):
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir(), later.mkdir()
    name = f"pol_{tmp_path.name.replace('-', '_')}"  # a module no other test imported
    (first / f"{name}.py").write_text("def fn(problem, rng):\n    return 'first'\n")
    (later / f"{name}.py").write_text("def fn(problem, rng):\n    return 'later'\n")
    path_before = list(sys.path)
    sys.path.append(str(later))
    try:
        search_first([first])
        assert searched_first() == (str(first),)
        pol = as_policy(f"{name}:fn", "placement")
        assert pol.fn(None, None) == "first"  # type: ignore[attr-defined]
        assert sys.path == [*path_before, str(later)]  # nothing left behind
        with pytest.raises(PolicyError) as e:
            as_policy("nosuch_anywhere:fn", "migration")
        assert f"no module named 'nosuch_anywhere' in {first} or on the Python path" in str(e.value)
    finally:
        search_first([])
        sys.path[:] = path_before
        sys.modules.pop(name, None)
    assert searched_first() == ()
