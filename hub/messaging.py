"""The outbox: every message Hub sends is a row here before any channel sees it.

Three promises, and how they are kept:

- **At most once, and as little in doubt as possible.** A message has a
  unique idempotency key (a workflow uses its run and step); creating it
  again returns the row that exists. A worker claims a batch with a lease
  (`worker`, `claimed_at`; the rows stay `queued`), so two workers never take
  the same row. Just before one message is handed to its channel, a short
  transaction commits it as `sending` (and, in the same commit, the outcome
  of the message before it); so at any moment a worker holds at most one
  message in doubt. A crash then leaves that one `sending` until
  `recover_stale` marks it `unknown` for a person to review (never a silent
  second send), while the rest of its batch is still `queued` and is sent by
  the next worker once the lease runs out.
- **Permission at send time.** Every message passes the send rules just
  before its channel is called, whoever dispatches it: every implementation
  of the `check_send` hook (the core's consent decision in hub.outbox_hooks,
  quiet hours and the frequency cap in hub.send_limits, a business's own). A skip
  marks it `suppressed` with the reason; a deferral holds it `queued` until then.
- **Nothing lost to a bad moment.** A temporary failure (SMTP 4xx, a gateway
  that is down) defers the message and retries it later with backoff; a
  permanent one fails it, and when the address itself is dead the address is
  suppressed and a consent event records the bounce.

Statuses: queued (claimed or not) → sending → sent | failed | suppressed | deferred | unknown.
Channels are plugins (register_channels) with a small interface: Channel below.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from sqlalchemy import Connection, Engine, bindparam, func, or_, select, update

from hub import consent, links, queue, templates
from hub.config import Settings
from hub.db import bulk_insert, chunks, get_engine, insert_for, utcnow
from hub.models import Contact, ContactIdentity, Message

messages_t = Message.__table__
contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__

QUEUED, SENDING, SENT, FAILED, SUPPRESSED, DEFERRED, UNKNOWN = (
    "queued", "sending", "sent", "failed", "suppressed", "deferred", "unknown")
STATUSES = (QUEUED, SENDING, SENT, FAILED, SUPPRESSED, DEFERRED, UNKNOWN)
TRANSACTIONAL = consent.TRANSACTIONAL

MAX_ATTEMPTS = 6
# Seconds to wait after the 1st, 2nd, ... temporary failure; the last repeats.
BACKOFF = (60, 300, 1800, 7200, 21600)
# A row still `sending` this long after its claim belongs to a worker that died.
SENDING_TIMEOUT = dt.timedelta(minutes=10)
DEFAULT_BATCH = 100
# How long a claimed batch stays a worker's (HUB_MESSAGES_LEASE_S): the worker renews it while
# it sends, and when a worker dies its claimed rows that never reached a channel are free again
# after this long. Only rows the channel had are in doubt.
CLAIM_LEASE = dt.timedelta(seconds=60)
# A channel that cannot send at all (server down) is tried again this much later.
RELEASE_DELAY = dt.timedelta(seconds=60)


class MessagingError(ValueError):
    """A message that cannot be created or changed; the text says what to fix."""


# --- what channels see and answer ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Outgoing:
    """A rendered message on its way to a channel."""

    id: int
    channel: str
    contact_id: int | None
    address: str | None
    purpose: str
    template: str | None
    subject: str | None
    text: str
    html: str | None
    key: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_marketing(self) -> bool:
        """Anything not transactional carries unsubscribe links and needs consent."""
        return self.purpose != TRANSACTIONAL

    @property
    def to_name(self) -> str | None:
        return self.meta.get("to_name")

    @property
    def unsubscribe_url(self) -> str | None:
        return self.meta.get("unsubscribe_url")


@dataclass(frozen=True, slots=True)
class Delivery:
    """A channel's answer for one message.

    status: "sent"; "deferred" (temporary: try again later); "bounced" (the
    address is dead: suppress it); "failed" (permanent, but not the address's
    fault, e.g. a message too large); "unknown" (it may or may not have gone
    out, e.g. the connection dropped after the whole message was transmitted).
    """

    status: str
    provider_id: str | None = None
    error: str | None = None
    parts: int | None = None


DELIVERY_STATUSES = ("sent", "deferred", "bounced", "failed", "unknown")


class ChannelUnavailable(RuntimeError):
    """The channel cannot send anything now (server unreachable, login refused).

    Raised by open() or send() only when the message was certainly not
    handed over; the dispatcher puts the batch back and tries later.
    """


class Channel(Protocol):
    """What a channel plugin implements.

    open() is called once before a batch and close() after it, so a channel
    can keep one connection for many messages; send() may be called many
    times in between and must reopen a connection the server dropped.
    """

    name: str

    def open(self) -> None: ...

    def close(self) -> None: ...

    def send(self, message: Outgoing) -> Delivery: ...


def channel_factories(pm: Any = None) -> dict[str, Callable[[Settings], Channel]]:
    """Every registered channel: name → factory(settings)."""
    from hub import plugins

    return plugins.registry("register_channels", pm)


# --- send rules ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Verdict:
    """A send rule's objection: skip the message for good (`until` None) or hold it until a UTC time."""

    reason: str
    until: dt.datetime | None = None

    @classmethod
    def skip(cls, reason: str) -> Verdict:
        return cls(reason)

    @classmethod
    def defer(cls, until: dt.datetime, reason: str) -> Verdict:
        return cls(reason, until)


