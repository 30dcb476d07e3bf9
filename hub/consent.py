"""The consent ledger and the can-contact decision every send goes through.

Consent is an append-only list of events; the current answer for a (contact,
channel, purpose) is its latest event. Nothing is ever updated in place, so
Hub can always show when, how and to what a person agreed.

Suppressions hold keyed hashes of addresses that must never be contacted
(bounces, complaints, erasures); they beat every consent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any, Iterable

from sqlalchemy import Connection, and_, bindparam, delete, func, or_, select

from hub import normalize, send_reasons
from hub.config import Settings
from hub.db import among, chunks, insert_for, utcnow
from hub.i18n import N_
from hub.i18n import gettext as _
from hub.models import ConsentEvent, ConsentState, ContactIdentity, Suppression

events_t = ConsentEvent.__table__
states_t = ConsentState.__table__
suppressions_t = Suppression.__table__
identities_t = ContactIdentity.__table__

STATUSES = ("granted", "withdrawn", "pending")
# A merge keeps the stricter of two answers: withdrawn beats pending beats granted.
STRICTNESS = {"granted": 0, "pending": 1, "withdrawn": 2}
TRANSACTIONAL = "transactional"
DEFAULT_CHANNELS = ("email", "sms", "phone")
DEFAULT_PURPOSES = ("processing", "marketing", "surveys", "news")
# The statuses, channels and purposes as people call them; the ledger, rules and JSON keep the value itself.
STATUS_TITLES = {"granted": N_("granted"), "withdrawn": N_("withdrawn"), "pending": N_("pending")}
CHANNEL_TITLES = {"email": N_("Email"), "sms": N_("SMS"), "phone": N_("Calls")}
PURPOSE_TITLES = {"processing": N_("Personal data processing"), "marketing": N_("Offers and special deals"),
                  "surveys": N_("Surveys"), "news": N_("News")}
# Which identity kind a channel reaches a person by.
CHANNEL_KIND = {"email": normalize.EMAIL}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class ConsentError(ValueError):
    """A consent change that cannot be recorded; the message says which part is wrong."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a message may go out, and if not, every reason given."""

    allowed: bool
    reasons: tuple[str, ...] = ()


