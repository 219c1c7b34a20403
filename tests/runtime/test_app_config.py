"""`twinedge serve` configuration: file + options, and clear errors for bad settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from twinedge.runtime.app import ConfigError, ServeConfig


def test_file_then_options(tmp_path):
    f = tmp_path / "serve.yaml"
    f.write_text("port: 9001\nmqtt: none\nretention_s: 3600\ndata_dir: d\n")
    cfg = ServeConfig.load(f, port=9002)
    assert (cfg.port, cfg.mqtt, cfg.retention_s) == (9002, "none", 3600)
    assert cfg.db_url.startswith("sqlite:///") and cfg.db_url.endswith("d/twins.db")
    assert ServeConfig.load(None, db="postgresql://u@h/db").db_url == "postgresql://u@h/db"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour: blue\n", "unknown setting 'colour'"),
        ("port: 70000\n", "port: got 70000; expected a port number"),
        ("mqtt: amqp://x\n", "mqtt: got 'amqp://x'; expected embedded, none or mqtt://"),
        ("db: mysql://x\n", "db: got 'mysql://x'; expected sqlite:///path or postgresql://"),
        ("retention_s: -5\n", "retention_s: got -5"),
        ("- 1\n", "expected a mapping of settings"),
        ("port: [\n", "not valid YAML"),
    ],
)
def test_bad_settings_say_what_and_where(tmp_path, text, message):
    f = tmp_path / "serve.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        ServeConfig.load(f)


def test_cli_reports_a_bad_config_in_one_line(tmp_path):
    f = tmp_path / "serve.yaml"
    f.write_text("port: nope\n")
    p = subprocess.run(
        [sys.executable, "-m", "twinedge", "serve", "--config", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "port: got 'nope'; expected a port number" in p.stderr
    p = subprocess.run(
        [sys.executable, "-m", "twinedge", "serve", "--config", str(tmp_path / "absent.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "no such configuration file" in p.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("retention_s: abc\n", "retention_s: got 'abc'; expected a positive number of seconds"),
        ("retention_s: .inf\n", "retention_s: got inf; expected a finite number"),
        ("batch_max: abc\n", "batch_max: got 'abc'; expected a whole number of mutations"),
        ("batch_max: 0\n", "batch_max: got 0; expected a whole number"),
        ("batch_max: 2.5\n", "batch_max: got 2.5; expected a whole number"),
        ("batch_max: 1e9\n", "batch_max: got 1000000000.0; expected a whole number"),
        ("port: true\n", "port: got True; expected a port number"),
        ("host: [a]\n", "host: got ['a']; expected text"),
        ("log_level: loud\n", "log_level: got 'loud'; expected one of critical, error"),
        ("mqtt_port: '1883'\n", "mqtt_port: got '1883'; expected a port number"),
        ("db: 5\n", "db: got 5; expected sqlite:///path"),
        ("hosts: remote\n", "hosts: got 'remote'; expected local (host processes on this"),
        ("hosts: 'ray:nowhere'\n", "hosts: got 'ray:nowhere'; expected local"),
        ("hosts: true\n", "hosts: got True; expected local"),
        ("ray: nowhere\n", "ray: got 'nowhere'; expected host:port of a Ray head, or auto"),
        ("ray: 6379\n", "ray: got 6379; expected host:port of a Ray head, or auto"),
        ("ray: 'head:port'\n", "ray: got 'head:port'; expected host:port"),
    ],
)
def test_every_setting_is_type_and_range_checked(tmp_path, text, message):
    f = tmp_path / "serve.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        ServeConfig.load(f)
    assert str(e.value) == f"{f}: {message}" or str(e.value).startswith(f"{f}: {message}")


def test_every_problem_is_reported_at_once_and_options_are_named(tmp_path):
    f = tmp_path / "serve.yaml"
    f.write_text("batch_max: abc\nretention_s: abc\ncolour: blue\n")
    with pytest.raises(ConfigError) as e:
        ServeConfig.load(f)
    lines = str(e.value).splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{f}: ") for line in lines)
    with pytest.raises(ConfigError, match=r"^--retention-s: retention_s: got -1\.0"):
        ServeConfig.load(None, retention_s=-1.0)


def test_the_data_dir_must_be_a_directory(tmp_path):
    a_file = tmp_path / "data"
    a_file.write_text("not a directory")
    with pytest.raises(ConfigError, match=r"data_dir: got .*; it is a file; expected a directory"):
        ServeConfig.load(None, data_dir=str(a_file))
    with pytest.raises(ConfigError, match="is a file; expected a path where a directory"):
        ServeConfig.load(None, data_dir=str(a_file / "sub"))
    assert ServeConfig.load(None, data_dir=str(tmp_path / "new" / "dir")).data_dir.endswith("dir")


def _serve(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "twinedge", "serve", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("retention_s: abc", "retention_s: got 'abc'"),
        ("batch_max: abc", "batch_max: got 'abc'"),
        ("data_dir: FILE", "it is a file"),
    ],
)
def test_cli_exits_with_one_line_before_starting_anything(tmp_path, setting, needle):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    data = tmp_path / "data"
    port = _free_port()
    f = tmp_path / "serve.yaml"
    body = f"host: 127.0.0.1\nport: {port}\nmqtt: none\ndata_dir: {data}\n"
    f.write_text(body + setting.replace("FILE", str(a_file)) + "\n")
    p = _serve("--config", f)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {f}: ") and needle in lines[0]
    assert "twinedge serve: http://" not in p.stderr  # the start-up banner never came
    assert not data.exists()  # the store was never opened


def test_cli_data_dir_option_that_is_a_file(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    p = _serve("--data-dir", a_file, "--port", _free_port(), "--mqtt", "none")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip() == (
        f"error: --data-dir: data_dir: got {str(a_file)!r}; it is a file; expected a "
        "directory (or a path where one can be created)"
    )


# ------------------------------------------------------------ the hosts of a network


@pytest.mark.parametrize(
    ("settings", "edge_hosts"),
    [
        ({"network": "city-small"}, "local"),  # the default with a network
        ({"network": "city-small", "hosts": "local"}, "local"),
        ({"network": "city-small", "hosts": "none"}, None),
        ({"network": "city-small", "ray": "10.0.0.5:6379"}, "ray:10.0.0.5:6379"),
        ({"network": "city-small", "hosts": "ray:10.0.0.5:6379"}, "ray:10.0.0.5:6379"),
        (
            {"network": "city-small", "hosts": "ray:10.0.0.5:6379", "ray": "10.0.0.5:6379"},
            "ray:10.0.0.5:6379",
        ),
        ({"network": "city-small", "ray": "auto"}, "ray:auto"),
        ({}, None),  # no network: no host processes
        ({"hosts": "none"}, None),  # says what is true anyway
    ],
)
def test_where_the_hosts_run_from_each_channel(tmp_path, settings, edge_hosts):
    """The same settings from the file, the environment or the options: the same hosts."""
    f = tmp_path / "serve.yaml"
    f.write_text("".join(f"{k}: '{v}'\n" for k, v in settings.items()))
    env = {f"TWINEDGE_{k.upper()}": v for k, v in settings.items()}
    for cfg in (
        ServeConfig.load(f),
        ServeConfig.load(None, env=env),
        ServeConfig.load(None, **settings),
    ):
        assert cfg.edge_hosts == edge_hosts
        assert (cfg.hosts, cfg.ray) == (settings.get("hosts"), settings.get("ray"))


@pytest.mark.parametrize(
    ("file", "env", "options", "message"),
    [
        (
            {"network": "n.yaml"},
            {"TWINEDGE_RAY": "head:6379"},
            {"hosts": "local"},
            "TWINEDGE_RAY: ray: got 'head:6379', but --hosts: hosts: got 'local'; give one of "
            "them (--ray ADDRESS is --hosts ray:ADDRESS)",
        ),
        (
            {"network": "n.yaml", "hosts": "ray:a:1"},
            {},
            {"ray": "b:2"},
            "--ray: ray: got 'b:2', but FILE: hosts: got 'ray:a:1'; give one of them "
            "(--ray ADDRESS is --hosts ray:ADDRESS)",
        ),
        (
            {"network": "n.yaml", "hosts": "none"},
            {"TWINEDGE_RAY": "head:6379"},
            {},
            "TWINEDGE_RAY: ray: got 'head:6379', but FILE: hosts: got 'none'; give one of "
            "them (--ray ADDRESS is --hosts ray:ADDRESS)",
        ),
        (
            {},
            {"TWINEDGE_HOSTS": "local"},
            {},
            "TWINEDGE_HOSTS: hosts: got 'local'; host processes serve a network: give "
            "--network too",
        ),
        (
            {"ray": "head:6379"},
            {},
            {},
            "FILE: ray: got 'head:6379'; host actors serve a network: give --network too",
        ),
        (
            {},
            {},
            {"behaviour": "dead-reckoning"},
            "--behaviour: behaviour: got 'dead-reckoning'; behaviours run on the host "
            "processes of a network: give --network too",
        ),
        (
            {"network": "n.yaml", "behaviour": "dead-reckoning"},
            {"TWINEDGE_HOSTS": "none"},
            {},
            "FILE: behaviour: got 'dead-reckoning'; behaviours run on host processes, and "
            "with hosts none (TWINEDGE_HOSTS) the twins stay in the core",
        ),
        (
            {},
            {},
            {"migration_method": "stop-and-copy"},
            "--migration-method: migration_method: got 'stop-and-copy'; twins migrate "
            "between the host processes of a network: give --network (and not --hosts none)",
        ),
        (
            {"network": "n.yaml", "hosts": "none"},
            {"TWINEDGE_MIGRATION_METHOD": "stop-and-copy"},
            {},
            "TWINEDGE_MIGRATION_METHOD: migration_method: got 'stop-and-copy'; twins migrate "
            "between the host processes of a network: give --network (and not --hosts none)",
        ),
        (
            {"migration_method": "teleport"},
            {},
            {},
            "FILE: migration_method: got 'teleport'; expected pre-copy or stop-and-copy",
        ),
    ],
)
def test_host_settings_that_do_not_fit_together_are_one_line_each(
    tmp_path, file, env, options, message
):
    f = tmp_path / "serve.yaml"
    f.write_text("".join(f"{k}: '{v}'\n" for k, v in file.items()) or "{}\n")
    with pytest.raises(ConfigError) as e:
        ServeConfig.load(f, env=env, **options)
    assert str(e.value) == message.replace("FILE", str(f))


def test_behaviours_run_on_the_default_host_processes():
    cfg = ServeConfig.load(None, network="n.yaml", behaviour="robot=dead-reckoning")
    assert (cfg.edge_hosts, cfg.behaviour) == ("local", "robot=dead-reckoning")
