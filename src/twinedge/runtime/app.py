"""Wiring and operations of ``twinedge serve``: configuration, start-up, graceful shutdown.

Configuration: one settings model, :class:`ServeConfig`, filled from four layers, each
over the one before: the defaults, a YAML file (``--config`` or ``TWINEDGE_CONFIG``), the
environment (``TWINEDGE_`` + the setting's name in capitals: ``TWINEDGE_PORT``,
``TWINEDGE_DB``, ``TWINEDGE_MQTT``, ...) and the command-line options. Every layer goes
through the same checks, and a bad value is reported as ``WHERE: setting: got VALUE;
expected WHAT`` with WHERE the file, the variable or the option. (The settings are few and
flat, and the checks give messages pydantic's would not, so this is plain code rather
than a settings library.)

Start-up claims what can fail in the order an operator fixes it, before anything is
written: the HTTP port, the database, then MQTT (the embedded broker's port, or the first
connection to an external broker). A failure is one line saying what, where and which
setting to change (:class:`StartupError`) and a non-zero exit; nothing started so far is
left running. The admin key is made and the banner printed only once all of them work.

Start-up: open the store (SQLite in the data directory unless ``db`` names PostgreSQL),
load the twins, create the service admin key on first start (its token is written to
``DATA_DIR/admin.token``, mode 0600), with a network the edge hosts' token (made on the first
start, in ``DATA_DIR/hosts.token``, mode 0600), start MQTT (the embedded broker unless ``mqtt``
names an external one), with a network its host processes (one ``twinedge host`` per host
on this machine by default; Ray actors with ``ray``; none with ``hosts: none``), then
serve HTTP. Shutdown (SIGINT/SIGTERM): stop taking HTTP requests and MQTT messages, stop
the host processes, let the writer commit everything already accepted, close the store —
nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import uvicorn

from twinedge.errors import InputError, TwinedgeError
from twinedge.gcpauses import settle
from twinedge.runtime.service import TwinService
from twinedge.scenario.inputs import load_yaml, read_text

log = logging.getLogger("twinedge.serve")


class ConfigError(TwinedgeError):
    """A bad ``twinedge serve`` configuration."""


class StartupError(TwinedgeError):
    """``twinedge serve`` could not start: a port in use, a database or broker out of
    reach. One line: what failed, where, and the setting that names it."""


ENV_PREFIX = "TWINEDGE_"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


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


def _flag(v: Any) -> str | None:
    return (
        None
        if isinstance(v, bool)
        else f"expected one of {'/'.join(_TRUE)} or {'/'.join(_FALSE[:-1])}"
    )


def _ray_address(v: str) -> bool:
    """``auto`` or ``host:port`` of a Ray head."""
    host, _, port = v.rpartition(":")
    return v == "auto" or (bool(host.strip()) and port.isdigit() and v.strip() == v)


def _hosts(v: Any) -> str | None:
    if v is None or v in ("local", "none"):
        return None
    if isinstance(v, str) and v.startswith("ray:") and _ray_address(v.removeprefix("ray:")):
        return None
    return (
        "expected local (host processes on this machine), ray:ADDRESS (host actors on the "
        "Ray cluster whose head is at ADDRESS, host:port) or none (the twins stay in the core)"
    )


def _ray(v: Any) -> str | None:
    if v is None or (isinstance(v, str) and _ray_address(v)):
        return None
    return "expected host:port of a Ray head, or auto"


def _behaviour(v: Any) -> str | None:
    if (why := _text(v)) is not None or v == "default":
        return why
    from twinedge.orchestrator.live import parse_behaviours

    try:
        parse_behaviours(v)
    except ValueError as exc:
        return f"{exc}"
    return None


def _migration_method(v: Any) -> str | None:
    from twinedge.edge.migrate import MIGRATION_METHODS

    if v in MIGRATION_METHODS:
        return None
    return "expected " + " or ".join(MIGRATION_METHODS)


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
    "hosts": _hosts,
    "ray": _ray,
    "behaviour": _behaviour,
    "migration_method": _migration_method,
    "otel": _flag,
}
# how a setting is read from an environment variable (text otherwise); "null" (or
# "none") clears the settings that may be null
_INTS = {"port", "mqtt_port", "batch_max"}
_FLOATS = {"retention_s", "cycle_s", "placement_period_s", "forecast_horizon_s"}
_NULLABLE_NUMBERS = {"retention_s", "placement_period_s"}
_BOOLS = {"otel"}


def env_name(setting: str) -> str:
    """The environment variable of a setting.

    Examples:
        >>> env_name("mqtt_port")
        'TWINEDGE_MQTT_PORT'
    """
    return ENV_PREFIX + setting.upper()


def _from_env(name: str, text: str) -> Any:
    """A setting's value from the text of its variable; text that does not convert is
    kept as it is, so the checks report it with the variable's name."""
    t = text.strip()
    if name in _NULLABLE_NUMBERS and t.lower() in ("null", "none"):
        return None
    if name in _BOOLS:
        low = t.lower()
        return True if low in _TRUE else False if low in _FALSE else text
    try:
        if name in _INTS:
            return int(t)
        if name in _FLOATS:
            return float(t)
    except ValueError:
        return text
    return text


