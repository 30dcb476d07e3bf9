"""The throwaway test servers really start, serve and go away."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import create_engine, text

from tests import servers
from tests.processes import ROOT
from tests.servers import ServerUnavailable, find_postgres_bin, postgres_server, redis_server


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests exercise the real start-up path, whatever the environment says."""
    monkeypatch.delenv(servers.POSTGRES_URL_ENV, raising=False)
    monkeypatch.delenv(servers.REDIS_URL_ENV, raising=False)


@pytest.mark.usefixtures("no_overrides")
def test_postgres_server_serves_sql_and_goes_away() -> None:
    with postgres_server() as url:
        parts = urlsplit(url)
        assert parts.scheme == "postgresql+psycopg"
        assert parts.hostname == "127.0.0.1"
        assert parts.path == "/hub_test"

        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                assert conn.execute(text("select 1")).scalar_one() == 1
                conn.execute(text("create table probe (id integer primary key, name text not null)"))
                conn.execute(text("insert into probe (id, name) values (1, 'ok')"))
                assert conn.execute(text("select name from probe where id = 1")).scalar_one() == "ok"
                conn.execute(text("drop table probe"))
        finally:
            engine.dispose()  # close pooled connections before the server stops

    assert not _accepts_connections(parts.port)


@pytest.mark.usefixtures("no_overrides")
def test_redis_server_serves_and_goes_away() -> None:
    with redis_server() as url:
        parts = urlsplit(url)
        assert parts.scheme == "redis"
        assert parts.hostname == "127.0.0.1"

        client = redis.Redis.from_url(url)
        try:
            client.set("hub:probe", "value")
            assert client.get("hub:probe") == b"value"
        finally:
            client.close()

    assert not _accepts_connections(parts.port)


def test_url_overrides_start_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(servers.POSTGRES_URL_ENV, "postgresql+psycopg://someone@db.example:5432/x")
    monkeypatch.setenv(servers.REDIS_URL_ENV, "redis://cache.example:6379/3")
    # Make any attempt to start a real server fail loudly.
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory
    monkeypatch.setattr(servers, "PG_LIB_GLOB", "/nonexistent/*/bin")

    with postgres_server() as url:
        assert url == "postgresql+psycopg://someone@db.example:5432/x"
    with redis_server() as url:
        assert url == "redis://cache.example:6379/3"


def test_find_postgres_bin_locates_initdb() -> None:
    path = find_postgres_bin("initdb")
    assert path is not None and path.endswith("initdb")


@pytest.mark.usefixtures("no_overrides")
def test_missing_postgres_binary_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory
    monkeypatch.setattr(servers, "PG_LIB_GLOB", "/nonexistent/*/bin")

    assert find_postgres_bin("initdb") is None
    with pytest.raises(ServerUnavailable, match="initdb"):
        with postgres_server():
            pass  # pragma: no cover


OWNER = """
import sys
from contextlib import ExitStack
from urllib.parse import urlsplit
from tests.servers import postgres_server, redis_server

with ExitStack() as stack:
    for server in (postgres_server, redis_server):
        print(urlsplit(stack.enter_context(server())).port, flush=True)
    sys.stdin.read()  # until killed
"""


@pytest.mark.usefixtures("no_overrides")
def test_servers_go_away_when_their_owner_is_killed() -> None:
    """A test process killed with SIGKILL (as pytest-xdist ends a worker) leaves no server and no folder behind."""
    # The servers' folders go here; not under tmp_path, which the postgres account may not enter when we are root.
    workdirs = Path(tempfile.mkdtemp(prefix="hub-owner-killed-"))
    workdirs.chmod(0o755)
    env = {**os.environ, "TMPDIR": str(workdirs), "PYTHONPATH": str(ROOT)}
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        try:
            ports = [int(owner.stdout.readline()) for _ in range(2)]  # type: ignore[union-attr]
            assert all(_accepts_connections(port) for port in ports)
            assert sorted(p.name[:len("hub-pg-")] for p in workdirs.iterdir()) == ["hub-pg-", "hub-red"]
        finally:
            owner.kill()
            owner.wait()
        deadline = time.monotonic() + 120  # only stops a broken test
        while any(_accepts_connections(port) for port in ports) or any(workdirs.iterdir()):
            assert time.monotonic() < deadline, f"still serving or left behind: {list(workdirs.iterdir())}"
            time.sleep(0.1)
    finally:
        shutil.rmtree(workdirs, ignore_errors=True)
