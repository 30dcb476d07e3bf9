"""Fixtures for testing Hub plugins: a pytest plugin, loaded by pytest wherever Hub is installed.

A plugin's tests need a Hub around them: a migrated database, a plugin
manager holding the plugin under test, a way to run ``hub`` commands and admin
pages, a clock that can be moved, and the CRM emulators. Each fixture below
gives one of these and cleans up after itself; none is autouse, so a test
suite only gets what it asks for.

Which plugins a test runs with (besides Hub's core) comes from, first to last:
the ``hub_plugins`` marker on the test, then the ``hub_plugins`` ini option::

    # pyproject.toml of a plugin
    [tool.pytest.ini_options]
    hub_plugins = ["shop"]

    @pytest.mark.hub_plugins("shop", "mailing")
    def test_shop_with_email(hub_database): ...

Each name is an installed plugin (its ``hub`` entry point name) or a dotted
module path (``tests.fake_crm``), which is registered as it is.

The database is SQLite, migrated once per session (the core's tables and
every installed plugin's; a plugin named by module path gets its tables when
its test starts) and copied for each test.
Set ``HUB_TEST_DATABASE_URL`` to an empty PostgreSQL database to run the same
tests there instead: it is migrated once and emptied before each test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest

UTC = dt.timezone.utc
SECRET_KEY = "hub-testing-secret-key-0123456789"
ADMIN_EMAIL = "admin@shop.example"
ADMIN_PASSWORD = "hub testing password 1"
CLOCK_START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday morning
# How passwords made during a test are hashed: scrypt at N=128 instead of production's 2**15
# (hub.users.PASSWORD_METHOD), the same code path at a thousandth of the cost, so a suite that
# signs in many users stays fast. A hash carries its own cost, so checking is unaffected.
CHEAP_PASSWORD_METHOD = "scrypt:128:8:1"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("hub_plugins", type="args", default=[],
                  help="Hub plugins the hub_* fixtures load besides the core: entry point names or modules")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hub_plugins(*names): Hub plugins to load for this test (hub.testing)")


# --- the database ---------------------------------------------------------------------------------

@dataclass
class HubDatabase:
    """A migrated, empty Hub database, the settings that point at it, and Hub's plugins loaded on them."""

    url: str
    engine: Any
    settings: Any
    pm: Any

    def begin(self) -> Any:
        """A transaction: ``with hub_database.begin() as conn: ...``."""
        return self.engine.begin()

    def connect(self) -> Any:
        return self.engine.connect()

    def scalar(self, sql: str, **params: Any) -> Any:
        """One value of a query, for short assertions: ``hub_database.scalar("SELECT count(*) FROM contacts")``."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()


@pytest.fixture(scope="session")
def _hub_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hub import migrations
    from hub.db import get_engine

    path = tmp_path_factory.mktemp("hub-template") / "hub.db"
    engine = get_engine(f"sqlite:///{path}")
    migrations.upgrade(engine, pm=every_installed_plugin())
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def _hub_postgres_migrated() -> str | None:
    url = os.environ.get("HUB_TEST_DATABASE_URL")
    if not url:
        return None
    from hub import migrations
    from hub.db import get_engine

    migrations.upgrade(get_engine(url), pm=every_installed_plugin())
    return url


def every_installed_plugin() -> Any:
    """A plugin manager with every installed plugin, whose tables a shared test database holds."""
    from hub import plugins
    from hub.config import load_settings

    return plugins.build(replace(load_settings(), plugins=None, plugins_dir=None))


def empty_database(url: str) -> None:
    """Remove every row from every table of a migrated PostgreSQL database (the core's and plugins'), restart ids.

    The migrations' version tables keep their rows: the schema stays where it is.
    """
    from sqlalchemy import inspect, text

    from hub.db import get_engine

    engine = get_engine(url)
    tables = [t for t in inspect(engine).get_table_names() if not t.startswith("alembic_version")]
    names = ", ".join(f'"{t}"' for t in tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def _wanted_plugins(request: pytest.FixtureRequest) -> list[str]:
    marker = request.node.get_closest_marker("hub_plugins")
    if marker is not None:
        return [str(name) for name in marker.args]
    return list(request.config.getini("hub_plugins"))


def _installed() -> set[str]:
    """Names of the installed Hub plugins (their ``hub`` entry points)."""
    import importlib.metadata

    return {ep.name for ep in importlib.metadata.entry_points(group="hub")}


def build_plugin_manager(settings: Any, names: Sequence[str]) -> Any:
    """Hub's core plus the named plugins: installed entry point names, or dotted module paths."""
    import importlib

    from hub import plugins

    installed = _installed()
    pm = plugins.build(replace(settings, plugins=tuple(n for n in names if n in installed), plugins_dir=None))
    for name in names:
        if name not in installed:
            try:
                module = importlib.import_module(name)
            except ImportError as e:
                have = ", ".join(sorted(installed)) or "none"
                raise pytest.UsageError(f"hub_plugins: {name!r} is neither an installed Hub plugin "
                                        f"(installed: {have}) nor an importable module ({e})") from None
            if pm.get_plugin(name) is None:
                pm.register(module, name=name)
    return pm


