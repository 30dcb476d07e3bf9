"""`hub init` creates or upgrades the schema, idempotently, and the schema matches the models."""

from __future__ import annotations

import datetime as dt
import importlib.util
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Engine, create_engine, func, inspect, make_url, select, text

from hub import migrations, plugins
from hub.config import SettingsError, load_settings
from hub.db import dispose_engines, get_engine
from hub.hookspecs import hookimpl
from hub.models import Base
from hub.testing import every_installed_plugin
from plugins.gdpr import models as gdpr_models
from plugins.telegram import models as telegram_models
from tests.conftest import HubDB
from tests.support.cli import cli
from workflows import models as workflows_models

MODELS = [Base.metadata, workflows_models.Base.metadata, gdpr_models.Base.metadata, telegram_models.Base.metadata]

pytestmark = pytest.mark.both_databases  # the schema on each database


def test_migrated_schema_matches_the_models(hub_db: HubDB) -> None:
    """The core's models and each built-in plugin's, against the schema their migrations made."""
    assert schema_diff(hub_db.engine) == []
    assert migrations.current_revision(hub_db.engine) == migrations.head_revision(hub_db.engine)
    every = every_installed_plugin()
    assert migrations.current_revision(hub_db.engine, every) == migrations.head_revision(hub_db.engine, every)
    assert {"workflows", "gdpr"} <= set(migrations.revisions(hub_db.engine, every))


