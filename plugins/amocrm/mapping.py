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
import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from collections.abc import Mapping, Sequence
from typing import Any

from hub.api import (
    ActivityRecord, CompanyRecord, ContactRecord, Deletion, FieldDefinition, OrderRecord, OrderStatus, clean_text,
    person_name, split_full_name,
)

SOURCE = "amocrm"
# Two or three words of letters (a hyphen inside one): a person's ФИО, not a company or a note.
_FIO = re.compile(r"^[^\W\d_]+(?:-[^\W\d_]+)?(?: [^\W\d_]+(?:-[^\W\d_]+)?){1,2}$")
WON, LOST = 142, 143
TRANSACTION_PREFIX = "transaction:"
DELETION_EVENTS = {"contact_deleted": "contact", "lead_deleted": "order", "company_deleted": "company"}
UTC = dt.timezone.utc
DATE_TYPES = frozenset({"date", "birthday"})  # unix seconds of midnight in the account's zone
MOMENT_TYPES = frozenset({"date_time"})
NUMBER_TYPES = frozenset({"numeric", "price", "monetary"})
LIST_TYPES = frozenset({"select", "multiselect", "radiobutton", "category"})
MULTIPLE_TYPES = frozenset({"multiselect", "multitext"})
# Values that are links to other things (files, catalog items, other entities), not something a segment reads.
SKIPPED_TYPES = frozenset({"file", "linked_entity", "chained_list", "items", "payer", "supplier"})
# amoCRM's field types -> hub.records.FIELD_TYPES; any other type is read as text.
FIELD_TYPE = {
    **{kind: "number" for kind in NUMBER_TYPES}, **{kind: "list" for kind in LIST_TYPES},
    "checkbox": "boolean", "date": "date", "birthday": "date", "date_time": "datetime",
}
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
    """A field's values for `attributes`, typed as its definition says (see FIELD_TYPE).

    None when empty; a multiple field (multiselect, multitext) always as a
    list, any other one value as itself (several as a list). Text is
    stripped; numbers become int or float; a checkbox a bool; list fields
    their option's text; dates ISO dates and moments ISO date-times (UTC); a
    requisites field (legal_entity) the legal entity's name. A value that does
    not read as its type is kept as amoCRM sent it.
    """
    kind = str(field.get("field_type") or "")
    if kind in SKIPPED_TYPES:
        return None
    out: list[Any] = []
    for item in field.get("values") or []:
        value = item.get("value") if isinstance(item, Mapping) else item
        if isinstance(value, str):
            value = value.strip()
        if value in (None, ""):
            continue
        try:
            value = _typed(kind, value)
        except (ValueError, OverflowError, OSError, InvalidOperation, TypeError):
            pass
        if value in (None, ""):
            continue
        out.append(value)
    if not out:
        return None
    if kind in MULTIPLE_TYPES:
        return out
    return out[0] if len(out) == 1 else out


def _typed(kind: str, value: Any) -> Any:
    if kind in DATE_TYPES:
        return birthday(value).isoformat()
    if kind in MOMENT_TYPES:
        if isinstance(value, int) or str(value).strip().lstrip("-").isdigit():
            return dt.datetime.fromtimestamp(int(value), UTC).isoformat()
        return value
    if kind in NUMBER_TYPES:
        return number(value)
    if kind == "checkbox":
        return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "y", "yes")
    if kind == "legal_entity" and isinstance(value, Mapping):
        return str(value.get("name") or "").strip() or None
    if isinstance(value, Mapping):  # smart_address and the like: the parts people read, in order
        return ", ".join(str(v).strip() for v in value.values() if isinstance(v, (str, int)) and str(v).strip())
    return value


# Beyond this a "number" is no amount or count anyone typed (and 1e100000 would be a 100,001-digit int):
# such a value stays the text amoCRM sent.
MAX_NUMBER = Decimal("1e15")


def number(value: Any) -> int | float:
    """A numeric field's value (amoCRM sends numbers as text, "1500" or "1500.50"): int when whole."""
    if isinstance(value, bool):
        raise TypeError("a checkbox is not a number")
    amount = Decimal(str(value).strip().replace(" ", "").replace(",", "."))
    if not amount.is_finite() or abs(amount) > MAX_NUMBER:
        raise ValueError(f"{str(value)[:40]!r} is not a number Hub keeps")
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def attribute_key(field: Mapping[str, Any]) -> str:
    """Where a field's values go in `attributes`: its code, else its name (the definition's `code` too)."""
    return str(field.get("field_code") or field.get("code") or field.get("field_name") or field.get("name")
               or field.get("field_id") or field.get("id"))


