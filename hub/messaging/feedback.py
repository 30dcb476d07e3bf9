"""What comes back about a sent message, and what Hub does about it.

A message leaves through a channel; what is heard of it later arrives from
elsewhere: a bounce or a spam complaint in the bounce mailbox, a click or an
open through Hub's own web server, a delivery report from an SMS provider.
Whoever hears it calls `record` with the message's id; this module writes
the event (append-only, once per reporter's `uid`) and acts on it, so every
source of feedback has the same consequences:

- ``bounce`` (the address is dead): the address is suppressed for good and
  the consent ledger shows why, exactly as when the SMTP server refused it
  while sending;
- ``soft_bounce`` (mailbox full, server busy): counted per address; after
  HUB_SOFT_BOUNCE_LIMIT of them (default 3) the address is treated as dead;
- ``complaint`` (the person pressed «Это спам»): marketing consent on that
  channel is withdrawn with the complaint as evidence;
- ``click``, ``open``, ``delivered``, ``undelivered``: recorded, for reports,
  segment fields and lead scores.

Webhooks hear bounces, complaints and clicks. Events name no personal data
beyond the address a bounce was for, and erasure blanks that (hub.outbox_hooks).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, select

from hub import consent, webhooks
from hub.config import Settings, SettingsError
from hub.db import insert_for, utcnow
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
MAX_URL = 4000  # characters of a clicked link kept
MARKETING = "marketing"


@dataclass(frozen=True, slots=True)
class Recorded:
    """What `record` did: the event's id (None when the same report was recorded before) and its effect.

    effect: "" (nothing beyond the event), "suppressed" (the address is now
    suppressed), "withdrawn" (marketing consent withdrawn), "counted" (a soft
    bounce below the limit).
    """

    event_id: int | None
    message_id: int
    contact_id: int | None
    effect: str = ""

    @property
    def duplicate(self) -> bool:
        return self.event_id is None


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
        return Recorded(None, message_id, row.contact_id)
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
    if contact_id is not None:
        consent.record(conn, contact_id, channel, purpose if purpose != TRANSACTIONAL else MARKETING, "withdrawn",
                       source=reason, evidence={"address": address, "reply": reply, "message_id": message_id})


def soft_bounces(conn: Connection, channel: str, address: str) -> int:
    """Soft bounces recorded for messages to this address on this channel."""
    m, e = messages_t.c, events_t.c
    return int(conn.execute(select(func.count()).select_from(events_t.join(messages_t, m.id == e.message_id))
                            .where(and_(e.kind == SOFT_BOUNCE, m.channel == channel, m.address == address)))
               .scalar_one())


def _soft_bounce(conn: Connection, settings: Settings, row: Any, detail: dict[str, Any]) -> str:
    if not row.address:
        return ""
    if soft_bounces(conn, row.channel, row.address) < soft_bounce_limit(settings):
        return "counted"
    _suppress(conn, settings, row.id, row.contact_id, row.channel, row.address, row.purpose, reason="bounce",
              reply=str(detail.get("reason") or "soft bounces"))
    return "suppressed"


def _complaint(conn: Connection, row: Any, at: dt.datetime, detail: dict[str, Any]) -> str:
    webhooks.publish(conn, "message.complained", {"message_id": row.id, "contact_id": row.contact_id,
                                                  "channel": row.channel},
                     contact_id=row.contact_id)
    if row.contact_id is None:
        return ""
    evidence = {"message_id": row.id, "reported_at": at.isoformat()}
    evidence.update({k: v for k, v in detail.items() if k in ("feedback_type", "reporter", "user_agent")})
    consent.record(conn, row.contact_id, row.channel, MARKETING, "withdrawn", source="complaint", evidence=evidence)
    return "withdrawn"


def forget_contact(conn: Connection, contact_id: int) -> None:
    """Erasure: the events of a person's messages keep their kind and time, nothing they said or were sent to."""
    mine = select(messages_t.c.id).where(messages_t.c.contact_id == contact_id)
    conn.execute(events_t.update().where(events_t.c.message_id.in_(mine.scalar_subquery()))
                 .values(url=None, detail={}))
