"""A shared value that joins nobody is looked up by its latest reason alone, without reading its holders.

What the resolver knows of such a value must be what reading every holder
told it: the reason, and (for a merge's log) the holders a row of another
reason left. These tests build those rows and compare.
"""

from __future__ import annotations

import pytest
from sqlalchemy import update

from hub import identity, sync
from hub.models import ContactIdentity
from hub.records import ContactRecord
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases  # the latest reason is read through each database's own value list

HOTLINE = "8 800 555-35-35"
SWITCHBOARD = "+7 495 111-22-33"


def write(db: HubDB, *records: ContactRecord) -> list[int]:
    with db.engine.begin() as conn:
        placed = sync.write_contacts(conn, list(records), db.settings, sync.Counts()).contact_ids
    return [cid for cid in placed if cid is not None]


def person(ref: str, first: str, last: str, phone: str) -> ContactRecord:
    return ContactRecord(source="crm", external_id=ref, first_name=first, last_name=last, phones=[phone],
                         labels={phone: "work"})


def found_for(db: HubDB, phone: str) -> tuple[identity._Found, list[identity.Prepared]]:
    prepared = [identity.prepare(person("new", "Олег", "Новиков", phone), db.settings.default_region)]
    with db.engine.connect() as conn:
        return identity._lookup(conn, prepared), prepared


def test_a_hotline_many_people_typed_is_known_shared_without_its_holders(hub_db: HubDB) -> None:
    staff = [("Иван", "Петров"), ("Мария", "Сидорова"), ("Олег", "Кузнецов"), ("Анна", "Смирнова")]
    ids = write(hub_db, *[person(str(i), first, last, HOTLINE) for i, (first, last) in enumerate(staff)])
    assert len(set(ids)) == 4
    found, _ = found_for(hub_db, HOTLINE)
    key = ("phone", "+78005553535")
    assert found.shared[key] == "toll_free"
    assert key in found.unread and key not in found.holders


def test_holders_left_unread_are_read_as_a_full_read_would_have_kept_them(hub_db: HubDB) -> None:
    staff = [("Иван", "Петров"), ("Мария", "Сидорова"), ("Олег", "Кузнецов")]
    ids = write(hub_db, *[person(str(i), first, last, SWITCHBOARD) for i, (first, last) in enumerate(staff)])
    key = ("phone", "+74951112233")
    c = ContactIdentity.__table__.c
    with hub_db.engine.begin() as conn:  # the latest holder's row says fax: the value joins nobody now
        conn.execute(update(ContactIdentity.__table__).where(c.value == key[1], c.contact_id == ids[2])
                     .values(shared="fax"))
    found, prepared = found_for(hub_db, SWITCHBOARD)
    assert found.shared[key] == "fax" and key in found.unread and key not in found.holders
    with hub_db.engine.connect() as conn:
        identity._read_unread(conn, found, prepared, [0])
    assert key not in found.unread
    assert found.holders[key] == ids[:2]  # the rows still shared by names, in the order they were written
    assert found.sources[(key, ids[0])] == "crm" and (key, ids[2]) not in found.sources
    assert found.shared[key] == "fax"
