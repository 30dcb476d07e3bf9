"""Which worker holds which message: claims with a lease, and what a dead worker leaves behind.

A worker claims a batch with a lease (`worker`, `claimed_at`; the rows stay
`queued`), so two workers never take the same row, and a worker that dies
frees the rows no channel had once its lease runs out. Only the message a
channel had when its worker stopped is in doubt: it stays `sending` until
`recover_stale` marks it `unknown` for a person to review (never a silent
second send).
"""

from __future__ import annotations

import datetime as dt
import operator
import os
import socket
from typing import Any, Sequence

from sqlalchemy import Engine, func, or_, select, update

from hub.db import utcnow
from hub.messaging.channels import Outgoing
from hub.messaging.outbox import DEFERRED, QUEUED, SENDING, UNKNOWN, messages_t

# A row still `sending` this long after its claim belongs to a worker that died.
SENDING_TIMEOUT = dt.timedelta(minutes=10)
# How long a claimed batch stays a worker's (HUB_MESSAGES_LEASE_S): the worker renews it while
# it sends, and when a worker dies its claimed rows that never reached a channel are free again
# after this long. Only rows the channel had are in doubt.
CLAIM_LEASE = dt.timedelta(seconds=60)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def recover_stale(engine: Engine, *, now: dt.datetime | None = None,
                  timeout: dt.timedelta = SENDING_TIMEOUT) -> int:
    """Mark rows left `sending` by a worker that died as `unknown`; returns how many.

    Only a message a channel had when its worker stopped is `sending`: at most
    one per worker. Rows the worker had claimed but not handed over are still
    `queued` and need nothing here; the next claim takes them when the lease ends.
    """
    now = now or utcnow()
    with engine.begin() as conn:
        result = conn.execute(
            update(messages_t)
            .where(messages_t.c.status == SENDING, messages_t.c.claimed_at < now - timeout)
            .values(status=UNKNOWN, updated_at=now,
                    error=func.coalesce(messages_t.c.worker, "a worker") + " stopped while sending; "
                    "the message may or may not have gone out"))
        return result.rowcount or 0


_CLAIM_COLUMNS = (messages_t.c.id, messages_t.c.contact_id, messages_t.c.channel, messages_t.c.address,
                  messages_t.c.purpose, messages_t.c.template, messages_t.c.subject, messages_t.c.body_text,
                  messages_t.c.body_html, messages_t.c.idempotency_key, messages_t.c.meta, messages_t.c.attempts,
                  messages_t.c.parts)


def claim(engine: Engine, channel: str, limit: int, *, worker: str, now: dt.datetime | None = None,
          ids: Sequence[int] | None = None, lease: dt.timedelta = CLAIM_LEASE
          ) -> list[tuple[Outgoing, int, int | None]]:
    """Take up to `limit` ready messages of one channel for `worker`, for `lease`.

    The rows keep their status (`queued` or `deferred`) and get the worker's
    name and the claim time: nothing has gone anywhere yet, so a worker that
    dies leaves them to be claimed again once the lease has run out. Due
    `deferred` rows first, then `queued` ones, oldest first. The UPDATE
    re-checks status and lease, and on PostgreSQL the candidates are locked
    with SKIP LOCKED, so concurrent workers never claim the same row; on
    SQLite the write lock serialises claims.
    """
    now = now or utcnow()
    free = or_(messages_t.c.claimed_at.is_(None), messages_t.c.claimed_at <= now - lease)
    taken: list[Any] = []
    with engine.begin() as conn:
        for status in (DEFERRED, QUEUED):
            want = limit - len(taken)
            if want <= 0:
                break
            conditions = [messages_t.c.status == status, messages_t.c.channel == channel, messages_t.c.due_at <= now,
                          free]
            if ids is not None:
                conditions.append(messages_t.c.id.in_(list(ids)))
            candidates = select(messages_t.c.id).where(*conditions).order_by(messages_t.c.due_at).limit(want)
            if conn.dialect.name == "postgresql":
                # Locked here and claimed below: PostgreSQL may run a LIMIT subquery inside
                # an UPDATE more than once, taking more rows than asked for.
                chosen: Any = list(conn.execute(candidates.with_for_update(skip_locked=True)).scalars())
                if not chosen:
                    continue
            else:
                # One statement: SQLite evaluates the subquery once, under the write lock.
                chosen = candidates.scalar_subquery()
            stmt = (update(messages_t)
                    .where(messages_t.c.id.in_(chosen), messages_t.c.status == status, free)
                    .values(worker=worker, claimed_at=now, updated_at=now)
                    .returning(*_CLAIM_COLUMNS))
            taken.extend(conn.execute(stmt).all())
    taken.sort(key=operator.itemgetter(0))
    # Unpacked in _CLAIM_COLUMNS' order: a batch is hundreds of rows, and reading a row's fields by
    # name costs more than building its Outgoing.
    return [(Outgoing(id=id_, channel=channel_, contact_id=contact_id, address=address, purpose=purpose,
                      template=template, subject=subject, text=text, html=html, key=key, meta=meta or {}),
             attempts, parts)
            for (id_, contact_id, channel_, address, purpose, template, subject, text, html, key, meta, attempts,
                 parts) in taken]
