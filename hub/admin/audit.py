"""What people did in the admin, kept in audit_log: who, what, to whom, when.

Written in the same transaction as the change it describes, so the log
never claims a change that rolled back, nor misses one that committed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from hub.db import utcnow
from hub.models import AuditEntry

audit_t = AuditEntry.__table__


def record(conn: Connection, actor: str, action: str, *, contact_id: int | None = None,
           **details: Any) -> None:
    """Append one entry; `details` must never hold a password, token or secret."""
    conn.execute(audit_t.insert().values(at=utcnow(), actor=actor, action=action, contact_id=contact_id,
                                         details=details))


def latest(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    rows = conn.execute(select(audit_t).order_by(audit_t.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in rows]
