"""The gate every /api/v1 request passes: keys, scopes, rate limits, problems, idempotency, the document."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from hub.admin.app import create_app
from hub.webapi import keys
from hub.webapi.endpoints import Call, Endpoint
from tests.conftest import HubDB


def make_key(db: HubDB, *scopes: str, rate: int = 1000) -> str:
    with db.engine.begin() as conn:
        return keys.create(conn, f"test-{len(scopes)}-{rate}-{id(scopes)}", list(scopes), actor="tests",
                           rate=rate).key


@pytest.fixture
def client(hub_db: HubDB) -> Any:
    return create_app(hub_db.settings).test_client()


def auth(key: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **more}


def is_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    doc = response.get_json(force=True)
    assert doc["status"] == status and doc["title"] and doc["detail"]
    return doc


def test_no_key_a_wrong_key_and_a_revoked_key_get_401(hub_db: HubDB, client: Any) -> None:
    is_problem(client.get("/api/v1/segments"), 401)
    is_problem(client.get("/api/v1/segments", headers=auth("hub_notakey")), 401)
    is_problem(client.get("/api/v1/segments", headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401)
    key = make_key(hub_db, "segments:read")
    assert client.get("/api/v1/segments", headers=auth(key)).status_code == 200
    with hub_db.engine.begin() as conn:
        assert keys.revoke(conn, keys.find(conn, keys.listing(conn)[0]["name"]).id)
    doc = is_problem(client.get("/api/v1/segments", headers=auth(key)), 401)
    assert key not in json.dumps(doc)


def test_a_key_without_the_scope_gets_403_naming_it(hub_db: HubDB, client: Any) -> None:
    key = make_key(hub_db, "contacts:write")
    doc = is_problem(client.get("/api/v1/segments", headers=auth(key, **{"Accept-Language": "en"})), 403)
    assert "segments:read" in doc["detail"]


def test_problems_speak_russian_by_default_and_english_on_request(hub_db: HubDB, client: Any) -> None:
    ru = is_problem(client.get("/api/v1/segments"), 401)
    en = is_problem(client.get("/api/v1/segments", headers={"Accept-Language": "en-US,en;q=0.9"}), 401)
    assert ru["detail"] != en["detail"]
    assert any("а" <= ch <= "я" for ch in ru["detail"].lower())
    assert "Bearer" in en["detail"]


@pytest.fixture
def still_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate limits on a clock that stands still: a bucket never refills, however slow the machine is."""
    import functools

    from hub import ratelimit

    monkeypatch.setattr(ratelimit, "_local", {})
    monkeypatch.setattr(ratelimit, "LocalBucket", functools.partial(ratelimit.LocalBucket, clock=lambda: 1000.0))


def test_a_key_over_its_rate_gets_429_with_retry_after(hub_db: HubDB, client: Any, still_buckets: None) -> None:
    key = make_key(hub_db, "segments:read", rate=1)
    statuses = [client.get("/api/v1/segments", headers=auth(key)).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]  # a burst of twice the rate, then refused
    refused = client.get("/api/v1/segments", headers=auth(key))
    is_problem(refused, 429)
    assert int(refused.headers["Retry-After"]) >= 1


def test_unknown_routes_and_methods_answer_problems_not_html(hub_db: HubDB, client: Any) -> None:
    is_problem(client.get("/api/v1/nothing-here"), 404)
    is_problem(client.delete("/api/v1/segments"), 405)
    key = make_key(hub_db, "segments:read")
    doc = is_problem(client.get("/api/v1/segments/no_such_segment/members", headers=auth(key)), 404)
    assert "no_such_segment" in doc["detail"]
    is_problem(client.get("/api/v1/segments/dormant_90d/members?cursor=%%%", headers=auth(key)), 400)
    doc = is_problem(client.get("/api/v1/segments/dormant_90d/members?limit=0", headers=auth(key)), 400)
    assert doc["errors"][0]["field"] == "limit"


