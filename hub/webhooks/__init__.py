"""Webhooks out: other systems hear what happens in Hub, signed, at least once.

`publish(conn, event, data)` is the one door: in the caller's transaction it
writes one delivery per webhook subscribed to `event`, so an event exists
exactly when what it reports was committed. Deliveries then go out on the
queue (hub.webhooks.deliver), signed with each webhook's secret, retried with
back-off for 24 hours.

Payloads name contacts by id and carry no personal data of their own
(phones, emails, names): a receiver that needs them asks the API, which
refuses for an erased person.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, select

from hub.db import insert_for, utcnow
from hub.models import Webhook, WebhookDelivery

webhooks_t = Webhook.__table__
deliveries_t = WebhookDelivery.__table__

# Every event a webhook may subscribe to, with what its `data` holds.
EVENTS = {
    "segment.entered": "segment, contact_ids",
    "segment.exited": "segment, contact_ids",
    "message.sent": "message_id, contact_id, channel, template, purpose, workflow, campaign",
    "message.bounced": "message_id, contact_id, channel, reason",
    "consent.changed": "contact_id, channel, purpose, status, source",
    "promo.redeemed": "code, contact_id, order_id, workflow",
    "contact.merged": "survivor_id, merged_id, merge_id",
    "contact.erased": "contact_id",
}


def publish(conn: Connection, event: str, data: dict[str, Any], *, contact_id: int | None = None) -> int:
    """Queue `event` for every enabled webhook that listens to it; returns how many deliveries were made."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    now = utcnow()
    rows = []
    for hook_id, events in conn.execute(select(webhooks_t.c.id, webhooks_t.c.events)
                                        .where(webhooks_t.c.enabled.is_(True))):
        if event in (events or ()):
            uid = "evt_" + uuid.uuid4().hex
            rows.append({"uid": uid, "webhook_id": hook_id, "event": event, "contact_id": contact_id,
                         "payload": {"id": uid, "type": event, "created_at": now.isoformat(), "data": data},
                         "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now})
    if rows:
        conn.execute(insert_for(conn, deliveries_t), rows)
    return len(rows)
