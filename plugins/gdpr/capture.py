"""Consent from website forms, with double opt-in: a signup asks, only the click grants.

A signup (an HTML form post or a JSON API call) stores the person through the
same identity path as a sync, appends a `pending` consent event for every
topic they chose, keeps the request with its evidence (IP, user agent, form,
consent text version, time) and puts a confirmation email in the outbox, all
in one transaction. The email carries a signed link that expires after a
week (hub.links.confirm_url); following it and pressing the button appends
`granted` events for exactly those topics. A request is confirmed by one
conditional UPDATE, so a link used twice grants once; an expired or reused
link gets a friendly page instead of a second grant.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from sqlalchemy import Connection, Engine, select, update

from hub import consent, links, messaging, normalize, sync
from hub.config import Settings
from hub.db import insert_for, utcnow
from hub.identity import on_merge_repoint
from hub.models import ConsentRequest, Contact
from hub.records import ContactRecord
from hub.templates import TemplateError
from plugins.gdpr import config
from plugins.gdpr.erasure import is_erased
from plugins.gdpr.topics import Topic, TopicError, parse

requests_t = ConsentRequest.__table__
contacts_t = Contact.__table__

FORM, API, LINK = "form", "api", "link"
CONFIRM_CHANNEL = "email"
MAX_NAME = 200


class SignupError(ValueError):
    """A signup that cannot be accepted; `problems` lists (field, what is wrong) for each mistake."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{f}: {m}" for f, m in self.problems))


class SignupUnavailable(RuntimeError):
    """Hub cannot send confirmations (no email channel or template); a setup problem, not the person's."""


@dataclass(frozen=True)
class Signup:
    """A checked signup, ready to store."""

    email: str
    topics: tuple[Topic, ...]
    form: config.Form
    text_version: str
    source: str
    ip: str | None = None
    user_agent: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None

    def evidence(self) -> dict[str, Any]:
        return {"ip": self.ip, "user_agent": self.user_agent, "form_id": self.form.name,
                "text_version": self.text_version, "address": self.email}


@dataclass
class SignupResult:
    """`pending` (a confirmation is on its way), `granted` (nothing left to confirm) or `refused` (erased)."""

    status: str
    contact_id: int | None = None
    request_id: int | None = None
    message_id: int | None = None
    topics: list[str] = field(default_factory=list)


def read_signup(settings: Settings, data: Mapping[str, Any], *, source: str, ip: str | None,
                user_agent: str | None) -> Signup:
    """Check what a form or the API sent; every mistake is listed, each naming its field."""
    problems: list[tuple[str, str]] = []
    email_raw = str(data.get("email") or "").strip()
    address = normalize.email(email_raw) if email_raw else None
    if not email_raw:
        problems.append(("email", "required: the confirmation is sent there"))
    elif address is None or not address.valid:
        problems.append(("email", f"{email_raw[:100]!r} is not a valid email address"))
    phone_raw = str(data.get("phone") or "").strip()
    phone = None
    if phone_raw:
        found = [p for p in normalize.phones(phone_raw, settings.default_region) if p.valid]
        if not found:
            problems.append(("phone", f"{phone_raw[:50]!r} is not a phone number"))
        else:
            phone = found[0].value
    forms = config.forms(settings)
    form_id = str(data.get("form_id") or config.DEFAULT_FORM).strip()
    form = forms.get(form_id)
    if form is None:
        problems.append(("form_id", f"no form {form_id[:100]!r}; configured: {', '.join(sorted(forms))}"))
    chosen: list[Topic] = []
    raw_topics = data.get("topics")
    if isinstance(raw_topics, str):
        raw_topics = raw_topics.split(",")
    if raw_topics is not None and not isinstance(raw_topics, (list, tuple)):
        problems.append(("topics", "give a list of topics such as [\"email/marketing\", \"email/news\"]"))
        raw_topics = []
    for text in raw_topics or []:
        if not str(text).strip():
            continue
        try:
            topic = parse(settings, str(text))
        except TopicError as exc:
            problems.append(("topics", str(exc)))
            continue
        if form is not None and topic not in form.topics:
            problems.append(("topics", f"{topic} is not offered by form {form.name!r}"))
        elif topic not in chosen:
            chosen.append(topic)
    if not chosen and not any(f == "topics" for f, _ in problems):
        problems.append(("topics", "choose at least one topic"))
    if problems or form is None or address is None:
        raise SignupError(problems)
    return Signup(
        email=address.value, topics=tuple(chosen), form=form,
        text_version=str(data.get("text_version") or form.text_version).strip()[:100],
        source=source, ip=ip, user_agent=(user_agent or "")[:500] or None, phone=phone,
        first_name=_name(data.get("first_name")), last_name=_name(data.get("last_name")),
    )


