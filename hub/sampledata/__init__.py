"""Seeded, realistic and deliberately messy Russian customer bases.

`hub demo`, the tests and the benchmarks all need the same thing: a population
of people whose true identity is known (the ground truth), rendered the way a
small business actually holds them - phones written ten different ways, the
same customer typed in twice, two different "Иванов Иван Иванович", a cell that
says "звонить после 18". Resolution quality can only be measured against such
data, and only if it is reproducible, so everything here is driven by
`random.Random` instances seeded from the caller's seed: the same seed gives
byte-identical output.

Every person and every person's rows are generated from a stream seeded by
(seed, person_id) alone, so `people(2_000)` is a prefix of `people(1_000_000)`
and a CRM emulator can render person 17 without generating persons 1-16. The
generators stream, keeping only a small bounded buffer, so a million-row file
costs no more memory than a thousand-row one.

Canonical phones and emails are unique per person by construction (derived
from the person id through a seeded permutation; guaranteed for up to nine
million people), so two ground-truth people never share a contact point by
accident and any merge of them is an error of the resolver, not of the data.
hub.sampledata.business adds what a B2B base shares on purpose (switchboards,
role mailboxes, home phones, hotlines) and keeps the same promise for every
value that is a person's own.
"""

from __future__ import annotations

import bisect
import csv
import heapq
import json
import math
import random
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from importlib import resources
from itertools import accumulate
from pathlib import Path
from typing import Any, Generic, TextIO, TypeVar

from hub.records import ContactRecord, Gender, OrderRecord, OrderStatus

T = TypeVar("T")

# ---------------------------------------------------------------------------
# Ground-truth vocabulary, kept as data in vocabulary.json next to this module
# and read once at import. Pairs are (value, relative weight).
# ---------------------------------------------------------------------------


def _frozen(value: Any) -> Any:
    """JSON arrays as tuples, so the vocabulary is immutable and compares as it did when it was code."""
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    if isinstance(value, dict):
        return {key: _frozen(item) for key, item in value.items()}
    return value


_VOCABULARY: dict[str, Any] = _frozen(
    json.loads(resources.files(__name__).joinpath("vocabulary.json").read_text(encoding="utf-8"))
)

FEMALE_SHARE = 0.56  # beauty, kids' goods and clothing skew small-business bases female

MALE_FIRST_NAMES: tuple[tuple[str, int], ...] = _VOCABULARY["male_first_names"]
FEMALE_FIRST_NAMES: tuple[tuple[str, int], ...] = _VOCABULARY["female_first_names"]
# Father's name -> (son's patronymic, daughter's patronymic); spelled out
# because the rules have too many exceptions (Илья -> Ильич / Ильинична).
PATRONYMICS: tuple[tuple[tuple[str, str], int], ...] = _VOCABULARY["patronymics"]
# Male forms, most common first; the female form is derived by FEMALE_ENDINGS.
DECLINABLE_SURNAMES: tuple[str, ...] = _VOCABULARY["declinable_surnames"]
# Surnames that read the same for men and women.
INDECLINABLE_SURNAMES: tuple[str, ...] = _VOCABULARY["indeclinable_surnames"]
# Male ending -> female ending, checked in order (longest first).
FEMALE_ENDINGS: tuple[tuple[str, str], ...] = _VOCABULARY["female_endings"]
# A handful of names so common that a base of any size holds several people
# called exactly that; they are the namesakes a resolver must not merge.
# Each is (gender "m"/"f", first name, patronymic, surname).
COMMON_FULL_NAMES: tuple[tuple[Gender, str, str, str], ...] = _VOCABULARY["common_full_names"]

CITIES: tuple[tuple[str, int], ...] = _VOCABULARY["cities"]
# How people shorten or decorate a city when typing it by hand.
CITY_ALIASES: dict[str, tuple[str, ...]] = _VOCABULARY["city_aliases"]

LEAD_SOURCES: tuple[tuple[str, int], ...] = _VOCABULARY["lead_sources"]
TAGS: tuple[tuple[str, int], ...] = _VOCABULARY["tags"]
REGULAR_TAG = "постоянный"
VIP_TAG = "VIP"
PROMO_CODES: tuple[str, ...] = _VOCABULARY["promo_codes"]

# ---------------------------------------------------------------------------
# Contact points. Phones are built only from ranges phonenumbers validates.
# ---------------------------------------------------------------------------

RU_MOBILE_CODES: tuple[str, ...] = _VOCABULARY["ru_mobile_codes"]
MOSCOW_LANDLINE_CODES: tuple[str, ...] = _VOCABULARY["moscow_landline_codes"]
KZ_MOBILE_CODES: tuple[str, ...] = _VOCABULARY["kz_mobile_codes"]
BY_MOBILE_CODES: tuple[str, ...] = _VOCABULARY["by_mobile_codes"]

