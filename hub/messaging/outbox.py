"""The outbox table and its vocabulary: the statuses a message goes through, and a person's look at it.

Statuses: queued (claimed or not) → sending → sent | failed | suppressed | deferred | unknown.
Everything else in hub.messaging writes these rows; this module reads them
and lets a person settle a message in doubt (`hub messages resolve`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

from sqlalchemy import Connection, Engine, func, select, update

from hub import consent
from hub.db import utcnow
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.models import Message

messages_t = Message.__table__

QUEUED, SENDING, SENT, FAILED, SUPPRESSED, DEFERRED, UNKNOWN = (
    "queued", "sending", "sent", "failed", "suppressed", "deferred", "unknown")
STATUSES = (QUEUED, SENDING, SENT, FAILED, SUPPRESSED, DEFERRED, UNKNOWN)
# What people call each status (the admin's words for them too); --json and rules keep the technical value.
STATUS_TITLES = {QUEUED: N_("queued"), SENDING: N_("sending"), SENT: N_("sent"), FAILED: N_("error"),
                 SUPPRESSED: N_("suppressed"), DEFERRED: N_("deferred"), UNKNOWN: N_("unknown")}
TRANSACTIONAL = consent.TRANSACTIONAL

RESOLUTIONS = ("sent", "failed", "requeue")
# The origin of messages no workflow or campaign wrote (`hub messages send`, a test send, the public routes).
BY_HAND = "-"


class MessagingError(ValueError):
    """A message that cannot be created or changed; the text says what to fix."""


def status_title(status: str) -> str:
    """A message's status as people call it ("в очереди" for queued); one Hub does not know as it is."""
    return _(STATUS_TITLES[status]) if status in STATUS_TITLES else str(status)


def get(conn: Connection, message_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(messages_t).where(messages_t.c.id == message_id)).first()
    return dict(row._mapping) if row is not None else None


def _matching(*, status: str | None = None, channel: str | None = None,
              contact_id: int | Sequence[int] | None = None, origin: str | None = None,
              since: dt.datetime | None = None, until: dt.datetime | None = None, before_id: int | None = None,
              after_id: int | None = None) -> list[Any]:
    """The WHERE clauses of a look at the outbox; the same for the rows and for their count."""
    t = messages_t.c
    where: list[Any] = []
    if status:
        if status not in STATUSES:
            raise MessagingError(_("status %(name)r is not one of: %(allowed)s", name=status,
                                   allowed=", ".join(STATUSES)))
        where.append(t.status == status)
    if channel:
        where.append(t.channel == channel)
    if isinstance(contact_id, int):
        where.append(t.contact_id == contact_id)
    elif contact_id is not None:
        where.append(t.contact_id.in_(list(contact_id)))
    if origin == BY_HAND:
        where.append(t.origin.is_(None))
    elif origin:
        where.append(t.origin == origin)
    if since is not None:
        where.append(t.created_at >= since)
    if until is not None:
        where.append(t.created_at < until)
    if before_id is not None:
        where.append(t.id < before_id)
    if after_id is not None:
        where.append(t.id > after_id)
    return where


def find(conn: Connection, *, status: str | None = None, channel: str | None = None,
         contact_id: int | Sequence[int] | None = None, origin: str | None = None,
         since: dt.datetime | None = None, until: dt.datetime | None = None, before_id: int | None = None,
         after_id: int | None = None, newest_first: bool = True, limit: int | None = 50) -> list[dict[str, Any]]:
    """Messages, newest first (or oldest first), without their bodies.

    `origin` is the workflow (or campaign) that wrote them, BY_HAND for those
    nobody's workflow did; `since`/`until` bound when they were created (until
    excluded); `before_id`/`after_id` page by id, so a page stays the same
    however many messages arrive meanwhile.
    """
    columns = [c for c in messages_t.c if c.name not in ("body_text", "body_html")]
    q = select(*columns).where(*_matching(status=status, channel=channel, contact_id=contact_id, origin=origin,
                                          since=since, until=until, before_id=before_id, after_id=after_id))
    q = q.order_by(messages_t.c.id.desc() if newest_first else messages_t.c.id.asc())
    if limit is not None:
        q = q.limit(limit)
    return [dict(r._mapping) for r in conn.execute(q)]


def count_found(conn: Connection, *, status: str | None = None, channel: str | None = None,
                contact_id: int | Sequence[int] | None = None, origin: str | None = None,
                since: dt.datetime | None = None, until: dt.datetime | None = None, before_id: int | None = None,
                after_id: int | None = None) -> int:
    """How many messages `find` would list with these filters and no limit: the true total, for paging."""
    q = select(func.count()).select_from(messages_t).where(
        *_matching(status=status, channel=channel, contact_id=contact_id, origin=origin, since=since, until=until,
                   before_id=before_id, after_id=after_id))
    return int(conn.execute(q).scalar_one())


def origins(conn: Connection) -> list[str]:
    """The workflows and campaigns that wrote messages, by name: what the message log can be filtered by."""
    q = select(messages_t.c.origin).where(messages_t.c.origin.is_not(None)).distinct().order_by(messages_t.c.origin)
    return [str(o) for o in conn.execute(q).scalars()]


def counts(conn: Connection) -> dict[str, int]:
    """How many messages there are in each status."""
    rows = conn.execute(select(messages_t.c.status, func.count()).group_by(messages_t.c.status))
    return {status: n for status, n in rows}


def resolve(engine: Engine, message_id: int, outcome: str, *, by: str = "cli") -> dict[str, Any]:
    """A person's decision about a message in doubt (or a failed one to try again).

    "sent" and "failed" settle an `unknown` message after checking the
    server's log; "requeue" sends an `unknown`, `failed` or `deferred` one
    again, on purpose.
    """
    if outcome not in RESOLUTIONS:
        raise MessagingError(_("%(name)r is not one of: %(allowed)s", name=outcome, allowed=", ".join(RESOLUTIONS)))
    allowed = (UNKNOWN,) if outcome in ("sent", "failed") else (UNKNOWN, FAILED, DEFERRED)
    now = utcnow()
    values: dict[str, Any] = {"updated_at": now}
    if outcome == "sent":
        values |= {"status": SENT, "sent_at": now, "error": f"marked sent by {by}"}
    elif outcome == "failed":
        values |= {"status": FAILED, "error": f"marked failed by {by}"}
    else:
        values |= {"status": QUEUED, "due_at": now, "claimed_at": None, "error": f"requeued by {by}"}
    with engine.begin() as conn:  # the UPDATE first: on SQLite a write transaction must start by writing
        changed = conn.execute(update(messages_t).where(messages_t.c.id == message_id,
                                                        messages_t.c.status.in_(allowed)).values(**values)).rowcount
        found = get(conn, message_id)
    if found is None:
        raise MessagingError(_("no message with id %(id)s", id=message_id))
    if not changed:
        raise MessagingError(_("message %(id)s is %(status)s; only %(allowed)s messages can be marked %(outcome)s",
                               id=message_id, status=found["status"], allowed=_(" or ").join(allowed), outcome=outcome))
    return found
