"""Delivering webhooks: one POST per delivery, retried with back-off for 24 hours, logged per attempt.

At least once: a delivery is enqueued when the transaction that wrote it
commits (hub.webhooks), and the sweep (a schedule, every minute) enqueues
whatever is due again: retries whose back-off is over, and deliveries whose
first enqueue was lost (the process died right after the commit, Redis was
away). Before it sends, a job claims the delivery for a short lease, so the
sweep and the first enqueue racing each other send it once, not twice.

Deliveries have a lane of their own: the RQ queue `webhooks` (which `hub
worker` listens to by default; a worker of its own is `hub worker --queue
webhooks`), or without Redis a background thread of their own. A dead
receiver with a backlog (up to 30 seconds an attempt) then delays other
deliveries, never signup letters or syncs. Jobs take up to BATCH deliveries
each: one enqueue per committed transaction, not one per event.

The receiver is not trusted: the address connected to is checked
(hub.webhooks.targets: no link-local, reserved, and without the setting no
loopback or private address), an attempt ends after TOTAL_S seconds whatever
the receiver does (well inside the LEASE, so the sweep never sends a
delivery a second time while its first attempt is still running), its answer
is read for the status code and, from a public address only, a short
snippet of the body; redirects are followed only to the same scheme, host
and port (and only 307/308, which keep the POST), and nothing logged names
the URL, which may carry the receiver's token.

Delivered and failed deliveries (with their attempts) are pruned by the
sweep once older than `webhooks_keep_days` (HUB_WEBHOOKS_KEEP_DAYS, 30).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
import time
from typing import Any, Callable, Iterable
from urllib.parse import urljoin, urlsplit

import requests
from sqlalchemy import Engine, delete, select, update

from hub import queue
from hub.config import Settings, load_settings
from hub.db import get_engine, utcnow
from hub.i18n import N_
from hub.webhooks import forget_subscriptions, signing, store, targets

log = logging.getLogger(__name__)
deliveries_t = store.deliveries_t
webhooks_t = store.webhooks_t
attempts_t = store.attempts_t

TIMEOUT_S = 10.0  # to connect, and for each read
TOTAL_S = 30.0  # for the whole attempt, redirects included: well inside LEASE
LEASE = dt.timedelta(minutes=2)  # a claimed delivery is not sent again before this, unless its attempt ends
QUEUE = "webhooks"  # the RQ queue, and the in-process lane, of deliveries
BATCH = 50  # deliveries per job
KEEP_DAYS = 30  # delivered and failed deliveries are kept this long (webhooks_keep_days)
PRUNE_BATCH = 5000
FIRST_RETRY = dt.timedelta(seconds=30)
LONGEST_WAIT = dt.timedelta(hours=1)
GIVE_UP_AFTER = dt.timedelta(hours=24)
SNIPPET = 200
MAX_REDIRECTS = 3
SWEEP_BATCH = 1000
SWITCHED_OFF = N_("switched off: every delivery failed for 24 hours")
GAVE_UP = store.GAVE_UP
USER_AGENT = "Hub-Webhooks/1"


def backoff(attempts: int, rand: Callable[[], float] = random.random) -> dt.timedelta:
    """The wait after the `attempts`-th failure: 30 s doubling up to an hour, with ±50 % jitter.

    The jitter spreads the retries of many deliveries that failed together
    (a receiver that was down) instead of sending them all at once again.
    """
    wait = min(FIRST_RETRY * (2 ** max(0, attempts - 1)), LONGEST_WAIT)
    return wait * (0.5 + rand())


def enqueue_uids(uids: Iterable[str], settings: Settings | None = None) -> int:
    """Hand deliveries to their lane, BATCH to a job: RQ's `webhooks` queue, or this process's own thread.

    In-process the job gets `settings` themselves (the database they name is the
    one the deliveries were written to); on RQ the worker reads its own. The job
    id is the batch's, so the sweep finding the same deliveries still waiting
    queues no second job.
    """
    settings = settings or load_settings()
    uids = list(uids)
    for start in range(0, len(uids), BATCH):
        part = uids[start:start + BATCH]
        job_id = "webhooks-" + hashlib.sha256(",".join(part).encode()).hexdigest()[:32]
        if settings.redis_url:
            queue.enqueue(settings, run_batch, part, queue=QUEUE, job_id=job_id)
        else:
            queue.enqueue(settings, attempt_all, part, settings, job_id=job_id, background=True, lane=QUEUE)
    return len(uids)


def run_batch(uids: list[str]) -> dict[str, int]:
    """The RQ job: one attempt at each delivery in `uids`, with the worker's own settings."""
    settings = load_settings()
    return attempt_all(uids, settings)