# (country prefix, operator codes): each kind owns a disjoint number space.
PHONE_KINDS = {
    "ru_mobile": ("+7", RU_MOBILE_CODES),
    "moscow_landline": ("+7", MOSCOW_LANDLINE_CODES),
    "kz_mobile": ("+7", KZ_MOBILE_CODES),
    "by_mobile": ("+375", BY_MOBILE_CODES),
}
SUBSCRIBER_SPACE = 9_000_000  # seven digits not starting with 0

# "company" stands for one of COMPANY_DOMAINS.
EMAIL_DOMAINS: tuple[tuple[str, int], ...] = _VOCABULARY["email_domains"]
COMPANY_DOMAINS: tuple[str, ...] = _VOCABULARY["company_domains"]
# Login rules differ per provider: these accept only letters, digits and dots.
DOTS_ONLY_DOMAINS = frozenset(_VOCABULARY["dots_only_domains"])

TRANSLIT: dict[str, str] = _VOCABULARY["translit"]

# {f}=first name, {l}=last name, {i}=first initial, {m}=patronymic initial.
EMAIL_LOGIN_PATTERNS: tuple[tuple[str, int], ...] = _VOCABULARY["email_login_patterns"]
EMAIL_NUMBER_SEPARATORS: tuple[tuple[str, int], ...] = _VOCABULARY["email_number_separators"]

# ---------------------------------------------------------------------------
# Messy rendering.
# ---------------------------------------------------------------------------

# Russian (+7) numbers: {c}=operator/area code, then the subscriber number in
# 3-2-2 groups {a}{b}{d}; {x} is an extension.
RU_PHONE_FORMATS: tuple[tuple[str, int], ...] = _VOCABULARY["ru_phone_formats"]
BY_PHONE_FORMATS: tuple[tuple[str, int], ...] = _VOCABULARY["by_phone_formats"]
EXTENSION_FORMATS: tuple[tuple[str, int], ...] = _VOCABULARY["extension_formats"]
PHONE_SEPARATORS: tuple[tuple[str, int], ...] = _VOCABULARY["phone_separators"]
JUNK_PHONES: tuple[str, ...] = _VOCABULARY["junk_phones"]

NAME_CASES: tuple[tuple[str, int], ...] = _VOCABULARY["name_cases"]
NAME_ORDERS: tuple[tuple[str, int], ...] = _VOCABULARY["name_orders"]

SPREADSHEET_COLUMNS = ("ФИО", "Телефон", "E-mail", "Дата рождения", "Город", "Источник")

# ---------------------------------------------------------------------------
# Rates.
# ---------------------------------------------------------------------------

NAMESAKE_RATE = 0.008        # copies an earlier person's full name (then both are namesakes)
NAMESAKE_WINDOW = 1_000      # how far back a namesake looks, so small bases get them too
COMMON_NAME_RATE = 0.003     # takes one of COMMON_FULL_NAMES
BIRTHDAY_KNOWN_RATE = 0.82
SECOND_PHONE_RATE = 0.2
MOSCOW_LANDLINE_RATE = 0.12  # of Moscow residents' first phone
SECOND_PHONE_LANDLINE_RATE = 0.3  # of Moscow residents' second phone
KZ_PHONE_RATE = 0.008
BY_PHONE_RATE = 0.012
EMAIL_COUNT_WEIGHTS = ((0, 22), (1, 60), (2, 18))

POTENTIAL_SHARE = 0.30       # never bought
OCCASIONAL_SHARE = 0.46      # 1-2 orders
REGULAR_SHARE = 0.22         # 3-10 orders; the rest are VIPs
VIP_ORDERS = (11, 40)
HISTORY_DAYS = 3 * 365
RECENCY_BUCKETS = (((1, 90), 32), ((91, 365), 40), ((366, HISTORY_DAYS - 30), 28))
LOST_RATE = 0.12
OPEN_RATE = 0.25             # of a recent (< 45 days) last deal
PROMO_RATE = 0.07
WORKDAY_START_UTC = 6 * 3600  # 09:00 Moscow
WORKDAY_SECONDS = 12 * 3600

JUNK_PHONE_RATE = 0.012
NAME_ONLY_ROW_RATE = 0.004   # a row with a name and an unusable phone, nothing else
TWO_NUMBERS_IN_CELL_RATE = 0.45
EXTENSION_RATE = 0.35        # of landline renderings
INVALID_EMAIL_RATE = 0.01
MAIN_ROW_EMAIL_RATE = 0.8
DUPLICATE_GAP = (2, 400)     # rows between a person's appearances; bounds the buffer
DUPLICATE_KINDS = (("phone only", 35), ("email only", 30), ("phone and email", 35))


