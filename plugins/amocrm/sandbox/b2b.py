"""The B2B part of an account (`Account(b2b=True)`, `hub sandbox amocrm --b2b`): people who share numbers.

A shop's own customers each have a mobile of their own; the bases our users
keep in amoCRM also hold companies. Employees list the office switchboard
(WORK) next to their direct line (WORKDD) and a role mailbox (info@, zakaz@),
spouses the same HOME landline, customers type the company's 8-800 hotline,
and one person is entered several times, written differently each time.
Identity resolution must keep the first three apart and join the last, so the
emulator holds them with the ground truth behind every record (`PEOPLE`:
sample person id -> records) and the enum codes a manager would pick.

Person ids start at `PERSON_BASE`, far above any sampledata person, and are
the same in the Bitrix24 emulator's B2B part for the one person both hold
(Пётр Соколов), so a sync of both CRMs can be checked against one truth.
"""

from __future__ import annotations

from typing import NamedTuple

PERSON_BASE = 900_000_000
SOKOLOV = PERSON_BASE + 1  # Пётр Соколов, also in the Bitrix24 emulator's B2B part


class Entry(NamedTuple):
    """One contact as a manager typed it: names, (enum_code, value) phones and emails, where they work."""

    first: str
    last: str
    phones: tuple[tuple[str, str], ...]
    emails: tuple[tuple[str, str], ...] = ()
    company: str | None = None
    position: str | None = None


TECHNOSFERA = "ООО «Техносфера»"
STROYRESURS = "ООО «Стройресурс»"

# Sample person id -> that person's contacts in the account, in the order they were created.
PEOPLE: dict[int, tuple[Entry, ...]] = {
    # ООО «Техносфера», Moscow: switchboard +7 495 777-00-00 with direct lines, fax -01, info@technosfera.ru.
    PERSON_BASE + 110: (Entry("Кирилл", "Орлов", (("WORK", "+7 (495) 777-00-00"), ("WORKDD", "+7 (495) 777-00-15"),
                                                 ("MOB", "+7 915 121-21-21")),
                              (("WORK", "info@technosfera.ru"), ("WORK", "k.orlov@technosfera.ru")), TECHNOSFERA,
                              "Директор"),),
    PERSON_BASE + 111: (Entry("Анна", "Федорова", (("WORK", "8 495 777 00 00"), ("MOB", "+7 915 232-32-32")),
                              (("WORK", "info@technosfera.ru"),), TECHNOSFERA, "Бухгалтер"),),
    PERSON_BASE + 112: (Entry("Максим", "Титов", (("WORK", "+74957770000"), ("FAX", "+7 (495) 777-00-01")),
                              (("WORK", "m.titov@technosfera.ru"),), TECHNOSFERA, "Инженер"),),
    # ООО «Стройресурс», Novosibirsk: switchboard 8 383 220-30-40, fax -41, zakaz@stroyresurs.ru.
    PERSON_BASE + 120: (Entry("Роман", "Кузнецов", (("WORK", "8 (383) 220-30-40"), ("MOB", "+7 913 343-43-43"),
                                                   ("FAX", "+7 383 220-30-41")),
                              (("WORK", "zakaz@stroyresurs.ru"),), STROYRESURS, "Директор"),),
    PERSON_BASE + 121: (Entry("Светлана", "Васильева", (("WORK", "+7 383 220-30-40"), ("FAX", "8 (383) 220-30-41")),
                              (("WORK", "zakaz@stroyresurs.ru"), ("PRIV", "svetlana.vasilyeva.nsk@mail.ru")),
                              STROYRESURS, "Менеджер"),),
    PERSON_BASE + 122: (Entry("Игорь", "Павлов", (("WORK", "83832203040"),),
                              (("WORK", "ZAKAZ@stroyresurs.ru"), ("OTHER", "pavlov.igor.nsk@yandex.ru")), STROYRESURS,
                              "Снабженец"),),
    # A household: husband and wife, one HOME landline, a mobile each.
    PERSON_BASE + 130: (Entry("Алексей", "Петров", (("HOME", "+7 (812) 555-12-34"), ("MOB", "+7 911 454-54-54"))),),
    PERSON_BASE + 131: (Entry("Екатерина", "Петрова", (("HOME", "8 812 555-12-34"), ("MOB", "+7 911 565-65-65")),
                              (("PRIV", "ekaterina.petrova.spb@mail.ru"),)),),
    # Customers who typed the company's own hotline instead of their number.
    PERSON_BASE + 140: (Entry("Дарья", "Ильина", (("WORK", "8 800 200-00-00"),),
                              (("PRIV", "ilina.darya.92@mail.ru"),)),),
    PERSON_BASE + 141: (Entry("Георгий", "Шубин", (("MOB", "8-800-200-00-00"),),
                              (("PRIV", "g.shubin.1975@yandex.ru"),)),),
    PERSON_BASE + 142: (Entry("Вера", "Комарова", (("OTHER", "+7 800 200 00 00"),)),),
    # One person, three contacts: as a customer, typed in Latin letters, and with an initial only.
    SOKOLOV: (
        Entry("Пётр", "Соколов", (("MOB", "+7 (916) 700-11-22"),), (("PRIV", "sokolov.petr.1984@gmail.com"),)),
        Entry("Petr", "Sokolov", (("MOB", "8 916 700 11 22"),), (("WORK", "p.sokolov@vektor-m.ru"),)),
        Entry("П.", "Соколов", (("MOB", "+79167001122"),)),
    ),
}

# Groups the identity rules must keep apart, as person ids: colleagues behind one switchboard,
# spouses behind one home line, strangers behind one hotline.
COLLEAGUES = {TECHNOSFERA: (PERSON_BASE + 110, PERSON_BASE + 111, PERSON_BASE + 112),
              STROYRESURS: (PERSON_BASE + 120, PERSON_BASE + 121, PERSON_BASE + 122)}
HOUSEHOLD = (PERSON_BASE + 130, PERSON_BASE + 131)
HOTLINE = (PERSON_BASE + 140, PERSON_BASE + 141, PERSON_BASE + 142)