def test_init_creates_then_reports_up_to_date(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HUB_SECRET_KEY", raising=False)
    monkeypatch.setenv("HUB_DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    runner = CliRunner()
    first = runner.invoke(cli, ["init"])
    assert first.exit_code == 0, first.output
    assert "Создан HUB_SECRET_KEY" in first.output and ": создана (схема" in first.output
    second = runner.invoke(cli, ["init"])
    assert second.exit_code == 0 and "уже актуальна" in second.output
    assert "Создан" not in second.output
    assert "contacts" in inspect(get_engine(f"sqlite:///{tmp_path / 'new.db'}")).get_table_names()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_db: HubDB) -> None:
    with sqlite_db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_timestamps_come_back_timezone_aware_utc(hub_db: HubDB) -> None:
    import datetime as dt

    from hub.models import AuditEntry

    moscow = dt.timezone(dt.timedelta(hours=3))
    with hub_db.engine.begin() as conn:
        conn.execute(AuditEntry.__table__.insert().values(actor="t", action="x", details={},
                                                          at=dt.datetime(2024, 8, 15, 10, 38, 21, tzinfo=moscow)))
        at = conn.execute(AuditEntry.__table__.select()).one().at
    assert at == dt.datetime(2024, 8, 15, 7, 38, 21, tzinfo=dt.timezone.utc)
    assert at.utcoffset() == dt.timedelta(0)


# --- plugins' tables ------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
# The plugins' first revisions hold, verbatim, what the core's revisions 0004 and 0005 created before the move.
MOVED_BY = [ROOT / "workflows" / "migrations" / "versions" / "0001_workflows_tables.py",
            ROOT / "plugins" / "gdpr" / "migrations" / "versions" / "0001_gdpr_tables.py"]
# The tables core revision 0005 made before they moved to their plugins (tables the plugins added later aside).
ADDED_SINCE = {("workflow_versions", "created_by")}  # columns the plugins' own later migrations added
MOVED_TABLES = (set(workflows_models.Base.metadata.tables) | set(gdpr_models.Base.metadata.tables)) - {"campaigns"}


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own that nothing has touched yet, on each database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
        dispose_engines()
        return
    server = request.getfixturevalue("postgres_url")
    name = f"hub_blank_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def core_only() -> Any:
    return plugins.build(replace(load_settings(), plugins=(), plugins_dir=None))


def made_before_the_move(engine: Engine) -> None:
    """A database as Hub made it while the core created every table: the core at 0007, nothing else recorded."""
    migrations.upgrade(engine, "0007")
    with engine.begin() as conn:
        for path in MOVED_BY:
            spec = importlib.util.spec_from_file_location(f"before_the_move_{path.stem}", path)
            assert spec is not None and spec.loader is not None
            revision = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(revision)
            with Operations.context(MigrationContext.configure(conn)):
                revision.upgrade()


def fill_moved_tables(engine: Engine) -> None:
    """One row in each moved table, linked as the running Hub links them."""
    from hub.models import Contact, Erasure

    w, g = workflows_models, gdpr_models
    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
    with engine.begin() as conn:
        def add(model: Any, **values: Any) -> Any:
            return conn.execute(model.__table__.insert().values(**values)).inserted_primary_key[0]

        anna = add(Contact, first_name="Анна", last_name="Смирнова")
        workflow = add(w.WorkflowRow, name="reactivation_90d", origin="library", definition={"steps": [1]},
                       version=1, enabled=True, enabled_at=now, state={"seen": 7})
        add(w.WorkflowVersion, workflow_id=workflow, version=1, definition={"steps": [1]})
        run = add(w.WorkflowRun, workflow_id=workflow, version=1, contact_id=anna, cycle=1, holdout=False,
                  status="waiting", step=1, next_at=now, trigger="segment:dormant_90d", context={"a": 1})
        add(w.StepResult, run_id=run, step=0, kind="promo_code", status="done", result={"code": "HUB-7K2M"})
        add(w.PromoCode, code="HUB-7K2M", discount=10, contact_id=anna, workflow_id=workflow, run_id=run, step=0,
            expires_at=now + dt.timedelta(days=14))
        add(w.Interaction, contact_id=anna, kind="nps", value=9, run_id=run, source="survey", meta={})
        add(w.WorkflowState, name="promo_redemptions", value={"order_id": 41})
        add(g.ConsentRequest, contact_id=anna, channel="email", topics=["email/news"], source="form",
            evidence={"ip": "192.0.2.1"}, token_digest="d" * 64)
        erasure = add(Erasure, contact_id=999, reason="request", actor="admin@shop.example")
        add(g.ErasedKey, value_hash="h" * 64, kind="email", erasure_id=erasure)


def moved_rows(engine: Engine) -> dict[str, list[Any]]:
    """The moved tables' rows, in the columns they had then (columns later migrations added are left out)."""
    tables = [*workflows_models.Base.metadata.sorted_tables, *gdpr_models.Base.metadata.sorted_tables]
    with engine.connect() as conn:
        return {t.name: [tuple(r) for r in conn.execute(
                    select(*[c for c in t.columns if (t.name, c.name) not in ADDED_SINCE])
                    .order_by(*t.primary_key.columns))]
                for t in tables if t.name in MOVED_TABLES}


def schema_diff(engine: Engine) -> list[Any]:
    """What differs between the database and the models (the version tables of every chain aside)."""
    def tables_of_the_models(name: str | None, kind: str, parent: Any) -> bool:
        return not (kind == "table" and (name or "").startswith("alembic_version"))

    def made_on_this_database(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
        # An index the models make on one database only (`.ddl_if(dialect=...)`) is absent elsewhere by design.
        only_on = getattr(getattr(obj, "_ddl_if", None), "dialect", None)
        return not (kind == "index" and not reflected and only_on not in (None, engine.dialect.name))

    opts = {"compare_type": False, "include_name": tables_of_the_models, "include_object": made_on_this_database}
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts=opts), MODELS)


def test_a_database_made_before_the_move_keeps_its_rows(blank_url: str) -> None:
    engine = get_engine(blank_url)
    made_before_the_move(engine)
    fill_moved_tables(engine)
    before = moved_rows(engine)
    assert all(len(rows) == 1 for rows in before.values()) and set(before) == MOVED_TABLES
    assert not any(t.startswith("alembic_version_") for t in inspect(engine).get_table_names())

    every = every_installed_plugin()
    migrations.upgrade(engine, pm=every)  # what `hub init` does

    assert moved_rows(engine) == before
    state = migrations.revisions(engine, every)
    assert state["hub"] == ("0022", "0022") and state["workflows"] == ("0003", "0003")
    assert state["gdpr"] == ("0001", "0001")
    assert all(current == head for current, head in state.values())
    assert schema_diff(engine) == []
    migrations.upgrade(engine, pm=every)
    assert moved_rows(engine) == before and migrations.revisions(engine, every) == state
    with engine.begin() as conn:  # the adopted tables go on numbering where they were
        second = conn.execute(workflows_models.WorkflowRun.__table__.insert().values(
            workflow_id=1, version=1, contact_id=1, cycle=2, holdout=False, status="running", step=0,
            trigger="segment:dormant_90d", context={})).inserted_primary_key[0]
    assert second == 2


