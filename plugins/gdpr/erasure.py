"""Forgetting a person on request, for good.

`erase` removes the personal data Hub holds (the contact's fields and
attributes, phones and emails, source references, consent history and signup
evidence, staff's notes on their card, the rendered bodies and addresses of
their messages, the snapshots kept by merges) and keeps three things that hold no personal data:

- a tombstone: the contact row, emptied and marked deleted, and an `erasures`
  row, so ids in the audit log, orders and messages still point somewhere;
- keyed hashes of their phones, emails and source references (`erased_keys`),
  which the identity path consults: a CRM that still holds the person, or a
  spreadsheet imported later, cannot bring them back;
- suppressions of their phones and emails, so nothing is ever sent there.

Everything happens in one transaction together with an audit entry; running
it again finds nothing left and says so. Other plugins forget their own data
through the `contact_erased` hook (the mailing plugin deletes the file
channel's copies of their messages); sources that can erase a contact in the
CRM (hub.api.Erasing, or the older `delete_contact(external_id)`) are asked to
when the caller wants it, and what each answered goes into the audit log.

Asking a CRM can fail (it is down, or the connection may not delete), and can
be asked for later: the erasure's audit entry keeps the (source, CRM id) pairs
the person had (an id is not their data but the way to reach them), and each
`gdpr.erase.sources` entry what every CRM answered, so a later
`--delete-in-crm` asks again exactly those that have not confirmed. What a CRM
said is kept as a category ("unreachable", "not allowed", ...), never its own
text, which may echo the person's phone or name.

Deleted is not yet unreadable: on SQLite the old pages stay in the -wal file
until a checkpoint. Hub's SQLite connections zero what a delete frees
(secure_delete), and after the erasure commits a TRUNCATE checkpoint empties
the -wal file, so no byte of the person is left in the database directory.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import requests
from sqlalchemy import Connection, Engine, delete, func, or_, select, update

from hub.api import (N_, Activity, Contact, ContactCompany, ContactIdentity, Erasing, ExternalRef, Message, Order,
                     ActivityRecord, OrderRecord, Settings, chunks, enqueue, get_engine, insert_for, gettext,
                     load_settings, utcnow)
# not in hub.api on purpose: the ledger's other side: suppressions, address hashes, history, counts; erasure and public
# sign-up work on identities, placeholders and merges
from hub import consent, identity
# not in hub.api on purpose: erasure forgets rows the way the core does (forget_deleted)
from hub.db import forget_deleted
# not in hub.api on purpose: export and erasure reach every core table that holds personal data
from hub.models import (CompanyMembership, ConsentEvent, ContactMerge, ContactNote, Erasure, LeadScore,
                        SegmentMember)
from plugins.gdpr import audit
from plugins.gdpr.models import ConsentRequest, ErasedKey

contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__
refs_t = ExternalRef.__table__
events_t = ConsentEvent.__table__
requests_t = ConsentRequest.__table__
messages_t = Message.__table__
orders_t = Order.__table__
merges_t = ContactMerge.__table__
erasures_t = Erasure.__table__
keys_t = ErasedKey.__table__
log = logging.getLogger(__name__)

REQUEST, RETENTION = "request", "retention"
REF = "ref"
# A deal (lead) of the erased person, by its source's id: a call or task logged on it names only the
# deal, and its subject or note may still name the person (hashed like a ref, under its own kind).
ORDER = "order"
# A SQLite database smaller than this is rebuilt (VACUUM) after an erasure, in well under a
# second; it clears space freed before secure_delete was on. Larger ones only need secure_delete.
VACUUM_BELOW = 64 * 1024 * 1024


class ErasureError(ValueError):
    """A contact that cannot be erased as asked; the message says why."""


@dataclass
class ErasureReport:
    contact_id: int
    already_erased: bool = False
    removed: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0
    tombstone_keys: int = 0
    sources: list[dict[str, str]] = field(default_factory=list)
    # Asking the CRMs: "" (not asked), "asked" (see `sources`), "queued" (a worker asks), "none_known" (Hub
    # knows no CRM id of the person) or "all_erased" (every CRM holding them confirmed it before).
    crm: str = ""
    # False when a reader of an older snapshot kept SQLite from emptying its -wal file
    # (the person's old pages stay there until the next checkpoint); see `erase`.
    storage_clean: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "crm_failed": self.crm_failed}

    @property
    def crm_failed(self) -> bool:
        """Whether a CRM was asked and did not erase the person: the caller should say so and try again later."""
        return any(s["result"].startswith(FAILED) for s in self.sources)


def ref_value(source: str, external_id: str) -> str:
    """How a source reference is hashed: the same shape identity.Prepared.keys gives it."""
    return f"{source}\x1f{external_id}"


def erase(engine: Engine, settings: Settings, contact_id: int, *, actor: str = "cli",
          delete_in_sources: bool = False, in_background: bool = False) -> ErasureReport:
    """Erase one person on their request; idempotent (a second run removes nothing and says so).

    With `delete_in_sources`, every CRM holding the person and not yet having
    confirmed their erasure is asked to erase them, after Hub's own erasure has
    committed; the outcome per CRM is in the report's `sources` and in the
    audit entry `gdpr.erase.sources`. `in_background` hands that part to a
    queue worker (a web request should not wait for a CRM that is down).
    """
    with engine.begin() as conn:
        report, refs = _erase(conn, settings, contact_id, actor=actor, reason=REQUEST)
        audit.record(conn, actor, "gdpr.erase", contact_id, already_erased=report.already_erased,
                     removed=report.removed, suppressed=report.suppressed, tombstone_keys=report.tombstone_keys,
                     delete_in_sources=delete_in_sources,
                     crm_refs=[{"source": s, "external_id": e} for s, e in refs])
        pending, known = pending_refs(conn, contact_id) if delete_in_sources else ([], False)
    report.storage_clean = forget_deleted(engine, vacuum_below=VACUUM_BELOW)
    if not delete_in_sources:
        return report
    if not pending:
        report.crm = ALL_ERASED if known else NONE_KNOWN
    elif in_background:
        enqueue(settings, erase_in_sources_job, contact_id, actor, None if settings.redis_url else settings,
                queue="high", background=True, job_id=f"gdpr-erase-in-crm-{contact_id}")
        report.crm = QUEUED
    else:
        report.sources = erase_in_sources(engine, settings, contact_id, pending, actor=actor)
        report.crm = ASKED
    return report


def erase_in_sources(engine: Engine, settings: Settings, contact_id: int, refs: Sequence[tuple[str, str]], *,
                     actor: str) -> list[dict[str, str]]:
    """Ask the CRMs to erase the person by these references and audit what each answered."""
    results = _delete_in_sources(settings, refs)
    with engine.begin() as conn:
        audit.record(conn, actor, "gdpr.erase.sources", contact_id,
                     results=[{k: s[k] for k in ("source", "external_id", "result")} for s in results])
    return results


def erase_in_sources_job(contact_id: int, actor: str, settings: Settings | None = None) -> dict[str, Any]:
    """Queue job: ask the CRMs that have not confirmed an erased person's erasure (settings read afresh on a worker)."""
    settings = settings or load_settings()
    engine = get_engine(settings.database_url)
    with engine.connect() as conn:
        pending, _known = pending_refs(conn, contact_id)
    results = erase_in_sources(engine, settings, contact_id, pending, actor=actor) if pending else []
    return {"contact_id": contact_id, "sources": results}