class _Weighted(Generic[T]):
    """A weighted table drawn with one random() and a bisect: `choices` is 4x slower."""

    __slots__ = ("values", "cumulative", "total")

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        self.values = tuple(value for value, _ in pairs)
        self.cumulative = tuple(accumulate(weight for _, weight in pairs))
        self.total = self.cumulative[-1]

    def pick(self, rng: random.Random) -> T:
        return self.values[bisect.bisect(self.cumulative, rng.random() * self.total)]


def _below(rng: random.Random, n: int) -> int:
    """An int in range(n): what randrange does, at a third of the cost in the hot loops."""
    return int(rng.random() * n)


def _female_surname(male: str) -> str:
    for male_ending, female_ending in FEMALE_ENDINGS:
        if male.endswith(male_ending):
            return male[: -len(male_ending)] + female_ending
    return male


def _surname_weights() -> list[tuple[str, float]]:
    """Zipf-like weights: Ивановых far more than Трубецких, as in life."""
    pairs = [(name, 1 / (rank + 20)) for rank, name in enumerate(DECLINABLE_SURNAMES)]
    pairs += [(name, 0.01) for name in INDECLINABLE_SURNAMES]
    return pairs


_MALE_FIRST = _Weighted(MALE_FIRST_NAMES)
_FEMALE_FIRST = _Weighted(FEMALE_FIRST_NAMES)
_PATRONYMICS = _Weighted(PATRONYMICS)
_SURNAMES = _Weighted(_surname_weights())
_FEMALE_FORMS = {name: _female_surname(name) for name in _SURNAMES.values}
_CITIES = _Weighted(CITIES)
_LEAD_SOURCES = _Weighted(LEAD_SOURCES)
_TAGS = _Weighted(TAGS)
_EMAIL_COUNTS = _Weighted(EMAIL_COUNT_WEIGHTS)
_EMAIL_DOMAINS = _Weighted(EMAIL_DOMAINS)
_LOGIN_PATTERNS = _Weighted(EMAIL_LOGIN_PATTERNS)
_NUMBER_SEPARATORS = _Weighted(EMAIL_NUMBER_SEPARATORS)
_RECENCY = _Weighted(RECENCY_BUCKETS)
_RU_FORMATS = _Weighted(RU_PHONE_FORMATS)
_BY_FORMATS = _Weighted(BY_PHONE_FORMATS)
_EXTENSION_FORMATS = _Weighted(EXTENSION_FORMATS)
_PHONE_SEPARATORS = _Weighted(PHONE_SEPARATORS)
_NAME_CASES = _Weighted(NAME_CASES)
_NAME_ORDERS = _Weighted(NAME_ORDERS)
_DUPLICATE_KINDS = _Weighted(DUPLICATE_KINDS)
_TRANSLIT_TABLE = str.maketrans(TRANSLIT)


# ---------------------------------------------------------------------------
# Ground truth.
# ---------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class SampleOrder:
    """One deal in a person's true purchase history.

    `closed_at` is when the deal reached its status; for an open deal it is
    the last time a manager touched it, so every order has a point in time and
    recency segments can be checked against it. Always UTC and before `today`.
    """

    order_id: int
    amount: Decimal
    currency: str
    status: OrderStatus  # 'won' | 'lost' | 'open'
    closed_at: datetime
    created_at: datetime
    promo_code: str | None


@dataclass(slots=True, frozen=True)
class Person:
    """A real customer: what a perfect resolver would reconstruct from the mess.

    Phones are canonical E.164 and emails lowercase, both unique to this
    person, so the truth never links two people through a shared contact.
    """

    person_id: int
    gender: Gender  # 'm' | 'f'
    first_name: str
    middle_name: str
    last_name: str
    birthday: date | None
    city: str
    phones: tuple[str, ...]  # E.164
    emails: tuple[str, ...]  # lowercase canonical
    lead_source: str
    tags: tuple[str, ...]
    orders: tuple[SampleOrder, ...]

    @property
    def full_name(self) -> str:
        return f"{self.last_name} {self.first_name} {self.middle_name}"


def _purpose(name: str) -> int:
    return zlib.crc32(name.encode())


def _stream_seed(seed: int, purpose: int, key: int) -> int:
    """One integer per (seed, purpose, key), so each person gets an independent stream."""
    return (((seed % 2**64) << 32 | purpose) << 64) | (key % 2**64)


_PERSON = _purpose("person")
_ROW = _purpose("row")


