"""`hub init` creates or upgrades the schema, idempotently, and the schema matches the models."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import inspect, text

from hub import migrations
from hub.cli import cli
from hub.db import get_engine
from hub.models import Base
from tests.conftest import HubDB


def test_migrated_schema_matches_the_models(hub_db: HubDB) -> None:
    with hub_db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    assert diff == []
    assert migrations.current_revision(hub_db.engine) == migrations.head_revision(hub_db.engine)


def test_init_creates_then_reports_up_to_date(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HUB_SECRET_KEY", raising=False)
    monkeypatch.setenv("HUB_DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    runner = CliRunner()
    first = runner.invoke(cli, ["init"])
    assert first.exit_code == 0, first.output
    assert "Generated HUB_SECRET_KEY" in first.output and ": created (schema" in first.output
    second = runner.invoke(cli, ["init"])
    assert second.exit_code == 0 and "already up to date" in second.output
    assert "Generated" not in second.output
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
