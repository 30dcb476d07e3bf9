"""Alembic migrations shipped inside the package and run by `hub init`: the core's, then each plugin's.

Running them programmatically (rather than through an alembic.ini a user must
find) makes `hub init` the one way to create or upgrade a database, on SQLite
and PostgreSQL alike, and safe to repeat.

A plugin ships its tables' migrations through the ``register_migrations``
hook: a folder of Alembic revision files, its own chain. Each chain records
where it is in a version table of its own (``alembic_version`` for the core,
``alembic_version_<plugin>`` for a plugin) rather than as a branch in one
shared table, because a shared table would name revisions of every plugin
that ever ran: once such a plugin is uninstalled or left out of
HUB_PLUGINS, Alembic can no longer read the table ("can't locate revision")
and `hub init` stops working for everyone. Separate tables let a plugin come
and go; its tables and its version table simply stay. The core always runs
first, so a plugin's first revision may refer to any core table; plugins do
not depend on each other, so their order does not matter.

Moving tables out of the core. The workflows' and the GDPR plugin's tables
were created by the core's revisions 0004 and 0005 until they moved into
those plugins' own chains. Those two revisions now create only what stays in
the core (``erasures``, which identity reads), keeping their ids, so a
database at any core revision upgrades as before; the plugins' first
revisions create their tables only where they are missing. A database made
before the move (core at 0007, the tables and their rows in place) has them
adopted as they are; a new one gets them from the plugins. (Taking such a
database below 0005 by hand would leave those tables behind; Hub never
downgrades.)
"""

from __future__ import annotations

import functools

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from hub import plugins
from hub.config import SettingsError

if TYPE_CHECKING:
    import pluggy

HERE = Path(__file__).parent
CORE = "hub"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


@dataclass(frozen=True)
class Chain:
    """One line of migrations: the core's or one plugin's, with the table that records its revision."""

    name: str
    versions: Path

    @property
    def version_table(self) -> str:
        return "alembic_version" if self.name == CORE else f"alembic_version_{self.name}"


def chains(pm: pluggy.PluginManager | None = None) -> list[Chain]:
    """The core's chain, then every plugin's registered through ``register_migrations``, by name."""
    found: dict[str, Chain] = {}

    def register(name: str, versions: str | Path) -> None:
        if not _NAME.match(name) or name == CORE:
            raise SettingsError(f"register_migrations: {name!r} is not a usable name "
                                f"(lowercase letters, digits and _, not {CORE!r})")
        if name in found:
            raise SettingsError(f"two plugins register migrations {name!r}")
        path = Path(versions)
        if not path.is_dir():
            raise SettingsError(f"register_migrations: {name}: {path} is not a folder")
        found[name] = Chain(name, path)

    (pm if pm is not None else plugins.get_pm()).hook.register_migrations(register=register)
    return [Chain(CORE, HERE / "versions"), *(found[n] for n in sorted(found))]


def alembic_config(engine: Engine, chain: Chain | None = None) -> Config:
    """One chain's Alembic configuration: the shared env.py, the chain's folder and version table."""
    chain = chain or Chain(CORE, HERE / "versions")
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(chain.versions))
    config.attributes["engine"] = engine
    config.attributes["version_table"] = chain.version_table
    return config


def upgrade(engine: Engine, revision: str = "head", pm: pluggy.PluginManager | None = None) -> None:
    """Bring the core, then every plugin's tables, to their newest revision; a no-op where they are.

    `revision` other than "head" moves the core alone (tests use it to build an older database).
    """
    if revision != "head":
        command.upgrade(alembic_config(engine), revision)
        return
    for chain in chains(pm):
        command.upgrade(alembic_config(engine, chain), "head")


def _current(conn: Connection, chain: Chain) -> str | None:
    return MigrationContext.configure(conn, opts={"version_table": chain.version_table}).get_current_revision()


@functools.lru_cache(maxsize=None)
def _head(chain: Chain) -> str | None:
    """The newest revision shipped in the chain's folder: read once per process (every command checks it)."""
    return ScriptDirectory(str(HERE), version_locations=[str(chain.versions)]).get_current_head()


def _describe(revisions: list[tuple[Chain, str | None]]) -> str | None:
    core = revisions[0][1]
    if core is None:
        return None
    return ", ".join([core, *(f"{c.name} {r or 'none'}" for c, r in revisions[1:])])


def current_revision(engine: Engine, pm: pluggy.PluginManager | None = None) -> str | None:
    """Where the database is: "0007, gdpr 0001, workflows 0001"; None when the core was never migrated.

    Only the chains of the plugins loaded now are named: a plugin left out leaves its tables alone.
    """
    with engine.connect() as conn:
        return _describe([(c, _current(conn, c)) for c in chains(pm)])


def head_revision(engine: Engine, pm: pluggy.PluginManager | None = None) -> str | None:
    """Where this Hub and its loaded plugins would bring the database, in the form of `current_revision`."""
    return _describe([(c, _head(c)) for c in chains(pm)])


def revisions(engine: Engine, pm: pluggy.PluginManager | None = None) -> dict[str, tuple[str | None, str | None]]:
    """Chain name -> (the database's revision, the newest shipped), for checks and reports."""
    with engine.connect() as conn:
        return {c.name: (_current(conn, c), _head(c)) for c in chains(pm)}

