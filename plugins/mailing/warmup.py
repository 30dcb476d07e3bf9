"""Warming up a new sending domain: a daily allowance of marketing email that grows day by day.

Mail.ru, Yandex and Gmail judge a domain they have never seen by how it
starts: 50,000 letters on its first day look like a spammer's, the same
letters over two weeks look like a shop. So from HUB_MAIL_WARMUP_START (the
first day of sending from the new domain, in the shop's time zone) day n
allows HUB_MAIL_WARMUP_FIRST × HUB_MAIL_WARMUP_GROWTH^n marketing letters
(500 and 1.5 unless set), until the allowance reaches
HUB_MAIL_WARMUP_TARGET (100,000 unless set): from then on warm-up is over
and limits nothing. Transactional mail is never held by it, and not counted.

What counts is what went out: marketing email `sent` on the shop's local
day, plus what a worker is sending right now, read from the database every
worker shares. Counting per letter would cost a query each; instead each
process reads the count, then counts its own sends, and reads again once it
has used an eighth of what was left, after a few seconds, and at every
letter for the last LAST_FEW of the day. A letter is unseen by the other
workers only from the moment its worker counts it until that worker marks
it `sending`, so with up to eight workers at once the day ends at most one
letter per other worker over the allowance (two workers: one letter).
When the day's allowance is used up, marketing email waits until the next
local midnight, with the reason in the message log.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import Connection, bindparam, func, or_, select

from hub.api import (TRANSACTIONAL, N_, Message, Outgoing, ReasonShape, Settings, SettingsError, Verdict,
                     format_number, gettext)

CHANNEL = "email"
DEFAULT_FIRST = 500
DEFAULT_GROWTH = 1.5
DEFAULT_TARGET = 100_000
# Read the count afresh this often at most, and at every letter when this few are left.
REFRESH_S = 5.0
LAST_FEW = 50


@dataclass(frozen=True)
class Warmup:
    """The schedule: `first` letters on `start` (a local date), times `growth` each day after, up to `target`."""

    start: dt.date
    first: int = DEFAULT_FIRST
    growth: float = DEFAULT_GROWTH
    target: int = DEFAULT_TARGET

    def allowance(self, day: dt.date) -> int | None:
        """Marketing letters allowed on a local day; None once warm-up is over (or before it began: day 1's)."""
        n = max((day - self.start).days, 0)
        if n > 400:  # long over, and growth**n would overflow
            return None
        allowed = math.floor(self.first * self.growth ** n)
        return None if allowed >= self.target else allowed


# --- settings ------------------------------------------------------------------------------------

def _setting(settings: Settings, name: str) -> tuple[Any, str]:
    """The variable when set (the environment wins over hub.toml, as for every setting), else the table's key."""
    table = settings.extra.get("mailing")
    if settings.extra.get(f"mail_warmup_{name}") is None and isinstance(table, Mapping) \
            and table.get(f"warmup_{name}") is not None:
        return table[f"warmup_{name}"], f"[mailing] warmup_{name}"
    return settings.extra.get(f"mail_warmup_{name}"), f"HUB_MAIL_WARMUP_{name.upper()}"


def _whole(settings: Settings, name: str, default: int) -> int:
    raw, where = _setting(settings, name)
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw).strip().replace(" ", "").replace("_", ""))
    except ValueError:
        raise SettingsError(gettext("%(name)s: %(value)r is not a whole number of letters", name=where,
                                    value=raw)) from None
    if not 1 <= value <= 100_000_000:
        raise SettingsError(gettext("%(name)s: must be from 1 to 100 000 000 (got %(value)s)", name=where,
                                    value=raw))
    return value


