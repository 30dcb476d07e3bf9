"""What Hub tells webhooks, and where webhooks plug into Hub: a default plugin (hub.plugins.DEFAULT_PLUGINS).

Each event is published from the hook that reports it, inside that hook's
transaction, so a delivery exists exactly when what it reports was
committed. Data are ids and facts; a receiver that wants a name asks the API.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from sqlalchemy import Connection, null, select, update

from hub.config import Settings
from hub.hookspecs import hookimpl
from hub.i18n import N_
from hub.webhooks import deliveries_t, listening, publish, publish_segment


@hookimpl
def segment_changed(conn: Connection, segment: str, entered: list[int], exited: list[int]) -> None:
    publish_segment(conn, segment, entered, exited)


@hookimpl
def message_sent(conn: Connection, message: dict[str, Any]) -> None:
    if not listening(conn, "message.sent"):  # called for every letter sent, almost always with nobody listening
        return
    meta = message.get("meta") or {}
    sent_at = message.get("sent_at")
    publish(conn, "message.sent", {
        "message_id": message.get("id"), "contact_id": message.get("contact_id"), "channel": message.get("channel"),
        "template": message.get("template"), "purpose": message.get("purpose"),
        "workflow": meta.get("workflow"), "campaign": meta.get("campaign"),
        "sent_at": sent_at.isoformat() if isinstance(sent_at, dt.datetime) else sent_at,
    }, contact_id=message.get("contact_id"))


@hookimpl
def consent_changed(conn: Connection, contact_id: int, channel: str, purpose: str, status: str, source: str,
                    evidence: dict[str, Any]) -> None:
    publish(conn, "consent.changed", {"contact_id": contact_id, "channel": channel, "purpose": purpose,
                                      "status": status, "source": source}, contact_id=contact_id)


@hookimpl
def contact_merged(conn: Connection, settings: Settings, survivor_id: int, merged_id: int, merge_id: int,
                   reason: dict[str, Any]) -> None:
    # Moved to the survivor, so an erasure of the survivor finds them too; each remembers the merge
    # and whom it was about, so an unmerge gives it back (contact_unmerged).
    d = deliveries_t.c
    for row in conn.execute(select(d.id, d.merged_from).where(d.contact_id == merged_id)):
        trail = [list(step) for step in (row.merged_from or ())] + [[merge_id, merged_id]]
        conn.execute(update(deliveries_t).where(d.id == row.id).values(contact_id=survivor_id, merged_from=trail))
    publish(conn, "contact.merged", {"survivor_id": survivor_id, "merged_id": merged_id, "merge_id": merge_id},
            contact_id=survivor_id)


@hookimpl
def contact_unmerged(conn: Connection, settings: Settings, survivor_id: int, restored_id: int, merge_id: int,
                     snapshot: dict[str, Any]) -> None:
    """Give `restored_id` back the deliveries merge `merge_id` moved, with those moved on with them since."""
    d = deliveries_t.c
    for row in conn.execute(select(d.id, d.merged_from).where(d.contact_id == survivor_id,
                                                              d.merged_from.is_not(None))):
        trail = [list(step) for step in (row.merged_from or ())]
        at = next((i for i, step in enumerate(trail) if step[0] == merge_id), None)
        if at is None:
            continue
        conn.execute(update(deliveries_t).where(d.id == row.id).values(
            contact_id=restored_id, merged_from=trail[:at] or null()))


@hookimpl
def contact_erased(conn: Connection, settings: Settings, contact_id: int) -> None:
    forget(conn, contact_id)
    publish(conn, "contact.erased", {"contact_id": contact_id}, contact_id=contact_id)


def forget(conn: Connection, contact_id: int) -> int:
    """Reduce every delivery about `contact_id` not yet delivered to the bare id: an erased person's data go.

    A delivery a merge moved here keeps the id it was about (the merged contact's), not the survivor's.
    """
    d = deliveries_t.c
    n = 0
    for row in conn.execute(select(d.id, d.payload, d.merged_from).where(d.contact_id == contact_id,
                                                                          d.status == "pending")):
        about = row.merged_from[0][1] if row.merged_from else contact_id
        payload = dict(row.payload or {})
        payload["data"] = {"contact_id": about}
        n += conn.execute(update(deliveries_t).where(d.id == row.id).values(payload=payload)).rowcount
    return n


@hookimpl
def register_schedules(register: Callable[[str, Any], None], settings: Settings) -> None:
    from hub.schedule import Schedule

    what = N_("retry webhook deliveries that are due and switch off webhooks failing for a day")
    register("webhooks", Schedule(dt.timedelta(minutes=1), _sweep, what, N_("Webhook deliveries")))


def _sweep(run: Any) -> dict[str, int]:
    from hub.webhooks import deliver

    return deliver.sweep(run.engine, run.settings, run.now)


@hookimpl
def register_admin_pages(register: Callable[[Any], None]) -> None:
    from hub.admin import webhooks as page
    from hub.admin.registry import AdminPage

    register(AdminPage(page.bp, "webhooks.index", N_("Webhooks"), order=80, read_role="admin",
                       write_role="admin", audit_actions=page.AUDIT_ACTIONS))
