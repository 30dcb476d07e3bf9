"""Delivering webhooks: one POST per delivery, retried with back-off for 24 hours, logged per attempt.

At least once: a delivery is enqueued when the transaction that wrote it
commits (hub.webhooks), and the sweep (a schedule, every minute) enqueues
whatever is due again: retries whose back-off is over, and deliveries whose
first enqueue was lost (the process died right after the commit, Redis was
away). Before it sends, a job claims the delivery for a short lease, so the
sweep and the first enqueue racing each other send it once, not twice.

The receiver is not trusted: its answer is read for the status code and at
most a short snippet of the body, redirects are followed only to the same
scheme, host and port (and only 307/308, which keep the POST), and nothing
logged names the URL, which may carry the receiver's token.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from typing import Any, Callable, Iterable
from urllib.parse import urljoin, urlsplit

import requests
from sqlalchemy import Engine, select, update

from hub import queue
from hub.config import Settings, load_settings
from hub.db import get_engine, utcnow
from hub.i18n import N_
from hub.webhooks import signing, store

log = logging.getLogger(__name__)
deliveries_t = store.deliveries_t
webhooks_t = store.webhooks_t
attempts_t = store.attempts_t

TIMEOUT_S = 10.0
LEASE = dt.timedelta(minutes=2)  # a claimed delivery is not sent again before this, unless its attempt ends
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
    """Hand deliveries to the queue (RQ with Redis, this process's background thread without)."""
    settings = settings or load_settings()
    n = 0
    for uid in uids:
        queue.enqueue(settings, run, uid, job_id=f"webhook-{uid}", background=True)
        n += 1
    return n


def run(uid: str) -> str:
    """The queue job: one attempt at the delivery `uid`, with the settings read afresh in the worker."""
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
    code, error = post(row.url, body, headers)
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


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
    """POST `body`; (status code, None) on 2xx, else (status code or None, a short error without the URL)."""
    target = url
    origin = _origin(url)
    for _hop in range(MAX_REDIRECTS + 1):
        try:
            with requests.post(target, data=body, headers=headers, timeout=TIMEOUT_S, allow_redirects=False,
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
                return code, _snippet(answer) or f"HTTP {code}"
        except requests.Timeout:
            return None, store.TIMED_OUT
        except requests.ConnectionError:
            return None, store.CONNECTION_FAILED
        except requests.RequestException as exc:  # the message may hold the URL: only its kind is kept
            return None, type(exc).__name__
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
        log.warning("%s webhook(s) switched off after failing for 24 hours", off)
    return int(off)


def sweep(engine: Engine, settings: Settings, now: dt.datetime | None = None) -> dict[str, int]:
    """Give up on deliveries older than a day, switch off failing webhooks, and enqueue what is due."""
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
    return {"enqueued": len(due), "given_up": int(given_up), "switched_off": switched_off}
