"""A dispatch reads consent and the frequency cap once per claimed batch, and still lets no letter past a
withdrawal or a suppression recorded before its hand-over, nor holds one whose consent came back."""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

import pytest
from sqlalchemy import event

from hub import consent, messaging
from hub.hookspecs import hookimpl
from hub.messaging import Outgoing
from tests.conftest import HubDB
from tests.test_messaging import Channels, make, person, row

pytestmark = pytest.mark.both_databases  # the hand-over's guard is SQL on both databases


@pytest.fixture
def channels(plugin_manager: Any) -> Channels:
    plugin = Channels()
    plugin_manager.register(plugin)
    return plugin


class Meanwhile:
    """A send rule that, asked about a given letter, runs something in a transaction of its own first.

    The ledger has read the whole batch by the time the second letter is asked
    about, so what runs then happens after the batch read, as a person's
    unsubscribe click would while a campaign is being sent.
    """

    def __init__(self, db: HubDB) -> None:
        self.db = db
        self.when: dict[int, Callable[[Any], object]] = {}

    @hookimpl
    def check_send(self, conn: Any, settings: Any, message: Outgoing, now: dt.datetime) -> None:
        action = self.when.pop(message.id, None)
        if action is not None:
            with self.db.engine.begin() as other:
                action(other)


def five(db: HubDB) -> tuple[list[int], list[int]]:
    contacts = [person(db, first=f"Имя{i}", email=f"p{i}@example.ru") for i in range(5)]
    return contacts, [make(db, cid, f"k{i}").id for i, cid in enumerate(contacts)]


def test_a_withdrawal_after_the_batch_read_holds_the_letter_even_when_asked_about_that_letter(
        hub_db: HubDB, channels: Channels, plugin_manager: Any) -> None:
    contacts, ids = five(hub_db)
    rule = Meanwhile(hub_db)
    plugin_manager.register(rule)
    # Recorded while the rules are being asked about the very letter: after the batch read, before the hand-over.
    rule.when[ids[2]] = lambda c: consent.record(c, contacts[2], "email", "marketing", "withdrawn",
                                                 source="unsubscribe")
    report = messaging.dispatch(hub_db.engine, hub_db.settings, batch_size=10)
    assert (report.claimed, report.sent, report.suppressed) == (5, 4, 1)
    assert [m.id for m in channels.email.sent] == [ids[0], ids[1], ids[3], ids[4]]
    saved = row(hub_db, ids[2])
    assert (saved["status"], saved["error"]) == ("suppressed",
                                                 "no granted consent for email/marketing (current: withdrawn)")


def test_an_address_suppressed_after_the_batch_read_gets_nothing(hub_db: HubDB, channels: Channels,
                                                                  plugin_manager: Any) -> None:
    _contacts, ids = five(hub_db)
    rule = Meanwhile(hub_db)
    plugin_manager.register(rule)
    secret = hub_db.settings.require_secret_key()
    rule.when[ids[1]] = lambda c: consent.suppress(c, "email", "p3@example.ru", reason="bounce", source="t",
                                                   secret=secret)
    report = messaging.dispatch(hub_db.engine, hub_db.settings, batch_size=10)
    assert (report.sent, report.suppressed) == (4, 1)
    assert ids[3] not in [m.id for m in channels.email.sent]
    assert row(hub_db, ids[3])["status"] == "suppressed"


def test_a_transactional_letter_needs_no_consent_but_is_held_by_a_suppression_after_the_read(
        hub_db: HubDB, channels: Channels, plugin_manager: Any) -> None:
    first, second = (person(hub_db, email=f"t{i}@example.ru", marketing=False) for i in range(2))
    a = make(hub_db, first, "receipt-a", purpose="transactional").id
    b = make(hub_db, second, "receipt-b", purpose="transactional").id
    rule = Meanwhile(hub_db)
    plugin_manager.register(rule)
    secret = hub_db.settings.require_secret_key()
    rule.when[b] = lambda c: consent.suppress(c, "email", "t1@example.ru", reason="bounce", source="t",
                                              secret=secret)
    report = messaging.dispatch(hub_db.engine, hub_db.settings, batch_size=10)
    assert (report.sent, report.suppressed) == (1, 1)
    assert [m.id for m in channels.email.sent] == [a]


def test_consent_granted_after_the_batch_read_is_not_missed(hub_db: HubDB, channels: Channels,
                                                            plugin_manager: Any) -> None:
    contacts, ids = five(hub_db)
    with hub_db.engine.begin() as conn:
        consent.record(conn, contacts[3], "email", "marketing", "withdrawn", source="unsubscribe")
    rule = Meanwhile(hub_db)
    plugin_manager.register(rule)
    rule.when[ids[1]] = lambda c: consent.record(c, contacts[3], "email", "marketing", "granted", source="form")
    report = messaging.dispatch(hub_db.engine, hub_db.settings, batch_size=10)
    assert (report.sent, report.suppressed) == (5, 0)
    assert row(hub_db, ids[3])["status"] == "sent"


def test_consent_and_the_cap_are_read_once_per_batch(hub_db: HubDB, channels: Channels) -> None:
    contacts, ids = five(hub_db)
    extra = [make(hub_db, contacts[0], "second-letter").id]  # one contact with two letters: the cap counts both
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        statements.append(sql)

    event.listen(hub_db.engine, "before_cursor_execute", seen)
    try:
        report = messaging.dispatch(hub_db.engine, hub_db.settings, batch_size=10)
    finally:
        event.remove(hub_db.engine, "before_cursor_execute", seen)
    assert report.sent == 6 and sorted(m.id for m in channels.email.sent) == sorted(ids + extra)
    reads = [s for s in statements if s.lstrip().startswith("SELECT")]
    assert len([s for s in reads if "FROM consent_events" in s]) == 1
    assert len([s for s in reads if "FROM suppressions" in s]) == 1
    # The cap's read: the contacts' earlier messages and when they were queued.
    assert len([s for s in reads if "messages.created_at" in s and "FROM messages" in s]) == 1
    # Each hand-over asks the ledger again inside its UPDATE, and statement listeners hear it.
    handed = [s for s in statements if s.lstrip().startswith("UPDATE messages") and "FROM consent_events" in s]
    assert len(handed) == 6