def pending_refs(conn: Connection, contact_id: int) -> tuple[list[tuple[str, str]], bool]:
    """The (source, CRM id) pairs of an erased person no CRM has confirmed erasing, and whether Hub knew any.

    Read from the audit log, which is append-only: the erasure entries name
    the references the person had, and each answer since then confirms or
    leaves open its pair (an older entry without CRM ids confirms nothing).
    """
    rows = conn.execute(select(audit.audit_t.c.action, audit.audit_t.c.details)
                        .where(audit.audit_t.c.contact_id == contact_id,
                               audit.audit_t.c.action.in_(("gdpr.erase", "gdpr.erase.sources")))
                        .order_by(audit.audit_t.c.id))
    known: dict[tuple[str, str], bool] = {}  # pair -> confirmed; a dict keeps the order they were learnt in
    for action, details in rows:
        details = details if isinstance(details, dict) else {}
        if action == "gdpr.erase":
            for ref in details.get("crm_refs") or []:
                known.setdefault((str(ref["source"]), str(ref["external_id"])), False)
            continue
        for answer in details.get("results") or []:
            if answer.get("external_id") is not None:
                known[(str(answer["source"]), str(answer["external_id"]))] = answer.get("result") in CONFIRMED
    return [pair for pair, confirmed in known.items() if not confirmed], bool(known)


