"""The current consent answers kept beside the ledger (consent_states) always say what the ledger says.

Segments read consent_states; the send-time decision and the contact card
read the ledger. Each way the ledger changes — an answer, an older answer
recorded later, a tie, answers in bulk, a merge, its undo, an erasure, a
database migrated with answers already in it — must leave every row equal to
`consent.current`, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, delete, select

from hub import consent, identity, migrations, sync
from hub.models import ConsentEvent
from hub.records import ContactRecord
from hub.segments.evaluate import Segments
from hub.segments.rules import Parser
from hub.unmerge import unmerge
from plugins.gdpr import erasure
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def people(db: HubDB, *names: str) -> list[int]:
    records = [ContactRecord(source="t", external_id=name, first_name=name, emails=[f"{name}@example.ru"])
               for name in names]
    with db.engine.begin() as conn:
        ids = sync.write_contacts(conn, records, db.settings, sync.Counts()).contact_ids
    return [int(i) for i in ids if i is not None]


def kept(conn: Connection) -> dict[tuple[int, str, str], str]:
    s = consent.states_t.c
    return {(r.contact_id, r.channel, r.purpose): r.status
            for r in conn.execute(select(s.contact_id, s.channel, s.purpose, s.status))}


def from_ledger(conn: Connection) -> dict[tuple[int, str, str], str]:
    holders = conn.execute(select(consent.events_t.c.contact_id).distinct()).scalars().all()
    return {(cid, channel, purpose): status for cid in holders
            for (channel, purpose), status in consent.current(conn, cid).items()}


def agree(db: HubDB) -> dict[tuple[int, str, str], str]:
    with db.engine.connect() as conn:
        states, ledger = kept(conn), from_ledger(conn)
    assert states == ledger
    return states


def test_each_answer_is_current_unless_a_later_one_was_given(hub_db: HubDB) -> None:
    anna, boris = people(hub_db, "anna", "boris")
    with hub_db.engine.begin() as conn:
        consent.record(conn, anna, "email", "marketing", "granted", source="form", at=T0)
        consent.record(conn, anna, "email", "marketing", "withdrawn", source="unsubscribe", at=T0 + dt.timedelta(1))
        # An old paper form imported afterwards does not undo the later unsubscribe.
        consent.record(conn, anna, "email", "marketing", "granted", source="paper", at=T0 - dt.timedelta(30))
        # Two answers given at the same moment: the one recorded last is current, as the ledger decides.
        consent.record(conn, boris, "sms", "marketing", "granted", source="form", at=T0)
        consent.record(conn, boris, "sms", "marketing", "pending", source="form", at=T0)
        consent.record(conn, boris, "email", "news", "granted", source="form", at=T0)
    states = agree(hub_db)
    assert states == {(anna, "email", "marketing"): "withdrawn", (boris, "sms", "marketing"): "pending",
                      (boris, "email", "news"): "granted"}


def test_answers_in_bulk_are_current_too(hub_db: HubDB) -> None:
    ids = people(hub_db, "anna", "boris", "vera")
    with hub_db.engine.begin() as conn:
        for cid in ids:
            consent.record(conn, cid, "email", "marketing", "granted", source="form", at=T0)
        # A bounce mailbox withdraws thousands at once; one of them carries an older date than the grant.
        consent.record_many(conn, [
            consent.Answer(ids[0], "email", "marketing", "withdrawn", "complaint", {}, T0 + dt.timedelta(1)),
            consent.Answer(ids[1], "email", "marketing", "withdrawn", "complaint", {}, T0 - dt.timedelta(1)),
            consent.Answer(ids[2], "email", "surveys", "withdrawn", "complaint", {}),
        ])
    states = agree(hub_db)
    assert [states[(cid, "email", "marketing")] for cid in ids] == ["withdrawn", "granted", "granted"]


def granted_email(db: HubDB) -> set[int]:
    """Who a segment's "consent.email.marketing is granted" finds (it reads consent_states)."""
    with db.engine.connect() as conn:
        segments = Segments(conn, db.settings)
        parser = Parser(segments.registry)
        node = parser.rule({"field": "consent.email.marketing", "op": "eq", "value": "granted"}, "rule")
        assert node is not None and not parser.problems
        return set(conn.execute(segments.compiler.members(node)).scalars())


def test_a_merge_and_its_undo_move_the_current_answers_with_the_ledger(hub_db: HubDB) -> None:
    anna, twin = people(hub_db, "anna", "twin")
    with hub_db.engine.begin() as conn:
        consent.record(conn, anna, "email", "marketing", "granted", source="form", at=T0)
        consent.record(conn, twin, "email", "marketing", "withdrawn", source="unsubscribe", at=T0 - dt.timedelta(9))
        consent.record(conn, twin, "sms", "surveys", "granted", source="form", at=T0)
    assert granted_email(hub_db) == {anna}
    with hub_db.engine.begin() as conn:
        merge_id = identity.merge_contacts(conn, anna, twin, reason={"rule": "by hand"}, settings=hub_db.settings)
    states = agree(hub_db)
    # The stricter answer wins a merge, and the twin's other answers are the survivor's now.
    assert states == {(anna, "email", "marketing"): "withdrawn", (anna, "sms", "surveys"): "granted"}
    assert granted_email(hub_db) == set()
    unmerge(hub_db.engine, hub_db.settings, merge_id, actor="test")
    states = agree(hub_db)
    assert states[(anna, "email", "marketing")] == "granted" and (anna, "sms", "surveys") not in states
    assert states[(twin, "email", "marketing")] == "withdrawn" and states[(twin, "sms", "surveys")] == "granted"
    assert granted_email(hub_db) == {anna}


def test_an_erased_person_leaves_no_current_answer(hub_db: HubDB) -> None:
    anna, boris = people(hub_db, "anna", "boris")
    with hub_db.engine.begin() as conn:
        for cid in (anna, boris):
            consent.record(conn, cid, "email", "marketing", "granted", source="form", at=T0)
    erasure.erase(hub_db.engine, hub_db.settings, anna, actor="test")
    states = agree(hub_db)
    assert {key[0] for key in states} == {boris}
    assert granted_email(hub_db) == {boris}


def test_the_migration_fills_the_current_answers_from_the_ledger_already_there(hub_db: HubDB) -> None:
    anna, boris = people(hub_db, "anna", "boris")
    answers: list[dict[str, Any]] = [
        {"contact_id": anna, "channel": "email", "purpose": "marketing", "status": "granted", "at": T0},
        {"contact_id": anna, "channel": "email", "purpose": "marketing", "status": "withdrawn",
         "at": T0 + dt.timedelta(1)},
        {"contact_id": anna, "channel": "email", "purpose": "marketing", "status": "granted",
         "at": T0 - dt.timedelta(1)},
        {"contact_id": boris, "channel": "sms", "purpose": "marketing", "status": "granted", "at": T0},
        {"contact_id": boris, "channel": "sms", "purpose": "marketing", "status": "pending", "at": T0},
    ]
    config = migrations.alembic_config(hub_db.engine)
    command.downgrade(config, "0016")
    try:
        with hub_db.engine.begin() as conn:
            conn.execute(delete(ConsentEvent.__table__))
            conn.execute(ConsentEvent.__table__.insert(), [{**a, "source": "old", "evidence": {}} for a in answers])
    finally:
        command.upgrade(config, "head")
    states = agree(hub_db)
    assert states == {(anna, "email", "marketing"): "withdrawn", (boris, "sms", "marketing"): "pending"}
