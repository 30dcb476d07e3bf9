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
"""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from hub.api import ContactRecord, OrderRecord, person_name

SOURCE = "bitrix24"
CONTACT_FIELDS = ["ID", "NAME", "LAST_NAME", "SECOND_NAME", "BIRTHDATE", "ADDRESS_CITY", "SOURCE_ID", "TYPE_ID",
                  "ASSIGNED_BY_ID", "COMPANY_TITLE", "DATE_CREATE", "DATE_MODIFY", "PHONE", "EMAIL"]
DEAL_FIELDS = ["ID", "TITLE", "CONTACT_ID", "CATEGORY_ID", "STAGE_ID", "STAGE_SEMANTIC_ID", "OPPORTUNITY",
               "CURRENCY_ID", "CLOSEDATE", "CLOSED", "DATE_CREATE", "DATE_MODIFY"]
OUTCOME = {"S": "won", "F": "lost", "P": "open"}
# VALUE_TYPE -> hub.records.LABELS. A pager is nobody's own line any more; an email's HOME is a private mailbox.
PHONE_LABELS = {"WORK": "work", "MOBILE": "mobile", "FAX": "fax", "HOME": "home", "PAGER": "other",
                "MAILING": "mailing", "OTHER": "other"}
EMAIL_LABELS = {"WORK": "work", "HOME": "private", "MAILING": "mailing", "OTHER": "other"}


def parse_time(value: Any) -> dt.datetime | None:
    """A portal timestamp as aware UTC; None for empty or unreadable values."""
    if not value or not isinstance(value, str):
        return None
    return _parse_time(value)


# Close dates repeat (a portal keeps them per day), and one datetime object per distinct text also
# lets the database layer convert each distinct value once (hub.db.bulk_insert).
@functools.lru_cache(maxsize=1 << 16)
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
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _values(multifield: Any, types: Mapping[str, str], labels: dict[str, str]) -> list[str]:
    """A multifield's values, recording each one's label in `labels` (the first type given wins
    when a contact holds one value twice; a type the portal adds later is left unlabelled)."""
    if not isinstance(multifield, list):
        return []
    values = []
    for item in multifield:
        if not isinstance(item, Mapping) or not str(item.get("VALUE") or "").strip():
            continue
        value = str(item["VALUE"]).strip()
        values.append(value)
        label = types.get(str(item.get("VALUE_TYPE") or "").strip().upper())
        if label and value not in labels:
            labels[value] = label
    return values


def contact(raw: Mapping[str, Any], fields: Mapping[str, str] | None = None) -> ContactRecord:
    """One crm.contact.list row; `fields` maps extra portal fields (UF_CRM_*) to attribute names."""
    attributes: dict[str, object] = {}
    for key, name in (("SOURCE_ID", "lead_source"), ("TYPE_ID", "type"), ("ASSIGNED_BY_ID", "responsible_id")):
        if _text(raw.get(key)):
            attributes[name] = _text(raw.get(key))
    for portal_field, name in (fields or {}).items():
        if raw.get(portal_field) not in (None, "", []):
            attributes[name] = raw[portal_field]
    labels: dict[str, str] = {}
    return ContactRecord(
        source=SOURCE,
        external_id=str(raw["ID"]),
        first_name=person_name(raw.get("NAME")),
        last_name=person_name(raw.get("LAST_NAME")),
        middle_name=person_name(raw.get("SECOND_NAME")),
        phones=_values(raw.get("PHONE"), PHONE_LABELS, labels),
        emails=_values(raw.get("EMAIL"), EMAIL_LABELS, labels),
        labels=labels,
        birthday=parse_date(raw.get("BIRTHDATE")),
        city=_text(raw.get("ADDRESS_CITY")),
        company=_text(raw.get("COMPANY_TITLE")),
        attributes=attributes,
        created_at=parse_time(raw.get("DATE_CREATE")),
        updated_at=parse_time(raw.get("DATE_MODIFY")),
    )


def deal(raw: Mapping[str, Any], promo_field: str | None = None) -> OrderRecord:
    """One crm.deal.list row; an amount the portal holds as text that is not a number stays as text
    so the core reports it against this deal instead of guessing."""
    status = OUTCOME.get(str(raw.get("STAGE_SEMANTIC_ID") or "P"), "open")
    contact_id = _text(raw.get("CONTACT_ID"))
    amount: Any = raw.get("OPPORTUNITY") or "0"
    try:
        amount = Decimal(str(amount))
    except InvalidOperation:
        pass
    return OrderRecord(
        source=SOURCE,
        external_id=str(raw["ID"]),
        contact_external_id=contact_id if contact_id and contact_id != "0" else None,
        amount=amount,
        currency=_text(raw.get("CURRENCY_ID")) or "RUB",
        status=status,  # type: ignore[arg-type]
        closed_at=parse_time(raw.get("CLOSEDATE")) if status != "open" else None,
        created_at=parse_time(raw.get("DATE_CREATE")),
        promo_code=_text(raw.get(promo_field)) if promo_field else None,
        title=_text(raw.get("TITLE")),
    )
