"""What comes back about a sent message, and what Hub does about it.

A message leaves through a channel; what is heard of it later arrives from
elsewhere: a bounce or a spam complaint in the bounce mailbox, a click or an
open through Hub's own web server, a delivery report from an SMS provider.
Whoever hears it calls `record` with the message's id; this module writes
the event (append-only, once per reporter's `uid`) and acts on it, so every
source of feedback has the same consequences:

- ``bounce`` (the address is dead): the address is suppressed for good,
  exactly as when the SMTP server refused it while sending; when it was the
  person's last working address on that channel, the consent ledger shows
  why nothing reaches them any more (a withdrawal from source "bounce"),
  while another address of theirs works, their consent stands;
- ``soft_bounce`` (mailbox full, server busy): counted per address, one per
  letter (a server's repeated "still trying" notices about one letter count
  once) within SOFT_BOUNCE_WINDOW; at HUB_SOFT_BOUNCE_LIMIT letters (default 3)
  the address is treated as dead;
- ``complaint`` (the person pressed «Это спам»): consent on that channel is
  withdrawn for marketing and for the letter's own topic, with the complaint
  as evidence;
- ``click``, ``open``, ``delivered``, ``undelivered``: recorded, for reports,
  segment fields and lead scores.

Webhooks hear bounces, complaints and clicks. Events name no personal data
beyond the address a bounce was for, and erasure blanks that (hub.outbox_hooks).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any, Sequence

from sqlalchemy import Connection, and_, func, select

from hub import consent, webhooks
from hub.config import Settings, SettingsError
from hub.db import chunks, insert_for, utcnow
from hub.i18n import gettext as _
from hub.messaging.channels import Outgoing
from hub.messaging.outbox import TRANSACTIONAL, messages_t
from hub.models import MessageEvent

events_t = MessageEvent.__table__

CLICK, OPEN = "click", "open"
BOUNCE, SOFT_BOUNCE, COMPLAINT = "bounce", "soft_bounce", "complaint"
DELIVERED, UNDELIVERED = "delivered", "undelivered"
KINDS = (CLICK, OPEN, BOUNCE, SOFT_BOUNCE, COMPLAINT, DELIVERED, UNDELIVERED)

DEFAULT_SOFT_BOUNCE_LIMIT = 3
SOFT_BOUNCE_WINDOW = dt.timedelta(days=30)  # older soft bounces say nothing about the mailbox today
MAX_MESSAGE_ID = 2**31 - 1  # messages.id is a 32-bit integer on PostgreSQL: a larger id names no message
MAX_URL = 4000  # characters of a clicked link kept
MARKETING = "marketing"


@dataclass(frozen=True, slots=True)
class Recorded:
    """What `record` did: its effect, and whether the same report was recorded before (then nothing was done).

    effect: "" (nothing beyond the event), "suppressed" (the address is now
    suppressed), "withdrawn" (marketing consent withdrawn), "counted" (a soft
    bounce below the limit). `event_id` is set by `record`, not by `record_many`.
    """

    event_id: int | None
    message_id: int
    contact_id: int | None
    effect: str = ""
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Heard:
    """One thing heard about a message, for `record_many` (the arguments of `record`)."""

    message_id: int
    kind: str
    at: dt.datetime | None = None
    url: str | None = None
    detail: dict[str, Any] | None = None
    uid: str | None = None


def soft_bounce_limit(settings: Settings) -> int:
    """Soft bounces an address may collect before it is treated as dead (HUB_SOFT_BOUNCE_LIMIT)."""
    raw = settings.extra.get("soft_bounce_limit")
    if raw in (None, ""):
        return DEFAULT_SOFT_BOUNCE_LIMIT
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise SettingsError(_("HUB_SOFT_BOUNCE_LIMIT: %(value)r is not a whole number of 1 or more", value=raw))
    return value


def record(conn: Connection, settings: Settings, message_id: int, kind: str, *, at: dt.datetime | None = None,
           url: str | None = None, detail: dict[str, Any] | None = None, uid: str | None = None) -> Recorded | None:
    """Write one event about a message and act on it, in the caller's transaction.

    Returns None when there is no such message (a forged or stale report:
    the caller counts it as unmatched). A `uid` seen before records nothing
    and does nothing again.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown message event kind: {kind!r}")
    if not 0 < message_id <= MAX_MESSAGE_ID:
        return None
    row = conn.execute(select(messages_t.c.id, messages_t.c.contact_id, messages_t.c.channel,
                              messages_t.c.address, messages_t.c.purpose)
                       .where(messages_t.c.id == message_id)).first()
    if row is None:
        return None
    at = at or utcnow()
    values = {"message_id": message_id, "kind": kind, "at": at, "url": (url or None) and url[:MAX_URL],
              "detail": detail or {}, "uid": uid}
    ins = insert_for(conn, events_t).values(**values)
    if uid is not None:
        ins = ins.on_conflict_do_nothing(index_elements=["uid"])
    event_id = conn.execute(ins.returning(events_t.c.id)).scalar()
    if event_id is None:
        return Recorded(None, message_id, row.contact_id, duplicate=True)
    effect = ""
    if kind == BOUNCE:
        effect = _dead_address(conn, settings, row, reply=str((detail or {}).get("reason") or "bounce"))
    elif kind == SOFT_BOUNCE:
        effect = _soft_bounce(conn, settings, row, detail or {})
    elif kind == COMPLAINT:
        effect = _complaint(conn, row, at, detail or {})
    elif kind == CLICK:
        webhooks.publish(conn, "message.clicked", {"message_id": message_id, "contact_id": row.contact_id,
                                                   "channel": row.channel, "url": values["url"]},
                         contact_id=row.contact_id)
    return Recorded(event_id, message_id, row.contact_id, effect)


