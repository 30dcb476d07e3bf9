"""What the local Bitrix24 portal holds: field schemas, funnels, and seeded contacts and deals.

The rest of the emulator (this package) serves whatever this module builds. It is split
out because it answers a different question - "what does a realistic portal
of a small Russian business contain?" - from "how does the portal speak?".

Contacts come from hub.sampledata, so the ground truth behind every record is
known and two emulators that hold overlapping ranges of people (an amoCRM
emulator with people 800-1800, this one with 0-1000) hold the same phone
numbers and emails for the shared people, each written its own messy way.
Records are plain dicts keyed by Bitrix24 field names holding Python values
(ints, dates, epoch seconds); the portal renders them into its
strings. Dicts keep 100,000 contacts and their deals buildable in seconds.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

# not in hub.api on purpose: the emulator builds the demo's records from the demo's own vocabulary
from hub import sampledata
from plugins.bitrix24.sandbox import b2b as b2b_data

SOURCE = "bitrix24"  # the source name the messy renderings are seeded with

# --------------------------------------------------------------------------- schemas
# (name, type, isRequired, isReadOnly, isMultiple, title, statusType) in the order
# the portal returns fields of a record.

FieldSpec = tuple[str, str, bool, bool, bool, str, str | None]

CONTACT_FIELDS: tuple[FieldSpec, ...] = (
    ("ID", "integer", False, True, False, "ID", None),
    ("POST", "string", False, False, False, "Position", None),
    ("COMMENTS", "string", False, False, False, "Comment", None),
    ("HONORIFIC", "crm_status", False, False, False, "Salutation", "HONORIFIC"),
    ("NAME", "string", True, False, False, "First Name", None),
    ("SECOND_NAME", "string", True, False, False, "Middle Name", None),
    ("LAST_NAME", "string", True, False, False, "Last Name", None),
    ("PHOTO", "file", False, False, False, "Photo", None),
    ("LEAD_ID", "crm_lead", False, True, False, "Lead", None),
    ("TYPE_ID", "crm_status", False, False, False, "Contact Type", "CONTACT_TYPE"),
    ("SOURCE_ID", "crm_status", False, False, False, "Source", "SOURCE"),
    ("SOURCE_DESCRIPTION", "string", False, False, False, "Additional Source Info", None),
    ("COMPANY_ID", "crm_company", False, False, False, "Company", None),
    ("BIRTHDATE", "date", False, False, False, "Birthdate", None),
    ("EXPORT", "char", False, False, False, "Participates in contact export", None),
    ("HAS_PHONE", "char", False, True, False, "Phone set", None),
    ("HAS_EMAIL", "char", False, True, False, "E-mail set", None),
    ("HAS_IMOL", "char", False, True, False, "Open channel set", None),
    ("DATE_CREATE", "datetime", False, True, False, "Creation Date", None),
    ("DATE_MODIFY", "datetime", False, True, False, "Modification Date", None),
    ("ASSIGNED_BY_ID", "user", False, False, False, "Responsible", None),
    ("CREATED_BY_ID", "user", False, True, False, "Created by", None),
    ("MODIFY_BY_ID", "user", False, True, False, "Modified by", None),
    ("OPENED", "char", False, False, False, "Available to all", None),
    ("ORIGINATOR_ID", "string", False, False, False, "External Source", None),
    ("ORIGIN_ID", "string", False, False, False, "Identifier in External Source", None),
    ("ORIGIN_VERSION", "string", False, False, False, "Original Version", None),
    ("FACE_ID", "integer", False, False, False, "Face ID", None),
    ("LAST_ACTIVITY_TIME", "datetime", False, True, False, "Last Activity", None),
    ("ADDRESS", "string", False, False, False, "Address", None),
    ("ADDRESS_2", "string", False, False, False, "Address (line 2)", None),
    ("ADDRESS_CITY", "string", False, False, False, "City", None),
    ("ADDRESS_POSTAL_CODE", "string", False, False, False, "Postal Code", None),
    ("ADDRESS_REGION", "string", False, False, False, "Region", None),
    ("ADDRESS_PROVINCE", "string", False, False, False, "State", None),
    ("ADDRESS_COUNTRY", "string", False, False, False, "Country", None),
    ("ADDRESS_LOC_ADDR_ID", "integer", False, False, False, "Location Address ID", None),
    ("UTM_SOURCE", "string", False, False, False, "Advertising System", None),
    ("UTM_MEDIUM", "string", False, False, False, "Traffic Type", None),
    ("UTM_CAMPAIGN", "string", False, False, False, "Campaign Identifier", None),
    ("UTM_CONTENT", "string", False, False, False, "Campaign Content", None),
    ("UTM_TERM", "string", False, False, False, "Campaign Search Condition", None),
    ("LAST_ACTIVITY_BY", "user", False, True, False, "Last Activity Author", None),
    ("PHONE", "crm_multifield", False, False, True, "Phone", None),
    ("EMAIL", "crm_multifield", False, False, True, "E-mail", None),
    ("WEB", "crm_multifield", False, False, True, "Website", None),
    ("IM", "crm_multifield", False, False, True, "Messenger", None),
    ("LINK", "crm_multifield", False, False, True, "LINK", None),
    ("COMPANY_IDS", "crm_company", False, False, True, "Companies", None),
    # Custom fields a shop adds (crm.contact.userfield.add); the score and stage are Hub's to write.
    ("UF_CRM_SCORE", "double", False, False, False, "UF_CRM_SCORE", None),
    ("UF_CRM_STAGE", "string", False, False, False, "UF_CRM_STAGE", None),
    ("UF_CRM_CHANNEL", "enumeration", False, False, False, "UF_CRM_CHANNEL", None),
    ("UF_CRM_INTERESTS", "enumeration", False, False, True, "UF_CRM_INTERESTS", None),
    ("UF_CRM_VIP", "boolean", False, False, False, "UF_CRM_VIP", None),
    ("UF_CRM_FIRST_VISIT", "date", False, False, False, "UF_CRM_FIRST_VISIT", None),
    ("UF_CRM_CALLBACK_AT", "datetime", False, False, False, "UF_CRM_CALLBACK_AT", None),
)

DEAL_FIELDS: tuple[FieldSpec, ...] = (
    ("ID", "integer", False, True, False, "ID", None),
    ("TITLE", "string", False, False, False, "Name", None),
    ("TYPE_ID", "crm_status", False, False, False, "Type", "DEAL_TYPE"),
    ("STAGE_ID", "crm_status", False, False, False, "Stage", "DEAL_STAGE"),
    ("PROBABILITY", "integer", False, False, False, "Probability", None),
    ("CURRENCY_ID", "crm_currency", False, False, False, "Currency", None),
    ("OPPORTUNITY", "double", False, False, False, "Amount", None),
    ("IS_MANUAL_OPPORTUNITY", "char", False, False, False, "IS_MANUAL_OPPORTUNITY", None),
    ("TAX_VALUE", "double", False, False, False, "Tax rate", None),
    ("LEAD_ID", "crm_lead", False, True, False, "Lead", None),
    ("COMPANY_ID", "crm_company", False, False, False, "Company", None),
    ("CONTACT_ID", "crm_contact", False, False, False, "Contact", None),
    ("QUOTE_ID", "crm_quote", False, True, False, "Quote", None),
    ("BEGINDATE", "date", False, False, False, "Start date", None),
    ("CLOSEDATE", "date", False, False, False, "End date", None),
    ("ASSIGNED_BY_ID", "user", False, False, False, "Responsible person", None),
    ("CREATED_BY_ID", "user", False, True, False, "Created by", None),
    ("MODIFY_BY_ID", "user", False, True, False, "Modified by", None),
    ("DATE_CREATE", "datetime", False, True, False, "Created on", None),
    ("DATE_MODIFY", "datetime", False, True, False, "Modified on", None),
    ("OPENED", "char", False, False, False, "Available to everyone", None),
    ("CLOSED", "char", False, False, False, "Closed", None),
    ("COMMENTS", "string", False, False, False, "Comment", None),
    ("ADDITIONAL_INFO", "string", False, False, False, "Additional information", None),
    ("LOCATION_ID", "location", False, False, False, "Location", None),
    ("CATEGORY_ID", "crm_category", False, False, False, "Pipeline", None),
    ("STAGE_SEMANTIC_ID", "string", False, True, False, "Stage group", None),
    ("IS_NEW", "char", False, True, False, "New deal", None),
    ("IS_RECURRING", "char", False, False, False, "Recurring deal", None),
    ("IS_RETURN_CUSTOMER", "char", False, True, False, "Repeat deal", None),
    ("IS_REPEATED_APPROACH", "char", False, True, False, "Repeat inquiry", None),
    ("SOURCE_ID", "crm_status", False, False, False, "Source", "SOURCE"),
    ("SOURCE_DESCRIPTION", "string", False, False, False, "Source information", None),
    ("ORIGINATOR_ID", "string", False, False, False, "External source", None),
    ("ORIGIN_ID", "string", False, False, False, "Item ID in data source", None),
    ("MOVED_BY_ID", "user", False, True, False, "Stage changed by", None),
    ("MOVED_TIME", "datetime", False, True, False, "Stage change date", None),
    ("LAST_ACTIVITY_TIME", "datetime", False, True, False, "Last activity", None),
    ("UTM_SOURCE", "string", False, False, False, "Ad system", None),
    ("UTM_MEDIUM", "string", False, False, False, "Medium", None),
    ("UTM_CAMPAIGN", "string", False, False, False, "Ad campaign UTM", None),
    ("UTM_CONTENT", "string", False, False, False, "Campaign contents", None),
    ("UTM_TERM", "string", False, False, False, "Campaign search term", None),
    ("LAST_ACTIVITY_BY", "user", False, True, False, "Last activity by", None),
    # A custom field created through crm.deal.userfield.add with FIELD_NAME "PROMO_CODE".
    ("UF_CRM_PROMO_CODE", "string", False, False, False, "UF_CRM_PROMO_CODE", None),
    ("UF_CRM_DELIVERY", "enumeration", False, False, False, "UF_CRM_DELIVERY", None),
    ("UF_CRM_DELIVERY_DATE", "date", False, False, False, "UF_CRM_DELIVERY_DATE", None),
)

COMPANY_FIELDS: tuple[FieldSpec, ...] = (
    ("ID", "integer", False, True, False, "ID", None),
    ("TITLE", "string", True, False, False, "Company Name", None),
    ("COMPANY_TYPE", "crm_status", False, False, False, "Company type", "COMPANY_TYPE"),
    ("INDUSTRY", "crm_status", False, False, False, "Industry", "INDUSTRY"),
    ("EMPLOYEES", "crm_status", False, False, False, "Employees", "EMPLOYEES"),
    ("COMMENTS", "string", False, False, False, "Comment", None),
    ("ADDRESS_CITY", "string", False, False, False, "City", None),
    ("ASSIGNED_BY_ID", "user", False, False, False, "Responsible person", None),
    ("CREATED_BY_ID", "user", False, True, False, "Created by", None),
    ("MODIFY_BY_ID", "user", False, True, False, "Modified by", None),
    ("DATE_CREATE", "datetime", False, True, False, "Created on", None),
    ("DATE_MODIFY", "datetime", False, True, False, "Modified on", None),
    ("OPENED", "char", False, False, False, "Available to everyone", None),
    ("PHONE", "crm_multifield", False, False, True, "Phone", None),
    ("EMAIL", "crm_multifield", False, False, True, "E-mail", None),
    ("WEB", "crm_multifield", False, False, True, "Website", None),
    ("UF_CRM_SEGMENT", "enumeration", False, False, False, "UF_CRM_SEGMENT", None),
    ("UF_CRM_STAFF", "integer", False, False, False, "UF_CRM_STAFF", None),
)

# Requisites (crm.requisite.*) of companies (ENTITY_TYPE_ID 4) and contacts (3); Russian presets.
REQUISITE_FIELDS: tuple[FieldSpec, ...] = (
    ("ID", "integer", False, True, False, "ID", None),
    ("ENTITY_TYPE_ID", "integer", True, False, False, "Parent entity type ID", None),
    ("ENTITY_ID", "integer", True, False, False, "Parent entity ID", None),
    ("PRESET_ID", "integer", True, False, False, "Template ID", None),
    ("NAME", "string", True, False, False, "Name", None),
    ("ACTIVE", "char", False, False, False, "Active", None),
    ("RQ_COMPANY_NAME", "string", False, False, False, "Company name", None),
    ("RQ_INN", "string", False, False, False, "INN", None),
    ("RQ_KPP", "string", False, False, False, "KPP", None),
    ("RQ_OGRN", "string", False, False, False, "OGRN", None),
    ("DATE_CREATE", "datetime", False, True, False, "Created on", None),
    ("DATE_MODIFY", "datetime", False, True, False, "Modified on", None),
)

# crm.activity.fields (the ones the emulator keeps): TYPE_ID 1 meeting, 2 call, 3 task, 4 e-mail,
# 6 a provider's (CRM_TODO); DIRECTION 1 incoming, 2 outgoing; OWNER_TYPE_ID 2 deal, 3 contact, 4 company.
ACTIVITY_FIELDS: tuple[FieldSpec, ...] = (
    ("ID", "integer", False, True, False, "ID", None),
    ("OWNER_ID", "integer", False, False, False, "Owner ID", None),
    ("OWNER_TYPE_ID", "integer", False, False, False, "Owner Type", None),
    ("TYPE_ID", "integer", True, False, False, "Type", None),
    ("PROVIDER_ID", "string", False, False, False, "Provider ID", None),
    ("PROVIDER_TYPE_ID", "string", False, False, False, "Provider Type", None),
    ("SUBJECT", "string", True, False, False, "Subject", None),
    ("START_TIME", "datetime", False, False, False, "Start", None),
    ("END_TIME", "datetime", False, False, False, "Deadline", None),
    ("COMPLETED", "char", False, False, False, "Completed", None),
    ("RESPONSIBLE_ID", "user", True, False, False, "Responsible", None),
    ("DIRECTION", "integer", False, False, False, "Direction", None),
    ("DESCRIPTION", "string", False, False, False, "Description", None),
    ("CREATED", "datetime", False, True, False, "Creation Date", None),
    ("AUTHOR_ID", "user", False, True, False, "Created By", None),
    ("LAST_UPDATED", "datetime", False, True, False, "Last Updated", None),
    ("SETTINGS", "object", False, False, False, "Settings", None),
    # Every object the activity is bound to, [{"OWNER_TYPE_ID": "2", "OWNER_ID": "15"}, ...]: a call on a
    # deal is bound to the deal and to the person it was with. Read-only; returned when named in select.
    ("BINDINGS", "crm_activity_binding", False, True, True, "Bindings", None),
    # Whom it was with: [{"ID", "TYPE", "VALUE", "ENTITY_ID", "ENTITY_TYPE_ID"}], the contacts it is bound to.
    ("COMMUNICATIONS", "crm_activity_communication", True, False, True, "Communications", None),
)
# Fields a list returns only when named in select ("*" leaves them out).
SELECTED_BY_NAME = frozenset({"BINDINGS", "COMMUNICATIONS"})

MULTIFIELDS = ("PHONE", "EMAIL", "WEB", "IM", "LINK")
# The names people gave the custom fields (formLabel/listLabel), and a list's options (ID, VALUE).
USER_FIELD_LABELS = {
    "UF_CRM_PROMO_CODE": "Промокод", "UF_CRM_SCORE": "Оценка клиента", "UF_CRM_STAGE": "Стадия клиента",
    "UF_CRM_CHANNEL": "Откуда узнал", "UF_CRM_INTERESTS": "Интересы", "UF_CRM_VIP": "VIP",
    "UF_CRM_FIRST_VISIT": "Первый визит", "UF_CRM_CALLBACK_AT": "Перезвонить",
    "UF_CRM_DELIVERY": "Доставка", "UF_CRM_DELIVERY_DATE": "Дата доставки",
    "UF_CRM_SEGMENT": "Сегмент компании", "UF_CRM_STAFF": "Сотрудников",
}
USER_FIELD_ITEMS = {
    "UF_CRM_CHANNEL": ((44, "Выставка"), (45, "Сайт"), (46, "Рекомендация"), (47, "Реклама")),
    "UF_CRM_INTERESTS": ((52, "Одежда"), (53, "Обувь"), (54, "Аксессуары"), (55, "Распродажи")),
    "UF_CRM_DELIVERY": ((61, "Самовывоз"), (62, "Курьер"), (63, "Почта России")),
    "UF_CRM_SEGMENT": ((71, "Розница"), (72, "Опт"), (73, "Дистрибьютор")),
}

# Char fields and the value the portal shows when nothing was ever written.
CHAR_DEFAULTS = {
    "OPENED": "Y", "EXPORT": "Y", "HAS_IMOL": "N", "IS_MANUAL_OPPORTUNITY": "N",
    "IS_NEW": "N", "IS_RECURRING": "N", "IS_RETURN_CUSTOMER": "N", "IS_REPEATED_APPROACH": "N",
    "CLOSED": "N", "COMPLETED": "N", "ACTIVE": "Y",
}

# --------------------------------------------------------------------------- directories

# sampledata's lead source -> (SOURCE status id, name). Custom sources get UC_ ids as on a real portal.
LEAD_SOURCES = {
    "Сайт": ("WEB", "Веб-сайт"),
    "Instagram": ("UC_7K2QXA", "Instagram"),
    "ВКонтакте": ("UC_VK4M1N", "ВКонтакте"),
    "Рекомендация": ("RECOMMENDATION", "По рекомендации"),
    "Авито": ("UC_AV9T3E", "Авито"),
    "Звонок": ("CALL", "Звонок"),
    "Выставка": ("TRADE_SHOW", "Выставка"),
}
EXTRA_SOURCES = (
    ("EMAIL", "Электронная почта"), ("ADVERTISING", "Реклама"), ("PARTNER", "Существующий клиент"),
    ("WEBFORM", "CRM-форма"), ("CALLBACK", "Обратный звонок"), ("OTHER", "Другое"),
)
CONTACT_TYPES = (("CLIENT", "Клиенты"), ("SUPPLIER", "Поставщики"), ("PARTNER", "Партнеры"), ("OTHER", "Другое"))
HONORIFICS = (("HNR_RU_1", "г-н"), ("HNR_RU_2", "г-жа"))
DEAL_TYPES = (("SALE", "Продажа"), ("COMPLEX", "Комплексная продажа"), ("GOODS", "Продажа товара"),
              ("SERVICES", "Продажа услуги"), ("SERVICE", "Сервисное обслуживание"))

# Stage suffix, name, semantics (P process, S success, F failure): every funnel gets the
# default set, prefixed "C<id>:" outside the general funnel, as a new funnel does on a portal.
STAGES = (
    ("NEW", "Новая", "P"), ("PREPARATION", "Подготовка документов", "P"),
    ("PREPAYMENT_INVOICE", "Счёт на предоплату", "P"), ("EXECUTING", "В работе", "P"),
    ("FINAL_INVOICE", "Финальный счёт", "P"), ("WON", "Сделка успешна", "S"),
    ("LOSE", "Сделка провалена", "F"), ("APOLOGY", "Анализ причины провала", "F"),
)
WORKING_STAGES = tuple(code for code, _, semantic in STAGES if semantic == "P")
CATEGORIES = {0: "Общая", 1: "Опт", 2: "Повторные продажи"}
CATEGORY_WEIGHTS = ((0, 70), (1, 18), (2, 12))

USERS = {
    1: {"NAME": "Анна", "LAST_NAME": "Соколова", "ADMIN": True, "PERSONAL_GENDER": "F"},
    2: {"NAME": "Дмитрий", "LAST_NAME": "Орлов", "ADMIN": False, "PERSONAL_GENDER": "M"},
    3: {"NAME": "Мария", "LAST_NAME": "Лебедева", "ADMIN": False, "PERSONAL_GENDER": "F"},
}


def stage_id(category_id: int, code: str) -> str:
    """The STAGE_ID of a stage: bare in the general funnel, 'C1:WON' in funnel 1."""
    return code if category_id == 0 else f"C{category_id}:{code}"


def stage_semantic(stage: str) -> str:
    """'P', 'S' or 'F' for a STAGE_ID; unknown stages count as in progress."""
    code = stage.split(":", 1)[1] if ":" in stage else stage
    for known, _, semantic in STAGES:
        if known == code:
            return semantic
    return "P"


def category_of(stage: str) -> int | None:
    """The funnel a STAGE_ID belongs to, or None when it names no known stage."""
    if ":" in stage:
        prefix, code = stage.split(":", 1)
        if not prefix.startswith("C") or not prefix[1:].isdigit():
            return None
        category = int(prefix[1:])
    else:
        category, code = 0, stage
    if category in CATEGORIES and any(code == known for known, _, _ in STAGES):
        return category
    return None


def statuses() -> list[dict[str, Any]]:
    """Rows of crm.status.list: sources, contact types, salutations, deal types and every funnel's stages."""
    rows: list[dict[str, Any]] = []

    def add(entity: str, status: str, name: str, sort: int, category: int | None = None,
            semantics: str | None = None, system: bool = True) -> None:
        row: dict[str, Any] = {
               "ID": str(len(rows) + 1), "ENTITY_ID": entity, "STATUS_ID": status, "NAME": name,
               "NAME_INIT": name if system else "", "SORT": str(sort), "SYSTEM": "Y" if system else "N",
               "CATEGORY_ID": None if category is None else str(category), "COLOR": None,
               "SEMANTICS": semantics}
        if entity.startswith("DEAL_STAGE"):
            row["EXTRA"] = {"SEMANTICS": {"S": "success", "F": "failure"}.get(semantics or "", "process"),
                            "COLOR": "#39A8EF"}
        rows.append(row)

    sources = [(status, name, not status.startswith("UC_")) for status, name in LEAD_SOURCES.values()]
    sources += [(status, name, True) for status, name in EXTRA_SOURCES]
    for index, (status, name, system) in enumerate(sources):
        add("SOURCE", status, name, 10 * (index + 1), system=system)
    for index, (status, name) in enumerate(CONTACT_TYPES):
        add("CONTACT_TYPE", status, name, 10 * (index + 1))
    for index, (status, name) in enumerate(HONORIFICS):
        add("HONORIFIC", status, name, 10 * (index + 1))
    for index, (status, name) in enumerate(DEAL_TYPES):
        add("DEAL_TYPE", status, name, 10 * (index + 1))
    for category in CATEGORIES:
        entity = "DEAL_STAGE" if category == 0 else f"DEAL_STAGE_{category}"
        for index, (code, name, semantic) in enumerate(STAGES):
            add(entity, stage_id(category, code), name, 10 * (index + 1), category,
                None if semantic == "P" else semantic)
    return rows


