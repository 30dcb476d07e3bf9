"""A B2B-shaped customer base, as a Bitrix24 contact export holds it.

The plain sample (hub.sampledata) gives every person phones and emails of
their own, which is what a shop's own customers look like. A CRM base of a
business that sells to businesses is different, and the difference is what
identity resolution gets wrong: several employees of one company list the
office switchboard and the company's info@ mailbox, a husband and wife share
a home landline, customers type the company's 8-800 hotline as their own
number, and one person is written "Соколов Пётр" in one row, "Petr Sokolov"
in another and "Петя" in a third. Here those places exist in the ground
truth: a value shared by design (switchboard, role mailbox, home phone,
hotline) belongs to a `Company`, a `Household` or the hotline list, never to
a person, while each person's mobile and personal emails are theirs alone.
So a contact holding rows of two people is an error of the resolver, and a
person left in several contacts is either one too (their rows shared a
personal value) or expected (a nameless row with only the switchboard).

Deterministic like the rest of the package: units (a company, a household
or a single customer) and people each draw from a stream seeded by
(seed, id), so `business_people(150)` is a prefix of `business_people(400)`.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

from hub.records import Gender
from hub.sampledata import (
    _CITIES,
    _FEMALE_FIRST,
    _FEMALE_FORMS,
    _LEAD_SOURCES,
    _MALE_FIRST,
    _NAME_CASES,
    _PATRONYMICS,
    _SURNAMES,
    _TAGS,
    _TRANSLIT_TABLE,
    _VOCABULARY,
    DUPLICATE_GAP,
    JUNK_PHONES,
    TRANSLIT,
    Person,
    _below,
    _birthday,
    _birthday_cell,
    _city_cell,
    _emails,
    _orders,
    _phone_cell,
    _Plan,
    _purpose,
    _stream_seed,
    _Weighted,
    render_email,
    render_phone,
)

# The columns of a Bitrix24 contact export (a subset: the ones a base like
# this fills), each phone and email column typed as Bitrix24 types it.
BUSINESS_COLUMNS = (
    "Имя", "Отчество", "Фамилия", "Дата рождения", "Рабочий телефон", "Мобильный телефон", "Домашний телефон",
    "Рабочий e-mail", "Частный e-mail", "Компания", "Город", "Источник",
)

# Shares of units; with companies of 2-7 people (4.5 on average) and
# households of two, about 35% of people work in a company, 20% live in a
# household and 45% are single customers.
COMPANY_UNIT_RATE = 0.124
HOUSEHOLD_UNIT_RATE = 0.159
COMPANY_SIZE = (2, 7)
HOTLINE_COUNT = 5
HOTLINE_RATE = 0.04          # of single customers: types a hotline as one of their numbers
HOTLINE_ONLY_RATE = 0.25     # of those: the hotline is the only number in that row
WORK_EMAIL_RATE = 0.8        # employees with a personal mailbox at the company's domain
EMPLOYEE_CITY_RATE = 0.9     # employees living in the company's city
NAMELESS_RATE = 0.03         # employees who also appear as a nameless row with only the switchboard
DUPLICATE_RATE = 0.25        # people who appear again, written another way

DIMINUTIVES: dict[str, tuple[str, ...]] = _VOCABULARY["diminutives"]
ROLE_MAILBOXES = _Weighted(_VOCABULARY["role_mailboxes"])
_LEGAL_FORMS = _Weighted(_VOCABULARY["company_legal_forms"])
_FIRST_WORDS: tuple[tuple[str, str], ...] = _VOCABULARY["company_first_words"]
_SECOND_WORDS: tuple[tuple[str, str], ...] = _VOCABULARY["company_second_words"]
# Transliteration systems people and passports use: the package's own, the
# passport one (й -> i, ю -> iu) and a "plain" one (ё -> yo, х -> h).
_LATIN_TABLES = (
    _TRANSLIT_TABLE,
    str.maketrans({**TRANSLIT, **_VOCABULARY["translit_passport"]}),
    str.maketrans({**TRANSLIT, **_VOCABULARY["translit_plain"]}),
)

# How a row writes a person's name: the main row mostly in full, later rows any way people type.
_MAIN_NAME_FORMS = _Weighted((("full", 70), ("no_middle", 22), ("in_one_cell", 5), ("diminutive", 3)))
_OTHER_NAME_FORMS = _Weighted((
    ("full", 25), ("no_middle", 20), ("initials", 9), ("diminutive", 12), ("latin", 10), ("swapped", 7),
    ("in_one_cell", 9), ("first_only", 5), ("yo", 3),
))

_UNIT = _purpose("b2b:unit")
_B2B_PERSON = _purpose("b2b:person")
_B2B_ROW = _purpose("b2b:row")
_HOTLINES = _purpose("b2b:hotlines")


@dataclass(slots=True, frozen=True)
class Company:
    """An employer: its switchboard and role mailboxes are the company's, listed by its employees."""

    company_id: int
    name: str
    domain: str
    city: str
    switchboard: str  # E.164, a Moscow landline
    mailboxes: tuple[str, ...]  # info@domain, sales@domain ...


