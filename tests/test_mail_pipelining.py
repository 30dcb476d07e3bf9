"""SMTP PIPELINING (RFC 2920): with a relay that offers it, MAIL, RCPT and DATA go in one write.

Two round trips a letter instead of four, judged exactly as the one-at-a-time
dialogue is: the same outcomes, the same stored errors, nothing sent twice.
The server here is the tests' aiosmtpd mailbox announcing PIPELINING, as
Postfix, Exim, Yandex 360 and Mail.ru do; aiosmtpd reads pipelined commands
in order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from typing import Any, Iterator

import pytest
from sqlalchemy import select

import plugins.mailing
from hub import consent, messaging, sync
from hub.hookspecs import hookimpl
from hub.models import Message
from hub.records import ContactRecord
from tests.conftest import HubDB
from tests.support.smtp import Mailbox, smtp_server

PROMO = {"promo": {"code": "LAVKA-15", "discount": 15, "expires_at": dt.date(2026, 12, 31)}}


class PipeliningMailbox(Mailbox):
    """The tests' mailbox, announcing PIPELINING and noting whether each RCPT and DATA came in one write with MAIL."""

    def __init__(self, *, pipelining: bool = True) -> None:
        super().__init__()
        self.pipelining = pipelining
        self.pipelined: list[bool] = []  # per MAIL: RCPT and DATA were already waiting behind it
        self.accept_data_without_recipient = False  # a broken server: 354 after a refused RCPT

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if self.pipelining else responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        waiting = bytes(server._reader._buffer)  # what the client wrote after MAIL, read but not yet handled
        self.pipelined.append(b"RCPT TO:" in waiting and b"DATA\r\n" in waiting)
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = await super().handle_RCPT(server, session, envelope, address, rcpt_options)
        if self.accept_data_without_recipient and not reply.startswith("250"):
            envelope.rcpt_tos.append(address)  # so aiosmtpd answers 354 to the DATA that follows
        return reply


@pytest.fixture
def mailing(plugin_manager):
    plugin_manager.register(plugins.mailing, name="mailing")
    return plugin_manager


@pytest.fixture
def relay() -> Iterator[tuple[PipeliningMailbox, int]]:
    box = PipeliningMailbox()
    with smtp_server(box) as port:
        yield box, port


def settings_for(db: HubDB, port: int, **extra: Any):
    return replace(db.settings, extra={**db.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
                                       "mail_from": "Цветочная лавка <shop@example.ru>",
                                       "public_url": "https://hub.example.ru", **extra})


def people(db: HubDB, *addresses: str) -> list[int]:
    ids = []
    with db.engine.begin() as conn:
        for i, address in enumerate(addresses):
            record = ContactRecord(source="t", first_name=f"Имя{i}", last_name="Иванова", emails=[address])
            cid = sync.write_contacts(conn, [record], db.settings, sync.Counts()).contact_ids[0]
            assert cid is not None
            consent.record(conn, cid, "email", "marketing", "granted", source="form")
            ids.append(cid)
    return ids


def queue_letters(db: HubDB, settings, ids: list[int], prefix: str = "c") -> None:
    messaging.create_many(db.engine, settings, ids, channel="email", template="reactivation_email",
                          key_prefix=prefix, context=PROMO)


def rows(db: HubDB) -> dict[str, tuple[str, str | None]]:
    with db.engine.connect() as conn:
        return {str(a): (s, e) for a, s, e in conn.execute(select(Message.address, Message.status, Message.error))}


def test_letters_go_pipelined_and_arrive_whole_once_each(hub_db: HubDB, mailing, relay) -> None:
    box, port = relay
    settings = settings_for(hub_db, port)
    queue_letters(hub_db, settings, people(hub_db, "anna@example.ru", "oleg@example.ru", "maria@example.ru"))
    report = messaging.dispatch(hub_db.engine, settings)
    assert report.sent == 3 and report.errors == []
    assert box.pipelined == [True, True, True]
    assert sorted(len(v) for v in box.by_tracking_id().values()) == [1, 1, 1]
    letter = box.received[0]
    assert letter.mail_from == "shop@example.ru"
    assert letter.message["Subject"] and letter.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert len({r.session for r in box.received}) == 1  # one connection for the batch


