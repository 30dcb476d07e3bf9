"""The core's answer to ``can_contact``, registered like any plugin.

Keeping it a plugin means a business can add its own vetoes next to it
(a do-not-call list, a CRM flag) without touching the core.
"""

from __future__ import annotations

from typing import Any

from hub.consent import ledger_verdict
from hub.hookspecs import hookimpl


@hookimpl
def can_contact(conn: Any, settings: Any, contact_id: int, channel: str, purpose: str,
                address: str | None) -> str | None:
    return ledger_verdict(conn, settings, contact_id, channel, purpose, address)
