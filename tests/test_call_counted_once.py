"""One call noted twice is one call.

amoCRM's telephony notes a call on the contact and on the lead alike: two
notes, one call (the same `params.uniq`). Both are kept, as the CRM keeps
both, but "calls in 30 days" and the lead score built on it count the call
once; calls without a call id count one by one as before.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from hub import activities
from hub.models import Activity, Order
from hub.records import ContactRecord
from hub.segments.evaluate import Segments
from hub.segments.reference import Reference, Snapshot
from hub.segments.rules import Parser
from hub.sync import Counts, write_contacts
from plugins.amocrm import mapping
from tests.conftest import HubDB
from tests.support.segments import members as probe_members

pytestmark = pytest.mark.both_databases  # count(DISTINCT …) in a HAVING and a scalar subquery on both

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def note(note_id: int, entity_id: str, uniq: str | None, *, days: int = 2, source: str = "Телефония") -> dict[str, Any]:
    """A call_in note as GET /api/v4/{entity}/notes returns it."""
    params: dict[str, Any] = {"duration": 95, "source": source, "link": "", "phone": "+79161234567",
                              "call_status": 4, "call_result": "Договорились"}
    if uniq is not None:
        params["uniq"] = uniq
    return {"id": note_id, "entity_id": entity_id, "note_type": "call_in", "responsible_user_id": 11,
            "created_at": int((NOW - dt.timedelta(days=days)).timestamp()), "params": params}


@pytest.fixture
def anna(hub_db: HubDB) -> int:
    """Anna (amoCRM contact 7) with lead 501; her calls: one noted on her and on the lead, one on her
    alone, one whose telephony gives no call id, and another telephony's call with the same uniq."""
    with hub_db.engine.begin() as conn:
        result = write_contacts(conn, [ContactRecord(source="amocrm", external_id="7", first_name="Анна",
                                                     phones=["+79161234567"])], hub_db.settings, Counts())
        cid = result.contact_ids[0]
        assert cid is not None
        conn.execute(insert(Order.__table__).values(source="amocrm", external_id="501", contact_external_id="7",
                                                    contact_id=cid, amount=Decimal(0), status="open"))
        calls = [mapping.call_note(note(1, "7", "call-1"), "contacts"),
                 mapping.call_note(note(2, "501", "call-1"), "leads"),  # the same call, noted on the lead
                 mapping.call_note(note(3, "7", "call-2"), "contacts"),
                 mapping.call_note(note(4, "7", None), "contacts"),
                 mapping.call_note(note(5, "7", "call-1", source="Другая АТС"), "contacts")]
        activities.write_activities(conn, [c for c in calls if c is not None], Counts())
    return cid


def members(db: HubDB, rule: dict[str, Any]) -> set[int]:
    return probe_members(db, rule, NOW)


def test_both_notes_are_kept_and_name_the_same_call(hub_db: HubDB, anna: int) -> None:
    a = Activity.__table__.c
    with hub_db.engine.connect() as conn:
        rows = conn.execute(select(a.external_id, a.contact_id, a.order_external_id, a.call_id)
                            .order_by(a.external_id)).all()
    assert [(r.external_id, r.contact_id, r.order_external_id, r.call_id) for r in rows] == [
        ("note:1", anna, None, "Телефония:call-1"), ("note:2", anna, "501", "Телефония:call-1"),
        ("note:3", anna, None, "Телефония:call-2"), ("note:4", anna, None, None),
        ("note:5", anna, None, "Другая АТС:call-1")]


@pytest.mark.parametrize(("op", "value", "matched"), [
    ("gte", 4, True),   # call-1 once, call-2, the call without an id, the other telephony's call-1
    ("gte", 5, False),  # the lead's note of call-1 is not a fifth call
    ("eq", 4, True),    # counted per contact (the scalar path), not only as "at least"
    ("gt", 4, False),
])
def test_calls_in_30_days_count_each_call_once(hub_db: HubDB, anna: int, op: str, value: int,
                                               matched: bool) -> None:
    rule = {"field": "calls.count.30d", "op": op, "value": value}
    assert (anna in members(hub_db, rule)) is matched
    with hub_db.engine.begin() as conn:
        segments = Segments(conn, hub_db.settings, now=NOW)
        node = Parser(segments.registry).rule(rule, "rule")
        assert node is not None
        expected = Reference(Snapshot.load(conn), segments.registry, now=NOW, segments={}).members(node)
    assert (anna in expected) is matched


def test_a_note_read_again_keeps_its_call_id(hub_db: HubDB, anna: int) -> None:
    again = mapping.call_note(note(2, "501", "call-1"), "leads")
    assert again is not None
    counts = Counts()
    with hub_db.engine.begin() as conn:
        activities.write_activities(conn, [again], counts)
        total = conn.execute(select(func.count()).select_from(Activity.__table__)).scalar_one()
    assert counts.activities["updated"] == 0 and total == 5


def test_a_long_telephony_name_does_not_make_two_calls_one() -> None:
    """The call id is kept whole or as its digest: cut at the column's length, two calls could end alike."""
    long_source = "АТС " * 60
    first = mapping.call_note(note(6, "7", "call-A", source=long_source), "contacts")
    second = mapping.call_note(note(7, "7", "call-B", source=long_source), "contacts")
    again = mapping.call_note(note(8, "501", "call-A", source=long_source), "leads")
    assert first is not None and second is not None and again is not None
    assert first.call_id != second.call_id and first.call_id == again.call_id
    assert first.call_id is not None and len(first.call_id) <= 200
