"""SMS delivery reports: asked of the provider on a schedule, or received from it on a callback URL.

A report is a message event (hub.api.record_message_event): "delivered";
"undelivered" with the provider's reason; "bounce" when the provider says
the number does not exist, which suppresses it like a refusal at sending.
Each report is recorded once (uid: provider, id and status), and the cost it
names is written to messages.cost. A message's first final report stands: a
later one that contradicts it (a callback saying "undelivered" after
"delivered", a replayed or forged one) is counted as ignored and changes
nothing, so it can never suppress a number that took the message.

A report finds its message by the provider's id and, where the number is
known, the number too: SMSC.ru numbers its messages so that only id and
phone together name one, and two providers' numeric ids can coincide after
a switch. A poll knows the number it asked about; an SMSC.ru callback names
it; SMS.ru's ids are unique on their own.

Polling (HUB_SMS_STATUS_INTERVAL_S, default 300 s, 0 turns it off) asks
about SMS sent in the last 72 hours through the configured preset that have
no final report yet, in the batches the provider takes. The provider asked
is the one configured now: after switching providers the old one's messages
are no longer asked about.

Callbacks (SMS.ru and SMSC.ru can POST each status): the URL
HUB_PUBLIC_URL/sms/status/PROVIDER/SECRET, SECRET being
HUB_SMS_CALLBACK_SECRET (no secret set: the route answers 404). A wrong
secret is refused with 403, a body that is not a report with 400; an id Hub
did not send is answered 200 and ignored, so the provider stops retrying.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from dataclasses import replace
from typing import Any, Iterable

from flask import Blueprint, request
from sqlalchemy import Connection, Engine, and_, exists, func, select, update

from hub.api import (N_, Message, MessageEvent, Schedule, ScheduledRun, Settings, current_settings, enqueue, get_engine,
                     load_settings, record_message_event, schedule_interval, utcnow)
from plugins.mailing import sms

log = logging.getLogger(__name__)
messages_t = Message.__table__
events_t = MessageEvent.__table__

DEFAULT_INTERVAL_S = 300
WINDOW = dt.timedelta(hours=72)
FINAL_KINDS = ("delivered", "undelivered", "bounce")
MAX_PER_RUN = 5000  # messages asked about per run; the rest wait for the next one
MAX_CALLBACK_BYTES = 64 * 1024
CALLBACK_PROVIDERS = ("smsru", "smsc")

bp = Blueprint("sms_reports", __name__)


def interval(settings: Settings) -> dt.timedelta:
    """HUB_SMS_STATUS_INTERVAL_S (0 turns polling off)."""
    return schedule_interval(settings, "sms_status_interval_s", DEFAULT_INTERVAL_S)


def schedule(settings: Settings) -> Schedule:
    """Polling, on only with a preset that reports statuses (a zero interval is how a schedule is off)."""
    every = interval(settings)
    provider = str(settings.extra.get("sms_provider") or "").strip().lower()
    if provider not in ("smsru", "smsc", "smsaero"):
        every = dt.timedelta(0)
    return Schedule(every, scheduled, N_("ask the SMS provider for delivery reports ([HUB_SMS_STATUS_INTERVAL_S])"),
                    N_("SMS delivery reports"))


def scheduled(run: ScheduledRun) -> dict[str, Any]:
    """The schedule hands the asking to a worker (or runs it here without Redis)."""
    done = enqueue(run.settings, poll_job, None if run.settings.redis_url else run.settings, queue="low",
                   job_id="mailing-sms-status")
    return {"sms_status": "started" if done.inline else "enqueued"}


def poll_job(settings: Settings | None = None) -> dict[str, int]:
    """The queue job: settings read afresh in a worker."""
    settings = settings or load_settings()
    return poll(get_engine(settings.database_url), settings)


def waiting(conn: Connection, now: dt.datetime, limit: int = MAX_PER_RUN, turn: int = 0) -> list[tuple[str, str]]:
    """(provider id, phone) of SMS sent within the window with no final report, oldest first: one page of them.

    More than `limit` waiting are asked about a page per run in turn (`turn`
    counts the runs), so SMS the provider never gives a final word about
    cannot keep the newer ones from being asked for the whole window.
    """
    m, e = messages_t.c, events_t.c
    final = exists().where(and_(e.message_id == m.id, e.kind.in_(FINAL_KINDS)))
    pending = and_(m.channel == "sms", m.status == "sent", m.provider_id.is_not(None), m.address.is_not(None),
                   m.sent_at >= now - WINDOW, ~final)
    offset = 0
    if turn:
        total = conn.execute(select(func.count()).select_from(messages_t).where(pending)).scalar_one()
        offset = (turn % max(1, -(-total // limit))) * limit
    rows = conn.execute(select(m.provider_id, m.address).where(pending).order_by(m.sent_at, m.id)
                        .offset(offset).limit(limit))
    return [(str(r.provider_id), str(r.address)) for r in rows]


def poll(engine: Engine, settings: Settings, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Ask the configured preset about every SMS still waiting for its report; record what it says."""
    channel = sms.preset_channel(settings)
    if channel is None:
        return {"asked": 0}
    counts = {"asked": 0, "delivered": 0, "undelivered": 0, "bounce": 0, "unmatched": 0}
    now = now or utcnow()
    every = interval(settings).total_seconds() or DEFAULT_INTERVAL_S
    with engine.connect() as conn:
        pending = waiting(conn, now, turn=int(now.timestamp() // every))
    try:
        for start in range(0, len(pending), channel.status_batch):
            batch = pending[start:start + channel.status_batch]
            reports = [r if r.phone else replace(r, phone=_asked_phone(batch, r.provider_id))
                       for r in channel.statuses(batch)]
            counts["asked"] += len(batch)
            with engine.begin() as conn:
                for key, n in apply(conn, settings, channel.provider, reports).items():
                    counts[key] = counts.get(key, 0) + n
    finally:
        channel.close()
    return counts


def _asked_phone(batch: list[tuple[str, str]], provider_id: str) -> str:
    """The number asked about with this id, when exactly one was (digits), else ""."""
    phones = {phone for pid, phone in batch if pid == provider_id}
    return phones.pop().lstrip("+") if len(phones) == 1 else ""


def apply(conn: Connection, settings: Settings, provider: str, reports: Iterable[sms.Report]) -> dict[str, int]:
    """Record final reports on their messages and write the cost they name; unknown ids are counted, not kept."""
    counts = {"delivered": 0, "undelivered": 0, "bounce": 0, "unmatched": 0, "duplicate": 0, "ignored": 0}
    for report in reports:
        m = messages_t.c
        which = select(m.id).where(m.channel == "sms", m.provider_id == report.provider_id)
        if report.phone:
            which = which.where(m.address.in_(("+" + report.phone, report.phone)))
        if conn.dialect.name == "postgresql":
            which = which.with_for_update()  # two callbacks about one message: the second waits and sees the first
        ids = list(conn.execute(which).scalars())
        if not ids:
            counts["unmatched"] += 1
            continue
        for message_id in ids:
            if report.cost is not None:
                conn.execute(update(messages_t).where(m.id == message_id).values(cost=report.cost))
            if report.kind is None:
                continue
            first = _first_final(conn, message_id)
            if first is not None and first != report.kind:
                counts["ignored"] += 1  # the first final report stands; this one is not acted on
                continue
            detail = {"provider": provider, "code": report.code, "reason": report.reason}
            # One event of each kind per message: a provider's several "delivered" codes are one delivery.
            done = record_message_event(conn, settings, message_id, report.kind, detail=detail,
                                        uid=f"sms:{provider}:{message_id}:{report.kind}"[:200])
            if done is not None and done.duplicate:
                counts["duplicate"] += 1
            elif done is not None:
                counts[report.kind] += 1
    return counts


def _first_final(conn: Connection, message_id: int) -> str | None:
    """The kind of the message's first final report, if it has one."""
    e = events_t.c
    return conn.execute(select(e.kind).where(e.message_id == message_id, e.kind.in_(FINAL_KINDS))
                        .order_by(e.id).limit(1)).scalar()


# --- callbacks -------------------------------------------------------------------------------

@bp.post("/sms/status/<provider>/<token>")
def callback(provider: str, token: str) -> Any:
    settings = current_settings()
    secret = str(settings.extra.get("sms_callback_secret") or "")
    if not secret or provider not in CALLBACK_PROVIDERS:
        return {"error": "not found"}, 404
    if not hmac.compare_digest(token.encode("utf-8", "replace"), secret.encode("utf-8")):
        log.warning("an SMS status callback for %s was refused: the secret in its URL is wrong", provider)
        return {"error": "forbidden"}, 403
    if (request.content_length or 0) > MAX_CALLBACK_BYTES:
        return {"error": "too large"}, 413
    try:
        parse = sms.SmsRuChannel.callback if provider == "smsru" else _smsc_callback()
        reports = parse(request.form)
    except ValueError as exc:
        return {"error": f"not a status report: {exc}"}, 400
    with get_engine(settings.database_url).begin() as conn:
        counts = apply(conn, settings, provider, reports)
    if provider == "smsru":
        return "100", 200, {"Content-Type": "text/plain"}  # SMS.ru repeats a callback not answered "100"
    return {"ok": True, **counts}, 200


def _smsc_callback() -> Any:
    from plugins.mailing.smsc import SmscChannel

    return SmscChannel.callback