def combine(verdicts: Iterable[Verdict | None]) -> Verdict | None:
    """The rules' joint answer: any skip wins (with every skip's reason), else the latest hold.

    Independent of the order plugins were registered in: a rule cannot
    shorten another's hold or lift another's refusal.
    """
    found = [v for v in verdicts if v is not None]
    if not found:
        return None
    skips = [v.reason for v in found if v.until is None]
    if skips:
        return Verdict.skip("; ".join(dict.fromkeys(skips)))
    last = max(v.until for v in found if v.until is not None)
    return Verdict.defer(last, "; ".join(dict.fromkeys(v.reason for v in found)))


class SendRules:
    """The check_send hook, looked up once: a dispatch asks it for every message it sends."""

    def __init__(self, pm: Any = None) -> None:
        from hub.plugins import get_pm

        self._hook = (pm or get_pm()).hook.check_send

    def __call__(self, conn: Connection, settings: Settings, message: Outgoing,
                 now: dt.datetime | None = None) -> Verdict | None:
        return combine(self._hook(conn=conn, settings=settings, message=message, now=now or utcnow()))


# --- creating messages --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Created:
    id: int
    status: str
    created: bool  # False: a message with this key already existed and was left alone


def _address_kind(channel: str) -> str:
    return consent.kind_for_channel(channel)


def _check_names(settings: Settings, channel: str, purpose: str) -> None:
    known = channel_factories()
    if channel not in known:
        raise MessagingError(f"no channel {channel!r}; registered: {', '.join(sorted(known)) or 'none'}")
    allowed = (*consent.purposes(settings), TRANSACTIONAL)
    if purpose not in allowed:
        raise MessagingError(f"purpose {purpose!r} is not one of: {', '.join(allowed)}")


