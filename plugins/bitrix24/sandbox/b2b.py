"""The B2B part of a portal (`Portal(b2b=True)`, `hub sandbox bitrix24 --b2b`): people who share numbers.

A shop's own customers each have a mobile of their own; the bases our users
keep in Bitrix24 also hold companies. Employees list the office switchboard
(a WORK landline) and a role mailbox (info@, sales@), spouses the same HOME
landline, customers type the company's 8-800 hotline, and one person is
entered several times, written differently each time. Identity resolution
must keep the first three apart and join the last, so the emulator holds them
with the ground truth behind every record (`PEOPLE`: sample person id ->
records), and with the multifield types a manager would set on a real portal.

Person ids start at `PERSON_BASE`, far above any sampledata person, and are
the same in the amoCRM emulator's B2B part for the one person both hold
(Пётр Соколов), so a sync of both CRMs can be checked against one truth.
"""

from __future__ import annotations

from typing import NamedTuple

PERSON_BASE = 900_000_000
SOKOLOV = PERSON_BASE + 1  # Пётр Соколов, also in the amoCRM emulator's B2B part


class Entry(NamedTuple):
    """One contact record as a manager typed it: names, (VALUE_TYPE, value) phones and emails, where they work."""

    first: str
    last: str
    phones: tuple[tuple[str, str], ...]
    emails: tuple[tuple[str, str], ...] = ()
    company: str | None = None
    post: str | None = None


VECTOR = "ООО «Вектор»"
MERIDIAN = "ООО «Меридиан»"

# Sample person id -> that person's records on the portal, in the order they were created.
PEOPLE: dict[int, tuple[Entry, ...]] = {
    # ООО «Вектор», Moscow: switchboard +7 495 123-40-00, fax -01, info@vektor-m.ru.
    PERSON_BASE + 10: (Entry("Андрей", "Ковалёв", (("WORK", "+7 (495) 123-40-00"), ("MOBILE", "+7 903 101-22-33"),
                                                  ("FAX", "+7 (495) 123-40-01")),
                             (("WORK", "info@vektor-m.ru"), ("WORK", "a.kovalev@vektor-m.ru")), VECTOR, "Директор"),),
    PERSON_BASE + 11: (Entry("Ирина", "Белова", (("WORK", "8 495 123 40 00"), ("MOBILE", "8-905-202-33-44")),
                             (("WORK", "info@vektor-m.ru"),), VECTOR, "Бухгалтер"),),
    PERSON_BASE + 12: (Entry("Олег", "Захаров", (("WORK", "+74951234000"), ("FAX", "+7 (495) 123-40-01")),
                             (("WORK", "o.zakharov@vektor-m.ru"),), VECTOR, "Инженер"),),
    PERSON_BASE + 13: (Entry("Наталья", "Попова", (("WORK", "8 (495) 123-40-00"), ("MOBILE", "+7 916 303-44-55"),
                                                  ("MAILING", "+7 916 303-44-55")),
                             (("WORK", "Info@Vektor-M.ru"), ("MAILING", "popova.news.2019@mail.ru")), VECTOR,
                             "Менеджер по закупкам"),),
    # ООО «Меридиан», St Petersburg: switchboard 8 812 334-55-00, sales@meridian-spb.ru.
    PERSON_BASE + 20: (Entry("Сергей", "Волков", (("WORK", "8 (812) 334-55-00"), ("MOBILE", "+7 921 404-55-66")),
                             (("WORK", "sales@meridian-spb.ru"),), MERIDIAN, "Директор"),),
    PERSON_BASE + 21: (Entry("Елена", "Морозова", (("WORK", "+7 812 334-55-00"), ("MOBILE", "+7 (921) 505-66-77")),
                             (("WORK", "sales@meridian-spb.ru"), ("HOME", "elena.morozova.spb77@yandex.ru")),
                             MERIDIAN, "Менеджер"),),
    PERSON_BASE + 22: (Entry("Павел", "Никитин", (("WORK", "8 812 3345500"), ("PAGER", "+7 921 606-77-88")),
                             (("WORK", "SALES@meridian-spb.ru"),), MERIDIAN, "Снабженец"),),
    # A household: husband and wife, one HOME landline, a mobile each.
    PERSON_BASE + 30: (Entry("Николай", "Николаев", (("HOME", "+7 (495) 611-22-33"), ("MOBILE", "+7 926 111-22-33"))),),
    PERSON_BASE + 31: (Entry("Мария", "Николаева", (("HOME", "8 495 611-22-33"), ("MOBILE", "+7 926 444-55-66")),
                             (("HOME", "m.nikolaeva.1990@mail.ru"),)),),
    # Customers who typed the company's own hotline instead of their number.
    PERSON_BASE + 40: (Entry("Алексей", "Гусев", (("WORK", "8 800 100-20-30"),),
                             (("HOME", "gusev.aleksei.84@mail.ru"),)),),
    PERSON_BASE + 41: (Entry("Ольга", "Кириллова", (("MOBILE", "8-800-100-20-30"),),
                             (("HOME", "olga.kirillova.1979@yandex.ru"),)),),
    PERSON_BASE + 42: (Entry("Виктор", "Лебедев", (("OTHER", "+7 800 100 20 30"),)),),
    # One person, three records: at work (initial only), as a customer, and typed in Latin letters.
    SOKOLOV: (
        Entry("П.", "Соколов", (("WORK", "+7 (495) 123-40-00"), ("MOBILE", "8 (916) 700-11-22")),
              (("WORK", "p.sokolov@vektor-m.ru"),), VECTOR, "Менеджер"),
        Entry("Пётр", "Соколов", (("MOBILE", "+7 916 700-11-22"),), (("HOME", "sokolov.petr.1984@gmail.com"),)),
        Entry("Petr", "Sokolov", (("MOBILE", "89167001122"),)),
    ),
}

# Groups the identity rules must keep apart, as person ids: colleagues behind one switchboard,
# spouses behind one home line, strangers behind one hotline.
COLLEAGUES = {VECTOR: (PERSON_BASE + 10, PERSON_BASE + 11, PERSON_BASE + 12, PERSON_BASE + 13, SOKOLOV),
              MERIDIAN: (PERSON_BASE + 20, PERSON_BASE + 21, PERSON_BASE + 22)}
HOUSEHOLD = (PERSON_BASE + 30, PERSON_BASE + 31)
HOTLINE = (PERSON_BASE + 40, PERSON_BASE + 41, PERSON_BASE + 42)
