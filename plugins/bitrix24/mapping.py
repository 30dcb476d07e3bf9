"""Bitrix24 records as Hub records.

The portal sends every value as a string, dates with the portal's offset
("2024-08-15T10:38:21+03:00"), birthdays as midnight in that offset, and
multifields (PHONE, EMAIL) as lists of {ID, VALUE_TYPE, VALUE} that are absent
when empty; VALUE_TYPE is the value's type (phones: WORK, MOBILE, FAX, HOME,
PAGER, MAILING for SMS, OTHER; emails: WORK, HOME, MAILING, OTHER), which Hub
keeps as the cell's label (`LABELS`), since a shared office line is weaker
evidence of one person than a mobile. Deals carry their outcome in STAGE_SEMANTIC_ID whatever the funnel
(CATEGORY_ID) or stage name ('WON', 'C1:WON', a custom one), so that is what
decides won, lost or open.

Companies, their requisites and activities (calls, meetings, e-mails, tasks)
are mapped here too; custom field values arrive already typed (see
`plugins.bitrix24.fields`) and are merged into the records' attributes by code.
"""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping, TypeGuard

from hub.api import ActivityRecord, CompanyRecord, ContactRecord, OrderRecord, clean_text, person_name

SOURCE = "bitrix24"
# COMPANY_ID is the contact's main company. crm.contact.list does not return COMPANY_IDS (all of
# them): the source reads them with crm.item.list (companyIds) and puts them into the row.
CONTACT_FIELDS = ["ID", "NAME", "LAST_NAME", "SECOND_NAME", "BIRTHDATE", "ADDRESS_CITY", "SOURCE_ID", "TYPE_ID",
                  "ASSIGNED_BY_ID", "COMPANY_TITLE", "COMPANY_ID", "DATE_CREATE", "DATE_MODIFY", "PHONE", "EMAIL"]
DEAL_FIELDS = ["ID", "TITLE", "CONTACT_ID", "COMPANY_ID", "CATEGORY_ID", "STAGE_ID", "STAGE_SEMANTIC_ID",
               "OPPORTUNITY", "CURRENCY_ID", "CLOSEDATE", "CLOSED", "ASSIGNED_BY_ID", "MOVED_TIME", "DATE_CREATE",
               "DATE_MODIFY"]
COMPANY_FIELDS = ["ID", "TITLE", "ADDRESS_CITY", "ASSIGNED_BY_ID", "DATE_CREATE", "DATE_MODIFY", "PHONE", "EMAIL"]
# BINDINGS (every CRM object the activity is bound to) tells the person a call logged on a deal was with;
# COMMUNICATIONS (whom it was with: ENTITY_TYPE_ID, ENTITY_ID) tells it where BINDINGS does not.
ACTIVITY_FIELDS = ["ID", "OWNER_TYPE_ID", "OWNER_ID", "TYPE_ID", "PROVIDER_ID", "DIRECTION", "SUBJECT",
                   "START_TIME", "END_TIME", "COMPLETED", "RESPONSIBLE_ID", "SETTINGS", "CREATED", "LAST_UPDATED",
                   "BINDINGS", "COMMUNICATIONS"]
# crm.activity TYPE_ID (crm_enum_activitytype): 1 meeting, 2 call, 3 task, 4 e-mail, 6 a provider's
# activity (CRM_TODO is the to-do of current portals); DIRECTION 1 incoming, 2 outgoing.
ACTIVITY_KINDS = {"1": "meeting", "2": "call", "3": "task", "4": "email"}
PROVIDER_KINDS = {"CRM_TODO": "task", "TASKS_TASK": "task", "CRM_MEETING": "meeting", "CRM_CALL_TRACKER": "call",
                  "VOXIMPLANT_CALL": "call", "CRM_EMAIL": "email"}
OWNER_DEAL, OWNER_CONTACT, OWNER_COMPANY = "2", "3", "4"  # CRM object type ids
DIRECTIONS = {"1": "in", "2": "out"}  # crm.activity DIRECTION
OUTCOME = {"S": "won", "F": "lost", "P": "open"}
MAX_AMOUNT = Decimal("1e15")  # beyond this (or NaN, Infinity) an amount is no amount anyone typed
# VALUE_TYPE -> hub.records.LABELS. A pager is nobody's own line any more; an email's HOME is a private mailbox.
PHONE_LABELS = {"WORK": "work", "MOBILE": "mobile", "FAX": "fax", "HOME": "home", "PAGER": "other",
                "MAILING": "mailing", "OTHER": "other"}
