"""amoCRM phone and email types reach Hub, and a B2B account syncs into the right people.

The unit tests answer with API v4 contacts in the documented shape (PHONE and
EMAIL in `custom_fields_values`, each value with its `enum_id` and
`enum_code`); the end-to-end ones sync the account emulator's B2B part
(`Account(b2b=True)`) and check the stored identities against the
emulator's ground truth.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterator

import pytest
import responses
from sqlalchemy import select

import plugins.amocrm
from hub import normalize, sync
from hub.config import Settings
from hub.models import ContactIdentity, ExternalRef
from hub.ratelimit import LocalBucket
from hub.records import LABELS, ContactRecord
from plugins.amocrm import commands, mapping, tokens
from plugins.amocrm.client import AmoClient, StaticAuth
from plugins.amocrm.sandbox import Account, SandboxServer, b2b
from plugins.amocrm.sandbox.data import EMAIL, PHONE
from plugins.amocrm.source import AmoSource
from tests.conftest import HubDB
from tests.support.crms import assert_b2b_truth

BASE = "https://shop.amocrm.ru"
NOW = 1_700_000_000
TODAY = dt.date(2025, 6, 1)

# Every enum_code amoCRM's predefined PHONE and EMAIL fields have, and the label Hub keeps.
PHONE_CODES = {"WORK": "work", "WORKDD": "work", "MOB": "mobile", "FAX": "fax", "HOME": "home", "OTHER": "other"}
EMAIL_CODES = {"WORK": "work", "PRIV": "private", "OTHER": "other"}


def documented_contact() -> dict[str, Any]:
    """A contact as GET /api/v4/contacts returns it, with one phone and one email of each type."""
    phones = [{"value": f"+7 (495) 100-00-{n:02d}", "enum_id": 2_000_000 + n, "enum_code": code}
              for n, code in enumerate(PHONE_CODES, start=1)]
    emails = [{"value": f"{code.lower()}@example.ru", "enum_id": 2_000_010 + n, "enum_code": code}
              for n, code in enumerate(EMAIL_CODES, start=1)]
    return {
        "id": 17, "name": "Ольга Смирнова", "first_name": "Ольга", "last_name": "Смирнова",
        "responsible_user_id": 504141, "group_id": 0, "created_by": 504141, "updated_by": 504141,
        "created_at": NOW - 100, "updated_at": NOW - 50, "closest_task_at": None, "is_deleted": False,
        "is_unsorted": False, "account_id": 28805383,
        "custom_fields_values": [
            {"field_id": 3, "field_name": "Телефон", "field_code": "PHONE", "field_type": "multitext",
             "values": phones},
            {"field_id": 4, "field_name": "Email", "field_code": "EMAIL", "field_type": "multitext",
             "values": emails},
        ],
        "_links": {"self": {"href": f"{BASE}/api/v4/contacts/17"}},
        "_embedded": {"tags": [], "companies": []},
    }


def expected_labels() -> dict[str, str]:
    labels = {f"+7 (495) 100-00-{n:02d}": label for n, label in enumerate(PHONE_CODES.values(), start=1)}
    labels.update({f"{code.lower()}@example.ru": label for code, label in EMAIL_CODES.items()})
    return labels


def listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"_page": 1, "_links": {"self": {"href": f"{BASE}/api/v4/contacts?page=1"}},
            "_embedded": {"contacts": items}}


def make_source() -> AmoSource:
    client = AmoClient(BASE, StaticAuth("tok"), LocalBucket(10_000, 10_000), sleep=lambda s: None)
    return AmoSource(Settings(), client=client, account={"currency": "RUB", "customers_mode": "disabled"},
                     clock=lambda: NOW)


def test_the_mapping_table_covers_the_predefined_enum_codes_with_hub_labels() -> None:
    assert mapping.LABELS == {"PHONE": PHONE_CODES, "EMAIL": EMAIL_CODES}
    assert set(PHONE_CODES.values()) | set(EMAIL_CODES.values()) <= set(LABELS)
    # The emulator's predefined fields hold exactly these codes, as a real account does.
    assert {code for _, code in PHONE.enums} == set(PHONE_CODES)
    assert {code for _, code in EMAIL.enums} == set(EMAIL_CODES)


@responses.activate
def test_a_full_sync_a_change_and_a_webhook_fetch_all_hand_hub_every_type() -> None:
    # Full read, incremental read (changed since the last run) and the webhook's fetch by id read the same
    # contact through three requests and must label it the same way.
    for _ in range(3):
        responses.get(f"{BASE}/api/v4/contacts", json=listing([documented_contact()]))
    responses.get(f"{BASE}/api/v4/events", status=204, body="")
    source = make_source()
    full = [r for page in source.read("contacts", None, True) for r in page.records]
    changed = [r for page in source.read("contacts", json.dumps({"since": NOW - 600, "events": NOW - 600}), False)
               for r in page.records]
    fetched = source.fetch("contacts", ["17"])
    for records in (full, changed, fetched):
        (record,) = records
        assert isinstance(record, ContactRecord)
        assert record.labels == expected_labels()
        assert set(record.phones) | set(record.emails) == set(record.labels)


def test_a_value_given_twice_keeps_its_first_type_and_an_unknown_code_no_label() -> None:
    row = {"id": 5, "first_name": "Кирилл", "last_name": "Орлов", "custom_fields_values": [
        {"field_id": 3, "field_code": "PHONE", "field_type": "multitext", "values": [
            {"value": " +7 915 121-21-21 ", "enum_id": 3, "enum_code": "MOB"},
            {"value": "+7 915 121-21-21", "enum_id": 1, "enum_code": "WORK"},
            {"value": "+7 495 777-00-15", "enum_id": 2, "enum_code": "workdd"},
            {"value": "+7 954 000-00-01", "enum_id": 9, "enum_code": "SAT"},
            {"value": "+7 954 000-00-02", "enum_id": 9}]},
        {"field_id": 4, "field_code": "EMAIL", "field_type": "multitext", "values": [
            {"value": "k.orlov@technosfera.ru", "enum_id": 12, "enum_code": "PRIV"}]}]}
    record = mapping.contact(row)
    assert record.labels == {"+7 915 121-21-21": "mobile", "+7 495 777-00-15": "work",
                             "k.orlov@technosfera.ru": "private"}


# --------------------------------------------------------------------------- end to end, B2B account

@pytest.fixture
def b2b_account() -> Iterator[SandboxServer]:
    account = Account(contacts=40, seed=5, today=TODAY, b2b=True)
    with SandboxServer(account) as server:
        yield server
    account.close()


@pytest.fixture
def synced(hub_db: HubDB, plugin_manager: Any, b2b_account: SandboxServer) -> HubDB:
    plugin_manager.register(plugins.amocrm)
    pair = b2b_account.account.issue_tokens()
    tokens.save(hub_db.engine, hub_db.settings, tokens.oauth_connection(
        b2b_account.base_url, b2b_account.client_id, b2b_account.client_secret, b2b_account.redirect_uri,
        access_token=pair["access_token"], refresh_token=pair["refresh_token"]))
    commands.account_details(hub_db.settings)
    report = sync.run(hub_db.engine, hub_db.settings, "amocrm", full=True)
    assert report.as_dict()["errors"] == 0
    return hub_db


def b2b_records(account: Account) -> dict[int, tuple[int, b2b.Entry]]:
    """Account contact id -> (person id, the contact as typed), for the B2B part."""
    entries = iter([(person, entry) for person, records in b2b.PEOPLE.items() for entry in records])
    ids = sorted(i for i in account.contact_ids() if (account.person_id(i) or 0) >= b2b.PERSON_BASE)
    return {contact_id: next(entries) for contact_id in ids}


def identities(db: HubDB) -> tuple[dict[str, int], dict[tuple[int, str, str], tuple[str | None, str | None]]]:
    """Account contact id -> Hub contact id, and (contact id, kind, value) -> (stored label, shared)."""
    with db.engine.connect() as conn:
        refs = dict(conn.execute(select(ExternalRef.external_id, ExternalRef.contact_id)
                                 .where(ExternalRef.source == "amocrm")).all())
        stored = {(row.contact_id, row.kind, row.value): (row.label, row.shared)
                  for row in conn.execute(select(ContactIdentity.contact_id, ContactIdentity.kind,
                                                 ContactIdentity.value, ContactIdentity.label,
                                                 ContactIdentity.shared))}
    return refs, stored


def test_the_b2b_account_renders_the_enum_codes_a_manager_picks(b2b_account: SandboxServer) -> None:
    account = b2b_account.account
    records = b2b_records(account)
    assert len(records) == sum(len(r) for r in b2b.PEOPLE.values()) and account.contacts_count == 40 + len(records)
    for contact_id, (person, entry) in records.items():
        assert account.person_id(contact_id) == person
        row = account.contact(contact_id)
        assert row is not None and (row["first_name"], row["last_name"]) == (entry.first, entry.last)
        fields = {f["field_code"]: f["values"] for f in row["custom_fields_values"] or []}
        assert [(v["enum_code"], v["value"]) for v in fields.get("PHONE", [])] == list(entry.phones)
        assert [(v["enum_code"], v["value"]) for v in fields.get("EMAIL", [])] == list(entry.emails)
        assert all(v["enum_id"] == PHONE.enum_id(v["enum_code"]) for v in fields.get("PHONE", []))
    used = {code for _, entry in records.values() for code, _ in entry.phones}
    assert used == set(PHONE_CODES)  # every phone type appears somewhere
    assert {code for _, entry in records.values() for code, _ in entry.emails} == set(EMAIL_CODES)


def test_a_b2b_sync_stores_each_phone_and_email_with_its_type(synced: HubDB, b2b_account: SandboxServer) -> None:
    refs, stored = identities(synced)
    checked = 0
    for contact_id, (_, entry) in b2b_records(b2b_account.account).items():
        hub_id = refs[str(contact_id)]
        types: dict[tuple[str, str], str] = {}  # the first type a value is given is the one it keeps
        for code, raw in entry.phones:
            for phone in normalize.phones(raw):
                types.setdefault(("phone", phone.value), PHONE_CODES[code])
        for code, raw in entry.emails:
            address = normalize.email(raw)
            assert address is not None
            types.setdefault(("email", address.value), EMAIL_CODES[code])
        for (kind, value), label in types.items():
            assert stored[hub_id, kind, value][0] == label, (entry, kind, value)
            checked += 1
    assert checked == 37


def test_a_b2b_sync_keeps_colleagues_spouses_and_hotline_callers_apart_and_joins_one_person_written_three_ways(
        synced: HubDB, b2b_account: SandboxServer) -> None:
    refs, stored = identities(synced)
    assert_b2b_truth(b2b, b2b_records(b2b_account.account), refs,
                     {key: value[1] for key, value in stored.items()})