def test_the_openapi_document_is_valid_and_lists_every_route(hub_db: HubDB, client: Any) -> None:
    from openapi_spec_validator import validate  # schemathesis brings it

    doc = client.get("/api/v1/openapi.json").get_json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert "/api/v1/segments/{name}/members" in doc["paths"]
    op = doc["paths"]["/api/v1/segments"]["get"]
    assert {"200", "401", "403", "429"} <= set(op["responses"])


@pytest.fixture
def echo(hub_db: HubDB, plugin_manager: Any) -> Any:
    """A plugin's POST endpoint that counts its calls in the database (to see what a repeat changes)."""
    from hub.hookspecs import hookimpl
    from hub.models import AuditEntry

    def bump(call: Call) -> dict[str, Any]:
        call.conn.execute(AuditEntry.__table__.insert().values(actor="api", action="echo", details=call.body))
        return {"echo": call.body, "calls": call.conn.execute(
            AuditEntry.__table__.select().where(AuditEntry.__table__.c.action == "echo")).all().__len__()}

    class Plugin:  # hook:register_api_endpoints
        @hookimpl
        def register_api_endpoints(self, register: Any) -> None:
            register(Endpoint("POST", "/echo", bump, "events:write", "Echo", "test",
                              body={"type": "object", "required": ["items"], "additionalProperties": False,
                                    "properties": {"items": {"type": "array", "maxItems": 3,
                                                             "items": {"type": "object", "required": ["n"],
                                                                       "properties": {"n": {"type": "integer"}}}}}},
                              answer={"type": "object"}))

    plugin_manager.register(Plugin(), name="echo")
    return create_app(hub_db.settings).test_client()


def test_bodies_are_checked_against_the_schema_with_each_item_named(hub_db: HubDB, echo: Any) -> None:
    key = make_key(hub_db, "events:write")
    h = auth(key, **{"Accept-Language": "en"})
    is_problem(echo.post("/api/v1/echo", data="{", headers=h, content_type="application/json"), 400)
    is_problem(echo.post("/api/v1/echo", data="n=1", headers=h, content_type="application/x-www-form-urlencoded"),
               415)
    doc = is_problem(echo.post("/api/v1/echo", json={"items": [{"n": 1}, {"n": "two"}, {}]}, headers=h), 422)
    assert [(e["index"], e["field"]) for e in doc["errors"]] == [(1, "/items/1/n"), (2, "/items/2/n")]
    assert "whole number" in doc["errors"][0]["detail"] and "required" in doc["errors"][1]["detail"]
    doc = is_problem(echo.post("/api/v1/echo", json={"items": [{"n": 1}] * 4}, headers=h), 422)
    assert "at most 3" in doc["detail"]
    doc = is_problem(echo.post("/api/v1/echo", json={"items": [], "extra": 1}, headers=h), 422)
    assert "extra" in doc["detail"]
    is_problem(echo.post("/api/v1/echo", data=b'{"items": [' + b"[" * 100000 + b"]}", headers=h,
                         content_type="application/json"), 400)
    big = {"items": [{"n": 1, "pad": "x" * (5 * 1024 * 1024)}]}
    is_problem(echo.post("/api/v1/echo", json=big, headers=h), 413)