class _AffinePermutation:
    """A bijection of range(size): index -> (a*index + b) % size.

    Gives every (person, slot) its own phone number without remembering which
    numbers were already handed out.
    """

    __slots__ = ("a", "b", "size")

    def __init__(self, size: int, rng: random.Random) -> None:
        a = rng.randrange(size // 3, size)
        while math.gcd(a, size) != 1:
            a += 1
        self.a, self.b, self.size = a, rng.randrange(size), size

    def __call__(self, index: int) -> int:
        return (self.a * index + self.b) % self.size


class _Plan:
    """Everything derived once from (seed, today) and shared by all people."""

    def __init__(self, seed: int, today: date) -> None:
        rng = random.Random(_stream_seed(seed, _purpose("plan"), 0))
        self.seed = seed
        self.today = today
        self.midnight_timestamp = int(_midnight(today).timestamp())
        self.phone_permutations = {
            kind: (prefix, codes, _AffinePermutation(len(codes) * SUBSCRIBER_SPACE, rng))
            for kind, (prefix, codes) in PHONE_KINDS.items()
        }
        # Emails: a multiplier coprime with 9*10^k keeps each digit-length bucket a bijection.
        self.email_multiplier = rng.choice((7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47))
        self.email_offset = rng.randrange(10**9)

    def phone(self, kind: str, person_id: int, slot: int) -> str:
        prefix, codes, permutation = self.phone_permutations[kind]
        number = permutation(2 * person_id + slot)
        code, subscriber = divmod(number, SUBSCRIBER_SPACE)
        return f"{prefix}{codes[code]}{1_000_000 + subscriber}"

    def email_number(self, person_id: int, slot: int) -> str:
        """A number unique to (person, slot), as long as the index is: short for small bases."""
        index = 2 * person_id + slot
        low = 10 ** (len(str(index)) - 1)
        return str(low + (self.email_multiplier * (index - low) + self.email_offset) % (9 * low))


def _identity(person_id: int, plan: _Plan, rng: random.Random) -> tuple[Gender, str, str, str, str]:
    """Gender, first, middle, last name and city: the first draws of a person's stream.

    Drawn first so that a namesake can replay another person's identity
    without generating the rest of them.
    """
    roll = rng.random()
    if roll < NAMESAKE_RATE and person_id > 1:
        target = person_id - 1 - rng.randrange(min(person_id - 1, NAMESAKE_WINDOW))
        other = random.Random(_stream_seed(plan.seed, _PERSON, target))
        gender, first, middle, last, their_city = _identity(target, plan, other)
        city = _CITIES.pick(rng)
        while city == their_city:
            city = _CITIES.pick(rng)
        return gender, first, middle, last, city
    if roll < NAMESAKE_RATE + COMMON_NAME_RATE:
        gender, first, middle, last = rng.choice(COMMON_FULL_NAMES)
        return gender, first, middle, last, _CITIES.pick(rng)
    if rng.random() < FEMALE_SHARE:
        first = _FEMALE_FIRST.pick(rng)
        middle = _PATRONYMICS.pick(rng)[1]
        last = _FEMALE_FORMS[_SURNAMES.pick(rng)]
        return "f", first, middle, last, _CITIES.pick(rng)
    first = _MALE_FIRST.pick(rng)
    middle = _PATRONYMICS.pick(rng)[0]
    last = _SURNAMES.pick(rng)
    return "m", first, middle, last, _CITIES.pick(rng)


def _birthday(rng: random.Random, today: date) -> date | None:
    if rng.random() >= BIRTHDAY_KNOWN_RATE:
        return None
    age_days = int(rng.triangular(18, 75, 34) * 365.25)
    return today - timedelta(days=age_days)


def _phones(person_id: int, city: str, plan: _Plan, rng: random.Random) -> tuple[str, ...]:
    roll = rng.random()
    if roll < BY_PHONE_RATE:
        kind = "by_mobile"
    elif roll < BY_PHONE_RATE + KZ_PHONE_RATE:
        kind = "kz_mobile"
    elif city == "Москва" and rng.random() < MOSCOW_LANDLINE_RATE:
        kind = "moscow_landline"
    else:
        kind = "ru_mobile"
    first = plan.phone(kind, person_id, 0)
    if rng.random() >= SECOND_PHONE_RATE:
        return (first,)
    office = city == "Москва" and rng.random() < SECOND_PHONE_LANDLINE_RATE
    second_kind = "moscow_landline" if office else "ru_mobile"
    return first, plan.phone(second_kind, person_id, 1)


def _translit(text: str) -> str:
    return text.lower().translate(_TRANSLIT_TABLE)


def _emails(person_id: int, first: str, middle: str, last: str, plan: _Plan, rng: random.Random) -> tuple[str, ...]:
    count = _EMAIL_COUNTS.pick(rng)
    if not count:
        return ()
    latin_first, latin_last, latin_middle = _translit(first), _translit(last), _translit(middle[0])
    emails = []
    for slot in range(count):
        domain = _EMAIL_DOMAINS.pick(rng)
        if domain == "company":
            domain = rng.choice(COMPANY_DOMAINS)
        login = _LOGIN_PATTERNS.pick(rng).format(f=latin_first, l=latin_last, i=latin_first[0], m=latin_middle)
        login += _NUMBER_SEPARATORS.pick(rng) + plan.email_number(person_id, slot)
        if domain in DOTS_ONLY_DOMAINS:
            login = login.replace("_", ".")
        emails.append(f"{login}@{domain}")
    return tuple(emails)


def _price(value: float, rng: random.Random) -> Decimal:
    """Shop-like prices: 490, 2 990, 15 400 rather than 2 987.13."""
    rubles = max(10, int(value) // 10 * 10) if value < 1000 else int(value) // 100 * 100
    if rubles >= 100 and rng.random() < 0.5:
        rubles -= 10
    return Decimal(rubles)


def _orders(person_id: int, plan: _Plan, rng: random.Random) -> tuple[tuple[SampleOrder, ...], str | None]:
    """The purchase history and the segment tag it earns (None, 'постоянный' or 'VIP')."""
    roll = rng.random()
    if roll < POTENTIAL_SHARE:
        return (), None
    average = min(60_000.0, max(300.0, rng.lognormvariate(math.log(3_000), 0.8)))
    segment_tag = None
    if roll < POTENTIAL_SHARE + OCCASIONAL_SHARE:
        count = 1 if rng.random() < 0.65 else 2
    elif roll < POTENTIAL_SHARE + OCCASIONAL_SHARE + REGULAR_SHARE:
        count = 3 + _below(rng, 8)
        segment_tag = REGULAR_TAG
    else:
        count = VIP_ORDERS[0] + _below(rng, VIP_ORDERS[1] - VIP_ORDERS[0] + 1)
        average = rng.uniform(15_000, 90_000)
        segment_tag = VIP_TAG
    low, high = _RECENCY.pick(rng)
    last_days_ago = low + _below(rng, high - low + 1)
    span = HISTORY_DAYS - last_days_ago
    days_ago = sorted((last_days_ago + _below(rng, span) for _ in range(count - 1)), reverse=True)
    days_ago.append(last_days_ago)
    orders = []
    for index, days in enumerate(days_ago):
        status: OrderStatus
        is_last = index == count - 1
        if is_last and days < 45 and rng.random() < OPEN_RATE:
            status = "open"
        elif rng.random() < LOST_RATE:
            status = "lost"
        else:
            status = "won"
        closed = plan.midnight_timestamp - days * 86_400 + WORKDAY_START_UTC + _below(rng, WORKDAY_SECONDS)
        created = closed - _below(rng, 21 * 86_400)
        promo = rng.choice(PROMO_CODES) if rng.random() < PROMO_RATE else None
        orders.append(
            SampleOrder(
                order_id=person_id * 100 + index,
                amount=_price(average * (0.5 + 1.1 * rng.random()), rng),
                currency="RUB",
                status=status,
                closed_at=datetime.fromtimestamp(closed, timezone.utc),
                created_at=datetime.fromtimestamp(created, timezone.utc),
                promo_code=promo,
            )
        )
    return tuple(orders), segment_tag


def _person(person_id: int, plan: _Plan, rng: random.Random) -> Person:
    rng.seed(_stream_seed(plan.seed, _PERSON, person_id))
    gender, first, middle, last, city = _identity(person_id, plan, rng)
    birthday = _birthday(rng, plan.today)
    phones = _phones(person_id, city, plan, rng)
    emails = _emails(person_id, first, middle, last, plan, rng)
    lead_source = _LEAD_SOURCES.pick(rng)
    orders, segment_tag = _orders(person_id, plan, rng)
    tags = []
    if segment_tag:
        tags.append(segment_tag)
    while rng.random() < 0.35 and len(tags) < 3:
        tag = _TAGS.pick(rng)
        if tag not in tags:
            tags.append(tag)
    return Person(
        person_id=person_id,
        gender=gender,
        first_name=first,
        middle_name=middle,
        last_name=last,
        birthday=birthday,
        city=city,
        phones=phones,
        emails=emails,
        lead_source=lead_source,
        tags=tuple(tags),
        orders=orders,
    )


def people(count: int, seed: int = 1, *, today: date | None = None) -> Iterator[Person]:
    """Stream `count` people with ids 1..count.

    Person k depends only on (seed, k, today), so smaller populations are
    prefixes of larger ones. About 3% of people share their exact full name
    with another (different phones, emails and city); in large populations
    common names also collide naturally, as they do in real bases. `today`
    anchors birthdays and order dates; it defaults to the current date, so
    pass it when output must be identical across days.
    """
    plan = _Plan(seed, today or date.today())
    rng = random.Random()
    for person_id in range(1, count + 1):
        yield _person(person_id, plan, rng)


# ---------------------------------------------------------------------------
# Messy rendering.
# ---------------------------------------------------------------------------


def render_phone(e164: str, rng: random.Random, *, extension_rate: float = EXTENSION_RATE) -> str:
    """One of the many ways a person types this number; landlines sometimes get an extension."""
    if e164.startswith("+375"):
        code, rest = e164[4:6], e164[6:]
        return _BY_FORMATS.pick(rng).format(c=code, a=rest[:3], b=rest[3:5], d=rest[5:])
    national = e164[2:]
    code, a, b, d = national[:3], national[3:6], national[6:8], national[8:]
    if code in MOSCOW_LANDLINE_CODES and rng.random() < extension_rate:
        extension = str(1 + _below(rng, 999))
        return _EXTENSION_FORMATS.pick(rng).format(c=code, a=a, b=b, d=d, x=extension)
    return _RU_FORMATS.pick(rng).format(c=code, a=a, b=b, d=d)


def _phone_cell(phones: tuple[str, ...], rng: random.Random, avoid: str = "") -> str:
    """A phone cell: junk, one number, or both numbers; never repeating a rendering in `avoid`."""
    if rng.random() < JUNK_PHONE_RATE:
        return rng.choice(JUNK_PHONES)
    if len(phones) == 2 and rng.random() < TWO_NUMBERS_IN_CELL_RATE:
        parts = [_fresh_rendering(phone, rng, avoid) for phone in phones]
        return _PHONE_SEPARATORS.pick(rng).join(parts)
    phone = phones[0] if len(phones) == 1 or rng.random() < 0.75 else phones[1]
    return _fresh_rendering(phone, rng, avoid)


def _fresh_rendering(phone: str, rng: random.Random, avoid: str) -> str:
    """A rendering that does not occur in `avoid`, so a duplicate cannot match by raw text."""
    text = render_phone(phone, rng)
    for _ in range(8):
        if not avoid or text not in avoid:
            break
        text = render_phone(phone, rng)
    return text


def render_email(email: str, first_name: str, rng: random.Random) -> str:
    """Mixed case and stray spaces; about 1% of the time a broken address."""
    login, _, domain = email.partition("@")
    roll = rng.random()
    if roll < INVALID_EMAIL_RATE:
        broken = rng.randrange(4)
        if broken == 0:
            return f"{login}@"
        if broken == 1:
            return f"{login}@{domain.rsplit('.', 1)[0]}"
        if broken == 2:
            return f"{first_name.lower()}@почта"
        spaced = login.replace(".", " ", 1) if "." in login else login[:2] + " " + login[2:]
        return f"{spaced}@{domain}"
    if roll < 0.12:
        name, _, zone = domain.rpartition(".")
        login = ".".join(part.capitalize() for part in login.split("."))
        email = f"{login}@{name.capitalize()}.{zone.upper()}"
    elif roll < 0.16:
        email = email.upper()
    if rng.random() < 0.06:
        email = rng.choice((" ", "  ", "\t")) + email if rng.random() < 0.5 else email + " "
    return email


def _apply_case(text: str, rng: random.Random) -> str:
    case = _NAME_CASES.pick(rng)
    if case == "upper":
        return text.upper()
    if case == "lower":
        return text.lower()
    return text


def render_name(person: Person, rng: random.Random) -> str:
    """The ФИО cell: any order, any case, sometimes just the first name, often 'е' for 'ё'."""
    parts = {"first": person.first_name, "middle": person.middle_name, "last": person.last_name}
    text = " ".join(parts[key] for key in _NAME_ORDERS.pick(rng).split())
    if "ё" in text and rng.random() < 0.5:
        text = text.replace("ё", "е")
    text = _apply_case(text, rng)
    if rng.random() < 0.03:
        text = text.replace(" ", "  ", 1) + " "
    return text


def _birthday_cell(birthday: date | None, rng: random.Random) -> str:
    if birthday is None or rng.random() < 0.2:
        return ""
    if rng.random() < 0.8:
        return f"{birthday.day:02d}.{birthday.month:02d}.{birthday.year}"
    return birthday.isoformat()


def _city_cell(city: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.84:
        return city
    if roll < 0.9 and city in CITY_ALIASES:
        return rng.choice(CITY_ALIASES[city])
    if roll < 0.95:
        return f"г. {city}"
    return ""


def _row(name: str, phone: str, email: str, birthday: str, city: str, source: str) -> dict[str, str]:
    return dict(zip(SPREADSHEET_COLUMNS, (name, phone, email, birthday, city, source), strict=True))


def _main_row(person: Person, rng: random.Random) -> dict[str, str]:
    name = render_name(person, rng)
    if rng.random() < NAME_ONLY_ROW_RATE:
        return _row(name, rng.choice(JUNK_PHONES), "", "", "", "")
    phone = _phone_cell(person.phones, rng)
    email = ""
    if person.emails and rng.random() < MAIN_ROW_EMAIL_RATE:
        email = render_email(person.emails[0], person.first_name, rng)
    source = person.lead_source if rng.random() < 0.93 else ""
    return _row(name, phone, email, _birthday_cell(person.birthday, rng), _city_cell(person.city, rng), source)


def _duplicate_row(person: Person, rng: random.Random, main_phone: str) -> dict[str, str]:
    """Another appearance of the person, shaped so only transitive matching finds all of them."""
    kind = _DUPLICATE_KINDS.pick(rng) if person.emails else "phone only"
    phone = email = ""
    if kind != "email only":
        phone = _phone_cell(person.phones, rng, avoid=main_phone)
    if kind != "phone only":
        email = render_email(rng.choice(person.emails), person.first_name, rng)
    return _row(
        render_name(person, rng), phone, email, _birthday_cell(person.birthday, rng),
        _city_cell(person.city, rng), person.lead_source if rng.random() < 0.7 else "",
    )


def spreadsheet_rows(
    people: Iterable[Person], seed: int = 1, *, duplicate_rate: float = 0.15
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (person_id, row) with columns SPREADSHEET_COLUMNS.

    Every person yields one row; with probability `duplicate_rate` they also
    yield 1-2 messier rows that surface 2-400 rows later (held in a small heap,
    so memory stays flat): phone only, email only, or both with the phone
    written differently. Rows of a person depend only on (seed, person).
    """
    rng = random.Random()
    pending: list[tuple[int, int, int, dict[str, str]]] = []
    emitted = 0
    for person in people:
        rng.seed(_stream_seed(seed, _ROW, person.person_id))
        main = _main_row(person, rng)
        yield person.person_id, main
        emitted += 1
        while pending and pending[0][0] <= emitted:
            _, person_id, _, row = heapq.heappop(pending)
            yield person_id, row
        if rng.random() < duplicate_rate:
            release = emitted
            for copy in range(1 if rng.random() < 0.6 else 2):
                release += DUPLICATE_GAP[0] + _below(rng, DUPLICATE_GAP[1] - DUPLICATE_GAP[0] + 1)
                row = _duplicate_row(person, rng, main["Телефон"])
                heapq.heappush(pending, (release, person.person_id, copy, row))
    while pending:
        _, person_id, _, row = heapq.heappop(pending)
        yield person_id, row


# ---------------------------------------------------------------------------
# Files.
# ---------------------------------------------------------------------------


def write_csv(
    path: str | Path,
    rows: Iterable[tuple[int, dict[str, str]]],
    *,
    encoding: str = "utf-8-sig",
    delimiter: str = ";",
    truth_path: str | Path | None = None,
    columns: Sequence[str] = SPREADSHEET_COLUMNS,
) -> int:
    """Write a header and the rows as a spreadsheet export would; return the number of data rows.

    With `truth_path`, also write "line,person_id" for each data line (the
    header is line 1) so a resolution can be scored against the truth.
    `columns` are the header (the B2B base has its own, see business.py).
    """
    count = 0
    with ExitStack() as files:
        out = files.enter_context(open(path, "w", encoding=encoding, newline=""))
        truth = _open_truth(files, truth_path)
        writer = csv.writer(out, delimiter=delimiter)
        writer.writerow(columns)
        for person_id, row in rows:
            writer.writerow([row.get(column, "") for column in columns])
            count += 1
            if truth:
                truth.write(f"{count + 1},{person_id}\n")
    return count


def write_xlsx(
    path: str | Path,
    rows: Iterable[tuple[int, dict[str, str]]],
    *,
    truth_path: str | Path | None = None,
    columns: Sequence[str] = SPREADSHEET_COLUMNS,
) -> int:
    """Write an .xlsx sheet in openpyxl's streaming mode; the truth file works as in `write_csv`."""
    from openpyxl import Workbook  # only this writer needs it; generation stays stdlib-only

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Клиенты")
    sheet.append(list(columns))
    count = 0
    with ExitStack() as files:
        truth = _open_truth(files, truth_path)
        for person_id, row in rows:
            sheet.append([row.get(column, "") for column in columns])
            count += 1
            if truth:
                truth.write(f"{count + 1},{person_id}\n")
    workbook.save(path)
    return count


def _open_truth(files: ExitStack, truth_path: str | Path | None) -> TextIO | None:
    if truth_path is None:
        return None
    truth = files.enter_context(open(truth_path, "w", encoding="utf-8", newline=""))
    truth.write("line,person_id\n")
    return truth


# ---------------------------------------------------------------------------
# CRM-shaped records.
# ---------------------------------------------------------------------------


def external_id(source: str, person_id: int) -> str:
    """The id a source holds for this person: readable, and distinct across sources."""
    return f"{source}-{person_id}"


def order_external_id(source: str, order_id: int) -> str:
    return f"{source}-order-{order_id}"


def contact_records(
    people: Iterable[Person], source: str, seed: int = 1, *, today: date | None = None
) -> Iterator[ContactRecord]:
    """The people as a CRM holds them: separate name fields, raw messy phones and emails.

    Each phone is its own raw string (sometimes two numbers in one, sometimes
    junk); gender, birthday and city are often not filled in. Deterministic per
    (seed, source, person). `today` bounds created/updated dates of people
    with no orders and defaults to the current date.
    """
    purpose = _purpose(f"contact:{source}")
    midnight = _midnight(today or date.today())
    rng = random.Random()
    for person in people:
        rng.seed(_stream_seed(seed, purpose, person.person_id))
        phones = [render_phone(phone, rng) for phone in person.phones]
        if len(phones) == 2 and rng.random() < 0.15:
            phones = [_PHONE_SEPARATORS.pick(rng).join(phones)]
        if rng.random() < JUNK_PHONE_RATE:
            phones.append(rng.choice(JUNK_PHONES))
        emails = [render_email(email, person.first_name, rng) for email in person.emails]
        has_last = rng.random() > 0.05
        has_middle = rng.random() > 0.3
        created_at, updated_at = _crm_timestamps(person, midnight, rng)
        yield ContactRecord(
            source=source,
            external_id=external_id(source, person.person_id),
            first_name=_apply_case(person.first_name, rng),
            last_name=_apply_case(person.last_name, rng) if has_last else None,
            middle_name=_apply_case(person.middle_name, rng) if has_middle else None,
            phones=phones,
            emails=emails,
            birthday=person.birthday if rng.random() < 0.6 else None,
            city=_city_cell(person.city, rng) or None,
            gender=person.gender if rng.random() < 0.5 else None,
            tags=list(person.tags),
            attributes={"lead_source": person.lead_source},
            created_at=created_at,
            updated_at=updated_at,
        )


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _crm_timestamps(person: Person, midnight: datetime, rng: random.Random) -> tuple[datetime, datetime]:
    """Created before the first deal; updated at the last deal or later, never after today."""
    if person.orders:
        created_at = person.orders[0].created_at - timedelta(seconds=rng.randrange(30 * 86_400))
        last_activity = max(order.closed_at for order in person.orders)
    else:
        created_at = midnight - timedelta(seconds=rng.randrange(1, HISTORY_DAYS * 86_400))
        last_activity = created_at
    room = int((midnight - last_activity).total_seconds())
    updated_at = last_activity + timedelta(seconds=rng.randrange(room) if room > 1 else 0)
    return created_at, updated_at


def order_records(people: Iterable[Person], source: str) -> Iterator[OrderRecord]:
    """The people's deals as the CRM's deal list; open deals have no close date there."""
    for person in people:
        contact_id = external_id(source, person.person_id)
        for order in person.orders:
            yield OrderRecord(
                source=source,
                external_id=order_external_id(source, order.order_id),
                contact_external_id=contact_id,
                amount=order.amount,
                currency=order.currency,
                status=order.status,
                closed_at=None if order.status == "open" else order.closed_at,
                created_at=order.created_at,
                promo_code=order.promo_code,
                title=f"Заказ №{order.order_id}",
            )


# ---------------------------------------------------------------------------
# Whole files, for `hub sample contacts` and the benchmarks.
# ---------------------------------------------------------------------------


def write_sample(out: str | Path, *, people_count: int, seed: int, encoding: str = "cp1251", delimiter: str = ";",
                 duplicate_rate: float | None = None, today: date | None = None,
                 truth_path: str | Path | None = None, b2b: bool = False) -> int:
    """Write a messy customer spreadsheet of `people_count` people to `out` and return its data rows.

    An `.xlsx` name writes a workbook, any other a CSV; `truth_path` also
    writes which person each line belongs to, the answer a resolver is scored
    against. `today` pins the dates, so a benchmark's file is the same every day.
    `b2b` writes the Bitrix24-shaped business base of hub.sampledata.business
    (companies, households, hotlines) instead of a shop's customers.
    """
    columns: Sequence[str] = SPREADSHEET_COLUMNS
    if b2b:
        from hub.sampledata import business

        columns = business.BUSINESS_COLUMNS
        rate = business.DUPLICATE_RATE if duplicate_rate is None else duplicate_rate
        rows = business.business_rows(business.business_people(people_count, seed, today=today), seed,
                                      duplicate_rate=rate)
    else:
        rate = 0.15 if duplicate_rate is None else duplicate_rate
        rows = spreadsheet_rows(people(people_count, seed, today=today), seed, duplicate_rate=rate)
    if str(out).lower().endswith(".xlsx"):
        return write_xlsx(out, rows, truth_path=truth_path, columns=columns)
    return write_csv(out, rows, encoding=encoding, delimiter=delimiter, truth_path=truth_path, columns=columns)