def _names(value: object, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    return tuple(str(i).strip() for i in items if str(i).strip())


def channels(settings: Settings) -> tuple[str, ...]:
    """Channels consent is asked for (HUB_CONSENT_CHANNELS or consent_channels in hub.toml)."""
    return _names(settings.extra.get("consent_channels"), DEFAULT_CHANNELS)


def purposes(settings: Settings) -> tuple[str, ...]:
    """Purposes (topics) consent is asked for (HUB_CONSENT_PURPOSES or consent_purposes)."""
    return _names(settings.extra.get("consent_purposes"), DEFAULT_PURPOSES)


def status_title(status: Any) -> str:
    """A consent status in the reader's words ("дано"); one Hub does not know as it is."""
    return _(STATUS_TITLES[status]) if status in STATUS_TITLES else str(status)


def channel_title(channel: Any) -> str:
    """A channel in the reader's words ("Звонки"); a shop's own channel as it is named in the settings."""
    return _(CHANNEL_TITLES[channel]) if channel in CHANNEL_TITLES else str(channel)


def purpose_title(purpose: Any) -> str:
    """A purpose in the reader's words ("Акции и специальные предложения"); a shop's own one as it is."""
    return _(PURPOSE_TITLES[purpose]) if purpose in PURPOSE_TITLES else str(purpose)


OWN_ADDRESS = "contact"  # a channel that finds the person itself (a Telegram chat linked to the contact)


def kind_for_channel(channel: str) -> str:
    """What a channel's messages go to: an email address, a phone, or OWN_ADDRESS.

    A channel plugin declares OWN_ADDRESS by giving its factory the attribute
    ``address_kind = OWN_ADDRESS``: its messages then carry no address, no
    phone or email suppression applies to them, and consent is asked of the
    contact (the channel's own can_contact says whether it can reach them).
    Every other channel but email is addressed by phone.
    """
    found = CHANNEL_KIND.get(channel)
    if found is not None:
        return found
    from hub.plugins import kept

    return kept("channel_address_kinds", _declared_kinds).get(channel, normalize.PHONE)


def _declared_kinds() -> dict[str, str]:
    from hub.messaging.channels import channel_factories

    declared = {name: getattr(factory, "address_kind", None) for name, factory in channel_factories().items()}
    return {name: str(kind) for name, kind in declared.items() if kind}


def validate(settings: Settings, channel: str, purpose: str, status: str) -> None:
    if channel not in channels(settings):
        raise ConsentError(_("channel %(channel)r is not one of: %(known)s", channel=channel,
                             known=", ".join(channels(settings))))
    if purpose not in purposes(settings):
        raise ConsentError(_("purpose %(purpose)r is not one of: %(known)s", purpose=purpose,
                             known=", ".join(purposes(settings))))
    if status not in STATUSES:
        raise ConsentError(_("status %(status)r is not one of: %(known)s", status=status, known=", ".join(STATUSES)))


def record(
    conn: Connection,
    contact_id: int,
    channel: str,
    purpose: str,
    status: str,
    *,
    source: str,
    evidence: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
    settings: Settings | None = None,
) -> int:
    """Append a consent event and tell plugins; returns the event id."""
    if settings is not None:
        validate(settings, channel, purpose, status)
    elif status not in STATUSES or not _NAME.match(channel) or not _NAME.match(purpose):
        raise ConsentError(_("cannot record consent %(channel)s/%(purpose)s=%(status)s", channel=channel,
                             purpose=purpose, status=status))
    evidence = dict(evidence or {})
    at = at or utcnow()
    event_id = conn.execute(
        _INSERT_EVENT,
        {"contact_id": contact_id, "channel": channel, "purpose": purpose, "status": status,
         "source": source, "evidence": evidence, "at": at},
    ).scalar_one()
    conn.execute(_advance_state(conn), {"contact_id": contact_id, "channel": channel, "purpose": purpose,
                                        "status": status, "event_id": event_id, "at": at})
    from hub.plugins import get_pm

    get_pm().hook.consent_changed(conn=conn, contact_id=contact_id, channel=channel, purpose=purpose,
                                  status=status, source=source, evidence=evidence)
    return event_id


_INSERT_EVENT = events_t.insert().returning(events_t.c.id)
_ADVANCE: dict[str, Any] = {}


def _advance_state(conn: Connection) -> Any:
    """The statement that makes an event the current answer of its key, unless a later one already is.

    Later means given later, then recorded later, as `current` decides: an old paper form recorded
    today leaves a later unsubscribe current. Built once per dialect (every consent change runs it).
    """
    dialect = conn.dialect.name
    if dialect not in _ADVANCE:
        ins = insert_for(conn, states_t)
        new, old = ins.excluded, states_t.c
        _ADVANCE[dialect] = ins.on_conflict_do_update(
            index_elements=[old.contact_id, old.channel, old.purpose],
            set_={"status": new.status, "event_id": new.event_id, "at": new.at},
            where=or_(new.at > old.at, and_(new.at == old.at, new.event_id > old.event_id)))
    return _ADVANCE[dialect]


def restate(conn: Connection, contact_ids: Iterable[int]) -> None:
    """Rebuild these contacts' current answers (consent_states) from the ledger.

    For wherever events change hands or go instead of being appended: a merge moves the merged
    contact's answers to the survivor, its undo moves them back, an erasure deletes them. Whatever
    the rows said before, afterwards they say what `current` reads from the ledger.
    """
    ids = sorted({int(i) for i in contact_ids})
    for part in chunks(ids, 1000):
        conn.execute(delete(states_t).where(among(conn, states_t.c.contact_id, part)))
        conn.execute(_fill_states(among(conn, events_t.c.contact_id, part)))


def rebuild_states(conn: Connection) -> None:
    """Rebuild every current answer from the ledger, after a bulk load that wrote events past `record`."""
    conn.execute(delete(states_t))
    conn.execute(_fill_states())


_STATE_COLUMNS = ("contact_id", "channel", "purpose", "status", "event_id", "at")


def _fill_states(*where: Any) -> Any:
    e = events_t.c
    ranked = (select(e.contact_id, e.channel, e.purpose, e.status, e.id.label("event_id"), e.at,
                     _latest_first(e.contact_id, e.channel, e.purpose)).where(*where).subquery())
    return states_t.insert().from_select(list(_STATE_COLUMNS), select(*[ranked.c[name] for name in _STATE_COLUMNS])
                                         .where(ranked.c.rank == 1))


@dataclass(frozen=True, slots=True)
class Answer:
    """One consent event for `record_many`."""

    contact_id: int
    channel: str
    purpose: str
    status: str
    source: str
    evidence: dict[str, Any]
    at: dt.datetime | None = None


def record_many(conn: Connection, answers: list[Answer]) -> None:
    """Append many consent events in one statement (a bounce mailbox withdraws thousands), then tell plugins.

    For answers Hub itself derives (bounces, complaints): names are checked
    like `record` does without settings.
    """
    if not answers:
        return
    for a in answers:
        if a.status not in STATUSES or not _NAME.match(a.channel) or not _NAME.match(a.purpose):
            raise ConsentError(_("cannot record consent %(channel)s/%(purpose)s=%(status)s", channel=a.channel,
                                 purpose=a.purpose, status=a.status))
    now = utcnow()
    conn.execute(events_t.insert(), [{"contact_id": a.contact_id, "channel": a.channel, "purpose": a.purpose,
                                      "status": a.status, "source": a.source, "evidence": dict(a.evidence),
                                      "at": a.at or now} for a in answers])
    restate(conn, [a.contact_id for a in answers])
    from hub.plugins import get_pm

    hook = get_pm().hook.consent_changed
    for a in answers:
        hook(conn=conn, contact_id=a.contact_id, channel=a.channel, purpose=a.purpose, status=a.status,
             source=a.source, evidence=dict(a.evidence))


STAFF = "staff"


def record_staff(conn: Connection, settings: Settings, contact_id: int, channel: str, purpose: str, status: str,
                 *, staff: str, note: str | None = None, source: str | None = None) -> int:
    """Record an answer a member of staff enters for a person (a paper form, a call, a request to stop).

    The event's source and evidence name the staff member, so the ledger
    always tells an entry by staff from the person's own answer. Staff never
    answer where the person's own confirmation is awaited: a topic pending
    its double opt-in is confirmed only by the person, through the link sent
    to them, so staff cannot grant it. `source` (default ``staff:<who>``)
    may say where the answer was given (e.g. "paper"); the evidence names
    the staff member either way.
    """
    validate(settings, channel, purpose, status)
    if status == "granted" and current(conn, contact_id).get((channel, purpose)) == "pending":
        raise ConsentError(_("%(channel)s/%(purpose)s is waiting for the person's own confirmation (double opt-in); "
                             "only the person can confirm it, by the link sent to them", channel=channel,
                             purpose=purpose))
    staff = staff.strip()[:150] or "unknown"
    evidence = {"by": STAFF, "staff_user": staff, "note": (note or "").strip()[:500] or None,
                "confirmed_by_person": False}
    return record(conn, contact_id, channel, purpose, status, source=(source or f"{STAFF}:{staff}")[:100],
                  evidence=evidence, settings=settings)


def _latest_first(*partition: Any) -> Any:
    """Rank 1 is the answer given latest (by its own date, then by recording order)."""
    return func.row_number().over(partition_by=partition,
                                  order_by=(events_t.c.at.desc(), events_t.c.id.desc())).label("rank")


def current(conn: Connection, contact_id: int) -> dict[tuple[str, str], str]:
    """The status per (channel, purpose) for one contact: the event given latest wins.

    Ordered by when the person gave the answer, not when it was recorded, so
    an old paper form imported today cannot undo a later unsubscribe.
    """
    return {key: status for key, (status, _) in latest(conn, contact_id).items()}


def _latest_statement() -> Any:
    ranked = (select(events_t.c.channel, events_t.c.purpose, events_t.c.status, events_t.c.source,
                     _latest_first(events_t.c.channel, events_t.c.purpose))
              .where(events_t.c.contact_id == bindparam("contact_id")).subquery())
    return select(ranked.c.channel, ranked.c.purpose, ranked.c.status, ranked.c.source).where(ranked.c.rank == 1)


def latest(conn: Connection, contact_id: int) -> dict[tuple[str, str], tuple[str, str]]:
    """(status, source) of the current answer per (channel, purpose)."""
    rows = conn.execute(_LATEST, {"contact_id": contact_id})
    return {(ch, p): (status, source) for ch, p, status, source in rows}


_LATEST = _latest_statement()  # built once: every send asks it


def already_recorded(conn: Connection, contact_id: int, channel: str, purpose: str, status: str, source: str,
                     at: dt.datetime | None) -> bool:
    """Whether recording this answer would add nothing (re-importing a file adds nothing).

    With a date: the very same event is in the ledger. Without one: it is
    already the current answer, from the same source.
    """
    if at is None:
        return latest(conn, contact_id).get((channel, purpose)) == (status, source)
    return conn.execute(select(events_t.c.id).where(
        events_t.c.contact_id == contact_id, events_t.c.channel == channel, events_t.c.purpose == purpose,
        events_t.c.status == status, events_t.c.source == source, events_t.c.at == at)).first() is not None


def history(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(select(events_t).where(events_t.c.contact_id == contact_id).order_by(events_t.c.id))
    return [dict(r._mapping) for r in rows]


def stricter_states(conn: Connection, a: int, b: int) -> dict[tuple[str, str], str]:
    """For a merge of a and b: the stricter current answer wherever both have one."""
    sa, sb = current(conn, a), current(conn, b)
    out = {}
    for key in sa.keys() & sb.keys():
        out[key] = max(sa[key], sb[key], key=STRICTNESS.__getitem__)
    return out


def record_merge_outcome(conn: Connection, survivor: int, merged: int, stricter: dict[tuple[str, str], str],
                         *, now: dt.datetime | None = None) -> None:
    """After events moved to the survivor, make sure the stricter answer is the current one."""
    now_state = current(conn, survivor)
    for (channel, purpose), status in sorted(stricter.items()):
        if now_state.get((channel, purpose)) != status:
            record(conn, survivor, channel, purpose, status, source="merge",
                   evidence={"merged_contact": merged, "rule": "stricter consent wins"}, at=now)


# --- suppressions -------------------------------------------------------------------------

def address_hash(kind: str, value: str, secret: str) -> str:
    """A keyed hash: the same address always maps to it, but it cannot be reversed or guessed."""
    return hmac.new(secret.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def suppress(conn: Connection, kind: str, value: str, *, reason: str, source: str, secret: str) -> None:
    suppress_many(conn, [(kind, value)], reason=reason, source=source, secret=secret)


def suppress_many(conn: Connection, addresses: Iterable[tuple[str, str]], *, reason: str, source: str,
                  secret: str) -> None:
    """Suppress (kind, value) pairs in one statement; those suppressed already stay as they were."""
    now = utcnow()
    rows = [{"kind": kind, "value_hash": address_hash(kind, value, secret), "reason": reason, "source": source,
             "created_at": now} for kind, value in addresses]
    if rows:
        conn.execute(insert_for(conn, suppressions_t).on_conflict_do_nothing(index_elements=["value_hash"]), rows)


# Built once: every send asks these, and building a statement costs more than running it.
_SUPPRESSED = select(suppressions_t.c.id).where(suppressions_t.c.value_hash == bindparam("digest")).limit(1)
_ADDRESSES = (select(identities_t.c.value)
              .where(and_(identities_t.c.contact_id == bindparam("contact_id"),
                          identities_t.c.kind == bindparam("kind"),
                          identities_t.c.valid))
              .order_by(identities_t.c.id))


# The send-time question for one address, in one statement: is it suppressed, and what is the
# latest answer for (contact, channel, purpose), read newest first through ix_consent_events_latest
# (the same order as `current`: by when the answer was given, then by recording order).
_e = events_t.c
_SEND_TIME = select(
    select(suppressions_t.c.id).where(suppressions_t.c.value_hash == bindparam("digest")).exists()
    .label("suppressed"),
    select(_e.status).where(_e.channel == bindparam("channel"), _e.purpose == bindparam("purpose"),
                            _e.contact_id == bindparam("contact_id"))
    .order_by(_e.at.desc(), _e.id.desc()).limit(1).scalar_subquery().label("status"))


def is_suppressed(conn: Connection, kind: str, value: str, secret: str) -> bool:
    return conn.execute(_SUPPRESSED, {"digest": address_hash(kind, value, secret)}).first() is not None


def suppressed_among(conn: Connection, settings: Settings, kind: str, values: Iterable[str]) -> set[str]:
    """Which of these addresses are suppressed, in one query per 500 (a batch send asks for thousands)."""
    secret = settings.require_secret_key()
    by_hash = {address_hash(kind, v, secret): v for v in values}
    found: set[str] = set()
    for part in chunks(list(by_hash), 500):
        rows = conn.execute(select(suppressions_t.c.value_hash).where(suppressions_t.c.value_hash.in_(part)))
        found.update(by_hash[h] for h in rows.scalars())
    return found


def addresses(conn: Connection, contact_id: int, kind: str) -> list[str]:
    """A contact's valid addresses of one kind, oldest first."""
    return [r[0] for r in conn.execute(_ADDRESSES, {"contact_id": contact_id, "kind": kind})]


# --- the decision -------------------------------------------------------------------------

def can_contact(conn: Connection, settings: Settings, contact_id: int, channel: str, purpose: str,
                address: str | None = None) -> Decision:
    """Ask every plugin; any one may refuse. Sends call this at send time, not only at enrolment."""
    from hub.plugins import get_pm

    answers = get_pm().hook.can_contact(conn=conn, settings=settings, contact_id=contact_id, channel=channel,
                                        purpose=purpose, address=address)
    reasons = tuple(a for a in answers if a)
    return Decision(allowed=not reasons, reasons=reasons)


def ledger_verdict(conn: Connection, settings: Settings, contact_id: int, channel: str, purpose: str,
                   address: str | None) -> str | None:
    """The core's own answer: a suppressed address never; marketing only with granted consent.

    Worded through hub.send_reasons: stored and given to scripts in English, read by people in their language.
    """
    kind = kind_for_channel(channel)
    if kind == OWN_ADDRESS:  # the channel finds the person: consent alone decides here
        if purpose == TRANSACTIONAL:
            return None
        status = current(conn, contact_id).get((channel, purpose))
        return None if status == "granted" else send_reasons.no_consent(channel, purpose, status)
    if address:  # a message to one address: every dispatch asks this, so one round trip
        if _allowed_by_batch_read(conn, settings, contact_id, channel, purpose, address):
            return None
        row = conn.execute(_SEND_TIME, {"digest": address_hash(kind, address, settings.require_secret_key()),
                                        "contact_id": contact_id, "channel": channel, "purpose": purpose}).one()
        if row.suppressed:
            return send_reasons.suppressed(kind)
        if purpose == TRANSACTIONAL or row.status == "granted":
            return None
        return send_reasons.no_consent(channel, purpose, row.status)
    targets = addresses(conn, contact_id, kind)
    if not targets:
        return send_reasons.no_address(kind)
    secret = settings.require_secret_key()
    if all(is_suppressed(conn, kind, t, secret) for t in targets):
        return send_reasons.suppressed(kind)
    if purpose == TRANSACTIONAL:
        return None
    status = current(conn, contact_id).get((channel, purpose))
    if status != "granted":
        return send_reasons.no_consent(channel, purpose, status)
    return None


# --- the send-time question for a whole claimed batch -------------------------------------
#
# A dispatch asks the ledger about every letter of a claimed batch, one after another. Asking the
# database once per letter costs more in Python than the letter's own bookkeeping, so the ledger
# reads the answers for the whole batch at once (`send_time_facts`) and keeps them in the reading
# connection's info for the batch (hub.messaging.rules.BATCH_FACTS; cleared when the batch ends).
#
# Why a letter cannot slip past a withdrawal recorded before its send started:
#
# - only an *allowed* answer is taken from the batch read; a refusal read there (withdrawn, never
#   granted, suppressed) is asked again of the database for that letter alone, so an answer that
#   changed for the better since the read is not missed either;
# - an allowed answer from the batch read is a promise checked again at the moment the letter is
#   handed over: the statement that commits it as `sending` carries `still_allowed` (the same two
#   questions, suppression and the latest answer, asked inside that UPDATE) and leaves the row as it
#   was when the answer no longer holds. The dispatcher then forgets the batch answer for that
#   letter (`forget_send_time_facts`) and asks every rule again, this time of the database.
#
# So the answer a letter goes out on is the one in the database when its hand-over's statement
# ran, later than any read made before that transaction could be. A withdrawal or suppression
# committed before that statement holds the letter. On SQLite nothing else can commit between
# the statement and its commit (the hand-over holds the write lock), and the send starts after
# the commit; on PostgreSQL the statement sees what was committed when it began, microseconds
# before its own commit. A withdrawal committed later is one made during the send, which no check
# can stop (the channel has the letter).

_FACTS = "hub.send_rules.facts.consent"  # hub.messaging.rules.BATCH_FACTS + "consent"


@dataclass(frozen=True, slots=True)
class SendTimeFact:
    """What the ledger read for one letter of a batch: its address's digest, suppressed or not, the answer."""

    digest: str
    suppressed: bool
    status: str | None


def send_time_facts(conn: Connection, settings: Settings, messages: Iterable[Any]
                    ) -> dict[tuple[int, str, str, str], SendTimeFact]:
    """The ledger's facts for every addressed letter of a batch, in two statements per 500 letters.

    Keyed by (contact_id, channel, purpose, address). Letters without a contact or an address,
    and channels that find the person themselves (OWN_ADDRESS), are left out: they are asked
    one at a time.
    """
    secret = settings.require_secret_key()
    wanted: dict[tuple[int, str, str, str], str] = {}
    for m in messages:
        if m.contact_id is None or not m.address:
            continue
        kind = kind_for_channel(m.channel)
        if kind == OWN_ADDRESS:
            continue
        wanted.setdefault((m.contact_id, m.channel, m.purpose, m.address), address_hash(kind, m.address, secret))
    if not wanted:
        return {}
    suppressed: set[str] = set()
    for part in chunks(sorted(set(wanted.values())), 500):
        suppressed.update(conn.execute(select(suppressions_t.c.value_hash)
                                       .where(suppressions_t.c.value_hash.in_(part))).scalars())
    statuses: dict[tuple[int, str, str], str] = {}
    for part in chunks(sorted({k[0] for k in wanted}), 500):
        ranked = (select(events_t.c.contact_id, events_t.c.channel, events_t.c.purpose, events_t.c.status,
                         _latest_first(events_t.c.contact_id, events_t.c.channel, events_t.c.purpose))
                  .where(events_t.c.contact_id.in_(part)).subquery())
        for r in conn.execute(select(ranked.c.contact_id, ranked.c.channel, ranked.c.purpose, ranked.c.status)
                              .where(ranked.c.rank == 1)):
            statuses[(r.contact_id, r.channel, r.purpose)] = r.status
    return {key: SendTimeFact(digest, digest in suppressed, statuses.get(key[:3]))
            for key, digest in wanted.items()}


def _allowed_by_batch_read(conn: Connection, settings: Settings, contact_id: int, channel: str, purpose: str,
                           address: str) -> bool:
    """True when the batch read (see above) allows this letter; False: ask the database now."""
    fact = _batch_fact(conn, settings, (contact_id, channel, purpose, address))
    return fact is not None and not fact.suppressed and (purpose == TRANSACTIONAL or fact.status == "granted")


def _batch_fact(conn: Connection, settings: Settings, key: tuple[int, str, str, str]) -> SendTimeFact | None:
    facts = conn.info.get(_FACTS)
    if facts is None:
        from hub.messaging.rules import batch_of

        batch = batch_of(conn)
        if not batch:
            return None
        facts = conn.info[_FACTS] = send_time_facts(conn, settings, batch)
    return facts.get(key)


def forget_send_time_facts(conn: Connection, message: Any) -> None:
    """Drop what the batch read said about this letter: the next question about it goes to the database."""
    facts = conn.info.get(_FACTS)
    if facts:
        facts.pop((message.contact_id, message.channel, message.purpose, message.address), None)


@dataclass(frozen=True, slots=True)
class Guard:
    """The promise a letter was allowed on, for the UPDATE that hands it over (see `still_allowed`)."""

    transactional: bool
    params: dict[str, Any]


def send_time_guard(conn: Connection, message: Any) -> Guard | None:
    """The check to repeat at hand-over for a letter the batch read allowed; None: it was asked one at a time."""
    facts = conn.info.get(_FACTS)
    if not facts or message.contact_id is None:
        return None
    fact = facts.get((message.contact_id, message.channel, message.purpose, message.address))
    if fact is None:
        return None
    return Guard(message.purpose == TRANSACTIONAL,
                 {"_g_digest": fact.digest, "_g_contact": message.contact_id, "_g_channel": message.channel,
                  "_g_purpose": message.purpose})


def still_allowed(transactional: bool) -> Any:
    """The ledger's send-time answer as a condition, for the UPDATE that hands a letter over.

    Bound parameters `_g_digest`, `_g_contact`, `_g_channel`, `_g_purpose` (`send_time_guard`).
    The same two questions as `ledger_verdict` asks of a letter to one address.
    """
    not_suppressed = ~select(suppressions_t.c.id).where(suppressions_t.c.value_hash == bindparam("_g_digest")).exists()
    if transactional:
        return not_suppressed
    latest_answer = (select(_e.status).where(_e.channel == bindparam("_g_channel"),
                                             _e.purpose == bindparam("_g_purpose"),
                                             _e.contact_id == bindparam("_g_contact"))
                     .order_by(_e.at.desc(), _e.id.desc()).limit(1).scalar_subquery())
    return and_(not_suppressed, latest_answer == "granted")


def counts_by_status(conn: Connection, contact_ids: Iterable[int] | None = None) -> dict[str, int]:
    """How many current answers there are of each status (for reports)."""
    ranked = select(events_t.c.status, _latest_first(events_t.c.contact_id, events_t.c.channel, events_t.c.purpose))
    if contact_ids is not None:
        ranked = ranked.where(events_t.c.contact_id.in_(list(contact_ids)))
    sub = ranked.subquery()
    q = select(sub.c.status, func.count()).where(sub.c.rank == 1).group_by(sub.c.status)
    return {s: n for s, n in conn.execute(q)}
