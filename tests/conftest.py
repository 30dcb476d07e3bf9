"""Shared fixtures: a fresh Hub database on SQLite and on PostgreSQL, real Redis.

Every test that takes `hub_db` runs twice, once per database. PostgreSQL and
Redis are real servers started once per session (tests/servers.py) and
stopped afterwards.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import Engine

from hub import migrations, plugins, queue
from hub.config import Settings, load_settings
from hub.db import dispose_engines, get_engine
from hub.testing import empty_database
from tests.servers import postgres_server, redis_server
from tests.support.smtp import Mailbox, smtp_server

SECRET = "test-secret-key-0123456789abcdef"


@dataclass
class HubDB:
    """A migrated, empty database with settings that point at it."""

    url: str
    engine: Engine
    settings: Settings

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(_hub_sqlite_template: Path) -> Path:
    """A migrated SQLite database to copy (hub.testing makes it, once per session)."""
    return _hub_sqlite_template


@pytest.fixture(scope="session")
def postgres_migrated(postgres_url: str) -> str:
    migrations.upgrade(get_engine(postgres_url))
    return postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def hub_db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubDB]:
    """A fresh Hub database; the test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "hub.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_migrated")
        empty_database(url)
    yield from _use_database(url, tmp_path, monkeypatch)


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path) -> Iterator[HubDB]:
    """A fresh SQLite-only database, for tests about the embedded default itself."""
    path = tmp_path / "hub.db"
    shutil.copy(sqlite_template, path)
    yield from _use_database(f"sqlite:///{path}", tmp_path, monkeypatch)


def _use_database(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubDB]:
    monkeypatch.chdir(tmp_path)
    for name in ("HUB_REDIS_URL", "HUB_PLUGINS_DIR", "HUB_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    monkeypatch.setenv("HUB_SECRET_KEY", SECRET)
    monkeypatch.setenv("HUB_PLUGINS", "")
    settings = load_settings()
    plugins.use(plugins.build(settings))
    yield HubDB(url=url, engine=get_engine(url), settings=settings)
    queue.drain(timeout=60)  # no job of this test may run in the next one, with its plugins
    plugins.use(None)
    dispose_engines()


@pytest.fixture
def plugin_manager(hub_db: HubDB) -> Any:
    """The active plugin manager (core plugins only); tests register their own modules on it."""
    return plugins.get_pm()


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on loopback for this test: (what it received, its port)."""
    handler = Mailbox()
    with smtp_server(handler) as port:
        yield handler, port
