"""What a portal holds beyond people and deals: companies and their requisites, who works where,
the calls, meetings, e-mails and tasks managers log, custom field values, and deals' stage history.

Seeded after `data.seed_portal` with a random generator of its own, so the
people and deals of a seed stay exactly what they were. Shapes follow the REST
documentation: companies carry a WORK switchboard and a role mailbox, most
have one requisite with a valid INN (a few two), a third of the people work
somewhere (COMPANY_ID, and COMPANY_IDS when at two), calls have a length
between START_TIME and END_TIME, and a missed incoming call is open, of no
length, with SETTINGS {"MISSED_CALL": true} as the telephony leaves it.
A third of the activities are logged on deals (OWNER_TYPE_ID 2), as managers
do: bound (BINDINGS) to the deal and to the deal's contact.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from plugins.bitrix24.sandbox import b2b as b2b_data
from plugins.bitrix24.sandbox import data

_NAMES = ("Альфа", "Гранит", "Северный ветер", "Орион", "Лидер", "Прогресс", "Стройторг",
          "Техносила", "Восход", "Арсенал", "Берег", "Импульс", "Кедр", "Сфера", "Полюс", "Радуга", "Фаворит",
          "Эталон")
_FORMS = ("ООО", "ООО", "ООО", "АО", "ИП")
_CITIES = ("Москва", "Санкт-Петербург", "Казань", "Екатеринбург", "Новосибирск", "Нижний Новгород", "Самара")
_CODES = {"Москва": "495", "Санкт-Петербург": "812", "Казань": "843", "Екатеринбург": "343", "Новосибирск": "383",
          "Нижний Новгород": "831", "Самара": "846"}
_SUBJECTS = {
    "call_in": "Входящий звонок", "call_out": "Исходящий звонок", "missed": "Пропущенный звонок",
    "meeting": "Встреча в офисе", "email_in": "Вопрос по заказу", "email_out": "Коммерческое предложение",
    "task": "Перезвонить клиенту",
}
B2B_COMPANIES = {  # the B2B part's companies: name -> (city, switchboard, mailbox, INN)
    b2b_data.VECTOR: ("Москва", "+7 (495) 123-40-00", "info@vektor-m.ru", "7701234560"),
    b2b_data.MERIDIAN: ("Санкт-Петербург", "8 (812) 334-55-00", "sales@meridian-spb.ru", "7801234564"),
}


@dataclass
class Business:
    companies: dict[int, dict[str, Any]] = field(default_factory=dict)
    requisites: dict[int, dict[str, Any]] = field(default_factory=dict)
    activities: dict[int, dict[str, Any]] = field(default_factory=dict)
    # (ID, OWNER_ID, CREATED_TIME epoch, CATEGORY_ID, STAGE_SEMANTIC_ID, STAGE_ID, TYPE_ID): crm.stagehistory.list
    history: list[tuple[int, int, int, int, str, str, int]] = field(default_factory=list)
    next_multifield_id: int = 1


def inn(rng: random.Random) -> str:
    """A ten-digit INN of a legal entity with a correct check digit."""
    digits = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(8)]
    weights = (2, 4, 10, 3, 5, 9, 4, 6, 8)
    digits.append(sum(d * w for d, w in zip(digits, weights, strict=True)) % 11 % 10)
    return "".join(map(str, digits))


def seed(contacts: dict[int, dict[str, Any]], deals: dict[int, dict[str, Any]], multifield_id: int, *,
         companies: int, activities: int, seed: int, today: dt.date) -> Business:
    """Companies, requisites, bindings, custom field values, activities and stage history for a seeded portal."""
    rng = random.Random(f"bitrix24-business:{seed}")
    out = Business(next_multifield_id=multifield_id)
    # Midnight UTC of `today`: nothing is logged in the future, so an incremental sync right after
    # seeding finds nothing new (and the same seed and day still give the same portal).
    now = int(dt.datetime.combine(today, dt.time(0), dt.timezone.utc).timestamp())
    first = min((row["DATE_CREATE"] for row in contacts.values()), default=now - 86400 * 365)
    _companies(out, contacts, companies, rng, first)
    _user_fields(contacts, deals, rng)
    for row in deals.values():
        contact = contacts.get(row.get("CONTACT_ID") or 0)
        if contact and contact.get("COMPANY_ID"):
            row["COMPANY_ID"] = contact["COMPANY_ID"]
    _history(out, deals)
    _activities(out, contacts, deals, activities, rng, now)
    return out


def _companies(out: Business, contacts: dict[int, dict[str, Any]], count: int, rng: random.Random,
               first: int) -> None:
    named: list[tuple[str, str | None]] = [(name, None) for name in B2B_COMPANIES] if any(
        row.get("COMMENTS") in B2B_COMPANIES for row in contacts.values()) else []
    made: list[tuple[str, str | None]] = []
    for i in range(count):
        suffix = "" if i < len(_NAMES) else f"-{i // len(_NAMES) + 1}"
        made.append((f"{rng.choice(_FORMS)} «{_NAMES[i % len(_NAMES)]}{suffix}»", rng.choice(_CITIES)))
    created = sorted(first - rng.randint(0, 86400 * 400) for _ in range(len(named) + len(made)))
    by_name: dict[str, int] = {}
    for company_id, ((title, city), stamp) in enumerate(zip(named + made, created, strict=True), start=1):
        assigned = 1 + company_id % len(data.USERS)
        row: dict[str, Any] = {"ID": company_id, "TITLE": title, "COMPANY_TYPE": "CUSTOMER", "DATE_CREATE": stamp,
                               "DATE_MODIFY": stamp, "ASSIGNED_BY_ID": assigned, "CREATED_BY_ID": assigned,
                               "MODIFY_BY_ID": assigned}
        number: str | None
        if title in B2B_COMPANIES:
            city, phone, mailbox, number = B2B_COMPANIES[title]
        else:
            assert city is not None
            phone = f"+7 ({_CODES[city]}) {rng.randint(200, 999)}-{rng.randint(10, 99)}-00"
            mailbox = f"info@company{company_id}.ru"
            number = inn(rng) if rng.random() < 0.8 else None
        row["ADDRESS_CITY"] = city
        row["PHONE"] = [[out.next_multifield_id, "WORK", phone]]
        row["EMAIL"] = [[out.next_multifield_id + 1, "WORK", mailbox]]
        out.next_multifield_id += 2
        if rng.random() < 0.7:
            row["UF_CRM_SEGMENT"] = rng.choice(data.USER_FIELD_ITEMS["UF_CRM_SEGMENT"])[0]
        if rng.random() < 0.5:
            row["UF_CRM_STAFF"] = rng.choice((3, 8, 15, 40, 120))
        out.companies[company_id] = row
        by_name[title] = company_id
        if number:
            for extra in range(2 if rng.random() < 0.05 else 1):
                requisite_id = len(out.requisites) + 1
                out.requisites[requisite_id] = {
                    "ID": requisite_id, "ENTITY_TYPE_ID": 4, "ENTITY_ID": company_id, "PRESET_ID": 1,
                    "NAME": "Организация" if not extra else "Обособленное подразделение", "RQ_COMPANY_NAME": title,
                    "RQ_INN": number, "RQ_KPP": f"{number[:4]}01001", "DATE_CREATE": stamp, "DATE_MODIFY": stamp}
    plain = [company_id for title, company_id in by_name.items() if title not in B2B_COMPANIES]
    for row in contacts.values():
        if row.get("COMMENTS") in by_name:
            row["COMPANY_ID"] = by_name[row["COMMENTS"]]
        elif plain and rng.random() < 0.3:
            row["COMPANY_ID"] = rng.choice(plain)
            if rng.random() < 0.1:
                second = rng.choice(plain)
                if second != row["COMPANY_ID"]:
                    row["COMPANY_IDS"] = [row["COMPANY_ID"], second]


def _user_fields(contacts: dict[int, dict[str, Any]], deals: dict[int, dict[str, Any]], rng: random.Random) -> None:
    channels = [item for item, _ in data.USER_FIELD_ITEMS["UF_CRM_CHANNEL"]]
    interests = [item for item, _ in data.USER_FIELD_ITEMS["UF_CRM_INTERESTS"]]
    for row in contacts.values():
        if rng.random() < 0.6:
            row["UF_CRM_CHANNEL"] = rng.choice(channels)
        if rng.random() < 0.4:
            row["UF_CRM_INTERESTS"] = sorted(rng.sample(interests, rng.randint(1, 2)))
        if rng.random() < 0.05:
            row["UF_CRM_VIP"] = 1
        if rng.random() < 0.3:
            row["UF_CRM_FIRST_VISIT"] = dt.datetime.fromtimestamp(row["DATE_CREATE"], dt.timezone.utc).date()
    delivery = [item for item, _ in data.USER_FIELD_ITEMS["UF_CRM_DELIVERY"]]
    for row in deals.values():
        if rng.random() < 0.5:
            row["UF_CRM_DELIVERY"] = rng.choice(delivery)
            row["UF_CRM_DELIVERY_DATE"] = row.get("CLOSEDATE")


def _history(out: Business, deals: dict[int, dict[str, Any]]) -> None:
    """A deal's creation in its funnel's first stage, then its move to where it stands (TYPE_ID 1, 2)."""
    for deal_id in sorted(deals):
        row = deals[deal_id]
        category = int(row.get("CATEGORY_ID") or 0)
        first = data.stage_id(category, "NEW")
        out.history.append((len(out.history) + 1, deal_id, row["DATE_CREATE"], category, "P", first, 1))
        if row["STAGE_ID"] != first:
            out.history.append((len(out.history) + 1, deal_id, row.get("MOVED_TIME") or row["DATE_CREATE"],
                                category, row["STAGE_SEMANTIC_ID"], row["STAGE_ID"], 2))


DEAL_SHARE = 1 / 3  # of the activities, those logged on a deal card


def _activities(out: Business, contacts: dict[int, dict[str, Any]], deals: dict[int, dict[str, Any]], count: int,
                rng: random.Random, now: int) -> None:
    """`count` activities on deals (a third), random contacts and companies (one in ten of the rest),
    IDs in the order they happened."""
    contact_ids = sorted(contacts)
    company_ids = sorted(out.companies)
    deal_ids = sorted(i for i, row in deals.items() if row.get("CONTACT_ID") in contacts)
    planned: list[tuple[int, int, int, str]] = []
    for _ in range(count):
        if deal_ids and rng.random() < DEAL_SHARE:
            owner_type, owner = 2, rng.choice(deal_ids)
            born = deals[owner]["DATE_CREATE"]
        elif company_ids and rng.random() < 0.1:
            owner_type, owner = 4, rng.choice(company_ids)
            born = out.companies[owner]["DATE_CREATE"]
        elif contact_ids:
            owner_type, owner = 3, rng.choice(contact_ids)
            born = contacts[owner]["DATE_CREATE"]
        else:
            break
        roll = rng.random()
        kind = "call" if roll < 0.55 else "meeting" if roll < 0.65 else "email" if roll < 0.9 else "task"
        planned.append((born + int(rng.random() * max(now - born, 3600)), owner_type, owner, kind))
    planned.sort()
    for activity_id, (start, owner_type, owner, kind) in enumerate(planned, start=1):
        assigned = 1 + owner % len(data.USERS)
        bindings = [{"OWNER_TYPE_ID": str(owner_type), "OWNER_ID": str(owner)}]
        if owner_type == 2:
            bindings.append({"OWNER_TYPE_ID": "3", "OWNER_ID": str(deals[owner]["CONTACT_ID"])})
        row: dict[str, Any] = {"ID": activity_id, "OWNER_TYPE_ID": owner_type, "OWNER_ID": owner,
                               "RESPONSIBLE_ID": assigned, "AUTHOR_ID": assigned, "START_TIME": start,
                               "CREATED": start, "LAST_UPDATED": start, "COMPLETED": "Y", "BINDINGS": bindings}
        if kind == "call":
            incoming = rng.random() < 0.4
            row.update(TYPE_ID=2, PROVIDER_ID="VOXIMPLANT_CALL", PROVIDER_TYPE_ID="CALL",
                       DIRECTION=1 if incoming else 2)
            if incoming and rng.random() < 0.25:
                row.update(SUBJECT=_SUBJECTS["missed"], END_TIME=start, COMPLETED="N",
                           SETTINGS={"MISSED_CALL": True})
            else:
                row.update(SUBJECT=_SUBJECTS["call_in" if incoming else "call_out"],
                           END_TIME=start + 20 + int(rng.expovariate(1 / 180)))
        elif kind == "meeting":
            row.update(TYPE_ID=1, PROVIDER_ID="CRM_MEETING", PROVIDER_TYPE_ID="MEETING", DIRECTION=0,
                       SUBJECT=_SUBJECTS["meeting"], END_TIME=start + 3600,
                       COMPLETED="Y" if start < now - 86400 else "N")
        elif kind == "email":
            incoming = rng.random() < 0.3
            row.update(TYPE_ID=4, PROVIDER_ID="CRM_EMAIL", PROVIDER_TYPE_ID="EMAIL", DIRECTION=1 if incoming else 2,
                       SUBJECT=_SUBJECTS["email_in" if incoming else "email_out"], END_TIME=start)
        else:
            row.update(TYPE_ID=6, PROVIDER_ID="CRM_TODO", PROVIDER_TYPE_ID="TODO", DIRECTION=0,
                       SUBJECT=_SUBJECTS["task"], END_TIME=start + 86400,
                       COMPLETED="Y" if rng.random() < 0.8 else "N")
        out.activities[activity_id] = row