def record_many(conn: Connection, settings: Settings, heard: Sequence[Heard]) -> list[Recorded | None]:
    """`record` for a batch (a bounce mailbox holds thousands of reports), in a few statements per batch.

    The same effects as recording one by one, each done once: an address
    bounced by several reports is suppressed once, a person who complained
    twice withdraws once. Reports with a uid already recorded, or repeated
    within the batch, are duplicates; an unknown message id gives None.
    """
    for item in heard:
        if item.kind not in KINDS:
            raise ValueError(f"unknown message event kind: {item.kind!r}")
    m = messages_t.c
    rows: dict[int, Any] = {}
    for part in chunks(sorted({h.message_id for h in heard if 0 < h.message_id <= MAX_MESSAGE_ID}), 500):
        rows.update((r.id, r) for r in conn.execute(
            select(m.id, m.contact_id, m.channel, m.address, m.purpose).where(m.id.in_(part))))
    seen: set[str] = set()
    for part in chunks(sorted({h.uid for h in heard if h.uid is not None}), 500):
        seen.update(conn.execute(select(events_t.c.uid).where(events_t.c.uid.in_(part))).scalars())
    now = utcnow()
    results: list[Recorded | None] = []
    fresh: list[tuple[Heard, Any]] = []
    for item in heard:
        row = rows.get(item.message_id)
        if row is None:
            results.append(None)
        elif item.uid is not None and item.uid in seen:
            results.append(Recorded(None, item.message_id, row.contact_id, duplicate=True))
        else:
            if item.uid is not None:
                seen.add(item.uid)
            fresh.append((item, row))
            results.append(Recorded(None, item.message_id, row.contact_id))
    if not fresh:
        return results
    conn.execute(insert_for(conn, events_t).on_conflict_do_nothing(index_elements=["uid"]),
                 [{"message_id": item.message_id, "kind": item.kind, "at": item.at or now,
                   "url": (item.url or None) and item.url[:MAX_URL], "detail": item.detail or {}, "uid": item.uid}
                  for item, _row in fresh])
    effects = _batch_effects(conn, settings, fresh)
    return [r if r is None or r.duplicate or r.message_id not in effects else
            Recorded(None, r.message_id, r.contact_id, effects[r.message_id]) for r in results]


