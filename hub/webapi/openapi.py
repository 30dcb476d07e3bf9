"""The OpenAPI 3.1 document, built from the registered endpoints (so it cannot drift from them).

Every operation lists every status it may answer, each error as
application/problem+json, so a client generated from the document (or a
tool such as schemathesis) knows every answer it can get.
"""

from __future__ import annotations

from typing import Any, Sequence

from hub.webapi import idempotency
from hub.webapi.endpoints import JSON, MAX_ID, Endpoint
from hub.webapi.problems import MEDIA_TYPE, TITLES

VERSION = "1.0.0"
BASE = "/api/v1"
COMMON_ERRORS = (400, 401, 403, 413, 415, 422, 429, 500)

PROBLEM: JSON = {
    "type": "object",
    "description": "An error (RFC 9457). `detail` names the field; `errors` lists each problem.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "detail"],
            "properties": {"field": {"type": "string", "description": "A JSON pointer into the body, or a "
                                                                      "parameter's or header's name"},
                           "detail": {"type": "string"},
                           "index": {"type": "integer", "description": "The item's index in a batch"}}}},
    },
}

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again",
                               "schema": {"type": "string"}}}


def _error_response(status: int) -> JSON:
    out: JSON = {"description": TITLES.get(status, "Error"),
                 "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    if status == 429:
        out["headers"] = RETRY_AFTER
    return out


REPLAYED = {"Idempotent-Replayed": {"description": "true when this is the answer kept for an earlier request with "
                                                  "the same Idempotency-Key", "schema": {"type": "string"}}}


def _is_path_integer(param: JSON) -> bool:
    return param.get("in") == "path" and (param.get("schema") or {}).get("type") == "integer"


def path_integer(schema: JSON) -> JSON:
    """An integer path parameter's schema with the bounds the gate routes by: no id is below 0 or past MAX_ID."""
    low = max(int(schema.get("minimum", 0)), 0)
    high = min(int(schema.get("maximum", MAX_ID)), MAX_ID)
    return {**schema, "minimum": low, "maximum": high}


def published(schema: JSON) -> JSON:
    """The body schema as the document shows it: a one-or-batch `if/then/else` written as its `oneOf`.

    The gate checks the if/then/else form, which names a bad item by its own pointer and index; but
    generators of clients and of test data (schemathesis) read if/then/else poorly, and would take a
    single item's rules for optional. The two forms accept exactly the same bodies.
    """
    cond, then, other = schema.get("if"), schema.get("then"), schema.get("else")
    required = cond.get("required") if isinstance(cond, dict) and set(cond) == {"required"} else None
    props = schema.get("properties") or {}
    if not (isinstance(required, list) and len(required) == 1 and required[0] in props
            and isinstance(then, dict) and isinstance(other, dict)):
        return schema
    key = required[0]
    batch: JSON = {"type": "object", "required": [key], "properties": {key: props[key]},
                   **{k: v for k, v in then.items() if k != "properties"}}
    forbids_key = other.get("additionalProperties") is False and key not in (other.get("properties") or {}) \
        and not other.get("patternProperties")
    single = other if forbids_key else {"allOf": [{"not": {"required": [key]}}, other]}
    out: JSON = {k: v for k, v in schema.items() if k not in ("if", "then", "else", "properties")}
    out["oneOf"] = [single, batch]
    return out


def operation(endpoint: Endpoint) -> JSON:
    """One endpoint as an OpenAPI operation, listing every status it can answer, so that clients expect them."""
    op: JSON = {"operationId": endpoint.operation_id, "summary": endpoint.summary, "tags": [endpoint.tag]}
    if endpoint.description:
        op["description"] = endpoint.description
    params = [dict(p, schema=path_integer(p["schema"])) if _is_path_integer(p) else dict(p) for p in endpoint.params]
    if endpoint.method.upper() == "POST":
        params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                       "description": "The same key and body within 24 hours return the first answer and change "
                                      "nothing. A repeat sent while the first request still runs waits for "
                                      "it, then gets its answer.",
                       "schema": {"type": "string", "minLength": 1, "maxLength": idempotency.MAX_KEY,
                                  "pattern": idempotency.KEY_PATTERN}})
    params.append({"name": "Accept-Language", "in": "header", "required": False,
                   "description": "The language of problem details and titles: ru (the default) or en.",
                   "schema": {"type": "string"}})
    op["parameters"] = params
    if endpoint.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": published(endpoint.body)}}}
    ok: JSON = {"description": "OK"}
    if endpoint.method.upper() == "POST":
        ok["headers"] = REPLAYED
    if endpoint.answer is not None:
        ok["content"] = {"application/json": {"schema": endpoint.answer}}
    responses: JSON = {str(endpoint.status): ok}
    statuses = set(endpoint.errors) | set(COMMON_ERRORS)
    if endpoint.scope is None:
        statuses -= {401, 403}
    if any(p.get("in") == "path" for p in endpoint.params):
        statuses.add(404)  # nothing at that path (an id past what a row can have is answered so before the view)
    if endpoint.body is None and endpoint.method.upper() == "GET":
        statuses -= {413, 415}
    for status in sorted(statuses):
        responses[str(status)] = _error_response(status)
    op["responses"] = responses
    if endpoint.scope is not None:
        op["security"] = [{"bearer": [endpoint.scope]}]
        op["x-scope"] = endpoint.scope
    else:
        op["security"] = []
    return op


def document(endpoints: Sequence[Endpoint], *, server_url: str | None = None) -> JSON:
    """The whole document, built from the endpoints on each request so that it cannot drift from them."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Problem": PROBLEM}
    for endpoint in sorted(endpoints, key=lambda e: (e.path, e.method)):
        paths.setdefault(BASE + endpoint.path, {})[endpoint.method.lower()] = operation(endpoint)
        schemas.update(endpoint.schemas)
    doc: JSON = {
        "openapi": "3.1.0",
        "info": {"title": "Hub API", "version": VERSION,
                 "description": "Contacts, orders and events in; segments out. Authenticate with "
                                "`Authorization: Bearer <key>` (`hub api-keys create`). See docs/api.md."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "A key from `hub api-keys create`"}}},
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
