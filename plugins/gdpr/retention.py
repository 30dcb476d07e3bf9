"""Retention: personal data Hub no longer needs is deleted or anonymized once it passes its age.

What ages, and the setting under `[gdpr.retention]` (days; 0 or "off" turns a rule off):

    messages_days = 365            sent, failed and suppressed messages lose their address,
                                   subject and text (the row stays, so a campaign never resends)
    sync_runs_days = 180           finished sync and import runs are deleted (their errors quote records)
    merge_snapshots_days = 365     merges forget the snapshot of the merged contact and the identifiers
                                   that tied them (who merged with whom stays)
    consent_requests_days = 30     signup requests are deleted (their links expired after 7 days;
                                   the consent ledger keeps the evidence); one never confirmed goes
                                   with the hidden placeholder contact it was waiting on
    inactive_contacts_days = off   contacts with no current granted consent, no order and no change
                                   for this long are anonymized like an erasure, without tombstone

Inactive contacts are off unless set: a quiet customer may come back, and the
decision to forget them is the business's. `hub gdpr retention --dry-run`
counts without changing anything.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from sqlalchemy import Connection, Engine, and_, delete, func, or_, select, update

# not in hub.api on purpose: erasure and public sign-up work on identities, placeholders and merges
from hub import identity
from hub.api import Contact, Message, Settings, SettingsError, chunks, gettext, utcnow
# not in hub.api on purpose: erasure forgets rows the way the core does (forget_deleted)
from hub.db import forget_deleted
# not in hub.api on purpose: export and erasure reach every core table that holds personal data
from hub.models import ConsentEvent, ContactMerge, Erasure, SyncRun
from plugins.gdpr import audit, capture, config, erasure
from plugins.gdpr.models import ConsentRequest

messages_t = Message.__table__
runs_t = SyncRun.__table__
merges_t = ContactMerge.__table__
requests_t = ConsentRequest.__table__
contacts_t = Contact.__table__
events_t = ConsentEvent.__table__
erasures_t = Erasure.__table__

DEFAULTS: dict[str, int | None] = {
    "messages_days": 365,
    "sync_runs_days": 180,
    "merge_snapshots_days": 365,
    "consent_requests_days": 30,
    "inactive_contacts_days": None,
}
FINISHED_MESSAGES = ("sent", "failed", "suppressed")
BATCH = 500


@dataclass
class RetentionReport:
    dry_run: bool
    cutoffs: dict[str, str | None] = field(default_factory=dict)
    messages: int = 0
    sync_runs: int = 0
    merge_snapshots: int = 0
    consent_requests: int = 0
    inactive_contacts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ages(settings: Settings) -> dict[str, int | None]:
    """Each rule's age in days (None: off), checked."""
    own = config.table(settings, "retention")
    unknown = sorted(set(own) - set(DEFAULTS))
    if unknown:
        raise SettingsError(gettext("[gdpr.retention]: unknown setting %(name)r; known: %(known)s", name=unknown[0],
                              known=", ".join(DEFAULTS)))
    out: dict[str, int | None] = {}
    for name, default in DEFAULTS.items():
        raw = own.get(name, default)
        if raw is None or raw is False or str(raw).strip().lower() in ("off", "0", ""):
            out[name] = None
            continue
        try:
            days = int(str(raw).strip())
        except ValueError:
            raise SettingsError(gettext('[gdpr.retention] %(name)s: %(value)r is not a number of days (or "off")',
                                  name=name, value=raw)) from None
        if days < 0:
            raise SettingsError(gettext("[gdpr.retention] %(name)s: %(days)s is negative", name=name, days=days))
        out[name] = days
    if out["consent_requests_days"] is not None and out["consent_requests_days"] < 8:
        raise SettingsError(gettext("[gdpr.retention] consent_requests_days: keep them at least 8 days, longer than a "
                              "confirmation link lives"))
    return out


def run(engine: Engine, settings: Settings, *, dry_run: bool = False, actor: str = "cli",
        now: dt.datetime | None = None) -> RetentionReport:
    """Apply every rule that is on; with `dry_run`, only count what would change."""
    now = now or utcnow()
    report = RetentionReport(dry_run=dry_run)
    cutoff: dict[str, dt.datetime | None] = {}
    for name, days in ages(settings).items():
        moment = now - dt.timedelta(days=days) if days is not None else None
        cutoff[name] = moment
        report.cutoffs[name.removesuffix("_days")] = moment.isoformat() if moment else None

    rules: list[tuple[str, str, Callable[..., int]]] = [
        ("messages", "messages_days", _messages),
        ("sync_runs", "sync_runs_days", _sync_runs),
        ("merge_snapshots", "merge_snapshots_days", _merge_snapshots),
        ("consent_requests", "consent_requests_days", _consent_requests),
    ]
    for counter, name, rule in rules:
        if cutoff[name] is not None:
            with engine.begin() as conn:
                setattr(report, counter, rule(conn, cutoff[name], dry_run, now))
    if cutoff["inactive_contacts_days"] is not None:
        report.inactive_contacts = _inactive_contacts(engine, settings, cutoff["inactive_contacts_days"], dry_run,
                                                      actor)
    if not dry_run:
        with engine.begin() as conn:
            audit.record(conn, actor, "gdpr.retention", None,
                         **{k: v for k, v in report.as_dict().items() if k not in ("dry_run", "cutoffs")})
        forget_deleted(engine)  # what aged out leaves SQLite's -wal file now, as an erasure does
    return report


