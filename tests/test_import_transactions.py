"""Where an import commits changes nothing it produces; a failure undoes what was not committed, counts too."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from hub import importer, sampledata, sync
from hub.db import get_engine
from hub.models import Contact, SyncRun
from tests.conftest import HubDB


def generated(tmp_path: Path) -> Path:
    path = tmp_path / "base.csv"
    sampledata.write_csv(path, sampledata.spreadsheet_rows(sampledata.people(300, 7), 7), encoding="cp1251",
                         delimiter=";")
    return path


def imported(db: HubDB, engine: Any, path: Path) -> tuple[list[int], dict[str, int], int]:
    """(each row's contact as the first row of that contact, the report's totals, commits made)."""
    placed: dict[int, int | None] = {}
    commits = []
    listener = lambda conn: commits.append(1)  # noqa: E731
    event.listen(engine, "commit", listener)
    try:
        report = importer.import_contacts(engine, db.settings, path, parallel=False,
                                          placed=lambda lines, ids: placed.update(zip(lines, ids, strict=True)))
    finally:
        event.remove(engine, "commit", listener)
    first: dict[int | None, int] = {}
    partition = [first.setdefault(placed[line], line) for line in sorted(placed)]
    totals = {name: getattr(report, name) for name in ("rows", "imported", "created", "updated", "merged",
                                                        "contacts_merged", "invalid_phones", "invalid_emails",
                                                        "shared_values")}
    return partition, totals, len(commits)


def test_chunks_committed_together_resolve_as_chunks_committed_one_by_one(
        sqlite_db: HubDB, sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = generated(tmp_path)
    monkeypatch.setattr(importer, "CHUNK", 40)
    monkeypatch.setattr(importer, "COMMIT_SECONDS", 0.0)
    alone = imported(sqlite_db, sqlite_db.engine, path)
    other = tmp_path / "other.db"
    shutil.copy(sqlite_template, other)
    monkeypatch.setattr(importer, "COMMIT_SECONDS", 3600.0)
    together = imported(sqlite_db, get_engine(f"sqlite:///{other}"), path)
    assert alone[0] == together[0] and alone[1] == together[1]
    assert alone[1]["rows"] > 300 and alone[1]["merged"] > 0
    assert alone[2] > 10  # a commit a chunk
    assert together[2] == 3  # the run's start, all the chunks, the run's end


@pytest.mark.parametrize("seconds", [0.0, 3600.0])
def test_a_failing_chunk_undoes_the_uncommitted_chunks_and_their_counts(
        sqlite_db: HubDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    path = generated(tmp_path)
    monkeypatch.setattr(importer, "CHUNK", 40)
    monkeypatch.setattr(importer, "FIRST_CHUNK", 40)
    monkeypatch.setattr(importer, "COMMIT_SECONDS", seconds)
    write = sync.write_contacts
    calls = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return write(*args, **kwargs)

    monkeypatch.setattr(sync, "write_contacts", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        importer.import_contacts(sqlite_db.engine, sqlite_db.settings, path, parallel=False)
    with sqlite_db.engine.connect() as conn:
        contacts = conn.execute(select(func.count()).select_from(Contact)).scalar_one()
        run = conn.execute(select(SyncRun.status, SyncRun.counts).order_by(SyncRun.id.desc()).limit(1)).one()
    assert run.status == "failed"
    assert run.counts["contacts"]["created"] == contacts  # the run tells what stayed in the base
    if seconds:
        assert contacts == 0  # the two chunks before the failure were in its transaction
    else:
        assert 40 < contacts <= 80  # each chunk before it committed on its own
