"""Operating `twinedge serve`: settings from file, environment and options; passwords
never in its output; start-up failures as one line; health and metrics of the store.

The start-up tests run the real command (``python -m twinedge serve``) against a port
this test holds, a PostgreSQL URL to a closed port, an MQTT URL to a closed port; the
MQTT-broker side of health and redaction is in ``tests/runtime/mqtt/test_mqtt_operations.py``
(it needs Mosquitto).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinedge.runtime.api.redact import RedactTokens, redact, redact_url, register_secret
from twinedge.runtime.app import ConfigError, ServeConfig, env_name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A loopback port nobody listens on (bound and closed again: connections refused)."""
    return free_port()


def serve_env(**extra: str) -> dict[str, str]:
    """The environment of a child ``twinedge serve``: this one without TWINEDGE_* (a
    developer's own settings must not leak into the test) plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINEDGE_")}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_serve(*args: object, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "twinedge", "serve", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or serve_env(),
    )


# ----------------------------------------------------------------------------- settings
def test_every_setting_has_a_variable_and_the_layers_stack(tmp_path):
    f = tmp_path / "serve.yaml"
    f.write_text("port: 9001\nmqtt_port: 1901\nbatch_max: 10\nlog_level: debug\n")
    env = {
        "TWINEDGE_PORT": "9002",
        "TWINEDGE_MQTT_PORT": "1902",
        "TWINEDGE_DB": "postgresql://u@h/d",
    }
    cfg = ServeConfig.load(f, env=env, port=9003)
    # flag > environment > file > default, setting by setting
    assert (cfg.port, cfg.mqtt_port, cfg.batch_max, cfg.log_level, cfg.host) == (
        9003,
        1902,
        10,
        "debug",
        "127.0.0.1",
    )
    assert cfg.db_url == "postgresql://u@h/d"
    assert cfg.sources == {
        "port": "--port",
        "mqtt_port": "TWINEDGE_MQTT_PORT",
        "db": "TWINEDGE_DB",
        "batch_max": str(f),
        "log_level": str(f),
    }
    # every setting of the model can come from the environment
    texts = {
        "host": "0.0.0.0",
        "port": "8081",
        "data_dir": str(tmp_path / "d"),
        "db": "sqlite:///x.db",
        "mqtt": "mqtt://svc:pw@broker:1884",
        "mqtt_host": "0.0.0.0",
        "mqtt_port": "1884",
        "retention_s": "3600",
        "batch_max": "500",
        "log_level": "WARNING",
        "network": "city-small",
        "placement": "nearest",
        "migration": "never",
        "cycle_s": "2.5",
        "placement_period_s": "60",
        "ledger": "none",
        "forecast_horizon_s": "0",
        "hosts": "ray:head:6379",
        "ray": "head:6379",
        "behaviour": "robot=dead-reckoning",
        "migration_method": "stop-and-copy",
        "otel": "yes",
    }
    assert set(texts) == set(ServeConfig().to_dict())
    cfg = ServeConfig.load(None, env={env_name(k): v for k, v in texts.items()})
    assert cfg.to_dict() == {
        "host": "0.0.0.0",
        "port": 8081,
        "data_dir": str(tmp_path / "d"),
        "db": "sqlite:///x.db",
        "mqtt": "mqtt://svc:pw@broker:1884",
        "mqtt_host": "0.0.0.0",
        "mqtt_port": 1884,
        "retention_s": 3600.0,
        "batch_max": 500,
        "log_level": "warning",
        "network": "city-small",
        "placement": "nearest",
        "migration": "never",
        "cycle_s": 2.5,
        "placement_period_s": 60.0,
        "ledger": "none",
        "forecast_horizon_s": 0.0,
        "hosts": "ray:head:6379",
        "ray": "head:6379",
        "behaviour": "robot=dead-reckoning",
        "migration_method": "stop-and-copy",
        "otel": True,
    }
    assert cfg.edge_hosts == "ray:head:6379"


def test_config_file_from_the_environment_and_empty_or_null_variables(tmp_path):
    f = tmp_path / "serve.yaml"
    f.write_text("port: 9001\nretention_s: 60\n")
    cfg = ServeConfig.load(None, env={"TWINEDGE_CONFIG": str(f), "TWINEDGE_PORT": ""})
    assert (cfg.port, cfg.retention_s) == (9001, 60)  # an empty variable is not set
    cfg = ServeConfig.load(None, env={"TWINEDGE_CONFIG": str(f), "TWINEDGE_RETENTION_S": "null"})
    assert cfg.retention_s is None and cfg.sources["retention_s"] == "TWINEDGE_RETENTION_S"
    # an explicit file wins over TWINEDGE_CONFIG
    g = tmp_path / "other.yaml"
    g.write_text("port: 9005\n")
    assert ServeConfig.load(g, env={"TWINEDGE_CONFIG": str(f)}).port == 9005
    with pytest.raises(ConfigError, match="no such configuration file"):
        ServeConfig.load(None, env={"TWINEDGE_CONFIG": str(tmp_path / "absent.yaml")})


@given(
    default_layer=st.sampled_from(["file", "env", "flag"]),
    values=st.lists(st.integers(1, 65535), min_size=3, max_size=3, unique=True),
    given_layers=st.sets(st.sampled_from(["file", "env", "flag"])),
)
def test_the_highest_layer_given_wins(tmp_path_factory, default_layer, values, given_layers):
    file_port, env_port, flag_port = values
    f = tmp_path_factory.mktemp("c") / "serve.yaml"
    f.write_text(f"port: {file_port}\n" if "file" in given_layers else "{}\n")
    env = {"TWINEDGE_PORT": str(env_port)} if "env" in given_layers else {}
    flag = flag_port if "flag" in given_layers else None
    cfg = ServeConfig.load(f, env=env, port=flag)
    expected = (
        flag_port
        if "flag" in given_layers
        else env_port
        if "env" in given_layers
        else file_port
        if "file" in given_layers
        else 8080
    )
    assert cfg.port == expected


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "TWINEDGE_PORT",
            "http",
            "TWINEDGE_PORT: port: got 'http'; expected a port number 0..65535",
        ),
        (
            "TWINEDGE_PORT",
            "70000",
            "TWINEDGE_PORT: port: got 70000; expected a port number 0..65535",
        ),
        (
            "TWINEDGE_BATCH_MAX",
            "2.5",
            "TWINEDGE_BATCH_MAX: batch_max: got '2.5'; expected a whole number of mutations 1..100,000",
        ),
        (
            "TWINEDGE_RETENTION_S",
            "-1",
            "TWINEDGE_RETENTION_S: retention_s: got -1.0; expected a positive number of seconds",
        ),
        (
            "TWINEDGE_MQTT",
            "amqp://x",
            "TWINEDGE_MQTT: mqtt: got 'amqp://x'; expected embedded, none or mqtt://user:pass@host:port",
        ),
        (
            "TWINEDGE_DB",
            "mysql://x",
            "TWINEDGE_DB: db: got 'mysql://x'; expected sqlite:///path or postgresql://user@host/db",
        ),
        (
            "TWINEDGE_OTEL",
            "maybe",
            "TWINEDGE_OTEL: otel: got 'maybe'; expected one of 1/true/yes/on or 0/false/no/off",
        ),
        (
            "TWINEDGE_LOG_LEVEL",
            "loud",
            "TWINEDGE_LOG_LEVEL: log_level: got 'loud'; expected one of critical, error",
        ),
        (
            "TWINEDGE_HOSTS",
            "remote",
            "TWINEDGE_HOSTS: hosts: got 'remote'; expected local (host processes on this "
            "machine), ray:ADDRESS (host actors on the Ray cluster whose head is at ADDRESS, "
            "host:port) or none (the twins stay in the core)",
        ),
        (
            "TWINEDGE_HOSTS",
            "ray:",
            "TWINEDGE_HOSTS: hosts: got 'ray:'; expected local",
        ),
        (
            "TWINEDGE_RAY",
            "head",
            "TWINEDGE_RAY: ray: got 'head'; expected host:port of a Ray head, or auto",
        ),
    ],
)
def test_a_bad_variable_is_named_with_the_expected_form(variable, value, message):
    with pytest.raises(ConfigError) as e:
        ServeConfig.load(None, env={variable: value})
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_cli_bad_variable_is_one_line_and_exit_2(tmp_path):
    p = run_serve("--data-dir", tmp_path / "d", env=serve_env(TWINEDGE_MQTT_PORT="mqtt"))
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip() == (
        "error: TWINEDGE_MQTT_PORT: mqtt_port: got 'mqtt'; expected a port number 0..65535"
    )
    assert not (tmp_path / "d").exists()


def test_cli_flag_beats_the_variable(tmp_path):
    """TWINEDGE_PORT names a port this test holds; --port a free one: serve starts."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        port = free_port()
        env = serve_env(TWINEDGE_PORT=str(busy), TWINEDGE_MQTT="none")
        proc = subprocess.Popen(
            [sys.executable, "-m", "twinedge", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            doc = wait_healthy(proc, port)
            assert doc["status"] == "ok" and "mqtt" not in doc
        finally:
            _out, err = stop(proc)
    assert f"twinedge serve: http://127.0.0.1:{port}/  mqtt: none" in err


def wait_healthy(proc: subprocess.Popen, port: int, deadline_s: float = 60) -> dict:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("serve did not become healthy")


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out, err


# ----------------------------------------------------------------------------- start-up
def one_error_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_busy_http_port(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        p = run_serve("--port", port, "--mqtt", "none", "--data-dir", tmp_path / "d")
    assert one_error_line(p) == (
        f"error: cannot listen for HTTP on 127.0.0.1:{port}: address already in use (from --port)"
    )
    assert not (tmp_path / "d").exists()  # nothing was opened before the port


def test_busy_mqtt_port_named_by_its_variable(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = serve_env(TWINEDGE_MQTT_PORT=str(port))
        p = run_serve("--port", free_port(), "--data-dir", tmp_path / "d", env=env)
    assert one_error_line(p) == (
        f"error: cannot listen for MQTT on 127.0.0.1:{port}: address already in use "
        "(from TWINEDGE_MQTT_PORT; or --mqtt none)"
    )
    assert not (tmp_path / "d" / "admin.token").exists()  # no admin key before MQTT ran


def test_unreachable_postgresql(tmp_path):
    port = closed_port()
    url = f"postgresql://twin:db-secret-1@127.0.0.1:{port}/twins"
    p = run_serve("--port", free_port(), "--mqtt", "none", "--data-dir", tmp_path, "--db", url)
    line = one_error_line(p)
    assert line.startswith(
        f"error: cannot connect to PostgreSQL at postgresql://twin:***@127.0.0.1:{port}/twins: "
    )
    assert "Connection refused" in line and line.endswith("(from --db)")
    assert "db-secret-1" not in p.stderr + p.stdout


def test_missing_sqlite_database_folder(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    url = f"sqlite:///{a_file}/twins.db"
    p = run_serve(
        "--port", free_port(), "--mqtt", "none", "--data-dir", tmp_path / "d", "--db", url
    )
    line = one_error_line(p)
    assert line.startswith(f"error: cannot open the database {url}: cannot create the folder")
    assert line.endswith("(from --db)")


def test_unreachable_external_broker(tmp_path):
    port = closed_port()
    env = serve_env(TWINEDGE_MQTT=f"mqtt://twinedge-service:broker-secret-1@127.0.0.1:{port}")
    p = run_serve("--port", free_port(), "--data-dir", tmp_path / "d", env=env)
    assert one_error_line(p) == (
        f"error: cannot connect to the MQTT broker at mqtt://127.0.0.1:{port}: "
        "[Errno 111] Connection refused (from TWINEDGE_MQTT)"
    )
    assert "broker-secret-1" not in p.stderr + p.stdout


# ----------------------------------------------------------------------------- redaction
def test_redact_masks_url_passwords_keywords_and_registered_secrets():
    assert redact("to postgresql://twin:s3cr%40t@db:5432/x failed") == (
        "to postgresql://twin:***@db:5432/x failed"
    )
    assert redact("mqtts://svc:a:b@c@broker:8883") == "mqtts://svc:***@broker:8883"
    assert redact("host=db password=hunter22 dbname=x") == "host=db password=*** dbname=x"
    assert redact("postgresql://db/x?sslmode=require&password=pw1") == (
        "postgresql://db/x?sslmode=require&password=***"
    )
    assert redact_url("mqtt://svc@broker") == "mqtt://svc@broker"  # nothing to hide
    register_secret("opaque-secret-value-7")
    assert redact("auth failed for opaque-secret-value-7 (x)") == "auth failed for *** (x)"
    assert redact("auth failed for opaque%2Dsecret") == "auth failed for opaque%2Dsecret"


def test_log_filter_redacts_arguments_objects_and_tracebacks():
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(RedactTokens())
    logger = logging.getLogger("test.operations.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("bridge: %s", ConnectionError("mqtt://svc:pw-1@h:1 refused"))
        try:
            raise RuntimeError("cannot open postgresql://u:pw-2@h/db")
        except RuntimeError:
            logger.exception("start failed for %s", "postgresql://u:pw-3@h/db")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    assert "mqtt://svc:***@h:1 refused" in text and "postgresql://u:***@h/db" in text
    assert "Traceback" in text  # the traceback is kept, only masked
    assert not any(f"pw-{i}" in text for i in (1, 2, 3))


# ----------------------------------------------------------------------------- store health
def domain_key(base: str, data: Path) -> dict[str, str]:
    """Headers with a write key of the domain ``ops``, made with the admin token."""
    admin = {"Authorization": f"Bearer {(data / 'admin.token').read_text().strip()}"}
    r = httpx.post(f"{base}/api/2/keys", json={"domain": "ops", "role": "admin"}, headers=admin)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_health_and_metrics_report_the_last_commit_error(tmp_path):
    """A real serve on SQLite; a trigger added from a second connection makes every
    commit of a new thing fail (as a full disk would), then is dropped again."""
    port, data = free_port(), tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "twinedge", "serve", "--port", str(port), "--mqtt", "none"],
        env=serve_env(TWINEDGE_DATA_DIR=str(data)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        doc = wait_healthy(proc, port)
        assert doc["commits"] == {"lastOkAt": None, "lastError": None}
        base = f"http://127.0.0.1:{port}"
        auth = domain_key(base, data)
        assert httpx.put(f"{base}/api/2/things/ops:a", json={}, headers=auth).status_code == 201
        ok_at = httpx.get(f"{base}/healthz").json()["commits"]["lastOkAt"]
        assert ok_at is not None
        db = sqlite3.connect(data / "twins.db")
        db.execute(
            "CREATE TRIGGER fail_commit BEFORE INSERT ON things "
            "BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END"
        )
        db.commit()
        r = httpx.put(f"{base}/api/2/things/ops:b", json={}, headers=auth)
        assert r.status_code in (500, 503), r.text
        h = httpx.get(f"{base}/healthz")
        assert h.status_code == 200  # the store still answers reads
        doc = h.json()
        assert doc["store"] is True and doc["commits"]["lastOkAt"] == ok_at
        assert "simulated disk failure" in doc["commits"]["lastError"]["message"]
        metrics = httpx.get(f"{base}/metrics").text
        assert "twinedge_store_up 1.0" in metrics
        # serve froze its heap once started, and times the collector's pauses
        frozen = re.search(r"^twinedge_gc_frozen_objects ([0-9.e+]+)$", metrics, re.M)
        assert frozen is not None and float(frozen.group(1)) > 10_000, metrics
        for gen in "012":
            assert f'twinedge_gc_pause_seconds_total{{generation="{gen}"}} ' in metrics
        # and refreezes what survives full collections (a deep one at most every 10 min)
        for counter in ("refreezes", "deep_collections"):
            assert re.search(rf"^twinedge_gc_{counter}_total [0-9.e+]+$", metrics, re.M), metrics
        assert "twinedge_last_commit_error_timestamp_seconds " in metrics
        assert "twinedge_commit_failures_total 0.0" not in metrics
        db.execute("DROP TRIGGER fail_commit")
        db.commit()
        db.close()
        assert httpx.put(f"{base}/api/2/things/ops:c", json={}, headers=auth).status_code == 201
        doc = httpx.get(f"{base}/healthz").json()
        assert doc["commits"]["lastOkAt"] >= doc["commits"]["lastError"]["at"]
    finally:
        stop(proc)


@pytest.mark.parametrize("option", ["--control-port", "--mqtt-port"])
def test_host_busy_port_is_one_line(tmp_path, option):
    token = tmp_path / "hosts.token"
    token.write_text("hosts-secret-token-9\n")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        ports = {"--control-port": free_port(), "--mqtt-port": free_port(), option: busy}
        p = subprocess.run(
            [sys.executable, "-m", "twinedge", "host", "--id", "h1", "--token-file", str(token),
             "--data-dir", str(tmp_path / "h"), *(str(x) for kv in ports.items() for x in kv)],
            capture_output=True, text=True, timeout=60, env=serve_env(),
        )  # fmt: skip
    what = "the control API" if option == "--control-port" else "MQTT"
    assert one_error_line(p) == (
        f"error: cannot listen for {what} on 127.0.0.1:{busy}: address already in use ({option})"
    )
    assert "hosts-secret-token-9" not in p.stdout + p.stderr
