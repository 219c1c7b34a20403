"""Wiring and operations of ``twinedge serve``: configuration, start-up, graceful shutdown.

Start-up: open the store (SQLite in the data directory unless ``db`` names PostgreSQL),
load the twins, create the service admin key on first start (its token is written to
``DATA_DIR/admin.token``, mode 0600), with a network the edge hosts' token (made on the first
start, in ``DATA_DIR/hosts.token``, mode 0600), start MQTT (the embedded broker unless ``mqtt``
names an external one), then serve HTTP. Shutdown (SIGINT/SIGTERM): stop taking HTTP
requests and MQTT messages, let the writer commit everything already accepted, close the
store — nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import uvicorn

from twinedge.errors import InputError, TwinedgeError
from twinedge.runtime.service import TwinService
from twinedge.scenario.inputs import load_yaml, read_text

log = logging.getLogger("twinedge.serve")


class ConfigError(TwinedgeError):
    """A bad ``twinedge serve`` configuration."""


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
BATCH_MAX_LIMIT = 100_000


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _text(v: Any) -> str | None:
    if not isinstance(v, str):
        return "expected text"
    if not v.strip():
        return "expected non-empty text"
    return None


def _port(v: Any) -> str | None:
    return None if _is_int(v) and 0 <= v <= 65535 else "expected a port number 0..65535"


def _retention(v: Any) -> str | None:
    if v is None:
        return None
    ok = (_is_int(v) or isinstance(v, float)) and math.isfinite(v) and v > 0
    return None if ok else "expected a positive number of seconds (or null: keep forever)"


def _batch(v: Any) -> str | None:
    ok = _is_int(v) and 1 <= v <= BATCH_MAX_LIMIT
    return None if ok else f"expected a whole number of mutations 1..{BATCH_MAX_LIMIT:,}"


def _mqtt(v: Any) -> str | None:
    ok = v is None or (
        isinstance(v, str) and (v in ("embedded", "none") or v.startswith(("mqtt://", "mqtts://")))
    )
    return None if ok else "expected embedded, none or mqtt://user:pass@host:port"


def _db(v: Any) -> str | None:
    ok = v is None or (
        isinstance(v, str) and v.startswith(("sqlite://", "postgresql://", "postgres://"))
    )
    return None if ok else "expected sqlite:///path or postgresql://user@host/db"


def _log_level(v: Any) -> str | None:
    ok = isinstance(v, str) and v.lower() in LOG_LEVELS
    return None if ok else f"expected one of {', '.join(LOG_LEVELS)}"


def _period(v: Any) -> str | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and 0.01 <= v <= 86_400
    return None if ok else "expected a number of seconds in [0.01, 86400]"


def _hosts(v: Any) -> str | None:
    if v is None or v == "local" or (isinstance(v, str) and v.startswith("ray:") and len(v) > 4):
        return None
    return "expected local (host processes on this machine) or ray:ADDRESS (host actors on a Ray cluster)"


def _data_dir(v: Any) -> str | None:
    if (why := _text(v)) is not None:
        return why
    p = Path(v)
    if p.exists():
        if not p.is_dir():
            return "it is a file; expected a directory (or a path where one can be created)"
        if not os.access(p, os.W_OK | os.X_OK):
            return "expected a directory this user can write"
        return None
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{str(parent)!r} is a file; expected a path where a directory can be created"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create it: {str(parent)!r} is not writable"
    return None


_CHECKS = {
    "host": _text,
    "port": _port,
    "data_dir": _data_dir,
    "db": _db,
    "mqtt": _mqtt,
    "mqtt_host": _text,
    "mqtt_port": _port,
    "retention_s": _retention,
    "batch_max": _batch,
    "log_level": _log_level,
    "network": lambda v: None if v is None else _text(v),
    "placement": _text,
    "migration": _text,
    "cycle_s": _period,
    "placement_period_s": lambda v: None if v is None else _period(v),
    "ledger": lambda v: None if v is None else _text(v),
    "forecast_horizon_s": lambda v: None if v == 0 else _period(v),
    "hosts": lambda v: _hosts(v),
}


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass
class ServeConfig:
    """Settings of ``twinedge serve`` (a YAML file, then command-line options on top).

    :meth:`load` validates every setting (type, range, unknown keys; the data directory
    must be a directory or creatable) before anything starts, and raises
    :class:`ConfigError` with one ``WHERE: setting: got VALUE; expected WHAT`` line per
    problem (WHERE is the file, or ``--option`` for a command-line option).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "twinedge-data"
    db: str | None = None  # default: sqlite:///DATA_DIR/twins.db
    mqtt: str | None = "embedded"  # "embedded", "none", or mqtt://user:pass@host:port
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    retention_s: float | None = None
    batch_max: int = 2000
    log_level: str = "info"
    network: str | None = None  # a scenario file or built-in name: the live network
    placement: str = "greedy"
    migration: str = "threshold"
    cycle_s: float = 1.0
    placement_period_s: float | None = None
    ledger: str | None = None  # default with a network: DATA_DIR/ledger; "none": no ledger
    forecast_horizon_s: float = 10.0  # the network's own twin: run ahead this far (0: off)
    hosts: str | None = None  # "local": a `twinedge host` process per host of the network

    @classmethod
    def load(cls, path: str | Path | None, **overrides: Any) -> ServeConfig:
        """Read the YAML file at ``path`` (if any), apply ``overrides`` (``None``: not
        given), and validate the result."""
        data: dict[str, Any] = {}
        where: dict[str, str] = {}
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"{p}: no such configuration file")
            try:
                loaded = load_yaml(read_text(p), str(p))
            except InputError as exc:
                raise ConfigError(str(exc)) from None
            if loaded is None:
                loaded = {}
            if not isinstance(loaded, dict):
                raise ConfigError(f"{p}: got {_show(loaded)}; expected a mapping of settings")
            data.update(loaded)
            where.update(dict.fromkeys(loaded, str(p)))
        for k, v in overrides.items():
            if v is not None:
                data[k] = v
                where[k] = "--" + str(k).replace("_", "-")
        known = {f.name for f in fields(cls)}
        problems = [
            f"{where[k]}: unknown setting {k!r}; known: {', '.join(sorted(known))}"
            for k in data
            if k not in known
        ]
        cfg = cls(**{k: v for k, v in data.items() if k in known})
        cfg.check(where, problems)
        return cfg

    def check(self, where: dict[str, str] | None = None, problems: Sequence[str] = ()) -> None:
        """Validate every setting; raise :class:`ConfigError` with one line per problem
        (``problems`` found before first), each prefixed with where the setting came from
        when ``where`` names it."""
        where = where or {}
        problems = list(problems) + [
            f"{where[name] + ': ' if name in where else ''}{name}: got "
            f"{_show(getattr(self, name))}; {why}"
            for name, check in _CHECKS.items()
            if (why := check(getattr(self, name))) is not None
        ]
        if self.hosts is not None and self.network is None:
            problems.append(
                f"{where.get('hosts', '--hosts')}: hosts: got {self.hosts!r}; host processes "
                "serve a network: give --network SCENARIO too"
            )
        if problems:
            raise ConfigError("\n".join(problems))
        self.log_level = self.log_level.lower()

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{Path(self.data_dir).resolve() / 'twins.db'}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _HttpServer(uvicorn.Server):
    """uvicorn's server, except that (1) shutdown first ends every open event stream with a
    reason (an SSE response lasts as long as its stream) and (2) after a graceful stop on
    SIGINT/SIGTERM it does not re-raise the signal: the service still has to flush and close
    its store, and the process then exits with status 0."""

    service: TwinService | None = None

    async def shutdown(self, sockets=None):
        if self.service is not None:
            from twinedge.runtime.api import close_event_streams

            close_event_streams(self.service)
        await super().shutdown(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self):
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()  # handled: do not re-raise them on exit


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


