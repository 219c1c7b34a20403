"""Edge host processes for the hosts of a live network, on this machine
(``twinedge serve --network SCENARIO --hosts local``): one ``twinedge host`` process per
host, each with its own device endpoint, control API and durable log."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from twinedge.edge.errors import EdgeError
from twinedge.edge.remote import RemoteHost
from twinedge.errors import TwinedgeError

MAX_LOCAL_HOSTS = 16


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


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
                f"--hosts local: the network has {len(host_ids)} hosts; one machine runs at most "
                f"{MAX_LOCAL_HOSTS} host processes (start `twinedge host` on other machines instead)"
            )
        self.host_ids, self.data_dir, self.core_url = host_ids, data_dir, core_url
        self.token_file, self.address = token_file, address
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.remotes: dict[str, RemoteHost] = {}

    async def start(self, timeout_s: float = 30.0) -> None:
        token = self.token_file.read_text().strip()
        ports = {}
        for h in self.host_ids:
            mqtt, control = free_port(self.address), free_port(self.address)
            ports[h] = (mqtt, control)
            d = self.data_dir / h
            d.mkdir(parents=True, exist_ok=True)
            args = [
                sys.executable, "-m", "twinedge", "host", "--id", h, "--core", self.core_url,
                "--token-file", str(self.token_file), "--data-dir", str(d),
                "--mqtt-host", self.address, "--mqtt-port", str(mqtt),
                "--control-host", self.address, "--control-port", str(control),
            ]  # fmt: skip
            with open(d / "host.log", "ab") as log:  # the process keeps its own handle
                self.procs[h] = subprocess.Popen(
                    args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            self.remotes[h] = RemoteHost(
                h, f"http://{self.address}:{control}", f"mqtt://{self.address}:{mqtt}", token
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for h, remote in self.remotes.items():
            while True:
                try:
                    await remote.status()
                    break
                except EdgeError:
                    if self.procs[h].poll() is not None or loop.time() > deadline:
                        await self.stop()
                        raise TwinedgeError(
                            f"host process {h} did not come up; see {self.data_dir / h / 'host.log'}"
                        ) from None
                    await asyncio.sleep(0.1)
        peers = {h: r.mqtt_url for h, r in self.remotes.items()}
        await asyncio.gather(*(r.set_peers(peers) for r in self.remotes.values()))

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
