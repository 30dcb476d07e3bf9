"""Consent from website forms, with double opt-in: a signup asks, only the click grants.

Whoever posts a public form proves nothing about who they are: anyone can
type anyone's email and phone. So a signup touches nobody already in the
base. It keeps a *pending signup*: a consent request holding what was typed
and its evidence (IP, user agent, form, consent text version, time), tied to
a placeholder contact that holds no phone or email, matches nobody, and is
hidden from every list, segment and workflow (deleted_at is set). The
confirmation letter goes from the outbox to the address typed, with a signed
link that expires after a week (hub.links.confirm_url).

Only the click proves something, and only one thing: the person reads that
mailbox. Confirming therefore lets that email address join the base through
the normal identity rules (a new contact, or the one already holding it)
and grants the chosen topics on the email channel only. The typed phone is
never matched or attached to anyone: it was not proven, and attaching it
would let a stranger join two customers or take over one known by phone.
Names fill a contact only when the confirmation creates it. The placeholder
is then merged into the person (logged like any merge), so the letter and
its links follow them.

One open signup per address: a double submit, or a second form, updates the
open request instead of starting another, and its letter is keyed by the
request, so one signup gets one letter. Letters are rate-limited per address
and per client (plugins.gdpr.limits). A request is confirmed by one
conditional UPDATE, so a link used twice grants once.

A confirmation link sent by hand or by a workflow (`double_opt_in_email`
without a signup) confirms only if Hub really sent that very link to the
person: a link rendered anywhere else (a template preview in the admin)
confirms nothing, so staff cannot confirm on a person's behalf.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from sqlalchemy import Connection, Engine, delete, or_, select, update

# not in hub.api on purpose: public sign-up writes a contact through the sync path (normalized, identified),
# reads the signed links it serves and sends the opt-in letter through the outbox at once
from hub import consent, identity, links, message_templates, messaging, normalize, sync
from hub.api import (Contact, ContactIdentity, ContactRecord, Message, Settings, TemplateError, current_contact_id,
                     insert_for, utcnow)
from plugins.gdpr import config, limits
from plugins.gdpr.erasure import refuse_erased
from plugins.gdpr.models import ConsentRequest
from plugins.gdpr.topics import Topic, TopicError, parse

requests_t = ConsentRequest.__table__
contacts_t = Contact.__table__
messages_t = Message.__table__

FORM, API, LINK = "form", "api", "link"
CONFIRM_CHANNEL = "email"
MAX_NAME = 200
PENDING = identity.PLACEHOLDER  # provenance of a placeholder contact
# A second letter for the same open signup goes out only this long after the last one.
RESEND_AFTER = dt.timedelta(minutes=10)
# Messages whose link may have reached the person: only these make a hand-sent link count.
_HANDED_OVER = (messaging.SENT, messaging.UNKNOWN, messaging.SENDING)


class SignupError(ValueError):
    """A signup that cannot be accepted; `problems` lists (field, what is wrong) for each mistake."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{f}: {m}" for f, m in self.problems))


class SignupUnavailable(RuntimeError):
    """Hub cannot send confirmations (no email channel or template); a setup problem, not the person's."""


class Limited(Exception):
    """Raised inside the signup's transaction to undo it: the letter would break a rate limit."""


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

    def typed(self) -> dict[str, Any]:
        """What the visitor typed besides the address: kept with the request, proven by nothing."""
        return {"first_name": self.first_name, "last_name": self.last_name, "phone": self.phone}