def anonymize(conn: Connection, settings: Settings, contact_id: int, *, actor: str) -> ErasureReport:
    """Retention's erasure: the same removal, without tombstone keys or suppressions.

    The person did not ask to be forgotten, so a source that still holds them
    may bring them back as a new contact; their data simply aged out of Hub.
    """
    report, _ = _erase(conn, settings, contact_id, actor=actor, reason=RETENTION)
    audit.record(conn, actor, "gdpr.anonymize", contact_id, removed=report.removed)
    return report


def _erase(conn: Connection, settings: Settings, contact_id: int, *, actor: str,
           reason: str) -> tuple[ErasureReport, list[tuple[str, str]]]:
    # not in hub.api on purpose: erasure asks every source to erase the person in its CRM too
    from hub.plugins import get_pm

    now = utcnow()
    # The write comes first: on SQLite a transaction that reads before it writes can
    # find itself unable to write once another process did.
    inserted = conn.execute(insert_for(conn, erasures_t).values(contact_id=contact_id, reason=reason, actor=actor[:200],
                                                                 erased_at=now)
                            .on_conflict_do_nothing(index_elements=["contact_id"])
                            .returning(erasures_t.c.id)).scalar() is not None
    row = conn.execute(select(contacts_t.c.id).where(contacts_t.c.id == contact_id).with_for_update()).first()
    if row is None:
        survivor = conn.execute(select(merges_t.c.survivor_id).where(merges_t.c.merged_id == contact_id)
                                .order_by(merges_t.c.id.desc())).scalar()
        if survivor is not None:
            raise ErasureError(gettext("contact #%(id)s was merged into #%(survivor)s; erase #%(survivor)s",
                                       id=contact_id, survivor=survivor))
        raise ErasureError(gettext("no contact with id %(id)s", id=contact_id))
    erasure_id = conn.execute(select(erasures_t.c.id).where(erasures_t.c.contact_id == contact_id)).scalar_one()
    report = ErasureReport(contact_id, already_erased=not inserted)

    idents = conn.execute(select(identities_t.c.kind, identities_t.c.value).where(
        identities_t.c.contact_id == contact_id, identities_t.c.valid)).all()
    refs = [(s, e) for s, e in conn.execute(select(refs_t.c.source, refs_t.c.external_id)
                                            .where(refs_t.c.contact_id == contact_id).order_by(refs_t.c.id))]
    deals = [(s, e) for s, e in conn.execute(select(orders_t.c.source, orders_t.c.external_id)
                                             .where(orders_t.c.contact_id == contact_id).order_by(orders_t.c.id))]
    get_pm().hook.contact_erased(conn=conn, settings=settings, contact_id=contact_id)

    if reason == REQUEST:
        secret = settings.require_secret_key()
        keys = {consent.address_hash(kind, value, secret): kind for kind, value in idents}
        keys.update({consent.address_hash(REF, ref_value(s, e), secret): REF for s, e in refs})
        keys.update({consent.address_hash(ORDER, ref_value(s, e), secret): ORDER for s, e in deals})
        if keys:
            ins = insert_for(conn, keys_t).on_conflict_do_nothing(index_elements=["value_hash"])
            conn.execute(ins, [{"value_hash": h, "kind": k, "erasure_id": erasure_id, "created_at": now}
                               for h, k in keys.items()])
        for kind, value in idents:
            consent.suppress(conn, kind, value, reason="erasure", source="gdpr", secret=secret)
        report.suppressed = len(idents)
        report.tombstone_keys = len(keys)
    report.removed = _remove(conn, contact_id, now)
    return report, refs


