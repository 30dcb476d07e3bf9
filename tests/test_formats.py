"""Dates, times, money, numbers and phones as a Russian (or English) reader writes them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from hub import formats, i18n

UTC = dt.timezone.utc


def test_a_date_without_a_time_is_never_moved_between_zones() -> None:
    birthday = dt.date(1992, 3, 30)
    assert formats.date(birthday) == "30.03.1992"
    assert formats.date("1992-03-30") == "30.03.1992"
    # Stored as midnight UTC, as a CRM sends a close date: still the 30th, not the 29th at 21:00 or 03:00.
    assert formats.date(dt.datetime(1992, 3, 30, tzinfo=UTC)) == "30.03.1992"
    assert formats.date(birthday, "en") == "Mar 30, 1992"
    assert formats.date(None) == formats.date("") == ""
    assert formats.date("not a date") == "not a date"


def test_an_instant_is_shown_in_the_shops_zone_and_can_say_which() -> None:
    noon_utc = dt.datetime(2026, 12, 6, 9, 5, tzinfo=UTC)
    assert formats.moment(noon_utc, "Europe/Moscow") == "06.12.2026 12:05"
    assert formats.moment(noon_utc, "Europe/Moscow", zone=True) == "06.12.2026 12:05 МСК"
    assert formats.moment(noon_utc, "Asia/Yekaterinburg", zone=True) == "06.12.2026 14:05 UTC+05:00"
    assert formats.moment(noon_utc, "Europe/Moscow", "en", zone=True) == "Dec 6, 2026 12:05 PM UTC+03:00"
    assert formats.moment(dt.datetime(2026, 12, 6, 9, 5), "Europe/Moscow") == "06.12.2026 12:05"  # naive = UTC
    assert formats.moment("2026-12-06T09:05:00+00:00", "Europe/Moscow") == "06.12.2026 12:05"


@pytest.mark.parametrize("amount, currency, language, shown", [
    (639660, "RUB", "ru", "639\u00a0660,00\u00a0₽"),
    (Decimal("12.5"), "RUB", "ru", "12,50\u00a0₽"),
    (639660, "RUB", "en", "₽639,660.00"),
    (100, "USD", "en", "$100.00"),
    (100, "EUR", "ru", "100,00\u00a0€"),
    ("1500", None, "ru", "1\u00a0500,00\u00a0₽"),
])
def test_money_in_the_currency_it_was_synced_in(amount: object, currency: str | None, language: str,
                                                 shown: str) -> None:
    assert formats.money(amount, currency, language) == shown  # type: ignore[arg-type]


def test_numbers_shares_and_phones() -> None:
    assert formats.number(1234567) == "1\u00a0234\u00a0567"
    assert formats.number(1234567, "en") == "1,234,567"
    assert formats.percent(0.125) == "12,5\u00a0%"
    assert formats.phone("+79161234567") == "+7 916 123-45-67"
    assert formats.phone("+375291234567") == "+375 29 123-45-67"
    assert formats.phone("12") == "12"  # not a phone: shown as stored
    assert formats.phone(None) == ""


def test_counts_of_people_follow_the_current_language() -> None:
    with i18n.use_language("ru"):
        assert formats.contacts(3) == "3 контакта"
    with i18n.use_language("en"):
        assert formats.contacts(3) == "3 contacts"
    assert formats.contacts(5, "ru") == "5 контактов"


def test_lengths_of_time_read_as_people_say_them_not_as_files_write_them() -> None:
    day = dt.timedelta(days=1)
    assert formats.duration(14 * day, "ru") == "14 дней"  # not Babel's rounded «2 недели»
    assert formats.duration(30 * day, "ru") == "30 дней"  # not «1 месяц»
    assert formats.duration(7 * day, "ru") == "7 дней"
    assert formats.duration(dt.timedelta(hours=2), "ru") == "2 часа"
    assert formats.duration(dt.timedelta(hours=36), "ru") == "36 часов"  # not «2 дня»
    assert formats.duration(dt.timedelta(minutes=1), "ru") == "1 минута"
    assert formats.duration(dt.timedelta(seconds=30), "ru") == "30 секунд"
    assert formats.duration(dt.timedelta(minutes=4321), "ru") == "4\u00a0321 минута"
    assert formats.duration(14 * day, "en") == "14 days"
    with i18n.use_language("en"):
        assert formats.duration(dt.timedelta(hours=1)) == "1 hour"
    from hub import api

    assert api.format_length(14 * day) == "14 дней" and api.format_duration(14 * day) == "14d"
