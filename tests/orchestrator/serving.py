"""A real ``twinedge serve --network`` on loopback for the orchestrator's tests, and a
bounded poll (the server cycles on its own clock)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import yaml

from tests.orchestrator.test_live import two_sites
from tests.runtime.test_reliability import free_port, start_server, stop_server


def wait_for(fn: Any, what: str, tries: int = 400) -> Any:
    """Call ``fn`` until it returns something true (at most ``tries`` times, 50 ms apart)."""
    for _ in range(tries):
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


@dataclass
class Served:
    client: httpx.Client  # the service admin's client
    proc: Popen
    data: Path
    mqtt_port: int


def two_sites_file(tmp_path: Path) -> Path:
    """The two-site network of the tests as a scenario file in ``tmp_path``."""
    network = tmp_path / "two-sites.yaml"
    network.write_text(yaml.safe_dump(two_sites()))
    return network


@contextmanager
def serve_two_sites(tmp_path: Path, *options: str) -> Iterator[Served]:
    """``twinedge serve --network examples/two-sites.yaml OPTIONS``, stopped (SIGTERM)
    at the end if still running: it must then exit 0 (:func:`stop_server`), unless the
    body raised."""
    network = two_sites_file(tmp_path)
    data, http, mqtt = tmp_path / "data", free_port(), free_port()
    proc = start_server(data, http, mqtt, extra=["--network", str(network), *options])
    token = (data / "admin.token").read_text().strip()
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{http}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        yield Served(client, proc, data, mqtt)
        if proc.poll() is None:  # not stopped by the test: a clean stop exits 0
            stop_server(proc)
    finally:
        client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