def _name(value: Any) -> str | None:
    text = " ".join(str(value or "").split())[:MAX_NAME]
    return text or None


def sign_up(engine: Engine, settings: Settings, signup: Signup) -> SignupResult:
    """Store the person and their pending choices, and queue the confirmation email (not sent here).

    Topics the person has already granted are left as they are: asking again
    must not turn a granted answer back into a pending one.
    """
    record = ContactRecord(source=f"{signup.source}:{signup.form.name}", first_name=signup.first_name,
                           last_name=signup.last_name, emails=[signup.email],
                           phones=[signup.phone] if signup.phone else [])
    with engine.begin() as conn:
        contact_id = sync.write_contacts(conn, [record], settings, sync.Counts()).contact_ids[0]
        if contact_id is None:
            return SignupResult("refused")
        # A person every source had deleted is back, by their own hand.
        conn.execute(update(contacts_t).where(contacts_t.c.id == contact_id, contacts_t.c.deleted_at.is_not(None))
                     .values(deleted_at=None))
        current = consent.current(conn, contact_id)
        wanted = [t for t in signup.topics if current.get((t.channel, t.purpose)) != "granted"]
        if not wanted:
            return SignupResult("granted", contact_id, topics=[str(t) for t in signup.topics])
        now = utcnow()
        evidence = signup.evidence()
        request_id = conn.execute(requests_t.insert().returning(requests_t.c.id), {
            "contact_id": contact_id, "channel": CONFIRM_CHANNEL, "topics": [str(t) for t in wanted],
            "source": signup.source, "evidence": evidence, "created_at": now}).scalar_one()
        for topic in wanted:
            consent.record(conn, contact_id, topic.channel, topic.purpose, "pending", source=signup.source,
                           evidence={**evidence, "request": request_id}, at=now, settings=settings)
        message_id = _queue_confirmation(conn, settings, contact_id, request_id, signup, wanted)
        conn.execute(update(requests_t).where(requests_t.c.id == request_id).values(message_id=message_id))
    return SignupResult("pending", contact_id, request_id, message_id, [str(t) for t in wanted])


def _queue_confirmation(conn: Connection, settings: Settings, contact_id: int, request_id: int, signup: Signup,
                        wanted: Sequence[Topic]) -> int:
    url = links.confirm_url(settings, contact_id, CONFIRM_CHANNEL, wanted[0].purpose, request=request_id)
    try:
        prepared = messaging.prepare(conn, settings, contact_id=contact_id, channel=CONFIRM_CHANNEL,
                                     template=signup.form.template, key=f"consent-request:{request_id}",
                                     purpose=messaging.TRANSACTIONAL, context={"confirm_url": url},
                                     meta={"consent_request": request_id})
    except (messaging.MessagingError, TemplateError) as exc:
        raise SignupUnavailable(f"cannot queue the confirmation email: {exc}") from None
    if isinstance(prepared, messaging.Created):
        return prepared.id
    prepared["address"] = signup.email  # the address they typed, not whichever of theirs comes first
    return messaging.insert(conn, prepared).id


def send_confirmation(message_id: int) -> dict[str, Any]:
    """Queue job: send one confirmation email now (settings read afresh, like every job)."""
    from hub.config import load_settings
    from hub.db import get_engine

    settings = load_settings()
    return messaging.dispatch(get_engine(settings.database_url), settings, channels=[CONFIRM_CHANNEL],
                              ids=[message_id]).as_dict()