def _attributes(row: Mapping[str, Any], into: dict[str, object], used: set[int] | None = None,
                keys: Mapping[str, str] | None = None) -> None:
    """Every custom field of `row` that is not a phone, an email or `used`, into `into` (see _attribute).

    `keys` (field id -> key, from the definitions) settles two fields sharing a name as the
    definitions did; without it the second of them gets its id appended.
    """
    for field in row.get("custom_fields_values") or []:
        if (not isinstance(field, Mapping) or (used and id(field) in used)
                or (field.get("field_code") or "").upper() in OWN_CODES):
            continue
        value = _attribute(field)
        if value is None:
            continue
        known = (keys or {}).get(str(field.get("field_id")))
        key = known or attribute_key(field)
        if key in into and not known:
            key = f"{key} ({field.get('field_id')})"
        into[key] = value


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
            problems: list[Problem] | None = None, *, keys: Mapping[str, str] | None = None,
            company_names: Mapping[str, str] | None = None) -> ContactRecord:
    """A contact; `fields` maps logical names (birthday, city, ...) to custom field ids.

    Its companies (`_embedded.companies`, many in amoCRM) become
    `company_external_ids`; their names come with the answer only where it
    embeds whole companies, else from `company_names` (id -> name, from the
    companies read before the contacts).

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
        record.responsible_id = str(row["responsible_user_id"])
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
    _attributes(row, record.attributes, used, keys)
    companies = [c for c in (row.get("_embedded") or {}).get("companies") or [] if isinstance(c, Mapping)]
    record.company_external_ids = [str(c["id"]) for c in companies if c.get("id") not in (None, "")]
    record.company = next((str(c["name"]).strip() for c in companies if str(c.get("name") or "").strip()), None)
    if record.company is None and company_names:
        record.company = next((company_names[i] for i in record.company_external_ids if company_names.get(i)), None)
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
    if not amount.is_finite() or abs(amount) > MAX_NUMBER:
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


def lead(row: Mapping[str, Any], currency: str = "RUB", problems: list[Problem] | None = None, *,
         pipelines: Pipelines | None = None, entered: dt.datetime | None = None,
         keys: Mapping[str, str] | None = None) -> OrderRecord | None:
    """A lead as an order; None (with a Problem) when its price is not a number.

    Its stage: the pipeline's and status's names from `pipelines` (ids when the
    account no longer lists them). `entered` is when the lead moved into its
    current status (the latest lead_status_changed event into it); without
    one, an open lead counts from its `updated_at`, which never makes a lead
    look stuck longer than it is, and a closed one from its close.
    """
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
    embedded = row.get("_embedded") or {}
    companies = [c for c in embedded.get("companies") or [] if isinstance(c, Mapping) and c.get("id")]
    pipeline, stage = (pipelines or Pipelines()).names(row.get("pipeline_id"), row.get("status_id"))
    if entered is None:
        entered = closed if state != "open" else _stamp(row, "updated_at", "order", problems)
    record = OrderRecord(source=SOURCE, external_id=external_id, contact_external_id=main_contact(row),
                         amount=amount, currency=currency, status=state, closed_at=closed,
                         created_at=_stamp(row, "created_at", "order", problems),
                         title=(row.get("name") or None),
                         company_external_id=str(companies[0]["id"]) if companies else None,
                         pipeline=pipeline, stage=stage, stage_entered_at=entered,
                         responsible_id=str(row["responsible_user_id"]) if row.get("responsible_user_id") else None,
                         tags=[str(t.get("name")) for t in embedded.get("tags") or []
                               if isinstance(t, Mapping) and t.get("name")])
    _attributes(row, record.attributes, keys=keys)
    return record


class Pipelines:
    """The account's pipelines and statuses by id (GET /api/v4/leads/pipelines), for their names.

    Status ids are unique in an account except won (142) and lost (143),
    which every pipeline shares; so a status is looked up in its pipeline.
    """

    def __init__(self, body: Mapping[str, Any] | None = None) -> None:
        self.pipelines: dict[str, str] = {}
        self.statuses: dict[tuple[str, str], str] = {}
        for pipeline in ((body or {}).get("_embedded") or {}).get("pipelines") or []:
            if not isinstance(pipeline, Mapping) or pipeline.get("id") is None:
                continue
            pid = str(pipeline["id"])
            self.pipelines[pid] = str(pipeline.get("name") or pid)
            for found in (pipeline.get("_embedded") or {}).get("statuses") or []:
                if isinstance(found, Mapping) and found.get("id") is not None:
                    self.statuses[(pid, str(found["id"]))] = str(found.get("name") or found["id"])

    def names(self, pipeline_id: Any, status_id: Any) -> tuple[str | None, str | None]:
        if pipeline_id in (None, "") and status_id in (None, ""):
            return None, None
        pid, sid = str(pipeline_id), str(status_id)
        return (self.pipelines.get(pid, pid if pipeline_id not in (None, "") else None),
                self.statuses.get((pid, sid), sid if status_id not in (None, "") else None))

    def open_statuses(self) -> list[tuple[str, str]]:
        """(pipeline id, status id) of every stage a lead is still open in."""
        return [key for key in self.statuses if key[1] not in (str(WON), str(LOST))]


def status_change(event: Mapping[str, Any]) -> tuple[str, str, str, dt.datetime] | None:
    """A lead_status_changed event as (lead id, pipeline id, status id it moved into, when); else None.

    `value_after` is `[{"lead_status": {"id": status, "pipeline_id": pipeline}}]`.
    """
    if event.get("type") != "lead_status_changed" or event.get("entity_id") in (None, ""):
        return None
    after = event.get("value_after")
    for item in after if isinstance(after, list) else ():
        moved = item.get("lead_status") if isinstance(item, Mapping) else None
        if isinstance(moved, Mapping) and moved.get("id") is not None:
            try:
                when = timestamp(event.get("created_at"))
            except (TypeError, ValueError, OverflowError, OSError):
                return None  # a moment no calendar holds: the lead counts from its updated_at instead
            if when is None:
                return None
            return str(event["entity_id"]), str(moved.get("pipeline_id")), str(moved["id"]), when
    return None


# --- custom field definitions ------------------------------------------------------------

ENTITY = {"contacts": "contact", "companies": "company", "leads": "order"}


def field_definitions(rows: Sequence[Mapping[str, Any]], entity: str, problems: list[Problem] | None = None,
                      fields: Mapping[str, Any] | None = None) -> tuple[list[FieldDefinition], dict[str, str]]:
    """GET /api/v4/{contacts,companies,leads}/custom_fields as definitions, and field id -> attribute key.

    A definition `{id, name, code, type, enums: [{id, value}]}` keeps its
    code where it has one (predefined fields: PHONE, EMAIL, POSITION...),
    else its name: the key its values have in the records' `attributes`. Two
    fields of one entity with one name are told apart by the id. Phones and
    emails (the record's own), and fields holding links (files, catalog
    items) are not offered, nor a contact's birthday and city fields (`fields`
    is `[amocrm] fields`, which may name them): their values become the
    contact's own birthday and city (`contact`), which segments read as
    contact.birthday and contact.city, so the custom field would match nobody.
    A definition that cannot be read is left out and reported in `problems`;
    the others still come in.
    """
    definitions: list[FieldDefinition] = []
    keys: dict[str, str] = {}
    seen: set[str] = set()
    for row in rows:
        if not isinstance(row, Mapping) or row.get("id") is None:
            continue
        if entity == "contacts" and _contacts_own(row, fields or {}):
            continue
        try:
            found = _definition(row, entity, seen, keys)
        except Exception as exc:  # noqa: BLE001 - one odd definition must not stop the others
            _note(problems, "field", str(row.get("id")), f"{type(exc).__name__}: {str(exc)[:300]}")
            continue
        if found is not None:
            definitions.append(found)
    return definitions, keys


def _contacts_own(row: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    """Whether a contact field is the one `contact` reads into the contact's birthday or city."""
    configured = {str(fields[name]) for name in ("birthday", "city") if fields.get(name) not in (None, "")}
    if str(row.get("id")) in configured:
        return True
    code, kind = str(row.get("code") or "").upper(), str(row.get("type") or "")
    if not fields.get("birthday") and (kind == "birthday" or code == "BIRTHDAY"):
        return True
    return not fields.get("city") and (code == "CITY" or str(row.get("name") or "").strip().casefold() in CITY_NAMES)


