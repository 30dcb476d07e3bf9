"""Calls, meetings and notes from a CRM: upserted once, linked to their contact and company whichever
arrives first, deleted and reconciled, moved by merges and back by unmerges, stripped by erasure."""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterator, Sequence

import pytest
from sqlalchemy import select

from hub.hookspecs import hookimpl
from hub import identity, sync, unmerge
from hub.models import Activity, Company, ExternalRef
from hub.records import ActivityRecord, CompanyRecord, ContactRecord, Deletion
from plugins.gdpr import erasure
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases  # set-wise upserts and links, merges

WHEN = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)


class TinyCRM:
    name = "crm"

    def __init__(self, **records: list[Any]) -> None:
        self.records = records

    def entities(self) -> Sequence[str]:
        return tuple(self.records)

    def read(self, entity: str, cursor: str | None, full: bool) -> Iterator[sync.Page]:
        yield sync.Page(list(self.records[entity]), "end")

    def checkpoint(self, entity: str) -> str | None:
        return "end"

    def live_ids(self, entity: str) -> Iterator[list[str]]:
        yield [r.external_id for r in self.records[entity]]


def call(ext: str, contact: str | None = "1", **extra: Any) -> ActivityRecord:
    values: dict[str, Any] = {"kind": "call", "at": WHEN, "contact_external_id": contact, "direction": "in",
                              "missed": False, "duration_s": 95, "subject": "Входящий звонок", "responsible_id": "7"}
    values.update(extra)
    return ActivityRecord(source="crm", external_id=ext, **values)


def person(ext: str, phones: Sequence[str], first: str = "Анна") -> ContactRecord:
    return ContactRecord(source="crm", external_id=ext, first_name=first, last_name="Смирнова", phones=list(phones))


def page(db: HubDB, *records: Any) -> sync.Counts:
    counts = sync.Counts()
    with db.engine.begin() as conn:
        sync.write_page(conn, list(records), db.settings, counts)
    return counts


def rows(db: HubDB) -> dict[str, Any]:
    with db.engine.connect() as conn:
        return {r.external_id: r for r in conn.execute(select(Activity))}


def contact_of(db: HubDB, ext: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(ExternalRef.contact_id).where(ExternalRef.external_id == ext)).scalar_one()


def test_a_sync_stores_activities_linked_to_contact_and_company_and_twice_is_once(hub_db: HubDB) -> None:
    crm = TinyCRM(companies=[CompanyRecord(source="crm", external_id="c1", name="ООО «Ромашка»")],
                  contacts=[person("1", ["+79035550001"])],
                  activities=[call("a1", company_external_id="c1"),
                              call("a2", kind="meeting", direction=None, done=False, duration_s=None,
                                   subject="Встреча <b>в офисе</b>"),
                              call("a3", kind="call", missed=True, duration_s=-5)])
    report = sync.run(hub_db.engine, hub_db.settings, "crm", full=True, source=crm)
    assert report.counts.activities == {"created": 3, "updated": 0, "deleted": 0, "refused": 0}
    anna = contact_of(hub_db, "1")
    stored = rows(hub_db)
    with hub_db.engine.connect() as conn:
        company = conn.execute(select(Company.id)).scalar_one()
    first = stored["a1"]
    assert (first.contact_id, first.company_id, first.kind, first.direction, first.duration_s,
            first.responsible_id) == (anna, company, "call", "in", 95, "7")
    assert first.at == WHEN and first.subject == "Входящий звонок"
    assert stored["a2"].done is False and stored["a2"].subject == "Встреча <b>в офисе</b>"
    assert stored["a3"].missed is True and stored["a3"].duration_s is None  # a negative duration is no duration
    crm.records["activities"][0] = call("a1", company_external_id="c1", subject="Перезвонить")
    again = sync.run(hub_db.engine, hub_db.settings, "crm", full=True, source=crm)
    assert again.counts.activities == {"created": 0, "updated": 1, "deleted": 0, "refused": 0}  # only a1 changed
    assert len(rows(hub_db)) == 3 and rows(hub_db)["a1"].subject == "Перезвонить"


def test_activities_before_their_contact_are_linked_when_the_contact_arrives(hub_db: HubDB) -> None:
    page(hub_db, call("a1", contact="9"), call("a2", contact=None))
    assert rows(hub_db)["a1"].contact_id is None
    page(hub_db, person("9", ["+79035550009"]))
    assert rows(hub_db)["a1"].contact_id == contact_of(hub_db, "9")
    assert rows(hub_db)["a2"].contact_id is None


