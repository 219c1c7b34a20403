"""Edge host processes for the hosts of a live network, on this machine
(``twinedge serve --network SCENARIO``, or explicitly ``--hosts local``): one ``twinedge
host`` process per host, each with its own device endpoint, control API and durable log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

from twinedge.edge.errors import EdgeError
from twinedge.edge.remote import RemoteHost
from twinedge.errors import TwinedgeError

MAX_LOCAL_HOSTS = 16
PROCESS_FILE = "process.json"  # in a host's data directory: its pid and ports


class RunningProcess:
    """A host process this ``serve`` did not start (an earlier one did), as much of
    :class:`subprocess.Popen` as :class:`HostProcesses` uses."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                with open(f"/proc/{self.pid}/stat") as f:
                    state = f.read().rpartition(")")[2].split()[0]
                alive = state not in ("Z", "X")
            except OSError:
                try:
                    os.kill(self.pid, 0)
                    alive = True
                except OSError:
                    alive = False
            if not alive:
                self.returncode = 0
        return self.returncode

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.02)
        return 0


class HostProcesses:
    """Start, reach and stop the host processes of ``host_ids``.

    Parameters:
        host_ids: the network's hosts (at most :data:`MAX_LOCAL_HOSTS` on one machine).
        data_dir: their logs go to ``data_dir/<host id>``.
        core_url: the core's HTTP URL.
        token_file: the hosts token file.
        address: where their device endpoints and control APIs listen.

    Raises:
        TwinedgeError: too many hosts for one machine; a process did not come up.
    """

    def __init__(
        self,
        host_ids: list[str],
        data_dir: Path,
        core_url: str,
        token_file: Path,
        address: str = "127.0.0.1",
    ):
        if len(host_ids) > MAX_LOCAL_HOSTS:
            raise TwinedgeError(
                f"the network has {len(host_ids)} hosts, more than the {MAX_LOCAL_HOSTS} host "
                "processes one machine runs: run them as Ray actors (--ray ADDRESS) or keep "
                "the twins in the core (--hosts none)"
            )
        self.host_ids, self.data_dir, self.core_url = host_ids, data_dir, core_url
        self.token_file, self.address = token_file, address
        self.procs: dict[str, subprocess.Popen[bytes] | RunningProcess] = {}
        self.remotes: dict[str, RemoteHost] = {}

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start a process per host, or take over the one still running from an earlier
        ``serve`` of the same data directory (it kept serving its devices while no core
        ran; it is told where the core is now).

        Raises:
            TwinedgeError: a host process did not come up within ``timeout_s``.
        """
        token = self.token_file.read_text().strip()
        spawned = [h for h in self.host_ids if not await self._adopt(h, token)]
        for h in spawned:
            self._spawn(h)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for h in spawned:  # each writes its pid and the ports it chose once it listens
            while (info := self._process_file(h)) is None or info["pid"] != self.procs[h].pid:
                if self.procs[h].poll() is not None or loop.time() > deadline:
                    await self._failed(h)
                await asyncio.sleep(0.05)
            self.remotes[h] = self._remote(h, info, token)
        for h, remote in self.remotes.items():
            while True:
                try:
                    await remote.set_core(self.core_url)
                    break
                except EdgeError:
                    if self.procs[h].poll() is not None or loop.time() > deadline:
                        await self._failed(h)
                    await asyncio.sleep(0.1)
        peers = {h: r.mqtt_url for h, r in self.remotes.items()}
        await asyncio.gather(*(r.set_peers(peers) for r in self.remotes.values()))

    async def _failed(self, h: str) -> NoReturn:
        """Host ``h`` did not come up: stop the processes this ``serve`` started; those
        it took over from an earlier one keep serving their devices (the next ``serve``
        takes them over again)."""
        for hid, p in list(self.procs.items()):
            if isinstance(p, RunningProcess):
                del self.procs[hid]
        await self.stop()
        raise TwinedgeError(
            f"host process {h} did not come up; see {self.data_dir / h / 'host.log'}"
        ) from None

    def _spawn(self, h: str) -> None:
        """Start host ``h``'s process on ports of its choosing: it writes them, with its
        pid, to its :data:`PROCESS_FILE` once it listens."""
        d = self.data_dir / h
        d.mkdir(parents=True, exist_ok=True)
        (d / PROCESS_FILE).unlink(missing_ok=True)  # an earlier, dead process's
        args = [
            sys.executable, "-m", "twinedge", "host", "--id", h, "--core", self.core_url,
            "--token-file", str(self.token_file), "--data-dir", str(d),
            "--mqtt-host", self.address, "--mqtt-port", "0",
            "--control-host", self.address, "--control-port", "0",
            "--ready-file", str(d / PROCESS_FILE),
        ]  # fmt: skip
        with open(d / "host.log", "ab") as log:  # the process keeps its own handle
            proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.procs[h] = proc

    def _process_file(self, h: str) -> dict[str, int] | None:
        """The ``pid``, ``mqtt_port`` and ``control_port`` host ``h``'s process wrote once
        it listened, or ``None`` (none yet, or unreadable)."""
        try:
            info = json.loads((self.data_dir / h / PROCESS_FILE).read_text())
            return {k: int(info[k]) for k in ("pid", "mqtt_port", "control_port")}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _remote(
        self, h: str, info: dict[str, int], token: str, timeout_s: float = 10.0
    ) -> RemoteHost:
        """The client of host ``h`` at the ports of its process file."""
        control = f"http://{self.address}:{info['control_port']}"
        return RemoteHost(
            h, control, f"mqtt://{self.address}:{info['mqtt_port']}", token, timeout_s
        )

    async def _adopt(self, h: str, token: str) -> bool:
        """Take over host ``h``'s process if one still runs (its ``process.json`` names a
        live process that answers as ``h``)."""
        info = self._process_file(h)
        if info is None:
            return False
        proc = RunningProcess(info["pid"])
        if proc.poll() is not None:
            return False
        remote = self._remote(h, info, token, 2.0)
        try:
            status = await remote.status()
        except EdgeError:
            await remote.aclose()
            return False
        await remote.aclose()  # asked with a short timeout; driven with the usual one
        if status.get("host") != h or status.get("pid") != info["pid"]:
            return False
        self.procs[h] = proc
        self.remotes[h] = self._remote(h, info, token)
        return True

    async def stop(self) -> None:
        for r in self.remotes.values():
            with contextlib.suppress(Exception):
                await r.aclose()
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                await asyncio.to_thread(p.wait, 15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()

    def pids(self) -> dict[str, int]:
        """The process id of every host."""
        return {h: p.pid for h, p in self.procs.items()}

    async def dead(self) -> list[str]:
        """The hosts whose process has exited."""
        return [h for h, p in self.procs.items() if p.poll() is not None]

    def log_path(self, host_id: str) -> Path:
        return self.data_dir / host_id / "edge.sqlite"

    def forget(self, host_id: str) -> None:
        """Stop tracking a dead host (after its twins were recovered elsewhere)."""
        self.procs.pop(host_id, None)
        self.remotes.pop(host_id, None)

    def kill(self, host_id: str) -> None:
        """SIGKILL one host process (tests of recovery)."""
        os.kill(self.procs[host_id].pid, signal.SIGKILL)