def _batch_effects(conn: Connection, settings: Settings, fresh: list[tuple[Heard, Any]]) -> dict[int, str]:
    """Act once per address (bounces) and once per person and channel (complaints); effect per message id.

    Suppressions and consent events are written in one statement each; the
    webhooks and the consent_changed hook still hear every change.
    """
    effects: dict[int, str] = {}
    dead: dict[tuple[str, str], tuple[Heard, Any]] = {}
    soft: dict[tuple[str, str], list[tuple[Heard, Any]]] = {}
    complained: dict[tuple[int | None, str], tuple[Heard, Any]] = {}
    for item, row in fresh:
        if item.kind == BOUNCE and row.address:
            dead.setdefault((row.channel, row.address), (item, row))
            effects[row.id] = "suppressed"
        elif item.kind == SOFT_BOUNCE and row.address:
            soft.setdefault((row.channel, row.address), []).append((item, row))
        elif item.kind == COMPLAINT:
            webhooks.publish(conn, "message.complained", {"message_id": row.id, "contact_id": row.contact_id,
                                                          "channel": row.channel}, contact_id=row.contact_id)
            complained.setdefault((row.contact_id, row.channel), (item, row))
        elif item.kind == CLICK:
            webhooks.publish(conn, "message.clicked", {"message_id": row.id, "contact_id": row.contact_id,
                                                       "channel": row.channel, "url": item.url and item.url[:MAX_URL]},
                             contact_id=row.contact_id)
    if soft:
        limit = soft_bounce_limit(settings)
        counts = _soft_bounce_counts(conn, list(soft))
        already = {(channel, address) for channel in {c for c, _a in soft}
                   for address in consent.suppressed_among(conn, settings, consent.kind_for_channel(channel),
                                                           [a for c, a in soft if c == channel])}
        for where, items in soft.items():
            over = counts.get(where, 0) >= limit
            for _item, row in items:
                effects[row.id] = "suppressed" if over else "counted"
            if over and where not in already:
                item, row = items[-1]
                dead.setdefault(where, (replace(item, detail={"reason": str((item.detail or {}).get("reason")
                                                                           or "soft bounces")}), row))
    answers: list[consent.Answer] = []
    for channel in {channel for channel, _address in dead}:
        kind = consent.kind_for_channel(channel)
        consent.suppress_many(conn, [(kind, address) for on, address in dead if on == channel],
                              reason="bounce", source=channel, secret=settings.require_secret_key())
    for (channel, address), (item, row) in dead.items():
        webhooks.publish(conn, "message.bounced", {"message_id": row.id, "contact_id": row.contact_id,
                                                   "channel": channel, "reason": "bounce"},
                         contact_id=row.contact_id)
        if row.contact_id is not None and not _another_address(conn, settings, row.contact_id, channel):
            purpose = row.purpose if row.purpose != TRANSACTIONAL else MARKETING
            answers.append(consent.Answer(row.contact_id, channel, purpose, "withdrawn", "bounce", {
                "address": address, "reply": str((item.detail or {}).get("reason") or "bounce"),
                "message_id": row.id}))
    for (contact_id, channel), (item, row) in complained.items():
        effects[row.id] = "withdrawn" if contact_id is not None else ""
        if contact_id is not None:
            evidence = _complaint_evidence(row, item.at or utcnow(), item.detail or {})
            answers.extend(consent.Answer(contact_id, channel, purpose, "withdrawn", "complaint", evidence)
                           for purpose in _complained_of(row))
    consent.record_many(conn, answers)
    return effects


