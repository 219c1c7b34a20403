"""Failpoints: deterministic fault injection at named points, for tests only.

A testing aid in the manner of FreeBSD's ``fail(9)`` and etcd's gofail: the code calls
:func:`hit` at the phase boundaries of a live migration; nothing happens unless the
environment variable :data:`ENV` named that point when the process started. Tests of
crash recovery set it before starting ``twinedge serve`` (its host processes inherit the
environment; with ``--ray``, the core passes it on to its host actors) to kill a chosen
process at a chosen phase, instead of killing at a random instant and hoping to land in
the window that matters.

Syntax: ``TWINEDGE_FAILPOINTS="POINT[@HOST]=ACTION;..."``. ``@HOST`` restricts a point of
a host process (``source.*``, ``target.*``) to the host of that id (every host process
inherits the variable, and a host that is the target of one migration may be the source
of the next); without it the point fires in every process that reaches it. The
``driver.*`` points fire in the process that runs the migration (the core). Actions:

* ``kill``: SIGKILL this process at once (nothing after the point runs; what was committed
  before it stays committed);
* ``hang``: block this process's event loop for good (a process that accepts connections
  and never answers).

The points (see :data:`POINTS`)::

    source.after-snapshot   host: the snapshot is exported, not yet sent
    source.after-fence      host: the fence is durable (and the last changes read), not answered
    target.after-stage      host: the snapshot is staged (in memory), not answered
    target.after-fence      host: a cut-over's fence (the target called the source) is
                            answered; the target has not adopted yet
    target.after-adopt      host: the adoption is durable, not answered
    driver.after-fence      core: the source answered the fence; adopt not called yet
                            (a pre-copy the core cuts over itself: in-process hosts; and
                            every stop-and-copy, as the recovery of a dead host runs:
                            its log fenced, nothing copied yet)
    driver.after-adopt      core: the target answered adopt; the source not released yet
                            (pre-copy, stop-and-copy and resume)
    driver.after-release    core: the migration is done on both hosts; the core has not
                            recorded the new host nor redirected the device yet
    driver.after-place      core: a twin's first host placed it; the core has not set its
                            replica position nor recorded the host yet
    driver.after-redirect   core: ... set the position and sent the device there; the
                            host is not recorded yet

Unset (the normal case), :func:`hit` costs one test of an empty dict.

Examples:
    >>> parse("source.after-fence@edge-1=kill; driver.after-adopt=hang")
    {'source.after-fence@edge-1': 'kill', 'driver.after-adopt': 'hang'}
    >>> parse("nowhere=kill")
    Traceback (most recent call last):
    ...
    ValueError: TWINEDGE_FAILPOINTS: unknown point 'nowhere'; the points are driver.after-adopt, ...
"""

from __future__ import annotations

import os
import signal
import sys
import threading

__all__ = ["ACTIONS", "ENV", "POINTS", "hit", "parse"]

ENV = "TWINEDGE_FAILPOINTS"
POINTS = frozenset(
    {
        "source.after-snapshot",
        "source.after-fence",
        "target.after-stage",
        "target.after-fence",
        "target.after-adopt",
        "driver.after-fence",
        "driver.after-adopt",
        "driver.after-release",
        "driver.after-place",
        "driver.after-redirect",
    }
)
ACTIONS = frozenset({"kill", "hang"})


def parse(text: str) -> dict[str, str]:
    """The failpoints of a :data:`ENV` value: ``{"POINT[@HOST]": ACTION}``.

    Raises:
        ValueError: an entry without ``=``, an unknown point or action.
    """
    out: dict[str, str] = {}
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        key, eq, action = (s.strip() for s in entry.partition("="))
        point = key.partition("@")[0]
        if not eq:
            raise ValueError(f"{ENV}: {entry!r} is not POINT[@HOST]=ACTION")
        if point not in POINTS:
            raise ValueError(
                f"{ENV}: unknown point {point!r}; the points are {', '.join(sorted(POINTS))}"
            )
        if action not in ACTIONS:
            raise ValueError(
                f"{ENV}: unknown action {action!r}; the actions are {', '.join(sorted(ACTIONS))}"
            )
        out[key] = action
    return out


_ACTIVE: dict[str, str] = parse(os.environ.get(ENV, ""))


def hit(point: str, where: str = "") -> None:
    """Reach the failpoint ``point`` (in the host ``where``, if a host process): do
    what :data:`ENV` says for it, if anything."""
    if not _ACTIVE:
        return
    action = _ACTIVE.get(f"{point}@{where}") or _ACTIVE.get(point)
    if action is None:
        return
    sys.stderr.write(f"failpoint {point}@{where or '-'}: {action} (pid {os.getpid()})\n")
    sys.stderr.flush()
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Event().wait()  # hang: this thread (the event loop) never goes on