def test_a_relay_without_pipelining_gets_one_command_at_a_time(hub_db: HubDB, mailing) -> None:
    box = PipeliningMailbox(pipelining=False)
    with smtp_server(box) as port:
        settings = settings_for(hub_db, port)
        queue_letters(hub_db, settings, people(hub_db, "anna@example.ru", "oleg@example.ru"))
        assert messaging.dispatch(hub_db.engine, settings).sent == 2
    assert box.pipelined == [False, False]


def test_a_refused_recipient_is_judged_as_before_and_the_connection_goes_on(hub_db: HubDB, mailing, relay) -> None:
    box, port = relay
    settings = settings_for(hub_db, port)
    queue_letters(hub_db, settings, people(hub_db, "busy@example.ru", "gone@example.ru", "full@example.ru",
                                           "anna@example.ru"))
    box.rcpt_replies["busy@example.ru"] = "451 4.7.1 Greylisted, try again later"
    box.rcpt_replies["gone@example.ru"] = "550 5.1.1 <gone@example.ru>: User unknown"
    box.rcpt_replies["full@example.ru"] = "552 5.2.2 Mailbox full"
    report = messaging.dispatch(hub_db.engine, settings)
    assert (report.sent, report.deferred, report.bounced) == (1, 2, 1)
    found = rows(hub_db)
    assert found["busy@example.ru"] == ("deferred", "RCPT TO: 451 4.7.1 Greylisted, try again later")
    assert found["full@example.ru"] == ("deferred", "RCPT TO: 452 5.2.2 Mailbox full")
    assert found["gone@example.ru"][0] == "failed" and "550 5.1.1" in (found["gone@example.ru"][1] or "")
    assert found["anna@example.ru"] == ("sent", None)
    assert [r.rcpt_tos for r in box.received] == [["anna@example.ru"]]
    assert len({r.session for r in box.received}) == 1 and all(box.pipelined)
    with hub_db.engine.connect() as conn:
        assert consent.is_suppressed(conn, "email", "gone@example.ru", settings.secret_key)
        assert not consent.is_suppressed(conn, "email", "busy@example.ru", settings.secret_key)


def test_a_refusal_after_the_data_is_judged_as_before(hub_db: HubDB, mailing, relay) -> None:
    box, port = relay
    settings = settings_for(hub_db, port)
    queue_letters(hub_db, settings, people(hub_db, "later@example.ru", "gone@example.ru"))
    box.data_replies["later@example.ru"] = "452 4.3.1 Insufficient system storage"
    box.data_replies["gone@example.ru"] = "550 5.1.1 User unknown"
    report = messaging.dispatch(hub_db.engine, settings)
    assert (report.deferred, report.bounced, report.sent) == (1, 1, 0)
    assert rows(hub_db)["later@example.ru"] == ("deferred", "452 4.3.1 Insufficient system storage")


def test_a_dropped_connection_and_a_421_are_tried_again_and_nothing_is_sent_twice(hub_db: HubDB, mailing,
                                                                                  relay) -> None:
    box, port = relay
    settings = settings_for(hub_db, port)
    queue_letters(hub_db, settings, people(hub_db, *(f"p{i}@example.ru" for i in range(4))))
    box.drop_at_mail = {1}  # the server hangs up on the first message, the pipelined RCPT and DATA unread
    box.reply_421_at_mail = {3}  # and answers 421 to the second one's first try
    report = messaging.dispatch(hub_db.engine, settings)
    assert report.sent == 4 and report.errors == [] and report.unknown == 0
    assert sorted(len(v) for v in box.by_tracking_id().values()) == [1, 1, 1, 1]
    assert box.mail_commands == 6