def test_an_idempotency_key_replays_the_first_answer_and_changes_nothing(hub_db: HubDB, echo: Any) -> None:
    key = make_key(hub_db, "events:write")
    h = auth(key, **{"Idempotency-Key": "order-77"})
    first = echo.post("/api/v1/echo", json={"items": [{"n": 1}]}, headers=h)
    again = echo.post("/api/v1/echo", json={"items": [{"n": 1}]}, headers=h)
    assert first.status_code == again.status_code == 200
    assert first.get_json() == again.get_json() and again.get_json()["calls"] == 1
    assert again.headers["Idempotent-Replayed"] == "true"
    # A retry that writes the same JSON another way (spacing, key order) is the same request.
    pretty = echo.post("/api/v1/echo", data='{\n  "items" : [ { "n" : 1 } ]\n}', headers=h,
                       content_type="application/json")
    assert pretty.status_code == 200 and pretty.headers["Idempotent-Replayed"] == "true"
    other = echo.post("/api/v1/echo", json={"items": [{"n": 2}]}, headers=h)
    assert is_problem(other, 422)["errors"][0]["field"] == "Idempotency-Key"
    fresh = echo.post("/api/v1/echo", json={"items": [{"n": 2}]}, headers=auth(key, **{"Idempotency-Key": "o-78"}))
    assert fresh.get_json()["calls"] == 2
    refused = echo.post("/api/v1/echo", json={"items": "no"}, headers=auth(key, **{"Idempotency-Key": "o-79"}))
    assert refused.status_code == 422  # a refused request is not kept: fixed, the same key goes through
    fixed = echo.post("/api/v1/echo", json={"items": []}, headers=auth(key, **{"Idempotency-Key": "o-79"}))
    assert fixed.status_code == 200 and fixed.get_json()["calls"] == 3


def test_a_view_that_fails_answers_500_as_a_problem_and_changes_nothing(hub_db: HubDB, plugin_manager: Any) -> None:
    from hub.hookspecs import hookimpl
    from hub.models import AuditEntry

    def broken(call: Call) -> dict[str, Any]:
        call.conn.execute(AuditEntry.__table__.insert().values(actor="api", action="half", details={}))
        raise RuntimeError("secret detail")

    class Plugin:
        @hookimpl
        def register_api_endpoints(self, register: Any) -> None:
            register(Endpoint("POST", "/broken", broken, "events:write", "Broken", "test", body={"type": "object"}))

    plugin_manager.register(Plugin(), name="broken")
    client = create_app(hub_db.settings).test_client()
    doc = is_problem(client.post("/api/v1/broken", json={}, headers=auth(make_key(hub_db, "events:write"))), 500)
    assert "secret" not in json.dumps(doc)
    with hub_db.engine.connect() as conn:
        assert conn.execute(AuditEntry.__table__.select().where(AuditEntry.__table__.c.action == "half")).first() \
            is None


def test_every_body_schema_is_valid_json_schema(hub_db: HubDB, client: Any) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    for methods in doc["paths"].values():
        for op in methods.values():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body is not None:
                Draft202012Validator.check_schema(body)


def test_an_unknown_query_parameter_is_refused_not_ignored(hub_db: HubDB, client: Any) -> None:
    key = make_key(hub_db, "segments:read")
    doc = is_problem(client.get("/api/v1/segments/dormant_90d/members?limt=5",
                                headers=auth(key, **{"Accept-Language": "en"})), 400)
    assert doc["errors"] == [{"field": "limt", "detail": "unknown parameter"}] and "cursor, limit" in doc["detail"]


def test_cursors_are_exactly_what_the_document_says(hub_db: HubDB, client: Any) -> None:
    import re

    from hub.webapi.endpoints import CURSOR_PATTERN, ApiError, cursor_after, read_cursor

    for row_id in (0, 1, 255, 2**31 - 1, 2**63 - 1):
        cursor = cursor_after(row_id)
        assert re.fullmatch(CURSOR_PATTERN, cursor) and read_cursor(cursor) == min(row_id, 2**31 - 1)
    assert read_cursor("") == read_cursor(None) == 0
    for forged in ("%%%", "aWQ6MTI", "_AAAAAAAAAA", "AAAAAAAAAAB", "AAAAAAAAAAAA"):
        with pytest.raises(ApiError):
            read_cursor(forged)
    doc = client.get("/api/v1/openapi.json").get_json()
    params = doc["paths"]["/api/v1/segments/{name}/members"]["get"]["parameters"]
    assert {"name": "cursor"}.items() <= next(p for p in params if p["name"] == "cursor").items()
    assert next(p for p in params if p["name"] == "cursor")["schema"]["pattern"] == CURSOR_PATTERN


