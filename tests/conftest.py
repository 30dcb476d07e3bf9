"""Shared fixtures: a fresh Hub database on SQLite and on PostgreSQL, real Redis.

Which database a test that takes `hub_db` runs on:

* SQLite only, by default: most tests are about what Hub does, and that does
  not depend on the database underneath.
* SQLite and PostgreSQL, when the test (or its module, with
  ``pytestmark = pytest.mark.both_databases``) is marked `both_databases`:
  wherever the SQL differs by dialect or the database's own guarantees are the
  point: segment compilation and counts, identity and merges, the consent
  ledger, claiming and leasing messages, exactly-once runs, upserts (ON
  CONFLICT), bulk writes, migrations, erasure, locking and concurrency.
  When in doubt, mark it.
* ``pytest --all-databases`` runs every `hub_db` test on both.

PostgreSQL and Redis are real servers started once per session, or once per
worker under pytest-xdist (tests/servers.py), and stopped afterwards.
Passwords are hashed with a cheap scrypt cost here (TEST_PASSWORD_METHOD);
what production uses is checked in tests/test_password_cost.py.
"""

from __future__ import annotations

import shutil
import signal
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import Engine

from hub import migrations, plugins, queue, users
from hub.config import Settings, load_settings
from hub.db import dispose_engines, get_engine
from hub.testing import CHEAP_PASSWORD_METHOD, empty_database, every_installed_plugin
from tests.servers import dovecot_server, postgres_server, redis_server
from tests.support.smtp import Mailbox, smtp_server

# Fixtures that many test modules use, available to all of them without an import.
pytest_plugins = (
    "tests.support.admin", "tests.support.admin_browser", "tests.support.public", "tests.support.server",
)

SECRET = "test-secret-key-0123456789abcdef"
DATABASES = ("sqlite", "postgresql")
BOTH_DATABASES = "both_databases"
# scrypt at N=128 instead of production's 2**15: the same code path at a thousandth of the cost
# (the same method hub.testing gives plugin authors' tests).
TEST_PASSWORD_METHOD = CHEAP_PASSWORD_METHOD
PRODUCTION_PASSWORD_METHOD = users.PASSWORD_METHOD
users.PASSWORD_METHOD = TEST_PASSWORD_METHOD


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--all-databases", action="store_true",
                     help="run every hub_db test on PostgreSQL too, not only those marked both_databases")


def pytest_configure(config: pytest.Config) -> None:
    # A run stopped with SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the session's
    # servers are stopped by their fixtures instead of outliving the run.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(autouse=True)
def _stop_signals_kept() -> Iterator[None]:
    """Put back the run's SIGINT and SIGTERM handlers after each test.

    An RQ worker run in-process installs its own (a warm shutdown); left in place,
    they would swallow Ctrl-C and SIGTERM, and the run could not be stopped cleanly.
    """
    kept = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in kept.items():
        if signal.getsignal(signum) is not handler:
            signal.signal(signum, handler)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a `hub_db` test on SQLite, or on both databases when it is marked both_databases."""
    if "hub_db" not in metafunc.fixturenames:
        return
    both = metafunc.definition.get_closest_marker(BOTH_DATABASES) is not None
    if both or metafunc.config.getoption("all_databases"):
        metafunc.parametrize("hub_db", DATABASES, indirect=True)
    else:
        metafunc.parametrize("hub_db", DATABASES[:1], indirect=True)


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
def imap_server() -> Iterator[str]:
    """A real IMAP server (dovecot) for this worker: imap://USER:PASSWORD@127.0.0.1:PORT; any user name logs in."""
    with dovecot_server() as url:
        yield url


@pytest.fixture
def bounce_mailbox(imap_server: str) -> Any:
    """An empty bounce mailbox of this test's own (a fresh IMAP user): settings, APPEND, list, flags."""
    from tests.support.imap import BounceMailboxHelper

    return BounceMailboxHelper(imap_server)


@pytest.fixture(scope="session")
def sqlite_template(_hub_sqlite_template: Path) -> Path:
    """A migrated SQLite database to copy (hub.testing makes it, once per session)."""
    return _hub_sqlite_template


@pytest.fixture(scope="session")
def postgres_migrated(postgres_url: str) -> str:
    migrations.upgrade(get_engine(postgres_url), pm=every_installed_plugin())
    return postgres_url


@pytest.fixture
def hub_db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubDB]:
    """A fresh Hub database: SQLite, and PostgreSQL too for tests marked both_databases (see above)."""
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
    monkeypatch.setenv("HUB_QUIET_HOURS_SMS", "none")  # the hour a test runs at must not hold its SMS
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
        # Letters the test left to background jobs go while the server still listens; sent after
        # it stopped, one could wait out the SMTP timeout on a connection nobody answers.
        queue.drain(timeout=60)