def attempt_all(uids: list[str], settings: Settings) -> dict[str, int]:
    """One attempt at each delivery; how many ended which way. One failure does not stop the others."""
    engine = get_engine(settings.database_url)
    outcome: dict[str, int] = {}
    for uid in uids:
        try:
            result = attempt(engine, settings, uid)
        except Exception:  # the sweep retries it; the batch goes on
            log.exception("webhook delivery %s failed unexpectedly", uid)
            result = "error"
        outcome[result] = outcome.get(result, 0) + 1
    return outcome


def run(uid: str) -> str:
    """One attempt at the delivery `uid`, with the settings read afresh (jobs queued before batches)."""
    settings = load_settings()
    return attempt(get_engine(settings.database_url), settings, uid)


def attempt(engine: Engine, settings: Settings, uid: str) -> str:
    """Try the delivery `uid` once if it is due; returns what became of it (delivered, pending, failed, …)."""
    now = utcnow()
    d = deliveries_t.c
    with engine.begin() as conn:
        row = conn.execute(select(d.id, d.webhook_id, d.payload, d.event, d.status, d.attempts, d.created_at,
                                  webhooks_t.c.url, webhooks_t.c.enabled)
                           .join(webhooks_t, webhooks_t.c.id == d.webhook_id).where(d.uid == uid)).first()
        if row is None:
            return "missing"
        if row.status != "pending":
            return str(row.status)
        if not row.enabled:
            return "off"
        claimed = conn.execute(update(deliveries_t).where(d.id == row.id, d.status == "pending",
                                                          d.next_attempt_at <= now)
                               .values(next_attempt_at=now + LEASE)).rowcount
        if not claimed:
            return "not due"
        secret = store.secret_of(conn, row.webhook_id, settings.require_secret_key())
    body = json.dumps(row.payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Hub-Event-Id": uid,
               "Hub-Event-Type": row.event, signing.HEADER: signing.sign(secret, int(time.time()), body)}
    began = time.monotonic()
    code, error = post(row.url, body, headers, allow_private=targets.allow_private(settings))
    duration_ms = int((time.monotonic() - began) * 1000)
    ok = code is not None and 200 <= code < 300
    return _record(engine, row, code, error, duration_ms, ok)


def _record(engine: Engine, row: Any, code: int | None, error: str | None, duration_ms: int, ok: bool) -> str:
    now = utcnow()
    d, w = deliveries_t.c, webhooks_t.c
    tries = row.attempts + 1  # for the back-off; the row counts with its own column
    with engine.begin() as conn:
        if ok:
            status = "delivered"
            values: dict[str, Any] = dict(status=status, attempts=d.attempts + 1, delivered_at=now,
                                          last_status_code=code, last_error=None)
        else:
            status = "failed" if now - row.created_at >= GIVE_UP_AFTER else "pending"
            values = dict(status=status, attempts=d.attempts + 1, last_status_code=code,
                          last_error=error if status == "pending" else f"{error}; {GAVE_UP}" if error else GAVE_UP,
                          next_attempt_at=now + backoff(tries))
        if not conn.execute(update(deliveries_t).where(d.id == row.id).values(**values)).rowcount:
            return "missing"  # the webhook was removed while this attempt ran
        conn.execute(attempts_t.insert().values(delivery_id=row.id, at=now, status_code=code, error=error,
                                                duration_ms=duration_ms))
        if ok:
            conn.execute(update(webhooks_t).where(w.id == row.webhook_id).values(failing_since=None))
            return status
        conn.execute(update(webhooks_t).where(w.id == row.webhook_id, w.failing_since.is_(None))
                     .values(failing_since=now))
        switch_off_failing(conn, now)
    return status


def post(url: str, body: bytes, headers: dict[str, str], *,
         allow_private: bool = False) -> tuple[int | None, str | None]:
    """POST `body`; (status code, None) on 2xx, else (status code or None, a short error without the URL).

    Only to addresses hub.webhooks.targets allows, and over within TOTAL_S seconds, whatever the receiver does.
    """
    with requests.Session() as session, targets.guarded(targets.Guard(allow_private, TOTAL_S)) as guard:
        session.trust_env = False  # no proxy from the environment: the checked peer is the receiver itself
        session.mount("http://", targets.GuardedAdapter(max_retries=0))
        session.mount("https://", targets.GuardedAdapter(max_retries=0))
        try:
            return _post(session, guard, url, body, headers)
        except (requests.RequestException, OSError) as exc:
            if guard.refused:
                return None, store.ADDRESS_REFUSED
            if guard.expired or isinstance(exc, requests.Timeout):
                return None, store.TIMED_OUT
            if isinstance(exc, requests.ConnectionError):
                return None, store.CONNECTION_FAILED
            return None, type(exc).__name__  # the message may hold the URL: only its kind is kept


