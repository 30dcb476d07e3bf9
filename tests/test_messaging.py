"""The outbox: idempotent creation, claims, send-time policy, retries, bounces and messages in doubt."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import re
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import func, select, update

from hub import consent, i18n, identity, links, messaging, queue, sync
from hub.config import SettingsError
from hub.db import utcnow
from hub.hookspecs import hookimpl
from hub.messaging import ChannelUnavailable, Delivery, Outgoing, Verdict
from hub.models import Contact, Message
from hub.records import ContactRecord
from hub.message_templates import Template
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases  # claims, leases and exactly-once sending


@pytest.fixture(autouse=True)
def english(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """These tests read the outbox's messages in English, as the code writes them; one test reads Russian."""
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    with i18n.use_language("en"):
        yield

EMAIL_T = Template(name="hello_email", channel="email", subject="Привет, {{ contact.first_name }}",
                   text="Здравствуйте, {{ contact.first_name }}! {{ promo.code }}\n{{ unsubscribe_url }}",
                   html="<p>{{ contact.first_name }}</p>")
SMS_T = Template(name="hello_sms", channel="sms", text="Привет, {{ contact.first_name }}!")


class ScriptedChannel:
    """A channel that answers from a script keyed by address and remembers what it was given."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[Outgoing] = []
        self.script: dict[str, Delivery | BaseException] = {}
        self.opened = self.closed = 0
        self.unavailable: str | None = None

    def open(self) -> None:
        if self.unavailable:
            raise ChannelUnavailable(self.unavailable)
        self.opened += 1

    def close(self) -> None:
        self.closed += 1

    def send(self, message: Outgoing) -> Delivery:
        answer = self.script.get(message.address or "", Delivery("sent", provider_id=f"p{message.id}"))
        if isinstance(answer, BaseException):
            raise answer
        if answer.status == "sent":
            self.sent.append(message)
        return answer


class Channels:
    """A test plugin: scripted email and sms channels, and a record of message_sent calls."""

    def __init__(self) -> None:
        self.email = ScriptedChannel("email")
        self.sms = ScriptedChannel("sms")
        self.heard: list[dict[str, Any]] = []

    @hookimpl
    def register_channels(self, register):
        register("email", lambda settings: self.email)
        register("sms", lambda settings: self.sms)

    @hookimpl
    def message_sent(self, conn, message):
        self.heard.append(message)


@pytest.fixture
def channels(plugin_manager) -> Channels:
    # hook:register_channels hook:message_sent
    plugin = Channels()
    plugin_manager.register(plugin)
    return plugin


def person(db: HubDB, *, first: str = "Анна", email: str | None = "anna@example.ru", phone: str | None = None,
           marketing: bool = True) -> int:
    with db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="t", first_name=first,
                                                       emails=[email] if email else [],
                                                       phones=[phone] if phone else [])],
                                  db.settings, sync.Counts()).contact_ids[0]
        if marketing:
            for channel in ("email", "sms"):
                consent.record(conn, cid, channel, "marketing", "granted", source="form")
    return cid


def make(db: HubDB, cid: int, key: str, template: Template = EMAIL_T, channel: str = "email",
         **kwargs: Any) -> messaging.Created:
    with db.engine.begin() as conn:
        return messaging.create(conn, db.settings, contact_id=cid, channel=channel, template=template, key=key,
                                context={"promo": {"code": "P-1"}}, **kwargs)


def row(db: HubDB, message_id: int) -> dict[str, Any]:
    with db.engine.connect() as conn:
        found = messaging.get(conn, message_id)
    assert found is not None
    return found


def test_create_renders_once_and_a_second_create_with_the_key_changes_nothing(hub_db: HubDB, channels) -> None:
    cid = person(hub_db)
    first = make(hub_db, cid, "run:1:step:email")
    assert first.created and first.status == "queued"
    saved = row(hub_db, first.id)
    assert saved["subject"] == "Привет, Анна" and saved["address"] == "anna@example.ru"
    assert saved["body_html"] == "<p>Анна</p>" and saved["purpose"] == "marketing"
    token = saved["meta"]["unsubscribe_url"].rsplit("/u/", 1)[1]
    assert links.read_unsubscribe(hub_db.settings, token) == links.LinkTarget(cid, "email", "marketing")
    assert saved["meta"]["unsubscribe_url"] in saved["body_text"]

    report = messaging.dispatch(hub_db.engine, hub_db.settings)
    assert report.sent == 1 and len(channels.email.sent) == 1

    again = make(hub_db, cid, "run:1:step:email")
    assert (again.id, again.status, again.created) == (first.id, "sent", False)
    assert messaging.dispatch(hub_db.engine, hub_db.settings).claimed == 0
    assert len(channels.email.sent) == 1
    assert channels.heard[0]["id"] == first.id and channels.heard[0]["provider_id"] == f"p{first.id}"
    assert row(hub_db, first.id)["attempts"] == 1 and row(hub_db, first.id)["sent_at"] is not None


def test_send_creates_and_dispatches_one_message_and_never_twice(hub_db: HubDB, channels) -> None:
    cid = person(hub_db)
    args = dict(contact_id=cid, channel="email", template=EMAIL_T, key="doi:1", purpose="transactional",
                context={"promo": {"code": "X"}})
    first = messaging.send(hub_db.engine, hub_db.settings, **args)
    second = messaging.send(hub_db.engine, hub_db.settings, **args)
    assert first["status"] == second["status"] == "sent" and first["id"] == second["id"]
    assert len(channels.email.sent) == 1
    assert channels.email.sent[0].unsubscribe_url is None  # transactional mail has no List-Unsubscribe


def test_bad_input_is_refused_with_a_clear_error(hub_db: HubDB, channels) -> None:
    cid = person(hub_db)
    with hub_db.engine.begin() as conn:
        with pytest.raises(messaging.MessagingError, match="no channel 'telegram'; registered: email, sms"):
            messaging.create(conn, hub_db.settings, contact_id=cid, channel="telegram", template=SMS_T, key="k1")
        with pytest.raises(messaging.MessagingError, match="purpose 'spam' is not one of: processing, marketing"):
            messaging.create(conn, hub_db.settings, contact_id=cid, channel="email", template=EMAIL_T, key="k2",
                             purpose="spam")
        with pytest.raises(messaging.MessagingError, match="'hello_sms' is a sms template; it cannot go by email"):
            messaging.create(conn, hub_db.settings, contact_id=cid, channel="email", template=SMS_T, key="k3")
        with pytest.raises(messaging.MessagingError, match="no contact with id 999"):
            messaging.create(conn, hub_db.settings, contact_id=999, channel="sms", template=SMS_T, key="k4")
        with pytest.raises(ValueError, match="hello_email, text line 1: undefined variable 'promo'"):
            messaging.create(conn, hub_db.settings, contact_id=cid, channel="email", template=EMAIL_T, key="k5")
        with i18n.use_language("ru"), pytest.raises(messaging.MessagingError,
                                                     match="нет канала 'telegram'; зарегистрированы: email, sms"):
            messaging.create(conn, hub_db.settings, contact_id=cid, channel="telegram", template=SMS_T, key="k6")


def test_consent_is_asked_at_send_time_not_only_at_creation(hub_db: HubDB, channels) -> None:
    cid = person(hub_db)
    created = make(hub_db, cid, "k")
    with hub_db.engine.begin() as conn:  # withdrawn after the message was queued
        consent.record(conn, cid, "email", "marketing", "withdrawn", source="unsubscribe")
    report = messaging.dispatch(hub_db.engine, hub_db.settings)
    assert report.suppressed == 1 and channels.email.sent == []
    saved = row(hub_db, created.id)
    assert saved["status"] == "suppressed"
    assert saved["error"] == "no granted consent for email/marketing (current: withdrawn)"


def test_a_veto_from_any_plugin_suppresses(hub_db: HubDB, channels, plugin_manager) -> None:
    class Blocklist:
        @hookimpl
        def can_contact(self, address):
            return "on the blocklist" if address == "anna@example.ru" else None

    plugin_manager.register(Blocklist())
    created = make(hub_db, person(hub_db), "k")
    messaging.dispatch(hub_db.engine, hub_db.settings)
    assert row(hub_db, created.id)["error"] == "on the blocklist"


def test_campaign_creation_in_bulk_skips_keys_already_there(hub_db: HubDB, channels) -> None:
    ids = [person(hub_db, first=f"Имя{i}", email=f"p{i}@example.ru") for i in range(5)]
    no_email = person(hub_db, first="Без почты", email=None, phone="+79161234567")
    first = messaging.create_many(hub_db.engine, hub_db.settings, ids[:3], channel="email", template=EMAIL_T,
                                  key_prefix="c1", context={"promo": {"code": "C"}}, chunk_size=2)
    second = messaging.create_many(hub_db.engine, hub_db.settings, ids + [no_email, 12345], channel="email",
                                   template=EMAIL_T, key_prefix="c1", context={"promo": {"code": "C"}})
    assert (first.created, first.existing) == (3, 0)
    assert (second.created, second.existing, second.missing_contacts) == (3, 3, [12345])
    report = messaging.dispatch(hub_db.engine, hub_db.settings, batch_size=2)
    assert report.sent == 5 and report.suppressed == 1
    assert sorted(m.address for m in channels.email.sent) == [f"p{i}@example.ru" for i in range(5)]
    assert {m.text.split("!")[0] for m in channels.email.sent} == {f"Здравствуйте, Имя{i}" for i in range(5)}
    assert channels.email.opened == 1 and channels.email.closed == 1  # one connection for all batches


def test_a_temporary_failure_defers_with_backoff_then_gives_up(hub_db: HubDB, channels) -> None:
    created = make(hub_db, person(hub_db), "k")
    channels.email.script["anna@example.ru"] = Delivery("deferred", error="451 4.7.1 try later")
    before = utcnow()
    assert messaging.dispatch(hub_db.engine, hub_db.settings).deferred == 1
    saved = row(hub_db, created.id)
    assert saved["status"] == "deferred" and saved["attempts"] == 1 and saved["error"] == "451 4.7.1 try later"
    assert saved["due_at"] >= before + dt.timedelta(seconds=messaging.BACKOFF[0])
    assert messaging.dispatch(hub_db.engine, hub_db.settings).claimed == 0  # not due yet

    for attempt in range(2, messaging.MAX_ATTEMPTS + 1):
        with hub_db.engine.begin() as conn:  # time passes
            conn.execute(update(Message).values(due_at=utcnow() - dt.timedelta(seconds=1)))
        messaging.dispatch(hub_db.engine, hub_db.settings)
        assert row(hub_db, created.id)["attempts"] == attempt
    saved = row(hub_db, created.id)
    assert saved["status"] == "failed"
    assert saved["error"] == f"gave up after {messaging.MAX_ATTEMPTS} attempts: 451 4.7.1 try later"


def test_a_bounce_fails_the_message_suppresses_the_address_and_records_it(hub_db: HubDB, channels) -> None:
    cid = person(hub_db)
    created = make(hub_db, cid, "k1")
    channels.email.script["anna@example.ru"] = Delivery("bounced", error="550 5.1.1 no such user")
    report = messaging.dispatch(hub_db.engine, hub_db.settings)
    assert (report.failed, report.bounced) == (0, 1)
    assert row(hub_db, created.id)["status"] == "failed"
    assert row(hub_db, created.id)["error"] == "bounced: 550 5.1.1 no such user"
    with hub_db.engine.connect() as conn:
        assert consent.is_suppressed(conn, "email", "anna@example.ru", hub_db.settings.secret_key)
        event = consent.history(conn, cid)[-1]
    assert (event["status"], event["source"], event["channel"]) == ("withdrawn", "bounce", "email")
    assert event["evidence"] == {"address": "anna@example.ru", "reply": "bounced: 550 5.1.1 no such user",
                                 "message_id": created.id}
    # Even transactional mail no longer goes to that address.
    later = make(hub_db, cid, "k2", purpose="transactional")
    messaging.dispatch(hub_db.engine, hub_db.settings)
    assert row(hub_db, later.id)["status"] == "suppressed"


def test_a_permanent_failure_that_is_not_the_address_does_not_suppress(hub_db: HubDB, channels) -> None:
    created = make(hub_db, person(hub_db), "k")
    channels.email.script["anna@example.ru"] = Delivery("failed", error="552 message too large")
    messaging.dispatch(hub_db.engine, hub_db.settings)
    assert row(hub_db, created.id)["status"] == "failed"
    with hub_db.engine.connect() as conn:
        assert not consent.is_suppressed(conn, "email", "anna@example.ru", hub_db.settings.secret_key)


def test_an_unreachable_channel_puts_the_batch_back_untouched(hub_db: HubDB, channels) -> None:
    email_id = make(hub_db, person(hub_db), "e").id
    sms_id = make(hub_db, person(hub_db, first="Олег", email=None, phone="+79031112233"), "s",
                  template=SMS_T, channel="sms").id
    channels.email.unavailable = "cannot reach smtp://mail.example.ru:587: Connection refused"
    report = messaging.dispatch(hub_db.engine, hub_db.settings)
    assert report.errors == ["email: cannot reach smtp://mail.example.ru:587: Connection refused"]
    assert report.released == 1 and report.sent == 1  # sms went on
    saved = row(hub_db, email_id)
    assert saved["status"] == "queued" and saved["attempts"] == 0 and saved["due_at"] > utcnow()
    assert row(hub_db, sms_id)["status"] == "sent" and row(hub_db, sms_id)["parts"] == 1


def test_a_channel_error_mid_send_is_unknown_not_retried(hub_db: HubDB, channels) -> None:
    created = make(hub_db, person(hub_db), "k")
    channels.email.script["anna@example.ru"] = RuntimeError("socket exploded")
    report = messaging.dispatch(hub_db.engine, hub_db.settings)
    assert report.unknown == 1
    saved = row(hub_db, created.id)
    assert saved["status"] == "unknown" and "RuntimeError: socket exploded" in saved["error"]
    assert messaging.dispatch(hub_db.engine, hub_db.settings).claimed == 0


def test_stopped_mid_batch_the_message_in_hand_is_unknown_and_the_rest_wait(hub_db: HubDB, channels) -> None:
    ids = [make(hub_db, person(hub_db, email=f"{n}@example.ru"), n).id for n in ("a", "b", "c")]
    channels.email.script["b@example.ru"] = KeyboardInterrupt()  # Ctrl-C while b is with the channel
    with pytest.raises(KeyboardInterrupt):
        messaging.dispatch(hub_db.engine, hub_db.settings)
    assert [row(hub_db, i)["status"] for i in ids] == ["sent", "unknown", "queued"]
    assert row(hub_db, ids[1])["error"] == "dispatch stopped while sending (KeyboardInterrupt)"
    del channels.email.script["b@example.ru"]
    with hub_db.engine.begin() as conn:  # the one put back is due again
        conn.execute(update(Message).where(Message.id == ids[2]).values(due_at=utcnow()))
    messaging.dispatch(hub_db.engine, hub_db.settings)
    assert [m.address for m in channels.email.sent] == ["a@example.ru", "c@example.ru"]


class KilledMidSend(ScriptedChannel):
    """A channel whose process is killed (SIGKILL) right after it hands `fatal` to the server.

    What reached the "server" is appended to a file, since the process that sent it dies.
    """

    def __init__(self, log: Path, fatal: str) -> None:
        super().__init__("email")
        self.log, self.fatal = log, fatal

    def send(self, message: Outgoing) -> Delivery:
        with open(self.log, "a") as f:
            f.write(f"{message.id}\n")
        if message.address == self.fatal:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().send(message)


def _dispatch_in_a_child(db: HubDB, worker: str) -> int:
    """Run a dispatch in a forked process (as a worker's job horse) and return its exit code."""
    def child() -> None:
        db.engine.dispose(close=False)  # the parent's connections stay the parent's
        messaging.dispatch(db.engine, db.settings, worker=worker)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join()
    return process.exitcode


def _lease_runs_out(db: HubDB) -> None:
    """As if the claims' lease had run out (the time a dead worker's batch waits)."""
    with db.engine.begin() as conn:
        conn.execute(update(Message).where(Message.status == "queued", Message.claimed_at.is_not(None))
                     .values(claimed_at=utcnow() - messaging.CLAIM_LEASE - dt.timedelta(seconds=1)))


def test_a_worker_killed_mid_send_leaves_only_the_message_in_hand_in_doubt(hub_db: HubDB, plugin_manager,
                                                                          tmp_path: Path) -> None:
    server = tmp_path / "delivered"
    plugin = Channels()
    plugin.email = KilledMidSend(server, fatal="c@example.ru")
    plugin_manager.register(plugin)
    ids = [make(hub_db, person(hub_db, email=f"{n}@example.ru"), n).id for n in "abcdef"]
    assert _dispatch_in_a_child(hub_db, "host:1") == -signal.SIGKILL
    assert [row(hub_db, i)["status"] for i in ids] == ["sent", "sent", "sending", "queued", "queued", "queued"]
    assert [row(hub_db, i)["worker"] for i in ids[3:]] == ["host:1"] * 3  # claimed, never handed over
    assert messaging.dispatch(hub_db.engine, hub_db.settings).claimed == 0  # the dead worker's lease still holds
    _lease_runs_out(hub_db)
    report = messaging.dispatch(hub_db.engine, hub_db.settings)
    assert report.sent == 3 and [m.id for m in plugin.email.sent] == ids[3:]  # the rest simply go out
    assert messaging.recover_stale(hub_db.engine) == 0  # too early to say about the one in hand
    later = utcnow() + messaging.SENDING_TIMEOUT + dt.timedelta(seconds=1)
    assert messaging.recover_stale(hub_db.engine, now=later) == 1
    in_doubt = [i for i in ids if row(hub_db, i)["status"] == "unknown"]
    assert in_doubt == [ids[2]]
    assert row(hub_db, ids[2])["error"] == "host:1 stopped while sending; the message may or may not have gone out"
    assert sorted(int(x) for x in server.read_text().split()) == ids  # each once, the one in doubt included

    with pytest.raises(messaging.MessagingError, match="only unknown or failed or deferred messages"):
        messaging.resolve(hub_db.engine, ids[0], "requeue")
    assert messaging.resolve(hub_db.engine, ids[2], "sent")["status"] == "sent"
    assert messaging.dispatch(hub_db.engine, hub_db.settings).claimed == 0


def test_a_claim_whose_lease_ran_out_is_taken_over_and_never_sent_twice(hub_db: HubDB, channels) -> None:
    ids = [make(hub_db, person(hub_db, email=f"{n}@example.ru"), n).id for n in "abc"]
    slow = messaging.Dispatcher(hub_db.engine, hub_db.settings, worker="slow:1")
    batch = messaging.claim(hub_db.engine, "email", 10, worker="slow:1")
    assert [m.id for m, _, _ in batch] == ids and {row(hub_db, i)["status"] for i in ids} == {"queued"}
    _lease_runs_out(hub_db)
    assert messaging.dispatch(hub_db.engine, hub_db.settings, worker="quick:2").sent == 3
    slow._send_batch("email", batch)  # the slow worker carries on with the batch it claimed long ago
    assert [m.id for m in channels.email.sent] == ids  # once each
    assert {row(hub_db, i)["worker"] for i in ids} == {"quick:2"}
    assert slow.report.sent == 0


def test_a_worker_renews_its_claim_as_it_sends(hub_db: HubDB, channels) -> None:
    import time

    ids = [make(hub_db, person(hub_db, email=f"{n}@example.ru"), n).id for n in "abc"]
    worker = messaging.Dispatcher(hub_db.engine, hub_db.settings, worker="w:1")
    batch = messaging.claim(hub_db.engine, "email", 10, worker="w:1")
    _lease_runs_out(hub_db)  # a slow start: most of the lease has gone by
    worker._renewed = time.monotonic() - messaging.CLAIM_LEASE.total_seconds()
    seen: list[Any] = []
    ordinary = channels.email.send

    def send(message: Outgoing) -> Delivery:
        if message.id == ids[0]:  # while a is with the channel, nobody may take b and c
            seen.extend(messaging.claim(hub_db.engine, "email", 10, worker="other:2"))
        return ordinary(message)

    channels.email.send = send
    worker._send_batch("email", batch)
    assert seen == [] and [m.id for m in channels.email.sent] == ids


def test_the_claim_lease_setting(hub_db: HubDB) -> None:
    assert messaging.claim_lease(hub_db.settings) == messaging.CLAIM_LEASE
    lease = replace(hub_db.settings, extra={**hub_db.settings.extra, "messages_lease_s": "3"})
    assert messaging.claim_lease(lease) == dt.timedelta(seconds=3)
    with pytest.raises(messaging.MessagingError, match="HUB_MESSAGES_LEASE_S: 'soon' is not a number of seconds"):
        messaging.claim_lease(replace(hub_db.settings, extra={**hub_db.settings.extra, "messages_lease_s": "soon"}))


@pytest.fixture
def stop_flag() -> Any:
    yield queue
    queue.clear_stop()


def test_asked_to_stop_a_dispatch_ends_after_the_message_in_hand(hub_db: HubDB, channels, stop_flag) -> None:
    ids = [make(hub_db, person(hub_db, email=f"{n}@example.ru"), n).id for n in "abcd"]
    ordinary = channels.email.send

    def send(message: Outgoing) -> Delivery:
        if message.address == "b@example.ru":
            stop_flag.request_stop()  # SIGTERM reaches the worker while the channel has b
        return ordinary(message)

    channels.email.send = send
    report = messaging.dispatch(hub_db.engine, hub_db.settings)
    assert report.sent == 2 and report.released == 2
    saved = [row(hub_db, i) for i in ids]
    assert [m["status"] for m in saved] == ["sent", "sent", "queued", "queued"]
    assert all(m["claimed_at"] is None and m["due_at"] <= utcnow() for m in saved[2:])  # free and due for the next
    assert messaging.dispatch(hub_db.engine, hub_db.settings).claimed == 0  # still stopping: takes nothing
    stop_flag.clear_stop()
    assert messaging.dispatch(hub_db.engine, hub_db.settings).sent == 2
    assert [m.id for m in channels.email.sent] == ids


def test_resolving_in_doubt_messages(hub_db: HubDB, channels) -> None:
    a, b = make(hub_db, person(hub_db), "a").id, make(hub_db, person(hub_db, email="b@example.ru"), "b").id
    with hub_db.engine.begin() as conn:
        conn.execute(update(Message).values(status="unknown"))
    assert messaging.resolve(hub_db.engine, a, "sent")["status"] == "sent"
    assert messaging.resolve(hub_db.engine, b, "failed")["error"] == "marked failed by cli"
    with pytest.raises(messaging.MessagingError, match="message .* is sent; only unknown"):
        messaging.resolve(hub_db.engine, a, "failed")
    with pytest.raises(messaging.MessagingError, match="no message with id 99"):
        messaging.resolve(hub_db.engine, 99, "sent")
    with pytest.raises(messaging.MessagingError, match="'maybe' is not one of"):
        messaging.resolve(hub_db.engine, a, "maybe")


def test_claims_never_overlap(hub_db: HubDB, channels) -> None:
    for i in range(7):
        make(hub_db, person(hub_db, email=f"c{i}@example.ru"), f"k{i}")
    first = messaging.claim(hub_db.engine, "email", 4, worker="w1")
    second = messaging.claim(hub_db.engine, "email", 4, worker="w2")
    third = messaging.claim(hub_db.engine, "email", 4, worker="w3")
    ids = [m.id for m, _, _ in first + second + third]
    assert len(first) == 4 and len(second) == 3 and third == [] and len(set(ids)) == 7


class SendRule:
    """A test plugin's send rule: answers from a script keyed by address, and remembers what it was asked."""

    def __init__(self) -> None:
        self.script: dict[str, Verdict] = {}
        self.asked: list[tuple[int, dt.datetime]] = []

    @hookimpl
    def check_send(self, conn, settings, message: Outgoing, now: dt.datetime) -> Verdict | None:
        self.asked.append((message.id, now))
        return self.script.get(message.address or "")


def test_a_plugins_send_rule_can_hold_or_skip_any_message(hub_db: HubDB, channels, plugin_manager) -> None:
    # hook:check_send
    rule = SendRule()
    plugin_manager.register(rule)
    held = make(hub_db, person(hub_db, email="held@example.ru"), "held")
    skipped = make(hub_db, person(hub_db, email="skip@example.ru"), "skipped")
    fine = make(hub_db, person(hub_db, email="fine@example.ru"), "fine")
    refused = make(hub_db, person(hub_db, email="no@example.ru", marketing=False), "refused")
    morning = utcnow() + dt.timedelta(hours=8)
    rule.script = {"held@example.ru": Verdict.defer(morning, "quiet hours"),
                   "skip@example.ru": Verdict.skip("on the shop's do-not-mail list"),
                   "no@example.ru": Verdict.defer(morning, "quiet hours")}
    report = messaging.dispatch(hub_db.engine, hub_db.settings)
    assert (report.held, report.suppressed, report.sent) == (1, 2, 1)
    assert [m.id for m in channels.email.sent] == [fine.id]
    assert sorted(i for i, _ in rule.asked) == sorted([held.id, skipped.id, fine.id, refused.id])
    saved = row(hub_db, held.id)
    assert (saved["status"], saved["due_at"], saved["attempts"], saved["error"]) == (
        "queued", morning, 0, "held: quiet hours")
    saved = row(hub_db, skipped.id)
    assert (saved["status"], saved["error"]) == ("suppressed", "on the shop's do-not-mail list")
    # A skip beats a hold: the core's consent rule refuses the message another rule only held.
    assert row(hub_db, refused.id)["status"] == "suppressed"
    # Once the hold is over, the message goes (a later dispatch judging by a later moment).
    rule.script = {}
    later = morning + dt.timedelta(minutes=1)
    assert messaging.dispatch(hub_db.engine, hub_db.settings, now=later).sent == 1
    assert row(hub_db, held.id)["status"] == "sent" and rule.asked[-1] == (held.id, later)


def with_limits(db: HubDB, **extra: str) -> Any:
    """The settings with the send limits given (the tests' default switches SMS quiet hours off)."""
    return replace(db.settings, extra={**db.settings.extra, **extra})


def test_quiet_hours_hold_a_message_whoever_dispatches_it(hub_db: HubDB, channels) -> None:
    # An SMS its gateway put off (a workflow's, say) comes up again at night and is dispatched by
    # `hub messages dispatch`, no workflow involved: the core's send limits hold it until morning.
    settings = with_limits(hub_db, quiet_hours_sms="21:00-09:00")
    cid = person(hub_db, email=None, phone="+79161110001")
    with hub_db.engine.begin() as conn:
        conn.execute(update(Contact).where(Contact.id == cid).values(timezone="Europe/Moscow"))
    created = make(hub_db, cid, "run:1:step:2", template=SMS_T, channel="sms",
                   meta={"workflow": "sms_only", "run": 1, "step": 2})
    night = dt.datetime(2025, 3, 3, 20, 30, tzinfo=dt.timezone.utc)  # 23:30 in Moscow
    with hub_db.engine.begin() as conn:
        conn.execute(update(Message).where(Message.id == created.id).values(
            status="deferred", attempts=1, due_at=night - dt.timedelta(hours=1), error="gateway busy"))
    report = messaging.dispatch(hub_db.engine, settings, now=night)
    assert (report.claimed, report.held, report.sent) == (1, 1, 0) and channels.sms.sent == []
    morning = dt.datetime(2025, 3, 4, 6, 0, tzinfo=dt.timezone.utc)  # 09:00 in Moscow
    saved = row(hub_db, created.id)
    assert (saved["status"], saved["due_at"], saved["attempts"]) == ("queued", morning, 1)
    assert saved["error"] == "held: quiet hours 21:00-09:00 in Europe/Moscow"
    assert messaging.dispatch(hub_db.engine, settings, now=morning - dt.timedelta(minutes=1)).claimed == 0
    assert messaging.dispatch(hub_db.engine, settings, now=morning + dt.timedelta(minutes=1)).sent == 1
    assert row(hub_db, created.id)["status"] == "sent" and [m.id for m in channels.sms.sent] == [created.id]


def test_the_frequency_cap_holds_campaigns_sent_outside_workflows(hub_db: HubDB, channels) -> None:
    cid = person(hub_db)
    campaigns = [messaging.create_many(hub_db.engine, hub_db.settings, [cid], channel="email", template=EMAIL_T,
                                       key_prefix=f"campaign-{n}", context={"promo": {"code": "P-1"}})
                 for n in range(3)]
    assert all(c.created == 1 for c in campaigns)
    receipt = make(hub_db, cid, "receipt", purpose="transactional")
    report = messaging.dispatch(hub_db.engine, hub_db.settings)  # the default cap: 2 in 7 days
    assert (report.sent, report.held) == (3, 1)  # two campaigns and the receipt (transactional: no cap)
    with hub_db.engine.connect() as conn:
        by_key = {m["idempotency_key"]: m for m in messaging.find(conn, limit=None)}
    assert by_key[f"campaign-0:{cid}"]["status"] == by_key[f"campaign-1:{cid}"]["status"] == "sent"
    assert by_key["receipt"]["status"] == "sent" and receipt.created
    third = by_key[f"campaign-2:{cid}"]
    assert third["status"] == "queued" and third["error"] == "held: frequency cap 2/7d reached"
    assert third["due_at"] == by_key[f"campaign-0:{cid}"]["created_at"] + dt.timedelta(days=7)


def test_a_cap_switched_off_under_its_old_name_stops_the_dispatch_instead_of_coming_back(
        hub_db: HubDB, channels) -> None:
    cid = person(hub_db)
    make(hub_db, cid, "campaign")
    old = replace(hub_db.settings, extra={**hub_db.settings.extra, "workflows": {"frequency_cap": "none"}})
    with pytest.raises(SettingsError, match=r"\[workflows\] frequency_cap .* is now set as frequency_cap in hub.toml"):
        messaging.dispatch(hub_db.engine, old)
    with hub_db.engine.connect() as conn:
        assert [m["status"] for m in messaging.find(conn, limit=None)] == ["queued"]  # nothing sent, nothing lost


def test_send_rules_combine_whatever_order_plugins_come_in() -> None:
    at = dt.datetime(2025, 3, 4, 6, 0, tzinfo=dt.timezone.utc)
    later = at + dt.timedelta(hours=2)
    assert messaging.combine([None, None]) is None
    assert messaging.combine([Verdict.defer(later, "cap"), Verdict.defer(at, "quiet")]) == \
        Verdict.defer(later, "cap; quiet")
    assert messaging.combine([Verdict.defer(at, "quiet"), Verdict.skip("no consent"), Verdict.skip("erased")]) == \
        Verdict.skip("no consent; erased")


def test_the_channel_rate_limit_is_applied(hub_db: HubDB, channels) -> None:
    from hub import ratelimit

    for i in range(3):
        make(hub_db, person(hub_db, email=f"r{i}@example.ru"), f"k{i}")
    settings = replace(hub_db.settings, extra={**hub_db.settings.extra, "email_rate": "1000"})
    bucket = ratelimit.limiter(settings, "channel:email", 1000.0, burst=1000)
    taken_before = bucket._tat
    assert messaging.dispatch(hub_db.engine, settings).sent == 3
    assert bucket._tat > taken_before  # every send drew from the shared bucket
    with pytest.raises(messaging.MessagingError, match="HUB_EMAIL_RATE: 'fast' is not a number"):
        messaging.channel_rate(replace(settings, extra={**settings.extra, "email_rate": "fast"}), "email")


def test_messages_follow_a_merged_contact(hub_db: HubDB, channels) -> None:
    a = person(hub_db, first="Анна", email="a1@example.ru")
    b = person(hub_db, first="Анна", email="a2@example.ru")
    created = make(hub_db, b, "k")
    with hub_db.engine.begin() as conn:
        identity.merge_contacts(conn, a, b, reason={"rule": "merged by hand"}, settings=hub_db.settings)
    assert row(hub_db, created.id)["contact_id"] == a


def test_find_and_counts(hub_db: HubDB, channels) -> None:
    make(hub_db, person(hub_db), "a")
    make(hub_db, person(hub_db, first="Нет согласия", email="n@example.ru", marketing=False), "b")
    messaging.dispatch(hub_db.engine, hub_db.settings)
    with hub_db.engine.connect() as conn:
        assert messaging.counts(conn) == {"sent": 1, "suppressed": 1}
        found = messaging.find(conn, status="suppressed")
        assert [m["idempotency_key"] for m in found] == ["b"] and "body_text" not in found[0]
        assert conn.execute(select(func.count()).select_from(Message)).scalar_one() == 2
        with pytest.raises(messaging.MessagingError, match="status 'lost' is not one of"):
            messaging.find(conn, status="lost")


@pytest.mark.parametrize("text, parts", [
    ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3),
    ("{" * 80, 1), ("{" * 81, 2),  # GSM extension characters take two septets
    ("я" * 70, 1), ("я" * 71, 2), ("я" * 134, 2), ("я" * 135, 3),
    ("a" * 159 + "я", 3),  # one Cyrillic letter turns the whole text into UCS-2
    ("😀" * 35, 1), ("😀" * 36, 2),
])
def test_sms_parts(text: str, parts: int) -> None:
    assert messaging.text_parts(text) == parts


