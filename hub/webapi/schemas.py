"""JSON Schemas several endpoints share (components/schemas in the OpenAPI document)."""

from __future__ import annotations

from hub.webapi.endpoints import CURSOR_PATTERN, JSON

NULLABLE_STRING: JSON = {"type": ["string", "null"]}

# The shape of `hub contacts list --json` (hub.contacts), which the API answers contacts in.
CONTACT: JSON = {
    "type": "object",
    "required": ["id", "first_name", "last_name", "phones", "emails", "external_refs", "orders_count", "revenue",
                 "last_order_at", "lifecycle"],
    "properties": {
        "id": {"type": "integer"},
        "first_name": NULLABLE_STRING,
        "last_name": NULLABLE_STRING,
        "middle_name": NULLABLE_STRING,
        "phones": {"type": "array", "items": {"type": "string"}, "description": "E.164, the person's own first"},
        "emails": {"type": "array", "items": {"type": "string"}},
        "invalid_phones": {"type": "array", "items": {"type": "string"}, "description": "Kept as written"},
        "invalid_emails": {"type": "array", "items": {"type": "string"}},
        "identities": {"type": "array", "items": {
            "type": "object",
            "properties": {"kind": {"enum": ["phone", "email"]}, "value": {"type": "string"},
                           "valid": {"type": "boolean"}, "label": NULLABLE_STRING,
                           "shared": {**NULLABLE_STRING, "description": "Why several people use it; null if the "
                                                                        "person's own"}}}},
        "external_refs": {"type": "array", "items": {
            "type": "object", "properties": {"source": {"type": "string"}, "id": {"type": "string"}}}},
        "orders_count": {"type": "integer", "description": "Won orders"},
        "revenue": {"type": "number"},
        "first_order_at": NULLABLE_STRING,
        "last_order_at": NULLABLE_STRING,
        "lifecycle": {"type": "string"},
        "lead_score": {"type": "integer"},
        "birthday": NULLABLE_STRING,
        "city": NULLABLE_STRING,
        "gender": NULLABLE_STRING,
        "company": NULLABLE_STRING,
        "tags": {"type": "array", "items": {"type": "string"}},
        "created_at": NULLABLE_STRING,
        "deleted_at": NULLABLE_STRING,
    },
}

COMPONENTS: dict[str, JSON] = {"Contact": CONTACT}
CONTACT_REF: JSON = {"$ref": "#/components/schemas/Contact"}


def items_of(item: JSON) -> JSON:
    """A batch's answer: one item per item sent, in order."""
    return {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": item}}}


def page_of(items: JSON) -> JSON:
    """A page of a list: the items, and the cursor of the next page (null on the last)."""
    return {"type": "object", "required": ["items", "next_cursor"],
            "properties": {"items": {"type": "array", "items": items}, "next_cursor": NULLABLE_STRING}}


CURSOR_PARAMS: tuple[JSON, ...] = (
    {"name": "cursor", "in": "query", "required": False, "description": "next_cursor of the previous page",
     "schema": {"type": "string", "maxLength": 11, "pattern": CURSOR_PATTERN}},
    {"name": "limit", "in": "query", "required": False, "description": "Items per page (default 100)",
     "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
)


# --- input text: what a string field takes ------------------------------------------------------
#
# No control characters (a NUL is refused by PostgreSQL, a stray \x1f would split a reference): refused
# with the field named, never stored half-way or answered with a 500. Lone UTF-16 surrogates (JSON may
# escape one; no database can store it) are refused by the gate in every string of every body
# (hub.webapi.routes), not here: test-data generators cannot read surrogates in a pattern.
#
# One rule for which is which: whatever names or identifies something (names, phones, emails, ids,
# references, tags, the keys of custom fields and event properties) is one line, no control character
# at all; only free text a person may write over several lines (a custom field's value, an event's text
# property) takes tabs and line breaks, and no other control character.
LINE_PATTERN = "^[^\\x00-\\x1f\\x7f]*$"
TEXT_PATTERN = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]*$"  # tabs and line breaks allowed
SOURCE_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


def line(max_length: int, description: str = "", *, min_length: int = 0) -> JSON:
    """A one-line string: at most `max_length` characters, no control characters."""
    out: JSON = {"type": "string", "maxLength": max_length, "pattern": LINE_PATTERN}
    if min_length:
        out["minLength"] = min_length
    if description:
        out["description"] = description
    return out


SOURCE: JSON = {"type": "string", "pattern": SOURCE_PATTERN, "examples": ["shop"],
                "description": "The system a record comes from (letters, digits, _ . : -; at most 64)"}
DATE_TIME: JSON = {"type": "string", "format": "date-time", "maxLength": 40,
                   "pattern": "^\\d{4}-\\d{2}-\\d{2}[T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,6})?)?(Z|[+-]\\d{2}:\\d{2})$",
                   "examples": ["2026-12-06T10:00:00+03:00"],
                   "description": "ISO 8601 with a time zone, e.g. 2026-12-06T10:00:00+03:00"}
ITEM_PROBLEMS: JSON = {"type": "array", "items": {
    "type": "object", "required": ["field", "detail"],
    "properties": {"field": {"type": "string", "description": "JSON pointer into the request body"},
                   "detail": {"type": "string"}}}}


def keyed(name_pattern: str, value: JSON, *, max_properties: int, description: str = "") -> JSON:
    """An object of free keys (custom fields, event properties): each key fits `name_pattern`.

    Written with patternProperties and a never-valid additionalProperties rather than propertyNames so
    that a bad key is reported at its own pointer (/contacts/0/fields/<key>), not at the object's.
    """
    out: JSON = {"type": "object", "maxProperties": max_properties, "patternProperties": {name_pattern: value},
                 "additionalProperties": {"not": {}, "description": "A key that is not a valid name"}}
    if description:
        out["description"] = description
    return out


def one_or_batch(key: str, item: JSON, *, limit: int = 1000) -> JSON:
    """A body that is one item, or `{key: [items]}` with at most `limit` of them.

    Written as if/then/else rather than oneOf so that a bad item is reported
    by its own pointer (/contacts/3/phones/0) and batch index, not as "matches
    neither form".
    """
    return {"type": "object",
            "description": f"One item, or a batch: {{\"{key}\": [item, ...]}} with at most {limit} items",
            "properties": {key: {"type": "array", "minItems": 1, "maxItems": limit, "items": item}},
            "if": {"required": [key]},
            "then": {"properties": {key: True}, "additionalProperties": False},
            "else": item}
