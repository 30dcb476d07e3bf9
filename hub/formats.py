"""Dates, times, money, counts and phones as the reader writes them, in the admin and the command line alike.

Russian readers expect 06.12.2026, 14:05 МСК, 639 660,00 ₽, 1 234 контакта
and +7 916 123-45-67; English readers get their own conventions from the same
calls. Babel knows each language's rules, so nothing here is hand-made
beyond choosing which of Babel's formats a Russian shop reads. Times are
stored in UTC and shown in the shop's time zone (HUB_TIMEZONE); a date
without a time (a birthday, a deal's close date) is never put through a
time zone, so it cannot slide to the day before or to 03:00. JSON output
keeps machine forms (ISO dates, E.164 phones, plain numbers): only people
read what this module writes.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from babel import Locale
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from babel import units as babel_units

from hub import i18n

# Which of Babel's patterns each language reads: 06.12.2026 and 14:05 in Russian; Dec 6, 2026 and 2:05 PM in English.
_DATE = {"ru": "dd.MM.yyyy", "en": "medium"}
_TIME = {"ru": "HH:mm", "en": "h:mm a"}
UTC = dt.timezone.utc


def _locale(language: str | None) -> str:
    return i18n.normalize(language or i18n.current_language())


def date(value: dt.date | dt.datetime | str | None, language: str | None = None) -> str:
    """A calendar date as written in `language` (the current one by default): 30.03.1992.

    A datetime is shown as the date of its own calendar, not moved between
    time zones: use `moment` for instants.
    """
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value[:10])
        except ValueError:
            return str(value)
    if isinstance(value, dt.datetime):
        value = value.date()
    locale = _locale(language)
    return babel_dates.format_date(value, _DATE.get(locale, "medium"), locale=locale)


def moment(value: dt.datetime | str | None, tz: ZoneInfo | str, language: str | None = None, *,
           zone: bool = False) -> str:
    """An instant (stored in UTC) in the shop's time zone: 06.12.2026 14:05, with the zone's name if `zone`.

    Name the zone wherever a reader could doubt it: the command line run on a
    server elsewhere, an export, a schedule.
    """
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if not isinstance(value, dt.datetime):
        return date(value, language)
    zone_info = ZoneInfo(tz) if isinstance(tz, str) else tz
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(zone_info)
    locale = _locale(language)
    text = (f"{babel_dates.format_date(local, _DATE.get(locale, 'medium'), locale=locale)} "
            f"{babel_dates.format_time(local, _TIME.get(locale, 'short'), locale=locale)}")
    return f"{text} {zone_name(zone_info, local, language)}" if zone else text


def zone_name(tz: ZoneInfo | str, when: dt.datetime | None = None, language: str | None = None) -> str:
    """The time zone as its readers call it: МСК for Moscow, otherwise its UTC offset (UTC+05:00)."""
    zone_info = ZoneInfo(tz) if isinstance(tz, str) else tz
    if str(zone_info.key) == "Europe/Moscow" and _locale(language) == "ru":
        return "МСК"
    offset = (when or dt.datetime.now(UTC)).astimezone(zone_info).utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "−"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def number(value: Any, language: str | None = None) -> str:
    """12 345 or 12 345,5 in Russian (no-break space between groups), 12,345.5 in English."""
    if value is None or value == "":
        return ""
    return babel_numbers.format_decimal(value, locale=_locale(language))


def money(amount: Decimal | float | int | str | None, currency: str | None = "RUB", language: str | None = None) -> str:
    """639 660,00 ₽ — in the currency the amount was synced in (€, $, ₸ as their readers write them)."""
    if amount is None or amount == "":
        return ""
    code = (currency or "RUB").upper()
    text = babel_numbers.format_currency(Decimal(str(amount)), code, locale=_locale(language))
    return text.replace("RUB", "₽") if code == "RUB" else text  # English CLDR writes RUB639,660.00


def percent(share: float | None, language: str | None = None) -> str:
    """12,5 % in Russian, 12.5% in English — a share (0.125) as a percentage, to a tenth."""
    if share is None:
        return ""
    locale = _locale(language)
    pattern = Locale.parse(locale).percent_formats[None].pattern.replace("#,##0", "#,##0.#", 1)
    return babel_numbers.format_percent(share, pattern, locale=locale)


def _parsed(e164: str, region: str) -> phonenumbers.PhoneNumber | None:
    """A stored phone parsed, or None when it does not parse (then it is shown as stored)."""
    try:
        return phonenumbers.parse(e164, region)
    except phonenumbers.NumberParseException:
        return None


def national_phone(e164: str | None, region: str = "RU") -> str:
    """A phone as people of the shop's country write it: 8 (916) 123-45-67 at home, +49 30 … abroad."""
    if not e164:
        return ""
    parsed = _parsed(e164, region)
    if parsed is None:
        return e164
    if phonenumbers.region_code_for_number(parsed) == region.upper():
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def phone(e164: str | None, region: str = "RU") -> str:
    """A stored phone as people read it: +7 916 123-45-67 (anything unparseable is shown as stored)."""
    if not e164:
        return ""
    parsed = _parsed(e164, region)
    if parsed is None or not phonenumbers.is_possible_number(parsed):
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def contacts(count: int, language: str | None = None) -> str:
    """1 контакт, 2 контакта, 5 контактов: a count of people in the reader's language."""
    with i18n.use_language(_locale(language)):
        return i18n.ngettext("%(num)s contact", "%(num)s contacts", count, num=number(count))


# The units a length of time is said in, largest first: "14 дней", not "2 недели" or "336 часов".
_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def _within(unit: str, count: int, language: str) -> str:
    """A length after «в течение» / "within": Russian takes the genitive there («в течение 21 дня»)."""
    catalog = i18n.translations(language)
    forms = {
        "day": lambda: catalog.npgettext("within", "%(num)s day", "%(num)s days", count),
        "hour": lambda: catalog.npgettext("within", "%(num)s hour", "%(num)s hours", count),
        "minute": lambda: catalog.npgettext("within", "%(num)s minute", "%(num)s minutes", count),
        "second": lambda: catalog.npgettext("within", "%(num)s second", "%(num)s seconds", count),
    }
    return forms[unit]() % {"num": number(count, language)}


def duration(value: dt.timedelta, language: str | None = None, *, within: bool = False) -> str:
    """A length of time as people say it: 14 дней, 2 часа, 1 неделя, 90 минут.

    Workflow files write 14d and 90m (hub.localtime.format_duration keeps
    that form for files and JSON); readers get the largest whole unit, so a
    code valid for 14d reads «14 дней», not Babel's rounded «2 недели», and
    4 321 минута is not rounded to «3 дня». Weeks are left to days («7 дней»):
    the words stay the same after «на», «за» and «подождать», and match the file's 7d.
    """
    seconds = int(abs(value.total_seconds()))
    locale = _locale(language)
    unit, size = next(((u, s) for u, s in _UNITS if seconds and seconds % s == 0), ("second", 1))
    if within:
        return _within(unit, seconds // size, locale)
    return babel_units.format_unit(seconds // size, f"duration-{unit}", locale=locale)