def _post(session: requests.Session, guard: targets.Guard, url: str, body: bytes,
          headers: dict[str, str]) -> tuple[int | None, str | None]:
    target = url
    origin = _origin(url)
    for _hop in range(MAX_REDIRECTS + 1):
        timeout = min(TIMEOUT_S, guard.remaining())
        if timeout <= 0:
            return None, store.TIMED_OUT
        with session.post(target, data=body, headers=headers, timeout=timeout, allow_redirects=False,
                          stream=True) as answer:
            code = answer.status_code
            if answer.is_redirect:
                following = urljoin(target, answer.headers.get("Location", ""))
                if code in (307, 308) and _origin(following) == origin:
                    target = following
                    continue
                return code, store.REDIRECT_REFUSED
            if 200 <= code < 300:
                return code, None
            # What a service inside the network answers is not shown to people: the status code says enough.
            snippet = "" if guard.private_peer else _snippet(answer)
            if guard.expired:
                return None, store.TIMED_OUT
            return code, snippet or f"HTTP {code}"
    return None, store.TOO_MANY_REDIRECTS


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        return parts.scheme, (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", "", None


def _snippet(answer: requests.Response) -> str:
    """The first bytes of the receiver's answer, printable characters only: enough to say what went wrong."""
    try:
        raw = answer.raw.read(SNIPPET * 4, decode_content=True) or b""
    except Exception:  # noqa: BLE001 - the body is a courtesy; an unreadable one is no snippet
        return ""
    text = raw.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else " " for c in text).strip()[:SNIPPET]


# --- the sweep --------------------------------------------------------------------------------

def switch_off_failing(conn: Any, now: dt.datetime) -> int:
    """Switch off the webhooks that have failed for a whole day without one success."""
    w = webhooks_t.c
    off = conn.execute(update(webhooks_t).where(w.enabled.is_(True), w.failing_since.is_not(None),
                                                w.failing_since <= now - GIVE_UP_AFTER)
                       .values(enabled=False, disabled_at=now, disabled_reason=SWITCHED_OFF)).rowcount
    if off:
        forget_subscriptions(conn)
        log.warning("%s webhook(s) switched off after failing for 24 hours", off)
    return int(off)


def keep_days(settings: Settings) -> int:
    """How many days delivered and failed deliveries are kept: webhooks_keep_days, at least 1."""
    try:
        return max(1, int(settings.extra.get("webhooks_keep_days") or KEEP_DAYS))
    except (TypeError, ValueError):
        return KEEP_DAYS


def prune(engine: Engine, settings: Settings, now: dt.datetime) -> int:
    """Delete delivered and failed deliveries (with their attempts) older than keep_days, in small batches."""
    d, a = deliveries_t.c, attempts_t.c
    cutoff = now - dt.timedelta(days=keep_days(settings))
    pruned = 0
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(select(d.id).where(d.created_at < cutoff, d.status != "pending")
                                    .order_by(d.created_at).limit(PRUNE_BATCH)).scalars())
            if not ids:
                return pruned
            conn.execute(delete(attempts_t).where(a.delivery_id.in_(ids)))
            pruned += conn.execute(delete(deliveries_t).where(d.id.in_(ids))).rowcount
        if len(ids) < PRUNE_BATCH:
            return pruned


def sweep(engine: Engine, settings: Settings, now: dt.datetime | None = None) -> dict[str, int]:
    """Give up on deliveries older than a day, switch off failing webhooks, enqueue what is due, prune old ones."""
    now = now or utcnow()
    d, w = deliveries_t.c, webhooks_t.c
    with engine.begin() as conn:
        given_up = conn.execute(update(deliveries_t).where(d.status == "pending",
                                                           d.created_at <= now - GIVE_UP_AFTER)
                                .values(status="failed", last_error=GAVE_UP)).rowcount
        switched_off = switch_off_failing(conn, now)
    with engine.connect() as conn:
        due = list(conn.execute(select(d.uid).join(webhooks_t, w.id == d.webhook_id)
                                .where(d.status == "pending", d.next_attempt_at <= now, w.enabled.is_(True))
                                .order_by(d.next_attempt_at, d.id).limit(SWEEP_BATCH)).scalars())
    enqueue_uids(due, settings)
    pruned = prune(engine, settings, now)
    return {"enqueued": len(due), "given_up": int(given_up), "switched_off": switched_off, "pruned": pruned}
