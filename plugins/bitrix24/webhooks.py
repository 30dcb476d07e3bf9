"""The receiver for Bitrix24 events (ONCRMCONTACTADD, ONCRMDEALUPDATE, ...).

An event carries only an ID, arrives once (the portal never retries) and
must be answered fast, so the receiver checks the application token, hands
the ID to a background fetch and answers at once. The scheduled incremental
sync is what guarantees that a lost event loses nothing.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any

from flask import Blueprint, request

# not in hub.api on purpose: the webhook queues the core's own job that re-reads records through hub.sync
from hub import jobs
from hub.api import current_settings, enqueue, get_engine
from plugins.bitrix24 import connection

log = logging.getLogger(__name__)
bp = Blueprint("bitrix24_events", __name__)

EVENTS = {
    "ONCRMCONTACTADD": "contacts", "ONCRMCONTACTUPDATE": "contacts", "ONCRMCONTACTDELETE": "contacts",
    "ONCRMDEALADD": "orders", "ONCRMDEALUPDATE": "orders", "ONCRMDEALDELETE": "orders",
    "ONCRMCOMPANYADD": "companies", "ONCRMCOMPANYUPDATE": "companies", "ONCRMCOMPANYDELETE": "companies",
    "ONCRMACTIVITYADD": "activities", "ONCRMACTIVITYUPDATE": "activities", "ONCRMACTIVITYDELETE": "activities",
}


_WORD = re.compile(r"[A-Z0-9_]{1,64}")
_DOMAIN = re.compile(r"[a-z0-9.-]{1,253}")


@bp.post("/hooks/bitrix24")
def receive() -> Any:
    settings = current_settings()
    form = request.form
    event = (form.get("event") or "").upper()
    token = form.get("auth[application_token]") or ""
    try:
        data, _ = connection.load(get_engine(settings.database_url), settings)
    except connection.NotConnected:
        return {"error": "not connected"}, 503
    expected = data.get("application_token") or ""
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        # Only what names the sender's portal, never the client address or free header text.
        domain = (form.get("auth[domain]") or "").lower()
        log.warning("Bitrix24 event %s from %s refused: application token does not match",
                    event if _WORD.fullmatch(event) else "?",
                    domain if _DOMAIN.fullmatch(domain) else "an unknown portal")
        return {"error": "application token does not match"}, 401
    entity = EVENTS.get(event)
    record_id = form.get("data[FIELDS][ID]") or ""
    if entity is None or not record_id.isdigit():
        return {"ignored": event or "no event"}, 200
    # The same event delivered twice while its fetch waits is fetched once.
    sent_at = "".join(ch for ch in (form.get("ts") or "") if ch.isdigit())[:20]
    enqueue(settings, jobs.fetch_records, "bitrix24", entity, [record_id], background=True,
                  job_id=f"bitrix24-{entity}-{record_id}-{sent_at}")
    return {"queued": event, "id": record_id}, 200