def _soft_bounce_counts(conn: Connection, where: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Soft bounces per (channel, address), for many addresses in a few queries."""
    m, e = messages_t.c, events_t.c
    since = utcnow() - SOFT_BOUNCE_WINDOW
    found: dict[tuple[str, str], int] = {}
    for part in chunks(sorted({address for _channel, address in where}), 500):
        rows = conn.execute(select(m.channel, m.address, func.count(e.message_id.distinct()))
                            .select_from(events_t.join(messages_t, m.id == e.message_id))
                            .where(and_(e.kind == SOFT_BOUNCE, e.at >= since, m.address.in_(part)))
                            .group_by(m.channel, m.address))
        found.update(((r[0], r[1]), int(r[2])) for r in rows)
    return found


def record_bounce(conn: Connection, settings: Settings, message: Outgoing, reply: str) -> None:
    """A dead address reported while sending: suppress it for good and let the consent ledger show why."""
    _suppress(conn, settings, message.id, message.contact_id, message.channel, message.address, message.purpose,
              reason="bounce", reply=reply)


def _dead_address(conn: Connection, settings: Settings, row: Any, *, reply: str) -> str:
    if not row.address:
        return ""
    _suppress(conn, settings, row.id, row.contact_id, row.channel, row.address, row.purpose, reason="bounce",
              reply=reply)
    return "suppressed"


def _suppress(conn: Connection, settings: Settings, message_id: int, contact_id: int | None, channel: str,
              address: str | None, purpose: str, *, reason: str, reply: str) -> None:
    if not address:
        return
    webhooks.publish(conn, "message.bounced", {"message_id": message_id, "contact_id": contact_id,
                                               "channel": channel, "reason": reason},
                     contact_id=contact_id)
    consent.suppress(conn, consent.kind_for_channel(channel), address, reason=reason, source=channel,
                     secret=settings.require_secret_key())
    if contact_id is not None and not _another_address(conn, settings, contact_id, channel):
        consent.record(conn, contact_id, channel, purpose if purpose != TRANSACTIONAL else MARKETING, "withdrawn",
                       source=reason, evidence={"address": address, "reply": reply, "message_id": message_id})


def _another_address(conn: Connection, settings: Settings, contact_id: int, channel: str) -> bool:
    """Whether the person still has an address on this channel that is not suppressed (called after the dead
    one was): a bounce is about an address, so their consent stands while another of theirs works, and
    only the last one's bounce writes the withdrawal that tells why nothing reaches them any more."""
    kind = consent.kind_for_channel(channel)
    held = consent.addresses(conn, contact_id, kind)
    return bool(held) and len(consent.suppressed_among(conn, settings, kind, held)) < len(set(held))


def soft_bounces(conn: Connection, channel: str, address: str) -> int:
    """Letters to this address on this channel that soft-bounced within SOFT_BOUNCE_WINDOW."""
    return _soft_bounce_counts(conn, [(channel, address)]).get((channel, address), 0)


def _soft_bounce(conn: Connection, settings: Settings, row: Any, detail: dict[str, Any]) -> str:
    if not row.address:
        return ""
    if soft_bounces(conn, row.channel, row.address) < soft_bounce_limit(settings):
        return "counted"
    if consent.is_suppressed(conn, consent.kind_for_channel(row.channel), row.address,
                             settings.require_secret_key()):
        return "suppressed"  # already: no second withdrawal, no second webhook
    _suppress(conn, settings, row.id, row.contact_id, row.channel, row.address, row.purpose, reason="bounce",
              reply=str(detail.get("reason") or "soft bounces"))
    return "suppressed"


def _complaint(conn: Connection, row: Any, at: dt.datetime, detail: dict[str, Any]) -> str:
    webhooks.publish(conn, "message.complained", {"message_id": row.id, "contact_id": row.contact_id,
                                                  "channel": row.channel},
                     contact_id=row.contact_id)
    if row.contact_id is None:
        return ""
    for purpose in _complained_of(row):
        consent.record(conn, row.contact_id, row.channel, purpose, "withdrawn", source="complaint",
                       evidence=_complaint_evidence(row, at, detail))
    return "withdrawn"


def _complained_of(row: Any) -> list[str]:
    """Marketing, and the letter's own topic (news, surveys) when it had one: whoever calls it spam wants neither."""
    return [MARKETING] + ([row.purpose] if row.purpose not in (MARKETING, TRANSACTIONAL) else [])


def _complaint_evidence(row: Any, at: dt.datetime, detail: dict[str, Any]) -> dict[str, Any]:
    """The message and the report, not the address: a stranger reading the ledger learns nothing more."""
    evidence: dict[str, Any] = {"message_id": row.id, "reported_at": at.isoformat()}
    evidence.update({k: v for k, v in detail.items() if k in ("feedback_type", "reporter", "user_agent")})
    return evidence


def forget_contact(conn: Connection, contact_id: int) -> None:
    """Erasure: the events of a person's messages keep their kind and time, nothing they said or were sent to."""
    mine = select(messages_t.c.id).where(messages_t.c.contact_id == contact_id)
    conn.execute(events_t.update().where(events_t.c.message_id.in_(mine.scalar_subquery()))
                 .values(url=None, detail={}))
