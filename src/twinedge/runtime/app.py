"""Wiring and operations of ``twinedge serve``: configuration, start-up, graceful shutdown.

Start-up: open the store (SQLite in the data directory unless ``db`` names PostgreSQL),
load the twins, create the service admin key on first start (its token is written to
``DATA_DIR/admin.token``, mode 0600), start MQTT (the embedded broker unless ``mqtt``
names an external one), then serve HTTP. Shutdown (SIGINT/SIGTERM): stop taking HTTP
requests and MQTT messages, let the writer commit everything already accepted, close the
store — nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from twinedge.errors import TwinedgeError
from twinedge.runtime.service import TwinService

log = logging.getLogger("twinedge.serve")


class ConfigError(TwinedgeError):
    """A bad ``twinedge serve`` configuration."""


@dataclass
class ServeConfig:
    """Settings of ``twinedge serve`` (a YAML file, then command-line options on top)."""

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

    @classmethod
    def load(cls, path: str | Path | None, **overrides: Any) -> ServeConfig:
        data: dict[str, Any] = {}
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"{p}: no such configuration file")
            try:
                loaded = yaml.safe_load(p.read_text()) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{p}: not valid YAML ({e})") from None
            if not isinstance(loaded, dict):
                raise ConfigError(f"{p}: expected a mapping of settings")
            data.update(loaded)
        data.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{path or 'options'}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}"
            )
        cfg = cls(**data)
        cfg.check()
        return cfg

    def check(self) -> None:
        for name in ("port", "mqtt_port"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= 65535:
                raise ConfigError(f"{name}: got {v!r}; expected a port number 0..65535")
        if self.mqtt not in (None, "embedded", "none") and not str(self.mqtt).startswith(
            ("mqtt://", "mqtts://")
        ):
            raise ConfigError(
                f"mqtt: got {self.mqtt!r}; expected embedded, none or mqtt://user:pass@host:port"
            )
        if self.db is not None and not str(self.db).startswith(
            ("sqlite://", "postgresql://", "postgres://")
        ):
            raise ConfigError(
                f"db: got {self.db!r}; expected sqlite:///path or postgresql://user@host/db"
            )
        if self.retention_s is not None and self.retention_s <= 0:
            raise ConfigError(
                f"retention_s: got {self.retention_s}; expected a positive number of seconds"
            )

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

    async def shutdown(self, sockets=None):  # type: ignore[override]
        if self.service is not None:
            from twinedge.runtime.api import close_event_streams

            close_event_streams(self.service)
        await super().shutdown(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
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
        self.admin_token_file = Path(config.data_dir) / "admin.token"

    async def start(self) -> None:
        from twinedge.runtime.store import open_store

        cfg = self.config
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

        app = create_app(self.service)
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

    async def run(self) -> None:
        """Serve until SIGINT/SIGTERM, then shut down gracefully."""
        try:
            await self.http.serve()
        finally:
            await self.stop()

    async def stop(self) -> None:
        if self.http is not None:
            self.http.should_exit = True
        if self.mqtt is not None:
            await self.mqtt.stop()
            self.mqtt = None
        if self.service is not None:
            await self.service.stop()
            self.service = None


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
