"""POST /api/v1/consent: a website's form through the API with a key, under the public form's rules.

A signup by key is the same double opt-in as Hub's own form: nobody in the
base changes, one confirmation letter reaches a real SMTP server on
loopback, and only the click (taken from the letter) grants, on email only.
A key can withdraw consent for a known contact but never grant it.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from hub import identity
from hub.models import ConsentEvent, Contact
from tests.conftest import HubDB
from tests.support.public import confirm_path, csrf_of, letters, person, state
from tests.test_api_enroll import attack_operation
from tests.test_api_gate import auth, is_problem, make_key

pytestmark = pytest.mark.both_databases  # signups never merge (identity, ON CONFLICT), one transaction per request


@pytest.fixture(autouse=True)
def fresh_limits() -> Any:
    from plugins.gdpr import limits

    limits.reset()
    yield
    limits.reset()


@pytest.fixture
def key(hub_db: HubDB, site: Any) -> str:
    return make_key(hub_db, "consent:write")


def events(db: HubDB) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(ConsentEvent)).scalar_one()


def live(db: HubDB) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Contact).where(Contact.deleted_at.is_(None))).scalar_one()


def click(client: Any, letter: Any) -> Any:
    path = confirm_path(letter)
    return client.post(path, data={"csrf_token": csrf_of(client.get(path))})


SIGNUP = {"email": "Olga@Example.ru", "phone": "+7 916 300-00-01", "first_name": "Ольга",
          "topics": ["email/marketing"], "form_id": "default", "text_version": "2024-05", "ip": "203.0.113.7",
          "user_agent": "Mozilla/5.0 (Tilda)"}


def test_a_key_cannot_grant_consent(hub_db: HubDB, site: Any, key: str, mailbox) -> None:
    box, _ = mailbox
    anna = person(hub_db, email_="anna@example.ru")
    client = site.test_client()
    for body in ({"status": "granted", "contact_id": anna, "channel": "email", "purpose": "marketing"},
                 {**SIGNUP, "email": "anna@example.ru", "status": "granted"}):
        doc = is_problem(client.post("/api/v1/consent", json=body, headers=auth(key)), 403)
        assert doc["errors"][0]["field"] == "/status" and "подтверждени" in doc["detail"]
    en = is_problem(client.post("/api/v1/consent", json={"status": "granted", "email": "anna@example.ru"},
                                headers=auth(key, **{"Accept-Language": "en"})), 403)
    assert "double opt-in" in en["detail"]
    assert events(hub_db) == 0 and state(hub_db, anna) == {} and letters(box) == []
    other = make_key(hub_db, "contacts:write")
    is_problem(client.post("/api/v1/consent", json=SIGNUP, headers=auth(other)), 403)


def test_a_signup_by_key_sends_one_letter_and_only_the_click_grants_email(hub_db: HubDB, site: Any, key: str,
                                                                          mailbox) -> None:
    box, _ = mailbox
    pavel = person(hub_db, phone="+7 916 300-00-01", name="Павел")
    client = site.test_client()
    before = live(hub_db)
    first = client.post("/api/v1/consent", json=SIGNUP, headers=auth(key, **{"Idempotency-Key": "form-1"}))
    assert first.status_code == 202, first.get_data(as_text=True)
    answer = first.get_json()
    assert answer["status"] == "pending" and answer["letter"] == "queued" and answer["contact_id"] is None
    assert answer["topics"] == ["email/marketing"] and answer["request_id"]
    again = client.post("/api/v1/consent", json=SIGNUP, headers=auth(key, **{"Idempotency-Key": "form-1"}))
    assert again.status_code == 202 and again.get_json() == answer and again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/api/v1/consent", json=SIGNUP, headers=auth(key, **{"Idempotency-Key": "form-2"}))
    assert other.get_json()["letter"] == "already_sent"  # the same open signup: no second letter
    assert live(hub_db) == before and events(hub_db) == 0
    (letter,) = letters(box)
    assert letter["To"].addresses[0].addr_spec == "olga@example.ru"
    assert "Ольга" not in letter.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Подписка подтверждена" in click(client, letter).get_data(as_text=True)
    with hub_db.engine.connect() as conn:
        olga = identity.find_contact(conn, "email", "olga@example.ru")
        assert identity.find_contact(conn, "phone", "+79163000001") == pavel  # the typed phone joined nobody
        evidence = conn.execute(select(ConsentEvent.evidence).where(ConsentEvent.contact_id == olga)).scalar_one()
    assert olga is not None and olga != pavel
    assert state(hub_db, olga) == {("email", "marketing"): "granted"} and state(hub_db, pavel) == {}
    assert evidence["signup"]["ip"] == "203.0.113.7" and evidence["signup"]["user_agent"] == "Mozilla/5.0 (Tilda)"
    assert evidence["signup"]["text_version"] == "2024-05"


def test_hostile_input_gets_problems_naming_fields(hub_db: HubDB, site: Any, key: str, mailbox) -> None:
    box, _ = mailbox
    client = site.test_client()

    def fields(body: Any, status: int = 400) -> set[str]:
        """400: the schema let it through but it means nothing; 422: the schema itself refuses it."""
        doc = is_problem(client.post("/api/v1/consent", json=body, headers=auth(key)), status)
        return {e["field"] for e in doc.get("errors", [])}

    assert fields({**SIGNUP, "email": "not an address"}) == {"/email"}
    assert fields({**SIGNUP, "email": None}) == {"/email"}
    assert fields({**SIGNUP, "first_name": "<script>alert(1)</script>"}, 422) == {"/first_name"}
    assert fields({**SIGNUP, "last_name": "Иванова" * 100}, 422) == {"/last_name"}
    assert fields({**SIGNUP, "topics": ["sms/marketing"]}) == {"/topics"}
    assert fields({**SIGNUP, "topics": ["email/nonsense"]}) == {"/topics"}
    assert fields({**SIGNUP, "phone": "12"}) == {"/phone"}
    assert fields({**SIGNUP, "form_id": "secret"}) == {"/form_id"}
    assert fields({**SIGNUP, "admin": True}, 422) == {"/"}
    assert fields({**SIGNUP, "topics": "email/news"}, 422) == {"/topics"}
    assert fields({**SIGNUP, "contact_id": 5}) == {"/contact_id"}
    assert fields({**SIGNUP, "email": "a@example.ru", "ip": "1" * 65}, 422) == {"/ip"}
    assert fields({**SIGNUP, "first_name": "Ан\u0000на", "user_agent": "x\u0000"}, 422) == {"/first_name",
                                                                                         "/user_agent"}
    assert fields({"status": "withdrawn", "email": "a\u0000@example.ru", "channel": "email",
                   "purpose": "news"}, 422) == {"/email"}
    big = client.post("/api/v1/consent", data=b'{"email": "' + b"a" * (20 * 1024 * 1024) + b'"}',
                      headers=auth(key, **{"Content-Type": "application/json"}))
    is_problem(big, 413)
    is_problem(client.post("/api/v1/consent", data="{email", headers=auth(key, **{"Content-Type":
                                                                                   "application/json"})), 400)
    assert letters(box) == [] and events(hub_db) == 0


def test_a_merge_between_signup_and_click_grants_the_survivor(hub_db: HubDB, site: Any, key: str, mailbox) -> None:
    box, _ = mailbox
    olga = person(hub_db, email_="olga@example.ru", name="Ольга")
    twin = person(hub_db, phone="+7 916 300-00-09", name="Ольга")
    client = site.test_client()
    assert client.post("/api/v1/consent", json=SIGNUP, headers=auth(key)).status_code == 202
    with hub_db.engine.begin() as conn:
        identity.merge_contacts(conn, twin, olga, reason={"rule": "merged by hand"}, settings=hub_db.settings)
    (letter,) = letters(box)
    click(client, letter)
    assert state(hub_db, twin) == {("email", "marketing"): "granted"}
    with hub_db.engine.connect() as conn:
        assert identity.current_contact_id(conn, olga) == twin
        assert identity.find_contact(conn, "phone", "+79163000001") is None  # the typed phone stays unproven


def test_a_key_records_a_withdrawal_for_a_known_contact(hub_db: HubDB, site: Any, key: str, mailbox) -> None:
    anna = person(hub_db, email_="anna@example.ru", phone="+7 916 300-00-02",
                  granted=("email/marketing", "sms/marketing"))
    client = site.test_client()
    body = {"status": "withdrawn", "email": "ANNA@example.ru", "channel": "email", "purpose": "marketing",
            "source": "tilda unsubscribe"}
    done = client.post("/api/v1/consent", json=body, headers=auth(key))
    assert done.status_code == 202 and done.get_json() == {
        "status": "withdrawn", "letter": "none", "request_id": None, "contact_id": anna,
        "topics": ["email/marketing"], "changed": True}
    assert client.post("/api/v1/consent", json=body, headers=auth(key)).get_json()["changed"] is False
    by_phone = client.post("/api/v1/consent", json={"status": "withdrawn", "phone": "8 916 300-00-02",
                                                    "channel": "sms", "purpose": "marketing"}, headers=auth(key))
    assert by_phone.get_json()["contact_id"] == anna
    assert state(hub_db, anna) == {("email", "marketing"): "withdrawn", ("sms", "marketing"): "withdrawn"}
    with hub_db.engine.connect() as conn:
        sources = set(conn.execute(select(ConsentEvent.source).where(ConsentEvent.status == "withdrawn")).scalars())
    assert sources == {"tilda unsubscribe", "api"}

    twin = person(hub_db, phone="+7 916 300-00-03", granted=("email/news",))
    with hub_db.engine.begin() as conn:
        identity.merge_contacts(conn, anna, twin, reason={"rule": "merged by hand"}, settings=hub_db.settings)
    merged = client.post("/api/v1/consent", json={"status": "withdrawn", "contact_id": twin, "channel": "email",
                                                  "purpose": "news"}, headers=auth(key))
    assert merged.get_json()["contact_id"] == anna and state(hub_db, anna)[("email", "news")] == "withdrawn"

    nobody = is_problem(client.post("/api/v1/consent", json={**body, "email": "nobody@example.ru"},
                                    headers=auth(key)), 404)
    assert nobody["errors"][0]["field"] == "/email"
    bad = is_problem(client.post("/api/v1/consent", json={"status": "withdrawn", "contact_id": anna,
                                                          "channel": "fax", "purpose": "spam"}, headers=auth(key)), 400)
    assert {e["field"] for e in bad["errors"]} == {"/channel", "/purpose"}
    nameless = is_problem(client.post("/api/v1/consent", json={"status": "withdrawn", "channel": "email",
                                                               "purpose": "news"}, headers=auth(key)), 400)
    assert nameless["errors"][0]["field"] == "/contact_id"
    is_problem(client.post("/api/v1/consent", json={**body, "email": None, "contact_id": 2**31 + 5},
                           headers=auth(key)), 404)  # an id no contact can have names nobody
    is_problem(client.post("/api/v1/consent", json={**body, "email": None, "contact_id": 2**63},
                           headers=auth(key)), 422)


def test_schemathesis_finds_nothing_wrong_with_consent(hub_db: HubDB, site: Any, key: str, mailbox) -> None:
    person(hub_db, email_="anna@example.ru", granted=("email/news",))
    attack_operation(site, key, "POST /api/v1/consent")