def test_a_new_database_gets_the_plugins_tables_from_the_plugins(blank_url: str) -> None:
    engine = get_engine(blank_url)
    migrations.upgrade(engine, pm=core_only())
    tables = set(inspect(engine).get_table_names())
    assert {"contacts", "messages", "erasures"} <= tables and not tables & MOVED_TABLES

    every = every_installed_plugin()
    migrations.upgrade(engine, pm=every)
    assert MOVED_TABLES <= set(inspect(engine).get_table_names())
    assert all(current == head for current, head in migrations.revisions(engine, every).values())
    assert schema_diff(engine) == []


STAMPS_PLUGIN = '''"""A stranger's plugin with a table of its own: the stamps on a customer's loyalty card."""

from pathlib import Path

from hub.api import hookimpl


@hookimpl
def register_migrations(register):
    register("stamps", Path(__file__).parent / "stamps_migrations")
'''

STAMPS_REVISION = '''"""stamps: one row per stamp a customer collected

Revision ID: 0001
Revises:
"""

from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "stamps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("contact_id", sa.Integer(), sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("shop", sa.String(100), nullable=False),
    )


def downgrade():
    op.drop_table("stamps")
'''


def test_a_plugin_ships_a_table_of_its_own(blank_url: str, tmp_path: Path,  # hook:register_migrations
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    plugin_dir = tmp_path / "hub-plugins"
    (plugin_dir / "stamps_migrations").mkdir(parents=True)
    (plugin_dir / "stamps.py").write_text(STAMPS_PLUGIN, encoding="utf-8")
    (plugin_dir / "stamps_migrations" / "0001_stamps.py").write_text(STAMPS_REVISION, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUB_DATABASE_URL", blank_url)
    monkeypatch.setenv("HUB_SECRET_KEY", "test-secret-key-0123456789abcdef")
    monkeypatch.setenv("HUB_PLUGINS", "")
    runner = CliRunner()

    def hub(*args: str, plugin: bool) -> Any:
        if plugin:
            monkeypatch.setenv("HUB_PLUGINS_DIR", str(plugin_dir))
        else:
            monkeypatch.delenv("HUB_PLUGINS_DIR", raising=False)
        plugins.use(None)  # `hub` builds its plugins from the environment, as a fresh process would
        return runner.invoke(cli, list(args))

    try:
        first = hub("init", plugin=False)
        assert first.exit_code == 0 and "создана (схема 0022)" in first.output, first.output
        stale = hub("contacts", "list", "--json", plugin=True)
        assert stale.exit_code != 0 and "выполните `hub init`" in stale.output
        added = hub("init", plugin=True)
        assert added.exit_code == 0 and "обновлена (схема 0022, stamps 0001)" in added.output, added.output
        engine = get_engine(blank_url)
        with engine.begin() as conn:
            anna = conn.execute(text("INSERT INTO contacts (tags, attributes, provenance, orders_count, revenue, "
                                     "created_at, updated_at) VALUES ('[]', '{}', '{}', 0, 0, :t, :t) RETURNING id"),
                                {"t": dt.datetime.now(dt.timezone.utc)}).scalar_one()
            conn.execute(text("INSERT INTO stamps (contact_id, shop) VALUES (:c, 'Пекарня на Садовой')"), {"c": anna})
        again = hub("init", plugin=True)
        assert again.exit_code == 0 and "уже актуальна (схема 0022, stamps 0001)" in again.output
        assert hub("contacts", "list", "--json", plugin=True).exit_code == 0
        # Leaving the plugin out later breaks nothing: its table and its rows stay where they are.
        without = hub("init", plugin=False)
        assert without.exit_code == 0 and "уже актуальна (схема 0022)" in without.output, without.output
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(text("stamps"))).scalar_one() == 1
    finally:
        plugins.use(None)


def test_a_plugin_migration_name_must_be_usable(tmp_path: Path) -> None:
    class Careless:
        @hookimpl
        def register_migrations(self, register: Any) -> None:
            register("Stamps-1", tmp_path)

    pm = core_only()
    pm.register(Careless())
    with pytest.raises(SettingsError, match="not a usable name"):
        migrations.chains(pm)
