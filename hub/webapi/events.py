"""POST /api/v1/events: what people did elsewhere (a cart left, a page viewed), for segments and workflows.

The view only shapes the answer: hub.events stores the batch set-wise in
the request's one transaction, and says per item whether it was stored, a
duplicate of an id sent before, or refused and why.
"""

from __future__ import annotations

from typing import Any

from hub import events
from hub.db import MAX_ROW_ID
from hub.hookspecs import hookimpl
from hub.webapi.endpoints import JSON, Call, Endpoint
from hub.webapi.schemas import DATE_TIME, ITEM_PROBLEMS, SOURCE, TEXT_PATTERN, keyed, line, one_or_batch

MAX_BATCH = 1000

# One schema with per-type keywords (each applies only to a value of its type): much cheaper to check
# for a thousand events than a choice (anyOf) between one schema per type.
_SCALAR_TYPES = ["string", "number", "boolean", "null"]
# Text is free text (tabs and line breaks allowed), never another control character: PostgreSQL's JSONB
# holds no NUL, and a NUL refused by the database would cost the whole batch.
_SCALAR: JSON = {"type": _SCALAR_TYPES, "maxLength": events.MAX_TEXT, "pattern": TEXT_PATTERN,
                 "minimum": -events.MAX_NUMBER, "maximum": events.MAX_NUMBER}
# A list holds values, or small records of values: a cart's items, each {name, qty, price}.
_ITEM: JSON = {**_SCALAR, "type": [*_SCALAR_TYPES, "object"], "maxProperties": events.MAX_ITEM_KEYS,
               "patternProperties": {events.PROPERTY_PATTERN: _SCALAR}, "additionalProperties": False}
PROPERTY: JSON = {**_SCALAR, "type": [*_SCALAR_TYPES, "array"], "maxItems": events.MAX_LIST, "items": _ITEM}

EVENT: JSON = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "description": "One event. Name its contact by contact_id, or by reference, email or phone (the first that "
                   "finds someone is used). Only a phone or email Hub has never seen makes a new contact: an "
                   "unknown reference alone, or a phone or email several people share, is refused.",
    "properties": {
        "id": {**line(200, "Your id for the event: sending it again stores nothing (answered as duplicate). "
                           "Unique across every system that sends events: prefix it with your system's name",
                      min_length=1)},
        "name": {"type": "string", "pattern": events.NAME_PATTERN, "maxLength": 64, "examples": ["cart_abandoned"],
                 "description": "What happened: lowercase letters, digits, _ and -, starting with a letter "
                                "(cart_abandoned, page_viewed)"},
        "contact_id": {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID},
        "phone": line(64, "A phone as written; it is normalized like everywhere in Hub"),
        "email": line(320),
        "reference": {"type": "object", "required": ["source", "external_id"], "additionalProperties": False,
                      "description": "The contact's id in your system",
                      "properties": {"source": SOURCE, "external_id": line(200, min_length=1)}},
        "properties": keyed(events.PROPERTY_PATTERN, PROPERTY, max_properties=events.MAX_PROPERTIES,
                            description=f"At most {events.MAX_PROPERTIES} properties named by 1 to 64 letters, "
                                        f"digits, _ and -: text (at most {events.MAX_TEXT} characters; tabs and line "
                                        f"breaks allowed, no other control character), numbers, true/false, null, "
                                        f"or lists of at most {events.MAX_LIST} of these or of records of at most "
                                        f"{events.MAX_ITEM_KEYS} of these (a cart's items: name, qty, price)"),
        "occurred_at": {**DATE_TIME, "description": "When it happened, with its offset from UTC (default: now); "
                                                    "not more than an hour ahead of Hub's clock"},
    },
}

OUTCOME: JSON = {
    "type": "object",
    "required": ["index", "event_id", "contact_id", "status", "problems"],
    "properties": {"index": {"type": "integer"}, "event_id": {"type": ["integer", "null"]},
                   "contact_id": {"type": ["integer", "null"],
                                  "description": "The contact the event is on (a duplicate: the contact the event "
                                                 "sent first is on now); null when refused"},
                   "status": {"enum": ["stored", "duplicate", "refused"]}, "problems": ITEM_PROBLEMS},
}
ANSWER: JSON = {
    "type": "object", "required": ["items", "stored", "duplicates", "refused"],
    "properties": {"items": {"type": "array", "items": OUTCOME}, "stored": {"type": "integer"},
                   "duplicates": {"type": "integer"}, "refused": {"type": "integer"}},
}


def post_events(call: Call) -> JSON:
    """Store one event or a batch; each item's answer says stored, duplicate or refused."""
    body: dict[str, Any] = call.body
    batch = "events" in body
    raw = body["events"] if batch else [body]
    outcomes = events.record(call.conn, call.settings, [events.incoming(r) for r in raw], api_key=call.key.name)
    items = []
    for o in outcomes:
        answer = o.as_dict()
        where = f"/events/{o.index}/" if batch else "/"
        answer["problems"] = [{"field": where + p["field"], "detail": p["detail"]} for p in o.problems]
        items.append(answer)
    tally = {status: sum(1 for o in outcomes if o.status == status) for status in ("stored", "duplicate", "refused")}
    return {"items": items, "stored": tally["stored"], "duplicates": tally["duplicate"], "refused": tally["refused"]}


@hookimpl
def register_api_endpoints(register: Any) -> None:
    register(Endpoint(
        "POST", "/events", post_events, "events:write", "Send events", "events",
        description="One event or {\"events\": [...]} with at most 1000. Each is answered by its index: stored, "
                    "duplicate (its id was sent before; nothing changed) or refused with the problems found, "
                    "and with contact_id, the contact the event is on (keep it: a new person an email or phone "
                    "made is named there). "
                    "Events are usable in segment rules (events.<name>.…) and as workflow triggers "
                    "({event: <name>}).",
        body=one_or_batch("events", EVENT, limit=MAX_BATCH), answer=ANSWER))