# --------------------------------------------------------------------------- seeding


@dataclass
class Seeded:
    """What a freshly seeded portal holds, with the ground truth behind it."""

    contacts: dict[int, dict[str, Any]]
    deals: dict[int, dict[str, Any]]
    next_multifield_id: int
    contact_person: dict[int, int] = field(default_factory=dict)  # contact ID -> sampledata person_id
    deal_order: dict[int, int] = field(default_factory=dict)  # deal ID -> sampledata order_id


def _epoch(moment: dt.datetime) -> int:
    return int(moment.timestamp())


_MOBILE_MARKS = ("(9", " 9", "-9", "+79", "89", "79", "9")


def _phone_type(raw: str, rng: random.Random) -> str:
    """Managers mostly leave the default WORK; numbers that look mobile are often marked MOBILE."""
    mobile = raw.startswith(_MOBILE_MARKS[3:]) or any(mark in raw for mark in _MOBILE_MARKS[:3])
    roll = rng.random()
    if mobile:
        return "MOBILE" if roll < 0.55 else "WORK"
    return "WORK" if roll < 0.8 else "HOME"


def _seed_b2b(contact_rows: dict[int, dict[str, Any]], contact_person: dict[int, int], multifield_id: int,
              today: dt.date) -> int:
    """Add the B2B records (see `b2b_data`) after the seeded ones, a minute apart; returns the next multifield ID."""
    start = max((row["DATE_CREATE"] for row in contact_rows.values()),
                default=_epoch(dt.datetime.combine(today, dt.time(6), dt.timezone.utc)))
    entries = [(person_id, entry) for person_id, records in b2b_data.PEOPLE.items() for entry in records]
    for offset, (person_id, entry) in enumerate(entries, start=1):
        contact_id = len(contact_rows) + 1
        created = start + 60 * offset
        assigned = 1 + person_id % len(USERS)
        row: dict[str, Any] = {
            "ID": contact_id, "NAME": entry.first, "LAST_NAME": entry.last, "TYPE_ID": "CLIENT",
            "SOURCE_ID": "CALL", "POST": entry.post, "COMMENTS": entry.company,
            "DATE_CREATE": created, "DATE_MODIFY": created,
            "ASSIGNED_BY_ID": assigned, "CREATED_BY_ID": assigned, "MODIFY_BY_ID": assigned,
        }
        for name, values in (("PHONE", entry.phones), ("EMAIL", entry.emails)):
            if values:
                row[name] = [[multifield_id + index, value_type, value]
                             for index, (value_type, value) in enumerate(values)]
                multifield_id += len(values)
        contact_rows[contact_id] = row
        contact_person[contact_id] = person_id
    return multifield_id