def test_links_are_scoped_signed_and_tamper_proof(hub_db: HubDB) -> None:
    settings = replace(hub_db.settings, extra={**hub_db.settings.extra, "public_url": "https://shop.example.ru/hub/"})
    url = links.unsubscribe_url(settings, 42, "sms", "news")
    assert url.startswith("https://shop.example.ru/hub/u/")
    token = url.rsplit("/", 1)[1]
    assert links.read_unsubscribe(settings, token) == links.LinkTarget(42, "sms", "news")
    pref = links.preferences_url(settings, 42).rsplit("/", 1)[1]
    assert links.read_preferences(settings, pref).contact_id == 42
    with pytest.raises(links.LinkError, match="not valid"):
        links.read_unsubscribe(settings, pref)  # a preferences token is not an unsubscribe token
    with pytest.raises(links.LinkError, match="not valid"):
        links.read_unsubscribe(settings, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    other_key = replace(settings, secret_key="another-secret-key-0123456789")
    with pytest.raises(links.LinkError):
        links.read_unsubscribe(other_key, token)
    confirm = links.confirm_url(settings, 42).rsplit("/", 1)[1]
    assert links.read_confirm(settings, confirm).purpose == "marketing"
    with pytest.raises(links.LinkError, match="expired"):
        links.read_confirm(settings, confirm, max_age=-1)
    mailto = links.unsubscribe_mailto("unsub@shop.ru", url)
    assert mailto == f"mailto:unsub@shop.ru?subject=unsubscribe%20{token}"
    with pytest.raises(Exception, match="HUB_PUBLIC_URL: 'shop.ru' is not an http"):
        links.public_url(replace(settings, extra={**settings.extra, "public_url": "shop.ru"}))


def test_segments_can_ask_when_a_contact_was_last_messaged(hub_db: HubDB, plugin_manager) -> None:
    import plugins.mailing
    from hub.segments import fields, store
    from hub.segments.evaluate import Segments

    plugin_manager.register(plugins.mailing, name="mailing")
    recent, old, never = (person(hub_db, email=f"{n}@example.ru") for n in ("recent", "old", "never"))
    for cid, key in ((recent, "r"), (old, "o")):
        make(hub_db, cid, key)
    messaging.dispatch(hub_db.engine, hub_db.settings)
    with hub_db.engine.begin() as conn:
        conn.execute(update(Message).where(Message.contact_id == old)
                     .values(sent_at=utcnow() - dt.timedelta(days=100)))
        registry = fields.build(hub_db.settings, plugin_manager)
        store.add(conn, registry, {"name": "mailed_lately", "rule": {
            "field": "messages.last_sent_at", "op": "within_last", "value": "30d"}})
        store.add(conn, registry, {"name": "never_mailed", "rule": {
            "field": "messages.last_sent_at", "op": "is_null"}})
        segments = Segments(conn, hub_db.settings, pm=plugin_manager)
        assert segments.member_ids("mailed_lately") == [recent]
        assert segments.member_ids("never_mailed") == [never]


def test_review_and_resolve_from_the_command_line(hub_db: HubDB, channels) -> None:
    import json

    from click.testing import CliRunner

    from tests.support.cli import cli
    from plugins.mailing import commands

    cli.add_command(commands.messages_group)
    created = make(hub_db, person(hub_db), "k")
    with hub_db.engine.begin() as conn:  # a worker handed it to the channel and died long ago
        conn.execute(update(Message).values(status="sending", worker="host:7",
                                            claimed_at=utcnow() - messaging.SENDING_TIMEOUT - dt.timedelta(minutes=1)))
    runner = CliRunner(env={"HUB_LANGUAGE": "en"})
    review = runner.invoke(cli, ["messages", "review", "--json"])
    assert review.exit_code == 0, review.output
    [doubt] = json.loads(review.output)
    assert doubt["id"] == created.id and doubt["status"] == "unknown" and "host:7 stopped" in doubt["error"]
    text = runner.invoke(cli, ["messages", "review"]).output
    assert f"#{created.id} email to anna@example.ru (hello_email)" in text
    assert "hub messages resolve ID sent|failed|requeue" in text
    done = runner.invoke(cli, ["messages", "resolve", str(created.id), "sent"])
    assert done.exit_code == 0 and done.output.strip() == f"Message {created.id} is now sent."
    again = runner.invoke(cli, ["messages", "resolve", str(created.id), "requeue"])
    assert again.exit_code == 1
    assert again.output.strip() == (f"Error: message {created.id} is sent; only unknown or failed or deferred "
                                    "messages can be marked requeue")
    assert channels.email.sent == []


def test_a_message_is_shown_with_translated_labels_local_times_and_readable_phones(hub_db: HubDB, channels,
                                                                                   plugin_manager) -> None:
    import json
    import types

    from click.testing import CliRunner

    from tests.support.cli import cli
    import plugins.mailing
    from plugins.mailing import commands

    # the mailing plugin's words, without its channels (the scripted ones stand in for them)
    plugin_manager.register(types.SimpleNamespace(register_translations=plugins.mailing.register_translations))
    cli.add_command(commands.messages_group)
    created = make(hub_db, person(hub_db, first="Олег", email=None, phone="+79321299612"), "s", template=SMS_T,
                   channel="sms")
    runner = CliRunner()
    shown = runner.invoke(cli, ["messages", "show", str(created.id)], env={"HUB_LANGUAGE": "ru"})
    assert shown.exit_code == 0, shown.output
    assert f"Сообщение: {created.id}" in shown.output and "Кому: +7 932 129-96-12" in shown.output
    assert "Канал: sms" in shown.output and "Привет, Олег!" in shown.output
    assert re.search(r"Создано: \d\d\.\d\d\.\d{4} \d\d:\d\d \S+", shown.output), shown.output
    assert "created_at" not in shown.output and "+79321299612" not in shown.output
    english = runner.invoke(cli, ["messages", "show", str(created.id)], env={"HUB_LANGUAGE": "en"}).output
    assert f"Message: {created.id}" in english and "To: +7 932 129-96-12" in english and "Created: " in english
    raw = json.loads(runner.invoke(cli, ["messages", "show", str(created.id), "--json"]).output)
    assert raw["address"] == "+79321299612" and "T" in raw["created_at"]
    listed = runner.invoke(cli, ["messages", "list"], env={"COLUMNS": "200", "HUB_LANGUAGE": "ru"}).output
    assert "+7 932 129-96-12" in listed and "+79321299612" not in listed
