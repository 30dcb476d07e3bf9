"""What an API endpoint is: a method and path, the scope it needs, the JSON it takes and gives.

Each endpoint is declared once, with its JSON Schemas, and that one
declaration serves three purposes: the request is checked against it before
the view runs, the OpenAPI document is built from it, and plugins add theirs
the same way the core does (the ``register_api_endpoints`` hook). A view
never parses or checks its own input and never formats its own errors: it
gets a `Call` and returns JSON, or raises `ApiError`.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from sqlalchemy import Connection

from hub.config import Settings

# Scopes a key may hold; a plugin's endpoint may name one of its own (`register_api_endpoints`).
SCOPES = ("contacts:read", "contacts:write", "orders:write", "events:write", "segments:read", "workflows:write",
          "consent:write")

JSON = dict[str, Any]
MAX_ID = 2**31 - 1  # the largest id a row can have: id columns are INTEGER, 32 bits on PostgreSQL


class ApiError(Exception):
    """A request Hub refuses: answered as application/problem+json (RFC 9457).

    `title` is short and the same for every error of its kind; `detail` says
    what was wrong with this request, naming the field; `errors` lists the
    problems one by one (`{"field": "/contacts/3/phones/0", "detail": ...,
    "index": 3}` for an item of a batch). Both are in the reader's language.
    """

    def __init__(self, status: int, title: str, detail: str, *, errors: list[JSON] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})


@dataclass
class ApiKeyInfo:
    """The key a request came with (never the key itself)."""

    id: int
    name: str
    scopes: tuple[str, ...]


@dataclass
class Call:
    """One request to an endpoint, already authenticated and checked against the endpoint's schemas.

    `conn` is one transaction for the whole request: what the view writes and
    the answer kept for its Idempotency-Key commit together, or not at all.
    A GET's `conn` is for reading only (it takes no write lock, and what is
    written through it is rolled back). Work for after the commit (a job to
    enqueue) goes to `after_commit`; if it fails, the failure is logged and
    the committed answer still goes out, so it must not be needed for the
    answer to be true.
    """

    settings: Settings
    conn: Connection
    key: ApiKeyInfo
    path: dict[str, Any]
    query: dict[str, Any]
    body: Any
    after_commit: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True)
class Endpoint:
    """One route of /api/v1.

    `path` is relative to /api/v1 in OpenAPI form (``/contacts/{id}``);
    `params` are OpenAPI parameter objects for the path and query (their
    ``schema`` is checked); `body` is the request body's JSON Schema; `answer`
    the JSON Schema of the successful answer, sent with `status`. `scope` is
    what the key must hold (None: no key is needed). `errors` lists the error
    statuses the view itself may raise besides those every endpoint may
    answer (400, 401, 403, 413, 415, 422, 429; and 404 for one with a path
    parameter: an integer one is routed only from 0 to 2**31 - 1).
    """

    method: str
    path: str
    view: Callable[[Call], Any]
    scope: str | None
    summary: str
    tag: str
    description: str = ""
    params: tuple[JSON, ...] = ()
    body: JSON | None = None
    answer: JSON | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    schemas: Mapping[str, JSON] = field(default_factory=dict)  # components/schemas this endpoint's schemas $ref

    @property
    def operation_id(self) -> str:
        return getattr(self.view, "__name__", "view")


def collect(pm: Any) -> list[Endpoint]:
    """Every registered endpoint; two at one method and path are a mistake said at start-up."""
    found: list[Endpoint] = []
    seen: dict[tuple[str, str], Endpoint] = {}

    def register(endpoint: Endpoint) -> None:
        if not isinstance(endpoint, Endpoint):
            raise TypeError(f"register_api_endpoints: expected hub.api.ApiEndpoint, got {type(endpoint).__name__}")
        where = (endpoint.method.upper(), endpoint.path)
        if where in seen:
            raise ValueError(f"API endpoint {where[0]} {where[1]} is registered twice")
        seen[where] = endpoint
        found.append(endpoint)

    pm.hook.register_api_endpoints(register=register)
    return found


# --- cursors: where the next page starts, opaque to the client ----------------------------
#
# A cursor is the last row's id as 8 bytes, base64url: 11 characters. The id is below 2**63, so the
# first character is one of A-Z a-f, and the last carries 2 spare zero bits. CURSOR_PATTERN describes
# exactly the cursors that read, so the document (and a client generated from it) can tell one Hub
# gave from one it did not; empty is the first page.
CURSOR_PATTERN = "^([A-Za-f][A-Za-z0-9_-]{9}[AEIMQUYcgkosw048])?$"
_CURSOR = re.compile(CURSOR_PATTERN)


def cursor_after(last_id: int) -> str:
    """A cursor for the page after the row `last_id` (paging by id never skips or repeats a row)."""
    return base64.urlsafe_b64encode(last_id.to_bytes(8, "big")).decode().rstrip("=")


def read_cursor(cursor: str | None) -> int:
    """The id a cursor starts after (0 for the first page); a cursor Hub did not give is a 400."""
    if not cursor:
        return 0
    if _CURSOR.match(cursor):
        # Past what an id column holds (32 bits on PostgreSQL, which refuses a larger number with an error)
        # no row follows: the last id there can be gives the same empty page.
        return min(int.from_bytes(base64.urlsafe_b64decode(cursor + "="), "big"), MAX_ID)
    from hub.i18n import gettext

    raise ApiError(400, gettext("Invalid cursor"),
                   gettext("cursor: not a cursor this API gave; use next_cursor from the previous page"),
                   errors=[{"field": "cursor", "detail": gettext("not a cursor this API gave")}])
