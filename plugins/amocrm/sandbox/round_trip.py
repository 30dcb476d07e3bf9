"""What a CRM round trip reads besides contacts and leads: companies, typed fields, stage moves, calls, tasks.

Seeded after `data.seed_rows` from its own random streams, so the contacts and
leads it decorates keep every value they had before:

- companies (one per `COMPANY_EVERY` seeded people; some people work at one,
  a few at two, as amoCRM allows), with a switchboard, a mailbox, a city,
  an ИНН in a field of its own or in the requisites (legal_entity, `vat_id`),
  an industry (select) and a headcount (numeric); a lead of a person who works
  somewhere belongs to that company; the B2B part's colleagues to theirs;
- values of the other field types (numeric, checkbox, date, radiobutton,
  date_time) on contacts and leads;
- lead_status_changed events: each open lead moved into its current status
  (after passing the first one when it is further along);
- calls as call_in / call_out notes on contacts, companies and leads with
  their duration and call_status (missed incoming ones included), and tasks
  (calls, meetings, the account's own) done or planned, on the same three:
  `activities` in all, a third of them on leads, as managers log them.

Calls are kept as compact tuples, sorted by time with ids rising, so an
account of 300,000 costs little memory and a page of them is a slice.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date, datetime, timezone
from typing import Any, NamedTuple

from plugins.amocrm.sandbox import b2b as b2b_data
from plugins.amocrm.sandbox.data import (
    ACCOUNT_ID,
    BONUS,
    CALLS_ALLOWED,
    COMPANY_CITY,
    COMPANY_ID_BASE,
    COMPANY_INN,
    DELIVERY_AT,
    EMAIL,
    FIRST_VISIT,
    INDUSTRY,
    LOST_STATUS_ID,
    PAYMENT,
    PHONE,
    PIPELINES_BY_ID,
    REQUISITES,
    STAFF,
    URGENT,
    USERS,
    WON_STATUS_ID,
    ContactRow,
    LeadRow,
    account_midnight,
    link,
)

COMPANY_EVERY = 12          # seeded people per company
MEMBER_RATE = 0.15          # people who work at one of the companies
SECOND_COMPANY_RATE = 0.1   # of those, people at two
REQUISITES_RATE = 0.5       # companies whose ИНН is in the requisites rather than a field of its own
COMPANY_WORDS = ("Вектор", "Альфа", "Меридиан", "Северный ветер", "Гранит", "Сфера", "Орбита", "Лидер", "Прогресс",
                 "Восход", "Эталон", "Кедр", "Парус", "Феникс", "Магистраль", "Атлант", "Импульс", "Горизонт")
FORMS = ("ООО", "АО", "ИП")
CITIES = ("Москва", "Санкт-Петербург", "Новосибирск", "Екатеринбург", "Казань", "Нижний Новгород", "Самара")
B2B_CITIES = {b2b_data.TECHNOSFERA: "Москва", b2b_data.STROYRESURS: "Новосибирск"}
B2B_INN = {b2b_data.TECHNOSFERA: "7701234567", b2b_data.STROYRESURS: "5405123456"}

CALL_ID_BASE = 60_000_001   # seeded call notes (notes written through the API start at 90,000,001)
TASK_ID_BASE = 70_000_001   # seeded tasks (tasks added through the API start at 80,000,001)
TASK_SHARE = 0.1            # of the activities, tasks; the rest calls
COMPANY_CALL_SHARE = 0.15   # calls to a company's switchboard rather than a person
LEAD_SHARE = 1 / 3          # calls and tasks logged on a lead (of those with a contact) rather than on the person
HISTORY_DAYS = 365
ACTIVITIES_PER_CONTACT = 2  # an account's activities unless told how many
DAY = 86_400


class CallRow(NamedTuple):
    """A call note as the account keeps it: ids rise with `created_at` within an entity's list."""

    id: int
    entity_id: int
    created_at: int
    note_type: str      # call_in / call_out
    duration: int
    call_status: int    # 1 message left, 2 call back, 3 not there, 4 talked, 5 wrong number, 6 no answer, 7 busy
    responsible_user_id: int
    phone: str