@dataclass(slots=True, frozen=True)
class Household:
    """A husband and wife sharing a home landline."""

    household_id: int
    phone: str  # E.164


@dataclass(slots=True, frozen=True)
class Customer:
    """A person of the B2B base and the places whose values they list.

    `person.phones` and `person.emails` plus `work_email` are this person's
    own (no other person holds them); the company's switchboard and
    mailboxes, the household's phone and the hotline are shared by design.
    """

    person: Person
    company: Company | None = None
    household: Household | None = None
    work_email: str | None = None  # personal, at the company's domain
    hotline: str | None = None  # an 8-800 number they type as one of theirs

    @property
    def person_id(self) -> int:
        return self.person.person_id

    @property
    def own_phones(self) -> tuple[str, ...]:
        return self.person.phones

    @property
    def own_emails(self) -> tuple[str, ...]:
        return self.person.emails + ((self.work_email,) if self.work_email else ())

    @property
    def shared_phones(self) -> tuple[str, ...]:
        found = []
        if self.company:
            found.append(self.company.switchboard)
        if self.household:
            found.append(self.household.phone)
        if self.hotline:
            found.append(self.hotline)
        return tuple(found)

    @property
    def shared_emails(self) -> tuple[str, ...]:
        return self.company.mailboxes if self.company else ()


def hotlines(seed: int) -> tuple[str, ...]:
    """The few 8-800 numbers of the base: companies' hotlines that customers type as their own."""
    rng = random.Random(_stream_seed(seed, _HOTLINES, 0))
    numbers: list[str] = []
    while len(numbers) < HOTLINE_COUNT:
        number = f"+7800{1_000_000 + rng.randrange(9_000_000)}"
        if number not in numbers:
            numbers.append(number)
    return tuple(numbers)


def _place_phone(plan: _Plan, index: int) -> str:
    """A Moscow landline counted from the top of the space people's numbers fill from the bottom.

    People take indices 2*id and 2*id+1, so places never collide with a
    person's own number while 2*people + 2*places stay below the space
    (18 million numbers).
    """
    prefix, codes, permutation = plan.phone_permutations["moscow_landline"]
    number = permutation(permutation.size - 1 - index)
    code, subscriber = divmod(number, 9_000_000)
    return f"{prefix}{codes[code]}{1_000_000 + subscriber}"


def _company(company_id: int, plan: _Plan, rng: random.Random) -> Company:
    first, first_latin = rng.choice(_FIRST_WORDS)
    second, second_latin = rng.choice(_SECOND_WORDS)
    while second == first:
        second, second_latin = rng.choice(_SECOND_WORDS)
    domain = f"{first_latin}-{second_latin}{company_id}.ru"
    boxes = [ROLE_MAILBOXES.pick(rng)]
    if rng.random() < 0.4:
        other = ROLE_MAILBOXES.pick(rng)
        if other not in boxes:
            boxes.append(other)
    return Company(
        company_id=company_id,
        name=f"{_LEGAL_FORMS.pick(rng)} «{first}-{second}»",
        domain=domain,
        city=_CITIES.pick(rng),
        switchboard=_place_phone(plan, 2 * company_id),
        mailboxes=tuple(f"{box}@{domain}" for box in boxes),
    )


_MALE_FORM = {female: male for male, female in _FEMALE_FORMS.items()}


def initials(first: str) -> set[str]:
    """The letters a first name may be shortened to: its own and its diminutives' (Екатерина: Е, К)."""
    return {first[0]} | {short[0] for short in DIMINUTIVES.get(first, ())}