def _remove(conn: Connection, contact_id: int, now: Any) -> dict[str, int]:
    """Delete or blank every piece of personal data Hub itself keeps about the contact; counts per kind."""
    removed: dict[str, int] = {}
    # Where the person works: the links go (the companies are the business's).
    conn.execute(delete(ContactCompany.__table__).where(ContactCompany.__table__.c.contact_id == contact_id))
    members, logged = CompanyMembership.__table__.c, Activity.__table__.c
    # Calls, meetings and letters logged with the person say when and how they were reached: they go,
    # also those a sync kept under the person's CRM id without linking them yet.
    removed["activities"] = conn.execute(
        delete(Activity.__table__).where(logged.contact_id == contact_id)).rowcount
    for source, external_id in conn.execute(select(refs_t.c.source, refs_t.c.external_id)
                                            .where(refs_t.c.contact_id == contact_id)).all():
        conn.execute(delete(CompanyMembership.__table__).where(members.source == source,
                                                               members.contact_external_id == external_id))
        removed["activities"] += conn.execute(delete(Activity.__table__).where(
            logged.source == source, logged.contact_external_id == external_id)).rowcount
    removed["identities"] = conn.execute(delete(identities_t).where(identities_t.c.contact_id == contact_id)).rowcount
    removed["external_refs"] = conn.execute(delete(refs_t).where(refs_t.c.contact_id == contact_id)).rowcount
    # The ledger is append-only, except here: an erased person's answers are personal data too.
    removed["consent_events"] = conn.execute(delete(events_t).where(events_t.c.contact_id == contact_id)).rowcount
    consent.restate(conn, [contact_id])  # and the current answers kept beside them
    removed["consent_requests"] = conn.execute(
        delete(requests_t).where(requests_t.c.contact_id == contact_id)).rowcount
    # Staff's notes on the card are about the person: they go (the tombstone keeps the row, so no cascade).
    removed["notes"] = conn.execute(
        delete(ContactNote.__table__).where(ContactNote.__table__.c.contact_id == contact_id)).rowcount
    # Messages stay (statuses and keys keep a campaign from sending again) without what they said or where.
    removed["messages"] = conn.execute(
        update(messages_t).where(messages_t.c.contact_id == contact_id,
                                 or_(messages_t.c.address.is_not(None), messages_t.c.body_text != "",
                                     messages_t.c.body_html.is_not(None), messages_t.c.subject.is_not(None)))
        .values(address=None, subject=None, body_text="", body_html=None, error=None, meta={}, updated_at=now)
    ).rowcount
    conn.execute(update(messages_t).where(messages_t.c.contact_id == contact_id,
                                          messages_t.c.status.in_(("queued", "deferred")))
                 .values(status="suppressed", error="not sent: the person was erased on request", updated_at=now))
    # Orders are the business's records; they lose the person and anything written about them.
    removed["orders"] = conn.execute(
        update(orders_t).where(orders_t.c.contact_id == contact_id)
        .values(contact_id=None, contact_external_id=None, title=None, updated_at=now)).rowcount
    merges = _merges_to_scrub(conn, contact_id)
    for merge_id, reason in merges:
        conn.execute(update(merges_t).where(merges_t.c.id == merge_id)
                     .values(snapshot={}, reason={"rule": (reason or {}).get("rule"), "erased": True}))
    removed["merges"] = len(merges)
    conn.execute(delete(SegmentMember.__table__).where(SegmentMember.__table__.c.contact_id == contact_id))
    conn.execute(delete(LeadScore.__table__).where(LeadScore.__table__.c.contact_id == contact_id))
    blank = {name: None for name in identity.FIELDS}
    # The row itself stays as the tombstone: ids in orders, messages and the audit log keep pointing somewhere.
    conn.execute(update(contacts_t).where(contacts_t.c.id == contact_id)
                 .values(**blank, name_key=None, timezone=None, tags=[], attributes={}, provenance={},
                         orders_count=0, revenue=0, first_order_at=None, last_order_at=None, updated_at=now,
                         deleted_at=func.coalesce(contacts_t.c.deleted_at, now)))
    return removed


def _merges_to_scrub(conn: Connection, contact_id: int) -> list[tuple[int, Any]]:
    """Merges involving the contact that still hold a snapshot or the identifiers that tied them."""
    rows = conn.execute(select(merges_t.c.id, merges_t.c.reason, merges_t.c.snapshot).where(
        or_(merges_t.c.survivor_id == contact_id, merges_t.c.merged_id == contact_id)))
    return [(r.id, r.reason) for r in rows if r.snapshot or not (r.reason or {}).get("erased")]


# What a CRM answered, for the audit log and --json: "deleted", "anonymised", "gone" (the CRM no
# longer held the record), "failed: <category>" or "cannot erase" (no plugin for it, or one that cannot erase).
DELETED, ANONYMISED, GONE, CANNOT = "deleted", "anonymised", "gone", "cannot erase"
# Anonymised, but some call notes there still hold a phone (amoCRM would not edit them): not confirmed, asked again.
CALLS_KEPT = "anonymised; call notes kept"
CONFIRMED = (DELETED, ANONYMISED, GONE)
FAILED = "failed"
# Why a CRM did not erase, as a category: its own text may echo the person's phone or name, so it is never kept.
UNREACHABLE, NOT_ALLOWED, REFUSED = "unreachable", "not allowed", "refused"
OUTCOME_UNKNOWN, UNEXPECTED, ERROR = "outcome unknown", "unexpected answer", "error"
# How `erase` left the CRMs (ErasureReport.crm).
ASKED, QUEUED, NONE_KNOWN, ALL_ERASED = "asked", "queued", "none_known", "all_erased"
# Product names for the people-facing answer; a source not named here is shown by its technical name.
PRODUCTS = {"bitrix24": N_("Bitrix24"), "amocrm": "amoCRM"}


