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

import logging
import uuid
import weakref
from typing import Any

from sqlalchemy import Connection, Engine, event, select

from hub.db import insert_for, utcnow
from hub.models import Webhook, WebhookDelivery

log = logging.getLogger(__name__)
webhooks_t = Webhook.__table__
deliveries_t = WebhookDelivery.__table__

CHUNK = 1000  # contact ids per segment delivery: a huge change goes out as several deliveries

# Every event a webhook may subscribe to, with what its `data` holds.
EVENTS = {
    "segment.entered": "segment, contact_ids",
    "segment.exited": "segment, contact_ids",
    "message.sent": "message_id, contact_id, channel, template, purpose, workflow, campaign, sent_at",
    "message.bounced": "message_id, contact_id, channel, reason",
    "consent.changed": "contact_id, channel, purpose, status, source",
    "promo.redeemed": "code, contact_id, order_id, workflow_id, run_id, redeemed_at",
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
        _remember(conn, [r["uid"] for r in rows])
    return len(rows)


# --- handing deliveries to the queue once their transaction has committed ------------------
#
# publish() runs inside someone else's transaction (a segment refresh, a merge), which knows
# nothing of webhooks. The uids it wrote wait in the connection's info; the connection's
# commit marks them committed, a rollback forgets them, and when the connection goes back to
# the pool (after the commit has landed) the committed ones are enqueued. Anything lost on
# the way (the process died, Redis was away) is found by the sweep (hub.webhooks.deliver).

_PENDING = "hub_webhooks_pending"
_COMMITTED = "hub_webhooks_committed"
_watched: "weakref.WeakSet[Engine]" = weakref.WeakSet()


def _remember(conn: Connection, uids: list[str]) -> None:
    _watch(conn.engine)
    conn.info.setdefault(_PENDING, []).extend(uids)


def _watch(engine: Engine) -> None:
    if engine in _watched:
        return
    _watched.add(engine)
    event.listen(engine, "commit", _on_commit)
    event.listen(engine, "rollback", _on_rollback)
    event.listen(engine, "checkin", _on_checkin)


def _on_commit(conn: Connection) -> None:
    pending = conn.info.pop(_PENDING, None)
    if pending:
        conn.info.setdefault(_COMMITTED, []).extend(pending)


def _on_rollback(conn: Connection) -> None:
    conn.info.pop(_PENDING, None)


def _on_checkin(dbapi_connection: Any, record: Any) -> None:
    if record is None:
        return
    record.info.pop(_PENDING, None)  # never committed: the pool rolled it back
    committed = record.info.pop(_COMMITTED, None)
    if committed:
        try:
            from hub.webhooks import deliver

            deliver.enqueue_uids(committed)
        except Exception:  # the sweep enqueues what is due; a caller's commit must not fail here
            log.exception("could not enqueue %s webhook deliveries; the sweep will", len(committed))


def publish_segment(conn: Connection, segment: str, entered: list[int], exited: list[int]) -> int:
    """segment.entered / segment.exited for one segment change: at most CHUNK contact ids per delivery."""
    made = 0
    for kind, ids in (("segment.entered", entered), ("segment.exited", exited)):
        for start in range(0, len(ids), CHUNK):
            made += publish(conn, kind, {"segment": segment, "contact_ids": list(ids[start:start + CHUNK])})
    return made