def test_a_connection_lost_after_the_data_is_unknown_not_resent(hub_db: HubDB, mailing, relay) -> None:
    box, port = relay
    settings = settings_for(hub_db, port)
    queue_letters(hub_db, settings, people(hub_db, "anna@example.ru", "oleg@example.ru"))
    box.lose_after_data.add("anna@example.ru")
    report = messaging.dispatch(hub_db.engine, settings)
    assert (report.unknown, report.sent) == (1, 1)
    assert {a: s for a, (s, _e) in rows(hub_db).items()} == {"anna@example.ru": "unknown", "oleg@example.ru": "sent"}
    assert messaging.dispatch(hub_db.engine, settings).claimed == 0
    assert [r.rcpt_tos[0] for r in box.received] == ["anna@example.ru", "oleg@example.ru"]


def test_a_server_that_wants_data_after_refusing_the_recipient_gets_none(hub_db: HubDB, mailing, relay) -> None:
    box, port = relay
    settings = settings_for(hub_db, port)
    queue_letters(hub_db, settings, people(hub_db, "gone@example.ru", "anna@example.ru"))
    box.rcpt_replies["gone@example.ru"] = "550 5.1.1 User unknown"
    box.accept_data_without_recipient = True
    report = messaging.dispatch(hub_db.engine, settings)
    assert (report.bounced, report.sent) == (1, 1)
    # Nothing was delivered to the refused address: the session was closed instead of sending data,
    # and the next letter went on a new connection.
    assert [r.rcpt_tos for r in box.received] == [["anna@example.ru"]]
    assert box.mail_commands == 2


def test_a_refused_sender_stops_the_channel_and_the_letters_wait(hub_db: HubDB, mailing, relay) -> None:
    box, port = relay
    settings = settings_for(hub_db, port)
    queue_letters(hub_db, settings, people(hub_db, "anna@example.ru"))

    async def refuse(server, session, envelope, address, mail_options):
        return "553 5.7.1 Sender address rejected: not owned by user"

    box.handle_MAIL = refuse
    report = messaging.dispatch(hub_db.engine, settings)
    assert report.released == 1 and "553 5.7.1" in report.errors[0] and box.received == []
    assert rows(hub_db)["anna@example.ru"][0] == "queued"


# --- the answer read while the next letter is checked ------------------------------------------

class FailingRule:
    """A send rule that breaks on one message, after the letter before it went out."""

    def __init__(self, address: str, error: BaseException) -> None:
        self.address, self.error = address, error

    @hookimpl
    def check_send(self, conn, settings, message, now):
        if message.address == self.address:
            raise self.error
        return None


def test_a_rule_that_breaks_after_a_letter_went_out_leaves_that_letter_sent(hub_db: HubDB, mailing, relay) -> None:
    box, port = relay
    settings = settings_for(hub_db, port)
    queue_letters(hub_db, settings, people(hub_db, "anna@example.ru", "oleg@example.ru"))
    mailing.register(FailingRule("oleg@example.ru", RuntimeError("the rule's database is away")), name="failing")
    with pytest.raises(RuntimeError):
        messaging.dispatch(hub_db.engine, settings)
    # Anna's letter was on the wire when the rule broke: its answer was read, not guessed.
    found = rows(hub_db)
    assert found["anna@example.ru"] == ("sent", None) and found["oleg@example.ru"][0] == "queued"
    assert [r.rcpt_tos for r in box.received] == [["anna@example.ru"]]


def test_stopped_while_an_answer_is_unread_the_letter_is_unknown_never_resent(hub_db: HubDB, mailing,
                                                                              relay) -> None:
    box, port = relay
    settings = settings_for(hub_db, port)
    queue_letters(hub_db, settings, people(hub_db, "anna@example.ru", "oleg@example.ru"))
    mailing.register(FailingRule("oleg@example.ru", KeyboardInterrupt()), name="failing")
    with pytest.raises(KeyboardInterrupt):
        messaging.dispatch(hub_db.engine, settings)
    found = rows(hub_db)
    assert found["anna@example.ru"][0] == "unknown" and "stopped while sending" in (found["anna@example.ru"][1] or "")
    assert found["oleg@example.ru"][0] == "queued"
    mailing.unregister(name="failing")
    with hub_db.engine.begin() as conn:  # Oleg's letter, put back for a minute, is due again
        conn.execute(Message.__table__.update().values(due_at=Message.__table__.c.created_at))
    assert messaging.dispatch(hub_db.engine, settings).sent == 1
    assert sorted(r.rcpt_tos[0] for r in box.received) == ["anna@example.ru", "oleg@example.ru"]