def test_activities_before_their_company_are_linked_when_the_company_arrives(hub_db: HubDB) -> None:
    page(hub_db, person("1", ["+79035550001"]), call("a1", company_external_id="c7"))
    assert rows(hub_db)["a1"].company_id is None
    page(hub_db, CompanyRecord(source="crm", external_id="c7", name="ООО «Вектор»"))
    with hub_db.engine.connect() as conn:
        company = conn.execute(select(Company.id).where(Company.external_id == "c7")).scalar_one()
    assert rows(hub_db)["a1"].company_id == company


def test_bad_activities_are_errors_not_exceptions(hub_db: HubDB) -> None:
    counts = page(hub_db, call("a1", at=dt.datetime(2026, 11, 2, 12, 0)), call("a2", kind="sms"),
                  call("a3", direction="sideways"), call("", subject="без id"), call("a4", at=None),
                  call("a5", subject="Я" * 10_000, contact="x" * 1000))
    assert [(e["id"], e["error"]) for e in counts.errors] == [
        ("a1", "at has no time zone"), ("a2", "kind 'sms' is not one of call, meeting, email, task, note"),
        ("a3", "direction 'sideways' is not in or out"), (None, "the activity has no id"),
        ("a4", "the activity has no time")]
    kept = rows(hub_db)
    assert list(kept) == ["a5"] and len(kept["a5"].subject) == 300 and len(kept["a5"].contact_external_id) == 200


def test_deleted_activities_go_and_reconcile_finds_the_ones_no_event_told_of(hub_db: HubDB) -> None:
    crm = TinyCRM(contacts=[person("1", ["+79035550001"])], activities=[call("a1"), call("a2"), call("a3")])
    sync.run(hub_db.engine, hub_db.settings, "crm", full=True, source=crm)
    counts = page(hub_db, Deletion("crm", "activity", "a1"), Deletion("crm", "activity", "never"))
    assert counts.activities["deleted"] == 1 and set(rows(hub_db)) == {"a2", "a3"}
    crm.records["activities"] = [call("a3")]
    report = sync.reconcile(hub_db.engine, hub_db.settings, "crm", source=crm, entities=["activities"])
    assert report.counts.activities["deleted"] == 1 and set(rows(hub_db)) == {"a3"}


def test_a_merge_moves_activities_and_an_unmerge_brings_them_back(hub_db: HubDB) -> None:
    page(hub_db, person("1", ["+79035550001"]), call("a1", contact="1"))
    page(hub_db, person("2", ["+79035550002"]), call("a2", contact="2"))
    first, second = contact_of(hub_db, "1"), contact_of(hub_db, "2")
    page(hub_db, person("2", ["+79035550002", "+79035550001"]))
    assert {r.contact_id for r in rows(hub_db).values()} == {first}
    page(hub_db, call("a3", contact="2"))  # logged while the two were one
    assert rows(hub_db)["a3"].contact_id == first
    with hub_db.engine.connect() as conn:
        merge_id = conn.execute(select(identity.merges_t.c.id)).scalar_one()
    unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    assert {k: r.contact_id for k, r in rows(hub_db).items()} == {"a1": first, "a2": second, "a3": second}


def test_erasure_takes_the_persons_calls_with_them(hub_db: HubDB) -> None:
    page(hub_db, person("1", ["+79035550001"]), person("2", ["+79035550002"], first="Ольга"),
         call("a1", contact="1", subject="Жалоба на доставку, Анна Смирнова"), call("a2", contact="2"))
    anna = contact_of(hub_db, "1")
    erasure.erase(hub_db.engine, hub_db.settings, anna, actor="cli")
    kept = rows(hub_db)
    assert set(kept) == {"a2"} and kept["a2"].subject == "Входящий звонок"  # Ольга's call stays


class RobotNotes:
    """A plugin that keeps a telephony robot's notes out."""

    @hookimpl
    def refuse_activities(self, activities: list[ActivityRecord]) -> set[int]:
        return {i for i, a in enumerate(activities) if (a.subject or "").startswith("[robot]")}


def test_a_plugin_can_refuse_activities(hub_db: HubDB, plugin_manager: Any) -> None:
    # hook:refuse_activities
    plugin_manager.register(RobotNotes())
    counts = page(hub_db, person("1", ["+79035550001"]), call("a1", subject="[robot] автоответчик"),
                  call("a2", subject="Перезвонил"))
    assert counts.activities["refused"] == 1 and counts.activities["created"] == 1
    assert set(rows(hub_db)) == {"a2"}