@pytest.fixture
def strict(hub_db: HubDB, plugin_manager: Any) -> Any:
    """A plugin's endpoints with a pattern, a one-or-batch body and an id in the path."""
    from hub.hookspecs import hookimpl
    from hub.webapi.schemas import LINE_PATTERN, one_or_batch

    item = {"type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {"name": {"type": "string", "pattern": LINE_PATTERN, "maxLength": 50},
                           "meta": {"type": "object"}}}

    class Plugin:
        @hookimpl
        def register_api_endpoints(self, register: Any) -> None:
            register(Endpoint("POST", "/things", lambda call: {"ok": True}, "events:write", "Things", "test",
                              body=one_or_batch("things", item, limit=5), answer={"type": "object"}))
            register(Endpoint("GET", "/things/{id}", lambda call: {"id": call.path["id"]}, "events:write", "Thing",
                              "test", params=({"name": "id", "in": "path", "required": True,
                                               "schema": {"type": "integer", "minimum": 1}},)))

    plugin_manager.register(Plugin(), name="strict")
    return create_app(hub_db.settings).test_client()


def test_a_pattern_means_what_json_schema_says_a_trailing_newline_does_not_slip_through(hub_db: HubDB,
                                                                                         strict: Any) -> None:
    h = auth(make_key(hub_db, "events:write"), **{"Accept-Language": "en"})
    assert strict.post("/api/v1/things", json={"name": "Анна"}, headers=h).status_code == 200
    doc = is_problem(strict.post("/api/v1/things", json={"things": [{"name": "ok"}, {"name": "Анна\n"}]},
                                 headers=h), 422)  # Python's re alone lets "…\n" match "…$"
    assert doc["errors"][0]["field"] == "/things/1/name" and doc["errors"][0]["index"] == 1
    assert "expected form" in doc["errors"][0]["detail"]


@pytest.mark.both_databases
def test_a_lone_surrogate_anywhere_in_a_body_is_refused_with_its_field(hub_db: HubDB, strict: Any) -> None:
    h = auth(make_key(hub_db, "events:write"), **{"Accept-Language": "en"})
    raw = b'{"things": [{"name": "a"}, {"name": "b", "meta": {"note": ["x", "\\udc00"]}}]}'
    doc = is_problem(strict.post("/api/v1/things", data=raw, headers=h, content_type="application/json"), 422)
    assert doc["errors"] == [{"field": "/things/1/meta/note/1", "index": 1,
                              "detail": "contains a lone UTF-16 surrogate, which is not text"}]
    key_raw = b'{"name": "a", "meta": {"\\ud800": 1}}'
    doc = is_problem(strict.post("/api/v1/things", data=key_raw, headers=h, content_type="application/json"), 422)
    assert doc["errors"][0]["field"] == "/meta/\ud800"
    pair = '{"name": "\\ud83d\\ude00"}'.encode()  # an escaped pair is one character, and fine
    assert strict.post("/api/v1/things", data=pair, headers=h, content_type="application/json").status_code == 200


