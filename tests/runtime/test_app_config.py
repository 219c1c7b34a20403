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
