"""Edge host processes as Ray actors (``twinedge serve --network SCENARIO --ray ADDRESS``,
or ``--hosts ray:ADDRESS``): one actor per host of the network, placed on the Ray node
that offers the custom resource named after the host (start each node with
``ray start --resources '{"edge-1": 1}'`` on the machine of that edge site). Devices
talk to each host directly (MQTT on the node's address), not through Ray; the core
drives the hosts through their control APIs, as it drives local ones."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from twinedge import gcpauses
from twinedge.edge import failpoints
from twinedge.edge.remote import RemoteHost
from twinedge.errors import TwinedgeError


class HostActor:
    """A Ray actor around :class:`twinedge.edge.server.HostServer`."""

    def __init__(self) -> None:
        self.server: Any = None

    async def start(self, host_id: str, data_dir: str, core_url: str, token: str) -> dict[str, str]:
        import os

        import ray

        from twinedge.edge.server import HostServer

        address = ray.util.get_node_ip_address()
        self.server = HostServer(
            host_id,
            data_dir,
            core_url=core_url,
            token=token,
            mqtt_host=address,
            mqtt_port=0,  # any free port: the chosen ones are returned
            control_host=address,
            control_port=0,
        )
        await self.server.start()
        gcpauses.settle()  # a worker process of its own, as a `twinedge host` process is
        return {
            "control": f"http://{address}:{self.server.control_port}",
            "mqtt": self.server.mqtt_url,
            "node": ray.get_runtime_context().get_node_id(),
            "pid": str(os.getpid()),
        }

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def ping(self) -> bool:
        return self.server is not None


class RayHosts:
    """Host actors for ``host_ids`` on the Ray cluster at ``address``, each on the node
    with the resource named after it; the same interface as
    :class:`twinedge.orchestrator.hosts.HostProcesses`.

    Raises:
        TwinedgeError: Ray is missing, its head does not answer, or a host has no node
            offering its resource (the message names the resource to add).
    """

    def __init__(
        self, address: str, host_ids: list[str], data_dir: Path, core_url: str, token_file: Path
    ):
        self.address, self.host_ids, self.data_dir = address, host_ids, data_dir
        self.core_url, self.token_file = core_url, token_file
        self.actors: dict[str, Any] = {}
        self.remotes: dict[str, RemoteHost] = {}
        self.info: dict[str, dict[str, str]] = {}
        self._dead: set[str] = set()

    async def start(self, timeout_s: float = 60.0) -> None:
        try:
            import ray
        except ImportError:
            raise TwinedgeError(
                f"--ray {self.address}: host actors need Ray: pip install 'twinedge[ray]'"
            ) from None
        from twinedge.engine.parallel import check_ray_address

        check_ray_address(self.address)
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        offered = {k for n in ray.nodes() if n.get("Alive") for k in n.get("Resources", {})}
        missing = [h for h in self.host_ids if h not in offered]
        if missing:
            raise TwinedgeError(
                f"--ray {self.address}: no Ray node offers the resource of host(s) "
                f"{', '.join(missing)}; start the node of each edge site with "
                + "ray start --resources '"
                + json.dumps({missing[0]: 1})
                + "'"
            )
        token = self.token_file.read_text().strip()
        actor_cls = ray.remote(num_cpus=0)(HostActor)
        options: dict[str, Any] = {}
        if os.environ.get(failpoints.ENV):  # as local host processes inherit it (tests)
            options["runtime_env"] = {"env_vars": {failpoints.ENV: os.environ[failpoints.ENV]}}
        refs = {}
        for h in self.host_ids:
            self.actors[h] = actor_cls.options(
                resources={h: 1}, name=f"twinedge-host-{h}", **options
            ).remote()
            refs[h] = self.actors[h].start.remote(h, str(self.data_dir / h), self.core_url, token)
        for h, ref in refs.items():
            info = await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout_s)
            self.info[h] = info
            self.remotes[h] = RemoteHost(h, info["control"], info["mqtt"], token)
        peers = {h: r.mqtt_url for h, r in self.remotes.items()}
        await asyncio.gather(*(r.set_peers(peers) for r in self.remotes.values()))

    async def dead(self, timeout_s: float = 2.0) -> list[str]:
        """Hosts whose actor died (a slow answer does not count)."""
        import ray

        async def gone(actor: Any) -> bool:
            try:
                await asyncio.wait_for(asyncio.wrap_future(actor.ping.remote().future()), timeout_s)
            except ray.exceptions.RayActorError:
                return True
            except TimeoutError:
                return False
            return False

        hosts = list(self.actors)
        flags = await asyncio.gather(*(gone(self.actors[h]) for h in hosts))
        return [h for h, f in zip(hosts, flags, strict=True) if f]

    def pids(self) -> dict[str, int]:
        """The process id of every host actor (on its node)."""
        return {h: int(self.info[h]["pid"]) for h in self.actors if h in self.info}

    def log_path(self, host_id: str) -> Path:
        return self.data_dir / host_id / "edge.sqlite"

    def forget(self, host_id: str) -> None:
        self.actors.pop(host_id, None)
        self.remotes.pop(host_id, None)

    async def stop(self) -> None:
        import ray

        for r in self.remotes.values():
            await r.aclose()
        refs = [a.stop.remote() for a in self.actors.values()]
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=15)
        for a in self.actors.values():
            ray.kill(a)
        self.actors.clear()
