"""Lengths of time, times of day and each contact's own clock.

Settings and workflow files say `7d`, `12h`, `"10:00"` and quiet hours like
"21:00-09:00". Durations take s, m (minutes), h, d and w: unlike segment
rules, which count in days, weeks, months and years, a workflow waits minutes
and hours too. Times of day are the contact's local time: their own time zone
when Hub knows it, else the zone their phone number belongs to when that is
one zone, else HUB_TIMEZONE. The core's send limits (hub.send_limits) and the
workflows plugin both read time this way, so a step and the dispatcher agree
on when it is night for a contact.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_zones
from sqlalchemy import Connection, select

from hub.config import Settings
from hub.db import chunks
from hub.i18n import gettext as _
from hub.models import Contact, ContactIdentity

_DURATION = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TIME = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


def parse_duration(raw: Any) -> dt.timedelta:
    """7d, 12h, 30m, 2w, 45s; raises ValueError saying how to write one."""
    m = _DURATION.match(raw) if isinstance(raw, str) else None
    if m is None:
        if isinstance(raw, int) and not isinstance(raw, bool):
            raise ValueError(_("%(value)r is not a length of time; write it with a unit, like %(example)s "
                               "(a number and s, m, h, d or w: 30m, 12h, 7d, 2w)", value=raw, example=f"{raw}d"))
        raise ValueError(_("%(value)r is not a length of time (a number and s, m, h, d or w: 30m, 12h, 7d, 2w)",
                           value=raw))
    amount, unit = int(m.group(1)), m.group(2)
    if amount == 0:
        raise ValueError(_("%(value)r: a length of time must be more than zero", value=raw))
    return dt.timedelta(seconds=amount * _SECONDS[unit])


def format_duration(value: dt.timedelta) -> str:
    """The shortest way a workflow file would write this length: 7d, 12h, 90m."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds % _SECONDS[unit] == 0:
            return f"{seconds // _SECONDS[unit]}{unit}"
    return f"{seconds}s"


def parse_time_of_day(raw: Any) -> dt.time:
    """"10:00" → 10:00. YAML reads an unquoted 10:00 as the number 600 (minutes); that is accepted too."""
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < 24 * 60:
        return dt.time(raw // 60, raw % 60)
    m = _TIME.match(raw) if isinstance(raw, str) else None
    if m is None:
        raise ValueError(_("%(value)r is not a time of day; write it as \"HH:MM\", e.g. \"10:00\"", value=raw))
    return dt.time(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A nightly window in local time, e.g. 21:00-09:00, when a channel must not disturb anyone."""

    start: dt.time
    end: dt.time

    def contains(self, local: dt.time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def end_after(self, moment: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
        """When the window that `moment` falls in ends (UTC), or None when it is not quiet then."""
        local = moment.astimezone(zone)
        if not self.contains(local.time().replace(tzinfo=None)):
            return None
        return next_local_time(moment, zone, self.end)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_quiet_hours(raw: Any) -> QuietHours | None:
    """"21:00-09:00" → a window; "", "none" or "off" → None (no quiet hours)."""
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "off")):
        return None
    if not isinstance(raw, str) or raw.count("-") != 1:
        raise ValueError(_("%(value)r is not a window of quiet hours; write it as \"21:00-09:00\", or \"none\"",
                           value=raw))
    start, end = (parse_time_of_day(part) for part in raw.split("-"))
    if start == end:
        raise ValueError(_("%(value)r: the window starts and ends at the same time", value=raw))
    return QuietHours(start, end)


def next_local_time(after: dt.datetime, zone: ZoneInfo, at: dt.time) -> dt.datetime:
    """The first moment from `after` on when the clock in `zone` shows `at`, in UTC."""
    local = after.astimezone(zone)
    candidate = dt.datetime.combine(local.date(), at, tzinfo=zone)
    if candidate < local:
        candidate = dt.datetime.combine(local.date() + dt.timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(dt.timezone.utc)


def end_of_local_day(moment: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The last second of the local day `moment` falls on, in UTC ("valid until the 31st inclusive")."""
    local = moment.astimezone(zone)
    last = dt.datetime.combine(local.date(), dt.time(23, 59, 59), tzinfo=zone)
    return last.astimezone(dt.timezone.utc)


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo | None:
    """A time zone by IANA name, or None when the name is not one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=65536)
def phone_zone(e164: str) -> ZoneInfo | None:
    """The time zone of a phone number when the number belongs to exactly one (landlines mostly)."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    names = phone_zones.time_zones_for_number(number)
    if len(names) != 1 or names[0] == phone_zones.UNKNOWN_TIMEZONE:
        return None
    return zone(names[0])


def contact_zone(own: str | None, phones: Iterable[str], default: ZoneInfo) -> ZoneInfo:
    """The contact's time zone: their own, else an unambiguous one from a phone, else the default."""
    if own:
        found = zone(own)
        if found is not None:
            return found
    for phone in phones:
        found = phone_zone(phone)
        if found is not None:
            return found
    return default


def contact_zones(conn: Connection, settings: Settings, contact_ids: Iterable[int]) -> dict[int, ZoneInfo]:
    """Each contact's time zone: their own, else their phone's when unambiguous, else HUB_TIMEZONE."""
    contacts_t, identities_t = Contact.__table__, ContactIdentity.__table__
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
    return {cid: contact_zone(own.get(cid), phones.get(cid, ()), default) for cid in ids}