@pytest.mark.both_databases
def test_an_id_past_what_a_row_can_have_is_a_documented_404(hub_db: HubDB, strict: Any) -> None:
    h = auth(make_key(hub_db, "events:write"))
    assert strict.get("/api/v1/things/7", headers=h).get_json() == {"id": 7}
    for beyond in (2**31, 2**63, 0):
        is_problem(strict.get(f"/api/v1/things/{beyond}", headers=h), 404)
    op = strict.get("/api/v1/openapi.json").get_json()["paths"]["/api/v1/things/{id}"]["get"]
    assert op["parameters"][0]["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
    assert "404" in op["responses"]


def test_the_document_shows_a_one_or_batch_body_as_the_oneof_it_means(hub_db: HubDB, strict: Any) -> None:
    from hub.webapi.schemas import LINE_PATTERN, one_or_batch

    body = strict.get("/api/v1/openapi.json").get_json()["paths"]["/api/v1/things"]["post"]["requestBody"]
    published = Draft202012Validator(body["content"]["application/json"]["schema"])
    gate = Draft202012Validator(one_or_batch("things", {
        "type": "object", "required": ["name"], "additionalProperties": False,
        "properties": {"name": {"type": "string", "pattern": LINE_PATTERN, "maxLength": 50},
                       "meta": {"type": "object"}}}, limit=5))
    instances: tuple[Any, ...] = ({"name": "a"}, {"things": [{"name": "a"}]}, {"things": []},
                                  {"things": [{"name": "a"}] * 6}, {"name": "a", "things": [{"name": "b"}]},
                                  {"things": [{"name": "a"}], "x": 1}, {}, [], {"name": 1}, {"things": [{}]})
    for instance in instances:
        assert published.is_valid(instance) == gate.is_valid(instance), instance


@pytest.mark.both_databases
def test_an_idempotency_key_is_replayed_on_both_databases_and_must_be_plain_ascii(hub_db: HubDB, echo: Any) -> None:
    key = make_key(hub_db, "events:write")
    first = echo.post("/api/v1/echo", json={"items": [{"n": 5}]}, headers=auth(key, **{"Idempotency-Key": "k 1"}))
    again = echo.post("/api/v1/echo", json={"items": [{"n": 5}]}, headers=auth(key, **{"Idempotency-Key": "k 1"}))
    assert first.get_json() == again.get_json() and again.headers["Idempotent-Replayed"] == "true"
    for bad in ("clé", "x" * 256):
        doc = is_problem(echo.post("/api/v1/echo", json={"items": []}, headers=auth(key, **{"Idempotency-Key":
                                                                                             bad})), 400)
        assert doc["errors"][0]["field"] == "Idempotency-Key"


@pytest.fixture
def chores(hub_db: HubDB, plugin_manager: Any) -> Any:
    """A plugin's POST endpoint that writes a row and leaves work for after the commit, one task failing."""
    import functools

    from hub.hookspecs import hookimpl
    from hub.models import AuditEntry

    ran: list[str] = []

    def enqueue_letter(phone: str) -> None:
        raise ConnectionError(f"Redis is down; the letter to {phone} is not queued")

    def write(call: Call) -> dict[str, Any]:
        call.conn.execute(AuditEntry.__table__.insert().values(actor="api", action="chore", details={}))
        call.after_commit.append(functools.partial(enqueue_letter, "+79161234567"))
        call.after_commit.append(lambda: ran.append("second"))
        return {"ok": True}

    class Plugin:
        @hookimpl
        def register_api_endpoints(self, register: Any) -> None:
            register(Endpoint("POST", "/chores", write, "events:write", "Chores", "test", body={"type": "object"},
                              answer={"type": "object"}))

    plugin_manager.register(Plugin(), name="chores")
    return create_app(hub_db.settings).test_client(), ran


def test_a_failing_after_commit_task_is_logged_by_name_and_the_committed_answer_goes_out(
        hub_db: HubDB, chores: Any, caplog: Any) -> None:
    from hub.models import AuditEntry

    client, ran = chores
    h = auth(make_key(hub_db, "events:write"), **{"Idempotency-Key": "chore-1"})
    with caplog.at_level("ERROR", logger="hub.api"):
        response = client.post("/api/v1/chores", json={}, headers=h)
    assert response.status_code == 200 and response.get_json() == {"ok": True}
    assert ran == ["second"]  # the tasks after the failing one still run
    with hub_db.engine.connect() as conn:
        assert len(conn.execute(AuditEntry.__table__.select().where(AuditEntry.__table__.c.action == "chore"))
                   .all()) == 1
    assert "enqueue_letter" in caplog.text and "ConnectionError" in caplog.text
    assert "79161234567" not in caplog.text
    replay = client.post("/api/v1/chores", json={}, headers=h)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"


def test_a_read_answers_while_another_connection_holds_the_write_lock(hub_db: HubDB, client: Any) -> None:
    import sqlite3

    if hub_db.dialect != "sqlite":
        return
    key = make_key(hub_db, "segments:read")
    assert client.get("/api/v1/segments", headers=auth(key)).status_code == 200  # last_used_at is written now
    writer = sqlite3.connect(str(hub_db.engine.url.database), isolation_level=None, timeout=0)
    try:
        writer.execute("BEGIN IMMEDIATE")  # as a batch of 1000 contacts being written holds it
        assert client.get("/api/v1/segments", headers=auth(key)).status_code == 200
        assert client.get("/api/v1/segments/dormant_90d/members", headers=auth(key)).status_code == 200
    finally:
        writer.execute("ROLLBACK")
        writer.close()


@pytest.mark.both_databases
def test_a_failing_statement_logs_no_parameter_values(hub_db: HubDB, plugin_manager: Any, caplog: Any) -> None:
    from sqlalchemy import text

    from hub.hookspecs import hookimpl

    phone = "+7916" + "1234567"  # not written whole on the line a traceback quotes

    def lookup(call: Call) -> dict[str, Any]:
        call.conn.execute(text("SELECT id FROM no_such_table WHERE phone = :phone"), {"phone": phone})
        return {}

    class Plugin:
        @hookimpl
        def register_api_endpoints(self, register: Any) -> None:
            register(Endpoint("POST", "/lookup", lookup, "events:write", "Lookup", "test", body={"type": "object"}))

    plugin_manager.register(Plugin(), name="lookup")
    client = create_app(hub_db.settings).test_client()
    with caplog.at_level("ERROR", logger="hub.api"):
        is_problem(client.post("/api/v1/lookup", json={}, headers=auth(make_key(hub_db, "events:write"))), 500)
    assert "no_such_table" in caplog.text  # the statement is still there to debug with
    assert "79161234567" not in caplog.text


def test_wrong_keys_from_one_address_are_throttled_with_429_and_others_are_not(
        hub_db: HubDB, client: Any, monkeypatch: Any, still_buckets: None) -> None:
    from hub.webapi import routes

    monkeypatch.setattr(routes, "FAILED_RATE", 1)
    monkeypatch.setattr(routes, "FAILED_BURST", 2)
    hammer = {"REMOTE_ADDR": "192.0.2.17"}
    statuses = []
    for _ in range(3):
        response = client.get("/api/v1/segments", headers=auth("hub_wrong"), environ_base=hammer)
        statuses.append(response.status_code)
    assert statuses == [401, 401, 429]  # a burst of two, then refused
    assert int(response.headers["Retry-After"]) >= 1 and is_problem(response, 429)
    key = make_key(hub_db, "segments:read")
    elsewhere = {"REMOTE_ADDR": "192.0.2.18"}
    is_problem(client.get("/api/v1/segments", headers=auth("hub_wrong"), environ_base=elsewhere), 401)
    assert client.get("/api/v1/segments", headers=auth(key), environ_base=elsewhere).status_code == 200
    # An IPv6 client counts by its /64: another address in it is the same client.
    v6 = [client.get("/api/v1/segments", headers=auth("hub_wrong"),
                     environ_base={"REMOTE_ADDR": f"2001:db8::{n}"}).status_code for n in range(1, 50)]
    assert 429 in v6


def test_the_document_promises_no_409_the_gate_never_answers(hub_db: HubDB, echo: Any) -> None:
    doc = echo.get("/api/v1/openapi.json").get_json()
    op = doc["paths"]["/api/v1/echo"]["post"]
    assert "409" not in op["responses"]
    idem = next(p for p in op["parameters"] if p["name"] == "Idempotency-Key")
    assert "waits" in idem["description"]


def test_path_parameters_are_checked_against_their_schema(hub_db: HubDB, client: Any) -> None:
    key = make_key(hub_db, "segments:read")
    doc = is_problem(client.get("/api/v1/segments/" + "x" * 65 + "/members",
                                headers=auth(key, **{"Accept-Language": "en"})), 400)
    assert doc["errors"][0]["field"] == "name" and "at most 64" in doc["errors"][0]["detail"]


def test_the_documents_server_is_the_public_url_not_the_host_header(hub_db: HubDB) -> None:
    import dataclasses

    settings = dataclasses.replace(hub_db.settings, extra={**hub_db.settings.extra,
                                                           "public_url": "https://hub.example.ru/"})
    doc = create_app(settings).test_client().get("/api/v1/openapi.json", headers={"Host": "evil.example"}).get_json()
    assert doc["servers"] == [{"url": "https://hub.example.ru"}]
    plain = dataclasses.replace(hub_db.settings, extra={k: v for k, v in hub_db.settings.extra.items()
                                                        if k != "public_url"})
    doc = create_app(plain).test_client().get("/api/v1/openapi.json", headers={"Host": "hub.local:8080"}).get_json()
    assert doc["servers"] == [{"url": "http://hub.local:8080"}]


@pytest.fixture
def dated(hub_db: HubDB, plugin_manager: Any) -> Any:
    """A plugin's endpoint whose fields have patterns: one with an example, one with a description, one bare."""
    from hub.hookspecs import hookimpl

    day = r"^\d{4}-\d{2}-\d{2}$"

    class Plugin:
        @hookimpl
        def register_api_endpoints(self, register: Any) -> None:
            register(Endpoint("POST", "/dated", lambda call: {}, "events:write", "Dated", "test", body={
                "type": "object", "additionalProperties": False, "properties": {
                    "day": {"type": "string", "pattern": day, "examples": ["2026-12-06"]},
                    "code": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "three capital letters"},
                    "bare": {"type": "string", "pattern": "^x+$"}}}))

    plugin_manager.register(Plugin(), name="dated")
    return create_app(hub_db.settings).test_client()