@pytest.fixture
def hub_database(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                 ) -> Iterator[HubDatabase]:
    """A fresh Hub database with the plugins under test loaded; the environment points ``hub`` commands at it.

    Passwords set during the test (``hub_admin``'s users, a test's own ``hub.users.add``) are hashed
    at ``CHEAP_PASSWORD_METHOD``; the production cost is back after the test.
    """
    from hub import migrations, plugins, queue, users
    from hub.config import load_settings
    from hub.db import dispose_engines, get_engine

    url = request.getfixturevalue("_hub_postgres_migrated")
    if url:
        empty_database(url)
    else:
        path = tmp_path / "hub.db"
        shutil.copy(request.getfixturevalue("_hub_sqlite_template"), path)
        url = f"sqlite:///{path}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(users, "PASSWORD_METHOD", CHEAP_PASSWORD_METHOD)
    for name in ("HUB_REDIS_URL", "HUB_PLUGINS_DIR", "HUB_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    names = _wanted_plugins(request)
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    monkeypatch.setenv("HUB_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("HUB_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("HUB_ADMIN_SECURE_COOKIES", "false")
    # `hub` commands build their own plugin manager from the environment: the same installed plugins.
    monkeypatch.setenv("HUB_PLUGINS", ",".join(n for n in names if n in _installed()))
    settings = load_settings()
    pm = build_plugin_manager(settings, names)
    if any(n not in _installed() for n in names):
        # The shared database holds the installed plugins' tables; a plugin named by module adds its own now.
        migrations.upgrade(get_engine(url), pm=pm)
    plugins.use(pm)
    try:
        yield HubDatabase(url=url, engine=get_engine(url), settings=settings, pm=pm)
    finally:
        queue.drain(timeout=60)
        plugins.use(None)
        dispose_engines()


@pytest.fixture
def hub_settings(hub_database: HubDatabase) -> Any:
    """The ``hub.config.Settings`` of the test's Hub, read when the database was set up.

    They are not read again: for other values in a call, pass
    ``dataclasses.replace(hub_settings, extra={...})``; for ``hub_cli`` commands,
    which read the environment afresh, ``monkeypatch.setenv("HUB_...", ...)``.
    """
    return hub_database.settings


@pytest.fixture
def hub_plugins(hub_database: HubDatabase) -> Any:
    """The plugin manager: Hub's core and the plugins under test; ``hub_plugins.register(module)`` adds more."""
    return hub_database.pm


# --- the command line -----------------------------------------------------------------------------

@dataclass
class HubCLI:
    """Runs ``hub`` commands in-process against the test's database."""

    pm: Any

    def __call__(self, *args: str, input: str | None = None, expect_exit: int | None = 0) -> Any:
        """Run ``hub ARGS``; fails the test with the output when the exit code is not `expect_exit`."""
        from click.testing import CliRunner

        result = CliRunner().invoke(self.root(), list(args), input=input, catch_exceptions=False)
        if expect_exit is not None and result.exit_code != expect_exit:
            pytest.fail(f"`hub {' '.join(args)}` exited {result.exit_code}, expected {expect_exit}:\n"
                        f"{result.output}", pytrace=False)
        return result

    def root(self) -> Any:
        """The ``hub`` command group with the commands of the plugins under test (a copy: tests stay apart)."""
        import copy

        import click

        from hub.cli import cli

        def detached(group: Any) -> Any:
            # Groups are copied all the way down, so what a plugin adds to `hub connect` stays in this test.
            mine = copy.copy(group)
            mine.commands = {name: detached(c) if isinstance(c, click.Group) else c
                             for name, c in group.commands.items()}
            return mine

        root = detached(cli)
        self.pm.hook.register_commands(cli=root)
        return root

    def json(self, *args: str) -> Any:
        """Run ``hub ARGS --json`` and parse what it printed."""
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture
def hub_cli(hub_database: HubDatabase) -> HubCLI:
    """``hub_cli("sync", "shop")`` runs a command; ``hub_cli.json("sync", "shop")`` parses its ``--json`` output."""
    return HubCLI(hub_database.pm)


# --- the admin ------------------------------------------------------------------------------------

_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


@dataclass
class AdminClient:
    """A Flask test client signed in to the admin as ``user`` (an administrator)."""

    app: Any
    client: Any
    user: Any

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, **kwargs)

    def csrf_token(self, path: str = "/") -> str:
        page = self.client.get(path)
        found = _CSRF.search(page.get_data(as_text=True))
        if not found:
            pytest.fail(f"no CSRF token on {path} (status {page.status_code})", pytrace=False)
        return found.group(1)

    def post(self, path: str, data: dict[str, Any] | None = None, *, token_from: str = "/", **kwargs: Any) -> Any:
        """POST a form with the CSRF token a page of the admin hands out, as the browser would."""
        return self.client.post(path, data={"csrf_token": self.csrf_token(token_from), **(data or {})}, **kwargs)

    def signed_in_as(self, role: str | None) -> AdminClient:
        """Another client of the same app, signed in as a new user with `role` (viewer, marketer, admin),
        or as nobody (None): to test who may use a plugin's admin page."""
        from hub import users
        from hub.db import get_engine

        client = self.app.test_client()
        if role is None:
            return AdminClient(app=self.app, client=client, user=None)
        with get_engine(self.app.config["HUB_SETTINGS"].database_url).begin() as conn:
            user = users.add(conn, f"{role}-{secrets.token_hex(4)}@shop.example", role, ADMIN_PASSWORD)
        with client.session_transaction() as session:
            session["uid"] = user.id
            session["auth"] = user.fingerprint
        return AdminClient(app=self.app, client=client, user=user)


@pytest.fixture
def hub_admin(hub_database: HubDatabase) -> AdminClient:
    """The admin app, with every plugin's routes, and a client signed in as an administrator."""
    from hub import users
    from hub.admin import create_app
    from hub.config import load_settings

    settings = load_settings()
    app = create_app(settings)
    with hub_database.begin() as conn:
        user = users.add(conn, ADMIN_EMAIL, "admin", ADMIN_PASSWORD)
    client = app.test_client()
    with client.session_transaction() as session:
        session["uid"] = user.id
        session["auth"] = user.fingerprint
    return AdminClient(app=app, client=client, user=user)


# --- time -----------------------------------------------------------------------------------------

@dataclass
class FakeClock:
    """What ``hub.db.utcnow`` answers while the test runs: still until moved."""

    now: dt.datetime = CLOCK_START

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, moment: dt.datetime) -> dt.datetime:
        if moment.tzinfo is None:
            raise ValueError("hub_clock.set needs an aware datetime (e.g. tzinfo=datetime.timezone.utc)")
        self.now = moment.astimezone(UTC)
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        """Move forward by ``datetime.timedelta(**delta)``: ``hub_clock.advance(days=91)``."""
        self.now += dt.timedelta(**delta)
        return self.now