def _count_or(conn: Connection, dry_run: bool, table: Any, where: Any, change: Any) -> int:
    if dry_run:
        return conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
    return conn.execute(change.where(where)).rowcount


def _messages(conn: Connection, cutoff: dt.datetime, dry_run: bool, now: dt.datetime) -> int:
    t = messages_t
    where = and_(t.c.status.in_(FINISHED_MESSAGES), t.c.created_at < cutoff,
                 or_(t.c.address.is_not(None), t.c.body_text != "", t.c.body_html.is_not(None),
                     t.c.subject.is_not(None)))
    return _count_or(conn, dry_run, t, where, update(t).values(address=None, subject=None, body_text="",
                                                               body_html=None, error=None, meta={}, updated_at=now))


def _sync_runs(conn: Connection, cutoff: dt.datetime, dry_run: bool, now: dt.datetime) -> int:
    where = and_(runs_t.c.status != "running", runs_t.c.started_at < cutoff)
    return _count_or(conn, dry_run, runs_t, where, delete(runs_t))


def _merge_snapshots(conn: Connection, cutoff: dt.datetime, dry_run: bool, now: dt.datetime) -> int:
    rows = conn.execute(select(merges_t.c.id, merges_t.c.reason, merges_t.c.snapshot)
                        .where(merges_t.c.at < cutoff)).all()
    stale = [(r.id, r.reason or {}) for r in rows if r.snapshot or "keys" in (r.reason or {})]
    if not dry_run:
        for merge_id, reason in stale:
            kept = {k: v for k, v in reason.items() if k != "keys"}
            conn.execute(update(merges_t).where(merges_t.c.id == merge_id).values(snapshot={}, reason=kept))
    return len(stale)


def _consent_requests(conn: Connection, cutoff: dt.datetime, dry_run: bool, now: dt.datetime) -> int:
    old = requests_t.c.created_at < cutoff
    if dry_run:
        return _count_or(conn, dry_run, requests_t, old, delete(requests_t))
    # A signup never confirmed goes with its hidden placeholder contact; the rest lose only the request.
    unconfirmed = conn.execute(select(requests_t.c.id, requests_t.c.contact_id)
                               .where(old, requests_t.c.confirmed_at.is_(None))).all()
    signups = [row for row in unconfirmed if identity.is_placeholder(conn, row.contact_id)]
    for row in signups:
        capture.drop_signup(conn, row.id, row.contact_id, why="not sent: the signup expired unconfirmed")
    return len(signups) + conn.execute(delete(requests_t).where(old)).rowcount


def _inactive_contacts(engine: Engine, settings: Settings, cutoff: dt.datetime, dry_run: bool, actor: str) -> int:
    c = contacts_t
    quiet = and_(c.c.created_at < cutoff, c.c.updated_at < cutoff,
                 or_(c.c.last_order_at.is_(None), c.c.last_order_at < cutoff),
                 ~select(erasures_t.c.id).where(erasures_t.c.contact_id == c.c.id).exists())
    with engine.connect() as conn:
        candidates = list(conn.execute(select(c.c.id).where(quiet).order_by(c.c.id)).scalars())
        chosen = [cid for part in chunks(candidates, BATCH) for cid in _without_consent(conn, part)]
    if dry_run:
        return len(chosen)
    for part in chunks(chosen, BATCH):
        with engine.begin() as conn:
            for contact_id in part:
                erasure.anonymize(conn, settings, contact_id, actor=actor)
    return len(chosen)


def _without_consent(conn: Connection, contact_ids: Any) -> list[int]:
    """Those of these contacts whose every current consent answer is something other than granted."""
    latest: dict[tuple[int, str, str], str] = {}
    rows = conn.execute(select(events_t.c.contact_id, events_t.c.channel, events_t.c.purpose, events_t.c.status)
                        .where(events_t.c.contact_id.in_(list(contact_ids)))
                        .order_by(events_t.c.at, events_t.c.id))
    for cid, channel, purpose, status in rows:
        latest[(cid, channel, purpose)] = status
    granted: dict[int, bool] = defaultdict(bool)
    for (cid, _, _), status in latest.items():
        granted[cid] |= status == "granted"
    return [cid for cid in contact_ids if not granted[cid]]



def scheduled(when: Any) -> dict[str, Any]:
    """The daily run of `hub scheduler` (`when` is a ``hub.schedule.ScheduledRun``).

    Nothing to do while every rule is off.
    """
    if all(days is None for days in ages(when.settings).values()):
        return {"rules on": 0}
    report = run(when.engine, when.settings, actor="scheduler", now=when.now)
    return {k: v for k, v in report.as_dict().items() if k not in ("cutoffs", "dry_run")}