def _draw_name(rng: random.Random, gender: Gender) -> tuple[str, str, str]:
    if gender == "f":
        return _FEMALE_FIRST.pick(rng), _PATRONYMICS.pick(rng)[1], _FEMALE_FORMS[_SURNAMES.pick(rng)]
    return _MALE_FIRST.pick(rng), _PATRONYMICS.pick(rng)[0], _SURNAMES.pick(rng)


def _new_person(person_id: int, plan: _Plan, rng: random.Random, *, gender: Gender | None = None,
                last: str | None = None, city: str | None = None, avoid_first: set[str] | None = None,
                avoid_initials: set[str] | None = None, avoid_stems: set[str] | None = None) -> Person:
    """A person of their own stream; the avoid_* sets keep the people of one place tellable apart.

    Two employees of one company never share a first name or a family name,
    and a wife's first initials (of her name and its diminutives) differ from
    her husband's: otherwise a row written "Соколов П." with only the
    switchboard or the home phone would fit either of them, and no resolver
    could know whose it is.
    """
    rng.seed(_stream_seed(plan.seed, _B2B_PERSON, person_id))
    if gender is None:
        gender = "f" if rng.random() < 0.5 else "m"
    for _ in range(50):
        first, middle, drawn_last = _draw_name(rng, gender)
        surname = last or drawn_last
        if avoid_first and first in avoid_first:
            continue
        if avoid_initials and initials(first) & avoid_initials:
            continue
        if avoid_stems and _MALE_FORM.get(surname, surname) in avoid_stems:
            continue
        break
    else:  # pragma: no cover - 50 draws from dozens of names and hundreds of surnames
        raise RuntimeError("could not draw a distinct name")
    city = city or _CITIES.pick(rng)
    birthday = _birthday(rng, plan.today)
    phones: tuple[str, ...] = (plan.phone("ru_mobile", person_id, 0),)
    if rng.random() < 0.15:
        phones += (plan.phone("ru_mobile", person_id, 1),)
    emails = _emails(person_id, first, middle, surname, plan, rng)
    lead_source = _LEAD_SOURCES.pick(rng)
    orders, segment_tag = _orders(person_id, plan, rng)
    tags = [segment_tag] if segment_tag else []
    if rng.random() < 0.3:
        tags.append(_TAGS.pick(rng))
    return Person(person_id=person_id, gender=gender, first_name=first, middle_name=middle, last_name=surname,
                  birthday=birthday, city=city, phones=phones, emails=emails, lead_source=lead_source,
                  tags=tuple(dict.fromkeys(tags)), orders=orders)


def _latin(text: str, table: dict[int, str]) -> str:
    return text.lower().translate(table).capitalize()


def _work_email(person: Person, company: Company, taken: set[str]) -> str:
    table = _LATIN_TABLES[0]
    first, last = person.first_name.lower().translate(table), person.last_name.lower().translate(table)
    login = f"{first[0]}.{last}" if person.person_id % 3 else f"{first}.{last}"
    while login in taken:
        login += str(len(taken))
    taken.add(login)
    return f"{login}@{company.domain}"


def business_people(count: int, seed: int = 1, *, today: date | None = None) -> Iterator[Customer]:
    """Stream `count` people of a B2B base with ids 1..count, grouped by the place they share."""
    plan = _Plan(seed, today or date.today())
    lines = hotlines(seed)
    unit_rng, rng = random.Random(), random.Random()
    person_id = company_id = household_id = unit = 0
    while person_id < count:
        unit += 1
        unit_rng.seed(_stream_seed(seed, _UNIT, unit))
        roll = unit_rng.random()
        if roll < COMPANY_UNIT_RATE:
            company_id += 1
            company = _company(company_id, plan, unit_rng)
            size = COMPANY_SIZE[0] + _below(unit_rng, COMPANY_SIZE[1] - COMPANY_SIZE[0] + 1)
            firsts: set[str] = set()
            stems: set[str] = set()
            logins: set[str] = set()
            for _ in range(min(size, count - person_id)):
                person_id += 1
                city = company.city if unit_rng.random() < EMPLOYEE_CITY_RATE else None
                person = _new_person(person_id, plan, rng, city=city, avoid_first=firsts, avoid_stems=stems)
                firsts.add(person.first_name)
                stems.add(_MALE_FORM.get(person.last_name, person.last_name))
                work = _work_email(person, company, logins) if unit_rng.random() < WORK_EMAIL_RATE else None
                yield Customer(person, company=company, work_email=work)
        elif roll < COMPANY_UNIT_RATE + HOUSEHOLD_UNIT_RATE:
            household_id += 1
            household = Household(household_id, _place_phone(plan, 2 * household_id + 1))
            person_id += 1
            husband = _new_person(person_id, plan, rng, gender="m")
            yield Customer(husband, household=household)
            if person_id < count:
                person_id += 1
                wife = _new_person(person_id, plan, rng, gender="f", last=_FEMALE_FORMS.get(husband.last_name,
                                   husband.last_name), city=husband.city, avoid_initials=initials(husband.first_name))
                yield Customer(wife, household=household)
        else:
            person_id += 1
            person = _new_person(person_id, plan, rng)
            hotline = unit_rng.choice(lines) if unit_rng.random() < HOTLINE_RATE else None
            yield Customer(person, hotline=hotline)