@dataclass
class SignupResult:
    """`pending` (a confirmation is on its way, or was just sent), `granted` (nothing left to confirm),
    `limited` (too many letters lately: none sent) or `refused` (erased)."""

    status: str
    contact_id: int | None = None
    request_id: int | None = None
    message_id: int | None = None
    topics: list[str] = field(default_factory=list)
    new_letter: bool = False  # whether this signup queued a letter (a double submit does not)


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
        if topic.channel != CONFIRM_CHANNEL:
            problems.append(("channel", f"{topic}: a signup can only subscribe the email address it confirms; "
                                        "consent for SMS and calls is not taken from a web form"))
        elif form is not None and topic not in form.topics:
            problems.append(("topics", f"{topic} is not offered by form {form.name!r}"))
        elif topic not in chosen:
            chosen.append(topic)
    if not chosen and not any(f in ("topics", "channel") for f, _ in problems):
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


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def open_key(settings: Settings, address: str) -> str:
    """What marks the one open signup of an address (a keyed hash: the column never holds the address)."""
    return consent.address_hash("signup", address, settings.require_secret_key())


def _erased(conn: Connection, settings: Settings, address: str) -> bool:
    record = ContactRecord(source="signup", emails=[address])
    return bool(refuse_erased(conn, settings, [identity.prepare(record, settings.default_region)]))


def sign_up(engine: Engine, settings: Settings, signup: Signup) -> SignupResult:
    """Keep the signup pending and queue its confirmation letter (not sent here); nobody in the base changes.

    Topics the holder of the address has already granted are left out: asking
    again must not send a letter for nothing. A signup for an address with an
    open request updates that request (the latest choice counts) and queues
    no second letter unless the last one is older than RESEND_AFTER.
    """
    try:
        with engine.begin() as conn:
            return sign_up_in(conn, settings, signup)
    except Limited:
        return SignupResult("limited", topics=[str(t) for t in signup.topics])


def sign_up_in(conn: Connection, settings: Settings, signup: Signup) -> SignupResult:
    """`sign_up` in the caller's transaction (the API's request); raises Limited, which must undo it."""
    if _erased(conn, settings, signup.email):
        return SignupResult("refused")
    holder = identity.find_contact(conn, normalize.EMAIL, signup.email)
    current = consent.current(conn, holder) if holder is not None else {}
    wanted = [t for t in signup.topics if current.get((t.channel, t.purpose)) != "granted"]
    if not wanted:
        return SignupResult("granted", holder, topics=[str(t) for t in signup.topics])
    now = utcnow()
    key = open_key(settings, signup.email)
    evidence = {**signup.evidence(), "typed": signup.typed()}
    topics = [str(t) for t in wanted]
    row = _open_request(conn, key, now)
    if row is None:
        placeholder = _placeholder(conn, now)
        ins = insert_for(conn, requests_t).values(
            contact_id=placeholder, channel=CONFIRM_CHANNEL, topics=topics, source=signup.source, evidence=evidence,
            token_digest=key, created_at=now).on_conflict_do_nothing(index_elements=["token_digest"])
        request_id = conn.execute(ins.returning(requests_t.c.id)).scalar()
        if request_id is not None:
            message_id = _queue_letter(conn, settings, request_id, placeholder, signup, wanted,
                                       f"consent-request:{request_id}")
            return SignupResult("pending", None, request_id, message_id, topics, new_letter=True)
        # A double submit got there first (on PostgreSQL a concurrent insert waits for it and skips).
        conn.execute(delete(contacts_t).where(contacts_t.c.id == placeholder))
        row = _open_request(conn, key, now)
        if row is None:
            raise SignupUnavailable("the open signup for this address changed while it was read; try again")
    conn.execute(update(requests_t).where(requests_t.c.id == row.id)
                 .values(topics=topics, source=signup.source, evidence=evidence))
    last = conn.execute(select(messages_t.c.id, messages_t.c.created_at)
                        .where(messages_t.c.id == row.message_id)).first() if row.message_id else None
    if last is not None and now - _aware(last.created_at) < RESEND_AFTER:
        return SignupResult("pending", None, row.id, last.id, topics)
    # Keyed by the letter it replaces: two resubmits at once still queue one letter.
    message_id = _queue_letter(conn, settings, row.id, row.contact_id, signup, wanted,
                               f"consent-request:{row.id}:after:{last.id if last is not None else 0}")
    return SignupResult("pending", None, row.id, message_id, topics, new_letter=message_id != row.message_id)


