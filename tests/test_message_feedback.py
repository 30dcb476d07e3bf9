"""What is heard about a sent message later: one record() for every source, with the same effects.

The sources (the bounce mailbox, link redirects, SMS delivery reports) are
tested beside their own code; here: what each kind of event does, that a
report read twice does nothing twice, that a provider's retry-after and cost
reach the outbox, and that merges and erasure treat events right.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update

from hub import consent, identity, messaging
from hub.config import SettingsError
from hub.db import utcnow
from hub.messaging import Delivery, feedback
from hub.models import Message, MessageEvent
from tests.conftest import HubDB
from tests.test_messaging import SMS_T, Channels, make, person, row
from tests.test_messaging import english  # noqa: F401  (autouse: the outbox's own words, in English)

pytestmark = pytest.mark.both_databases

events_t = MessageEvent.__table__


@pytest.fixture
def channels(plugin_manager: Any) -> Channels:
    """Scripted email and SMS channels (the outbox's own tests' plugin)."""
    plugin = Channels()
    plugin_manager.register(plugin)
    return plugin


def sent(db: HubDB, channels: Channels, cid: int, key: str, **kwargs: Any) -> int:
    created = make(db, cid, key, **kwargs)
    messaging.dispatch(db.engine, db.settings, ids=[created.id])
    assert row(db, created.id)["status"] == "sent"
    return created.id


def record(db: HubDB, message_id: int, kind: str, **kwargs: Any) -> feedback.Recorded | None:
    with db.engine.begin() as conn:
        return feedback.record(conn, db.settings, message_id, kind, **kwargs)


def events(db: HubDB, message_id: int) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(events_t).where(events_t.c.message_id == message_id)
                                 .order_by(events_t.c.id)))


def suppressed(db: HubDB, address: str) -> bool:
    with db.engine.connect() as conn:
        return consent.is_suppressed(conn, "email", address, db.settings.require_secret_key())


def latest_consent(db: HubDB, cid: int) -> dict[str, Any]:
    with db.engine.connect() as conn:
        return consent.history(conn, cid)[-1]


def test_a_hard_bounce_later_suppresses_the_address_and_the_next_letter_is_held_back(hub_db: HubDB,
                                                                                       channels: Channels) -> None:
    cid = person(hub_db)
    mid = sent(hub_db, channels, cid, "k1")
    done = record(hub_db, mid, "bounce", detail={"status": "5.1.1", "reason": "550 5.1.1 user unknown"},
                  uid="<dsn-1@mx.example.ru>")
    assert done is not None and done.effect == "suppressed" and done.contact_id == cid and not done.duplicate
    assert suppressed(hub_db, "anna@example.ru")
    event = latest_consent(hub_db, cid)
    assert (event["status"], event["source"], event["channel"]) == ("withdrawn", "bounce", "email")
    assert event["evidence"]["message_id"] == mid and event["evidence"]["reply"] == "550 5.1.1 user unknown"
    later = make(hub_db, cid, "k2")
    messaging.dispatch(hub_db.engine, hub_db.settings)
    assert row(hub_db, later.id)["status"] == "suppressed"
    assert [e.kind for e in events(hub_db, mid)] == ["bounce"]


def test_a_bounce_of_one_of_two_addresses_blocks_that_address_and_keeps_the_persons_consent(
        hub_db: HubDB, channels: Channels) -> None:
    from hub import sync
    from hub.records import ContactRecord

    cid = person(hub_db)
    with hub_db.engine.begin() as conn:  # her second address, from another source
        sync.write_contacts(conn, [ContactRecord(source="crm", first_name="Анна",
                                                 emails=["anna@example.ru", "anna.work@example.ru"])],
                            hub_db.settings, sync.Counts())
    mid = sent(hub_db, channels, cid, "k1")
    dead = row(hub_db, mid)["address"]
    done = record(hub_db, mid, "bounce", detail={"reason": "550 5.1.1 user unknown"}, uid="<dsn-2@mx>")
    assert done is not None and done.effect == "suppressed" and suppressed(hub_db, dead)
    assert latest_consent(hub_db, cid)["status"] == "granted"  # the other address still works: she never said no
    later = sent(hub_db, channels, cid, "k2")
    assert row(hub_db, later)["address"] not in (dead, None)
    # Her last working address bounces too: now the ledger says why nothing reaches her.
    record(hub_db, later, "bounce", detail={"reason": "550 5.1.1 user unknown"}, uid="<dsn-3@mx>")
    event = latest_consent(hub_db, cid)
    assert (event["status"], event["source"]) == ("withdrawn", "bounce")


def test_the_same_report_read_twice_records_and_does_nothing_twice(hub_db: HubDB, channels: Channels) -> None:
    cid = person(hub_db)
    mid = sent(hub_db, channels, cid, "k1")
    first = record(hub_db, mid, "complaint", uid="<arf-7@fbl.mail.ru>", detail={"feedback_type": "abuse"})
    again = record(hub_db, mid, "complaint", uid="<arf-7@fbl.mail.ru>", detail={"feedback_type": "abuse"})
    assert first is not None and first.effect == "withdrawn"
    assert again is not None and again.duplicate and again.effect == ""
    assert len(events(hub_db, mid)) == 1
    with hub_db.engine.connect() as conn:
        complaints = [e for e in consent.history(conn, cid) if e["source"] == "complaint"]
    assert len(complaints) == 1


def test_a_complaint_withdraws_marketing_on_that_channel_only_and_keeps_the_address(hub_db: HubDB,
                                                                                    channels: Channels) -> None:
    cid = person(hub_db, phone="+79161234567")
    mid = sent(hub_db, channels, cid, "k1")
    at = utcnow() - dt.timedelta(hours=3)
    record(hub_db, mid, "complaint", at=at, detail={"feedback_type": "abuse", "reporter": "mail.ru",
                                                     "recipient": "anna@example.ru"})
    event = latest_consent(hub_db, cid)
    assert (event["channel"], event["purpose"], event["status"], event["source"]) == (
        "email", "marketing", "withdrawn", "complaint")
    # The evidence names the message and the report, not the address a stranger could read back.
    assert event["evidence"] == {"message_id": mid, "reported_at": at.isoformat(), "feedback_type": "abuse",
                                 "reporter": "mail.ru"}
    with hub_db.engine.connect() as conn:
        assert consent.current(conn, cid)[("sms", "marketing")] == "granted"
    assert not suppressed(hub_db, "anna@example.ru")  # an order confirmation still reaches them
    receipt = make(hub_db, cid, "receipt", purpose="transactional")
    messaging.dispatch(hub_db.engine, hub_db.settings)
    assert row(hub_db, receipt.id)["status"] == "sent"


def test_soft_bounces_count_per_address_and_suppress_at_the_limit(hub_db: HubDB, channels: Channels) -> None:
    cid = person(hub_db)
    settings = replace(hub_db.settings, extra={**hub_db.settings.extra, "soft_bounce_limit": "2"})
    first = sent(hub_db, channels, cid, "k1")
    second = sent(hub_db, channels, cid, "k2")
    with hub_db.engine.begin() as conn:
        one = feedback.record(conn, settings, first, "soft_bounce", detail={"status": "4.2.2"})
    assert one is not None and one.effect == "counted" and not suppressed(hub_db, "anna@example.ru")
    with hub_db.engine.begin() as conn:
        two = feedback.record(conn, settings, second, "soft_bounce", detail={"status": "4.2.2"})
        assert feedback.soft_bounces(conn, "email", "anna@example.ru") == 2
    assert two is not None and two.effect == "suppressed" and suppressed(hub_db, "anna@example.ru")


@pytest.mark.parametrize("value", ["0", "-1", "три", "2.5"])
def test_a_bad_soft_bounce_limit_is_named(hub_db: HubDB, value: str) -> None:
    settings = replace(hub_db.settings, extra={**hub_db.settings.extra, "soft_bounce_limit": value})
    with pytest.raises(SettingsError, match="HUB_SOFT_BOUNCE_LIMIT"):
        feedback.soft_bounce_limit(settings)


def test_clicks_and_opens_are_recorded_without_consequences(hub_db: HubDB, channels: Channels) -> None:
    cid = person(hub_db)
    mid = sent(hub_db, channels, cid, "k1")
    long_url = "https://shop.example.ru/?" + "x" * 10_000
    click = record(hub_db, mid, "click", url=long_url)
    record(hub_db, mid, "open")
    assert click is not None and click.effect == ""
    kinds = [(e.kind, len(e.url or "")) for e in events(hub_db, mid)]
    assert kinds == [("click", feedback.MAX_URL), ("open", 0)]
    with hub_db.engine.connect() as conn:
        assert consent.current(conn, cid)[("email", "marketing")] == "granted"


def test_an_unknown_message_or_kind(hub_db: HubDB) -> None:
    assert record(hub_db, 999_999, "bounce") is None
    with pytest.raises(ValueError, match="unknown message event kind"):
        record(hub_db, 1, "liked")


def test_a_report_after_a_merge_acts_on_the_survivor(hub_db: HubDB, channels: Channels) -> None:
    anna = person(hub_db)
    mid = sent(hub_db, channels, anna, "k1")
    other = person(hub_db, first="Анна", email="anna.work@example.ru")
    with hub_db.engine.begin() as conn:
        identity.merge_contacts(conn, other, anna, reason={"test": True}, settings=hub_db.settings)
    done = record(hub_db, mid, "complaint")
    assert done is not None and done.contact_id == other
    event = latest_consent(hub_db, other)
    assert (event["status"], event["source"]) == ("withdrawn", "complaint")


def test_erasure_leaves_the_kind_and_time_of_events_and_nothing_else(hub_db: HubDB, channels: Channels) -> None:
    from hub.plugins import get_pm

    cid = person(hub_db)
    mid = sent(hub_db, channels, cid, "k1")
    record(hub_db, mid, "click", url="https://shop.example.ru/?email=anna@example.ru")
    record(hub_db, mid, "soft_bounce", detail={"reason": "452 anna@example.ru mailbox full"})
    with hub_db.engine.begin() as conn:
        get_pm().hook.contact_erased(conn=conn, settings=hub_db.settings, contact_id=cid)
    left = events(hub_db, mid)
    assert [(e.kind, e.url, e.detail) for e in left] == [("click", None, {}), ("soft_bounce", None, {})]


def test_a_provider_s_retry_after_and_cost_reach_the_outbox(hub_db: HubDB, channels: Channels) -> None:
    cid = person(hub_db, phone="+79161234567")
    wait = make(hub_db, cid, "s1", template=SMS_T, channel="sms")
    channels.sms.script["+79161234567"] = Delivery("deferred", error="429 too many", retry_after=3 * 3600)
    before = utcnow()
    messaging.dispatch(hub_db.engine, hub_db.settings)
    saved = row(hub_db, wait.id)
    assert saved["status"] == "deferred" and saved["due_at"] >= before + dt.timedelta(hours=3)
    channels.sms.script["+79161234567"] = Delivery("sent", provider_id="p1", cost=Decimal("3.4500"))
    with hub_db.engine.begin() as conn:
        conn.execute(update(Message).values(due_at=utcnow() - dt.timedelta(seconds=1)))
    messaging.dispatch(hub_db.engine, hub_db.settings)
    with hub_db.engine.connect() as conn:
        cost = conn.execute(select(Message.__table__.c.cost).where(Message.__table__.c.id == wait.id)).scalar_one()
    assert Decimal(cost) == Decimal("3.45")


def test_a_batch_acts_once_per_address_and_person_and_knows_its_duplicates(hub_db: HubDB,
                                                                         channels: Channels) -> None:
    anna, boris = person(hub_db), person(hub_db, first="Борис", email="boris@example.ru")
    a1, a2 = sent(hub_db, channels, anna, "a1"), sent(hub_db, channels, anna, "a2")
    b1 = sent(hub_db, channels, boris, "b1")
    record(hub_db, b1, "complaint", uid="<old@fbl>")
    heard = [feedback.Heard(a1, "bounce", uid="<d1@mx>", detail={"reason": "550 5.1.1"}),
             feedback.Heard(a2, "bounce", uid="<d2@mx>"),
             feedback.Heard(a2, "bounce", uid="<d2@mx>"),  # the same report twice in one batch
             feedback.Heard(b1, "complaint", uid="<old@fbl>"),  # read in an earlier pass
             feedback.Heard(b1, "click", url="https://shop.example.ru/"),
             feedback.Heard(999_999, "bounce", uid="<d3@mx>"),
             feedback.Heard(2**40, "bounce", uid="<d4@mx>")]
    with hub_db.engine.begin() as conn:
        done = feedback.record_many(conn, hub_db.settings, heard)
    assert [(d.effect, d.duplicate) if d else None for d in done] == [
        ("suppressed", False), ("suppressed", False), ("", True), ("", True), ("", False), None, None]
    assert suppressed(hub_db, "anna@example.ru") and not suppressed(hub_db, "boris@example.ru")
    with hub_db.engine.connect() as conn:
        bounces = [e for e in consent.history(conn, anna) if e["source"] == "bounce"]
        complaints = [e for e in consent.history(conn, boris) if e["source"] == "complaint"]
    assert len(bounces) == 1 and bounces[0]["evidence"]["reply"] == "550 5.1.1" and len(complaints) == 1
    assert [e.kind for e in events(hub_db, a2)] == ["bounce"] and [e.kind for e in events(hub_db, b1)] == [
        "complaint", "click"]


def test_a_batch_of_soft_bounces_suppresses_only_past_the_limit(hub_db: HubDB, channels: Channels) -> None:
    cid = person(hub_db)
    ids = [sent(hub_db, channels, cid, f"k{n}") for n in range(2)]
    ids.append(sent(hub_db, channels, cid, "k2", purpose="transactional"))  # past the frequency cap
    with hub_db.engine.begin() as conn:  # two letters; the first one's relay reports twice
        two = feedback.record_many(conn, hub_db.settings, [feedback.Heard(i, "soft_bounce") for i in
                                                            (ids[0], ids[0], ids[1])])
    assert [d.effect for d in two if d] == ["counted"] * 3 and not suppressed(hub_db, "anna@example.ru")
    with hub_db.engine.begin() as conn:
        third = feedback.record_many(conn, hub_db.settings, [feedback.Heard(ids[2], "soft_bounce")])
    assert [d.effect for d in third if d] == ["suppressed"] and suppressed(hub_db, "anna@example.ru")
    with hub_db.engine.begin() as conn:  # more soft bounces change nothing more
        feedback.record_many(conn, hub_db.settings, [feedback.Heard(ids[1], "soft_bounce")])
    with hub_db.engine.connect() as conn:
        assert len([e for e in consent.history(conn, cid) if e["source"] == "bounce"]) == 1


def test_a_message_id_beyond_the_column_names_no_message(hub_db: HubDB) -> None:
    assert record(hub_db, 2**31, "click") is None and record(hub_db, 0, "open") is None