def parse(settings: Settings) -> Warmup | None:
    """The warm-up schedule, checked; None when no start date is set. SettingsError naming the setting at fault."""
    raw, where = _setting(settings, "start")
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "off")):
        return None
    if isinstance(raw, dt.datetime):
        start = raw.date()
    elif isinstance(raw, dt.date):
        start = raw
    else:
        try:
            start = dt.date.fromisoformat(str(raw).strip())
        except ValueError:
            raise SettingsError(gettext("%(name)s: %(value)r is not a date; write it as YYYY-MM-DD, e.g. 2026-12-07",
                                        name=where, value=raw)) from None
    graw, gwhere = _setting(settings, "growth")
    growth = DEFAULT_GROWTH
    if graw not in (None, ""):
        try:
            growth = float(str(graw).strip().replace(",", "."))
        except ValueError:
            raise SettingsError(gettext("%(name)s: %(value)r is not a number, e.g. 1.5", name=gwhere,
                                        value=graw)) from None
        if not 1.0 < growth <= 10.0:
            raise SettingsError(gettext("%(name)s: the daily growth must be more than 1 and at most 10 "
                                        "(got %(value)s)", name=gwhere, value=graw))
    first = _whole(settings, "first", DEFAULT_FIRST)
    target = _whole(settings, "target", DEFAULT_TARGET)
    if target < first:
        raise SettingsError(gettext("HUB_MAIL_WARMUP_TARGET (%(target)s) is less than HUB_MAIL_WARMUP_FIRST "
                                    "(%(first)s)", target=target, first=first))
    return Warmup(start, first, growth, target)


_loaded: tuple[Settings, Warmup | None] | None = None


def load(settings: Settings) -> Warmup | None:
    """The schedule in force, read once per Settings object: the rule runs for every letter."""
    global _loaded
    found = _loaded
    if found is None or found[0] is not settings:
        found = _loaded = (settings, parse(settings))
    return found[1]


# --- the reason a letter waits ---------------------------------------------------------------------

def _say(values: Mapping[str, str]) -> str:
    shown = {k: format_number(int(v)) if v.isdigit() else v for k, v in values.items()}
    return gettext("domain warm-up: %(sent)s of %(limit)s letters sent today, the rest will go tomorrow", **shown)


WARMUP = ReasonShape("domain warm-up: %(sent)s of %(limit)s sent today", say=_say)
# Shown when the values do not read as numbers: the stored English words, as a msgid.
N_("domain warm-up: %(sent)s of %(limit)s sent today")


# --- counting what went out today ----------------------------------------------------------------

_m = Message.__table__.c
_SENT_TODAY = (select(func.count()).select_from(Message.__table__).where(
    _m.channel == CHANNEL, _m.purpose != TRANSACTIONAL,
    or_(_m.status == "sent", _m.status == "sending"),
    func.coalesce(_m.sent_at, _m.claimed_at) >= bindparam("since", type_=_m.sent_at.type),
    func.coalesce(_m.sent_at, _m.claimed_at) < bindparam("until", type_=_m.sent_at.type)))


class _Count:
    """Today's count as last read, plus this process's own sends since; read again when it may be stale."""

    def __init__(self) -> None:
        self.day: dt.date | None = None
        self.read = 0
        self.mine = 0
        self.left_at_read = 0
        self.read_at = 0.0
        self.lock = threading.Lock()


_count = _Count()


def _day_bounds(day: dt.date, zone: Any) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(0, 0), tzinfo=zone).astimezone(dt.timezone.utc)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 0), tzinfo=zone).astimezone(dt.timezone.utc)
    return start, end


def sent_today(conn: Connection, day: dt.date, zone: Any) -> int:
    """Marketing email sent (or being sent) on a local day, by every worker."""
    since, until = _day_bounds(day, zone)
    return int(conn.execute(_SENT_TODAY, {"since": since, "until": until}).scalar() or 0)


def warmup_rule(conn: Connection, settings: Settings, message: Outgoing, now: dt.datetime) -> Verdict | None:
    """Let a marketing letter go while today's allowance lasts; else hold it until the next local midnight."""
    if message.channel != CHANNEL or message.purpose == TRANSACTIONAL:
        return None
    warmup = load(settings)
    if warmup is None:
        return None
    zone = settings.tz
    day = now.astimezone(zone).date()
    allowed = warmup.allowance(day)
    if allowed is None:
        return None
    c = _count
    with c.lock:
        clock = time.monotonic()
        stale = (c.day != day or clock - c.read_at > REFRESH_S or c.left_at_read <= LAST_FEW
                 or c.mine * 8 >= c.left_at_read)
        if stale:
            c.day, c.read, c.mine, c.read_at = day, sent_today(conn, day, zone), 0, clock
            c.left_at_read = allowed - c.read
        used = c.read + c.mine
        if used < allowed:
            c.mine += 1
            return None
    _since, midnight = _day_bounds(day, zone)
    return Verdict.defer(midnight, WARMUP(sent=used, limit=allowed))