class Server:
    """The running service: store, service, MQTT and HTTP. ``await start()`` then
    ``await run()`` (until a signal) or ``await stop()``."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.service: TwinService | None = None
        self.mqtt: Any = None
        self.http: Any = None
        self.live: Any = None
        self.host_processes: Any = None
        self.admin_token_file = Path(config.data_dir) / "admin.token"
        self.hosts_token: str | None = None  # edge hosts' secret (with a network)

    async def start(self) -> None:
        from twinedge.runtime.store import open_store

        cfg = self.config
        if cfg.network is not None:  # a bad scenario or policy stops serve before it starts
            self.live = live_network(None, cfg)
        Path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
        store = open_store(cfg.db_url)
        self.service = TwinService(store, retention_s=cfg.retention_s, batch_max=cfg.batch_max)
        await self.service.start()
        token = await self.service.ensure_admin_key()
        if token is not None:
            if self.admin_token_file.exists():
                self.admin_token_file.unlink()
            _write_secret(self.admin_token_file, token)
            log.warning("created the service admin key; its token is in %s", self.admin_token_file)
        if cfg.mqtt not in (None, "none"):
            from twinedge.runtime.mqtt import start_mqtt

            url = None if cfg.mqtt == "embedded" else cfg.mqtt
            self.mqtt = await start_mqtt(self.service, url, host=cfg.mqtt_host, port=cfg.mqtt_port)
        from twinedge.runtime.api import create_app
        from twinedge.runtime.api.redact import install_log_redaction

        if self.live is not None:
            self.live.service = self.service
        if cfg.network is not None:  # edge hosts present it to /internal
            hosts_file = Path(cfg.data_dir) / "hosts.token"
            kept = hosts_file.read_text().strip() if hosts_file.is_file() else ""
            # kept across restarts: host processes that outlived a core still hold it
            self.hosts_token = kept or secrets.token_urlsafe(32)
            if not kept:
                _write_secret(hosts_file, self.hosts_token)
            if cfg.hosts is not None:
                await self._start_hosts()
        app = create_app(self.service, live=self.live, hosts_token=self.hosts_token)
        ucfg = uvicorn.Config(
            app,
            host=cfg.host,
            port=cfg.port,
            log_level=cfg.log_level,
            lifespan="off",
            ws_max_size=1 << 20,
            ws_ping_interval=15,
            timeout_graceful_shutdown=5,
        )
        # after uvicorn.Config, which (re)configures uvicorn's loggers: no ?token= in logs
        install_log_redaction(*logging.getLogger().handlers)
        self.http = _HttpServer(ucfg)
        self.http.service = self.service
        if self.live is not None:
            self.live.start()

    async def _start_hosts(self) -> None:
        """One host process per host of the network: on this machine (``local``) or as
        Ray actors on the nodes of the edge sites (``ray:ADDRESS``)."""
        from twinedge.orchestrator.hosts import HostProcesses
        from twinedge.orchestrator.rayhosts import RayHosts

        cfg = self.config
        assert cfg.hosts is not None
        token_file = Path(cfg.data_dir) / "hosts.token"
        args = (
            self.live.network.host_ids,
            Path(cfg.data_dir).resolve() / "hosts",
            f"http://{cfg.host}:{cfg.port}",
            token_file,
        )
        self.host_processes = (
            HostProcesses(*args)
            if cfg.hosts == "local"
            else RayHosts(cfg.hosts.removeprefix("ray:"), *args)
        )
        await self.host_processes.start()
        self.live.hosts = self.host_processes.remotes
        self.live.host_processes = self.host_processes
        assert self.service is not None
        self.service.edge_owner = self.live.edge_owner
        self.service.edge_desired = self.live.forward_desired
        self.service.edge_write = self.live.edge_write
        self.service.edge_retire = self.live.retire

    async def run(self) -> None:
        """Serve until SIGINT/SIGTERM, then shut down gracefully."""
        try:
            await self.http.serve()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop every part, each even when an earlier one failed to stop cleanly."""
        if self.http is not None:
            self.http.should_exit = True
        try:
            if self.live is not None:
                live, self.live = self.live, None
                await live.stop()
        finally:
            try:
                if self.host_processes is not None:
                    procs, self.host_processes = self.host_processes, None
                    await procs.stop()
            finally:
                try:
                    if self.mqtt is not None:
                        mqtt, self.mqtt = self.mqtt, None
                        await mqtt.stop()
                finally:
                    if self.service is not None:
                        service, self.service = self.service, None
                        await service.stop()