# ---------------------------------------------------------------------------
# Rows.
# ---------------------------------------------------------------------------


def name_cells(person: Person, form: str, rng: random.Random) -> tuple[str, str, str]:
    """(Имя, Отчество, Фамилия) as a manager typed them: in full, by initials, in Latin, swapped ..."""
    first, middle, last = person.first_name, person.middle_name, person.last_name
    if form == "diminutive" and first in DIMINUTIVES:
        cells = (rng.choice(DIMINUTIVES[first]), "", last)
    elif form == "initials":
        cells = (f"{first[0]}.", f"{middle[0]}." if rng.random() < 0.6 else "", last)
    elif form == "latin":
        table = rng.choice(_LATIN_TABLES)
        cells = (_latin(first, table), "", _latin(last, table))
    elif form == "swapped":
        cells = (last, middle if rng.random() < 0.3 else "", first)
    elif form == "in_one_cell":
        cells = (f"{last} {first} {middle}" if rng.random() < 0.5 else f"{last} {first}", "", "")
    elif form == "first_only":
        cells = (first, "", "")
    elif form in ("no_middle", "diminutive"):
        cells = (first, "", last)
    else:  # "full", "yo"
        cells = (first, middle, last)
    if form != "yo" and rng.random() < 0.5:
        cells = tuple(cell.replace("ё", "е").replace("Ё", "Е") for cell in cells)  # type: ignore[assignment]
    case = _NAME_CASES.pick(rng)
    if case == "upper":
        cells = tuple(cell.upper() for cell in cells)  # type: ignore[assignment]
    elif case == "lower":
        cells = tuple(cell.lower() for cell in cells)  # type: ignore[assignment]
    return cells


def _cells(customer: Customer, names: tuple[str, str, str], rng: random.Random, *, work_phone: bool = False,
           mobile: bool = False, home: bool = False, work_email: str = "", private: bool = False,
           hotline: bool = False) -> dict[str, str]:
    person = customer.person
    row = dict.fromkeys(BUSINESS_COLUMNS, "")
    row["Имя"], row["Отчество"], row["Фамилия"] = names
    if work_phone and customer.company:
        row["Рабочий телефон"] = render_phone(customer.company.switchboard, rng, extension_rate=0.5)
    if mobile:
        row["Мобильный телефон"] = _phone_cell(person.phones, rng)
    if home and customer.household:
        row["Домашний телефон"] = render_phone(customer.household.phone, rng, extension_rate=0)
    if hotline and customer.hotline:
        hotline_cell = render_phone(customer.hotline, rng, extension_rate=0)
        column = "Мобильный телефон" if not row["Мобильный телефон"] else "Рабочий телефон"
        row[column] = hotline_cell
    if work_email:
        row["Рабочий e-mail"] = render_email(work_email, person.first_name, rng)
    if private and person.emails:
        row["Частный e-mail"] = render_email(rng.choice(person.emails), person.first_name, rng)
    if customer.company:
        row["Компания"] = customer.company.name
    return row


def _work_email_cell(customer: Customer, rng: random.Random, own_rate: float) -> str:
    if customer.work_email and rng.random() < own_rate:
        return customer.work_email
    if customer.company and rng.random() < 0.7:
        return rng.choice(customer.company.mailboxes)
    return ""