@pytest.fixture
def hub_clock() -> Iterator[FakeClock]:
    """A clock Hub reads instead of the real one, starting on Monday 2026-03-02 09:00 UTC."""
    from hub import db

    clock = FakeClock()
    db.set_clock(clock)
    try:
        yield clock
    finally:
        db.set_clock(None)


# --- the CRM emulators ----------------------------------------------------------------------------

@dataclass
class Sandboxes:
    """Starts registered emulators (``register_sandboxes``) connected to the test's Hub."""

    settings: Any
    pm: Any
    running: list[Any] = field(default_factory=list)

    def __call__(self, name: str, *, people: int = 20, first_person: int = 0, seed: int = 1) -> Any:
        """Start emulator `name` holding sample people ``first_person + 1 .. first_person + people``.

        Returns the ``hub.api.RunningSandbox``; ``truth()`` maps its ids to those people.
        """
        from hub import plugins

        starts = plugins.registry("register_sandboxes", self.pm)
        if name not in starts:
            pytest.fail(f"no emulator called {name!r}; the loaded plugins offer: {', '.join(sorted(starts)) or 'none'}"
                        " (add the plugin to hub_plugins)", pytrace=False)
        sandbox = starts[name](self.settings, people=people, first_person=first_person, seed=seed)
        self.running.append(sandbox)
        return sandbox

    def close(self) -> None:
        while self.running:
            self.running.pop().close()


@pytest.fixture
def hub_sandbox(hub_database: HubDatabase) -> Iterator[Callable[..., Any]]:
    """``hub_sandbox("bitrix24", people=50)`` starts that emulator, connected so ``hub sync`` reads it."""
    sandboxes = Sandboxes(hub_database.settings, hub_database.pm)
    try:
        yield sandboxes
    finally:
        sandboxes.close()
