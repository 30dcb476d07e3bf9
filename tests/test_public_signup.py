"""The public signup form tried as an attacker would: it never merges, never takes anyone over.

Signups go through Hub's own form and the JSON API with Flask's test client;
confirmation letters arrive at a real SMTP server on loopback, and the link
is taken from the letter, as the owner of the mailbox would take it.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from hub import identity
from hub.models import Contact, ContactIdentity, ContactMerge, Message
from hub.testing import FakeClock
from plugins.gdpr import capture
from plugins.gdpr.models import ConsentRequest
from tests.conftest import HubDB
from tests.support.public import API_KEY, confirm_path, csrf_of, letters, person, signup_on_hub_form, state
from tests.support.shop import enable
from workflows import ticks

pytestmark = pytest.mark.both_databases  # signups never merge (identity, ON CONFLICT)


@pytest.fixture(autouse=True)
def fresh_limits() -> Any:
    from plugins.gdpr import limits

    limits.reset()
    yield
    limits.reset()


def identities(db: HubDB, contact_id: int) -> list[tuple[str, str]]:
    with db.engine.connect() as conn:
        rows = conn.execute(select(ContactIdentity.kind, ContactIdentity.value)
                            .where(ContactIdentity.contact_id == contact_id).order_by(ContactIdentity.id))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def live_contacts(db: HubDB) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Contact).where(Contact.deleted_at.is_(None))).scalar_one()


def merged_ids(db: HubDB) -> set[int]:
    with db.engine.connect() as conn:
        return set(conn.execute(select(ContactMerge.merged_id)).scalars())


def click(client: Any, letter: Any) -> Any:
    path = confirm_path(letter)
    return client.post(path, data={"csrf_token": csrf_of(client.get(path))})


def test_one_customers_email_and_anothers_phone_join_nobody(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    olga = person(hub_db, email_="olga@example.ru", name="Ольга")
    pavel = person(hub_db, phone="+7 916 200-00-01", name="Павел", granted=("sms/marketing",))
    before = (identities(hub_db, olga), identities(hub_db, pavel), live_contacts(hub_db))
    client = site.test_client()
    sent = signup_on_hub_form(client, email="olga@example.ru", phone="+7 916 200-00-01", first_name="Кто-то",
                              topic=["email/marketing"])
    assert sent.status_code == 200 and "Проверьте почту" in sent.get_data(as_text=True)
    assert (identities(hub_db, olga), identities(hub_db, pavel), live_contacts(hub_db)) == before
    assert state(hub_db, olga) == {} and merged_ids(hub_db) == set()

    # Olga reads her mail and confirms: her address is proven, the phone typed beside it is not.
    (letter,) = letters(box)
    assert letter["To"].addresses[0].addr_spec == "olga@example.ru"
    assert "Кто-то" not in letter.get_body(("plain",)).get_content()  # a stranger's text never reaches her
    assert "Подписка подтверждена" in click(client, letter).get_data(as_text=True)
    assert state(hub_db, olga) == {("email", "marketing"): "granted"}
    assert state(hub_db, pavel) == {("sms", "marketing"): "granted"}
    assert (identities(hub_db, olga), identities(hub_db, pavel), live_contacts(hub_db)) == before
    assert not merged_ids(hub_db) & {olga, pavel}
    with hub_db.engine.connect() as conn:
        assert identity.find_contact(conn, "phone", "+79162000001") == pavel
        assert conn.execute(select(Contact.first_name).where(Contact.id == olga)).scalar() == "Ольга"


def test_an_attackers_email_never_attaches_to_a_customer_known_by_phone(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    pavel = person(hub_db, phone="+7 916 200-00-02", name="Павел")
    client = site.test_client()
    signup_on_hub_form(client, email="attacker@evil.example", phone="8 916 200-00-02", first_name="Хакер",
                       topic=["email/marketing", "email/news"])
    assert identities(hub_db, pavel) == [("phone", "+79162000002")]
    # The attacker owns the mailbox and confirms: they become a contact of their own, and nothing of Pavel's.
    (letter,) = letters(box)
    click(client, letter)
    with hub_db.engine.connect() as conn:
        theirs = identity.find_contact(conn, "email", "attacker@evil.example")
        assert identity.find_contact(conn, "phone", "+79162000002") == pavel
        names = dict(conn.execute(select(Contact.id, Contact.first_name).where(Contact.id.in_([pavel, theirs]))).all())
    assert theirs is not None and theirs != pavel
    assert identities(hub_db, pavel) == [("phone", "+79162000002")]
    assert identities(hub_db, theirs) == [("email", "attacker@evil.example")]
    assert names == {pavel: "Павел", theirs: "Хакер"}
    assert state(hub_db, pavel) == {} and not merged_ids(hub_db) & {pavel, theirs}


def test_a_signup_cannot_grant_sms_or_calls(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    pavel = person(hub_db, phone="+7 916 200-00-03", email_="pavel@example.ru")
    client = site.test_client()
    page = client.get("/consent/form")
    assert 'value="sms/' not in page.get_data(as_text=True) and 'value="phone/' not in page.get_data(as_text=True)
    forged = signup_on_hub_form(client, email="pavel@example.ru", phone="+7 916 200-00-03",
                                topic=["sms/marketing", "phone/marketing"])
    assert forged.status_code == 400 and "только адрес электронной почты" in forged.get_data(as_text=True)
    api = client.post("/api/consent", json={"email": "pavel@example.ru", "phone": "+79162000003",
                                            "topics": ["email/news", "sms/marketing"]},
                      headers={"X-Api-Key": API_KEY})
    assert api.status_code == 400 and {p["field"] for p in api.get_json()["problems"]} == {"channel"}
    # Even a request stored with other channels (an older Hub) grants only the email ones when clicked.
    signup_on_hub_form(client, email="pavel@example.ru", topic=["email/news"])
    with hub_db.engine.begin() as conn:
        conn.execute(ConsentRequest.__table__.update().values(topics=["email/news", "sms/marketing"]))
    (letter,) = letters(box)
    click(client, letter)
    assert state(hub_db, pavel) == {("email", "news"): "granted"}


def test_nothing_changes_for_a_known_customer_until_the_click(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    olga = person(hub_db, email_="olga2@example.ru", name="Ольга")
    client = site.test_client()
    signup_on_hub_form(client, email="olga2@example.ru", first_name="Не Ольга", last_name="Другая",
                       topic=["email/news"])
    with hub_db.engine.connect() as conn:
        row = conn.execute(select(Contact.first_name, Contact.last_name).where(Contact.id == olga)).one()
    assert tuple(row) == ("Ольга", None) and state(hub_db, olga) == {}
    click(client, letters(box)[0])
    with hub_db.engine.connect() as conn:  # the click proves the mailbox, not the name typed: the name stays
        row = conn.execute(select(Contact.first_name, Contact.last_name).where(Contact.id == olga)).one()
    assert tuple(row) == ("Ольга", None) and state(hub_db, olga) == {("email", "news"): "granted"}


def test_a_double_submit_and_the_api_send_one_letter_for_one_signup(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    client = site.test_client()
    for _ in range(2):
        assert signup_on_hub_form(client, email="twice@example.ru", topic=["email/news"]).status_code == 200
    api = client.post("/api/consent", json={"email": "twice@example.ru", "topics": ["email/news", "email/marketing"]},
                      headers={"X-Api-Key": API_KEY})
    assert api.status_code == 202 and api.get_json()["status"] == "pending"
    assert len(letters(box)) == 1
    with hub_db.engine.connect() as conn:
        (req,) = conn.execute(select(ConsentRequest)).all()
        assert conn.execute(select(func.count()).select_from(Message)).scalar_one() == 1
    assert req.topics == ["email/news", "email/marketing"]  # the latest choice is what the click confirms
    click(client, letters(box)[0])
    assert set(state(hub_db, identity_of(hub_db, "twice@example.ru"))) == {("email", "news"), ("email", "marketing")}


def identity_of(db: HubDB, address: str) -> int:
    with db.engine.connect() as conn:
        found = identity.find_contact(conn, "email", address)
    assert found is not None
    return found


def test_signups_at_the_same_moment_queue_one_letter(hub_db: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    signup = capture.read_signup(hub_db.settings, {"email": "race@example.ru", "topics": ["email/news"]},
                                 source=capture.API, ip="198.51.100.9", user_agent=None)
    barrier = threading.Barrier(4)
    results: list[Any] = []
    errors: list[BaseException] = []

    def go() -> None:
        barrier.wait()
        try:
            results.append(capture.sign_up(hub_db.engine, hub_db.settings, signup))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # SQLite may refuse a writer that lost the race outright ("database is locked"); never a second letter.
    assert results and all(r.status == "pending" for r in results)
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ConsentRequest)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(Message)).scalar_one() == 1
    assert sum(r.new_letter for r in results) == 1
    assert len({r.message_id for r in results}) == 1


def test_confirmation_letters_are_limited_per_address(hub_db: HubDB, site: Any, mailbox, hub_clock: FakeClock) -> None:
    box, _ = mailbox
    hub_clock.set(dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.timezone.utc))
    client = site.test_client()
    pages = []
    for i in range(20):  # each a fresh resend, far enough apart to be more than a double submit
        page = signup_on_hub_form(client, email="victim@example.ru", topic=["email/news"],
                                  environ_base={"REMOTE_ADDR": f"203.0.113.{i + 1}"})
        pages.append(page)
        hub_clock.advance(minutes=11)
    assert len(letters(box)) == capture.limits.PER_ADDRESS == 3
    limited = [p for p in pages if "Письмо уже в пути" in p.get_data(as_text=True)]
    assert len(limited) == 17 and all(p.status_code == 200 for p in limited)
    assert "Traceback" not in limited[0].get_data(as_text=True)


def test_confirmation_letters_are_limited_per_client(hub_db: HubDB, site: Any, mailbox,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    box, _ = mailbox
    settings = hub_db.settings
    extra = {**settings.extra, "gdpr_confirmations_per_client": "4"}
    from dataclasses import replace

    from hub.admin import create_app

    client = create_app(replace(settings, extra=extra)).test_client()
    answers = [client.post("/api/consent", json={"email": f"n{i}@example.ru", "topics": ["email/news"],
                                                 "ip": "192.0.2.50"}, headers={"X-Api-Key": API_KEY})
               for i in range(6)]
    assert [a.status_code for a in answers] == [202] * 4 + [429] * 2
    assert answers[-1].get_json()["status"] == "limited"
    assert len(letters(box)) == 4
    other = client.post("/api/consent", json={"email": "n9@example.ru", "topics": ["email/news"], "ip": "192.0.2.51"},
                        headers={"X-Api-Key": API_KEY})
    assert other.status_code == 202


def test_a_signup_and_the_welcome_workflow_send_one_confirmation(hub_db: HubDB, site: Any, mailbox,
                                                                 plugin_manager: Any) -> None:
    import workflows

    box, _ = mailbox
    plugin_manager.register(workflows, name="workflows")
    now = dt.datetime.now(dt.timezone.utc)
    enable(hub_db, "welcome", now - dt.timedelta(minutes=5))
    client = site.test_client()
    signup_on_hub_form(client, email="new@example.ru", first_name="Нина", topic=["email/marketing"])
    ticks.tick(hub_db.engine, hub_db.settings, now=now)
    assert len(letters(box)) == 1  # the placeholder of a pending signup starts no workflow
    click(client, letters(box)[0])
    ticks.tick(hub_db.engine, hub_db.settings, now=now + dt.timedelta(minutes=1))
    ticks.tick(hub_db.engine, hub_db.settings, now=now + dt.timedelta(minutes=2))
    with hub_db.engine.connect() as conn:
        templates = [t for (t,) in conn.execute(select(Message.template).order_by(Message.id))]
    assert templates.count("double_opt_in_email") == 1
    assert "welcome_email" in templates  # the workflow did run, for the confirmed person, who is subscribed


def test_erasing_a_person_forgets_the_signup_waiting_for_their_click(hub_db: HubDB, site: Any, mailbox) -> None:
    from plugins.gdpr import erasure

    box, _ = mailbox
    olga = person(hub_db, email_="olga3@example.ru", name="Ольга")
    client = site.test_client()
    signup_on_hub_form(client, email="olga3@example.ru", first_name="Ольга", phone="+7 916 200-00-09",
                       topic=["email/news"])
    (letter,) = letters(box)
    erasure.erase(hub_db.engine, hub_db.settings, olga)
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(ConsentRequest.id)).first() is None
        bodies = conn.execute(select(Message.address, Message.body_text)).all()
    assert bodies and all(tuple(b) == (None, "") for b in bodies)
    page = client.get(confirm_path(letter))
    assert page.status_code == 410 and "Мы не храним о вас никаких данных" in page.get_data(as_text=True)


def test_retention_forgets_a_signup_never_confirmed_with_its_placeholder(hub_db: HubDB, site: Any, mailbox) -> None:
    from sqlalchemy import update

    from plugins.gdpr import retention

    box, _ = mailbox
    client = site.test_client()
    signup_on_hub_form(client, email="never.clicked@example.ru", first_name="Ия", topic=["email/news"])
    signup_on_hub_form(client, email="clicked@example.ru", first_name="Ян", topic=["email/news"])
    clicked = [m for m in letters(box) if m["To"] == "clicked@example.ru"][0]
    assert click(client, clicked).status_code == 200
    with hub_db.engine.begin() as conn:
        (waiting,) = conn.execute(
            select(ConsentRequest.contact_id).where(ConsentRequest.confirmed_at.is_(None))).scalars()
        assert identity.is_placeholder(conn, waiting)
        old = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
        conn.execute(update(ConsentRequest.__table__).values(created_at=old))
    people = live_contacts(hub_db)

    report = retention.run(hub_db.engine, hub_db.settings)

    assert report.consent_requests == 2
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(ConsentRequest.id)).first() is None
        assert conn.execute(select(Contact.id).where(Contact.id == waiting)).first() is None  # no hidden row left
        bodies = conn.execute(select(Message.address, Message.body_text).where(Message.contact_id == waiting)).all()
    assert all(tuple(b) == (None, "") for b in bodies)
    assert live_contacts(hub_db) == people  # the confirmed person stays, with their address
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(ContactIdentity.contact_id)
                            .where(ContactIdentity.value == "clicked@example.ru")).first() is not None


def test_letter_limits_are_shared_through_redis(hub_db: HubDB, redis_url: str) -> None:
    import uuid
    from dataclasses import replace

    from plugins.gdpr import limits

    settings = replace(hub_db.settings, redis_url=redis_url)
    address = f"{uuid.uuid4().hex}@example.ru"
    # Two "processes" (two bucket objects over one Redis) draw from the same three letters an hour.
    assert [limits.take(settings, address, None) for _ in range(2)] == [True, True]
    limits.reset()
    assert [limits.take(settings, address, None) for _ in range(2)] == [True, False]
    with pytest.raises(Exception, match="confirmations_per_address"):
        limits.take(replace(settings, extra={**settings.extra, "gdpr_confirmations_per_address": "many"}),
                    address, None)
