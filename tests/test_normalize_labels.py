"""Phones and emails as offices type them: words saying what a number is, Russian domains, mailto: links."""

from __future__ import annotations

import pytest

from hub import normalize


def test_two_labelled_numbers_in_one_cell_are_two_phones_each_with_its_type() -> None:
    found = normalize.phones("тел. +7 916 555-66-77, моб. 8 926 555-66-88")
    assert [(p.value, p.valid, p.label) for p in found] == [
        ("+79165556677", True, None),  # "тел." says only that it is a phone
        ("+79265556688", True, "mobile"),
    ]


def test_a_word_in_the_cell_says_more_than_the_column() -> None:
    found = normalize.phones("тел. +7 495 111-22-33, моб. 8 926 555-66-88", label="work")
    assert [(p.value, p.label) for p in found] == [("+74951112233", "work"), ("+79265556688", "mobile")]


@pytest.mark.parametrize("cell,label", [
    ("раб. 8 495 111-22-33", "work"),
    ("Раб.: 8 (495) 111-22-33 доб. 12", "work"),
    ("дом. 8 495 111-22-33", "home"),
    ("факс 8 495 111-22-33", "fax"),
    ("сот. 8 495 111-22-33", "mobile"),
    ("МОБ 8 495 111-22-33", "mobile"),
    ("8 495 111-22-33 (моб.)", "mobile"),  # the word after its number
    ("Иван: 8 495 111 22 33 (дом)", "home"),
])
def test_words_before_or_after_a_number_give_its_type(cell: str, label: str) -> None:
    found = normalize.phones(cell)
    assert [(p.value, p.valid, p.label) for p in found] == [("+74951112233", True, label)]


def test_several_labelled_numbers_without_commas() -> None:
    found = normalize.phones("моб. 8 926 555-66-88 раб. 8 495 111-22-33; дом. 8 (495) 222-33-44")
    assert [(p.value, p.label) for p in found] == [
        ("+79265556688", "mobile"), ("+74951112233", "work"), ("+74952223344", "home"),
    ]


def test_a_plain_cell_takes_the_column_type_and_nothing_else() -> None:
    assert [(p.value, p.label) for p in normalize.phones("8 (916) 123-45-67", label="mobile")] == [
        ("+79161234567", "mobile")]
    assert [(p.value, p.label) for p in normalize.phones("8 (916) 123-45-67")] == [("+79161234567", None)]
    bad = normalize.phones("звонить после 18", label="work")
    assert [(p.valid, p.label) for p in bad] == [(False, "work")]


def test_a_word_like_a_type_inside_other_words_is_not_one() -> None:
    # "домофон" is not "дом", "работа" is not "раб": no type, and nothing is lost.
    found = normalize.phones("домофон 8 495 111-22-33")
    assert [(p.value, p.label) for p in found] == [("+74951112233", None)]


@pytest.mark.parametrize("raw,value", [
    ("ivan@почта.рф", "ivan@почта.рф"),
    ("Ivan@ПОЧТА.РФ", "ivan@почта.рф"),
    ("info@пример.рф", "info@пример.рф"),
    ("ivan@xn--80a1acny.xn--p1ai", "ivan@почта.рф"),  # the same domain typed in its ASCII form
])
def test_internationalized_domains_are_valid_and_kept_in_unicode(raw: str, value: str) -> None:
    ident = normalize.email(raw)
    assert ident is not None and ident.valid and ident.value == value


@pytest.mark.parametrize("raw", [
    "mailto:Ivan@Mail.ru", "MAILTO:ivan@mail.ru", "<mailto:ivan@mail.ru>", " mailto: ivan@mail.ru ",
])
def test_an_address_typed_as_a_mailto_link_is_the_address(raw: str) -> None:
    ident = normalize.email(raw)
    assert ident is not None and ident.valid and ident.value == "ivan@mail.ru"


def test_mailto_with_nothing_after_it_is_kept_flagged() -> None:
    ident = normalize.email("mailto:")
    assert ident is not None and not ident.valid


def test_emails_carry_the_column_type() -> None:
    found = normalize.emails("ivan@mail.ru; mailto:ivan@work.ru", label="private")
    assert [(e.value, e.label) for e in found] == [("ivan@mail.ru", "private"), ("ivan@work.ru", "private")]
    assert normalize.emails("ivan@mail.ru")[0].label is None
