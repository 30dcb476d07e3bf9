"""Entries in audit_log for what this plugin does: consent changes, exports, erasures, retention runs.

An entry says who, what, when and on whom, and nothing more: `details` holds
ids, names of channels and purposes, and counts, never an address, a name or
a token, so the log itself needs no erasure. Each entry is written in the
transaction of the change it describes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from hub.api import utcnow
# not in hub.api on purpose: export and erasure reach every core table that holds personal data
from hub.models import AuditEntry

audit_t = AuditEntry.__table__


_INSERT = audit_t.insert()  # built once: every consent change writes an entry


def record(conn: Connection, actor: str, action: str, contact_id: int | None = None, **details: Any) -> None:
    conn.execute(_INSERT, {"at": utcnow(), "actor": actor[:200], "action": action[:64], "contact_id": contact_id,
                           "details": details})


def entries(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    """Every entry about one contact, oldest first."""
    rows = conn.execute(select(audit_t).where(audit_t.c.contact_id == contact_id).order_by(audit_t.c.id))
    return [dict(r._mapping) for r in rows]
