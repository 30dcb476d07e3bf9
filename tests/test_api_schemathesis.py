"""The API tested with someone else's tools: schemathesis reads /api/v1/openapi.json and attacks every operation.

It sends what the document says is valid (every answer must then be one the
document lists, with its content type, headers and schema) and what it says
is invalid (each must be refused with a 4xx problem, never accepted and
never a 500). Whatever an engineer adds to the API is covered the moment it
is in the document, on SQLite and on PostgreSQL. Runs are deterministic and
bounded: a fixed derandomized seed and a modest number of examples per
operation.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

import workflows
from hub.admin.app import create_app
from hub.hookspecs import hookimpl
from hub.webapi import keys, routes
from hub.webapi.endpoints import JSON, SCOPES, ApiError, Call, Endpoint
from tests.conftest import HubDB
from workflows import store

pytestmark = pytest.mark.both_databases

EXAMPLES = 25  # per operation and generation mode
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]  # schemathesis's default, less its 5xx


def _batch(call: Call) -> JSON:
    """A plugin's batch endpoint, so the gate's body path (415, 400, 413, 422, Idempotency-Key) is attacked too."""
    for item in call.body["items"]:
        if item["n"] == 13:
            raise ApiError(404, "Not found", "items/n: no such thing")
    return {"accepted": len(call.body["items"])}


class _BatchPlugin:
    @hookimpl
    def register_api_endpoints(self, register: Any) -> None:
        register(Endpoint("POST", "/test-batch", _batch, "events:write", "A batch", "test", errors=(404,),
                          body={"type": "object", "required": ["items"], "additionalProperties": False,
                                "properties": {"items": {"type": "array", "maxItems": 5, "items": {
                                    "type": "object", "required": ["n"], "additionalProperties": False,
                                    "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 100},
                                                   "note": {"type": ["string", "null"], "maxLength": 20}}}}}},
                          answer={"type": "object", "required": ["accepted"], "additionalProperties": False,
                                  "properties": {"accepted": {"type": "integer"}}}))


@pytest.fixture
def api(hub_db: HubDB, plugin_manager: Any, site: Any, monkeypatch: Any) -> tuple[Any, dict[str, str]]:
    """The served document, loaded by schemathesis from the app it describes, and a key holding every scope.

    The app is Hub with its built-in plugins (gdpr and mailing from `site`, with a loopback SMTP server;
    workflows with its library installed), as `hub admin` serves it, plus a plugin's batch endpoint.
    """
    plugin_manager.register(workflows, name="workflows")
    with hub_db.engine.begin() as conn:
        store.install_library(conn)
    plugin_manager.register(_BatchPlugin(), name="test-batch")
    app = create_app(hub_db.settings)
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    # Every scope, the plugins' too, and a rate no run can reach: a 429 here would hide what is behind it.
    scopes = sorted({*SCOPES, *(op["x-scope"] for methods in doc["paths"].values() for op in methods.values()
                                if "x-scope" in op)})
    with hub_db.engine.begin() as conn:
        key = keys.create(conn, "schemathesis", scopes, actor="tests", rate=1_000_000).key
    # Likewise for wrong keys, which schemathesis sends by the hundred from one address to see each refused
    # with a 401 (the limit on them is tested in test_api_gate).
    monkeypatch.setattr(routes, "FAILED_RATE", 1_000_000)
    monkeypatch.setattr(routes, "FAILED_BURST", 1_000_000)
    loaded = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    # A request the document calls valid must never be refused as a bad body (415, 422): the gate and the
    # document would disagree. A 400 stays allowed: a view may find a well-formed value meaningless (a phone
    # nobody can read), which no JSON Schema can say.
    loaded.config.checks.positive_data_acceptance.expected_statuses = [*ACCEPTED, "400"]
    return loaded, {"Authorization": f"Bearer {key}"}


def test_every_operation_answers_as_its_document_says(api: tuple[Any, dict[str, str]]) -> None:
    schema, headers = api
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {"GET /api/v1/segments", "POST /api/v1/test-batch", "POST /api/v1/consent",
            "POST /api/v1/workflows/{name}/enroll"} <= {op.label for op in operations}  # the whole document
    numbers = itertools.count()
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _attack(operation, mode, headers, numbers)()
            except Exception as exc:  # noqa: BLE001 - every operation is attacked; all that broke is said at once
                failures.append(f"{operation.label} ({mode.value}):\n{exc}")
    assert not failures, "\n\n".join(failures)


def _attack(operation: Any, mode: GenerationMode, headers: dict[str, str],
            numbers: Iterator[int]) -> Callable[[], None]:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink])
    def attack(case: schemathesis.Case) -> None:
        if mode is GenerationMode.POSITIVE and case.headers and "Idempotency-Key" in case.headers:
            # A key reused with another body is refused (422, tested in test_api_gate); a valid
            # request here is a new one, so it gets a key of its own.
            prefix = f"{next(numbers)}-"
            case.headers["Idempotency-Key"] = prefix + case.headers["Idempotency-Key"][-(255 - len(prefix)):]
        case.call_and_validate(headers=headers)

    return cast(Callable[[], None], attack)
