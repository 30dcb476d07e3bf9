"""amoCRM's JSON (API v4) to Hub's records.

Shapes, as amoCRM documents them:

- A contact has `first_name`, `last_name`, `name`; `custom_fields_values`
  (null when empty) is a list of fields, each `{field_id, field_name,
  field_code, field_type, values: [{value, enum_id, enum_code}]}`: phones
  and emails in the entries whose `field_code` is PHONE / EMAIL, each value
  tagged with its type in `enum_code` (phones WORK, WORKDD, MOB, FAX, HOME,
  OTHER; emails WORK, PRIV, OTHER), which becomes the cell's label; list fields (select, multiselect,
  radiobutton) carry the option's text in `value` and its `enum_id`; date
  fields (date, birthday) hold midnight in the account's zone and date_time
  fields a moment, both as unix seconds. Tags come in `_embedded.tags`
  (`{id, name, color}`), linked companies in `_embedded.companies` (`id`,
  and `name` only where the answer embeds the whole company). Timestamps
  are unix seconds.

  Besides phones and emails, a contact's fields become: `birthday` (the
  field configured as `[amocrm] fields.birthday`, else one of type
  birthday or coded BIRTHDAY), `city` (`fields.city`, else a field coded
  CITY or named Город / City), and every other field an entry of
  `attributes`, keyed by its code, else its name (plus its id when two
  fields share one): a single value as itself, several as a list, dates as
  ISO dates and moments as ISO date-times in UTC.
- A lead has `price`, `status_id` (142 is won, 143 lost, anything else is
  open), `closed_at`, `pipeline_id`, and with `with=contacts` its contacts in
  `_embedded.contacts`, the main one marked `is_main`.
- A Customers transaction has `price`, `completed_at` and `customer_id`; its
  person is the customer's main contact.
- The events list reports deletions as `contact_deleted` / `lead_deleted`
  with the `entity_id`.

A value Hub cannot read (a birthday that is not a date, a price that is not a
number) is dropped or the record skipped, and reported as a Problem; the rest
of the page goes in.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from hub.api import ContactRecord, Deletion, OrderRecord, OrderStatus, person_name, split_full_name

SOURCE = "amocrm"
# Two or three words of letters (a hyphen inside one): a person's ФИО, not a company or a note.
_FIO = re.compile(r"^[^\W\d_]+(?:-[^\W\d_]+)?(?: [^\W\d_]+(?:-[^\W\d_]+)?){1,2}$")
WON, LOST = 142, 143
TRANSACTION_PREFIX = "transaction:"
DELETION_EVENTS = {"contact_deleted": "contact", "lead_deleted": "order"}
UTC = dt.timezone.utc
DATE_TYPES = frozenset({"date", "birthday"})  # unix seconds of midnight in the account's zone
MOMENT_TYPES = frozenset({"date_time"})
CITY_NAMES = frozenset({"город", "city"})  # a field of the account's own that holds the city
OWN_CODES = frozenset({"PHONE", "EMAIL"})  # mapped to phones and emails
# enum_code -> hub.records.LABELS. WORKDD is a direct work line: still the office's, so "work".
LABELS = {
    "PHONE": {"WORK": "work", "WORKDD": "work", "MOB": "mobile", "FAX": "fax", "HOME": "home", "OTHER": "other"},
    "EMAIL": {"WORK": "work", "PRIV": "private", "OTHER": "other"},
}


@dataclass(frozen=True)
class Problem:
    """A value from amoCRM that Hub could not use."""

    entity: str
    id: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"entity": self.entity, "id": self.id, "error": self.error}


def timestamp(value: Any) -> dt.datetime | None:
    """Unix seconds (amoCRM's timestamps) as an aware UTC datetime; None for empty or 0."""
    if value in (None, "", 0, "0"):
        return None
    return dt.datetime.fromtimestamp(int(value), UTC)


def _field_values(contact: Mapping[str, Any], code: str, labels: dict[str, str]) -> list[str]:
    """The values of the PHONE or EMAIL field, recording each one's label in `labels` (the first
    type given wins when a contact holds one value twice; an enum_code amoCRM adds later is left
    unlabelled)."""
    out: list[str] = []
    types = LABELS[code]
    for field in contact.get("custom_fields_values") or []:
        if (field.get("field_code") or "").upper() == code:
            for item in field.get("values") or []:
                value = item.get("value") if isinstance(item, Mapping) else item
                if value in (None, "") or not str(value).strip():
                    continue
                text = str(value).strip()
                out.append(text)
                label = types.get(str(item.get("enum_code") or "").upper()) if isinstance(item, Mapping) else None
                if label and text not in labels:
                    labels[text] = label
    return out


def _find_field(contact: Mapping[str, Any], *, field_id: Any = None, field_type: str | None = None,
                field_code: str | None = None, names: frozenset[str] = frozenset()) -> Mapping[str, Any] | None:
    """With `field_id`, the field with that id alone; else the first whose type, code or name matches."""
    fields = [f for f in contact.get("custom_fields_values") or [] if isinstance(f, Mapping)]
    if field_id is not None:
        return next((f for f in fields if str(f.get("field_id")) == str(field_id)), None)
    for field in fields:
        if ((field_type and field.get("field_type") == field_type)
                or (field_code and (field.get("field_code") or "").upper() == field_code)
                or (names and str(field.get("field_name") or "").strip().lower() in names)):
            return field
    return None


def _first_value(field: Mapping[str, Any] | None) -> Any:
    for item in (field or {}).get("values") or []:
        value = item.get("value") if isinstance(item, Mapping) else item
        if value not in (None, ""):
            return value
    return None


def _attribute(field: Mapping[str, Any]) -> Any:
    """A field's values for `attributes`: None when empty, one value as itself, several as a list.

    Text is stripped; dates become ISO dates and moments ISO date-times
    (UTC); a value that is not a timestamp is kept as amoCRM sent it.
    """
    kind = field.get("field_type")
    out: list[Any] = []
    for item in field.get("values") or []:
        value = item.get("value") if isinstance(item, Mapping) else item
        if isinstance(value, str):
            value = value.strip()
        if value in (None, ""):
            continue
        try:
            if kind in DATE_TYPES:
                value = birthday(value).isoformat()
            elif kind in MOMENT_TYPES and (isinstance(value, int) or str(value).strip().lstrip("-").isdigit()):
                value = dt.datetime.fromtimestamp(int(value), UTC).isoformat()
        except (ValueError, OverflowError, OSError):
            pass
        out.append(value)
    if not out:
        return None
    return out[0] if len(out) == 1 else out


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def birthday(value: Any) -> dt.date:
    """A birthday field's value: unix seconds (amoCRM's usual form) or an ISO date / datetime."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        # Dates are stored as midnight in the account's zone; noon UTC of the
        # instant lands on the intended day for every zone from -12 to +12.
        moment = dt.datetime.fromtimestamp(int(value), UTC) + dt.timedelta(hours=12)
        return moment.date()
    if isinstance(value, str) and _DATE.match(value.strip()):
        return dt.date.fromisoformat(value.strip()[:10])
    raise ValueError(f"birthday {value!r} is not a date")


def contact(row: Mapping[str, Any], fields: Mapping[str, Any] | None = None,
            problems: list[Problem] | None = None) -> ContactRecord:
    """A contact; `fields` maps logical names (birthday, city, ...) to custom field ids.

    Custom fields that are not phones, emails, the birthday or the city go to
    `attributes` (see the module's docstring), so nothing the account keeps
    about a person is lost on the way in.
    """
    fields = fields or {}
    external_id = str(row["id"])
    # Names as people write them: "ИВАНОВ" becomes "Иванов", as imports have it.
    first = person_name(row.get("first_name"))
    last = person_name(row.get("last_name"))
    middle = None
    if not first and not last:
        first = person_name(row.get("name"))
        if first and _FIO.match(first):
            # Only the whole name was typed ("Журавлёва Анастасия Владимировна"): read as an ФИО, so the first
            # name is not all of it (merged with a CRM that split it, it would read twice). Anything else
            # ("ООО Ромашка, Анна") stays whole in the first name, as typed.
            first, last, middle = (person_name(part) for part in split_full_name(first))
    labels: dict[str, str] = {}
    record = ContactRecord(
        source=SOURCE, external_id=external_id, first_name=first, last_name=last, middle_name=middle,
        phones=_field_values(row, "PHONE", labels), emails=_field_values(row, "EMAIL", labels), labels=labels,
        tags=[str(t.get("name")) for t in ((row.get("_embedded") or {}).get("tags") or []) if t.get("name")],
        created_at=_stamp(row, "created_at", "contact", problems),
        updated_at=_stamp(row, "updated_at", "contact", problems),
    )
    if row.get("responsible_user_id"):
        record.attributes["responsible_user_id"] = row["responsible_user_id"]
    used: set[int] = set()  # fields that went into a record field rather than attributes
    birthday_field = (_find_field(row, field_id=fields["birthday"]) if fields.get("birthday")
                      else _find_field(row, field_type="birthday", field_code="BIRTHDAY"))
    raw_birthday = _first_value(birthday_field)
    if raw_birthday is not None:
        try:
            record.birthday = birthday(raw_birthday)
            used.add(id(birthday_field))
        except (ValueError, OverflowError, OSError) as exc:  # kept as an attribute, as amoCRM has it
            _note(problems, "contact", external_id, str(exc))
    city_field = (_find_field(row, field_id=fields["city"]) if fields.get("city")
                  else _find_field(row, field_code="CITY", names=CITY_NAMES))
    city = _first_value(city_field)
    if city is not None and str(city).strip():
        record.city = str(city).strip()
        used.add(id(city_field))
    for field in row.get("custom_fields_values") or []:
        if (not isinstance(field, Mapping) or id(field) in used
                or (field.get("field_code") or "").upper() in OWN_CODES):
            continue
        value = _attribute(field)
        if value is None:
            continue
        key = str(field.get("field_code") or field.get("field_name") or field.get("field_id"))
        if key in record.attributes:
            key = f"{key} ({field.get('field_id')})"
        record.attributes[key] = value
    companies = [c for c in (row.get("_embedded") or {}).get("companies") or [] if isinstance(c, Mapping)]
    record.company = next((str(c["name"]).strip() for c in companies if str(c.get("name") or "").strip()), None)
    return record


def _stamp(row: Mapping[str, Any], key: str, entity: str, problems: list[Problem] | None) -> dt.datetime | None:
    try:
        return timestamp(row.get(key))
    except (TypeError, ValueError, OverflowError, OSError):
        _note(problems, entity, str(row.get("id")), f"{key} {row.get(key)!r} is not a unix timestamp")
        return None


def _note(problems: list[Problem] | None, entity: str, external_id: str, error: str) -> None:
    if problems is not None:
        problems.append(Problem(entity, external_id, error))


def _amount(value: Any) -> Decimal:
    if value in (None, ""):
        return Decimal(0)
    amount = Decimal(str(value))
    if not amount.is_finite():
        raise InvalidOperation
    return amount


def main_contact(row: Mapping[str, Any]) -> str | None:
    """The lead's main contact (is_main), else its first contact, else None."""
    linked = (row.get("_embedded") or {}).get("contacts") or []
    for c in linked:
        if c.get("is_main"):
            return str(c["id"])
    return str(linked[0]["id"]) if linked else None


def status(status_id: Any) -> OrderStatus:
    try:
        code = int(status_id)
    except (TypeError, ValueError):
        return "open"
    return "won" if code == WON else "lost" if code == LOST else "open"


def lead(row: Mapping[str, Any], currency: str = "RUB", problems: list[Problem] | None = None) -> OrderRecord | None:
    """A lead as an order; None (with a Problem) when its price is not a number."""
    external_id = str(row["id"])
    try:
        amount = _amount(row.get("price"))
    except (InvalidOperation, TypeError, ValueError):
        _note(problems, "order", external_id, f"price {row.get('price')!r} is not a number")
        return None
    state = status(row.get("status_id"))
    closed = _stamp(row, "closed_at", "order", problems)
    if closed is None and state != "open":
        closed = _stamp(row, "updated_at", "order", problems)
    return OrderRecord(source=SOURCE, external_id=external_id, contact_external_id=main_contact(row),
                       amount=amount, currency=currency, status=state, closed_at=closed,
                       created_at=_stamp(row, "created_at", "order", problems),
                       title=(row.get("name") or None))


def transaction(row: Mapping[str, Any], customer_contacts: Mapping[str, str | None], currency: str = "RUB",
                problems: list[Problem] | None = None) -> OrderRecord | Deletion | None:
    """A Customers purchase as a won order, linked to the customer's main contact."""
    external_id = TRANSACTION_PREFIX + str(row["id"])
    if row.get("is_deleted"):
        return Deletion(SOURCE, "order", external_id)
    try:
        amount = _amount(row.get("price"))
    except (InvalidOperation, TypeError, ValueError):
        _note(problems, "order", external_id, f"price {row.get('price')!r} is not a number")
        return None
    customer = row.get("customer_id") or ((row.get("_embedded") or {}).get("customer") or {}).get("id")
    completed = _stamp(row, "completed_at", "order", problems) or _stamp(row, "created_at", "order", problems)
    return OrderRecord(source=SOURCE, external_id=external_id,
                       contact_external_id=customer_contacts.get(str(customer)) if customer else None,
                       amount=amount, currency=currency, status="won", closed_at=completed,
                       created_at=_stamp(row, "created_at", "order", problems),
                       title=(row.get("comment") or None))


def deletion(event: Mapping[str, Any]) -> Deletion | None:
    """A contact_deleted / lead_deleted event as a Deletion; other events are None."""
    kind = DELETION_EVENTS.get(str(event.get("type")))
    if kind is None or event.get("entity_id") in (None, ""):
        return None
    return Deletion(SOURCE, kind, str(event["entity_id"]))  # type: ignore[arg-type]