def seed_companies(contacts: Sequence[ContactRow], leads: Sequence[LeadRow], seed: int,
                   count: int | None = None) -> list[ContactRow]:
    """Companies for the seeded people and the B2B part's employers; links contacts and leads to them.

    `count` companies for the seeded people (one per `COMPANY_EVERY` unless told); 0 seeds none at all.
    """
    if count == 0:
        return []
    rng = random.Random(f"amocrm-companies:{seed}")
    people = [row for row in contacts if row.person_id is not None and row.person_id < b2b_data.PERSON_BASE]
    companies: list[ContactRow] = []
    next_id = COMPANY_ID_BASE + 1
    start = min((row.created_at for row in contacts), default=int(datetime(2024, 1, 1, tzinfo=timezone.utc)
                                                                  .timestamp()))
    for index in range(len(people) // COMPANY_EVERY if count is None else count):
        name = f"{FORMS[index % len(FORMS)]} «{COMPANY_WORDS[index % len(COMPANY_WORDS)]}"
        name += f"-{index // len(COMPANY_WORDS) + 1}»" if index >= len(COMPANY_WORDS) else "»"
        companies.append(_company(next_id, name, rng.choice(CITIES), _inn(rng), rng, start + index * 3_600))
        next_id += 1
    if companies:
        for row in people:
            if rng.random() < MEMBER_RATE:
                chosen = [rng.choice(companies)]
                if rng.random() < SECOND_COMPANY_RATE:
                    other = rng.choice(companies)
                    if other is not chosen[0]:
                        chosen.append(other)
                for company in chosen:
                    row.company_ids.append(company.id)
                    company.contact_ids.append(row.id)
    employers: dict[str, ContactRow] = {}
    entries = [entry for records in b2b_data.PEOPLE.values() for entry in records]
    b2b_rows = [row for row in contacts if row.person_id is not None and row.person_id >= b2b_data.PERSON_BASE]
    for row, entry in zip(b2b_rows, entries, strict=False):
        if not entry.company:
            continue
        known = employers.get(entry.company)
        if known is not None:
            company = known
        else:
            company = _company(next_id, entry.company, B2B_CITIES.get(entry.company, CITIES[0]),
                               B2B_INN.get(entry.company, _inn(rng)), rng, row.created_at - 60)
            switchboard = next((value for code, value in entry.phones if code == "WORK"), None)
            if switchboard:
                company.fields[PHONE.id] = [(switchboard, PHONE.enum_id("WORK"))]
            next_id += 1
            employers[entry.company] = company
            companies.append(company)
        row.company_ids.append(company.id)
        company.contact_ids.append(row.id)
    by_contact = {row.id: row for row in contacts}
    for lead in leads:
        person = by_contact.get(lead.contact_ids[0]) if lead.contact_ids else None
        if person is not None and person.company_ids:
            lead.company_ids = [person.company_ids[0]]
    return companies


def _inn(rng: random.Random) -> str:
    return "77" + "".join(str(rng.randrange(10)) for _ in range(8))


def _company(company_id: int, name: str, city: str, inn: str, rng: random.Random, created: int) -> ContactRow:
    user = USERS[company_id % len(USERS)]
    digits = "".join(str(rng.randrange(10)) for _ in range(7))
    fields: dict[int, list[tuple[Any, int | None]]] = {
        PHONE.id: [(f"+7 (495) {digits[:3]}-{digits[3:5]}-{digits[5:]}", PHONE.enum_id("WORK"))],
        EMAIL.id: [(f"info@company{company_id - COMPANY_ID_BASE}.ru", EMAIL.enum_id("WORK"))],
        COMPANY_CITY.id: [(city, None)],
    }
    if rng.random() < REQUISITES_RATE:
        fields[REQUISITES.id] = [({"name": name, "entity_type": None, "vat_id": inn,
                                   "tax_registration_reason_code": None, "address": None, "kpp": None,
                                   "external_uid": None}, None)]
    else:
        fields[COMPANY_INN.id] = [(inn, None)]
    industry_id, industry = rng.choice(INDUSTRY.enums)
    fields[INDUSTRY.id] = [(industry, industry_id)]
    fields[STAFF.id] = [(str(rng.choice((5, 12, 40, 120, 800))), None)]
    return ContactRow(id=company_id, name=name, first_name="", last_name="", responsible_user_id=user,
                      created_by=user, updated_by=user, created_at=created, updated_at=created, fields=fields)


def seed_values(contacts: Sequence[ContactRow], leads: Sequence[LeadRow], seed: int) -> None:
    """Values of the other field types on contacts and leads (each record drawn from its own stream)."""
    rng = random.Random()
    for row in contacts:
        rng.seed(f"amocrm-values:{seed}:{row.id}")
        if rng.random() < 0.3:
            row.fields[BONUS.id] = [(str(rng.choice((100, 250, 500, 1500))), None)]
        if rng.random() < 0.5:
            row.fields[CALLS_ALLOWED.id] = [(rng.random() < 0.7, None)]
        if rng.random() < 0.2:
            seen = datetime.fromtimestamp(row.created_at, timezone.utc).date()
            row.fields[FIRST_VISIT.id] = [(account_midnight(seen), None)]
    for lead in leads:
        rng.seed(f"amocrm-values:{seed}:{lead.id}")
        if rng.random() < 0.6:
            option_id, option = rng.choice(PAYMENT.enums)
            lead.fields[PAYMENT.id] = [(option, option_id)]
        if lead.status_id not in (WON_STATUS_ID, LOST_STATUS_ID) and rng.random() < 0.3:
            lead.fields[DELIVERY_AT.id] = [(lead.updated_at + 3 * DAY + 10 * 3_600, None)]
        if rng.random() < 0.1:
            lead.fields[URGENT.id] = [(True, None)]


def status_moves(leads: Sequence[LeadRow], seed: int) -> list[tuple[int, int, int, int, int | None, int | None]]:
    """(when, lead id, pipeline, status, from status, from pipeline) of each open lead's moves, oldest first.

    A lead in its pipeline's first stage was created there and has no move; one
    further along moved from the first stage into its current one some time
    between its creation and its last change.
    """
    rng = random.Random(f"amocrm-moves:{seed}")
    moves: list[tuple[int, int, int, int, int | None, int | None]] = []
    for lead in leads:
        pipeline = PIPELINES_BY_ID.get(lead.pipeline_id)
        if pipeline is None or lead.status_id in (WON_STATUS_ID, LOST_STATUS_ID):
            continue
        working = pipeline.working_status_ids
        if not working or lead.status_id == working[0]:
            continue
        span = max(60, lead.updated_at - lead.created_at)
        moved = lead.created_at + int(span * (0.3 + 0.6 * rng.random()))
        moves.append((moved, lead.id, pipeline.id, lead.status_id, working[0], pipeline.id))
    moves.sort()
    return moves


def seed_activities(count: int, seed: int, contacts: Sequence[ContactRow], companies: Sequence[ContactRow],
                    today: date | None = None, leads: Sequence[LeadRow] = ()
                    ) -> tuple[dict[str, list[CallRow]], list[dict[str, Any]]]:
    """`count` activities over the last year: calls (notes by entity) and tasks, oldest first.

    A third are logged on leads that have a contact (`LEAD_SHARE`), as managers do; the call's
    phone is then the lead's main contact's.
    """
    calls: dict[str, list[CallRow]] = {"contacts": [], "companies": [], "leads": []}
    people = {row.id: row for row in contacts}
    leads = [lead for lead in leads if lead.contact_ids and lead.contact_ids[0] in people]
    tasks: list[dict[str, Any]] = []
    if count <= 0 or not contacts:
        return calls, tasks
    today = today or date.today()
    end = int(datetime(today.year, today.month, today.day, 6, tzinfo=timezone.utc).timestamp())
    rng = random.Random(f"amocrm-activities:{seed}")
    moments = sorted(end - int(rng.random() * HISTORY_DAYS * DAY) for _ in range(count))
    for moment in moments:
        if rng.random() < TASK_SHARE:
            tasks.append(_task(rng, len(tasks), moment, end, contacts, companies, leads))
            continue
        lead = rng.choice(leads) if leads and rng.random() < LEAD_SHARE else None
        on_company = lead is None and bool(companies) and rng.random() < COMPANY_CALL_SHARE
        owner: ContactRow | LeadRow = (lead if lead is not None else rng.choice(companies) if on_company
                                       else rng.choice(contacts))
        incoming = rng.random() < 0.4
        talked = rng.random() < 0.7
        dialled = people[lead.contact_ids[0]] if lead is not None else owner
        phones = dialled.fields.get(PHONE.id) or [("", None)]
        entity = "leads" if lead is not None else "companies" if on_company else "contacts"
        calls[entity].append(CallRow(
            id=0, entity_id=owner.id, created_at=moment, note_type="call_in" if incoming else "call_out",
            duration=rng.randint(20, 900) if talked else 0,
            call_status=4 if talked else rng.choice((3, 6, 7) if incoming else (1, 2, 6, 7)),
            responsible_user_id=owner.responsible_user_id, phone=str(phones[0][0])))
    number = CALL_ID_BASE
    merged = sorted((row.created_at, entity, index) for entity, rows in calls.items() for index, row in enumerate(rows))
    for _, entity, index in merged:
        calls[entity][index] = calls[entity][index]._replace(id=number)
        number += 1
    return calls, tasks


def _task(rng: random.Random, index: int, created: int, end: int, contacts: Sequence[ContactRow],
          companies: Sequence[ContactRow], leads: Sequence[LeadRow] = ()) -> dict[str, Any]:
    lead = rng.choice(leads) if leads and rng.random() < LEAD_SHARE else None
    on_company = lead is None and bool(companies) and rng.random() < COMPANY_CALL_SHARE
    owner: ContactRow | LeadRow = (lead if lead is not None else rng.choice(companies) if on_company
                                   else rng.choice(contacts))
    task_type = rng.choice((1, 1, 2, 3))
    due = created + rng.randint(1, 14) * DAY
    done = due < end and rng.random() < 0.8
    return {
        "id": TASK_ID_BASE + index,
        "created_by": owner.responsible_user_id,
        "updated_by": owner.responsible_user_id,
        "created_at": created,
        "updated_at": min(due, end) if done else created,
        "responsible_user_id": owner.responsible_user_id,
        "group_id": 0,
        "entity_id": owner.id,
        "entity_type": "leads" if lead is not None else "companies" if on_company else "contacts",
        "duration": 3_600 if task_type == 2 else 0,
        "is_completed": done,
        "task_type_id": task_type,
        "text": {1: "Перезвонить", 2: "Встреча в офисе", 3: "Отправить КП"}[task_type],
        "result": {"text": "Выполнено"} if done else [],
        "complete_till": due,
        "account_id": ACCOUNT_ID,
    }


def render_call(row: CallRow, entity: str, base_url: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "entity_id": row.entity_id,
        "created_by": row.responsible_user_id,
        "updated_by": row.responsible_user_id,
        "created_at": row.created_at,
        "updated_at": row.created_at,
        "responsible_user_id": row.responsible_user_id,
        "group_id": 0,
        "note_type": row.note_type,
        "params": {"uniq": f"sandbox-{row.id}", "duration": row.duration, "source": "Телефония",
                   "link": "", "phone": row.phone, "call_status": row.call_status, "call_result": ""},
        "account_id": ACCOUNT_ID,
        "_links": link(base_url, f"/api/v4/{entity}/{row.entity_id}/notes/{row.id}"),
    }
