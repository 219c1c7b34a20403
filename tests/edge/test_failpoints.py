"""Failpoints (a testing aid): the variable's syntax, and each action in a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from twinedge.edge import failpoints
from twinedge.edge.failpoints import ENV, parse


def test_parse_reads_points_restricted_to_a_host_or_not():
    assert parse("") == {}
    assert parse(" source.after-fence@edge-1 = kill ;; driver.after-adopt=hang ;") == {
        "source.after-fence@edge-1": "kill",
        "driver.after-adopt": "hang",
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("source.after-fence", "'source.after-fence' is not POINT[@HOST]=ACTION"),
        ("fence=kill", "unknown point 'fence'; the points are driver.after-adopt, "),
        ("target.after-stage@edge-2=crash", "unknown action 'crash'; the actions are hang, kill"),
    ],
)
def test_parse_refuses_what_it_does_not_know(text, message):
    with pytest.raises(ValueError) as e:
        parse(text)
    assert str(e.value).startswith(f"{ENV}: {message}")


def test_a_point_not_named_costs_nothing_and_does_nothing():
    assert failpoints._ACTIVE == {}  # this process started without the variable
    failpoints.hit("source.after-fence", "edge-1")  # returns


def run(spec: str, where: str, timeout_s: float = 60.0) -> subprocess.Popen:
    """A Python process started with ``spec`` that hits ``source.after-fence`` in
    ``where``, then exits with status 3."""
    code = (
        "from twinedge.edge import failpoints\n"
        f"failpoints.hit('source.after-fence', {where!r})\n"
        "raise SystemExit(3)\n"
    )
    env = {**os.environ, ENV: spec}
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True
    )


def test_kill_sigkills_the_process_at_the_point_of_its_host_only():
    p = run("source.after-fence@edge-1=kill", "edge-1")
    _, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert "failpoint source.after-fence@edge-1: kill" in err
    other = run("source.after-fence@edge-1=kill", "edge-2")  # another host goes on
    _, err = other.communicate(timeout=60)
    assert other.returncode == 3 and "failpoint" not in err
    anywhere = run("source.after-fence=kill", "edge-2")  # unrestricted: every host
    anywhere.communicate(timeout=60)
    assert anywhere.returncode == -signal.SIGKILL


def test_hang_stops_the_process_at_the_point():
    p = run("source.after-fence=hang", "edge-1")
    try:
        assert p.stderr is not None
        assert "failpoint source.after-fence@edge-1: hang" in p.stderr.readline()
        with pytest.raises(subprocess.TimeoutExpired):  # it never gets to exit 3
            p.wait(timeout=1.0)
    finally:
        p.kill()
        p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL


def test_a_bad_variable_stops_the_process_at_start_with_the_reason():
    p = run("source.after-fence=explode", "edge-1")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert f"ValueError: {ENV}: unknown action 'explode'" in err
