"""Webhooks out: other systems hear what happens in Hub, signed, at least once.

`publish(conn, event, data)` is the one door: in the caller's transaction it
writes one delivery per webhook subscribed to `event`, so an event exists
exactly when what it reports was committed. Deliveries then go out on the
queue (hub.webhooks.deliver), signed with each webhook's secret, retried with
back-off for 24 hours.

Payloads name contacts by id and carry no personal data of their own
(phones, emails, names): a receiver that needs them asks the API, which
refuses for an erased person.

publish() is called per sent message and per consent change, almost always
with no webhook listening, so "who listens to what" is cached per process
and database for at most a second (SUBSCRIPTIONS_TTL_S): a webhook another
process adds is heard within a second, one this process adds, removes or
switches on or off at once. The cache only ever says "nobody listens": when
it names a listener, the webhooks are read in the caller's transaction, so a
webhook removed meanwhile gets nothing. `listening()` lets a caller skip the
work of an event nobody hears (segment refreshes skip collecting the ids).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Engine, event, select

from hub.config import Settings
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
    "message.complained": "message_id, contact_id, channel",
    "message.clicked": "message_id, contact_id, channel, url",
    "consent.changed": "contact_id, channel, purpose, status, source",
    "promo.redeemed": "code, contact_id, order_id, workflow_id, run_id, redeemed_at",
    "contact.merged": "survivor_id, merged_id, merge_id",
    "contact.erased": "contact_id",
}


HOOKS_PLUGIN = "hub.webhooks.hooks"  # the plugin that publishes Hub's own events (hub.plugins.DEFAULT_PLUGINS)
SUBSCRIPTIONS_TTL_S = 1.0

# database URL -> (read at, monotonic; the events some enabled webhook listens to)
_subscriptions: dict[str, tuple[float, frozenset[str]]] = {}
_subscriptions_lock = threading.Lock()
# engine -> its URL as the key above: rendering a URL costs more than the rest of a publish nobody hears
_url_keys: "weakref.WeakKeyDictionary[Engine, str]" = weakref.WeakKeyDictionary()


def _database_key(engine: Engine) -> str:
    """The database an engine is for, as _subscriptions names it: rendered once per engine."""
    key = _url_keys.get(engine)
    if key is None:
        key = _url_keys[engine] = engine.url.render_as_string(hide_password=False)
    return key


def forget_subscriptions(conn: Connection | None = None) -> None:
    """Read who listens afresh on the next publish (a webhook was added, removed, switched on or off).

    Given the connection that changed the webhooks, also once its transaction
    commits: another thread reading meanwhile still saw the webhooks as they were.
    """
    with _subscriptions_lock:
        _subscriptions.clear()
    if conn is not None:
        _watch(conn.engine)
        conn.info[_CHANGED] = True


def listening(conn: Connection, *events: str) -> bool:
    """Whether some enabled webhook listens to any of `events` (as of at most SUBSCRIPTIONS_TTL_S ago)."""
    key = _database_key(conn.engine)
    now = time.monotonic()
    with _subscriptions_lock:
        cached = _subscriptions.get(key)
    if cached is None or now - cached[0] > SUBSCRIPTIONS_TTL_S:
        heard: set[str] = set()
        for subscribed in conn.execute(select(webhooks_t.c.events).where(webhooks_t.c.enabled.is_(True))).scalars():
            heard.update(subscribed or ())
        cached = (now, frozenset(heard))
        with _subscriptions_lock:
            _subscriptions[key] = cached
    return any(e in cached[1] for e in events)


def publish(conn: Connection, event: str, data: dict[str, Any], *, contact_id: int | None = None) -> int:
    """Queue `event` for every enabled webhook that listens to it; returns how many deliveries were made."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    if not listening(conn, event):
        return 0
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
# the pool (after the commit has landed) the committed ones are enqueued, all in one go.
# Anything lost on the way (the process died, Redis was away) is found by the sweep
# (hub.webhooks.deliver).
#
# The settings the deliveries go out with are taken when they are written and kept beside
# them: those of the app handling the request (create_app(settings) for any database), else
# this process's, pointed at the database the connection belongs to.

_PENDING = "hub_webhooks_pending"
_COMMITTED = "hub_webhooks_committed"
_SETTINGS = "hub_webhooks_settings"
_CHANGED = "hub_webhooks_changed"
_CHANGED_COMMITTED = "hub_webhooks_changed_committed"
_watched: "weakref.WeakSet[Engine]" = weakref.WeakSet()


def _remember(conn: Connection, uids: list[str]) -> None:
    _watch(conn.engine)
    if _SETTINGS not in conn.info:
        conn.info[_SETTINGS] = _settings_for(conn)
    conn.info.setdefault(_PENDING, []).extend(uids)


def _settings_for(conn: Connection) -> Settings:
    url = conn.engine.url.render_as_string(hide_password=False)
    try:
        from flask import current_app, has_app_context

        if has_app_context():
            app_settings = current_app.config.get("HUB_SETTINGS")
            if isinstance(app_settings, Settings):
                return app_settings if _same_database(app_settings.database_url, url) else replace(
                    app_settings, database_url=url)
    except ImportError:  # pragma: no cover - Flask is a dependency of Hub
        pass
    from hub.config import load_settings

    settings = load_settings()
    return settings if _same_database(settings.database_url, url) else replace(settings, database_url=url)


def _same_database(a: str, b: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        return make_url(a) == make_url(b)
    except Exception:  # noqa: BLE001 - an odd URL is simply another database
        return a == b


def _watch(engine: Engine) -> None:
    if engine in _watched:
        return
    _watched.add(engine)
    event.listen(engine, "commit", _on_commit)
    event.listen(engine, "rollback", _on_rollback)
    event.listen(engine, "checkin", _on_checkin)


def _on_commit(conn: Connection) -> None:
    if conn.info.pop(_CHANGED, False):  # this runs just before the commit: again at checkin, after it
        conn.info[_CHANGED_COMMITTED] = True
        forget_subscriptions()
    pending = conn.info.pop(_PENDING, None)
    if pending:
        conn.info.setdefault(_COMMITTED, []).extend(pending)


def _on_rollback(conn: Connection) -> None:
    conn.info.pop(_PENDING, None)
    conn.info.pop(_CHANGED, None)


def _on_checkin(dbapi_connection: Any, record: Any) -> None:
    if record is None:
        return
    record.info.pop(_PENDING, None)  # never committed: the pool rolled it back
    record.info.pop(_CHANGED, None)
    if record.info.pop(_CHANGED_COMMITTED, False):
        forget_subscriptions()
    committed = record.info.pop(_COMMITTED, None)
    settings = record.info.pop(_SETTINGS, None)
    if committed:
        try:
            from hub.webhooks import deliver

            deliver.enqueue_uids(committed, settings)
        except Exception:  # the sweep enqueues what is due; a caller's commit must not fail here
            log.exception("could not enqueue %s webhook deliveries; the sweep will", len(committed))


def publish_segment(conn: Connection, segment: str, entered: list[int], exited: list[int]) -> int:
    """segment.entered / segment.exited for one segment change: at most CHUNK contact ids per delivery."""
    made = 0
    for kind, ids in (("segment.entered", entered), ("segment.exited", exited)):
        for start in range(0, len(ids), CHUNK):
            made += publish(conn, kind, {"segment": segment, "contact_ids": list(ids[start:start + CHUNK])})
    return made