def _definition(row: Mapping[str, Any], entity: str, seen: set[str], keys: dict[str, str]) -> FieldDefinition | None:
    """One definition (see field_definitions); None for fields not offered."""
    kind = str(row.get("type") or "")
    if str(row.get("code") or "").upper() in OWN_CODES or kind in SKIPPED_TYPES:
        return None
    key = clean_text(attribute_key(row))
    if key in seen:
        key = f"{key} ({row['id']})"
    seen.add(key)
    keys[str(row["id"])] = key
    enums = row.get("enums")
    enums = enums if isinstance(enums, list) else []
    options = [{"id": str(e["id"]), "value": clean_text(str(e.get("value") or ""))}
               for e in enums if isinstance(e, Mapping) and e.get("id") is not None]
    return FieldDefinition(
        source=SOURCE, entity=ENTITY[entity], code=key,  # type: ignore[arg-type]
        name=clean_text(str(row.get("name") or key)), type=FIELD_TYPE.get(kind, "string"),  # type: ignore[arg-type]
        multiple=kind in MULTIPLE_TYPES, options=options if kind in LIST_TYPES else [])


# --- companies ----------------------------------------------------------------------------

INN_CODES = frozenset({"INN", "VAT_ID"})
_INN = re.compile(r"^\d{10}(?:\d{2})?$")  # an organisation's ИНН has 10 digits, a sole trader's 12