def _open_request(conn: Connection, key: str, now: dt.datetime) -> Any:
    """The address's open signup; one confirmed or past its link's age is closed here and None returned."""
    row = conn.execute(select(requests_t).where(requests_t.c.token_digest == key)).first()
    if row is None:
        return None
    expired = now - _aware(row.created_at) > dt.timedelta(seconds=links.CONFIRM_MAX_AGE)
    if row.confirmed_at is None and not expired and current_contact_id(conn, row.contact_id) is not None:
        return row
    conn.execute(update(requests_t).where(requests_t.c.id == row.id).values(token_digest=None))
    return None


def _placeholder(conn: Connection, now: dt.datetime) -> int:
    """A contact that holds nothing and is hidden everywhere: what a pending signup's letter is addressed from."""
    ins = contacts_t.insert().values(tags=[], attributes={}, provenance={"created_from": PENDING}, orders_count=0,
                                     revenue=0, created_at=now, updated_at=now, deleted_at=now)
    return int(conn.execute(ins.returning(contacts_t.c.id)).scalar_one())


def _queue_letter(conn: Connection, settings: Settings, request_id: int, contact_id: int, signup: Signup,
                  wanted: Sequence[Topic], key: str) -> int:
    """Put the confirmation letter in the outbox, once per key, if the rate limits allow a new one."""
    found = conn.execute(select(messages_t.c.id).where(messages_t.c.idempotency_key == key)).scalar()
    if found is not None:
        return int(found)
    if not limits.take(settings, signup.email, signup.ip):
        raise Limited()
    url = links.confirm_url(settings, contact_id, CONFIRM_CHANNEL, wanted[0].purpose, request=request_id)
    # The placeholder holds nothing: the letter goes to the address typed. It greets nobody by the name
    # typed, which is unproven and would let a form carry a stranger's text into someone's mailbox.
    person: dict[str, Any] = {
        "id": contact_id, "first_name": None, "last_name": None, "middle_name": None, "full_name": "",
        "city": None, "birthday": None, "gender": None, "company": None, "email": signup.email, "phone": None,
        "emails": [signup.email], "phones": [], "tags": [], "attributes": {}, "orders_count": 0, "revenue": 0,
        "first_order_at": None, "last_order_at": None}
    if CONFIRM_CHANNEL not in messaging.channel_factories():
        raise SignupUnavailable("cannot queue the confirmation email: no email channel is installed")
    try:
        template = message_templates.get(conn, settings, signup.form.template)
        if not template.is_email:
            raise messaging.MessagingError(f"template {template.name!r} is not an email template")
        now = utcnow()
        row = messaging.build_row(settings, template, person, signup.email, channel=CONFIRM_CHANNEL,
                                  purpose=messaging.TRANSACTIONAL, key=key, context={"confirm_url": url},
                                  meta={"consent_request": request_id}, due_at=now, now=now,
                                  company=message_templates.company(settings))
    except (messaging.MessagingError, TemplateError) as exc:
        raise SignupUnavailable(f"cannot queue the confirmation email: {exc}") from None
    message_id = messaging.insert(conn, row).id
    conn.execute(update(requests_t).where(requests_t.c.id == request_id).values(message_id=message_id))
    return message_id


def send_confirmation(message_id: int) -> dict[str, Any]:
    """Queue job: send one confirmation email now (settings read afresh, like every job)."""
    from hub.api import load_settings
    from hub.api import get_engine

    settings = load_settings()
    return messaging.dispatch(get_engine(settings.database_url), settings, channels=[CONFIRM_CHANNEL],
                              ids=[message_id]).as_dict()


# --- the click ----------------------------------------------------------------------------

@dataclass
class Confirmation:
    """`confirmed` (granted now), `already` (this link was used before), `gone` (nothing is held about
    the person: erased) or `unsent` (a link Hub never sent to the person: it confirms nothing)."""

    status: str
    contact_id: int | None = None
    topics: list[str] = field(default_factory=list)


