"""Erasing a person in amoCRM also empties the calls with them logged on their leads, and only those."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterator

import pytest
import responses

from hub.api import Settings, utcnow
from hub.ratelimit import LocalBucket
from plugins.amocrm.client import AmoClient, StaticAuth
from plugins.amocrm.sandbox import Account, SandboxServer
from plugins.amocrm.source import AmoSource

BASE = "https://shop.amocrm.ru"
NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.timezone.utc)
ANNA = {"id": 42, "name": "Анна Иванова", "custom_fields_values": [
    {"field_id": 1, "field_code": "PHONE", "values": [{"value": "8 (916) 123-45-67", "enum_code": "MOB"}]}],
    "_embedded": {"leads": [{"id": 7}]}}


def amo() -> AmoSource:
    settings = Settings(database_url="sqlite://", extra={"amocrm": {}})
    client = AmoClient(BASE, StaticAuth("tok"), LocalBucket(10_000, 10_000), sleep=lambda s: None)
    return AmoSource(settings, client=client, account={"currency": "RUB", "customers_mode": "disabled"},
                     clock=lambda: NOW)


def call(note_id: int, phone: str) -> dict[str, Any]:
    return {"id": note_id, "entity_id": 7, "note_type": "call_in",
            "params": {"uniq": f"u{note_id}", "duration": 60, "source": "Телефония", "phone": phone,
                       "link": "https://rec/1.mp3", "call_status": 4, "call_result": "Обсудили заказ"}}


@responses.activate
def test_a_leads_calls_with_the_erased_number_are_emptied_and_a_colleagues_stay() -> None:
    responses.get(f"{BASE}/api/v4/contacts/42", json=ANNA)
    responses.patch(f"{BASE}/api/v4/contacts", json={"_embedded": {"contacts": [{"id": 42}]}})
    responses.get(f"{BASE}/api/v4/contacts/42/notes", status=204)
    responses.get(f"{BASE}/api/v4/leads/7/notes", json={"_embedded": {"notes": [
        call(501, "+7 916 123-45-67"), call(502, "+79035550000"), call(503, "")]}})

    def edited(request: Any) -> tuple[int, dict[str, str], str]:
        items = json.loads(request.body)
        return 200, {}, json.dumps({"_embedded": {"notes": [{"id": i["id"], "entity_id": 7} for i in items]}})

    responses.add_callback(responses.PATCH, f"{BASE}/api/v4/leads/notes", callback=edited)
    assert amo().erase_contact("42") == "anonymised"
    asked = next(str(c.request.url) for c in responses.calls if "/api/v4/contacts/42?" in str(c.request.url))
    assert "with=leads" in asked
    sent = [json.loads(c.request.body or b"null") for c in responses.calls
            if c.request.method == "PATCH" and str(c.request.url).endswith("/leads/notes")]
    assert sent == [[{"id": 501, "entity_id": 7, "note_type": "call_in", "params": {
        "uniq": "u501", "duration": 60, "source": "Телефония", "phone": "", "link": "", "call_status": 4,
        "call_result": ""}}]]


@responses.activate
def test_a_lead_call_amocrm_will_not_edit_is_said() -> None:
    responses.get(f"{BASE}/api/v4/contacts/42", json=ANNA)
    responses.patch(f"{BASE}/api/v4/contacts", json={"_embedded": {"contacts": [{"id": 42}]}})
    responses.get(f"{BASE}/api/v4/contacts/42/notes", status=204)
    responses.get(f"{BASE}/api/v4/leads/7/notes", json={"_embedded": {"notes": [call(501, "89161234567")]}})
    responses.patch(f"{BASE}/api/v4/leads/notes", status=400, json={"title": "Bad Request", "status": 400})
    assert amo().erase_contact("42") == "anonymised; call notes kept"


@pytest.fixture
def account() -> Iterator[SandboxServer]:
    server = SandboxServer(Account(contacts=60, seed=5, today=utcnow().date())).start()
    yield server
    server.stop()


def test_erasure_reaches_the_calls_on_the_persons_leads_in_the_emulator(account: SandboxServer) -> None:
    settings = Settings(database_url="sqlite://", extra={"amocrm": {}})
    client = AmoClient(account.base_url, StaticAuth(account.account.issue_long_lived_token()),
                       LocalBucket(10_000, 10_000), sleep=lambda s: None)
    source = AmoSource(settings, client=client, account={"currency": "RUB", "customers_mode": "disabled"})
    person, lead, phone = None, None, None
    for row in client.get("/api/v4/leads", params=[("with", "contacts"), ("limit", 250)])["_embedded"]["leads"]:
        contacts = (row.get("_embedded") or {}).get("contacts") or []
        if contacts:
            person, lead = int(contacts[0]["id"]), int(row["id"])
            found = client.get(f"/api/v4/contacts/{person}")
            phones = [v["value"] for f in found.get("custom_fields_values") or []
                      if f.get("field_code") == "PHONE" for v in f.get("values") or []]
            if phones:
                phone = phones[0]
                break
    assert person is not None and lead is not None and phone is not None
    theirs = account.account.add_call("leads", lead, incoming=True, duration=42, call_status=4, phone=phone)
    colleague = account.account.add_call("leads", lead, incoming=False, duration=17, call_status=4,
                                          phone="+79990001122")
    assert source.erase_contact(str(person)) == "anonymised"
    after = {c["id"]: c for c in account.account.calls("leads") if c["entity_id"] == lead}
    assert after[theirs]["params"]["phone"] == "" and after[theirs]["params"]["duration"] == 42
    assert after[colleague]["params"]["phone"] == "+79990001122"