def inn(row: Mapping[str, Any]) -> str | None:
    """The company's ИНН, where amoCRM holds one.

    amoCRM has no ИНН of its own on a company. Accounts keep it either in the
    requisites field (type legal_entity, whose value carries `vat_id`, the
    tax number, with the legal entity's name) or in a field of their own
    coded INN or named with «ИНН» / INN. The first of those, in that order,
    holding 10 or 12 digits wins; anything else is no ИНН.
    """
    fields = [f for f in row.get("custom_fields_values") or [] if isinstance(f, Mapping)]
    candidates: list[Any] = []
    for field in fields:
        if field.get("field_type") == "legal_entity":
            candidates += [(v.get("value") or {}).get("vat_id") for v in field.get("values") or []
                           if isinstance(v, Mapping) and isinstance(v.get("value"), Mapping)]
    for field in fields:
        name = str(field.get("field_name") or "").upper()
        if (field.get("field_code") or "").upper() in INN_CODES or "ИНН" in name or re.search(r"\bINN\b", name):
            candidates += [v.get("value") if isinstance(v, Mapping) else v for v in field.get("values") or []]
    for value in candidates:
        digits = re.sub(r"[\s-]", "", str(value or ""))
        if _INN.match(digits):
            return digits
    return None


def company(row: Mapping[str, Any], problems: list[Problem] | None = None,
            keys: Mapping[str, str] | None = None) -> CompanyRecord:
    """A company (GET /api/v4/companies): its name, ИНН, city, main lines and mailboxes, manager and fields."""
    external_id = str(row["id"])
    labels: dict[str, str] = {}  # a company's lines identify the company whatever their type
    record = CompanyRecord(
        source=SOURCE, external_id=external_id, name=(str(row.get("name") or "").strip() or None), inn=inn(row),
        phones=_field_values(row, "PHONE", labels), emails=_field_values(row, "EMAIL", labels),
        responsible_id=str(row["responsible_user_id"]) if row.get("responsible_user_id") else None,
        created_at=_stamp(row, "created_at", "company", problems),
        updated_at=_stamp(row, "updated_at", "company", problems),
    )
    city_field = _find_field(row, field_code="CITY", names=CITY_NAMES)
    city = _first_value(city_field)
    used: set[int] = set()
    if city is not None and str(city).strip():
        record.city = str(city).strip()
        used.add(id(city_field))
    _attributes(row, record.attributes, used, keys)
    return record


# --- activities ---------------------------------------------------------------------------