def live_network(service: TwinService | None, cfg: ServeConfig) -> Any:
    """The live orchestrator of ``cfg.network`` over ``service`` (not started; the
    service may be attached later as ``.service``).

    Raises:
        ScenarioError, InputError: the scenario cannot be read or its network built.
        PolicyError: a policy cannot be resolved.
    """
    import numpy as np

    from twinedge.engine.record import LedgerRecorder
    from twinedge.orchestrator import Orchestrator
    from twinedge.orchestrator.live import LiveNetwork
    from twinedge.scenario import load_scenario
    from twinedge.world import build_world

    assert cfg.network is not None
    sc = load_scenario(cfg.network)
    world_rng, _, policy_rng = np.random.default_rng(sc.run.seed).spawn(3)
    world = build_world(sc, world_rng, network_only=True)
    ledger = cfg.ledger or str(Path(cfg.data_dir) / "ledger")
    recorder = None if ledger == "none" else LedgerRecorder(ledger, actor="twinedge-serve")
    orch = Orchestrator(
        cfg.placement,
        cfg.migration,
        step_s=cfg.cycle_s,
        placement_period_s=cfg.placement_period_s,
        rng=policy_rng,
        recorder=recorder,
        placement_params=sc.policies.placement_params.get(cfg.placement),
        migration_params=sc.policies.migration_params.get(cfg.migration),
    )
    return LiveNetwork(service, sc, world, orch, forecast_horizon_s=cfg.forecast_horizon_s)


def serve(config: ServeConfig) -> None:
    """Run ``twinedge serve`` in the foreground."""
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # the broker's state machine and per-connection chatter drown the service's own log
    for noisy in ("transitions", "amqtt"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))

    async def main() -> None:
        server = Server(config)
        await server.start()
        await server.run()

    try:  # uvloop's event loop makes the MQTT and HTTP paths markedly cheaper
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        asyncio.run(main())
    else:
        uvloop.run(main())