def contact_contexts(conn: Connection, settings: Settings, contact_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Template variables for each live contact: names, city, birthday, first email and phone, stats."""
    ids = list(contact_ids)
    out: dict[int, dict[str, Any]] = {}
    for part in chunks(ids, 500):
        rows = conn.execute(select(contacts_t).where(contacts_t.c.id.in_(part), contacts_t.c.deleted_at.is_(None)))
        for r in rows:
            full = " ".join(p for p in (r.last_name, r.first_name, r.middle_name) if p)
            out[r.id] = {
                "id": r.id, "first_name": r.first_name, "last_name": r.last_name, "middle_name": r.middle_name,
                "full_name": full, "city": r.city, "birthday": r.birthday, "gender": r.gender,
                "company": r.company, "email": None, "phone": None, "emails": [], "phones": [],
                "tags": r.tags or [], "attributes": r.attributes or {}, "orders_count": r.orders_count,
                "revenue": r.revenue, "first_order_at": templates.local_time(settings, r.first_order_at),
                "last_order_at": templates.local_time(settings, r.last_order_at),
            }
        idents = conn.execute(select(identities_t.c.contact_id, identities_t.c.kind, identities_t.c.value)
                              .where(identities_t.c.contact_id.in_(part), identities_t.c.valid)
                              .order_by(identities_t.c.id))
        for cid, kind, value in idents:
            ctx = out.get(cid)
            if ctx is not None:
                ctx[f"{kind}s"].append(value)
                if ctx[kind] is None:
                    ctx[kind] = value
    return out


def _pick_address(contact: Mapping[str, Any], channel: str, suppressed: set[str]) -> str | None:
    """The contact's first valid address for the channel that is not suppressed (else the first)."""
    candidates = contact.get(f"{_address_kind(channel)}s") or []
    for value in candidates:
        if value not in suppressed:
            return value
    return candidates[0] if candidates else None


def pick_addresses(conn: Connection, settings: Settings, contacts: Mapping[int, Mapping[str, Any]],
                   channel: str) -> dict[int, str | None]:
    """Each contact's first valid address for the channel that is not suppressed (else the first)."""
    kind = _address_kind(channel)
    suppressed = consent.suppressed_among(conn, settings, kind, {a for c in contacts.values() for a in c.get(f"{kind}s") or []})
    return {cid: _pick_address(c, channel, suppressed) for cid, c in contacts.items()}


def _references(template: templates.Template, name: str) -> bool:
    return any(name in (part or "") for part in (template.subject, template.text, template.html))


def _links(settings: Settings, template: templates.Template, contact_id: int, channel: str, purpose: str,
           extra: Mapping[str, Any]) -> dict[str, str]:
    """The signed links a message needs: unsubscribe for anything not transactional, others when used."""
    out = {}
    if purpose != TRANSACTIONAL or _references(template, "unsubscribe_url"):
        topic = purpose if purpose != TRANSACTIONAL else "marketing"
        out["unsubscribe_url"] = links.unsubscribe_url(settings, contact_id, channel, topic)
    if _references(template, "preferences_url"):
        out["preferences_url"] = links.preferences_url(settings, contact_id)
    if _references(template, "confirm_url"):
        out["confirm_url"] = links.confirm_url(settings, contact_id, channel,
                                               str(extra.get("confirm_purpose", "marketing")))
    return out


def _template(conn: Connection, settings: Settings, template: str | templates.Template, channel: str
              ) -> templates.Template:
    found = templates.get(conn, settings, template) if isinstance(template, str) else template
    if (channel == templates.EMAIL) != found.is_email:
        raise MessagingError(f"template {found.name!r} is a {found.channel} template; it cannot go by {channel}")
    return found


def build_row(settings: Settings, template: templates.Template, contact: dict[str, Any], address: str | None, *,
              channel: str, purpose: str, key: str, context: Mapping[str, Any], meta: Mapping[str, Any],
              due_at: dt.datetime, now: dt.datetime, company: Mapping[str, Any]) -> dict[str, Any]:
    """Render one message for one contact into an outbox row (not yet inserted)."""
    signed = _links(settings, template, contact["id"], channel, purpose, context)
    rendered = templates.render(template, {"contact": contact, "company": company, **signed, **context})
    row_meta = dict(meta)
    to_name = " ".join(p for p in (contact.get("first_name"), contact.get("last_name")) if p)
    if to_name:
        row_meta["to_name"] = to_name
    if "unsubscribe_url" in signed and purpose != TRANSACTIONAL:
        row_meta["unsubscribe_url"] = signed["unsubscribe_url"]
    return {
        "idempotency_key": key, "contact_id": contact["id"], "channel": channel, "template": template.name,
        "purpose": purpose, "address": address, "subject": rendered.subject, "body_text": rendered.text,
        "body_html": rendered.html, "parts": text_parts(rendered.text) if channel == "sms" else None,
        "status": QUEUED, "attempts": 0, "due_at": due_at, "meta": row_meta, "created_at": now, "updated_at": now,
    }


def _existing(conn: Connection, key: str) -> Created | None:
    row = conn.execute(select(messages_t.c.id, messages_t.c.status).where(messages_t.c.idempotency_key == key)).first()
    return Created(row.id, row.status, created=False) if row is not None else None


def prepare(conn: Connection, settings: Settings, *, contact_id: int, channel: str,
            template: str | templates.Template, key: str, purpose: str = "marketing",
            context: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None,
            due_at: dt.datetime | None = None) -> dict[str, Any] | Created:
    """Render one message into an outbox row, reading only; or the message that has this key already."""
    existing = _existing(conn, key)
    if existing is not None:
        return existing
    _check_names(settings, channel, purpose)
    found = _template(conn, settings, template, channel)
    contact = contact_contexts(conn, settings, [contact_id]).get(contact_id)
    if contact is None:
        raise MessagingError(f"no contact with id {contact_id}")
    now = utcnow()
    address = pick_addresses(conn, settings, {contact_id: contact}, channel)[contact_id]
    return build_row(settings, found, contact, address, channel=channel,
                     purpose=purpose, key=key, context=dict(context or {}), meta=dict(meta or {}),
                     due_at=due_at or now, now=now, company=templates.company(settings))


def insert(conn: Connection, row: dict[str, Any]) -> Created:
    """Put a prepared row in the outbox unless its key got there first."""
    stmt = insert_for(conn, messages_t).values(**row).on_conflict_do_nothing(index_elements=["idempotency_key"])
    new_id = conn.execute(stmt.returning(messages_t.c.id)).scalar()
    if new_id is None:  # another process created it between our look and our insert
        existing = _existing(conn, row["idempotency_key"])
        assert existing is not None
        return existing
    return Created(new_id, QUEUED, created=True)


def create(conn: Connection, settings: Settings, *, contact_id: int, channel: str,
           template: str | templates.Template, key: str, purpose: str = "marketing",
           context: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None,
           due_at: dt.datetime | None = None) -> Created:
    """Render a message for one contact and put it in the outbox, once per key, in the caller's transaction.

    A second call with the same key returns the existing message untouched,
    whatever its status: a workflow step that runs again never sends again.
    `context` adds template variables (e.g. ``promo``); `due_at` holds the
    message until then.

    On SQLite a transaction that reads and then writes fails at once with
    "database is locked" if another process wrote in between; a caller that
    is not already writing in `conn` should use `prepare` on a reading
    connection and `insert` in a short transaction of its own (as `send` does).
    """
    prepared = prepare(conn, settings, contact_id=contact_id, channel=channel, template=template, key=key,
                       purpose=purpose, context=context, meta=meta, due_at=due_at)
    return prepared if isinstance(prepared, Created) else insert(conn, prepared)


@dataclass
class CreateReport:
    created: int = 0
    existing: int = 0
    missing_contacts: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def create_many(engine: Engine, settings: Settings, contact_ids: Sequence[int], *, channel: str,
                template: str | templates.Template, key_prefix: str, purpose: str = "marketing",
                context: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None,
                progress: Callable[[int], None] | None = None, chunk_size: int = 1000) -> CreateReport:
    """A campaign: one message per contact, keyed ``{key_prefix}:{contact_id}``, rendered in chunks.

    Contacts that already have a message under this key are left alone, so
    running the same campaign again adds only the contacts that are new. Each
    chunk is read and rendered first and then written in a short transaction of
    its own, so rendering never holds the database's write lock and workers
    can send the first chunks while later ones are rendered.
    """
    with engine.connect() as conn:
        _check_names(settings, channel, purpose)
        found = _template(conn, settings, template, channel)
    context, meta = dict(context or {}), dict(meta or {})
    company = templates.company(settings)
    report = CreateReport()
    for part in chunks(list(dict.fromkeys(contact_ids)), chunk_size):
        keys = {cid: f"{key_prefix}:{cid}" for cid in part}
        rows = []
        with engine.connect() as conn:
            have = set(conn.execute(select(messages_t.c.idempotency_key)
                                    .where(messages_t.c.idempotency_key.in_(list(keys.values())))).scalars())
            contacts = contact_contexts(conn, settings, [cid for cid in part if keys[cid] not in have])
            addresses = pick_addresses(conn, settings, contacts, channel)
            now = utcnow()
            for cid in part:
                if keys[cid] in have:
                    report.existing += 1
                elif cid not in contacts:
                    report.missing_contacts.append(cid)
                else:
                    rows.append(build_row(settings, found, contacts[cid], addresses[cid], channel=channel,
                                          purpose=purpose, key=keys[cid], context=context, meta=meta, due_at=now,
                                          now=now, company=company))
        if rows:
            with engine.begin() as conn:
                bulk_insert(conn, messages_t, rows, ignore_conflicts=True)
        report.created += len(rows)
        if progress:
            progress(len(part))
    return report


# --- SMS length ---------------------------------------------------------------------------

# GSM 03.38: the basic alphabet (one septet each) and the extension table (two).
_GSM_BASIC = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                 "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def text_parts(text: str) -> int:
    """How many SMS parts a text takes: GSM-7 160 (153 when split), else UCS-2 70 (67).

    Cyrillic needs UCS-2; a character outside the Basic Multilingual Plane
    (an emoji) takes two UCS-2 units; GSM extension characters take two septets.
    """
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        units, single, multi = sum(2 if c in _GSM_EXTENDED else 1 for c in text), 160, 153
    else:
        units, single, multi = sum(2 if ord(c) > 0xFFFF else 1 for c in text), 70, 67
    if units <= single:
        return 1
    return -(-units // multi)


# --- dispatch -----------------------------------------------------------------------------

@dataclass
class DispatchReport:
    """What one dispatch did; `errors` holds channel-level problems (nothing about recipients)."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    suppressed: int = 0
    deferred: int = 0
    held: int = 0
    unknown: int = 0
    released: int = 0
    recovered_unknown: int = 0
    errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Outcome:
    id: int
    status: str
    error: str | None = None
    provider_id: str | None = None
    parts: int | None = None
    tried: int = 0
    due_at: dt.datetime | None = None
    sent_at: dt.datetime | None = None
    bounce: Outgoing | None = None
    sent: Outgoing | None = None


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def backoff(attempts: int) -> dt.timedelta:
    """How long to wait after the attempts so far before the next one."""
    return dt.timedelta(seconds=BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1])


def channel_rate(settings: Settings, channel: str) -> float | None:
    """Messages per second for a channel (HUB_EMAIL_RATE, HUB_SMS_RATE, ...); None: no limit."""
    return _positive(settings, f"{channel}_rate", "a number of messages per second")


def claim_lease(settings: Settings) -> dt.timedelta:
    """How long a claimed batch stays a worker's (HUB_MESSAGES_LEASE_S; default CLAIM_LEASE)."""
    seconds = _positive(settings, "messages_lease_s", "a number of seconds")
    return CLAIM_LEASE if seconds is None else dt.timedelta(seconds=seconds)


def _positive(settings: Settings, key: str, what: str) -> float | None:
    """A setting that must be a number above 0; None when it is not set."""
    raw = settings.extra.get(key)
    if raw in (None, ""):
        return None
    name = f"HUB_{key.upper()}"
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise MessagingError(f"{name}: {raw!r} is not {what}") from None
    if value <= 0:
        raise MessagingError(f"{name}: must be more than 0")
    return value


def recover_stale(engine: Engine, *, now: dt.datetime | None = None,
                  timeout: dt.timedelta = SENDING_TIMEOUT) -> int:
    """Mark rows left `sending` by a worker that died as `unknown`; returns how many.

    Only a message a channel had when its worker stopped is `sending`: at most
    one per worker. Rows the worker had claimed but not handed over are still
    `queued` and need nothing here; the next claim takes them when the lease ends.
    """
    now = now or utcnow()
    with engine.begin() as conn:
        result = conn.execute(
            update(messages_t)
            .where(messages_t.c.status == SENDING, messages_t.c.claimed_at < now - timeout)
            .values(status=UNKNOWN, updated_at=now,
                    error=func.coalesce(messages_t.c.worker, "a worker") + " stopped while sending; "
                    "the message may or may not have gone out"))
        return result.rowcount or 0


_CLAIM_COLUMNS = (messages_t.c.id, messages_t.c.contact_id, messages_t.c.channel, messages_t.c.address,
                  messages_t.c.purpose, messages_t.c.template, messages_t.c.subject, messages_t.c.body_text,
                  messages_t.c.body_html, messages_t.c.idempotency_key, messages_t.c.meta, messages_t.c.attempts,
                  messages_t.c.parts)
_WAITING = (QUEUED, DEFERRED)


def claim(engine: Engine, channel: str, limit: int, *, worker: str, now: dt.datetime | None = None,
          ids: Sequence[int] | None = None, lease: dt.timedelta = CLAIM_LEASE
          ) -> list[tuple[Outgoing, int, int | None]]:
    """Take up to `limit` ready messages of one channel for `worker`, for `lease`.

    The rows keep their status (`queued` or `deferred`) and get the worker's
    name and the claim time: nothing has gone anywhere yet, so a worker that
    dies leaves them to be claimed again once the lease has run out. Due
    `deferred` rows first, then `queued` ones, oldest first. The UPDATE
    re-checks status and lease, and on PostgreSQL the candidates are locked
    with SKIP LOCKED, so concurrent workers never claim the same row; on
    SQLite the write lock serialises claims.
    """
    now = now or utcnow()
    free = or_(messages_t.c.claimed_at.is_(None), messages_t.c.claimed_at <= now - lease)
    taken: list[Any] = []
    with engine.begin() as conn:
        for status in (DEFERRED, QUEUED):
            want = limit - len(taken)
            if want <= 0:
                break
            conditions = [messages_t.c.status == status, messages_t.c.channel == channel, messages_t.c.due_at <= now,
                          free]
            if ids is not None:
                conditions.append(messages_t.c.id.in_(list(ids)))
            candidates = select(messages_t.c.id).where(*conditions).order_by(messages_t.c.due_at).limit(want)
            if conn.dialect.name == "postgresql":
                # Locked here and claimed below: PostgreSQL may run a LIMIT subquery inside
                # an UPDATE more than once, taking more rows than asked for.
                chosen: Any = list(conn.execute(candidates.with_for_update(skip_locked=True)).scalars())
                if not chosen:
                    continue
            else:
                # One statement: SQLite evaluates the subquery once, under the write lock.
                chosen = candidates.scalar_subquery()
            stmt = (update(messages_t)
                    .where(messages_t.c.id.in_(chosen), messages_t.c.status == status, free)
                    .values(worker=worker, claimed_at=now, updated_at=now)
                    .returning(*_CLAIM_COLUMNS))
            taken.extend(conn.execute(stmt).all())
    taken.sort(key=lambda r: r.id)
    return [(Outgoing(id=r.id, channel=r.channel, contact_id=r.contact_id, address=r.address, purpose=r.purpose,
                      template=r.template, subject=r.subject, text=r.body_text, html=r.body_html,
                      key=r.idempotency_key, meta=r.meta or {}), r.attempts, r.parts) for r in taken]


class Dispatcher:
    """One worker's run through the outbox: channels stay open across its batches.

    Per message that reaches a channel there is one short write transaction,
    just before the channel is called: it moves this message to `sending` and
    writes what was decided since the last one (the previous message's
    outcome, skips and holds by the send rules). So the outbox is never more than
    one message behind the channel, and that one is the message in its hands.
    """

    def __init__(self, engine: Engine, settings: Settings, *, worker: str | None = None,
                 batch_size: int = DEFAULT_BATCH, progress: Callable[[int], None] | None = None,
                 now: dt.datetime | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.worker = worker or worker_name()
        self.batch_size = max(1, batch_size)
        self.rules = SendRules()
        self.now = now  # the moment claims and send rules judge by; None: the clock, read for each message
        self.progress = progress
        self.lease = claim_lease(settings)
        self.report = DispatchReport()
        self._factories = channel_factories()
        self._open: dict[str, Channel] = {}
        self._down: set[str] = set()
        self._limiters: dict[str, Any] = {}
        self._in_flight: int | None = None  # the message a channel is sending right now
        self._renewed = 0.0  # time.monotonic() of the batch's claim or its last renewal

    # channels

    def _channel(self, name: str) -> Channel:
        channel = self._open.get(name)
        if channel is None:
            channel = self._factories[name](self.settings)
            channel.open()
            self._open[name] = channel
        return channel

    def _limiter(self, name: str) -> Any:
        if name not in self._limiters:
            rate = channel_rate(self.settings, name)
            if rate is None:
                self._limiters[name] = None
            else:
                from hub import ratelimit

                self._limiters[name] = ratelimit.limiter(self.settings, f"channel:{name}", rate,
                                                         burst=max(1, int(rate)))
        return self._limiters[name]

    def close(self) -> None:
        for channel in self._open.values():
            try:
                channel.close()
            except Exception:  # noqa: BLE001 - closing must not hide what happened before
                pass
        self._open.clear()

    # the run

    def run(self, *, channels: Sequence[str] | None = None, limit: int | None = None,
            ids: Sequence[int] | None = None) -> DispatchReport:
        started = time.perf_counter()
        self.report.recovered_unknown = recover_stale(self.engine)
        names = list(channels) if channels else sorted(self._factories)
        unknown = [n for n in names if n not in self._factories]
        if unknown:
            raise MessagingError(f"no channel {unknown[0]!r}; registered: {', '.join(sorted(self._factories))}")
        remaining = limit
        active = [n for n in names]
        try:
            while active and (remaining is None or remaining > 0) and not queue.stop_requested():
                for name in list(active):
                    if queue.stop_requested():  # the worker is stopping: the next job takes what is left
                        break
                    size = self.batch_size
                    rate = channel_rate(self.settings, name)
                    if rate is not None:  # about a minute of sending per batch at most
                        size = min(size, max(1, int(rate * 60)))
                    if remaining is not None:
                        size = min(size, remaining)
                    batch = claim(self.engine, name, size, worker=self.worker, ids=ids, lease=self.lease,
                                  now=self.now)
                    self._renewed = time.monotonic()
                    if not batch:
                        active.remove(name)
                        continue
                    self.report.claimed += len(batch)
                    if remaining is not None:
                        remaining -= len(batch)
                    self._send_batch(name, batch)
                    if name in self._down:
                        active.remove(name)
                    if remaining is not None and remaining <= 0:
                        break
        finally:
            self.close()
        self.report.duration_s = round(time.perf_counter() - started, 3)
        return self.report

    def _send_batch(self, name: str, batch: list[tuple[Outgoing, int, int | None]]) -> None:
        pending: list[_Outcome] = []  # decided, not yet written
        done = 0  # rows of the batch whose outcome is in `pending` or written
        try:
            limiter = self._limiter(name)
            with self.engine.connect() as reader, self.engine.connect() as writer:
                fresh = reader.dialect.name == "sqlite"  # PostgreSQL reads afresh at each statement anyway
                for message, attempts, parts in batch:
                    if queue.stop_requested():
                        break
                    verdict = self.rules(reader, self.settings, message, self.now)
                    if fresh:
                        reader.rollback()  # no snapshot held while writing; the next check sees the latest
                    if verdict is not None:
                        pending.append(_refusal(message, verdict))
                        done += 1
                        continue
                    try:
                        channel = self._channel(name)
                        if limiter is not None:
                            limiter.acquire()
                        ours = self._hand_over(writer, pending, message, batch[done + 1:])
                        pending = []
                        if ours:
                            pending.append(self._deliver(channel, name, message, attempts, parts))
                    except ChannelUnavailable as exc:  # the channel's promise: nothing was handed over
                        self._down.add(name)
                        self.report.errors.append(f"{name}: {exc}")
                        self._flush(pending)
                        pending = []
                        self._release(batch[done:], str(exc))
                        done = len(batch)
                        break
                    done += 1
        except BaseException as exc:
            # A setting error, Ctrl-C, a lost database: keep what was decided, put back what
            # never reached the channel, and leave a message caught mid-send for review. If
            # even that fails, a message handed over stays `sending` and becomes `unknown`
            # later, never resent; the others wait for their lease to run out.
            try:
                self._flush(pending)
                rest = batch[done:]
                if rest and self._in_flight == rest[0][0].id:
                    self._mark_unknown(rest[0][0].id, f"dispatch stopped while sending ({type(exc).__name__})")
                    rest = rest[1:]
                self._release(rest, f"dispatch stopped ({type(exc).__name__}: {exc})"[:300])
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
            raise
        self._flush(pending)
        if done < len(batch):  # asked to stop: whatever is left is due now, for the next worker
            self._release(batch[done:], "the worker stopped before sending it", delay=None)

    def _hand_over(self, conn: Connection, pending: list[_Outcome], message: Outgoing,
                   rest: list[tuple[Outgoing, int, int | None]]) -> bool:
        """Commit `message` as `sending`, with the outcomes decided so far; False: the claim was lost.

        One short transaction on the batch's own connection (no pool round
        trip per message). It starts by writing, so on SQLite it waits for the
        write lock (busy_timeout) rather than failing as a read-then-write
        transaction would. The lease on the rest of the batch is renewed in
        the same transaction when a third of it has gone by.
        """
        now = utcnow()
        with conn.begin():
            taken = conn.execute(_HAND_OVER, {"_id": message.id, "_worker": self.worker, "_now": now}).rowcount
            self._write(conn, pending, now)
            if rest and time.monotonic() - self._renewed >= self.lease.total_seconds() / 3:
                conn.execute(_RENEW, {"_ids": [m.id for m, _, _ in rest], "_worker": self.worker, "_now": now})
                self._renewed = time.monotonic()
        self._count(pending)
        return bool(taken)

    def _deliver(self, channel: Channel, name: str, message: Outgoing, attempts: int, parts: int | None
                 ) -> _Outcome:
        """Hand one message (already committed as `sending`) to its channel and read the answer."""
        now = utcnow()
        # Set while the channel has the message: if this process is stopped now (Ctrl-C),
        # the message is marked unknown rather than put back.
        self._in_flight = message.id
        try:
            delivery = channel.send(message)
        except ChannelUnavailable:  # the channel's promise: nothing was handed over
            self._in_flight = None
            raise
        except Exception as exc:  # a channel bug: whether it went out is not known
            self._in_flight = None
            return _Outcome(message.id, UNKNOWN, error=f"{name} channel error: {type(exc).__name__}: {exc}",
                            tried=1)
        self._in_flight = None
        tried = attempts + 1
        parts = delivery.parts or parts
        if delivery.status == "sent":
            return _Outcome(message.id, SENT, provider_id=delivery.provider_id, parts=parts, tried=1, sent_at=now,
                            sent=message)
        if delivery.status == "deferred":
            if tried >= MAX_ATTEMPTS:
                return _Outcome(message.id, FAILED, error=f"gave up after {tried} attempts: {delivery.error}",
                                parts=parts, tried=1)
            return _Outcome(message.id, DEFERRED, error=delivery.error, parts=parts, tried=1,
                            due_at=now + backoff(tried))
        if delivery.status == "bounced":
            return _Outcome(message.id, FAILED, error=f"bounced: {delivery.error}", parts=parts, tried=1,
                            bounce=message)
        if delivery.status == "failed":
            return _Outcome(message.id, FAILED, error=delivery.error, parts=parts, tried=1)
        return _Outcome(message.id, UNKNOWN, error=delivery.error or "the channel could not tell whether it was sent",
                        provider_id=delivery.provider_id, parts=parts, tried=1)

    def _mark_unknown(self, message_id: int, reason: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(messages_t).where(messages_t.c.id == message_id, messages_t.c.status == SENDING)
                         .values(status=UNKNOWN, error=reason, attempts=messages_t.c.attempts + 1,
                                 updated_at=utcnow()))
        self.report.unknown += 1

    def _release(self, rest: list[tuple[Outgoing, int, int | None]], reason: str, *,
                 delay: dt.timedelta | None = RELEASE_DELAY) -> None:
        """Give up this worker's claim on rows no channel has had: due again after `delay` (None: as they were).

        A row already committed as `sending` is among them only when its
        channel said nothing was handed over (ChannelUnavailable) or was never called.
        """
        if not rest:
            return
        now = utcnow()
        params = [{"_id": m.id, "_status": DEFERRED if attempts else QUEUED} for m, attempts, _ in rest]
        values: dict[str, Any] = {"status": bindparam("_status"), "claimed_at": None, "updated_at": now}
        if delay is not None:
            values |= {"due_at": now + delay, "error": f"not sent yet: {reason}"}
        t = messages_t
        with self.engine.begin() as conn:
            conn.execute(update(t).where(t.c.id == bindparam("_id"), t.c.worker == self.worker,
                                         _status_in(SENDING, *_WAITING))
                         .values(**values), params)
        self.report.released += len(rest)

    def _flush(self, outcomes: list[_Outcome]) -> None:
        """Write outcomes in a transaction of their own (the end of a batch)."""
        if not outcomes:
            return
        now = utcnow()
        with self.engine.begin() as conn:
            self._write(conn, outcomes, now)
        self._count(outcomes)

    def _write(self, conn: Connection, outcomes: list[_Outcome], now: dt.datetime) -> None:
        """Write outcomes, with bounces and the message_sent hook, in the caller's transaction.

        A message a channel had is updated only while it is this worker's and
        `sending` (or marked `unknown` meanwhile); a send rule's skip or hold only
        while the row is still this worker's and waiting: a row whose lease
        ran out and that another worker took is left to that worker.
        """
        if not outcomes:
            return
        from hub.plugins import get_pm

        for handed, stmt in ((True, _OUTCOME_OF_SEND), (False, _OUTCOME_OF_POLICY)):
            params = [{"_id": o.id, "_worker": self.worker, "_now": now, "_status": o.status, "_error": o.error,
                       "_provider_id": o.provider_id, "_parts": o.parts, "_tried": o.tried, "_due_at": o.due_at,
                       "_sent_at": o.sent_at,
                       # a row that waits again is free for any worker when it is due
                       "_claimed_at": None if o.status in _WAITING else now}
                      for o in outcomes if (o.tried > 0) == handed]
            if params:
                conn.execute(stmt, params)
        hook = get_pm().hook.message_sent
        for o in outcomes:
            if o.bounce is not None:
                record_bounce(conn, self.settings, o.bounce, o.error or "bounced")
            elif o.sent is not None and hook.get_hookimpls():
                hook(conn=conn, message=_sent_dict(o))

    def _count(self, outcomes: list[_Outcome]) -> None:
        if not outcomes:
            return
        for o in outcomes:
            counter = "bounced" if o.bounce is not None else ("held" if o.status == QUEUED else o.status)
            setattr(self.report, counter, getattr(self.report, counter) + 1)
        if self.progress:
            self.progress(len(outcomes))


def _status_in(*states: str) -> Any:
    """`status IN (...)` spelt out, as statements run for many rows at once (executemany) need."""
    return or_(*(messages_t.c.status == s for s in states))


# The dispatcher's writes, built once: they run for every message, and building a statement
# costs more than running it.
_t = messages_t
_HAND_OVER = (update(_t).where(_t.c.id == bindparam("_id"), _t.c.worker == bindparam("_worker"),
                               _status_in(*_WAITING))
              .values(status=SENDING, claimed_at=bindparam("_now"), updated_at=bindparam("_now")))
_RENEW = (update(_t).where(_t.c.id.in_(bindparam("_ids", expanding=True)), _t.c.worker == bindparam("_worker"),
                           _status_in(*_WAITING))
          .values(claimed_at=bindparam("_now")))
_OUTCOME_VALUES = dict(status=bindparam("_status"), error=bindparam("_error"),
                       provider_id=func.coalesce(bindparam("_provider_id"), _t.c.provider_id),
                       parts=func.coalesce(bindparam("_parts"), _t.c.parts),
                       attempts=_t.c.attempts + bindparam("_tried"),
                       due_at=func.coalesce(bindparam("_due_at", type_=_t.c.due_at.type), _t.c.due_at),
                       sent_at=bindparam("_sent_at", type_=_t.c.sent_at.type),
                       claimed_at=bindparam("_claimed_at", type_=_t.c.claimed_at.type),
                       updated_at=bindparam("_now", type_=_t.c.updated_at.type))
# A message a channel had: while it is this worker's and `sending` (or marked `unknown` meanwhile).
_OUTCOME_OF_SEND = (update(_t).where(_t.c.id == bindparam("_id"), _t.c.worker == bindparam("_worker"),
                                     _status_in(SENDING, UNKNOWN)).values(**_OUTCOME_VALUES))
# A send rule's skip or hold: while the row is still this worker's and waiting.
_OUTCOME_OF_POLICY = (update(_t).where(_t.c.id == bindparam("_id"), _t.c.worker == bindparam("_worker"),
                                       _status_in(*_WAITING)).values(**_OUTCOME_VALUES))


def _refusal(message: Outgoing, verdict: Verdict) -> _Outcome:
    """A send rule's objection as an outcome: held until a time, or suppressed."""
    if verdict.until is not None:
        return _Outcome(message.id, QUEUED, error=f"held: {verdict.reason}", due_at=verdict.until)
    return _Outcome(message.id, SUPPRESSED, error=verdict.reason)


def _sent_dict(o: _Outcome) -> dict[str, Any]:
    m = o.sent
    assert m is not None
    return {"id": m.id, "contact_id": m.contact_id, "channel": m.channel, "address": m.address,
            "purpose": m.purpose, "template": m.template, "subject": m.subject, "idempotency_key": m.key,
            "provider_id": o.provider_id, "parts": o.parts, "sent_at": o.sent_at, "meta": dict(m.meta)}


def record_bounce(conn: Connection, settings: Settings, message: Outgoing, reply: str) -> None:
    """A dead address: suppress it for good and let the consent ledger show why."""
    if not message.address:
        return
    kind = _address_kind(message.channel)
    consent.suppress(conn, kind, message.address, reason="bounce", source=message.channel,
                     secret=settings.require_secret_key())
    if message.contact_id is not None:
        purpose = message.purpose if message.purpose != TRANSACTIONAL else "marketing"
        consent.record(conn, message.contact_id, message.channel, purpose, "withdrawn", source="bounce",
                       evidence={"address": message.address, "reply": reply, "message_id": message.id})


def dispatch(engine: Engine, settings: Settings, *, channels: Sequence[str] | None = None,
             batch_size: int = DEFAULT_BATCH, limit: int | None = None, ids: Sequence[int] | None = None,
             worker: str | None = None, progress: Callable[[int], None] | None = None,
             now: dt.datetime | None = None) -> DispatchReport:
    """Send what is due, batch by batch, until the outbox has nothing ready (or `limit` is reached).

    Safe to run in any number of processes at once: each row is claimed by one.
    Every message passes the send rules (the check_send hook) first. `now`
    makes the run judge what is due and what the rules allow as of that
    moment (a scheduler replaying a given time); by default, the clock.
    """
    dispatcher = Dispatcher(engine, settings, worker=worker, batch_size=batch_size, progress=progress, now=now)
    return dispatcher.run(channels=channels, limit=limit, ids=ids)


def send(engine: Engine, settings: Settings, **create_args: Any) -> dict[str, Any]:
    """Create one message (see create) and dispatch it right away; returns its row.

    With a key that exists, nothing is created and nothing is sent again: the
    existing row is returned as it is.
    """
    with engine.connect() as conn:
        prepared = prepare(conn, settings, **create_args)
    if isinstance(prepared, Created):
        created = prepared
    else:
        with engine.begin() as conn:
            created = insert(conn, prepared)
    if created.created:
        dispatch(engine, settings, channels=[create_args["channel"]], ids=[created.id])
    with engine.connect() as conn:
        found = get(conn, created.id)
    assert found is not None
    return found


def dispatch_job(channels: list[str] | None = None, batch_size: int = DEFAULT_BATCH,
                 limit: int | None = None) -> dict[str, Any]:
    """The queue job: a dispatch in a worker, with settings read afresh there."""
    from hub.config import load_settings

    settings = load_settings()
    return dispatch(get_engine(settings.database_url), settings, channels=channels, batch_size=batch_size,
                    limit=limit).as_dict()


# --- looking and deciding -----------------------------------------------------------------

def get(conn: Connection, message_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(messages_t).where(messages_t.c.id == message_id)).first()
    return dict(row._mapping) if row is not None else None


def find(conn: Connection, *, status: str | None = None, channel: str | None = None,
         contact_id: int | None = None, limit: int | None = 50) -> list[dict[str, Any]]:
    """Messages, newest first, without their bodies."""
    columns = [c for c in messages_t.c if c.name not in ("body_text", "body_html")]
    q = select(*columns).order_by(messages_t.c.id.desc())
    if status:
        if status not in STATUSES:
            raise MessagingError(f"status {status!r} is not one of: {', '.join(STATUSES)}")
        q = q.where(messages_t.c.status == status)
    if channel:
        q = q.where(messages_t.c.channel == channel)
    if contact_id is not None:
        q = q.where(messages_t.c.contact_id == contact_id)
    if limit is not None:
        q = q.limit(limit)
    return [dict(r._mapping) for r in conn.execute(q)]


def counts(conn: Connection) -> dict[str, int]:
    """How many messages there are in each status."""
    rows = conn.execute(select(messages_t.c.status, func.count()).group_by(messages_t.c.status))
    return {status: n for status, n in rows}


RESOLUTIONS = ("sent", "failed", "requeue")


def resolve(engine: Engine, message_id: int, outcome: str, *, by: str = "cli") -> dict[str, Any]:
    """A person's decision about a message in doubt (or a failed one to try again).

    "sent" and "failed" settle an `unknown` message after checking the
    server's log; "requeue" sends an `unknown`, `failed` or `deferred` one
    again, on purpose.
    """
    if outcome not in RESOLUTIONS:
        raise MessagingError(f"{outcome!r} is not one of: {', '.join(RESOLUTIONS)}")
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
        raise MessagingError(f"no message with id {message_id}")
    if not changed:
        raise MessagingError(f"message {message_id} is {found['status']}; "
                             f"only {' or '.join(allowed)} messages can be marked {outcome}")
    return found

