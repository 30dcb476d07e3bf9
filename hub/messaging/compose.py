"""Putting messages in the outbox: rendered for one contact, once per idempotency key.

A message is rendered when it is created, not when it is sent, so what a
channel sends is what was checked; the key (a workflow uses its run and
step, a campaign its name and the contact) makes creating it again return
the row that exists.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from sqlalchemy import Connection, Engine, select

from hub import consent, links, message_templates, template_variables
from hub.config import Settings
from hub.db import bulk_insert, chunks, insert_for, utcnow
from hub.i18n import gettext as _
from hub.messaging.channels import channel_factories
from hub.messaging.outbox import QUEUED, TRANSACTIONAL, MessagingError, messages_t
from hub.messaging.sms_parts import text_parts
from hub.models import Contact, ContactIdentity

contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__


@dataclass(frozen=True, slots=True)
class Created:
    id: int
    status: str
    created: bool  # False: a message with this key already existed and was left alone


@dataclass
class CreateReport:
    created: int = 0
    existing: int = 0
    missing_contacts: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _address_kind(channel: str) -> str:
    return consent.kind_for_channel(channel)


def _check_names(settings: Settings, channel: str, purpose: str) -> None:
    known = channel_factories()
    if channel not in known:
        raise MessagingError(_("no channel %(name)r; registered: %(known)s", name=channel,
                                known=", ".join(sorted(known)) or _("none")))
    allowed = (*consent.purposes(settings), TRANSACTIONAL)
    if purpose not in allowed:
        raise MessagingError(_("purpose %(name)r is not one of: %(allowed)s", name=purpose, allowed=", ".join(allowed)))


# The columns a template can show: only these are read, as a campaign reads every contact it writes to
# and the others (provenance, timestamps) would each be decoded for nothing.
_CONTEXT_COLUMNS = tuple(contacts_t.c[name] for name in (
    "id", "first_name", "last_name", "middle_name", "city", "birthday", "gender", "company", "tags", "attributes",
    "orders_count", "revenue", "first_order_at", "last_order_at"))


def contact_contexts(conn: Connection, settings: Settings, contact_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Template variables for each live contact: names, city, birthday, first email and phone, stats."""
    ids = list(contact_ids)
    out: dict[int, dict[str, Any]] = {}
    for part in chunks(ids, 500):
        rows = conn.execute(select(*_CONTEXT_COLUMNS).where(contacts_t.c.id.in_(part),
                                                            contacts_t.c.deleted_at.is_(None))).all()
        for r in rows:
            full = " ".join(p for p in (r.last_name, r.first_name, r.middle_name) if p)
            out[r.id] = {
                "id": r.id, "first_name": r.first_name, "last_name": r.last_name, "middle_name": r.middle_name,
                "full_name": full, "city": r.city, "birthday": r.birthday, "gender": r.gender,
                "company": r.company, "email": None, "phone": None, "emails": [], "phones": [],
                "tags": r.tags or [], "attributes": r.attributes or {}, "orders_count": r.orders_count,
                "revenue": r.revenue, "first_order_at": message_templates.local_time(settings, r.first_order_at),
                "last_order_at": message_templates.local_time(settings, r.last_order_at),
            }
        idents = conn.execute(select(identities_t.c.contact_id, identities_t.c.kind, identities_t.c.value)
                              .where(identities_t.c.contact_id.in_(part), identities_t.c.valid)
                              .order_by(identities_t.c.id)).all()
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
    addresses = {a for c in contacts.values() for a in c.get(f"{kind}s") or []}
    suppressed = consent.suppressed_among(conn, settings, kind, addresses)
    return {cid: _pick_address(c, channel, suppressed) for cid, c in contacts.items()}


@functools.lru_cache(maxsize=256)
def _references(template: message_templates.Template, name: str) -> bool:
    """Whether the template uses variable `name`: asked several times for every message of a campaign.

    Templates are frozen, so the answer is kept: a campaign of 100,000
    letters would otherwise search the same subject, text and HTML for each
    variable name once per letter.
    """
    return any(name in (part or "") for part in (template.subject, template.text, template.html))


def _links(settings: Settings, template: message_templates.Template, contact_id: int, channel: str, purpose: str,
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


def _template(conn: Connection, settings: Settings, template: str | message_templates.Template, channel: str
              ) -> message_templates.Template:
    found = message_templates.get(conn, settings, template) if isinstance(template, str) else template
    if (channel == message_templates.EMAIL) != found.is_email:
        raise MessagingError(_("template %(name)r is a %(kind)s template; it cannot go by %(channel)s", name=found.name,
                                kind=found.channel, channel=channel))
    return found


def build_row(settings: Settings, template: message_templates.Template, contact: dict[str, Any],
              address: str | None, *, channel: str, purpose: str, key: str, context: Mapping[str, Any],
              meta: Mapping[str, Any], due_at: dt.datetime, now: dt.datetime,
              company: Mapping[str, Any]) -> dict[str, Any]:
    """Render one message for one contact into an outbox row (not yet inserted)."""
    signed = _links(settings, template, contact["id"], channel, purpose, context)
    for name, value_for in template_variables.per_contact(settings).items():
        if name not in context and _references(template, name):
            signed[name] = value_for(settings, contact["id"])
    rendered = message_templates.render(template, {"contact": contact, "company": company, **signed, **context})
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
        "origin": str(meta["workflow"])[:64] if meta.get("workflow") else None,
    }


def _existing(conn: Connection, key: str) -> Created | None:
    row = conn.execute(select(messages_t.c.id, messages_t.c.status).where(messages_t.c.idempotency_key == key)).first()
    return Created(row.id, row.status, created=False) if row is not None else None


def prepare(conn: Connection, settings: Settings, *, contact_id: int, channel: str,
            template: str | message_templates.Template, key: str, purpose: str = "marketing",
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
        raise MessagingError(_("no contact with id %(id)s", id=contact_id))
    now = utcnow()
    address = pick_addresses(conn, settings, {contact_id: contact}, channel)[contact_id]
    return build_row(settings, found, contact, address, channel=channel,
                     purpose=purpose, key=key, context=dict(context or {}), meta=dict(meta or {}),
                     due_at=due_at or now, now=now, company=message_templates.company(settings))


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
           template: str | message_templates.Template, key: str, purpose: str = "marketing",
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


def create_many(engine: Engine, settings: Settings, contact_ids: Sequence[int], *, channel: str,
                template: str | message_templates.Template, key_prefix: str, purpose: str = "marketing",
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
    company = message_templates.company(settings)
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
