"""Bounces and complaints end to end: letters really sent over SMTP, reports in a real dovecot mailbox, Hub acting.

Each test sends real letters through the SMTP channel (fixture `mailbox`)
with HUB_MAIL_RETURN_PATH set, takes the envelope sender (the VERP address)
and the Message-ID the server received, writes them into a real-shaped
report from tests/data/bounces, drops it into the bounce mailbox (fixture
`bounce_mailbox`, a fresh user on dovecot) and runs the pass.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import plugins.gdpr
import plugins.mailing
from hub import consent, dedupe, i18n, messaging, queue, sync
from hub.api import ScheduledRun, SettingsError, utcnow
from hub.models import Message, MessageEvent
from hub.records import ContactRecord
from plugins.mailing import verp
from plugins.mailing.bounces import dsn, match, process
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.imap import BounceMailboxHelper

CORPUS = Path(__file__).parent / "data" / "bounces"
CORPUS_VERP = b"bounces+1234-0123456789@shop.example.ru"
CORPUS_ORIGINAL = re.compile(rb"<\d+\.4242\.1111111111111111111\.hub1234@shop\.example\.ru>")
RECIPIENTS = {"postfix_hard.eml": b"nobody.here@mail.ru", "postfix_delayed.eml": b"pavel@flowers-client.ru",
              "exim_text.eml": b"sergey.k@rambler.ru", "mailru_text.eml": b"nikolay.ivanov1987@mail.ru",
              "gmail_dsn.eml": b"no.such.person.2026@gmail.com", "mailru_fbl.eml": b"tatiana.v@mail.ru",
              "yandex_fbl.eml": b"maxim.orlov@yandex.ru", "yandex_dsn_full.eml": b"elena.smirnova@yandex.ru",
              "exchange_ndr.eml": b"i.sokolov@corp.example.com", "qmail_text.eml": b"oleg@tinyhost.example.org",
              "arf_headers.eml": b"anna.k@outlook.com"}
PROMO = {"promo": {"code": "LAVKA-15", "discount": 15, "expires_at": dt.date(2026, 12, 31)}}

pytestmark = pytest.mark.both_databases


@dataclass
class Sent:
    message_id: int
    contact_id: int
    address: str
    return_path: str  # the envelope sender the SMTP server saw
    provider_id: str  # the Message-ID the letter carried


@pytest.fixture
def mailing(plugin_manager: Any) -> Any:
    plugin_manager.register(plugins.mailing, name="mailing")
    plugin_manager.register(plugins.gdpr, name="gdpr")
    plugin_manager.hook.register_commands(cli=cli)
    return plugin_manager


@pytest.fixture
def shop(hub_db: HubDB, mailing: Any, mailbox: Any, bounce_mailbox: BounceMailboxHelper) -> Any:
    box, port = mailbox
    settings = replace(hub_db.settings, extra={
        **hub_db.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
        "mail_from": "Цветочная лавка <shop@shop.example.ru>", "public_url": "https://hub.example.ru",
        "mail_return_path": "bounces@shop.example.ru", "frequency_cap": "10/7d", **bounce_mailbox.settings_extra})
    return Shop(hub_db, settings, box, bounce_mailbox)


class Shop:
    def __init__(self, db: HubDB, settings: Any, smtp: Any, bounces: BounceMailboxHelper) -> None:
        self.db, self.settings, self.smtp, self.bounces = db, settings, smtp, bounces
        self.sends = 0

    def person(self, first: str, address: str) -> int:
        with self.db.engine.begin() as conn:
            cid = sync.write_contacts(conn, [ContactRecord(source="t", first_name=first, last_name="Иванова",
                                                           emails=[address])], self.settings,
                                      sync.Counts()).contact_ids[0]
            assert cid is not None
            consent.record(conn, cid, "email", "marketing", "granted", source="form")
        return cid

    def send(self, cid: int) -> Sent:
        """A marketing letter to `cid`, really sent; what the SMTP server received names it."""
        self.sends += 1
        before = len(self.smtp.received)
        messaging.create_many(self.db.engine, self.settings, [cid], channel="email", template="reactivation_email",
                              key_prefix=f"c{self.sends}", context=PROMO)
        messaging.dispatch(self.db.engine, self.settings)
        assert len(self.smtp.received) == before + 1, "the letter was not sent"
        got = self.smtp.received[-1]
        with self.db.engine.connect() as conn:
            row = conn.execute(select(Message.__table__).order_by(Message.id.desc())).first()
        assert row is not None and row.status == "sent"
        assert got.message["Message-ID"] == row.provider_id
        return Sent(row.id, cid, row.address, got.mail_from, row.provider_id)

    def status_of_next_send(self, cid: int) -> str:
        self.sends += 1
        messaging.create_many(self.db.engine, self.settings, [cid], channel="email", template="reactivation_email",
                              key_prefix=f"c{self.sends}", context=PROMO)
        messaging.dispatch(self.db.engine, self.settings)
        with self.db.engine.connect() as conn:
            return str(conn.execute(select(Message.status).order_by(Message.id.desc())).scalar())

    def run(self, **kwargs: Any) -> process.Summary:
        return process.run(self.db.engine, self.settings, **kwargs)

    def events(self) -> list[Any]:
        with self.db.engine.connect() as conn:
            return list(conn.execute(select(MessageEvent.__table__).order_by(MessageEvent.id)))


def report_for(name: str, sent: Sent | None, *, uid: str | None = None, return_path: str | None = None,
               original: str | None = None, recipient: str | None = None) -> bytes:
    """A corpus report rewritten to be about `sent`: its VERP address, its Message-ID, its recipient."""
    raw = (CORPUS / name).read_bytes()
    path = return_path if return_path is not None else (sent.return_path if sent else None)
    mid = original if original is not None else (sent.provider_id if sent else None)
    rcpt = recipient if recipient is not None else (sent.address if sent else None)
    if path is not None:
        raw = raw.replace(CORPUS_VERP, path.encode())
    if mid is not None:
        raw = CORPUS_ORIGINAL.sub(mid.encode(), raw)
    if rcpt is not None and name in RECIPIENTS:
        raw = raw.replace(RECIPIENTS[name], rcpt.encode())
    if uid is not None:  # another report of the same kind: a Message-ID of its own
        raw = re.sub(rb"(?im)^message-id: *<[^>]+>", f"Message-ID: <{uid}>".encode(), raw, count=1)
    return raw


CORPUS_DATE = dt.datetime(2026, 12, 4, 7, 15, 3, tzinfo=dt.timezone.utc)  # the Date of postfix_hard.eml


def sent_before_the_report(shop: Shop, sent: Sent) -> None:
    """Date the letter before the corpus report that will be about it (a report cannot precede its letter)."""
    with shop.db.engine.begin() as conn:
        conn.execute(Message.__table__.update().where(Message.id == sent.message_id)
                     .values(sent_at=CORPUS_DATE - dt.timedelta(hours=1)))


def suppressed(shop: Shop, address: str) -> bool:
    with shop.db.engine.connect() as conn:
        return consent.is_suppressed(conn, "email", address, shop.settings.require_secret_key())


# --- what a report does ------------------------------------------------------------------------

def test_letters_carry_a_signed_return_path_that_names_them(shop: Shop) -> None:
    sent = shop.send(shop.person("Анна", "anna@example.ru"))
    assert sent.return_path == verp.return_path(shop.settings, sent.message_id)
    assert verp.message_id_of(shop.settings, sent.return_path) == sent.message_id


def test_a_hard_bounce_suppresses_the_address_and_the_next_letter(shop: Shop) -> None:
    anna = shop.person("Анна", "anna@example.ru")
    sent = shop.send(anna)
    sent_before_the_report(shop, sent)
    shop.bounces.append(report_for("postfix_hard.eml", sent))

    summary = shop.run()

    assert summary.as_dict() == {"read": 1, "bounces": 1, "soft_bounces": 0, "complaints": 0, "auto_replies": 0,
                                 "delivery_notices": 0, "unmatched": 0, "refused": 0, "unreadable": 0, "duplicates": 0,
                                 "left_for_person": 0}
    assert shop.bounces.list() == [] and len(shop.bounces.list("Hub-Processed")) == 1  # moved, never deleted
    (event,) = shop.events()
    assert (event.message_id, event.kind) == (sent.message_id, "bounce")
    assert event.at == dt.datetime(2026, 12, 4, 7, 15, 3, tzinfo=dt.timezone.utc).replace(
        tzinfo=event.at.tzinfo)  # the report's own date
    assert event.detail["status"] == "5.1.1" and "anna@example.ru" not in str(event.detail)
    assert suppressed(shop, "anna@example.ru")
    with shop.db.engine.connect() as conn:
        ledger = consent.history(conn, anna)
    assert ledger[-1]["status"] == "withdrawn" and ledger[-1]["source"] == "bounce"
    assert shop.status_of_next_send(anna) == "suppressed"


@pytest.mark.parametrize("name", ["exim_text.eml", "mailru_text.eml", "gmail_dsn.eml", "exchange_ndr.eml",
                                  "qmail_text.eml"])
def test_every_hard_bounce_shape_acts(shop: Shop, name: str) -> None:
    sent = shop.send(shop.person("Олег", "oleg@example.ru"))
    shop.bounces.append(report_for(name, sent))
    assert shop.run().bounces == 1
    assert suppressed(shop, "oleg@example.ru")


def test_soft_bounces_suppress_only_at_the_limit(shop: Shop) -> None:
    pavel = shop.person("Павел", "pavel@example.ru")
    sent = shop.send(pavel)
    # A relay's repeated "still trying" notices about one letter: one letter that soft-bounced.
    for n in range(3):
        shop.bounces.append(report_for("postfix_delayed.eml", sent, uid=f"delay-{n}@relay.shop.example.ru"))
    assert shop.run().soft_bounces == 3
    assert not suppressed(shop, "pavel@example.ru")

    # Mailbox full (5.2.2) is soft too: the third letter that soft-bounces reaches HUB_SOFT_BOUNCE_LIMIT (3).
    for n in (2, 3):
        later = shop.send(pavel)
        shop.bounces.append(report_for("yandex_dsn_full.eml", later, uid=f"full-{n}@mx.yandex.ru"))
        assert shop.run().soft_bounces == 1
        assert suppressed(shop, "pavel@example.ru") == (n == 3)
    assert shop.status_of_next_send(pavel) == "suppressed"


@pytest.mark.parametrize("name", ["mailru_fbl.eml", "yandex_fbl.eml", "arf_headers.eml"])
def test_a_complaint_withdraws_marketing_consent_with_the_complaint_as_evidence(shop: Shop, name: str) -> None:
    tanya = shop.person("Татьяна", "tanya@example.ru")
    sent = shop.send(tanya)
    shop.bounces.append(report_for(name, sent))

    assert shop.run().complaints == 1

    with shop.db.engine.connect() as conn:
        last = consent.history(conn, tanya)[-1]
    assert (last["channel"], last["purpose"], last["status"], last["source"]) == (
        "email", "marketing", "withdrawn", "complaint")
    assert last["evidence"]["message_id"] == sent.message_id and last["evidence"]["feedback_type"] == "abuse"
    assert shop.status_of_next_send(tanya) == "suppressed"
    assert shop.bounces.list() == []


def test_a_persons_reply_to_the_return_path_quoting_bounce_words_is_left_for_a_person(shop: Shop) -> None:
    zhanna = shop.person("Жанна", "zhanna@example.ru")
    sent = shop.send(zhanna)
    shop.bounces.append((f"From: {sent.address}\nTo: {sent.return_path}\nSubject: Re: Распродажа\n"
                         "Message-ID: <h1@example.ru>\nContent-Type: text/plain; charset=utf-8\n"
                         "Content-Transfer-Encoding: 8bit\n\nУ меня ошибка 550 5.1.1 user unknown при оплате, "
                         "и письмо не доставлено курьером! Address not found на сайте.\n").encode())

    summary = shop.run()

    assert (summary.bounces, summary.unreadable, summary.left_for_person) == (0, 1, 1)
    assert shop.events() == [] and not suppressed(shop, "zhanna@example.ru")
    assert shop.status_of_next_send(zhanna) == "sent"


def success_notice(sent: Sent | None, *, uid: str, return_path: str, original: str) -> bytes:
    """A Mail.ru-shaped RFC 3464 notice that a letter was delivered."""
    rcpt = sent.address if sent else "zhanna@example.ru"
    return (f"Return-Path: <>\nFrom: mailer-daemon@list.ru\nTo: {return_path}\n"
            f"Subject: Successful Mail Delivery Report\nMessage-ID: <{uid}>\nAuto-Submitted: auto-replied\n"
            "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\n\n"
            f"--B1\nContent-Type: text/plain\n\n<{rcpt}>: 250 2.0.0 OK\n\n"
            "--B1\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.list.ru\n\n"
            f"Final-Recipient: rfc822; {rcpt}\nAction: delivered\nStatus: 2.0.0\n"
            "Diagnostic-Code: smtp; 250 2.0.0 OK\n\n"
            f"--B1\nContent-Type: text/rfc822-headers\n\nReturn-Path: <{return_path}>\n"
            f"Message-ID: {original}\n\n--B1--\n").encode()


def test_a_success_notice_is_filed_away_with_a_delivered_event_and_harms_nobody(shop: Shop) -> None:
    zhanna = shop.person("Жанна", "zhanna@example.ru")
    sent = shop.send(zhanna)
    shop.bounces.append(success_notice(sent, uid="ok1@mx.list.ru", return_path=sent.return_path,
                                       original=sent.provider_id))
    # About a letter Hub did not send: nothing to record, nothing for a person either.
    shop.bounces.append(success_notice(None, uid="ok2@mx.list.ru", return_path="bounces@shop.example.ru",
                                       original="<other.1@elsewhere.ru>"))

    summary = shop.run()

    assert (summary.delivery_notices, summary.unreadable, summary.unmatched, summary.left_for_person) == (2, 0, 0, 0)
    assert [(e.message_id, e.kind) for e in shop.events()] == [(sent.message_id, "delivered")]
    assert shop.bounces.list() == [] and len(shop.bounces.list("Hub-Processed")) == 2
    assert not suppressed(shop, "zhanna@example.ru") and shop.status_of_next_send(zhanna) == "sent"
    from plugins.mailing.bounces.commands import summary_text

    with i18n.use_language("ru"):
        assert summary_text(summary) == "Прочитано 2 письма: 2 уведомления о доставке."


def test_a_report_dated_before_its_letter_or_in_the_future_takes_the_time_it_was_read(shop: Shop) -> None:
    sent = shop.send(shop.person("Анна", "anna@example.ru"))  # sent now: the corpus report's date is days earlier
    future = report_for("postfix_hard.eml", sent, uid="future@x").replace(
        b"Date: ", b"Date: Fri, 01 Jan 2100 00:00:00 +0000\nX-Old-Date: ", 1)
    shop.bounces.append(report_for("postfix_hard.eml", sent))
    shop.bounces.append(future)
    before = utcnow()

    assert shop.run().bounces == 2

    for event in shop.events():
        at = event.at if event.at.tzinfo else event.at.replace(tzinfo=dt.timezone.utc)
        assert before - dt.timedelta(seconds=1) <= at <= utcnow(), event.at


def test_auto_replies_are_filed_away_and_change_nothing(shop: Shop) -> None:
    sent = shop.send(shop.person("Наталья", "natalia@example.ru"))
    for name in ("autoreply_ru.eml", "autoreply_en.eml"):
        shop.bounces.append(report_for(name, sent))
    summary = shop.run()
    assert (summary.auto_replies, summary.bounces, summary.left_for_person) == (2, 0, 0)
    assert shop.events() == [] and not suppressed(shop, "natalia@example.ru")
    assert len(shop.bounces.list("Hub-Processed")) == 2


def test_unreadable_letters_stay_flagged_for_a_person_and_are_counted(shop: Shop) -> None:
    shop.send(shop.person("Анна", "anna@example.ru"))
    shop.bounces.append((CORPUS / "garbage.eml").read_bytes())
    shop.bounces.append((CORPUS / "human_reply.eml").read_bytes())

    first = shop.run()
    assert (first.read, first.unreadable, first.left_for_person) == (2, 2, 2)
    flags = shop.bounces.flags()
    assert len(flags) == 2 and all({"\\Flagged", "HubReview"} <= f for f in flags.values())
    # The next pass does not read them again, and still says they wait for a person.
    again = shop.run()
    assert (again.read, again.left_for_person) == (0, 2)
    assert shop.events() == []


def test_forged_reports_change_nothing(shop: Shop) -> None:
    anna = shop.person("Анна", "anna@example.ru")
    sent = shop.send(anna)
    # A VERP address for this very message with a wrong signature, and a Message-ID Hub never sent.
    wrong_signature = sent.return_path.replace(sent.return_path.split("-")[-1].split("@")[0], "0" * 10)
    shop.bounces.append(report_for("postfix_hard.eml", sent, return_path=wrong_signature,
                                   original="<never-sent.1@shop.example.ru>", uid="f1@x"))
    # Only the X-Hub-Message-Id names the message (anyone can write it).
    only_header = report_for("postfix_hard.eml", sent, return_path="bounces@shop.example.ru",
                             original="<other.2@shop.example.ru>", uid="f2@x")
    shop.bounces.append(only_header.replace(b"X-Hub-Message-Id: 1234", f"X-Hub-Message-Id: {sent.message_id}".encode()))
    # The right Message-ID, but about somebody else's address.
    shop.bounces.append(report_for("exim_text.eml", sent, return_path="bounces@shop.example.ru",
                                   recipient="victim@example.ru", uid="f3@x"))
    # A complaint naming another shop's letter.
    shop.bounces.append(report_for("mailru_fbl.eml", None, return_path="bounces+1-abcdef0123@shop.example.ru",
                                   original="<x.3@elsewhere.ru>", uid="f4@x"))

    summary = shop.run()

    assert (summary.read, summary.unmatched, summary.bounces, summary.complaints) == (4, 4, 0, 0)
    assert summary.left_for_person == 4
    assert shop.events() == [] and not suppressed(shop, "anna@example.ru")
    assert shop.status_of_next_send(anna) == "sent"


def test_the_same_report_twice_counts_once(shop: Shop) -> None:
    sent = shop.send(shop.person("Сергей", "sergey@example.ru"))
    raw = report_for("exim_text.eml", sent)
    shop.bounces.append(raw)
    shop.bounces.append(raw)
    summary = shop.run()
    assert (summary.bounces, summary.duplicates) == (1, 1)
    # Read again later (a crash between the commit and the move): nothing happens twice.
    shop.bounces.append(raw)
    assert shop.run().as_dict() | {"left_for_person": 0} == process.Summary(read=1, duplicates=1).as_dict()
    assert len(shop.events()) == 1 and len(shop.bounces.list("Hub-Processed")) == 3


def test_a_report_with_a_very_long_message_id_is_recorded_once(shop: Shop) -> None:
    sent = shop.send(shop.person("Сергей", "sergey@example.ru"))
    raw = report_for("exim_text.eml", sent, uid="r" * 240 + "@relay.example.net")
    shop.bounces.append(raw)
    shop.bounces.append(raw)
    summary = shop.run()
    assert (summary.bounces, summary.duplicates) == (1, 1)
    (event,) = shop.events()
    assert event.uid.startswith("mid-sha256:") and len(event.uid) <= 200


def test_a_report_matched_by_message_id_alone_acts(shop: Shop) -> None:
    """Some relays send the report to the From address, not the return path: the exact Message-ID still names it."""
    sent = shop.send(shop.person("Ирина", "irina@example.ru"))
    shop.bounces.append(report_for("gmail_dsn.eml", sent, return_path="shop@shop.example.ru"))
    assert shop.run().bounces == 1 and suppressed(shop, "irina@example.ru")


def test_a_contact_merged_after_the_send_the_survivor_is_told(shop: Shop) -> None:
    gone = shop.person("Анна", "anna@example.ru")
    sent = shop.send(gone)
    survivor = shop.person("Анна", "anna.work@example.ru")
    dedupe.merge_by_hand(shop.db.engine, survivor, gone, actor="test", settings=shop.settings)
    shop.bounces.append(report_for("postfix_hard.eml", sent))

    assert shop.run().bounces == 1

    assert suppressed(shop, "anna@example.ru") and not suppressed(shop, "anna.work@example.ru")
    with shop.db.engine.connect() as conn:
        message = conn.execute(select(Message.contact_id).where(Message.id == sent.message_id)).scalar()
        ledger = consent.history(conn, survivor)
    assert message == survivor
    # The survivor's other address still works: the dead one is blocked, her consent is not withdrawn.
    assert all(entry["source"] != "bounce" for entry in ledger)


def test_a_contact_erased_after_the_send_leaves_nothing_readable(shop: Shop) -> None:
    from plugins.gdpr import erasure

    anna = shop.person("Анна", "anna@example.ru")
    sent = shop.send(anna)
    erasure.erase(shop.db.engine, shop.settings, anna)
    shop.bounces.append(report_for("postfix_hard.eml", sent))

    summary = shop.run()

    assert (summary.bounces, summary.left_for_person) == (1, 0)
    (event,) = shop.events()
    assert event.kind == "bounce" and event.detail == {} and event.url is None
    assert "anna" not in str(shop.events())


def test_limit_reads_only_so_many(shop: Shop) -> None:
    sent = shop.send(shop.person("Олег", "oleg@example.ru"))
    for n in range(3):
        shop.bounces.append(report_for("postfix_delayed.eml", sent, uid=f"lim-{n}@x"))
    seen: list[int] = []
    assert shop.run(limit=2, progress=seen.append).read == 2 and sum(seen) == 2
    assert len(shop.bounces.list()) == 1
    assert shop.run().read == 1


def test_matching_a_batch_takes_two_queries(shop: Shop) -> None:
    sent = shop.send(shop.person("Олег", "oleg@example.ru"))
    reports = [dsn.parse(report_for("postfix_hard.eml", sent, uid=f"q{n}@x")) for n in range(50)]
    reports += [dsn.parse(report_for("gmail_dsn.eml", sent, return_path="shop@shop.example.ru", uid=f"g{n}@x"))
                for n in range(50)]
    statements: list[str] = []
    from sqlalchemy import event

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(shop.db.engine, "before_cursor_execute", count)
    try:
        with shop.db.engine.connect() as conn:
            found = match.matches(conn, shop.settings, reports)
    finally:
        event.remove(shop.db.engine, "before_cursor_execute", count)
    assert [m.message_id if m else None for m in found] == [sent.message_id] * 100
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 2


# --- the schedule and the queue ----------------------------------------------------------------

def test_the_schedule_exists_only_with_a_mailbox(shop: Shop, mailing: Any) -> None:
    def schedules(settings: Any) -> dict[str, Any]:
        found: dict[str, Any] = {}
        mailing.hook.register_schedules(register=found.__setitem__, settings=settings)
        return found

    assert schedules(shop.settings)["mail-bounces"].every == dt.timedelta(seconds=300)
    off = replace(shop.settings, extra={**shop.settings.extra, "bounce_interval_s": "0"})
    assert schedules(off)["mail-bounces"].every == dt.timedelta(0)
    bare = replace(shop.settings, extra={k: v for k, v in shop.settings.extra.items() if k != "bounce_imap_host"})
    assert "mail-bounces" not in schedules(bare)


def test_the_scheduled_pass_runs_on_an_rq_worker(shop: Shop, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = shop.send(shop.person("Анна", "anna@example.ru"))
    shop.bounces.append(report_for("postfix_hard.eml", sent))
    shop.bounces.append(report_for("mailru_fbl.eml", sent, uid="c1@x"))
    # A worker reads its settings from the environment, as `hub worker` does.
    for key, value in {**shop.bounces.settings_extra, "mail_return_path": "bounces@shop.example.ru",
                       "redis_url": redis_url}.items():
        monkeypatch.setenv(f"HUB_{key.upper()}", value)
    settings = replace(shop.settings, redis_url=redis_url)

    said = process.scheduled(ScheduledRun(settings, shop.db.engine, utcnow()))
    assert said == {"mail_bounces": "enqueued"}
    assert shop.bounces.list() != []  # nothing was read in the scheduler's own process
    queue.work(settings, ("low",), burst=True, simple=True)

    assert shop.bounces.list() == [] and len(shop.bounces.list("Hub-Processed")) == 2
    assert {e.kind for e in shop.events()} == {"bounce", "complaint"}
    assert suppressed(shop, "anna@example.ru")


def test_the_scheduled_pass_without_redis_runs_in_the_background(shop: Shop) -> None:
    sent = shop.send(shop.person("Анна", "anna@example.ru"))
    shop.bounces.append(report_for("exim_text.eml", sent))
    said = process.scheduled(ScheduledRun(shop.settings, shop.db.engine, utcnow()))
    assert said == {"mail_bounces": "started"}
    queue.drain(timeout=60)
    assert suppressed(shop, "anna@example.ru")


# --- hub mail bounces ------------------------------------------------------------------------

def env_for(monkeypatch: pytest.MonkeyPatch, extra: dict[str, str]) -> None:
    for key, value in extra.items():
        monkeypatch.setenv(f"HUB_{key.upper()}", value)


def test_the_command_reads_now_and_says_what_it_did_in_russian(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = shop.send(shop.person("Анна", "anna@example.ru"))
    shop.bounces.append(report_for("postfix_hard.eml", sent))
    shop.bounces.append(report_for("mailru_fbl.eml", sent, uid="c2@x"))
    shop.bounces.append((CORPUS / "autoreply_ru.eml").read_bytes())
    shop.bounces.append((CORPUS / "garbage.eml").read_bytes())
    env_for(monkeypatch, {**shop.bounces.settings_extra, "mail_return_path": "bounces@shop.example.ru"})

    result = CliRunner().invoke(cli, ["mail", "bounces"])

    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("Прочитано 4 письма: 1 отказ, 1 жалоба на спам, 1 автоответ, "
                                     "1 не распознано; оставлено для проверки человеком: 1.")
    shop.bounces.append((CORPUS / "human_reply.eml").read_bytes())
    as_json = CliRunner().invoke(cli, ["mail", "bounces", "--json", "--limit", "5"])
    assert as_json.exit_code == 0, as_json.output
    import json

    assert json.loads(as_json.output) == {"read": 1, "bounces": 0, "soft_bounces": 0, "complaints": 0,
                                          "auto_replies": 0, "delivery_notices": 0, "unmatched": 0, "refused": 0,
                                          "unreadable": 1, "duplicates": 0, "left_for_person": 2}
    shop.bounces.append(report_for("exim_text.eml", shop.send(shop.person("Олег", "oleg@example.ru"))))
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    english = CliRunner().invoke(cli, ["mail", "bounces"])
    assert english.exit_code == 0, english.output
    assert english.output.strip() == "Read 1 letter: 1 bounce; left for a person to check: 2."


def test_the_command_names_the_missing_setting(hub_db: HubDB, mailing: Any) -> None:
    result = CliRunner().invoke(cli, ["mail", "bounces"])
    assert result.exit_code == 1
    assert "HUB_BOUNCE_IMAP_HOST" in result.output and "Traceback" not in result.output
    assert "не задан" in result.output


def test_an_unreachable_mailbox_is_one_clear_line(hub_db: HubDB, mailing: Any, monkeypatch: pytest.MonkeyPatch,
                                                  bounce_mailbox: BounceMailboxHelper) -> None:
    env_for(monkeypatch, {**bounce_mailbox.settings_extra, "bounce_imap_password": "wrong-password"})
    wrong = CliRunner().invoke(cli, ["mail", "bounces"])
    env_for(monkeypatch, {"bounce_imap_port": "1"})
    closed = CliRunner().invoke(cli, ["mail", "bounces"])
    for result in (wrong, closed):
        assert result.exit_code == 1, result.output
        assert isinstance(result.exception, SystemExit)  # a ClickException: one line, no traceback
        assert result.output.startswith("Ошибка: ") and len(result.output.strip().splitlines()) == 1
        assert "wrong-password" not in result.output
    assert "HUB_BOUNCE_IMAP_PASSWORD" in wrong.output and "127.0.0.1" in closed.output


def test_the_command_has_help_in_both_languages(hub_db: HubDB, mailing: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    russian = CliRunner().invoke(cli, ["mail", "bounces", "--help"])
    assert russian.exit_code == 0 and "--limit" in russian.output and "--json" in russian.output
    assert "Прочитать отказы и жалобы на спам" in russian.output
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    english = CliRunner().invoke(cli, ["mail", "bounces", "--help"])
    assert "Read bounces and spam complaints" in english.output


def test_a_wrong_interval_or_limit_is_one_clear_line(hub_db: HubDB, mailing: Any, monkeypatch: pytest.MonkeyPatch,
                                                     bounce_mailbox: BounceMailboxHelper) -> None:
    env_for(monkeypatch, bounce_mailbox.settings_extra)
    zero = CliRunner().invoke(cli, ["mail", "bounces", "--limit", "0"])
    assert zero.exit_code == 2 and "--limit" in zero.output and "Traceback" not in zero.output
    with pytest.raises(SettingsError, match="HUB_BOUNCE_INTERVAL_S"):
        process.interval_s(replace(hub_db.settings, extra={"bounce_interval_s": "soon"}))
    with i18n.use_language("ru"):
        with pytest.raises(SettingsError, match="HUB_BOUNCE_INTERVAL_S должно быть"):
            process.interval_s(replace(hub_db.settings, extra={"bounce_interval_s": "-5"}))