def _email_topics(topics: Sequence[str]) -> list[str]:
    return [t for t in topics if t.partition("/")[0] == CONFIRM_CHANNEL]


def pending(engine: Engine, settings: Settings, token: str) -> Confirmation:
    """What following a confirmation link would do, without doing it (for the page with the button).

    Raises hub.links.LinkError (LinkExpired for an old link) for a link that is not valid.
    """
    target = links.read_confirm(settings, token)
    with engine.connect() as conn:
        if target.request is not None:
            row = conn.execute(select(requests_t).where(requests_t.c.id == target.request)).first()
            if row is None:
                return Confirmation("gone")
            person = current_contact_id(conn, row.contact_id)
            if person is None or _erased(conn, settings, str((row.evidence or {}).get("address") or "")):
                return Confirmation("gone")
            status = "already" if row.confirmed_at is not None else "confirmed"
            return Confirmation(status, person if row.confirmed_at is not None else None,
                                _email_topics(list(row.topics)))
        person = current_contact_id(conn, target.contact_id)
        if person is None:
            return Confirmation("gone")
        wanted = [f"{target.channel}/{target.purpose}"]
        used = conn.execute(select(requests_t.c.id).where(requests_t.c.token_digest == _digest(token))).first()
        if used:
            return Confirmation("already", person, wanted)
        if not _was_sent(conn, person, token):
            return Confirmation("unsent")
        return Confirmation("confirmed", person, wanted)


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
                                   .values(confirmed_at=now, token_digest=None)).rowcount
            row = conn.execute(select(requests_t).where(requests_t.c.id == target.request)).first()
            if row is None or current_contact_id(conn, row.contact_id) is None:
                return Confirmation("gone")
            if not changed:
                return Confirmation("already", current_contact_id(conn, row.contact_id), _email_topics(row.topics))
            contact_id = _join(conn, settings, row, now)
            if contact_id is None:
                return Confirmation("gone")
            signed_up = {k: (row.evidence or {}).get(k)
                         for k in ("ip", "user_agent", "form_id", "text_version", "address")}
            signed_up["at"] = row.created_at.isoformat()
            wanted, source, request_id = _email_topics(list(row.topics)), row.source, row.id
        else:
            # A link sent by hand or by a workflow: it counts only if Hub sent this very link to the person.
            contact_id = current_contact_id(conn, target.contact_id)
            if contact_id is None:
                return Confirmation("gone")
            if not _was_sent(conn, contact_id, token):
                return Confirmation("unsent")
            wanted, source, signed_up = [f"{target.channel}/{target.purpose}"], LINK, {}
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


def _join(conn: Connection, settings: Settings, row: Any, now: dt.datetime) -> int | None:
    """The confirmed address joins the base by the identity rules; returns the person, None if erased.

    Only the address was proven, so only the address goes in: names fill a
    contact this creates, never one already known, and the typed phone stays
    with the request. The placeholder is merged into the person so that the
    letter and its links follow them.
    """
    evidence = row.evidence or {}
    address = str(evidence.get("address") or "")
    placeholder = row.contact_id
    holder = identity.find_contact(conn, normalize.EMAIL, address) if address else None
    if holder is None and not identity.is_placeholder(conn, placeholder):
        holder = current_contact_id(conn, placeholder)  # a request from before signups were kept apart
    if holder is not None:
        contact_id: int | None = holder
    else:
        typed = evidence.get("typed") or {}
        record = ContactRecord(source=f"{row.source}:{evidence.get('form_id') or config.DEFAULT_FORM}",
                               emails=[address], first_name=typed.get("first_name"),
                               last_name=typed.get("last_name"))
        contact_id = sync.write_contacts(conn, [record], settings, sync.Counts()).contact_ids[0]
    if contact_id is None:
        return None
    # A person every source had deleted is back, by their own hand.
    conn.execute(update(contacts_t).where(contacts_t.c.id == contact_id, contacts_t.c.deleted_at.is_not(None))
                 .values(deleted_at=None))
    if identity.is_placeholder(conn, placeholder) and placeholder != contact_id:
        identity.merge_contacts(conn, contact_id, placeholder, actor="signup", now=now, settings=settings,
                                reason={"rule": "signup confirmed", "request": row.id})
    return contact_id


