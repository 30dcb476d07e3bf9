"""What an emulated amoCRM account holds, and how API v4 renders it.

The rest of the emulator (this package) speaks the protocol; this module owns the data:
compact rows for contacts, companies and leads, the account's pipelines and
custom fields, the seeding from `hub.sampledata`, and the JSON shapes API v4
answers with. Rows stay small (a dict of field values, lists of ids) and are
rendered only when a page is asked for, so an account of 100,000 contacts and
their leads is built in seconds and costs little memory.

Seeding draws people from `hub.sampledata.people`, skipping the first
`first_person` of them: two emulators seeded with the same seed and
overlapping ranges hold the same people with the same canonical phones and
emails, each rendered in its own messy way, which is what identity resolution
across CRMs has to cope with.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from itertools import islice
from typing import Any

from hub.api import Person, people
# not in hub.api on purpose: the emulator builds the demo's records from the demo's own vocabulary
from hub.sampledata import LEAD_SOURCES, contact_records
from plugins.amocrm.sandbox import b2b as b2b_data

SOURCE = "amocrm"
ACCOUNT_ID = 31_000_001
SUBDOMAIN = "hubsandbox"
# Ids are large integers in real accounts; fixed bases keep seeded ids stable
# (contact = base + person id, lead = base + sample order id).
CONTACT_ID_BASE = 30_000_000
COMPANY_ID_BASE = 35_000_000
LEAD_ID_BASE = 40_000_000
USERS = (6_100_001, 6_100_002, 6_100_003, 6_100_004)
ADMIN_USER = USERS[0]

WON_STATUS_ID = 142
LOST_STATUS_ID = 143
NAME_ONLY_RATE = 0.08  # contacts created through forms or imports: a name, no first/last split
# The account's time zone (Moscow): date fields hold midnight there, as unix seconds.
ACCOUNT_UTC_OFFSET = timedelta(hours=3)
SOURCE_FILLED_RATE = 0.8  # managers fill in where a customer came from, mostly
POSITION_RATE = 0.3
POSITIONS = ("Менеджер", "Директор", "Бухгалтер", "Инженер", "Дизайнер", "Врач", "Учитель", "Студент")
INTERESTS_RATE = 0.25
SEED_CHUNK = 5_000     # people materialized at a time while seeding


@dataclass(frozen=True, slots=True)
class Status:
    """A pipeline stage; 142 (won) and 143 (lost) exist in every pipeline with the same ids."""

    id: int
    name: str
    sort: int
    color: str
    type: int = 0  # 1 for the "unsorted" stage


@dataclass(frozen=True, slots=True)
class Pipeline:
    id: int
    name: str
    sort: int
    is_main: bool
    statuses: tuple[Status, ...]

    @property
    def working_status_ids(self) -> tuple[int, ...]:
        return tuple(s.id for s in self.statuses if s.id not in (WON_STATUS_ID, LOST_STATUS_ID))


def _closing_statuses() -> tuple[Status, Status]:
    return (
        Status(WON_STATUS_ID, "Успешно реализовано", 10000, "#CCFF66"),
        Status(LOST_STATUS_ID, "Закрыто и не реализовано", 11000, "#D5D8DB"),
    )


PIPELINES = (
    Pipeline(7_000_001, "Продажи", 1, True, (
        Status(7_100_011, "Первичный контакт", 10, "#99ccff"),
        Status(7_100_012, "Переговоры", 20, "#ffff99"),
        Status(7_100_013, "Принимают решение", 30, "#ffcc66"),
        *_closing_statuses(),
    )),
    Pipeline(7_000_002, "Повторные продажи", 2, False, (
        Status(7_100_021, "Новый заказ", 10, "#99ccff"),
        Status(7_100_022, "Сборка", 20, "#ffff99"),
        Status(7_100_023, "Доставка", 30, "#ffcc66"),
        *_closing_statuses(),
    )),
)
PIPELINES_BY_ID = {pipeline.id: pipeline for pipeline in PIPELINES}


@dataclass(frozen=True, slots=True)
class CustomField:
    """A field definition; `enums` pairs enum ids with enum codes (PHONE/EMAIL) or option values."""

    id: int
    name: str
    code: str | None
    type: str
    entity: str
    sort: int
    enums: tuple[tuple[int, str], ...] = ()

    def enum_id(self, code: str) -> int | None:
        for enum_id, enum_code in self.enums:
            if enum_code == code:
                return enum_id
        return None

    def enum_code(self, enum_id: int | None) -> str | None:
        for known_id, enum_code in self.enums:
            if known_id == enum_id:
                return enum_code
        return None

    @property
    def has_enum_codes(self) -> bool:
        return self.type == "multitext"

    @property
    def has_options(self) -> bool:
        """A list field: each value is one of `enums` (id, option text) and renders with its enum_id."""
        return self.type in OPTION_TYPES

    @property
    def holds_dates(self) -> bool:
        """Values are unix seconds (a date at midnight in the account's zone, or a moment)."""
        return self.type in DATE_TYPES


PHONE = CustomField(1_000_001, "Телефон", "PHONE", "multitext", "contacts", 4, (
    (2_000_001, "WORK"), (2_000_002, "WORKDD"), (2_000_003, "MOB"),
    (2_000_004, "FAX"), (2_000_005, "HOME"), (2_000_006, "OTHER"),
))
EMAIL = CustomField(1_000_002, "Email", "EMAIL", "multitext", "contacts", 5, (
    (2_000_011, "WORK"), (2_000_012, "PRIV"), (2_000_013, "OTHER"),
))
OPTION_TYPES = frozenset({"select", "multiselect", "radiobutton"})
DATE_TYPES = frozenset({"date", "birthday", "date_time"})

CITY = CustomField(1_000_003, "Город", None, "text", "contacts", 6)
# POSITION is predefined in every account; the others are fields an account adds itself.
POSITION = CustomField(1_000_004, "Должность", "POSITION", "text", "contacts", 3)
BIRTHDAY = CustomField(1_000_005, "День рождения", None, "birthday", "contacts", 7)
LEAD_SOURCE = CustomField(1_000_006, "Источник", None, "select", "contacts", 8,
                          tuple((2_000_101 + index, name) for index, (name, _) in enumerate(LEAD_SOURCES)))
INTERESTS = CustomField(1_000_007, "Интересы", None, "multiselect", "contacts", 9, (
    (2_000_201, "Новинки"), (2_000_202, "Скидки"), (2_000_203, "Подарки"), (2_000_204, "Доставка"),
))
PROMO_CODE = CustomField(1_000_101, "Промокод", None, "text", "leads", 1)
# Fields a shop adds for what Hub writes back (empty until it does): the code issued to the person, their lead
# score and lifecycle stage; on leads, the code offered (Hub writes it; it is not read as a redemption).
CONTACT_PROMO = CustomField(1_000_008, "Промокод", None, "text", "contacts", 10)
LEAD_SCORE = CustomField(1_000_009, "Оценка лида", None, "numeric", "contacts", 11)
LIFECYCLE = CustomField(1_000_010, "Стадия клиента", None, "text", "contacts", 12)
OFFERED_CODE = CustomField(1_000_102, "Выданный промокод", None, "text", "leads", 2)
CUSTOM_FIELDS = {
    "contacts": {f.id: f for f in (PHONE, EMAIL, CITY, POSITION, BIRTHDAY, LEAD_SOURCE, INTERESTS, CONTACT_PROMO,
                                   LEAD_SCORE, LIFECYCLE)},
    "companies": {f.id: f for f in (PHONE, EMAIL)},
    "leads": {PROMO_CODE.id: PROMO_CODE, OFFERED_CODE.id: OFFERED_CODE},
}
# Fields of every other type an account adds, with values seeded on records (sandbox/round_trip.py): a number,
# a checkbox and a date on contacts; a company's city, ИНН (as a field of its own and in requisites), industry
# and headcount; a lead's payment method, delivery moment and urgency.
BONUS = CustomField(1_000_020, "Бонусы", None, "numeric", "contacts", 13)
CALLS_ALLOWED = CustomField(1_000_021, "Согласие на звонки", None, "checkbox", "contacts", 14)
FIRST_VISIT = CustomField(1_000_022, "Первый визит", None, "date", "contacts", 15)
COMPANY_CITY = CustomField(1_000_201, "Город", None, "text", "companies", 6)
COMPANY_INN = CustomField(1_000_202, "ИНН", None, "text", "companies", 7)
REQUISITES = CustomField(1_000_203, "Реквизиты", None, "legal_entity", "companies", 8)
INDUSTRY = CustomField(1_000_204, "Отрасль", None, "select", "companies", 9, (
    (2_000_301, "Розница"), (2_000_302, "Производство"), (2_000_303, "Строительство"), (2_000_304, "Услуги"),
))
STAFF = CustomField(1_000_205, "Сотрудников", None, "numeric", "companies", 10)
PAYMENT = CustomField(1_000_120, "Способ оплаты", None, "radiobutton", "leads", 3, (
    (2_000_401, "Карта"), (2_000_402, "Наличные"), (2_000_403, "Счёт"),
))
DELIVERY_AT = CustomField(1_000_121, "Доставка", None, "date_time", "leads", 4)
URGENT = CustomField(1_000_122, "Срочно", None, "checkbox", "leads", 5)
CUSTOM_FIELDS["contacts"].update({f.id: f for f in (BONUS, CALLS_ALLOWED, FIRST_VISIT)})
CUSTOM_FIELDS["companies"].update({f.id: f for f in (COMPANY_CITY, COMPANY_INN, REQUISITES, INDUSTRY, STAFF)})
CUSTOM_FIELDS["leads"].update({f.id: f for f in (PAYMENT, DELIVERY_AT, URGENT)})

# Values a field holds: field id -> [(value, enum id or None)], in display order. Values are
# text, except in date fields (unix seconds), checkboxes (bool) and requisites (a dict).
FieldValues = dict[int, list[tuple[Any, int | None]]]


def account_midnight(day: date) -> int:
    """A date as amoCRM stores it in a date or birthday field: midnight in the account's zone, unix seconds."""
    return int((datetime(day.year, day.month, day.day, tzinfo=timezone.utc) - ACCOUNT_UTC_OFFSET).timestamp())


class TagRegistry:
    """Tags of one entity type: amoCRM numbers contact tags and lead tags separately."""

    def __init__(self, first_id: int) -> None:
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._next = first_id

    def id_for(self, name: str) -> int:
        """The tag's id, creating the tag on first use as the API does for tags_to_add by name."""
        tag_id = self._ids.get(name)
        if tag_id is None:
            tag_id = self._next
            self._next += 1
            self._ids[name] = tag_id
            self._names[tag_id] = name
        return tag_id

    def name(self, tag_id: int) -> str | None:
        return self._names.get(tag_id)

    def render(self, tag_ids: Iterable[int]) -> list[dict[str, Any]]:
        return [{"id": tag_id, "name": self._names[tag_id], "color": None} for tag_id in tag_ids]


@dataclass(slots=True)
class ContactRow:
    """A contact, or a company (which shares the shape without first/last names)."""

    id: int
    name: str
    first_name: str
    last_name: str
    responsible_user_id: int
    created_by: int
    updated_by: int
    created_at: int
    updated_at: int
    fields: FieldValues = field(default_factory=dict)
    tags: list[int] = field(default_factory=list)
    lead_ids: list[int] = field(default_factory=list)
    person_id: int | None = None
    company_ids: list[int] = field(default_factory=list)  # a contact's companies (amoCRM allows several)
    contact_ids: list[int] = field(default_factory=list)  # a company's people


@dataclass(slots=True)
class LeadRow:
    """A deal; `contact_ids` lists linked contacts with the main contact first."""

    id: int
    name: str
    price: int
    status_id: int
    pipeline_id: int
    responsible_user_id: int
    created_by: int
    updated_by: int
    created_at: int
    updated_at: int
    closed_at: int | None
    fields: FieldValues = field(default_factory=dict)
    tags: list[int] = field(default_factory=list)
    contact_ids: list[int] = field(default_factory=list)
    person_id: int | None = None
    company_ids: list[int] = field(default_factory=list)  # at most one: amoCRM links a lead to one company


# ---------------------------------------------------------------------------
# Seeding.
# ---------------------------------------------------------------------------

PHONE_ENUM_WEIGHTS = (("MOB", 60), ("WORK", 25), ("HOME", 10), ("OTHER", 5))
EMAIL_ENUM_WEIGHTS = (("PRIV", 55), ("WORK", 35), ("OTHER", 10))


def contact_id_for(person_id: int) -> int:
    """The id a seeded account gives the contact of this sample person."""
    return CONTACT_ID_BASE + person_id


def seed_rows(
    count: int,
    seed: int,
    *,
    first_person: int = 0,
    today: date | None = None,
    contact_tags: TagRegistry,
    lead_tags: TagRegistry,
) -> tuple[list[ContactRow], list[LeadRow]]:
    """Contacts for people first_person+1 .. first_person+count and their orders as leads.

    Rows come out in ascending id order, which the account relies on for
    cheap id-ordered listing.
    """
    today = today or date.today()
    contacts: list[ContactRow] = []
    leads: list[LeadRow] = []
    population = islice(people(first_person + count, seed, today=today), first_person, None)
    rng = random.Random()
    for chunk in _chunks(population, SEED_CHUNK):
        for person, record in zip(chunk, contact_records(chunk, SOURCE, seed, today=today), strict=True):
            rng.seed(seed * 1_000_003 + person.person_id)
            contact = _contact_row(person, record, rng, contact_tags)
            for index, order in enumerate(person.orders):
                lead = _lead_row(person, index, order, contact.id, lead_tags)
                contact.lead_ids.append(lead.id)
                leads.append(lead)
            contacts.append(contact)
    leads.sort(key=lambda row: row.id)
    return contacts, leads


def b2b_rows(after: Sequence[ContactRow], first_id: int, today: date | None = None) -> list[ContactRow]:
    """The records of `b2b_data.PEOPLE` as contacts numbered from `first_id`, created a minute apart
    after the last of `after` (so ids keep following creation time)."""
    today = today or date.today()
    start = max((row.created_at for row in after),
                default=int(datetime(today.year, today.month, today.day, 6, tzinfo=timezone.utc).timestamp()))
    entries = [(person_id, entry) for person_id, records in b2b_data.PEOPLE.items() for entry in records]
    rows = []
    for offset, (person_id, entry) in enumerate(entries):
        fields: FieldValues = {}
        if entry.phones:
            fields[PHONE.id] = [(value, PHONE.enum_id(code)) for code, value in entry.phones]
        if entry.emails:
            fields[EMAIL.id] = [(value, EMAIL.enum_id(code)) for code, value in entry.emails]
        if entry.position:
            fields[POSITION.id] = [(entry.position, None)]
        user = USERS[person_id % len(USERS)]
        created = start + 60 * (offset + 1)
        rows.append(ContactRow(
            id=first_id + offset, name=f"{entry.last} {entry.first}", first_name=entry.first, last_name=entry.last,
            responsible_user_id=user, created_by=user, updated_by=user, created_at=created, updated_at=created,
            fields=fields, person_id=person_id,
        ))
    return rows


def _chunks(items: Iterable[Person], size: int) -> Iterator[list[Person]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _pick(rng: random.Random, weights: Sequence[tuple[str, int]]) -> str:
    roll = rng.random() * sum(weight for _, weight in weights)
    for value, weight in weights:
        roll -= weight
        if roll < 0:
            return value
    return weights[-1][0]


def _contact_row(person: Person, record: Any, rng: random.Random, tags: TagRegistry) -> ContactRow:
    fields: FieldValues = {}
    if record.phones:
        fields[PHONE.id] = [(raw, PHONE.enum_id(_pick(rng, PHONE_ENUM_WEIGHTS))) for raw in record.phones]
    if record.emails:
        fields[EMAIL.id] = [(raw, EMAIL.enum_id(_pick(rng, EMAIL_ENUM_WEIGHTS))) for raw in record.emails]
    if record.city:
        fields[CITY.id] = [(record.city, None)]
    name = " ".join(part for part in (record.last_name, record.first_name, record.middle_name) if part)
    first_name, last_name = record.first_name or "", record.last_name or ""
    if rng.random() < NAME_ONLY_RATE:
        first_name = last_name = ""
    # Drawn after everything above, so adding these fields left the other seeded values as they were.
    if record.birthday:
        fields[BIRTHDAY.id] = [(account_midnight(record.birthday), None)]
    source = record.attributes.get("lead_source")
    if source and rng.random() < SOURCE_FILLED_RATE:
        fields[LEAD_SOURCE.id] = [(source, LEAD_SOURCE.enum_id(str(source)))]
    if rng.random() < POSITION_RATE:
        fields[POSITION.id] = [(POSITIONS[int(rng.random() * len(POSITIONS))], None)]
    if rng.random() < INTERESTS_RATE:
        chosen = rng.sample(INTERESTS.enums, 1 + int(rng.random() * 2))
        fields[INTERESTS.id] = [(text, enum_id) for enum_id, text in sorted(chosen)]
    user = USERS[person.person_id % len(USERS)]
    return ContactRow(
        id=contact_id_for(person.person_id),
        name=name,
        first_name=first_name,
        last_name=last_name,
        responsible_user_id=user,
        created_by=user,
        updated_by=user,
        created_at=int(record.created_at.timestamp()),
        updated_at=int(record.updated_at.timestamp()),
        fields=fields,
        tags=[tags.id_for(tag) for tag in record.tags],
        person_id=person.person_id,
    )


def _lead_row(person: Person, index: int, order: Any, contact_id: int, tags: TagRegistry) -> LeadRow:
    """First purchases sit in the main pipeline, repeat purchases in the second one."""
    pipeline = PIPELINES[0] if index == 0 else PIPELINES[1]
    if order.status == "won":
        status_id = WON_STATUS_ID
    elif order.status == "lost":
        status_id = LOST_STATUS_ID
    else:
        working = pipeline.working_status_ids
        status_id = working[order.order_id % len(working)]
    touched = int(order.closed_at.timestamp())
    user = USERS[person.person_id % len(USERS)]
    fields: FieldValues = {PROMO_CODE.id: [(order.promo_code, None)]} if order.promo_code else {}
    return LeadRow(
        id=LEAD_ID_BASE + order.order_id,
        name=f"Заказ №{order.order_id}",
        price=int(order.amount),
        status_id=status_id,
        pipeline_id=pipeline.id,
        responsible_user_id=user,
        created_by=user,
        updated_by=user,
        created_at=int(order.created_at.timestamp()),
        updated_at=touched,
        closed_at=None if order.status == "open" else touched,
        fields=fields,
        tags=[tags.id_for(person.lead_source)] if index == 0 else [],
        contact_ids=[contact_id],
        person_id=person.person_id,
    )


# ---------------------------------------------------------------------------
# Rendering: the JSON shapes of API v4.
# ---------------------------------------------------------------------------


def link(base_url: str, path: str) -> dict[str, dict[str, str]]:
    return {"self": {"href": f"{base_url}{path}"}}


def render_custom_fields(values: FieldValues, entity: str) -> list[dict[str, Any]] | None:
    """`custom_fields_values`: null, not an empty list, when nothing is filled in."""
    if not values:
        return None
    definitions = CUSTOM_FIELDS[entity]
    rendered = []
    for field_id, entries in values.items():
        definition = definitions[field_id]
        if definition.has_enum_codes:
            items = [
                {"value": value, "enum_id": enum_id, "enum_code": definition.enum_code(enum_id)}
                for value, enum_id in entries
            ]
        elif definition.has_options:
            items = [{"value": value, "enum_id": enum_id} for value, enum_id in entries]
        else:
            items = [{"value": value} for value, _ in entries]
        rendered.append({
            "field_id": field_id,
            "field_name": definition.name,
            "field_code": definition.code,
            "field_type": definition.type,
            "values": items,
        })
    return rendered


def render_contact(
    row: ContactRow, base_url: str, tags: TagRegistry, *, entity: str = "contacts", with_leads: bool = False,
    with_contacts: bool = False,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
    }
    if entity == "contacts":
        data["first_name"] = row.first_name
        data["last_name"] = row.last_name
    data.update({
        "responsible_user_id": row.responsible_user_id,
        "group_id": 0,
        "created_by": row.created_by,
        "updated_by": row.updated_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "closest_task_at": None,
        "is_deleted": False,
        "custom_fields_values": render_custom_fields(row.fields, entity),
        "account_id": ACCOUNT_ID,
        "_links": link(base_url, f"/api/v4/{entity}/{row.id}"),
    })
    if entity == "contacts":
        data["is_unsorted"] = False
    embedded: dict[str, Any] = {"tags": tags.render(row.tags), "companies": [
        {"id": company_id, "_links": link(base_url, f"/api/v4/companies/{company_id}")}
        for company_id in row.company_ids
    ]}
    if with_contacts and entity == "companies":
        embedded["contacts"] = [
            {"id": contact_id, "_links": link(base_url, f"/api/v4/contacts/{contact_id}")}
            for contact_id in row.contact_ids
        ]
    if with_leads:
        embedded["leads"] = [
            {"id": lead_id, "_links": link(base_url, f"/api/v4/leads/{lead_id}")} for lead_id in row.lead_ids
        ]
    data["_embedded"] = embedded
    return data


def render_lead(row: LeadRow, base_url: str, tags: TagRegistry, *, with_contacts: bool = False) -> dict[str, Any]:
    embedded: dict[str, Any] = {"tags": tags.render(row.tags), "companies": [
        {"id": company_id, "_links": link(base_url, f"/api/v4/companies/{company_id}")}
        for company_id in row.company_ids
    ]}
    if with_contacts:
        embedded["contacts"] = [
            {"id": contact_id, "is_main": index == 0, "_links": link(base_url, f"/api/v4/contacts/{contact_id}")}
            for index, contact_id in enumerate(row.contact_ids)
        ]
    return {
        "id": row.id,
        "name": row.name,
        "price": row.price,
        "responsible_user_id": row.responsible_user_id,
        "group_id": 0,
        "status_id": row.status_id,
        "pipeline_id": row.pipeline_id,
        "loss_reason_id": None,
        "created_by": row.created_by,
        "updated_by": row.updated_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "closed_at": row.closed_at,
        "closest_task_at": None,
        "is_deleted": False,
        "custom_fields_values": render_custom_fields(row.fields, "leads"),
        "score": None,
        "account_id": ACCOUNT_ID,
        "labor_cost": None,
        "_links": link(base_url, f"/api/v4/leads/{row.id}"),
        "_embedded": embedded,
    }


def render_pipelines(base_url: str) -> dict[str, Any]:
    pipelines = []
    for pipeline in PIPELINES:
        statuses = [
            {
                "id": status.id,
                "name": status.name,
                "sort": status.sort,
                "is_editable": status.id not in (WON_STATUS_ID, LOST_STATUS_ID),
                "pipeline_id": pipeline.id,
                "color": status.color,
                "type": status.type,
                "account_id": ACCOUNT_ID,
                "_links": link(base_url, f"/api/v4/leads/pipelines/{pipeline.id}/statuses/{status.id}"),
            }
            for status in pipeline.statuses
        ]
        pipelines.append({
            "id": pipeline.id,
            "name": pipeline.name,
            "sort": pipeline.sort,
            "is_main": pipeline.is_main,
            "is_unsorted_on": False,
            "is_archive": False,
            "account_id": ACCOUNT_ID,
            "_links": link(base_url, f"/api/v4/leads/pipelines/{pipeline.id}"),
            "_embedded": {"statuses": statuses},
        })
    return {
        "_total_items": len(pipelines),
        "_links": link(base_url, "/api/v4/leads/pipelines"),
        "_embedded": {"pipelines": pipelines},
    }


def render_field_definitions(entity: str, base_url: str) -> dict[str, Any]:
    fields = [
        {
            "id": definition.id,
            "name": definition.name,
            "type": definition.type,
            "account_id": ACCOUNT_ID,
            "code": definition.code,
            "sort": definition.sort,
            "is_api_only": False,
            "enums": [
                {"id": enum_id, "value": value, "sort": (index + 1) * 2}
                for index, (enum_id, value) in enumerate(definition.enums)
            ] or None,
            "group_id": None,
            "required_statuses": [],
            "is_deletable": definition.code is None,
            "is_predefined": definition.code is not None,
            "entity_type": entity,
            "_links": link(base_url, f"/api/v4/{entity}/custom_fields/{definition.id}"),
        }
        for definition in CUSTOM_FIELDS[entity].values()
    ]
    return {
        "_total_items": len(fields),
        "_page": 1,
        "_page_count": 1,
        "_links": link(base_url, f"/api/v4/{entity}/custom_fields"),
        "_embedded": {"custom_fields": fields},
    }
