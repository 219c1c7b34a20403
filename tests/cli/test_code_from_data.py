"""A scenario file may name policies, never import code (registered names and plug-ins
declared through entry points only; import paths from the command line or Python)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_scenario

ROOT = Path(__file__).resolve().parents[2]

SIDE_EFFECT_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("imported")

import numpy as np


def first_host(problem, rng):
    Path({marker!r} + ".called").write_text("called")
    return np.zeros(problem.n_twins, dtype=np.int64)
"""


def twinedge(*args, pythonpath: list[Path] = ()):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [*map(str, pythonpath), *filter(None, [env.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-m", "twinedge", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def spy(tmp_path):
    """A module on the path that leaves a marker file when imported (and another when
    called)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    marker = tmp_path / "imported"
    (lib / "spy_policy.py").write_text(SIDE_EFFECT_MODULE.format(marker=str(marker)))
    return lib, marker


@pytest.mark.parametrize("spec", ["os:system", "spy_policy:first_host"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_file_naming_an_import_path_is_refused_and_nothing_is_imported(
    tmp_path, spy, spec, command
):
    lib, marker = spy
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(tiny_scenario(policies={"placement": spec, "migration": "never"})))
    args = ["scenario", "validate", f] if command == "validate" else ["run", f, "--out", tmp_path]
    p = twinedge(*args, pythonpath=[lib])
    assert p.returncode == 2 and "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert f"{f}: policies.placement: got {spec!r}" in lines[0]
    assert "may not import code" in lines[0]
    assert f"--placement {spec}" in lines[0] and "twinedge.policies.placement" in lines[0]
    assert not marker.exists()


def test_the_same_import_path_on_the_command_line_is_the_users_choice(tmp_path, spy):
    lib, marker = spy
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(tiny_scenario()))
    p = twinedge(
        "run",
        f,
        "--placement",
        "spy_policy:first_host",
        "--out",
        tmp_path / "o",
        "--no-report",
        "-q",
        pythonpath=[lib],
    )
    assert p.returncode == 0, p.stderr
    assert marker.exists() and Path(str(marker) + ".called").exists()


def test_a_migration_import_path_in_a_list_is_refused(tmp_path):
    f = tmp_path / "s.yaml"
    sc = tiny_scenario(policies={"placement": "nearest", "migration": ["never", "os:system"]})
    f.write_text(yaml.safe_dump(sc))
    p = twinedge("scenario", "validate", f)
    assert p.returncode == 2 and "policies.migration" in p.stderr and "os:system" in p.stderr


def test_an_installed_plug_in_is_used_by_name(tmp_path):
    """An entry point in the group twinedge.policies.placement gives a name files may use."""
    site = tmp_path / "site"
    pkg = site / "demo_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            import numpy as np

            class FirstHost:
                def __init__(self, offset=0):
                    self.offset = offset

                def __call__(self, problem, rng):
                    return np.full(problem.n_twins, self.offset, dtype=np.int64)
            """
        )
    )
    dist = site / "demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[twinedge.policies.placement]\nfirst-host = demo_plugin:FirstHost\n"
    )
    f = tmp_path / "s.yaml"
    sc = tiny_scenario(
        policies={
            "placement": "first-host",
            "migration": "never",
            "placement_params": {"first-host": {"offset": 0}},
        }
    )
    f.write_text(yaml.safe_dump(sc))
    p = twinedge("scenario", "validate", f, pythonpath=[site])
    assert p.returncode == 0 and p.stdout.startswith(f"ok: {f}"), p.stderr
    p = twinedge("run", f, "--out", tmp_path / "o", "--no-report", "-q", pythonpath=[site])
    assert p.returncode == 0, p.stderr
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert list(s["policies"]) == ["first-host+never"]
    # without the plug-in installed the name is unknown, and validate says so as run would
    for command in (["scenario", "validate", f], ["run", f, "--out", tmp_path / "o2"]):
        p = twinedge(*command)
        assert p.returncode == 2 and "Traceback" not in p.stderr
        assert "unknown placement policy 'first-host'" in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
