"""JSON Schemas several endpoints share (components/schemas in the OpenAPI document)."""

from __future__ import annotations

from hub.webapi.endpoints import JSON

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


def page_of(items: JSON) -> JSON:
    """A page of a list: the items, and the cursor of the next page (null on the last)."""
    return {"type": "object", "required": ["items", "next_cursor"],
            "properties": {"items": {"type": "array", "items": items}, "next_cursor": NULLABLE_STRING}}


CURSOR_PARAMS: tuple[JSON, ...] = (
    {"name": "cursor", "in": "query", "required": False, "description": "next_cursor of the previous page",
     "schema": {"type": "string", "maxLength": 200}},
    {"name": "limit", "in": "query", "required": False, "description": "Items per page (default 100)",
     "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
)