def _was_sent(conn: Connection, contact_id: int, token: str) -> bool:
    """Whether Hub handed a message carrying this very link to the person (their messages follow merges)."""
    sent = select(messages_t.c.id).where(
        messages_t.c.contact_id == contact_id, messages_t.c.status.in_(_HANDED_OVER),
        or_(messages_t.c.body_text.contains(token, autoescape=True),
            messages_t.c.body_html.contains(token, autoescape=True))).limit(1)
    return conn.execute(sent).first() is not None


def forget_pending(conn: Connection, contact_id: int) -> int:
    """An erased person's open signups go too: the requests, their placeholders, what their letters said.

    A pending signup is tied to no contact, only to the address typed, so it
    is found by the erased contact's email addresses. Returns how many went.
    """
    addresses = set(consent.addresses(conn, contact_id, normalize.EMAIL))
    if not addresses:
        return 0
    rows = conn.execute(select(requests_t.c.id, requests_t.c.contact_id, requests_t.c.evidence)
                        .where(requests_t.c.confirmed_at.is_(None))).all()
    gone = [r for r in rows
            if (r.evidence or {}).get("address") in addresses and identity.is_placeholder(conn, r.contact_id)]
    for row in gone:
        drop_signup(conn, row.id, row.contact_id, why="not sent: the person was erased on request")
    return len(gone)


def drop_signup(conn: Connection, request_id: int, placeholder: int, *, why: str) -> None:
    """Forget one unconfirmed signup whole: its request, its placeholder, and what its letter said.

    Used when the person is erased and when retention ages the request out: a
    placeholder left behind would be a hidden row that no link can ever reach.
    """
    if not identity.is_placeholder(conn, placeholder):
        raise ValueError(f"contact #{placeholder} is not a signup placeholder")
    now = utcnow()
    conn.execute(update(messages_t).where(messages_t.c.contact_id == placeholder)
                 .values(address=None, subject=None, body_text="", body_html=None, meta={}, updated_at=now))
    conn.execute(update(messages_t).where(messages_t.c.contact_id == placeholder,
                                          messages_t.c.status.in_((messaging.QUEUED, messaging.DEFERRED)))
                 .values(status=messaging.SUPPRESSED, error=why))
    conn.execute(delete(requests_t).where(requests_t.c.id == request_id))
    conn.execute(delete(contacts_t).where(contacts_t.c.id == placeholder))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def follow_merge(conn: Connection, survivor: int, merged: int) -> None:
    """A signup waiting for its click belongs to whoever the person became (the contact_merged hook)."""
    conn.execute(update(requests_t).where(requests_t.c.contact_id == merged).values(contact_id=survivor))


def follow_unmerge(conn: Connection, survivor: int, restored: int) -> None:
    """Signups made with the restored contact's own address are its own again (the contact_unmerged hook).

    A request keeps the address it was made with; one made with an address
    both contacts hold, or with none, stays with the survivor.
    """
    c = ContactIdentity.__table__.c
    own = set(conn.execute(select(c.value).where(c.contact_id == restored, c.valid, c.shared.is_(None))).scalars())
    if not own:
        return
    rows = conn.execute(select(requests_t.c.id, requests_t.c.evidence).where(requests_t.c.contact_id == survivor))
    mine = [r.id for r in rows if isinstance(r.evidence, dict) and r.evidence.get("address") in own]
    if mine:
        conn.execute(update(requests_t).where(requests_t.c.id.in_(mine)).values(contact_id=restored))