def _pick(weights: tuple[tuple[int, int], ...], rng: random.Random) -> int:
    total = sum(weight for _, weight in weights)
    roll = rng.random() * total
    for value, weight in weights:
        roll -= weight
        if roll < 0:
            return value
    return weights[-1][0]


def seed_portal(contacts: int, seed: int = 1, first_person: int = 0, *,
                today: dt.date | None = None, b2b: bool = False) -> Seeded:
    """Build `contacts` contacts from sampledata people first_person+1 .. first_person+contacts, with their deals.

    Contact and deal IDs follow creation time, as on a real portal where IDs
    are handed out in order. The same (seed, today) always gives the same portal.
    With `b2b`, the records of `b2b.PEOPLE` follow, created after everyone else.
    """
    today = today or dt.date.today()
    population = list(islice(sampledata.people(first_person + contacts, seed, today=today), first_person, None))
    records = list(sampledata.contact_records(population, SOURCE, seed, today=today))
    order = sorted(range(len(population)), key=lambda index: (records[index].created_at, index))

    rng = random.Random()
    contact_rows: dict[int, dict[str, Any]] = {}
    contact_person: dict[int, int] = {}
    contact_of_person: dict[int, int] = {}
    multifield_id = 1
    pending_deals: list[tuple[int, int, int, sampledata.SampleOrder, int, str, int]] = []
    for contact_id, index in enumerate(order, start=1):
        person, record = population[index], records[index]
        assert record.created_at and record.updated_at, "sample records carry both times"
        rng.seed(seed * 1_000_003 + person.person_id)
        assigned = 1 + person.person_id % len(USERS)
        row: dict[str, Any] = {
            "ID": contact_id,
            "NAME": record.first_name,
            "SECOND_NAME": record.middle_name,
            "LAST_NAME": record.last_name,
            "TYPE_ID": "CLIENT" if person.orders or rng.random() < 0.85 else "OTHER",
            "SOURCE_ID": LEAD_SOURCES[str(record.attributes["lead_source"])][0],
            "BIRTHDATE": record.birthday,
            "ADDRESS_CITY": record.city,
            "DATE_CREATE": _epoch(record.created_at),
            "DATE_MODIFY": _epoch(record.updated_at),
            "ASSIGNED_BY_ID": assigned,
            "CREATED_BY_ID": assigned,
            "MODIFY_BY_ID": assigned,
        }
        if record.gender:
            row["HONORIFIC"] = "HNR_RU_1" if record.gender == "m" else "HNR_RU_2"
        phones = []
        for raw in record.phones:
            phones.append([multifield_id, _phone_type(raw, rng), raw])
            multifield_id += 1
        if phones:
            row["PHONE"] = phones
        emails = []
        for raw in record.emails:
            emails.append([multifield_id, "WORK" if rng.random() < 0.7 else "HOME", raw])
            multifield_id += 1
        if emails:
            row["EMAIL"] = emails
        contact_rows[contact_id] = row
        contact_person[contact_id] = person.person_id
        contact_of_person[person.person_id] = contact_id
        main_category = _pick(CATEGORY_WEIGHTS, rng)
        for position, sample_order in enumerate(person.orders):
            category = main_category if rng.random() < 0.8 else _pick(CATEGORY_WEIGHTS, rng)
            if sample_order.status == "won":
                code = "WON"
            elif sample_order.status == "lost":
                code = "LOSE" if rng.random() < 0.85 else "APOLOGY"
            else:
                code = WORKING_STAGES[int(rng.random() * len(WORKING_STAGES))]
            planned_days = 7 + int(rng.random() * 21)
            pending_deals.append((_epoch(sample_order.created_at), sample_order.order_id, category,
                                  sample_order, position, code, planned_days))

    if b2b:
        multifield_id = _seed_b2b(contact_rows, contact_person, multifield_id, today)

    pending_deals.sort(key=lambda item: (item[0], item[1]))
    deal_rows: dict[int, dict[str, Any]] = {}
    deal_order: dict[int, int] = {}
    for deal_id, pending in enumerate(pending_deals, start=1):
        created, order_id, category, sample_order, position, code, planned_days = pending
        contact_id = contact_of_person[order_id // 100]  # sampledata order ids are person_id * 100 + n
        contact = contact_rows[contact_id]
        closed_at = _epoch(sample_order.closed_at)
        stage = stage_id(category, code)
        semantic = stage_semantic(stage)
        begin = sample_order.created_at.date()
        close = sample_order.closed_at.date() if semantic != "P" else begin + dt.timedelta(days=planned_days)
        deal_rows[deal_id] = {
            "ID": deal_id,
            "TITLE": f"Заказ №{order_id}",
            "TYPE_ID": "SALE",
            "STAGE_ID": stage,
            "CURRENCY_ID": sample_order.currency,
            "OPPORTUNITY": float(sample_order.amount),
            "CONTACT_ID": contact_id,
            "BEGINDATE": begin,
            "CLOSEDATE": close,
            "ASSIGNED_BY_ID": contact["ASSIGNED_BY_ID"],
            "CREATED_BY_ID": contact["ASSIGNED_BY_ID"],
            "MODIFY_BY_ID": contact["ASSIGNED_BY_ID"],
            "MOVED_BY_ID": contact["ASSIGNED_BY_ID"],
            "DATE_CREATE": created,
            "DATE_MODIFY": max(created, closed_at),
            "MOVED_TIME": max(created, closed_at),
            "CLOSED": "N" if semantic == "P" else "Y",
            "CATEGORY_ID": category,
            "STAGE_SEMANTIC_ID": semantic,
            "IS_RETURN_CUSTOMER": "Y" if position else "N",
            "SOURCE_ID": contact["SOURCE_ID"],
            "UF_CRM_PROMO_CODE": sample_order.promo_code,
        }
        deal_order[deal_id] = order_id
    return Seeded(contacts=contact_rows, deals=deal_rows, next_multifield_id=multifield_id,
                  contact_person=contact_person, deal_order=deal_order)
