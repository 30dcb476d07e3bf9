"""Bitrix24 phone and email types reach Hub, and a B2B portal syncs into the right people.

The unit tests answer with crm.contact.list rows in the documented shape
(multifields as {ID, VALUE_TYPE, VALUE, TYPE_ID}); the end-to-end ones sync the
portal emulator's B2B part (`Portal(b2b=True)`) and check the stored
identities against the emulator's ground truth.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

import pytest
import responses
from sqlalchemy import select

import plugins.bitrix24 as bitrix24_plugin
from hub import normalize
from hub.config import Settings
from hub.models import ContactIdentity, ExternalRef
from hub.ratelimit import LocalBucket
from hub.records import LABELS, ContactRecord
from plugins.bitrix24 import mapping
from plugins.bitrix24.client import Client, WebhookAuth
from plugins.bitrix24.sandbox import Portal, SandboxServer, b2b
from plugins.bitrix24.source import Bitrix24Source
from tests.conftest import HubDB
from tests.support.cli import cli, run_ok
from tests.support.crms import assert_b2b_truth

HOOK = "https://shop.bitrix24.ru/rest/1/s3cr3tc0de/"
TIME = {"start": 1724916859.4, "finish": 1724916859.5, "duration": 0.1, "processing": 0.05,
        "date_start": "2024-08-29T10:34:19+03:00", "date_finish": "2024-08-29T10:34:19+03:00"}
TODAY = dt.date(2025, 6, 1)

# Every VALUE_TYPE crm.multifield.fields documents for PHONE and EMAIL, and the label Hub keeps.
PHONE_TYPES = {"WORK": "work", "MOBILE": "mobile", "FAX": "fax", "HOME": "home", "PAGER": "other",
               "MAILING": "mailing", "OTHER": "other"}
EMAIL_TYPES = {"WORK": "work", "HOME": "private", "MAILING": "mailing", "OTHER": "other"}


def documented_row() -> dict[str, Any]:
    """A crm.contact.list row holding one phone of each type and one email of each type."""
    phones = [{"ID": str(n), "VALUE_TYPE": kind, "VALUE": f"+7 (495) 100-00-{n:02d}", "TYPE_ID": "PHONE"}
              for n, kind in enumerate(PHONE_TYPES, start=1)]
    emails = [{"ID": str(20 + n), "VALUE_TYPE": kind, "VALUE": f"{kind.lower()}@example.ru", "TYPE_ID": "EMAIL"}
              for n, kind in enumerate(EMAIL_TYPES, start=1)]
    return {"ID": "17", "NAME": "Ольга", "LAST_NAME": "Смирнова", "SECOND_NAME": None,
            "DATE_CREATE": "2024-08-15T10:38:21+03:00", "DATE_MODIFY": "2024-08-16T00:10:00+03:00",
            "PHONE": phones, "EMAIL": emails}


def expected_labels() -> dict[str, str]:
    labels = {f"+7 (495) 100-00-{n:02d}": label for n, label in enumerate(PHONE_TYPES.values(), start=1)}
    labels.update({f"{kind.lower()}@example.ru": label for kind, label in EMAIL_TYPES.items()})
    return labels


def batch(key: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"result": {"result": {key: rows}, "result_error": [], "result_total": [], "result_next": [],
                       "result_time": []}, "time": TIME}


def source() -> Bitrix24Source:
    return Bitrix24Source(Settings(), client=Client(WebhookAuth(HOOK), LocalBucket(1000, 1000), sleep=lambda s: None))


def test_the_mapping_table_covers_the_documented_types_with_hub_labels() -> None:
    assert mapping.PHONE_LABELS == PHONE_TYPES and mapping.EMAIL_LABELS == EMAIL_TYPES
    assert set(PHONE_TYPES.values()) | set(EMAIL_TYPES.values()) <= set(LABELS)


@responses.activate
def test_a_full_sync_and_an_event_fetch_both_hand_hub_every_type() -> None:
    # The sync path (paged crm.contact.list in a batch) and the events path (the contact fetched by ID
    # after ONCRMCONTACTUPDATE) read the same rows and must label them the same way.
    responses.post(HOOK + "batch", json=batch("contact", []))  # the directory: no custom fields
    responses.post(HOOK + "batch", json=batch("p0", [documented_row()]))
    responses.post(HOOK + "batch", json=batch("f0", [documented_row()]))  # and the companies: none
    portal = source()
    (page,) = list(portal.read("contacts", None, True))
    (synced,) = page.records
    (fetched,) = portal.fetch("contacts", ["17"])
    for record in (synced, fetched):
        assert isinstance(record, ContactRecord)
        assert record.labels == expected_labels()
        assert set(record.phones) | set(record.emails) == set(record.labels)


def test_a_value_given_twice_keeps_its_first_type_and_an_unknown_type_no_label() -> None:
    raw = {"ID": "5", "NAME": "Наталья",
           "PHONE": [{"ID": "1", "VALUE_TYPE": "MOBILE", "VALUE": " +7 916 303-44-55 ", "TYPE_ID": "PHONE"},
                     {"ID": "2", "VALUE_TYPE": "MAILING", "VALUE": "+7 916 303-44-55", "TYPE_ID": "PHONE"},
                     {"ID": "3", "VALUE_TYPE": "SATELLITE", "VALUE": "+7 954 000-00-01", "TYPE_ID": "PHONE"},
                     {"ID": "4", "VALUE_TYPE": "work", "VALUE": "8 495 123-40-00", "TYPE_ID": "PHONE"}],
           "EMAIL": [{"ID": "5", "VALUE": "nat@example.ru", "TYPE_ID": "EMAIL"}]}
    record = mapping.contact(raw)
    assert record.phones == ["+7 916 303-44-55", "+7 916 303-44-55", "+7 954 000-00-01", "8 495 123-40-00"]
    assert record.labels == {"+7 916 303-44-55": "mobile", "8 495 123-40-00": "work"}


# --------------------------------------------------------------------------- end to end, B2B portal

@pytest.fixture
def b2b_portal() -> Iterator[SandboxServer]:
    server = SandboxServer(Portal(contacts=40, seed=11, today=TODAY, b2b=True)).start()
    yield server
    server.stop()
    server.portal.close()


@pytest.fixture
def hub(hub_db: HubDB, plugin_manager: Any) -> HubDB:
    plugin_manager.register(bitrix24_plugin, name="bitrix24")
    bitrix24_plugin.register_commands(cli)
    return hub_db


def b2b_records(portal: Portal) -> dict[int, tuple[int, b2b.Entry]]:
    """Portal contact ID -> (person id, the record as typed), for the B2B part."""
    entries = iter([(person, entry) for person, records in b2b.PEOPLE.items() for entry in records])
    return {contact_id: next(entries) for contact_id, person in sorted(portal.contact_person.items())
            if person >= b2b.PERSON_BASE}


def stored(db: HubDB) -> tuple[dict[str, int], dict[tuple[int, str, str], str | None]]:
    """Portal contact ID -> Hub contact id, and (contact id, kind, value) -> stored label."""
    with db.engine.connect() as conn:
        refs = dict(conn.execute(select(ExternalRef.external_id, ExternalRef.contact_id)
                                 .where(ExternalRef.source == "bitrix24")).all())
        labels = {(row.contact_id, row.kind, row.value): row.label
                  for row in conn.execute(select(ContactIdentity.contact_id, ContactIdentity.kind,
                                                 ContactIdentity.value, ContactIdentity.label))}
    return refs, labels


def test_the_b2b_portal_holds_the_types_a_manager_sets_in_the_documented_shape(b2b_portal: SandboxServer) -> None:
    portal = b2b_portal.portal
    records = b2b_records(portal)
    assert len(records) == sum(len(r) for r in b2b.PEOPLE.values()) and portal.contact_count == 40 + len(records)
    client = Client(WebhookAuth(b2b_portal.webhook_url), LocalBucket(1000, 1000))
    rows = [row for page in client.pages("crm.contact.list", select=["ID", "NAME", "LAST_NAME", "PHONE", "EMAIL"])
            for row in page]
    by_id = {int(row["ID"]): row for row in rows}
    for contact_id, (_, entry) in records.items():
        row = by_id[contact_id]
        assert [(p["VALUE_TYPE"], p["VALUE"]) for p in row.get("PHONE", [])] == list(entry.phones)
        assert [(e["VALUE_TYPE"], e["VALUE"]) for e in row.get("EMAIL", [])] == list(entry.emails)
        assert all(set(item) == {"ID", "VALUE_TYPE", "VALUE", "TYPE_ID"} for item in row.get("PHONE", []))
    used = {kind for _, entry in records.values() for kind, _ in entry.phones}
    assert used == set(PHONE_TYPES)  # every documented phone type appears somewhere
    assert {kind for _, entry in records.values() for kind, _ in entry.emails} == set(EMAIL_TYPES) - {"OTHER"}


def test_a_b2b_sync_stores_each_phone_and_email_with_its_type(hub: HubDB, b2b_portal: SandboxServer) -> None:
    run_ok("connect", "bitrix24", "--webhook", b2b_portal.webhook_url)
    run_ok("sync", "bitrix24", "--json")
    refs, labels = stored(hub)
    checked = 0
    for contact_id, (_, entry) in b2b_records(b2b_portal.portal).items():
        hub_id = refs[str(contact_id)]
        types: dict[tuple[str, str], str] = {}  # the first type a value is given is the one it keeps
        for kind, raw in entry.phones:
            for phone in normalize.phones(raw):
                types.setdefault(("phone", phone.value), PHONE_TYPES[kind])
        for kind, raw in entry.emails:
            address = normalize.email(raw)
            assert address is not None
            types.setdefault(("email", address.value), EMAIL_TYPES[kind])
        for (kind, value), label in types.items():
            assert labels[hub_id, kind, value] == label, (entry, kind, value)
            checked += 1
    assert checked == 41


def test_a_b2b_sync_keeps_colleagues_spouses_and_hotline_callers_apart_and_joins_one_person_written_three_ways(
        hub: HubDB, b2b_portal: SandboxServer) -> None:
    run_ok("connect", "bitrix24", "--webhook", b2b_portal.webhook_url)
    run_ok("sync", "bitrix24", "--json")
    refs, _ = stored(hub)
    with hub.engine.connect() as conn:
        shared = {(row.contact_id, row.kind, row.value): row.shared
                  for row in conn.execute(select(ContactIdentity.contact_id, ContactIdentity.kind,
                                                 ContactIdentity.value, ContactIdentity.shared))}
    assert_b2b_truth(b2b, b2b_records(b2b_portal.portal), refs, shared)