# --- the next letter's envelope written behind the letter before ------------------------------

class AheadMailbox(PipeliningMailbox):
    """Notes, before answering each letter's data, whether the next letter's MAIL comes while the answer is due.

    The answer waits (up to WAIT seconds) for the next MAIL: a client that
    reads the answer before writing anything more never sends it meanwhile.
    """

    WAIT = 3.0

    def __init__(self) -> None:
        super().__init__()
        self.next_waiting: list[bool] = []

    async def handle_DATA(self, server, session, envelope):
        deadline = asyncio.get_running_loop().time() + self.WAIT
        while b"MAIL FROM:" not in bytes(server._reader._buffer) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        self.next_waiting.append(b"MAIL FROM:" in bytes(server._reader._buffer))
        return await super().handle_DATA(server, session, envelope)


class Withdraws:
    """A send rule that, asked about one address, records its withdrawal in a transaction of its own first:
    after the batch read, so the letter is allowed here and stopped only at its hand-over."""

    def __init__(self, db: HubDB, address: str, contact_id: int) -> None:
        self.db, self.address = db, address
        self.contact_id: int | None = contact_id

    @hookimpl
    def check_send(self, conn, settings, message, now):
        if message.address == self.address and self.contact_id is not None:
            with self.db.engine.begin() as other:
                consent.record(other, self.contact_id, "email", "marketing", "withdrawn", source="unsubscribe")
            self.contact_id = None
        return None


def test_the_next_envelope_goes_behind_the_letter_before_and_each_arrives_once(hub_db: HubDB, mailing) -> None:
    box = AheadMailbox()
    with smtp_server(box) as port:
        settings = settings_for(hub_db, port)
        queue_letters(hub_db, settings, people(hub_db, "anna@example.ru", "oleg@example.ru", "maria@example.ru"))
        report = messaging.dispatch(hub_db.engine, settings)
    assert report.sent == 3 and report.errors == []
    # Each letter's envelope was on the wire before the answer about the one before it was read; the last has none.
    assert box.next_waiting == [True, True, False]
    assert sorted(len(v) for v in box.by_tracking_id().values()) == [1, 1, 1]
    assert len({r.session for r in box.received}) == 1
    assert [r.rcpt_tos for r in box.received] == [["anna@example.ru"], ["oleg@example.ru"], ["maria@example.ru"]]


def test_a_letter_whose_envelope_went_ahead_but_was_never_handed_over_gets_no_data(hub_db: HubDB, mailing) -> None:
    box = AheadMailbox()
    with smtp_server(box) as port:
        settings = settings_for(hub_db, port)
        ids = people(hub_db, "anna@example.ru", "oleg@example.ru", "maria@example.ru")
        queue_letters(hub_db, settings, ids)
        mailing.register(Withdraws(hub_db, "oleg@example.ru", ids[1]), name="withdraws")
        report = messaging.dispatch(hub_db.engine, settings)
    assert (report.sent, report.suppressed) == (2, 1)
    found = rows(hub_db)
    assert found["oleg@example.ru"][0] == "suppressed"
    # Oleg's envelope went behind Anna's letter, but his hand-over found the withdrawal: the server got
    # no data for him; that session was ended and Maria's letter went on a new one.
    assert [r.rcpt_tos for r in box.received] == [["anna@example.ru"], ["maria@example.ru"]]
    assert box.next_waiting[0] is True and box.mail_commands == 3
    assert len({r.session for r in box.received}) == 2