def _main_row(customer: Customer, rng: random.Random) -> dict[str, str]:
    person = customer.person
    names = name_cells(person, _MAIN_NAME_FORMS.pick(rng), rng)
    if customer.company:
        row = _cells(customer, names, rng, work_phone=rng.random() < 0.9, mobile=rng.random() < 0.75,
                     work_email=_work_email_cell(customer, rng, 0.6), private=rng.random() < 0.25)
    elif customer.household:
        row = _cells(customer, names, rng, home=rng.random() < 0.85, mobile=rng.random() < 0.8,
                     private=rng.random() < 0.7)
    else:
        only_hotline = customer.hotline is not None and rng.random() < HOTLINE_ONLY_RATE
        row = _cells(customer, names, rng, mobile=not only_hotline, private=rng.random() < 0.7,
                     hotline=customer.hotline is not None)
    if not any(row[column] for column in BUSINESS_COLUMNS[4:9]):
        row["Мобильный телефон"] = _phone_cell(person.phones, rng)
    row["Дата рождения"] = _birthday_cell(person.birthday, rng)
    row["Город"] = _city_cell(person.city, rng)
    row["Источник"] = person.lead_source if rng.random() < 0.9 else ""
    return row


def _other_row(customer: Customer, rng: random.Random) -> dict[str, str]:
    """A later appearance: another spelling of the name, at least one of the person's own values."""
    person = customer.person
    names = name_cells(person, _OTHER_NAME_FORMS.pick(rng), rng)
    own = ["mobile"]
    if person.emails:
        own.append("private")
    if customer.work_email:
        own.append("work")
    chosen = {rng.choice(own)}
    if rng.random() < 0.3:
        chosen.add(rng.choice(own))
    work_email = customer.work_email if "work" in chosen and customer.work_email else ""
    if not work_email and customer.company and rng.random() < 0.2:
        work_email = rng.choice(customer.company.mailboxes)
    row = _cells(customer, names, rng, work_phone=rng.random() < 0.5, mobile="mobile" in chosen,
                 home=rng.random() < 0.5, work_email=work_email, private="private" in chosen,
                 hotline=rng.random() < 0.5)
    if "mobile" in chosen and row["Мобильный телефон"] in JUNK_PHONES:
        row["Мобильный телефон"] = render_phone(person.phones[0], rng)
    row["Город"] = _city_cell(person.city, rng) if rng.random() < 0.5 else ""
    return row


def _nameless_row(customer: Customer, rng: random.Random) -> dict[str, str]:
    """Only the switchboard and the company: nothing says whose row it is, so it cannot join anyone."""
    return _cells(customer, ("", "", ""), rng, work_phone=True)


def business_rows(customers: Iterable[Customer], seed: int = 1, *, duplicate_rate: float = DUPLICATE_RATE
                  ) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (person_id, row) with columns BUSINESS_COLUMNS, later appearances 2-400 rows on.

    Every person yields a main row; with probability `duplicate_rate` 1-2
    more written another way, each holding at least one of the person's own
    values; a few employees also a nameless switchboard-only row.
    """
    rng = random.Random()
    pending: list[tuple[int, int, int, dict[str, str]]] = []
    emitted = 0
    for customer in customers:
        person_id = customer.person_id
        rng.seed(_stream_seed(seed, _B2B_ROW, person_id))
        yield person_id, _main_row(customer, rng)
        emitted += 1
        while pending and pending[0][0] <= emitted:
            _, pid, _, row = heapq.heappop(pending)
            yield pid, row
        later: list[dict[str, str]] = []
        if rng.random() < duplicate_rate:
            later.extend(_other_row(customer, rng) for _ in range(1 if rng.random() < 0.6 else 2))
        if customer.company and rng.random() < NAMELESS_RATE:
            later.append(_nameless_row(customer, rng))
        release = emitted
        for copy, row in enumerate(later):
            release += DUPLICATE_GAP[0] + _below(rng, DUPLICATE_GAP[1] - DUPLICATE_GAP[0] + 1)
            heapq.heappush(pending, (release, person_id, copy, row))
    while pending:
        _, pid, _, row = heapq.heappop(pending)
        yield pid, row


def shared_by_design(kind: str, value: str) -> bool:
    """Whether a normalized value (E.164 phone, lowercase email) of this base is a place's, not a person's.

    People here have mobile numbers of their own; landlines are switchboards
    and home phones, +7800 the hotlines, and role logins the companies'
    mailboxes. Lets a benchmark tell a split it should not have made (rows
    joined by a person's own value) from one it could not avoid.
    """
    if kind == "phone":
        return value.startswith(("+7495", "+7499", "+7800"))
    return value.partition("@")[0] in ROLE_MAILBOXES.values
