"""A schedule trigger's cron in words: «каждый день в 10:00» rather than «0 10 * * *».

Only the forms people actually write are worded (daily, weekly, on weekdays,
monthly on a day, every N minutes or hours); anything else is returned as
None and shown as written, since a wrong sentence is worse than the cron.
Times are HUB_TIMEZONE's, as the scheduler reads them.
"""

from __future__ import annotations

import re

from hub.api import N_, gettext, ngettext

_NUMBER = re.compile(r"^\d{1,2}$")
_EVERY = re.compile(r"^\*/(\d{1,2})$")
_DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
# Each weekday as one sentence: Russian agrees «каждый понедельник», «каждую среду», «каждое воскресенье».
WEEKLY = {0: N_("every Sunday at %(time)s"), 1: N_("every Monday at %(time)s"), 2: N_("every Tuesday at %(time)s"),
          3: N_("every Wednesday at %(time)s"), 4: N_("every Thursday at %(time)s"),
          5: N_("every Friday at %(time)s"), 6: N_("every Saturday at %(time)s")}


def _number(text: str, low: int, high: int) -> int | None:
    if not _NUMBER.match(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def _weekday(text: str) -> int | None:
    if text.lower() in _DAY_NAMES:
        return _DAY_NAMES[text.lower()]
    value = _number(text, 0, 7)
    return None if value is None else value % 7


def schedule_words(cron: str) -> str | None:
    """The schedule in the reader's words, or None when it is not one of the usual forms."""
    parts = cron.split() if isinstance(cron, str) else []
    if len(parts) != 5:
        return None
    minute, hour, day, month, weekday = parts
    if month != "*":
        return None
    if hour == "*" and day == "*" and weekday == "*":
        if minute == "*":
            return gettext("every minute")
        every = _EVERY.match(minute)
        if every and 1 <= int(every.group(1)) <= 59:
            n = int(every.group(1))
            return ngettext("every %(num)s minute", "every %(num)s minutes", n)
        at = _number(minute, 0, 59)
        if at is None:
            return None
        return gettext("every hour") if at == 0 else gettext("every hour, at :%(minute)s", minute=f"{at:02d}")
    m = _number(minute, 0, 59)
    if m is None:
        return None
    every = _EVERY.match(hour)
    if every and day == "*" and weekday == "*" and 1 <= int(every.group(1)) <= 23:
        n = int(every.group(1))
        if m == 0:
            return ngettext("every %(num)s hour", "every %(num)s hours", n)
        return None
    h = _number(hour, 0, 23)
    if h is None:
        return None
    time = f"{h:02d}:{m:02d}"
    if day == "*" and weekday == "*":
        return gettext("every day at %(time)s", time=time)
    if day == "*":
        if weekday.lower() in ("1-5", "mon-fri"):
            return gettext("on weekdays at %(time)s", time=time)
        found = _weekday(weekday)
        return None if found is None else gettext(WEEKLY[found], time=time)
    if weekday == "*":
        on = _number(day, 1, 31)
        return None if on is None else gettext("on day %(day)s of every month at %(time)s", day=on, time=time)
    return None
