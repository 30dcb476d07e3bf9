"""The outbox table and its vocabulary: the statuses a message goes through, and a person's look at it.

Statuses: queued (claimed or not) → sending → sent | failed | suppressed | deferred | unknown.
Everything else in hub.messaging writes these rows; this module reads them
and lets a person settle a message in doubt (`hub messages resolve`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Sequence

from sqlalchemy import Connection, Engine, func, select, update

from hub import consent
from hub.db import utcnow
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.models import Message, MessageEvent

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
              after_id: int | None = None, heard: str | None = None) -> list[Any]:
    """The WHERE clauses of a look at the outbox; the same for the rows and for their count.

    `heard` keeps messages with at least one event of that kind (a bounce, a click: hub.messaging.feedback).
    """
    t = messages_t.c
    where: list[Any] = []
    if heard:
        e = MessageEvent.__table__.c
        where.append(select(e.id).where(e.message_id == t.id, e.kind == heard).exists())
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
         after_id: int | None = None, newest_first: bool = True, limit: int | None = 50,
         heard: str | None = None) -> list[dict[str, Any]]:
    """Messages, newest first (or oldest first), without their bodies.

    `origin` is the workflow (or campaign) that wrote them, BY_HAND for those
    nobody's workflow did; `since`/`until` bound when they were created (until
    excluded); `before_id`/`after_id` page by id, so a page stays the same
    however many messages arrive meanwhile.
    """
    columns = [c for c in messages_t.c if c.name not in ("body_text", "body_html")]
    q = select(*columns).where(*_matching(status=status, channel=channel, contact_id=contact_id, origin=origin,
                                          since=since, until=until, before_id=before_id, after_id=after_id,
                                          heard=heard))
    q = q.order_by(messages_t.c.id.desc() if newest_first else messages_t.c.id.asc())
    if limit is not None:
        q = q.limit(limit)
    return [dict(r._mapping) for r in conn.execute(q)]


def count_found(conn: Connection, *, status: str | None = None, channel: str | None = None,
                contact_id: int | Sequence[int] | None = None, origin: str | None = None,
                since: dt.datetime | None = None, until: dt.datetime | None = None, before_id: int | None = None,
                after_id: int | None = None, heard: str | None = None) -> int:
    """How many messages `find` would list with these filters and no limit: the true total, for paging."""
    q = select(func.count()).select_from(messages_t).where(
        *_matching(status=status, channel=channel, contact_id=contact_id, origin=origin, since=since, until=until,
                   before_id=before_id, after_id=after_id, heard=heard))
    return int(conn.execute(q).scalar_one())


def _distinct(conn: Connection, column: str, **equal: Any) -> list[str]:
    """The distinct values of an indexed column, skipping through the index instead of reading every row.

    The smallest value, then the smallest after it, and so on: a few index
    lookups per value, however many messages hold each. `equal` fixes the
    index's leading columns (status for the channel in (status, channel, due_at)).
    """
    later = messages_t.alias("later")
    fixed = [messages_t.c[k] == v for k, v in equal.items()]
    walk = (select(func.min(messages_t.c[column]).label("value"))
            .where(messages_t.c[column].is_not(None), *fixed).cte("walk", recursive=True))
    following = (select(func.min(later.c[column]))
                 .where(later.c[column] > walk.c.value, *[later.c[k] == v for k, v in equal.items()])
                 .scalar_subquery())
    walk = walk.union_all(select(following).where(walk.c.value.is_not(None)))
    return [str(v) for v in conn.execute(select(walk.c.value).where(walk.c.value.is_not(None))).scalars()]


def origins(conn: Connection) -> list[str]:
    """The workflows and campaigns that wrote messages, by name: what the message log can be filtered by.

    Asked on every view of the log, so read through the index on `origin`
    (a few lookups per name), never by a pass over the whole outbox.
    """
    return sorted(_distinct(conn, "origin"))


def channels(conn: Connection) -> list[str]:
    """The channels messages went by, through the claim index (status, channel, …), one status at a time."""
    return sorted({c for status in STATUSES for c in _distinct(conn, "channel", status=status)})


def counts(conn: Connection) -> dict[str, int]:
    """How many messages there are in each status."""
    rows = conn.execute(select(messages_t.c.status, func.count()).group_by(messages_t.c.status))
    return {status: n for status, n in rows}


def resolve(engine: Engine, message_id: int, outcome: str, *, by: str = "cli",
            audit: Callable[[Connection, dict[str, Any], str], None] | None = None) -> dict[str, Any]:
    """A person's decision about a message in doubt (or a failed one to try again).

    "sent" and "failed" settle an `unknown` message after checking the
    server's log; "requeue" sends an `unknown`, `failed` or `deferred` one
    again, on purpose. `audit(conn, message, previous_status)` is called in
    the same transaction as the change, so the decision and its record of who
    made it are kept together or not at all.
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
    previous = None
    with engine.begin() as conn:  # the UPDATE first: on SQLite a write transaction must start by writing
        for status in allowed:  # one status at a time, so the record says which one the message had
            if conn.execute(update(messages_t).where(messages_t.c.id == message_id, messages_t.c.status == status)
                            .values(**values)).rowcount:
                previous = status
                break
        found = get(conn, message_id)
        if found is not None and previous is not None and audit is not None:
            audit(conn, found, previous)
    if found is None:
        raise MessagingError(_("no message with id %(id)s", id=message_id))
    if previous is None:
        raise MessagingError(_("message %(id)s is %(status)s; only %(allowed)s messages can be marked %(outcome)s",
                               id=message_id, status=found["status"], allowed=_(" or ").join(allowed), outcome=outcome))
    return found
