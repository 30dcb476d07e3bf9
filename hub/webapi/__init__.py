"""The HTTP API, /api/v1: contacts, orders and events in, segments out, for systems that are not a CRM.

A shop's website, its 1C, a form service or a developer's script use it with
a key (``hub api-keys create``). It goes through the same doors as a sync or
an import (normalization, identity, consent, the exactly-once outbox), so
nothing it writes is special.

- endpoints.py   what an endpoint is; ApiError; cursors
- routes.py      the gate every request passes (key, scope, rate, body, idempotency) and the blueprint
- problems.py    errors as application/problem+json, in the reader's language
- keys.py        keys: made, listed, revoked, checked
- idempotency.py Idempotency-Key: the first answer, kept for 24 hours
- openapi.py     the OpenAPI 3.1 document, built from the endpoints

Endpoints themselves come through the ``register_api_endpoints`` hook, the
core's like any plugin's (hub.webapi.contacts, …, registered in
DEFAULT_PLUGINS).

Named ``webapi`` because ``hub.api`` is the Python API plugins import.
"""