CALL_NOTES = {"call_in": "in", "call_out": "out"}
# A call note's call_status: 1 left a message, 2 call back later, 3 not there, 4 talked, 5 wrong number,
# 6 did not get through, 7 busy. An incoming call nobody talked on is a missed one.
UNANSWERED = frozenset({1, 2, 3, 6, 7})
NOTE_PREFIX, TASK_PREFIX = "note:", "task:"
CALL_ID_LENGTH = 200  # activities.call_id
TASK_KINDS = {1: "call", 2: "meeting"}  # amoCRM's predefined task types; an account's own are tasks
# Whose a note or task is, by its entity type; one on a lead reaches the lead's contact (hub.activities).
_NOTE_OWNERS = {"contacts": "contact", "companies": "company", "leads": "order"}


def call_note(row: Mapping[str, Any], entity: str) -> ActivityRecord | None:
    """A call_in / call_out note on a contact, company or lead as a call; other notes are None.

    `params`: `duration` (seconds), `call_status` (see UNANSWERED), `call_result`
    (what the manager wrote), `phone`, `source`, `uniq`. Telephony that
    reports calls as incoming_call / outgoing_call events writes these same
    notes, so reading the notes reads those calls too.
    """
    direction = CALL_NOTES.get(str(row.get("note_type")))
    owner = _NOTE_OWNERS.get(entity)
    at = timestamp(row.get("created_at"))
    if direction is None or owner is None or at is None or row.get("entity_id") in (None, ""):
        return None
    raw = row.get("params")
    params: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    duration = whole(params.get("duration"))
    call_status = whole(params.get("call_status"))
    missed = direction == "in" and (call_status in UNANSWERED if call_status is not None else duration == 0)
    result = str(params.get("call_result") or "").strip()
    target = str(row["entity_id"])
    # The telephony's id of the call: one call noted on the contact and on its lead is counted once.
    uniq = str(params.get("uniq") or "").strip()
    call_id = f"{str(params.get('source') or '').strip()}:{uniq}" if uniq else None
    if call_id is not None and len(call_id) > CALL_ID_LENGTH:  # cut, two calls could end alike
        call_id = "sha256:" + hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()
    return ActivityRecord(
        source=SOURCE, external_id=NOTE_PREFIX + str(row["id"]), kind="call", at=at,
        contact_external_id=target if owner == "contact" else None,
        company_external_id=target if owner == "company" else None,
        direction=direction, missed=missed, done=True,  # type: ignore[arg-type]
        duration_s=duration, subject=result[:500] or None,
        responsible_id=str(row["responsible_user_id"]) if row.get("responsible_user_id") else None,
        order_external_id=target if owner == "order" else None, call_id=call_id)


def task(row: Mapping[str, Any]) -> ActivityRecord | None:
    """A task on a contact, company or lead (GET /api/v4/tasks) as a planned or done call, meeting or task.

    `task_type_id` 1 is a call, 2 a meeting, any other an account's own task
    type; `is_completed` says whether it is done; `complete_till` is when it
    is due, the moment it stands at. A task on a lead names the lead and
    reaches the lead's main contact; a customer's task (entity_type customers) is None.
    """
    owner = _NOTE_OWNERS.get(str(row.get("entity_type")))
    at = timestamp(row.get("complete_till")) or timestamp(row.get("created_at"))
    if owner is None or at is None or row.get("entity_id") in (None, ""):
        return None
    target = str(row["entity_id"])
    text = str(row.get("text") or "").strip()
    return ActivityRecord(
        source=SOURCE, external_id=TASK_PREFIX + str(row["id"]),
        kind=TASK_KINDS.get(whole(row.get("task_type_id")) or 0, "task"), at=at,  # type: ignore[arg-type]
        contact_external_id=target if owner == "contact" else None,
        company_external_id=target if owner == "company" else None,
        done=bool(row.get("is_completed")), duration_s=whole(row.get("duration")) or None,
        subject=text[:500] or None,
        responsible_id=str(row["responsible_user_id"]) if row.get("responsible_user_id") else None,
        order_external_id=target if owner == "order" else None)


def whole(value: Any) -> int | None:
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        return int(float(str(value).strip()))
    except (TypeError, ValueError, OverflowError):
        return None


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
