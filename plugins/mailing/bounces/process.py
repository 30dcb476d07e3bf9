"""One pass over the bounce mailbox: read, match, act, then file the letters away.

Per batch of letters: parse each (dsn), find the message each is about
(match, two queries for the whole batch), and record every bounce, soft
bounce and complaint through ``hub.api.record_message_events`` in ONE
transaction. Only after the commit are the letters moved: handled ones to
the done folder, the rest flagged for a person. A crash between the commit
and the move leaves the letters in place; the next pass reads them again and
their uid (the report's own Message-ID) makes that harmless.

Left for a person: what cannot be read, and reports Hub cannot tie to one of
its messages (a bounce for an address Hub never wrote to, a forged one, one
about a message sent by some other program using the same mailbox).
Auto-replies are filed away unread: they say nothing about the address.
Success notices (a server saying it delivered the letter) are filed away
too, with a harmless ``delivered`` event when they name one of Hub's
letters.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine

from hub.api import (HeardAboutMessage, Settings, SettingsError, enqueue, get_engine, gettext, load_settings,
                     schedule_interval,
                     record_message_events, utcnow)
from plugins.mailing.bounces import dsn, match
from plugins.mailing.bounces.imap import BounceMailbox, ImapSettings

BATCH = 500
RECORDED = {dsn.BOUNCE: "bounces", dsn.SOFT_BOUNCE: "soft_bounces", dsn.COMPLAINT: "complaints",
            dsn.DELIVERED: "delivery_notices"}
JOB_ID = "mail-bounces"


@dataclass
class Summary:
    """What one pass did; `left_for_person` is everything flagged in the mailbox, from this pass or before."""

    read: int = 0
    bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    auto_replies: int = 0
    delivery_notices: int = 0
    unmatched: int = 0
    refused: int = 0  # the provider refused the letter itself (spam filter, sender checks): left for a person
    unreadable: int = 0
    duplicates: int = 0
    left_for_person: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def mailbox_settings(settings: Settings) -> ImapSettings:
    """The bounce mailbox to read; a clear error naming the setting when there is none."""
    config = ImapSettings.from_settings(settings)
    if config is None:
        raise SettingsError(gettext("HUB_BOUNCE_IMAP_HOST is not set: Hub does not know which mailbox receives "
                                    "bounces and complaints (set HUB_BOUNCE_IMAP_HOST, HUB_BOUNCE_IMAP_USER and "
                                    "HUB_BOUNCE_IMAP_PASSWORD)"))
    return config


def run(engine: Engine, settings: Settings, config: ImapSettings | None = None, *, limit: int | None = None,
        progress: Callable[[int], Any] | None = None) -> Summary:
    """Read what waits in the bounce mailbox (at most `limit` letters) and act on it."""
    config = config or mailbox_settings(settings)
    summary = Summary()
    size = BATCH if limit is None else max(1, min(BATCH, limit))
    with BounceMailbox(config) as box:
        if limit is None or limit > 0:
            for batch in box.waiting(batch=size):
                if limit is not None:
                    batch = batch[: limit - summary.read]
                handled, left = handle(engine, settings, batch, summary)
                box.done(handled)
                box.leave_for_person(left)
                if progress is not None:
                    progress(len(batch))
                if limit is not None and summary.read >= limit:
                    break
        summary.left_for_person = box.count_for_person()
    return summary


def handle(engine: Engine, settings: Settings, batch: Sequence[tuple[str, bytes]],
           summary: Summary) -> tuple[list[str], list[str]]:
    """Act on one batch in one transaction; returns the uids to file away and those to leave for a person."""
    reports = [(uid, dsn.parse(raw)) for uid, raw in batch]
    summary.read += len(reports)
    handled: list[str] = []
    left: list[str] = []
    actionable = [(uid, r) for uid, r in reports if r.kind in RECORDED]
    for uid, report in reports:
        if report.kind == dsn.AUTO_REPLY:
            summary.auto_replies += 1
            handled.append(uid)
        elif report.kind == dsn.REFUSED:
            summary.refused += 1
            left.append(uid)
        elif report.kind not in RECORDED:
            summary.unreadable += 1
            left.append(uid)
    if not actionable:
        return handled, left
    now = utcnow()
    with engine.begin() as conn:
        found = match.matches(conn, settings, [r for _, r in actionable])
        tied = [(uid, report, matched) for (uid, report), matched in zip(actionable, found, strict=True)
                if matched is not None]
        for (uid, report), matched in zip(actionable, found, strict=True):
            if matched is None and report.kind == dsn.DELIVERED:  # good news about nobody's letter: filed away
                summary.delivery_notices += 1
                handled.append(uid)
            elif matched is None:
                summary.unmatched += 1
                left.append(uid)
        done = record_message_events(conn, settings, [
            HeardAboutMessage(matched.message_id, report.kind, at=_when(report.reported_at, now, matched.sent_at),
                              detail=_detail(report, matched), uid=report.uid)
            for _uid, report, matched in tied])
        for (uid, report, _matched), recorded in zip(tied, done, strict=True):
            if recorded is None and report.kind == dsn.DELIVERED:
                summary.delivery_notices += 1
                handled.append(uid)
            elif recorded is None:  # deleted since the match: nothing to act on, a person may look
                summary.unmatched += 1
                left.append(uid)
            elif recorded.duplicate:
                summary.duplicates += 1
                handled.append(uid)
            else:
                setattr(summary, RECORDED[report.kind], getattr(summary, RECORDED[report.kind]) + 1)
                handled.append(uid)
    return handled, left


def _when(reported_at: dt.datetime | None, now: dt.datetime, sent_at: dt.datetime | None = None) -> dt.datetime:
    """The report's own date, unless it cannot be true: in the future, or before the letter was sent.

    A wrong clock or a forged Date header must not put a bounce where it
    never happened (reports, segment fields and the soft-bounce window read
    the time); then the time Hub read the report stands.
    """
    if reported_at is None or reported_at > now:
        return now
    if sent_at is not None and reported_at < sent_at:
        return now
    return reported_at


def _detail(report: dsn.Report, matched: match.Matched) -> dict[str, Any]:
    """What the event keeps: the provider's verdict, no other addresses; nothing at all once the person is erased."""
    if matched.address is None:
        return {}
    detail = {"status": report.status, "action": report.action, "diagnostic": report.diagnostic,
              "feedback_type": report.feedback_type, "reporter": report.reporter,
              "reason": report.diagnostic or report.status or report.kind}
    return {key: value for key, value in detail.items() if value}


# --- the schedule ------------------------------------------------------------------------------

DEFAULT_INTERVAL_S = 300


def interval_s(settings: Settings) -> int:
    """Seconds between passes (HUB_BOUNCE_INTERVAL_S, default 300; 0 turns the schedule off)."""
    return int(schedule_interval(settings, "bounce_interval_s", DEFAULT_INTERVAL_S).total_seconds())


def scheduled(when: Any) -> dict[str, Any]:
    """The scheduler's tick (`when` is a hub.api.ScheduledRun): hand the pass to a worker, never run it here."""
    settings = when.settings
    done = enqueue(settings, job, None if settings.redis_url else settings, queue="low", job_id=JOB_ID,
                   background=True)
    return {"mail_bounces": "started" if done.inline else "enqueued"}


_pids: dict[str, int] = {}


def job(settings: Settings | None = None) -> dict[str, int]:
    """One pass as a queue job: on a worker it reads the settings afresh, like every Hub job."""
    settings = settings or load_settings()
    engine = get_engine(settings.database_url)
    if _pids.get(settings.database_url) != os.getpid():  # a forked work-horse: not its parent's connections
        engine.dispose(close=False)
        _pids[settings.database_url] = os.getpid()
    return run(engine, settings).as_dict()
