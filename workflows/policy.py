"""The rules every workflow message obeys besides consent: quiet hours and the frequency cap.

Quiet hours are per channel (SMS 21:00-09:00 unless set otherwise) in the
contact's own local time; a message that falls in them is deferred to the
morning, never dropped. The frequency cap counts every non-transactional
message a contact was sent or is about to be sent, from any workflow or
campaign, in a sliding window (2 per 7 days unless set otherwise); a step over
the cap waits until a slot frees up, or is skipped if the step says so.

Both are checked by the send step before it writes the message, and quiet
hours once more by the dispatcher just before the channel is called (a message
held back by its channel may come up again at night).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, Iterable, Mapping

from sqlalchemy import Connection, select
from zoneinfo import ZoneInfo

from hub import consent, messaging
from hub.config import Settings
from hub.db import chunks
from hub.messaging import Outgoing, Verdict
from hub.models import Contact, ContactIdentity, Message
from workflows import clock, config
from workflows.config import FrequencyCap, WorkflowSettings

contacts_t = Contact.__table__
identities_t = ContactIdentity.__table__
messages_t = Message.__table__
# Messages that never reached anyone do not count toward the cap.
NOT_COUNTED = ("failed", "suppressed")


def contact_zones(conn: Connection, settings: Settings, contact_ids: Iterable[int]) -> dict[int, ZoneInfo]:
    """Each contact's time zone: their own, else their phone's when unambiguous, else HUB_TIMEZONE."""
    ids = sorted(set(contact_ids))
    own: dict[int, str | None] = {}
    phones: dict[int, list[str]] = defaultdict(list)
    for part in chunks(ids, 1000):
        own.update(conn.execute(select(contacts_t.c.id, contacts_t.c.timezone)
                                .where(contacts_t.c.id.in_(part))).all())
        rows = conn.execute(select(identities_t.c.contact_id, identities_t.c.value)
                            .where(identities_t.c.contact_id.in_(part), identities_t.c.kind == "phone",
                                   identities_t.c.valid).order_by(identities_t.c.id))
        for cid, value in rows:
            phones[cid].append(value)
    default = settings.tz
    return {cid: clock.contact_zone(own.get(cid), phones.get(cid, ()), default) for cid in ids}


def quiet_until(options: WorkflowSettings, channel: str, moment: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
    """When the channel's quiet hours end, if `moment` is inside them in `zone`; else None."""
    window = options.quiet(channel)
    return window.end_after(moment, zone) if window is not None else None


def recent_messages(conn: Connection, contact_ids: Iterable[int], since: dt.datetime) -> dict[int, list[dt.datetime]]:
    """When each contact's counted messages were queued since `since`, oldest first."""
    m = messages_t.c
    out: dict[int, list[dt.datetime]] = defaultdict(list)
    for part in chunks(sorted(set(contact_ids)), 1000):
        rows = conn.execute(select(m.contact_id, m.created_at).where(
            m.contact_id.in_(part), m.purpose != consent.TRANSACTIONAL, m.status.not_in(NOT_COUNTED),
            m.created_at > since).order_by(m.created_at))
        for cid, at in rows:
            out[cid].append(at)
    return out


def cap_until(cap: FrequencyCap, times: list[dt.datetime], now: dt.datetime) -> dt.datetime | None:
    """None when one more message fits under the cap now; else when the next slot frees up."""
    window = [t for t in times if now - cap.period < t <= now]
    if len(window) < cap.limit:
        return None
    window.sort()
    return window[len(window) - cap.limit] + cap.period


class QuietHoursPolicy:
    """The dispatcher's check: hold a message that would arrive in the contact's quiet hours."""

    def __init__(self, options: WorkflowSettings) -> None:
        self.options = options

    def __call__(self, conn: Connection, settings: Settings, message: Outgoing) -> Verdict | None:
        window = self.options.quiet(message.channel)
        if window is None or message.contact_id is None:
            return None
        from hub.db import utcnow

        now = utcnow()
        zone = contact_zones(conn, settings, [message.contact_id]).get(message.contact_id, settings.tz)
        until = window.end_after(now, zone)
        if until is None:
            return None
        return Verdict(f"quiet hours {window} in {zone.key}", until=until)


def send_policies(settings: Settings) -> list[Any]:
    """What the dispatcher checks for workflow messages: consent, then quiet hours."""
    return [messaging.consent_policy, QuietHoursPolicy(config.load(settings))]


def describe(options: WorkflowSettings) -> Mapping[str, Any]:
    """The policies in force, for status reports."""
    return {"quiet_hours": {ch: str(w) for ch, w in options.quiet_hours.items() if w is not None},
            "frequency_cap": str(options.frequency_cap) if options.frequency_cap else None}
