"""A user's mistake in the setup ends in one clear line and a non-zero exit, never a traceback.

Each case runs the installed `hub` command in a process of its own, as a
user would, and reads what it printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import click
import pytest

from hub.cli import _listen_address
from tests.support.cli import cli
from tests.conftest import SECRET, HubDB

HUB = str(Path(sys.executable).with_name("hub"))


def hub(args: list[str], cwd: Path, database_url: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=database_url, HUB_SECRET_KEY=SECRET)
    return subprocess.run([HUB, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed, checked to be nothing more."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Ошибка: "), done.stderr
    assert done.stdout == ""
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_an_unreachable_postgresql_is_one_line(tmp_path: Path) -> None:
    port = closed_port()
    url = f"postgresql://hub:s3cret-pass@127.0.0.1:{port}/hub"
    for args in (["init"], ["contacts", "list"], ["admin", "--port", str(closed_port())]):
        line = one_line_error(hub(args, tmp_path, url))
        assert "не удаётся подключиться к базе данных" in line and f"127.0.0.1:{port}/hub" in line
        assert "s3cret-pass" not in line


def test_an_sqlite_path_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(hub(["init"], tmp_path, "sqlite:////proc/hub.db"))
    assert "не удаётся открыть базу SQLite /proc/hub.db" in line
    (tmp_path / "a-file").write_text("")
    line = one_line_error(hub(["init"], tmp_path, f"sqlite:///{tmp_path / 'a-file' / 'hub.db'}"))
    assert f"{tmp_path / 'a-file'} — не каталог" in line
    line = one_line_error(hub(["init"], tmp_path, f"sqlite:///{tmp_path}"))
    assert "каталог, а не файл базы SQLite" in line


def test_a_mistyped_sqlite_directory_is_reported_not_created(tmp_path: Path) -> None:
    line = one_line_error(hub(["init"], tmp_path, "sqlite:///dtaa/hub.db"))
    assert f"каталог {tmp_path / 'dtaa'} для базы SQLite не существует" in line
    assert not (tmp_path / "dtaa").exists()
    (tmp_path / "data").mkdir()
    done = hub(["init"], tmp_path, "sqlite:///data/hub.db")
    assert done.returncode == 0 and (tmp_path / "data" / "hub.db").is_file(), done.stderr


def test_hub_admin_on_a_busy_port_is_one_line(sqlite_db: HubDB, tmp_path: Path, taken_port: int) -> None:
    line = one_line_error(hub(["admin", "--port", str(taken_port)], tmp_path, sqlite_db.url))
    assert f"адрес 127.0.0.1:{taken_port} уже занят" in line


@pytest.mark.parametrize("crm", ["bitrix24", "amocrm"])
def test_a_sandbox_on_a_busy_port_is_one_line(crm: str, tmp_path: Path, taken_port: int) -> None:
    done = hub(["sandbox", crm, "--port", str(taken_port), "--contacts", "20"], tmp_path,
               f"sqlite:///{tmp_path / 'hub.db'}")
    assert f"адрес 127.0.0.1:{taken_port} уже занят" in one_line_error(done)


def test_only_commands_that_listen_have_their_address_named() -> None:
    # A permission error of a command without --port (an unreadable file) is not called a busy port.
    ctx = click.Context(cli)
    assert _listen_address(ctx, ["import", "contacts", "x.csv"]) == (None, None)
    assert _listen_address(ctx, ["admin", "--port", "9"]) == ("127.0.0.1", 9)


def test_a_password_in_the_query_string_is_not_printed(tmp_path: Path) -> None:
    port = closed_port()
    url = f"postgresql://hub@127.0.0.1:{port}/hub?password=topsecret&sslmode=disable"
    line = one_line_error(hub(["contacts", "list"], tmp_path, url))
    assert f"127.0.0.1:{port}/hub" in line
    assert "topsecret" not in line and "password" not in line


@pytest.mark.parametrize("port", ["notaport", "99999"])
def test_a_bad_port_in_the_database_url_is_one_line(tmp_path: Path, port: str) -> None:
    line = one_line_error(hub(["contacts", "list"], tmp_path, f"postgresql://hub:s3cret-pass@127.0.0.1:{port}/hub"))
    assert "HUB_DATABASE_URL" in line and f"«{port}»" in line
    assert "s3cret-pass" not in line and "int()" not in line


def test_a_file_that_is_not_an_sqlite_database_is_named_so(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("not a database, just some text\n" * 100)
    line = one_line_error(hub(["contacts", "list"], tmp_path, f"sqlite:///{tmp_path / 'notes.db'}"))
    assert f"{tmp_path / 'notes.db'} — не файл базы SQLite" in line
    assert "нет прав на запись" not in line


@pytest.mark.parametrize("args", [["admin"], ["sandbox", "bitrix24"], ["sandbox", "amocrm"]])
@pytest.mark.parametrize("port", ["99999", "65536", "-5", "0"])
def test_a_port_out_of_range_is_refused(tmp_path: Path, args: list[str], port: str) -> None:
    done = hub([*args, "--port", port], tmp_path, f"sqlite:///{tmp_path / 'hub.db'}", timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "--port" in done.stderr and "1<=x<=65535" in done.stderr
    assert not (tmp_path / "hub.db").exists()