EMAIL_LABELS = {"WORK": "work", "HOME": "private", "MAILING": "mailing", "OTHER": "other"}


def parse_time(value: Any) -> dt.datetime | None:
    """A portal timestamp as aware UTC; None for empty or unreadable values."""
    if type(value) is not str:  # the portal's JSON gives str; anything else only in odd rows
        if not value or not isinstance(value, str):
            return None
    if not value:
        return None
    found = _TIMES.get(value)
    if found is None:
        if len(_TIMES) >= TIMES_KEPT:
            _TIMES.clear()
        found = _TIMES[value] = _parse_time(value)
    return found


# Close dates repeat (a portal keeps them per day), and one datetime object per distinct text also
# lets the database layer convert each distinct value once (hub.db.bulk_insert). Most timestamps of
# a large portal are distinct, so a plain dict emptied when full costs less than an LRU's upkeep.
TIMES_KEPT = 1 << 16
_TIMES: dict[str, dt.datetime | None] = {}


def _parse_time(value: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(dt.timezone.utc)


def parse_date(value: Any) -> dt.date | None:
    """A birthday. The portal keeps dates as UTC midnight shown in its own zone
    ("2001-11-11T03:00:00+03:00"), which west of Greenwich reads as the day
    before; so a value that is midnight in UTC gives its UTC date, anything else
    the date as written."""
    if not value or not isinstance(value, str):
        return None
    return _parse_date(value)


@functools.lru_cache(maxsize=1 << 14)  # birthdays and custom dates repeat across a portal's records
def _parse_date(value: str) -> dt.date | None:
    text = value.strip()
    try:
        written = dt.date.fromisoformat(text[:10])
    except ValueError:
        return None
    moment = parse_time(text) if len(text) > 10 else None
    if moment is not None and moment.time() == dt.time(0):
        return moment.date()
    return written


def _text(value: Any) -> str | None:
    """A value as trimmed text without NUL; None when nothing is left (called for nearly every field)."""
    if type(value) is str and "\x00" not in value:  # what the portal's JSON gives
        return value.strip() or None
    if value is None:
        return None
    text = value if type(value) is str else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text.strip() or None


def _is_map(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """Mapping check with the portal's own type (dict) first: the ABC check costs more than the mapping."""
    return type(value) is dict or isinstance(value, Mapping)


def record_id(raw: Mapping[str, Any]) -> str:
    """The row's ID; a row without one cannot be kept (ValueError, reported against the page)."""
    if type(raw) is dict:
        found = raw.get("ID")
        if type(found) is str and found.isdigit():  # the portal's own: nothing to trim, never "none"
            return found
    found = _text(raw.get("ID")) if _is_map(raw) else None
    if found is None or found.lower() in ("none", "null"):
        raise ValueError("the record has no ID")
    return found


def _values(multifield: Any, types: Mapping[str, str], labels: dict[str, str]) -> list[str]:
    """A multifield's values, recording each one's label in `labels` (the first type given wins
    when a contact holds one value twice; a type the portal adds later is left unlabelled)."""
    if not isinstance(multifield, list):
        return []
    values = []
    for item in multifield:
        if not _is_map(item):
            continue
        value = _text(item.get("VALUE") or "")
        if value is None:
            continue
        values.append(value)
        label = types.get(str(item.get("VALUE_TYPE") or "").strip().upper())
        if label and value not in labels:
            labels[value] = label
    return values


def _id(value: Any) -> str | None:
    """A reference to another record; the portal writes "0" or "" for none."""
    text = _text(value)
    return text if text and text != "0" else None


def contact(raw: Mapping[str, Any], fields: Mapping[str, str] | None = None,
            custom: Mapping[str, object] | None = None) -> ContactRecord:
    """One crm.contact.list row; `fields` maps extra portal fields (UF_CRM_*) to attribute names,
    `custom` holds the record's custom field values already typed, by code."""
    attributes: dict[str, object] = dict(custom or {})
    for key, name in (("SOURCE_ID", "lead_source"), ("TYPE_ID", "type"), ("ASSIGNED_BY_ID", "responsible_id")):
        value = _text(raw.get(key))
        if value:
            attributes[name] = value
    for portal_field, name in (fields or {}).items():
        if raw.get(portal_field) not in (None, "", []):
            attributes[name] = raw[portal_field]
    labels: dict[str, str] = {}
    companies = [c for c in [_id(raw.get("COMPANY_ID"))] + [_id(i) for i in _list(raw.get("COMPANY_IDS"))] if c]
    return ContactRecord(
        source=SOURCE,
        external_id=record_id(raw),
        first_name=person_name(raw.get("NAME")),
        last_name=person_name(raw.get("LAST_NAME")),
        middle_name=person_name(raw.get("SECOND_NAME")),
        phones=_values(raw.get("PHONE"), PHONE_LABELS, labels),
        emails=_values(raw.get("EMAIL"), EMAIL_LABELS, labels),
        labels=labels,
        birthday=parse_date(raw.get("BIRTHDATE")),
        city=_text(raw.get("ADDRESS_CITY")),
        company=_text(raw.get("COMPANY_TITLE")),
        company_external_ids=list(dict.fromkeys(companies)),
        responsible_id=_id(raw.get("ASSIGNED_BY_ID")),
        attributes=attributes,
        created_at=parse_time(raw.get("DATE_CREATE")),
        updated_at=parse_time(raw.get("DATE_MODIFY")),
    )


def _list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [] if value in (None, "") else [value]


def deal(raw: Mapping[str, Any], promo_field: str | None = None, custom: Mapping[str, object] | None = None, *,
         pipelines: Mapping[str, str] | None = None, stages: Mapping[str, str] | None = None,
         entered: dt.datetime | None = None) -> OrderRecord:
    """One crm.deal.list row; an amount the portal holds as text that is not a number stays as text
    so the core reports it against this deal instead of guessing.

    `pipelines` and `stages` name CATEGORY_ID and STAGE_ID (unknown ones keep their id). The deal
    entered its stage at MOVED_TIME, which current portals keep on every deal; `entered` (from
    crm.stagehistory.list) is used where a portal leaves MOVED_TIME empty."""
    get = raw.get  # a first sync maps every deal of the portal: the lookups below add up
    status = OUTCOME.get(str(get("STAGE_SEMANTIC_ID") or "P"), "open")
    contact_id = _text(get("CONTACT_ID"))
    amount: Any = get("OPPORTUNITY") or "0"
    try:
        number = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        number = None
    if number is not None and (not number.is_finite() or abs(number) > MAX_AMOUNT):
        raise ValueError(f"OPPORTUNITY {str(amount)[:40]!r} is not an amount")  # the deal is reported, not kept
    amount = number if number is not None else clean_text(str(amount))
    return OrderRecord(
        source=SOURCE,
        external_id=record_id(raw),
        contact_external_id=contact_id if contact_id and contact_id != "0" else None,
        amount=amount,
        currency=_text(get("CURRENCY_ID")) or "RUB",
        status=status,  # type: ignore[arg-type]
        closed_at=parse_time(get("CLOSEDATE")) if status != "open" else None,
        created_at=parse_time(get("DATE_CREATE")),
        promo_code=_text(get(promo_field)) if promo_field else None,
        title=_text(get("TITLE")),
        company_external_id=_id(get("COMPANY_ID")),
        pipeline=_named(get("CATEGORY_ID") or "0", pipelines),
        stage=_named(get("STAGE_ID"), stages),
        stage_entered_at=parse_time(get("MOVED_TIME")) or entered,
        responsible_id=_id(get("ASSIGNED_BY_ID")),
        attributes=dict(custom) if custom else {},
    )


def _named(value: Any, names: Mapping[str, str] | None) -> str | None:
    key = _text(value)
    if key is None:
        return None
    return (names or {}).get(key) or key


def company(raw: Mapping[str, Any], inn: str | None = None,
            custom: Mapping[str, object] | None = None) -> CompanyRecord:
    """One crm.company.list row with its INN (RQ_INN of the company's requisite, read separately)."""
    return CompanyRecord(
        source=SOURCE,
        external_id=record_id(raw),
        name=_text(raw.get("TITLE")),
        inn=_text(inn),
        city=_text(raw.get("ADDRESS_CITY")),
        phones=_values(raw.get("PHONE"), PHONE_LABELS, {}),
        emails=_values(raw.get("EMAIL"), EMAIL_LABELS, {}),
        responsible_id=_id(raw.get("ASSIGNED_BY_ID")),
        attributes=dict(custom or {}),
        created_at=parse_time(raw.get("DATE_CREATE")),
        updated_at=parse_time(raw.get("DATE_MODIFY")),
    )


def missed(raw: Mapping[str, Any]) -> bool:
    """An incoming call nobody answered.

    The telephony marks it in the activity's SETTINGS (MISSED_CALL true) and leaves it not completed
    for the manager to call back; a portal that leaves SETTINGS empty still shows an incoming call of
    no length (END_TIME equal to START_TIME) that is open, which is read as missed too.
    """
    if str(raw.get("DIRECTION") or "") != "1":
        return False
    settings = raw.get("SETTINGS")
    if _is_map(settings) and "MISSED_CALL" in settings:
        return str(settings["MISSED_CALL"]).strip().lower() in ("1", "true", "y")
    start, end = parse_time(raw.get("START_TIME")), parse_time(raw.get("END_TIME"))
    return raw.get("COMPLETED") != "Y" and start is not None and start == end


def bound(raw: Mapping[str, Any]) -> dict[str, str]:
    """The first object of each type an activity is bound to (BINDINGS), type id -> object id.

    Items read {OWNER_TYPE_ID, OWNER_ID} (crm.activity.fields) or {entityTypeId, entityId}
    (crm.activity.binding.list); a portal that does not return BINDINGS gives nothing here.
    """
    items = raw.get("BINDINGS")
    out: dict[str, str] = {}
    if not isinstance(items, list):
        return out
    for item in items:
        if not _is_map(item):
            continue
        kind = str(item.get("OWNER_TYPE_ID") or item.get("entityTypeId") or "")
        target = _id(item.get("OWNER_ID") or item.get("entityId"))
        if kind and target is not None:
            out.setdefault(kind, target)
    return out


def communicated(raw: Mapping[str, Any]) -> dict[str, str]:
    """The first contact, company... of each type the activity was with (COMMUNICATIONS), type id -> id.

    Items read {ENTITY_TYPE_ID, ENTITY_ID, TYPE, VALUE} (crm-activity-communication-fields); the
    second source of whom a call was with, for portals whose lists do not return BINDINGS.
    """
    items = raw.get("COMMUNICATIONS")
    out: dict[str, str] = {}
    for item in items if isinstance(items, list) else ():
        if not _is_map(item):
            continue
        kind, target = str(item.get("ENTITY_TYPE_ID") or ""), _id(item.get("ENTITY_ID"))
        if kind and target is not None:
            out.setdefault(kind, target)
    return out


def activity(raw: Mapping[str, Any]) -> ActivityRecord | None:
    """One crm.activity.list row bound to a deal, a contact or a company; None for kinds Hub does not keep.

    A call logged on a deal (OWNER_TYPE_ID 2) names the deal, and the contact when its BINDINGS
    (else its COMMUNICATIONS) say who it was with; without one it reaches the deal's contact
    (hub.activities). The contact or company it is also bound to is what keeps it when the deal is
    deleted (crm.deal.delete).
    """
    kind = PROVIDER_KINDS.get(str(raw.get("PROVIDER_ID") or "")) or ACTIVITY_KINDS.get(str(raw.get("TYPE_ID") or ""))
    at = parse_time(raw.get("START_TIME")) or parse_time(raw.get("CREATED"))
    if kind is None or at is None:
        return None
    owner_type, owner = str(raw.get("OWNER_TYPE_ID") or ""), _id(raw.get("OWNER_ID"))
    bindings = bound(raw) if raw.get("BINDINGS") else {}
    if raw.get("COMMUNICATIONS"):
        for kind_id, target in communicated(raw).items():
            bindings.setdefault(kind_id, target)
    direction = DIRECTIONS.get(str(raw.get("DIRECTION") or ""))
    duration = None
    if kind == "call":
        end = parse_time(raw.get("END_TIME"))
        if end is not None and end >= at:
            duration = int((end - at).total_seconds())
    is_missed = kind == "call" and missed(raw)
    return ActivityRecord(
        source=SOURCE,
        external_id=record_id(raw),
        kind=kind,  # type: ignore[arg-type]
        at=at,
        contact_external_id=owner if owner_type == OWNER_CONTACT else bindings.get(OWNER_CONTACT),
        company_external_id=owner if owner_type == OWNER_COMPANY else bindings.get(OWNER_COMPANY),
        direction=direction,  # type: ignore[arg-type]
        missed=is_missed,
        done=raw.get("COMPLETED") == "Y",
        duration_s=0 if is_missed else duration,
        subject=_text(raw.get("SUBJECT")),
        responsible_id=_id(raw.get("RESPONSIBLE_ID")),
        order_external_id=owner if owner_type == OWNER_DEAL else bindings.get(OWNER_DEAL),
    )