def _settings(cls: type) -> list[Any]:
    """The settings of a config class (its dataclass fields taken by ``__init__``)."""
    return [f for f in fields(cls) if f.init]


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass
class ServeConfig:
    """Settings of ``twinedge serve``: defaults, then a YAML file, then ``TWINEDGE_*``
    environment variables, then command-line options, each over the one before.

    :meth:`load` validates every setting (type, range, unknown keys; the data directory
    must be a directory or creatable) before anything starts, and raises
    :class:`ConfigError` with one ``WHERE: setting: got VALUE; expected WHAT`` line per
    problem (WHERE is the file, the ``TWINEDGE_*`` variable, or ``--option`` for a
    command-line option).

    Examples:
        >>> cfg = ServeConfig.load(None, env={"TWINEDGE_PORT": "9000", "TWINEDGE_MQTT": "none"}, port=9001)
        >>> (cfg.port, cfg.mqtt)
        (9001, 'none')
        >>> try:
        ...     ServeConfig.load(None, env={"TWINEDGE_PORT": "http"})
        ... except ConfigError as e:
        ...     print(e)
        TWINEDGE_PORT: port: got 'http'; expected a port number 0..65535
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
    # with a network: "local" (the default): a `twinedge host` process per host of the
    # network; "ray:ADDRESS": Ray actors; "none": the twins stay in the core
    hosts: str | None = None
    ray: str | None = None  # a Ray head's host:port: the same as hosts "ray:ADDRESS"
    behaviour: str = "default"  # what twins run on their host: SPEC, or KIND=SPEC,...
    # how a live twin moves between hosts: pre-copy, or the stop-and-copy baseline
    migration_method: str = "pre-copy"
    otel: bool = False  # OpenTelemetry traces (needs twinedge[otel])
    # where each setting that is not a default came from: a file, variable or --option
    sources: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def load(
        cls, path: str | Path | None, *, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> ServeConfig:
        """Read the YAML file at ``path`` (if any; else ``TWINEDGE_CONFIG`` of ``env``),
        apply the ``TWINEDGE_*`` variables of ``env`` (``None``: none; the command line
        passes ``os.environ``; an empty variable counts as not set), then ``overrides``
        (the command-line options; ``None``: not given), and validate the result.

        Raises:
            ConfigError: one line per problem, each naming where the value came from.
        """
        env = env or {}
        data: dict[str, Any] = {}
        where: dict[str, str] = {}
        if path is None and env.get(ENV_PREFIX + "CONFIG"):
            path = env[ENV_PREFIX + "CONFIG"]
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
        for f in _settings(cls):
            text = env.get(env_name(f.name))
            if text:
                data[f.name] = _from_env(f.name, text)
                where[f.name] = env_name(f.name)
        for k, v in overrides.items():
            if v is not None:
                data[k] = v
                where[k] = "--" + str(k).replace("_", "-")
        known = {f.name for f in _settings(cls)}
        problems = [
            f"{where[k]}: unknown setting {k!r}; known: {', '.join(sorted(known))}"
            for k in data
            if k not in known
        ]
        cfg = cls(**{k: v for k, v in data.items() if k in known})
        cfg.check(where, problems)
        cfg.sources = where
        return cfg

    def check(self, where: dict[str, str] | None = None, problems: Sequence[str] = ()) -> None:
        """Validate every setting; raise :class:`ConfigError` with one line per problem
        (``problems`` found before first), each prefixed with where the setting came from
        when ``where`` names it."""
        where = where or {}
        bad = {name: why for name, check in _CHECKS.items() if (why := check(getattr(self, name)))}
        problems = list(problems) + [
            f"{where[name] + ': ' if name in where else ''}{name}: got "
            f"{_show(getattr(self, name))}; {why}"
            for name, why in bad.items()
        ]
        if not bad.keys() & {"network", "hosts", "ray", "behaviour", "migration_method"}:
            problems += self._host_problems(where)
        if problems:
            raise ConfigError("\n".join(problems))
        self.log_level = self.log_level.lower()

    def _host_problems(self, where: dict[str, str]) -> list[str]:
        """What does not fit together among ``network``, ``hosts``, ``ray``,
        ``behaviour`` and ``migration_method`` (each of them valid on its own)."""
        out = []

        def at(name: str) -> str:
            return f"{where.get(name, '--' + name)}: {name}: got {getattr(self, name)!r}"

        if self.network is None:
            if self.hosts not in (None, "none"):
                out.append(f"{at('hosts')}; host processes serve a network: give --network too")
            if self.ray is not None:
                out.append(f"{at('ray')}; host actors serve a network: give --network too")
        if self.ray is not None and self.hosts is not None and self.hosts != f"ray:{self.ray}":
            out.append(
                f"{at('ray')}, but {at('hosts')}; give one of them (--ray ADDRESS is "
                "--hosts ray:ADDRESS)"
            )
        if self.migration_method != "pre-copy" and (self.network is None or self.hosts == "none"):
            out.append(
                f"{at('migration_method')}; twins migrate between the host processes of a "
                "network: give --network (and not --hosts none)"
            )
        if self.behaviour != "default" and self.network is None:
            out.append(
                f"{at('behaviour')}; behaviours run on the host processes of a network: "
                "give --network too"
            )
        elif self.behaviour != "default" and self.hosts == "none":
            out.append(
                f"{at('behaviour')}; behaviours run on host processes, and with hosts none "
                f"({where.get('hosts', '--hosts')}) the twins stay in the core"
            )
        return out

    @property
    def edge_hosts(self) -> str | None:
        """Where the host processes of the live network run: ``"local"`` (this machine;
        the default with a network), ``"ray:ADDRESS"`` (``ray`` or ``hosts``), or
        ``None``: no network, or ``hosts: none`` (the twins stay in the core, and the
        orchestrator's placement only records where they would run).

        Examples:
            >>> ServeConfig(network="city-small").edge_hosts
            'local'
            >>> ServeConfig(network="city-small", ray="head:6379").edge_hosts
            'ray:head:6379'
            >>> ServeConfig(network="city-small", hosts="none").edge_hosts is None
            True
        """
        if self.network is None or self.hosts == "none":
            return None
        if self.ray is not None:
            return f"ray:{self.ray}"
        return self.hosts or "local"

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{Path(self.data_dir).resolve() / 'twins.db'}"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in _settings(type(self))}


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


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (psycopg's span several), secrets masked."""
    from twinedge.runtime.api.redact import redact

    return redact(" ".join(str(exc).split()) or type(exc).__name__)


def os_reason(exc: BaseException) -> str:
    """The operating system's reason behind ``exc`` (e.g. "address already in use"), or
    its message."""
    e: BaseException | None = exc
    while e is not None:
        if isinstance(e, OSError) and e.errno is not None:
            return os.strerror(e.errno).lower()
        e = e.__cause__ or e.__context__
    return _one_line(exc)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_tcp(host: str, port: int, what: str, where: str) -> socket.socket:
    """A listening TCP socket on ``host:port`` (as uvicorn would open it).

    Raises:
        StartupError: the port is in use, or the address is not this machine's.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise StartupError(
            f"cannot listen for {what} on {_address(host, port)}: {os_reason(exc)} ({where})"
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"cannot listen for {what} on {_address(host, port)}: {os_reason(exc)} ({where})"
        ) from None
    sock.set_inheritable(True)
    return sock


def _register_url_secrets(*urls: str | None) -> None:
    """Mask the passwords of these URLs in every log line."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    from twinedge.runtime.api.redact import register_secret

    for url in urls:
        if not url or "://" not in url:
            continue
        u = urlsplit(url)
        with contextlib.suppress(ValueError):
            if u.password:
                register_secret(unquote(u.password))
                register_secret(u.password)
        for k, v in parse_qsl(u.query):
            if k.lower() in ("password", "token"):
                register_secret(v)


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
        self.socket: socket.socket | None = None  # the HTTP listening socket

    async def start(self) -> None:
        """Claim the HTTP port, open the store, start MQTT, then the rest (see the module
        docstring); on any failure stop what was started and re-raise.

        Raises:
            StartupError: a port in use, a database or MQTT broker out of reach.
            ScenarioError, InputError, PolicyError: the ``network`` cannot be built.
        """
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    def _where(self, name: str) -> str:
        """Where a setting came from, for a start-up error: the file, variable or option,
        or how to set it when it is the default."""
        src = self.config.sources.get(name)
        if src is not None:
            return f"from {src}"
        return f"the default; set --{name.replace('_', '-')} or {env_name(name)}"

    async def _start(self) -> None:
        from twinedge.runtime.api import create_app
        from twinedge.runtime.api.redact import install_log_redaction
        from twinedge.runtime.store import open_store

        cfg = self.config
        _register_url_secrets(cfg.db_url, cfg.mqtt)
        if cfg.otel:  # OpenTelemetry missing: say so before anything starts
            from twinedge.runtime.tracing import configure

            configure()
        if cfg.network is not None:  # a bad scenario or policy stops serve before it starts
            self.live = live_network(None, cfg)
        self.socket = listen_tcp(cfg.host, cfg.port, "HTTP", self._where("port"))
        Path(cfg.data_dir).mkdir(parents=True, exist_ok=True)
        try:
            store = open_store(cfg.db_url)  # nothing else runs yet
        except Exception as exc:
            raise self._db_error(exc) from None
        self.service = TwinService(store, retention_s=cfg.retention_s, batch_max=cfg.batch_max)
        try:
            await self.service.start()
        except Exception as exc:
            raise self._db_error(exc) from None
        if self.live is not None:
            self.live.service = self.service
        if self.live is not None and cfg.edge_hosts is not None:
            # before MQTT: until the hosts answer, a device report (or any local write) of
            # a twin a host serves is refused by the core's writer, never applied here
            self._wire_edge()
        if cfg.mqtt not in (None, "none"):
            self.mqtt = await self._start_mqtt()
        token = await self.service.ensure_admin_key()
        if token is not None:
            if self.admin_token_file.exists():
                self.admin_token_file.unlink()
            _write_secret(self.admin_token_file, token)
            log.warning("created the service admin key; its token is in %s", self.admin_token_file)
        if cfg.network is not None:  # edge hosts present it to /internal
            hosts_file = Path(cfg.data_dir) / "hosts.token"
            kept = hosts_file.read_text().strip() if hosts_file.is_file() else ""
            # kept across restarts: host processes that outlived a core still hold it
            self.hosts_token = kept or secrets.token_urlsafe(32)
            if not kept:
                _write_secret(hosts_file, self.hosts_token)
            from twinedge.runtime.api.redact import register_secret

            register_secret(self.hosts_token)
            if cfg.edge_hosts is not None:
                await self._start_hosts()
        app = create_app(self.service, live=self.live, hosts_token=self.hosts_token, mqtt=self.mqtt)
        if cfg.otel:
            from twinedge.runtime.tracing import instrument_app

            instrument_app(app, self.service)
        ucfg = uvicorn.Config(
            app,
            host=cfg.host,
            port=self.port,
            log_level=cfg.log_level,
            lifespan="off",
            ws_max_size=1 << 20,
            ws_ping_interval=15,
            timeout_graceful_shutdown=5,
        )
        # after uvicorn.Config, which (re)configures uvicorn's loggers: no secrets in logs
        install_log_redaction(*logging.getLogger().handlers)
        self.http = _HttpServer(ucfg)
        self.http.service = self.service
        if self.live is not None:
            self.live.start()

    def _db_error(self, exc: Exception) -> StartupError:
        from twinedge.runtime.api.redact import redact_url

        url, why = redact_url(self.config.db_url), _one_line(exc)
        what = why if url in why else f"cannot open the database {url}: {why}"
        return StartupError(f"{what} ({self._where('db')})")

    async def _start_mqtt(self) -> Any:
        from twinedge.runtime.mqtt import start_mqtt

        cfg = self.config
        assert self.service is not None
        if cfg.mqtt == "embedded":
            quiet = logging.getLogger("amqtt.broker")  # it logs a traceback, then raises
            level = quiet.level
            quiet.setLevel(logging.CRITICAL)
            try:
                return await start_mqtt(self.service, None, host=cfg.mqtt_host, port=cfg.mqtt_port)
            except Exception as exc:
                raise StartupError(
                    f"cannot listen for MQTT on {_address(cfg.mqtt_host, cfg.mqtt_port)}: "
                    f"{os_reason(exc)} ({self._where('mqtt_port')}; or --mqtt none)"
                ) from None
            finally:
                quiet.setLevel(level)
        assert cfg.mqtt is not None
        try:
            return await start_mqtt(self.service, cfg.mqtt)
        except (ConnectionError, ValueError) as exc:
            raise StartupError(f"{_one_line(exc)} ({self._where('mqtt')})") from None

    @property
    def port(self) -> int:
        """The HTTP port listened on (the one chosen with ``port: 0``)."""
        if self.socket is not None:
            return int(self.socket.getsockname()[1])
        return self.config.port

    async def _start_hosts(self) -> None:
        """One host process per host of the network: on this machine (``local``) or as
        Ray actors on the nodes of the edge sites (``ray:ADDRESS``)."""
        from twinedge.orchestrator.hosts import HostProcesses
        from twinedge.orchestrator.rayhosts import RayHosts

        cfg = self.config
        mode = cfg.edge_hosts
        assert mode is not None
        token_file = Path(cfg.data_dir) / "hosts.token"
        args = (
            self.live.network.host_ids,
            Path(cfg.data_dir).resolve() / "hosts",
            f"http://{cfg.host}:{self.port}",
            token_file,
        )
        self.host_processes = (
            HostProcesses(*args) if mode == "local" else RayHosts(mode.removeprefix("ray:"), *args)
        )
        await self.host_processes.start()
        self.live.hosts = self.host_processes.remotes
        self.live.host_processes = self.host_processes

    def _wire_edge(self) -> None:
        """The service sends the writes, desired state, commands and deletions of twins
        that host processes serve through the live network (which knows the hosts)."""
        assert self.service is not None and self.live is not None
        self.service.edge_owner = self.live.edge_owner
        self.service.edge_desired = self.live.forward_desired
        self.service.edge_write = self.live.edge_write
        self.service.edge_command = self.live.edge_command
        self.service.edge_retire = self.live.retire

    async def run(self) -> None:
        """Serve until SIGINT/SIGTERM, then shut down gracefully."""
        try:
            await self.http.serve(sockets=[self.socket] if self.socket is not None else None)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop every part, each even when an earlier one failed to stop cleanly (the
        first failure is raised once all are stopped)."""
        if self.http is not None:
            self.http.should_exit = True
        errors: list[Exception] = []
        for name in ("live", "host_processes", "mqtt", "service"):  # in this order
            part = getattr(self, name)
            if part is None:
                continue
            setattr(self, name, None)
            try:
                await part.stop()
            except Exception as exc:  # the next parts are stopped all the same
                log.error("stopping the %s failed", name.replace("_", " "), exc_info=exc)
                errors.append(exc)
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        if errors:
            raise errors[0]


def check_local_hosts(cfg: ServeConfig, n_hosts: int) -> None:
    """One machine runs at most ``MAX_LOCAL_HOSTS`` host processes.

    Raises:
        ConfigError: the network has ``n_hosts`` hosts, more than that, and they would run
            on this machine; the message names both ways out (``--ray``, ``--hosts none``).

    Examples:
        >>> check_local_hosts(ServeConfig(network="city-small", hosts="none"), 60)
        >>> try:
        ...     check_local_hosts(ServeConfig(network="city"), 60)
        ... except ConfigError as e:
        ...     print(e)  # doctest: +NORMALIZE_WHITESPACE
        --network: network: got 'city'; its 60 hosts are more than the 16 host processes
        one machine runs: run them as Ray actors (--ray ADDRESS) or keep the twins in the
        core (--hosts none)
    """
    from twinedge.orchestrator.hosts import MAX_LOCAL_HOSTS

    if cfg.edge_hosts != "local" or n_hosts <= MAX_LOCAL_HOSTS:
        return
    name = "hosts" if "hosts" in cfg.sources else "network"
    got = f"{cfg.sources.get(name, '--' + name)}: {name}: got {getattr(cfg, name)!r}"
    if name == "hosts":
        got += f" with the network {cfg.network!r}"
    raise ConfigError(
        f"{got}; its {n_hosts} hosts are more than the {MAX_LOCAL_HOSTS} host processes one "
        "machine runs: run them as Ray actors (--ray ADDRESS) or keep the twins in the core "
        "(--hosts none)"
    )


def live_network(service: TwinService | None, cfg: ServeConfig) -> Any:
    """The live orchestrator of ``cfg.network`` over ``service`` (not started; the
    service may be attached later as ``.service``).

    Raises:
        ScenarioError, InputError: the scenario cannot be read or its network built.
        PolicyError: a policy cannot be resolved.
        ConfigError: more hosts than one machine runs host processes for
            (:func:`check_local_hosts`).
    """
    import numpy as np

    from twinedge.edge.migrate import MigrationMethod
    from twinedge.engine.record import LedgerRecorder
    from twinedge.orchestrator import Orchestrator
    from twinedge.orchestrator.live import LiveNetwork, parse_behaviours
    from twinedge.scenario import load_scenario
    from twinedge.world import build_world

    assert cfg.network is not None
    sc = load_scenario(cfg.network)
    world_rng, _, policy_rng = np.random.default_rng(sc.run.seed).spawn(3)
    world = build_world(sc, world_rng, network_only=True)
    check_local_hosts(cfg, len(world.host_ids))  # before the ledger is opened
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
    return LiveNetwork(
        service,
        sc,
        world,
        orch,
        forecast_horizon_s=cfg.forecast_horizon_s,
        behaviours=parse_behaviours(cfg.behaviour),
        migration_method=cast(MigrationMethod, cfg.migration_method),
    )


def banner(server: Server) -> str:
    """The start-up line: where the service listens and what it uses (no passwords)."""
    from twinedge.runtime.api.redact import redact_url

    cfg = server.config
    if cfg.mqtt == "embedded":
        mqtt = f"embedded on {_address(cfg.mqtt_host, getattr(server.mqtt, 'port', cfg.mqtt_port))}"
    else:
        mqtt = redact_url(str(cfg.mqtt))
    http = f"http://{_address(cfg.host, server.port)}/"
    return f"twinedge serve: {http}  mqtt: {mqtt}  db: {redact_url(cfg.db_url)}"


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
        settle()  # the libraries and the twins loaded: never walked by the collector again
        print(banner(server), file=sys.stderr, flush=True)
        await server.run()

    try:  # uvloop's event loop makes the MQTT and HTTP paths markedly cheaper
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        asyncio.run(main())
    else:
        uvloop.run(main())
