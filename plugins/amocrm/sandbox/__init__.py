"""A local amoCRM account that speaks API v4 the way the real service does.

The demo, the end-to-end tests and the benchmarks cannot use a real account,
and a friendly fake would let the plugin pass while failing in production. So
this emulator follows the documented protocol and keeps its sharp edges:

- OAuth 2.0 on POST /oauth2/access_token: authorization codes live 20 minutes
  and work once; access tokens (JWT-shaped) expire after 24 hours; refresh
  tokens are single-use and rotate, and a reused one answers 401 "Token has
  been revoked"; a refresh also revokes the access token it replaces.
  Long-lived tokens of private integrations are accepted as Bearer too.
- Lists (contacts, leads, companies, events, tasks) are HAL: `_page`,
  `_links.self`/`next` and `_embedded`, never a total count. An empty page
  answers 204 with an empty body, including the page after a full last page.
  `limit` above the maximum (250; 100 for events) does not raise an error:
  the API falls back to its default page of 50.
- At most 7 requests per second per integration: the next one gets an nginx
  HTML 429 with no Retry-After. Clients that keep hammering get the account
  blocked for a while (HTML 403). Requests are counted when they arrived:
  on Linux the time the kernel received them, so the emulator's own delays
  (a thread encoding a large page, a garbage collection, another process on
  the same cores) never bunch requests a client sent well spaced.
- Writes validate like the real API (400 with `validation-errors` naming the
  path), customers answer 402 when the plan lacks them, deletions leave
  events, and changes are pushed to registered webhooks as form-encoded
  posts from a background thread, optionally duplicated or dropped.

Everything is also reachable from Python (`Account`) so tests can seed,
mutate, issue credentials and inspect what a client wrote, and `/_sandbox/stats`
reports request counts for out-of-process benchmarks.

The package is laid out by those edges: `credentials` (OAuth), `limits` (the
rate limit, blocking, faults on demand, statistics), `reading` (lists and
entities), `writing` (adds, updates, deletes; a lead may come with its
company), `links` (linking companies, contacts and leads), `notes` (notes and tasks),
`events` (the events log and webhooks out), `round_trip` (companies, typed
fields, stage moves, calls and tasks seeded); `account` puts them together and
routes each request to one of them, `state` declares what they share,
`protocol` holds answers and query strings, `server` the HTTP side and `data`
the seeded base.
"""

from __future__ import annotations

from plugins.amocrm.sandbox.account import Account, ManualClock
from plugins.amocrm.sandbox.credentials import (
    ACCESS_TOKEN_TTL,
    AUTH_CODE_TTL,
    DAY,
    LONG_LIVED_TOKEN_TTL,
    REFRESH_TOKEN_TTL,
    Integration,
)
from plugins.amocrm.sandbox.events import WEBHOOK_SETTINGS, WEBHOOK_TIMEOUT
from plugins.amocrm.sandbox.limits import (
    ABUSE_THRESHOLD,
    ABUSE_WINDOW,
    BLOCK_SECONDS,
    BLOCKED_PAGE,
    RATE_LIMIT,
    TOO_MANY_REQUESTS_PAGE,
)
from plugins.amocrm.sandbox.notes import NOTE_TYPES, TASK_ENTITY_TYPES
from plugins.amocrm.sandbox.protocol import (
    DEFAULT_LIMIT,
    HAL_JSON,
    MAX_EVENTS_LIMIT,
    MAX_LIMIT,
    PROBLEM_JSON,
    BadRequest,
    Response,
    parse_query,
)
from plugins.amocrm.sandbox.server import SandboxServer, serve, settle_heap, start_connected
from plugins.amocrm.sandbox.writing import MAX_BATCH

__all__ = [
    "Account", "ManualClock", "SandboxServer", "serve", "settle_heap", "start_connected",
    "Integration", "Response", "BadRequest", "parse_query",
    "DAY", "ACCESS_TOKEN_TTL", "REFRESH_TOKEN_TTL", "AUTH_CODE_TTL", "LONG_LIVED_TOKEN_TTL",
    "DEFAULT_LIMIT", "MAX_LIMIT", "MAX_EVENTS_LIMIT", "MAX_BATCH", "HAL_JSON", "PROBLEM_JSON",
    "RATE_LIMIT", "ABUSE_THRESHOLD", "ABUSE_WINDOW", "BLOCK_SECONDS", "BLOCKED_PAGE", "TOO_MANY_REQUESTS_PAGE",
    "WEBHOOK_SETTINGS", "WEBHOOK_TIMEOUT", "NOTE_TYPES", "TASK_ENTITY_TYPES",
]
