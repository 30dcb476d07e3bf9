"""The preference centre and unsubscribing: a person changes their own answers.

Every change is an event appended to the consent ledger with its evidence
(source, IP, user agent, form, text version, time), and only changes are
appended: saving the page unchanged, or a second one-click unsubscribe, adds
nothing. The person is known by a signed link (hub.links), not a login; the
id a link names is read as the person is now (hub.identity.current_contact_id),
so a link from before a merge acts on the survivor and one to an erased
person changes nothing.

A public page grants consent only on the channel it proved. The preference
link is sent by email, so following it proves the email address and nothing
else: through it a person may withdraw any topic on any channel, but grant
only on email channels. SMS and call consent is given where the phone was
proven (at the shop, by SMS); the page shows those topics as not available
to switch on here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import Connection, Engine

from hub.api import (Settings, consent_channels, consent_purposes, contact_addresses, current_consent,
                     current_contact_id, kind_for_channel, record_consent)
from plugins.gdpr import config
from plugins.gdpr.topics import PROCESSING, Topic

UNSUBSCRIBE = "unsubscribe_link"
PREFERENCES = "preferences"
PROVEN_KIND = "email"  # what following a preference link proves: the reader holds the mailbox it went to


@dataclass
class Preferences:
    """What the page shows: the channels the person can be reached on and every topic's answer."""

    contact_id: int
    channels: list[str]
    purposes: list[str]
    status: dict[Topic, str | None]
    processing: str | None  # the answer about processing personal data, if any was given

    @property
    def topics(self) -> list[Topic]:
        return [Topic(c, p) for p in self.purposes for c in self.channels]

    def granted(self, topic: Topic) -> bool:
        return self.status.get(topic) == "granted"

    def can_grant(self, topic: Topic) -> bool:
        """Whether this page may switch the topic on: only on the channel the link was delivered to."""
        return grantable(topic)

    def locked(self, channel: str, purpose: str) -> bool:
        """A topic the page shows but cannot switch on: off now, on a channel the link did not prove."""
        topic = Topic(channel, purpose)
        return not self.granted(topic) and not self.can_grant(topic)

    @property
    def any_locked(self) -> bool:
        return any(self.locked(t.channel, t.purpose) for t in self.topics)


def grantable(topic: Topic) -> bool:
    """Whether a preference link may grant the topic: it proves the email address it was sent to, no more."""
    return kind_for_channel(topic.channel) == PROVEN_KIND


def evidence(*, ip: str | None, user_agent: str | None, form_id: str | None = None,
             text_version: str | None = None, **more: Any) -> dict[str, Any]:
    """The evidence every consent event carries, with the keys always present."""
    return {"ip": ip, "user_agent": (user_agent or "")[:500] or None, "form_id": form_id,
            "text_version": text_version, **more}


def load(conn: Connection, settings: Settings, contact_id: int) -> Preferences | None:
    """The person's page (of the survivor, for a contact merged away), or None when nothing is held about them."""
    found = current_contact_id(conn, contact_id)
    if found is None:
        return None
    contact_id = found
    kinds = {kind for kind in ("email", "phone") if contact_addresses(conn, contact_id, kind)}
    channels = [c for c in consent_channels(settings) if kind_for_channel(c) in kinds]
    purposes = [p for p in consent_purposes(settings) if p != PROCESSING]
    current = current_consent(conn, contact_id)
    status = {Topic(c, p): current.get((c, p)) for p in purposes for c in channels}
    answers = [s for (c, p), s in current.items() if p == PROCESSING]
    processing = "granted" if "granted" in answers else (answers[0] if answers else None)
    return Preferences(contact_id, channels, purposes, status, processing)


def save(engine: Engine, settings: Settings, contact_id: int, chosen: Iterable[Topic], *,
         ip: str | None, user_agent: str | None) -> list[tuple[Topic, str]]:
    """Make the page's answers those ticked in `chosen`; returns the changes recorded.

    A ticked topic not yet granted is granted, if the link may grant it
    (`grantable`: email only; a ticked SMS or call topic not yet granted is
    ignored); an unticked one that was granted or pending is withdrawn. Topics
    the person never answered and left unticked get no event.
    """
    chosen = set(chosen)
    with engine.begin() as conn:
        page = load(conn, settings, contact_id)
        if page is None:
            return []
        contact_id = page.contact_id
        proof = evidence(ip=ip, user_agent=user_agent, form_id=PREFERENCES, text_version=config.text_version(settings))
        changes = []
        for topic in page.topics:
            was = page.status.get(topic)
            if topic in chosen:
                now = "granted" if was == "granted" or grantable(topic) else was
            else:
                now = "withdrawn" if was in ("granted", "pending") else was
            if now != was and now is not None:
                record_consent(conn, contact_id, topic.channel, topic.purpose, now, source=PREFERENCES,
                               evidence=proof)
                changes.append((topic, now))
    return changes


def unsubscribe_all(engine: Engine, settings: Settings, contact_id: int, *, ip: str | None,
                    user_agent: str | None) -> list[tuple[Topic, str]]:
    """Withdraw every topic (on every channel) that is granted or pending; processing stays as it is."""
    with engine.begin() as conn:
        found = current_contact_id(conn, contact_id)
        if found is None:
            return []
        contact_id = found
        proof = evidence(ip=ip, user_agent=user_agent, form_id=PREFERENCES, method="everything")
        changes = []
        for (channel, purpose), status in sorted(current_consent(conn, contact_id).items()):
            if purpose != PROCESSING and status in ("granted", "pending"):
                record_consent(conn, contact_id, channel, purpose, "withdrawn", source=UNSUBSCRIBE, evidence=proof)
                changes.append((Topic(channel, purpose), "withdrawn"))
    return changes


def unsubscribe(engine: Engine, contact_id: int, channel: str, purpose: str, *, ip: str | None,
                user_agent: str | None, method: str) -> bool:
    """Withdraw one topic (an unsubscribe link's); False when there was nothing to withdraw.

    Idempotent, as RFC 8058 asks: a mail provider may post the same request
    twice, and a topic already withdrawn gets no second event.
    """
    with engine.begin() as conn:
        found = current_contact_id(conn, contact_id)
        if found is None:
            return False
        contact_id = found
        if current_consent(conn, contact_id).get((channel, purpose)) == "withdrawn":
            return False
        record_consent(conn, contact_id, channel, purpose, "withdrawn", source=UNSUBSCRIBE,
                       evidence=evidence(ip=ip, user_agent=user_agent, method=method))
    return True


def status_of(engine: Engine, contact_id: int, channel: str, purpose: str) -> str | None:
    with engine.connect() as conn:
        found = current_contact_id(conn, contact_id)
        return None if found is None else current_consent(conn, found).get((channel, purpose))
