"""A local Bitrix24 portal that speaks the documented REST protocol, limits and quirks.

The demo, the end-to-end tests and the benchmarks talk to this emulator instead
of a cloud portal, and the Bitrix24 plugin is checked against it, so it is
written from the public REST documentation rather than from the plugin's
expectations: where the plugin and a real portal could disagree, the emulator
sides with the portal.

What it reproduces:

- Addresses: incoming webhooks ``/rest/USER_ID/CODE/METHOD[.json]`` and OAuth
  calls ``/rest/METHOD?auth=TOKEN``; parameters in the query string, a
  form-encoded body with PHP-style keys (``filter[>ID]=5``, ``select[]=PHONE``)
  or a JSON body.
- Errors in the portal's shapes and HTTP statuses (see ``ApiError`` uses).
- OAuth 2.0: ``/oauth/authorize/`` and ``/oauth/token/`` with authorization
  codes that live 30 seconds, access tokens of a configurable lifetime and
  refresh tokens that are replaced on every refresh.
- List semantics: 50 per page, ``total`` and ``next``; ``start=-1`` skips the
  count (the answer then carries ``total: 0`` and no ``next``); multifields
  (PHONE, EMAIL, WEB, IM) only when named in ``select``.
- Limits: a leaky bucket per client address (503 QUERY_LIMIT_EXCEEDED) and the
  per-method operating limit (429 OPERATION_TIME_LIMIT), including the server
  time a counted list spends in proportion to the rows its filter matches -
  accounted, never slept unless asked to.
- ``batch`` with ``$result[...]`` substitution, PHP's ``[]`` for empty maps,
  and one leaky-bucket unit for the whole batch.
- Events: handlers bound with ``event.bind`` (apps only) or outgoing webhooks
  receive form-encoded POSTs from a background thread, never retried.

`Portal` holds the state and answers requests in-process (`Portal.handle_http`);
`SandboxServer` serves it over HTTP; `serve` runs one from the command line.

The package is laid out by those edges: `credentials` (webhooks, OAuth),
`limits` (the leaky bucket, the operating limit, cut answers, statistics),
`reading` and `writing` (the REST methods), `events` (events out); `portal`
puts them together and routes each request to its method, `state` declares
what they share, `tables` holds records, filters and pages, `protocol`
parameters, JSON, values and errors, `server` the HTTP side and `data` the
seeded base.
"""

from __future__ import annotations

from plugins.bitrix24.sandbox.credentials import OAuthApp, OAuthAppInfo, Webhook
from plugins.bitrix24.sandbox.events import EventDelivery
from plugins.bitrix24.sandbox.portal import Portal
from plugins.bitrix24.sandbox.protocol import MOSCOW, ApiError, encode_json, parse_query, php_json, php_params
from plugins.bitrix24.sandbox.server import SandboxServer, serve, start_connected

__all__ = [
    "ApiError", "EventDelivery", "MOSCOW", "OAuthApp", "OAuthAppInfo", "Portal", "SandboxServer", "Webhook",
    "encode_json", "parse_query", "php_json", "php_params", "serve", "start_connected",
]