# --- the click ----------------------------------------------------------------------------

@dataclass
class Confirmation:
    """`confirmed` (granted now), `already` (this link was used before) or `gone` (the person was erased)."""

    status: str
    contact_id: int | None = None
    topics: list[str] = field(default_factory=list)


def pending(engine: Engine, settings: Settings, token: str) -> Confirmation:
    """What following a confirmation link would do, without doing it (for the page with the button).

    Raises hub.links.LinkError (LinkExpired for an old link) for a link that is not valid.
    """
    target = links.read_confirm(settings, token)
    with engine.connect() as conn:
        if target.request is not None:
            row = conn.execute(select(requests_t).where(requests_t.c.id == target.request)).first()
            if row is None or is_erased(conn, row.contact_id):
                return Confirmation("gone")
            status = "already" if row.confirmed_at is not None else "confirmed"
            return Confirmation(status, row.contact_id, list(row.topics))
        if _gone(conn, target.contact_id):
            return Confirmation("gone")
        used = conn.execute(select(requests_t.c.id).where(requests_t.c.token_digest == _digest(token))).first()
        return Confirmation("already" if used else "confirmed", target.contact_id,
                            [f"{target.channel}/{target.purpose}"])


def confirm(engine: Engine, settings: Settings, token: str, *, ip: str | None,
            user_agent: str | None) -> Confirmation:
    """Grant what the link's signup asked for, once. Raises hub.links.LinkError for an invalid link."""
    target = links.read_confirm(settings, token)
    now = utcnow()
    with engine.begin() as conn:
        if target.request is not None:
            # The UPDATE decides: of two clicks at once, one changes the row, the other finds it confirmed.
            changed = conn.execute(update(requests_t).where(requests_t.c.id == target.request,
                                                            requests_t.c.confirmed_at.is_(None))
                                   .values(confirmed_at=now)).rowcount
            row = conn.execute(select(requests_t).where(requests_t.c.id == target.request)).first()
            if row is None or is_erased(conn, row.contact_id):
                return Confirmation("gone")
            if not changed:
                return Confirmation("already", row.contact_id, list(row.topics))
            contact_id, wanted, source, signed_up = row.contact_id, list(row.topics), row.source, dict(row.evidence)
            signed_up["at"] = row.created_at.isoformat()
            request_id = row.id
        else:
            # A link sent by hand (hub messages send double_opt_in_email): it works once too.
            if _gone(conn, target.contact_id):
                return Confirmation("gone")
            wanted, source, signed_up = [f"{target.channel}/{target.purpose}"], LINK, {}
            contact_id = target.contact_id
            ins = insert_for(conn, requests_t).values(
                contact_id=contact_id, channel=target.channel, topics=wanted, source=LINK, evidence={},
                token_digest=_digest(token), created_at=now, confirmed_at=now
            ).on_conflict_do_nothing(index_elements=["token_digest"])
            request_id = conn.execute(ins.returning(requests_t.c.id)).scalar()
            if request_id is None:
                return Confirmation("already", contact_id, wanted)
        evidence = {"ip": ip, "user_agent": (user_agent or "")[:500] or None,
                    "form_id": signed_up.get("form_id"), "text_version": signed_up.get("text_version"),
                    "request": request_id, "confirmed_by": "link", "signup": signed_up or None}
        current = consent.current(conn, contact_id)
        for text in wanted:
            channel, _, purpose = text.partition("/")
            if current.get((channel, purpose)) != "granted":
                consent.record(conn, contact_id, channel, purpose, "granted", source=source, evidence=evidence,
                               at=now)
    return Confirmation("confirmed", contact_id, wanted)


def _gone(conn: Connection, contact_id: int) -> bool:
    exists = conn.execute(select(contacts_t.c.id).where(contacts_t.c.id == contact_id)).first() is not None
    return not exists or is_erased(conn, contact_id)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@on_merge_repoint
def _follow_merge(conn: Connection, survivor: int, merged: int) -> None:
    """A signup waiting for its click belongs to whoever the person became."""
    conn.execute(update(requests_t).where(requests_t.c.contact_id == merged).values(contact_id=survivor))
