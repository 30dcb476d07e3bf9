"""Phones and emails as people type them."""

from __future__ import annotations

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from hub import normalize


@pytest.mark.parametrize("typed", ["8 (916) 123-45-67", "+7 916 1234567", "9161234567", "7(916)1234567",
                                   "+7-916-123-45-67", "8-916-123-4567", " 8 916 123 45 67 "])
def test_russian_numbers_written_every_way_are_one(typed: str) -> None:
    assert [(p.value, p.valid) for p in normalize.phones(typed, "RU")] == [("+79161234567", True)]


@pytest.mark.parametrize("typed", ["8 10 375 29 1234567", "+375 29 123-45-67", "375 (29) 123-45-67"])
def test_foreign_numbers_with_or_without_their_prefix(typed: str) -> None:
    assert [p.value for p in normalize.phones(typed, "RU")] == ["+375291234567"]


@pytest.mark.parametrize("typed", ["8 916 123-45-67, +7 903 765 43 21", "8 916 123-45-67; 8 903 765 43 21",
                                   "89161234567 / 89037654321", "89161234567 89037654321",
                                   "8 916 123 45 67 8 903 765 43 21", "+7 916 123-45-67 +7 903 765-43-21"])
def test_a_cell_with_two_numbers_gives_two(typed: str) -> None:
    assert [p.value for p in normalize.phones(typed, "RU")] == ["+79161234567", "+79037654321"]


@pytest.mark.parametrize("typed", ["+7 495 111-00-00 доб. 123", "(495) 1110000 ext. 5", "84951110000 доб.12"])
def test_extension_is_dropped_from_the_identity(typed: str) -> None:
    assert [p.value for p in normalize.phones(typed, "RU")] == ["+74951110000"]


@pytest.mark.parametrize("typed", ["+7 495 111-00-00 доб. 123", "(495) 1110000 ext. 5", "84951110000 доб.12"])
def test_what_was_typed_keeps_the_extension_to_reach_the_person_through_the_switchboard(typed: str) -> None:
    (phone,) = normalize.phones(typed, "RU")
    assert phone.raw == typed and phone.label == "work"


@pytest.mark.parametrize("typed", ["нет", "123", "+7 (000)", "звонить после 18"])
def test_unparsable_phone_is_kept_raw_and_flagged(typed: str) -> None:
    (ident,) = normalize.phones(typed, "RU")
    assert ident.valid is False
    assert ident.raw == typed
    assert ident.value == typed


def test_default_region_decides_local_numbers() -> None:
    assert [p.value for p in normalize.phones("29 123 45 67", "BY")] == ["+375291234567"]


def test_emails_are_trimmed_lowercased_and_checked() -> None:
    assert normalize.email("  Ivan.Petrov@Mail.RU ").value == "ivan.petrov@mail.ru"
    for bad in ("ivan.petrov@", "petrov@mail", "ivan petrov@mail.ru", "иван@почта"):
        ident = normalize.emails(bad)[0]
        assert ident.valid is False and ident.raw == bad


national = st.text(alphabet="0123456789", min_size=10, max_size=10)


@settings(max_examples=5000, deadline=None, derandomize=True)
@given(national, st.sampled_from(["8{}", "+7{}", "{}", "7 {}", "8 ({}) ", "+7-{}"]))
def test_fast_path_agrees_with_phonenumbers(digits: str, shape: str) -> None:
    typed = shape.format(digits)
    try:
        parsed = phonenumbers.parse(typed, "RU")
        expected = (phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
                    if phonenumbers.is_valid_number(parsed) else None)
    except phonenumbers.NumberParseException:
        expected = None
    valid = [p.value for p in normalize.phones(typed, "RU") if p.valid]
    assert valid == ([expected] if expected else [])


local = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789._+-", min_size=1, max_size=20)
domain = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=20)


@settings(max_examples=5000, deadline=None, derandomize=True)
@given(local, domain, st.sampled_from(["ru", "com", "org", "test", "local", "c", "рф", "xn--p1ai"]))
def test_email_fast_path_agrees_with_email_validator(user: str, host: str, tld: str) -> None:
    typed = f"{user}@{host}.{tld}"
    try:
        expected: str | None = validate_email(typed.lower(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        expected = None
    ident = normalize.email(typed)
    assert ident is not None
    assert (ident.value if ident.valid else None) == expected
