"""Quiet hours and the frequency cap as a workflow step plans with them.

The limits themselves are the core's (hub.send_limits): every message keeps
them at dispatch, whoever sends it. A send step applies them once more before
it writes its message, so that a run waits for the morning or for a free slot
in its own record (and the forecast can say so), and so that `on_cap: skip`
can drop a step instead of holding its message. Both limits are asked
together (`slot`): a cap that frees up at night leaves the message for the
morning.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from hub.api import (IGNORE_QUIET_HOURS, NOT_COUNTED, QUIET_HOURS_META, TRANSACTIONAL, Message, Slot, cap_until,
                     chunks, contact_zones, first_allowed, ignores_quiet_hours)
from workflows.config import WorkflowSettings

messages_t = Message.__table__
__all__ = ["cap_until", "contact_zones", "describe", "ignores_quiet", "quiet_until", "recent_messages",
           "slot"]  # step, forecast
# A send step's `quiet_hours:` values; "ignore" is the core's word the dispatcher reads from the message's meta.
RESPECT_QUIET_HOURS = "respect"
QUIET_HOURS_CHOICES = (RESPECT_QUIET_HOURS, IGNORE_QUIET_HOURS)
# What moved a message (the kinds of hub.api.Slot's moves).
QUIET_HOURS, FREQUENCY_CAP = "quiet_hours", "frequency_cap"


def quiet_until(options: WorkflowSettings, channel: str, moment: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
    """When the channel's quiet hours end, if `moment` is inside them in `zone`; else None."""
    window = options.quiet(channel)
    return window.end_after(moment, zone) if window is not None else None


def ignores_quiet(purpose: str, quiet_hours: str) -> bool:
    """Whether a send step's message goes in the quiet hours too: transactional with `quiet_hours: ignore`.

    Asked through the dispatcher's own rule (hub.api.ignores_quiet_hours), so
    the step and the outbox cannot disagree about which messages are exempt.
    """
    return ignores_quiet_hours(purpose, {QUIET_HOURS_META: quiet_hours})


def slot(options: WorkflowSettings, channel: str, purpose: str, moment: dt.datetime, zone: ZoneInfo,
         times: Iterable[dt.datetime], quiet_hours: str = RESPECT_QUIET_HOURS) -> Slot:
    """When a message of `purpose` on `channel` may go: outside quiet hours and under the cap, both at once.

    The core's own answer (hub.api.first_allowed, which the dispatcher asks
    too), so the step, the forecast and the trial cannot disagree with the
    outbox; transactional messages are not counted against the cap, and one
    whose step says `quiet_hours: ignore` is not held by the quiet hours.
    """
    cap = options.frequency_cap if purpose != TRANSACTIONAL else None
    quiet = None if ignores_quiet(purpose, quiet_hours) else options.quiet(channel)
    return first_allowed(moment, quiet=quiet, zone=zone, cap=cap, times=list(times))


def recent_messages(conn: Connection, contact_ids: Iterable[int], since: dt.datetime) -> dict[int, list[dt.datetime]]:
    """When each contact's counted messages were queued since `since`, oldest first."""
    m = messages_t.c
    out: dict[int, list[dt.datetime]] = defaultdict(list)
    for part in chunks(sorted(set(contact_ids)), 1000):
        rows = conn.execute(select(m.contact_id, m.created_at).where(
            m.contact_id.in_(part), m.purpose != TRANSACTIONAL, m.status.not_in(NOT_COUNTED),
            m.created_at > since).order_by(m.created_at))
        for cid, at in rows:
            out[cid].append(at)
    return out


def describe(options: WorkflowSettings) -> Mapping[str, Any]:
    """The limits in force, for status reports."""
    return {"quiet_hours": {ch: str(w) for ch, w in options.quiet_hours.items() if w is not None},
            "frequency_cap": str(options.frequency_cap) if options.frequency_cap else None}