def test_a_pattern_error_shows_the_schemas_example_or_description_not_the_regex(hub_db: HubDB, dated: Any) -> None:
    key = make_key(hub_db, "events:write")
    h = auth(key, **{"Accept-Language": "en"})
    doc = is_problem(dated.post("/api/v1/dated", json={"day": "06.12.2026", "code": "rub", "bare": "y"},
                                headers=h), 422)
    details = {e["field"]: e["detail"] for e in doc["errors"]}
    assert details["/day"] == "does not have the expected form, e.g. 2026-12-06"
    assert details["/code"] == "does not have the expected form: three capital letters"
    assert details["/bare"] == "does not have the expected form (^x+$)"  # nothing better to say
    # A trailing newline only JSON Schema's regex refuses takes the other path; it reads the same.
    doc = is_problem(dated.post("/api/v1/dated", json={"day": "2026-12-06\n"}, headers=h), 422)
    assert doc["errors"] == [{"field": "/day", "detail": "does not have the expected form, e.g. 2026-12-06"}]
    ru = is_problem(dated.post("/api/v1/dated", json={"day": "x"}, headers=auth(key)), 422)
    assert "2026-12-06" in ru["errors"][0]["detail"] and "\\d" not in ru["detail"]


@pytest.mark.both_databases
def test_a_cursor_past_what_an_id_column_holds_is_an_empty_page_not_a_500(hub_db: HubDB, client: Any) -> None:
    from hub.webapi.endpoints import cursor_after

    key = make_key(hub_db, "segments:read")
    for beyond in (2**31, 2**63 - 1):
        page = client.get(f"/api/v1/segments/dormant_90d/members?cursor={cursor_after(beyond)}", headers=auth(key))
        assert page.status_code == 200 and page.get_json() == {"items": [], "next_cursor": None}