def _delete_in_sources(settings: Settings, refs: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """Ask each CRM holding the person to erase them; one outcome per reference.

    A source implementing hub.api.Erasing erases (Bitrix24 deletes; amoCRM, whose
    API cannot delete a contact, anonymises); one with only the older
    `delete_contact(external_id)` deletes. A refusal is recorded, not raised:
    Hub's own erasure has committed, and its keys keep a later sync from
    bringing the person back even while the CRM still holds them.
    """
    # not in hub.api on purpose: erasure asks every source to erase the person in its CRM too
    from hub.plugins import sources

    factories = sources()
    out = []
    for source_name, external_id in refs:
        item = {"source": source_name, "external_id": external_id}
        factory = factories.get(source_name)
        if factory is None:
            out.append({**item, "result": CANNOT, "detail": "not a connected source"})
            continue
        try:
            source = factory(settings)
            if isinstance(source, Erasing):
                answer = str(source.erase_contact(external_id) or "").strip().lower()
                result = {"anonymized": ANONYMISED}.get(answer, answer)
                if result not in CONFIRMED and result != CALLS_KEPT:
                    result = f"{FAILED}: {UNEXPECTED}"
            elif callable(getattr(source, "delete_contact", None)):
                source.delete_contact(external_id)
                result = DELETED
            else:
                out.append({**item, "result": CANNOT, "detail": "the source cannot erase contacts"})
                continue
        except Exception as exc:  # noqa: BLE001 - reported per source; Hub's own erasure stands
            result = f"{FAILED}: {failure(exc)}"
            log.warning("erasing a contact in %s failed: %s (%s)", source_name, type(exc).__name__, result)
        out.append({**item, "result": result})
    return out


_NOT_ALLOWED_STATUS = (401, 402, 403)
_NOT_ALLOWED_CODES = ("ACCESS_DENIED", "INSUFFICIENT_SCOPE", "INVALID_CREDENTIALS", "EXPIRED_TOKEN", "NO_AUTH_FOUND",
                      "INVALID_TOKEN", "PAYMENT_REQUIRED")
_NOT_ALLOWED_NAMES = ("auth", "needsuseraction", "blocked", "paymentrequired", "notconnected", "forbidden")
_UNREACHABLE_NAMES = ("unreachable", "unavailable", "timeout", "connectionerror")


def failure(exc: BaseException) -> str:
    """What kind of failure a CRM's exception is, from its class and HTTP status, never from its text.

    Plugins' error classes are recognised by their names and `status`/`code`
    attributes (Bitrix24's NeedsUserAction and Unreachable, amoCRM's
    AmoAuthError and AmoUnavailable, ...), as a stranger's plugin would be.
    """
    names = [k.__name__.lower() for k in type(exc).__mro__]
    response = getattr(exc, "response", None)
    status = getattr(exc, "status", None) or getattr(response, "status_code", None)
    status = status if isinstance(status, int) else None
    code = str(getattr(exc, "code", "") or "").upper()
    if any("outcomeunknown" in n for n in names):
        return OUTCOME_UNKNOWN
    if (isinstance(exc, PermissionError) or status in _NOT_ALLOWED_STATUS or code in _NOT_ALLOWED_CODES
            or any(w in n for n in names for w in _NOT_ALLOWED_NAMES)):
        return NOT_ALLOWED
    if (isinstance(exc, (ConnectionError, TimeoutError, requests.ConnectionError, requests.Timeout))
            or (status is not None and (status == 429 or status >= 500))
            or any(w in n for n in names for w in _UNREACHABLE_NAMES)):
        return UNREACHABLE
    if status is not None or code or type(exc).__module__ != "builtins":
        return REFUSED  # the CRM (or its plugin) answered and said no
    return ERROR


def product(source: str) -> str:
    """A source as people know it (Битрикс24, amoCRM)."""
    return gettext(PRODUCTS[source]) if source in PRODUCTS else source


def describe(item: dict[str, str]) -> str:
    """One CRM's answer in the reader's language, saying what happened there and what was not possible."""
    crm, result = product(item["source"]), item["result"]
    if result == DELETED:
        return gettext("deleted in %(crm)s", crm=crm)
    if result == ANONYMISED:
        return gettext("anonymised in %(crm)s: the %(crm)s API does not delete contacts, so the name was replaced, "
                       "phones and emails removed and a tag added", crm=crm)
    if result == CALLS_KEPT:
        return gettext("anonymised in %(crm)s, but some call notes there still hold the phone: clear them in "
                       "%(crm)s by hand", crm=crm)
    if result == GONE:
        return gettext("no longer in %(crm)s", crm=crm)
    if result.startswith(FAILED):
        return _failed(crm, result.partition(": ")[2])
    return gettext("%(crm)s cannot erase contacts through Hub: erase the person there by hand", crm=crm)


def _failed(crm: str, category: str) -> str:
    if category == UNREACHABLE:
        return gettext("not erased in %(crm)s: it could not be reached; run the erasure again later", crm=crm)
    if category == NOT_ALLOWED:
        return gettext("not erased in %(crm)s: Hub's connection is not allowed to delete contacts there", crm=crm)
    if category == REFUSED:
        return gettext("not erased in %(crm)s: it refused the request", crm=crm)
    if category == OUTCOME_UNKNOWN:
        return gettext("%(crm)s did not say whether the person was erased; run the erasure again to make sure",
                       crm=crm)
    if category == UNEXPECTED:
        return gettext("not erased in %(crm)s: its answer was not one Hub understands", crm=crm)
    return gettext("not erased in %(crm)s: an error in its plugin (see Hub's log)", crm=crm)


def describe_crm(report: ErasureReport) -> str | None:
    """What `erase` did about the CRMs apart from their answers, in the reader's language (None: nothing to say)."""
    if report.crm == NONE_KNOWN:
        return gettext("Hub knows no CRM record of contact #%(id)s, so no CRM was asked: if a CRM still holds the "
                       "person, erase them there by hand.", id=report.contact_id)
    if report.crm == ALL_ERASED:
        return gettext("Every CRM that held contact #%(id)s has already confirmed the erasure.", id=report.contact_id)
    if report.crm == QUEUED:
        return gettext("The request to the CRM is sent; its answer will be in the audit log.")
    return None


# --- keeping erased people out --------------------------------------------------------------

_ANY_KEY = select(keys_t.c.value_hash).limit(1)


def refuse_erased(conn: Connection, settings: Settings | None, prepared: Sequence[identity.Prepared]) -> set[int]:
    """The records of a sync or import chunk that carry an erased person's phone, email or reference."""
    if not prepared or conn.execute(_ANY_KEY).first() is None:
        return set()
    if settings is None:
        raise RuntimeError("identity.resolve needs the settings to recognise erased people (erased_keys is not empty)")
    secret = settings.require_secret_key()
    wanted: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(prepared):
        for kind, value in p.keys:
            wanted[consent.address_hash(kind, value, secret)].append(i)
    return {i for digest in _known(conn, wanted) for i in wanted[digest]}


def refuse_linked_to_erased(conn: Connection, settings: Settings | None,
                            orders: Sequence[OrderRecord | ActivityRecord]) -> set[int]:
    """The orders (or activities) of a sync chunk that belong to an erased person's record in that source.

    An activity logged on a deal may name no person, only the deal: it is
    refused when the deal was the erased person's (ORDER keys, kept at the
    erasure), since its subject or the manager's note may still name them.
    """
    if not orders or conn.execute(_ANY_KEY).first() is None:
        return set()
    if settings is None:
        raise RuntimeError("writing orders needs the settings to recognise erased people (erased_keys is not empty)")
    secret = settings.require_secret_key()
    wanted: dict[str, list[int]] = defaultdict(list)
    for i, order in enumerate(orders):
        if order.contact_external_id:
            wanted[consent.address_hash(REF, ref_value(order.source, order.contact_external_id), secret)].append(i)
        deal = getattr(order, "order_external_id", None)
        if deal:
            wanted[consent.address_hash(ORDER, ref_value(order.source, deal), secret)].append(i)
    return {i for digest in _known(conn, wanted) for i in wanted[digest]}


def _known(conn: Connection, digests: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for part in chunks(list(digests), 1000):
        found.update(conn.execute(select(keys_t.c.value_hash).where(keys_t.c.value_hash.in_(part))).scalars())
    return found
