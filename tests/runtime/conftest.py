"""Fixtures of the runtime tests: a throw-away PostgreSQL server.

``postgres_url`` (session-scoped) yields the URL of a fresh database on a private server
started from Debian's binaries (``apt-get install postgresql``; found under
``/usr/lib/postgresql/*/bin``): ``initdb`` into a temporary folder, ``pg_ctl start`` on
127.0.0.1 with a free port and the unix socket in that folder, stopped and deleted at the
end of the session. As root (initdb refuses to run as root) the server runs as the
``postgres`` user when it exists, else ``nobody``. Set ``TWINEDGE_TEST_POSTGRES_URL`` to
use an existing server instead. Without either, tests that need PostgreSQL are skipped
with the reason.

``postgres_schema_url`` gives each test its own empty schema on that server (cheap
isolation: ``?options=-csearch_path=...``).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

_schema_ids = itertools.count()


def _pg_bin() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], user: str | None, **kw) -> subprocess.CompletedProcess:
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    env_url = os.environ.get("TWINEDGE_TEST_POSTGRES_URL")
    if env_url:
        yield env_url
        return
    pytest.importorskip(
        "psycopg", reason="psycopg 3 is not installed: pip install 'psycopg[binary]'"
    )
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries not found (apt-get install -y postgresql, or set "
            "TWINEDGE_TEST_POSTGRES_URL)"
        )
    user = None
    root = Path(tempfile.mkdtemp(prefix="twinedge-pg-"))
    if os.geteuid() == 0:
        try:
            user = "postgres"
            pw = pwd.getpwnam(user)
        except KeyError:
            user = "nobody"
            pw = pwd.getpwnam(user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if user is not None:
        os.chown(sock, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    p = _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
        ],
        user,
    )
    if p.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed: {p.stderr or p.stdout}")
    port = _free_port()
    opts = (
        f"-h 127.0.0.1 -p {port} -k {sock} -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=200"
    )
    log = root / "server.log"
    p = _run(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "start",
        ],
        user,
    )
    if p.returncode != 0:
        text = log.read_text() if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {p.stderr or p.stdout}\n{text}")
    try:
        import psycopg

        base = f"postgresql://postgres@127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(f"{base}/postgres", autocommit=True) as c:
                    c.execute("CREATE DATABASE twinedge_test")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"{base}/twinedge_test"
    finally:
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], user)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> str:
    """The URL of an empty schema of its own on the test server (for one test)."""
    import psycopg

    name = f"t{os.getpid()}_{next(_schema_ids)}"
    with psycopg.connect(postgres_url, autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        c.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in postgres_url else "?"
    return f"{postgres_url}{sep}options={quote(f'-csearch_path={name}')}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every service test runs on both stores: SQLite in ``tmp_path``, or an empty schema
    on the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 't.db'}"
    return request.getfixturevalue("postgres_schema_url")
