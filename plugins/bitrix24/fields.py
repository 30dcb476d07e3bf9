"""Bitrix24 custom fields (UF_CRM_*): their definitions and their values typed the Hub way.

crm.contact.fields, crm.company.fields and crm.deal.fields describe every
field; the custom ones have `isDynamic` true, the code as `title` and the name
people see as `formLabel`/`listLabel`/`filterLabel` in the portal's language.
A list (USER_TYPE_ID "enumeration") carries its options as `items`
[{ID, VALUE}], and a record then holds the option's ID ("44"), a list of IDs
when the field is multiple, so the text is looked up here. Booleans arrive as
"1"/"0" (older portals "Y"/"N"), dates as UTC midnight in the portal's zone,
numbers as strings.
"""

from __future__ import annotations

import functools
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Literal, Mapping

from hub.api import FieldDefinition
from plugins.bitrix24.mapping import SOURCE, clean_text, parse_date, parse_time

Entity = Literal["contact", "company", "order"]
# USER_TYPE_ID -> hub FIELD_TYPES; types with no value a segment can use (files, bindings) are left out.
TYPES = {"string": "string", "url": "string", "address": "string", "money": "string", "employee": "string",
         "crm_status": "string", "iblock_element": "string", "iblock_section": "string",
         "integer": "number", "double": "number", "date": "date", "datetime": "datetime",
         "enumeration": "list", "boolean": "boolean"}
TRUE = {"1", "Y", "TRUE", "YES"}
# Beyond this a "number" is no amount or count anyone typed (and 1e100000 would be a 100,001-digit int).
MAX_NUMBER = Decimal("1e15")


def definitions(entity: Entity, described: Mapping[str, Any]) -> list[FieldDefinition]:
    """The custom fields of one crm.*.fields answer, by their code, named as the portal's users see them."""
    found: list[FieldDefinition] = []
    if not isinstance(described, Mapping):  # PHP's [] for "no fields"
        return found
    for code, spec in described.items():
        if not str(code).startswith("UF_CRM_") or not isinstance(spec, Mapping):
            continue
        kind = TYPES.get(str(spec.get("type") or ""))
        if kind is None:
            continue
        name = next((str(spec[k]).strip() for k in ("formLabel", "listLabel", "filterLabel", "title")
                     if isinstance(spec.get(k), str) and str(spec[k]).strip()), str(code))
        items = spec.get("items")
        items = list(items.values()) if isinstance(items, Mapping) else items if isinstance(items, list) else []
        options = [{"id": str(item.get("ID")), "value": clean_text(str(item.get("VALUE") or ""))}
                   for item in items if isinstance(item, Mapping)] if kind == "list" else []
        found.append(FieldDefinition(source=SOURCE, entity=entity, code=clean_text(str(code)), name=clean_text(name),
                                     type=kind,  # type: ignore[arg-type]
                                     multiple=bool(spec.get("isMultiple")), options=options))
    return found


def typed(definition: FieldDefinition, raw: Any) -> Any:
    """A record's value of this field as Hub keeps it; None for empty or unreadable values."""
    if definition.multiple:
        items = raw if isinstance(raw, list) else list(raw.values()) if isinstance(raw, dict) else [raw]
        values = [v for v in (_one(definition, item) for item in items) if v is not None]
        return values or None
    if isinstance(raw, list):
        raw = raw[0] if raw else None
    return _one(definition, raw)


def _one(definition: FieldDefinition, raw: Any) -> Any:
    if raw is None or raw is False and definition.type != "boolean":
        return None
    text = clean_text(str(raw)).strip()
    if definition.type == "boolean":
        return text.upper() in TRUE if text else None
    if not text:
        return None
    if definition.type == "list":
        return next((o["value"] for o in definition.options if o["id"] == text), None)
    if definition.type == "number":
        try:
            number = Decimal(text)
        except (InvalidOperation, ValueError):
            return None
        if not number.is_finite() or abs(number) > MAX_NUMBER:  # NaN, Infinity, 1e100000: nothing a segment can use
            return None
        return int(number) if number == number.to_integral_value() and "." not in text else float(number)
    if definition.type == "date":
        day = parse_date(text)
        return day.isoformat() if day else None
    if definition.type == "datetime":
        moment = parse_time(text)
        return moment.isoformat() if moment else None
    return text


def attributes(raw: Mapping[str, Any], known: Mapping[str, FieldDefinition]) -> dict[str, object]:
    """Every custom field of a record the definitions know, typed, by code; empty ones left out."""
    out: dict[str, object] = {}
    for code, definition in known.items():
        if code in raw:
            value = typed(definition, raw[code])
            if value is not None:
                out[code] = value
    return out


def reader(known: Mapping[str, FieldDefinition]) -> Callable[[Mapping[str, Any]], dict[str, object]]:
    """`attributes` with these definitions, for reading many records: made once per sync.

    The portal's texts repeat from record to record (a list's option ids,
    flags, dates), so each field reads a distinct text once and remembers the
    typed value (always a str, number, bool or None: nothing a record could
    change). Values that are not text (a multiple field's list, a number) are
    typed as `typed` does.
    """
    steps = [(code, _converter(definition)) for code, definition in known.items()]

    def read(raw: Mapping[str, Any]) -> dict[str, object]:
        out: dict[str, object] = {}
        for code, convert in steps:
            if code in raw:
                value = convert(raw[code])
                if value is not None:
                    out[code] = value
        return out

    return read


READ_CACHE = 1 << 12  # distinct texts remembered per field


def _converter(definition: FieldDefinition) -> Callable[[Any], Any]:
    one = functools.lru_cache(maxsize=READ_CACHE)(functools.partial(_one, definition))

    def convert(raw: Any) -> Any:
        if raw is None:  # what `typed` makes of it, single or multiple
            return None
        if type(raw) is str:
            value = one(raw)
            if definition.multiple:
                return [value] if value is not None else None
            return value
        if definition.multiple and type(raw) is list and all(type(item) is str for item in raw):
            return [v for v in map(one, raw) if v is not None] or None
        return typed(definition, raw)

    return convert
