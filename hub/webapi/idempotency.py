"""Idempotency-Key: the same key and body within 24 hours get the first answer and change nothing.

The claim is a row inserted in the request's own transaction, so the work
and the answer kept for a repeat commit together: a crash in between leaves
neither, and the repeat simply runs. On PostgreSQL a concurrent repeat waits
on the row's unique index and then reads the committed answer; on SQLite
write transactions take turns, with the same result. Only successful answers
are kept: a refused request changed nothing, and its repeat is refused again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any

from sqlalchemy import Connection, delete, select, update

from hub.db import insert_for, utcnow
from hub.models import ApiRequest
from hub.webapi import problems
from hub.webapi.endpoints import JSON, ApiError

requests_t = ApiRequest.__table__

KEPT_FOR = dt.timedelta(hours=24)
MAX_KEY = 255
# Visible ASCII, spaces only inside: what survives every proxy and HTTP library unchanged (the document says so).
KEY_PATTERN = r"^[!-~]([ -~]*[!-~])?$"
_KEY = re.compile(KEY_PATTERN)


def fingerprint(method: str, path: str, body: Any) -> str:
    """What a repeat must match: a reused key with another request is refused, not answered from the first.

    The body as JSON, not as bytes: a retry that writes the same data another way (spacing, key order)
    is the same request.
    """
    same = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{method} {path}\n".encode() + same.encode("utf-8", "surrogatepass")).hexdigest()


def claim(conn: Connection, key_id: int, idem_key: str, fp: str) -> tuple[int, JSON] | None:
    """The kept answer for this key (a repeat), or None after claiming it for this request."""
    from hub.i18n import gettext

    if len(idem_key) > MAX_KEY or not _KEY.match(idem_key):
        raise problems.error(400, gettext("Idempotency-Key: 1 to %(num)d printable ASCII characters", num=MAX_KEY),
                             errors=[{"field": "Idempotency-Key", "detail": gettext("invalid header")}])
    now = utcnow()
    ins = insert_for(conn, requests_t).on_conflict_do_nothing(index_elements=["key_id", "idempotency_key"])
    # RETURNING, not rowcount: the PostgreSQL driver answers -1 (unknown) for an INSERT … ON CONFLICT.
    claimed = conn.execute(ins.values(key_id=key_id, idempotency_key=idem_key, fingerprint=fp, created_at=now)
                           .returning(requests_t.c.id)).first()
    if claimed is not None:
        return None
    row = conn.execute(select(requests_t).where(requests_t.c.key_id == key_id,
                                                requests_t.c.idempotency_key == idem_key)).one()
    if row.created_at < now - KEPT_FOR or row.status is None:
        # Expired; or claimed by a request whose transaction is gone (it would have left no row otherwise).
        conn.execute(update(requests_t).where(requests_t.c.id == row.id)
                     .values(fingerprint=fp, status=None, response=None, created_at=now))
        return None
    if row.fingerprint != fp:
        raise problems.error(422, gettext("Idempotency-Key %(key)s was used with another request in the last "
                                          "24 hours; use a new key for a new request", key=idem_key[:60]),
                             errors=[{"field": "Idempotency-Key", "detail": gettext("used with another request")}])
    return int(row.status), dict(row.response or {})


def keep(conn: Connection, key_id: int, idem_key: str, status: int, answer: Any) -> None:
    """Store the answer in the request's transaction, so it exists exactly when the request's changes do."""
    conn.execute(update(requests_t).where(requests_t.c.key_id == key_id, requests_t.c.idempotency_key == idem_key)
                 .values(status=status, response={"body": answer}))


def answer_of(kept: JSON) -> Any:
    """The answer a repeat gets; kept wrapped in `body` so that a null answer is told apart from none kept."""
    return kept.get("body")


def prune(conn: Connection, *, now: dt.datetime | None = None) -> int:
    """Forget answers older than 24 hours (the scheduler does it daily)."""
    cutoff = (now or utcnow()) - KEPT_FOR
    return int(conn.execute(delete(requests_t).where(requests_t.c.created_at < cutoff)).rowcount or 0)


__all__ = ["claim", "keep", "prune", "fingerprint", "ApiError"]
