"""/api/v1 on the admin's WSGI app: each registered endpoint behind one gate.

The gate does, in order, what every endpoint needs and no view repeats:
the reader's language (Accept-Language; Russian by default), the key
(401; too many wrong keys from one address, 429), its scope (403), its rate
limit (429 with Retry-After), the path and query against their schemas
(400), the body (415, 400, 413, then 422 against the endpoint's JSON
Schema), the Idempotency-Key, and one transaction around the view: a write
transaction for a POST, a read-only one for a GET (which so never waits
behind a writer on SQLite). Work the view leaves for after the commit runs
after it; its failure is logged and does not undo the answer. Whatever goes
wrong is answered as problem+json, never as HTML or a traceback.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import math
import re
import time
from typing import Any, Callable

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from hub import i18n
from hub.db import get_engine
from hub.i18n import N_, gettext
from hub.plugins import get_pm
from hub.ratelimit import limiter
from hub.webapi import idempotency, keys, openapi, problems
from hub.webapi.endpoints import ApiError, ApiKeyInfo, Call, Endpoint, collect

log = logging.getLogger("hub.api")

ENDPOINTS_KEY = "hub.api.endpoints"
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def install(app: Flask) -> None:
    """Mount /api/v1 with every registered endpoint (the core's and plugins')."""
    endpoints = collect(get_pm())
    app.config[ENDPOINTS_KEY] = endpoints
    bp = Blueprint("api_v1", __name__, url_prefix=openapi.BASE)
    bp.add_url_rule("/openapi.json", "openapi", _openapi, methods=["GET"])
    for endpoint in endpoints:
        bp.add_url_rule(_rule(endpoint), endpoint.operation_id + "_" + endpoint.method.lower(), _gate(endpoint),
                        methods=[endpoint.method.upper()])
    app.register_blueprint(bp)


def is_api_request() -> bool:
    """Whether the request is the API's, whose errors are problem+json rather than the admin's HTML pages."""
    return request.path == openapi.BASE or request.path.startswith(openapi.BASE + "/")


def http_error(error: HTTPException) -> Response:
    """A 404, 405 or 413 under /api/v1 (raised before any view ran) as problem+json."""
    _speak_readers_language()
    status = error.code or 500
    detail = {404: gettext("There is no such route in /api/v1; the routes are in /api/v1/openapi.json"),
              405: gettext("This route does not take %(method)s; see /api/v1/openapi.json", method=request.method),
              413: gettext("The body is larger than %(num)d MB; send a smaller batch",
                           num=(current_app.config.get("MAX_CONTENT_LENGTH") or 0) // (1024 * 1024))}
    response = _problem(ApiError(status, problems.title(status), detail.get(status, problems.title(status))))
    if status == 405 and error.get_response().headers.get("Allow"):
        response.headers["Allow"] = error.get_response().headers["Allow"]
    return response


def _rule(endpoint: Endpoint) -> str:
    """`/contacts/{id}` → `/contacts/<int(max=2147483647):id>`: Flask's form of the OpenAPI path."""
    return _PATH_PARAM.sub(lambda m: f"<{_converter(endpoint, m.group(1))}:{m.group(1)}>", endpoint.path)


def _converter(endpoint: Endpoint, name: str) -> str:
    for p in endpoint.params:
        if p.get("in") == "path" and p.get("name") == name and (p.get("schema") or {}).get("type") == "integer":
            # An id past what an id column holds is a 404, not a query the database refuses with a 500.
            limit = openapi.path_integer(p["schema"])
            return f"int(min={limit['minimum']}, max={limit['maximum']})"
    return "string"


def _openapi() -> Response:
    settings = current_app.config["HUB_SETTINGS"]
    # HUB_PUBLIC_URL when set: the Host header is the client's to write, and a document should not repeat it.
    public = str(settings.extra.get("public_url") or "").strip().rstrip("/")
    doc = openapi.document(current_app.config[ENDPOINTS_KEY], server_url=public or request.host_url.rstrip("/"))
    return _json(200, doc)


def _json(status: int, body: Any, *, media_type: str = "application/json") -> Response:
    text = json.dumps(body, ensure_ascii=False, default=str, separators=(",", ":"))
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate a problem quotes back (a field's name): escaped, as JSON can
        data = json.dumps(body, ensure_ascii=True, default=str, separators=(",", ":")).encode("ascii")
    return Response(data, status=status, mimetype=media_type)


# What an outage is called in the 503 a client gets, and how soon it may try again.
OUTAGE_PARTS = {"redis": N_("queue and rate limits (Redis)"), "database": N_("database")}
RETRY_AFTER_OUTAGE_S = 30


def _outage(exc: BaseException) -> str | None:
    """Which part of Hub's infrastructure the failure says is away ("redis", "database"), or None for a bug."""
    import redis.exceptions
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return "redis"
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "database"
    if isinstance(exc, OperationalError):  # also a statement's own mistake on SQLite ("no such table"): a bug
        said = str(exc.orig).lower()
        if any(word in said for word in _OUTAGE_WORDS):
            return "database"
    return None


# What a driver says when the database is away or busy, not when a statement is wrong.
_OUTAGE_WORDS = ("connect", "server closed", "terminating", "timeout", "timed out", "database is locked",
                 "unable to open", "the database system is")


def _problem(exc: ApiError) -> Response:
    response = _json(exc.status, problems.body(exc.status, exc.title, exc.detail, exc.errors),
                     media_type=problems.MEDIA_TYPE)
    response.headers["Content-Language"] = i18n.current_language()
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response


def _speak_readers_language() -> None:
    settings = current_app.config["HUB_SETTINGS"]
    best = request.accept_languages.best_match(i18n.LANGUAGES)
    i18n.activate(best or settings.language)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class _Checks:
    """The endpoint's schemas, compiled once."""

    def __init__(self, endpoint: Endpoint) -> None:
        resolver_root = {"components": {"schemas": dict(endpoint.schemas)}}

        def compiled(schema: dict[str, Any]) -> problems.Schema:
            return problems.Schema({**schema, **resolver_root} if endpoint.schemas else schema)

        self.body = compiled(endpoint.body) if endpoint.body is not None else None
        query = {p["name"]: p for p in endpoint.params if p.get("in") == "query"}
        self.query_params = query
        self.query = problems.Schema({
            "type": "object", "properties": {n: p.get("schema", {}) for n, p in query.items()},
            "required": [n for n, p in query.items() if p.get("required")]})
        self.batch_key = _batch_key(endpoint.body)
        path = {p["name"]: p for p in endpoint.params if p.get("in") == "path"}
        self.path = problems.Schema({
            "type": "object", "properties": {n: p.get("schema", {}) for n, p in path.items()}}) if path else None


def _batch_key(schema: dict[str, Any] | None) -> str | None:
    """The array a batch body carries its items in (`contacts`, `events`, …), to number errors by item."""
    for option in (schema or {}).get("oneOf", []) + (schema or {}).get("anyOf", []) + [schema or {}]:
        for name, prop in (option.get("properties") or {}).items():
            if prop.get("type") == "array":
                return str(name)
    return None


def _path(checks: _Checks, path: dict[str, Any]) -> None:
    """Path parameters against their schemas (a 400 naming the parameter); an integer's range is routed already."""
    if checks.path is not None:
        problems.validate(checks.path, path, where="path")


def _query(checks: _Checks) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in request.args.items():
        param = checks.query_params.get(name)
        if param is None:
            # Refused, not ignored: a misspelt filter (?phnoe=) ignored would answer every contact.
            raise problems.error(400, gettext("Unknown query parameter %(name)s; this route takes: %(names)s",
                                              name=name[:60], names=", ".join(checks.query_params) or "-"),
                                 errors=[{"field": name[:60], "detail": gettext("unknown parameter")}])
        if len(request.args.getlist(name)) > 1:  # ?phone=A&phone=B: the caller meant something else than A
            raise problems.error(400, gettext("Query parameter %(name)s is given more than once; give it once",
                                              name=name),
                                 errors=[{"field": name, "detail": gettext("given more than once; give it once")}])
        kind = (param.get("schema") or {}).get("type")
        if kind == "integer":
            out[name] = int(value) if re.fullmatch(r"-?\d{1,18}", value) else value
        elif kind == "boolean":
            out[name] = {"true": True, "false": False}.get(value.lower(), value)
        else:
            out[name] = value
    problems.validate(checks.query, out, where="query")
    return out


def _body(checks: _Checks) -> Any:
    """The request's JSON body, checked against the endpoint's schema (None for an endpoint that takes none)."""
    raw = request.get_data(cache=True)  # read even when unused: a body over the size limit is a 413 here
    if checks.body is None:
        return None
    if request.mimetype != "application/json":
        raise problems.error(415, gettext("Send the body as JSON with Content-Type: application/json"),
                             errors=[{"field": "Content-Type", "detail": gettext("must be application/json")}])
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise problems.error(400, gettext("The body is not UTF-8 text")) from None
    except json.JSONDecodeError as exc:
        raise problems.error(400, gettext("The body is not valid JSON: line %(line)d, column %(column)d",
                                          line=exc.lineno, column=exc.colno)) from None
    except RecursionError:
        raise problems.error(400, gettext("The body is nested too deeply")) from None
    if _ESCAPED_SURROGATE.search(raw):
        _refuse_lone_surrogates(data, checks.batch_key)
    problems.validate(checks.body, data, batch_key=checks.batch_key)
    return data


# JSON may escape a lone UTF-16 surrogate (\ud800); it is no text any database can store. Refused here for
# every string of every body, so that schemas need not (and generators of test data, which cannot read
# surrogates in a pattern, see the same rules as the gate).
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _refuse_lone_surrogates(data: Any, batch_key: str | None) -> None:
    found: list[list[Any]] = []
    stack: list[tuple[Any, list[Any]]] = [(data, [])]  # a loop, not recursion: a body may nest deep
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _LONE_SURROGATE.search(value):
                found.append(path)
        elif isinstance(value, dict):
            stack.extend((name if _LONE_SURROGATE.search(name) else item, path + [name])  # a key is text too
                         for name, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((item, path + [index]) for index, item in reversed(list(enumerate(value))))
    if not found:
        return
    errors = []
    for path in found[:problems.MAX_LISTED]:
        item: dict[str, Any] = {"field": problems.pointer(path),
                                "detail": gettext("contains a lone UTF-16 surrogate, which is not text")}
        if batch_key and len(path) >= 2 and path[0] == batch_key and isinstance(path[1], int):
            item["index"] = path[1]
        errors.append(item)
    raise problems.error(422, f"{errors[0]['field']}: {errors[0]['detail']}", errors=errors)


def _gate(endpoint: Endpoint) -> Callable[..., Response]:
    checks = _Checks(endpoint)

    def view(**path: Any) -> Response:
        _speak_readers_language()
        try:
            return _handle(endpoint, checks, path)
        except ApiError as exc:
            return _problem(exc)
        except HTTPException as exc:  # a view's abort(): still a problem document
            return http_error(exc)
        except Exception as exc:
            away = _outage(exc)
            if away is not None:  # Redis or the database away: the client should retry, not report a bug
                log.warning("API %s %s: %s unreachable (%s)", endpoint.method.upper(), openapi.BASE + endpoint.path,
                            away, type(exc).__name__)
                return _problem(problems.error(503, gettext("Hub cannot reach its %(part)s right now; nothing was "
                                                            "changed. Try again in a minute.",
                                                            part=gettext(OUTAGE_PARTS[away])),
                                               headers={"Retry-After": str(RETRY_AFTER_OUTAGE_S)}))
            log.exception("API %s %s failed", endpoint.method.upper(), openapi.BASE + endpoint.path)
            return _problem(problems.error(500, gettext("The request could not be handled; nothing was changed. "
                                                        "Try again later.")))

    view.__name__ = endpoint.operation_id
    return view


def _handle(endpoint: Endpoint, checks: _Checks, path: dict[str, Any]) -> Response:
    settings = current_app.config["HUB_SETTINGS"]
    engine = get_engine(settings.database_url)
    key_info = None
    if endpoint.scope is not None:
        key_info = _authenticate(settings, engine, endpoint.scope)
    _path(checks, path)
    query = _query(checks)
    body = _body(checks)
    if endpoint.method.upper() == "GET":
        # A read takes no write lock (SQLite's BEGIN IMMEDIATE), so it never waits behind a batch being written.
        with engine.connect() as conn:
            call = Call(settings=settings, conn=conn, key=key_info or keys.ANONYMOUS, path=path, query=query,
                        body=body)
            answer = endpoint.view(call)
            conn.rollback()  # a GET changes nothing
        _after_commit(endpoint, call)
        return _json(endpoint.status, answer)
    idem_key = request.headers.get("Idempotency-Key") if endpoint.method.upper() == "POST" else None
    with engine.begin() as conn:
        call = Call(settings=settings, conn=conn, key=key_info or keys.ANONYMOUS, path=path, query=query, body=body)
        if idem_key is not None and key_info is not None:
            kept = idempotency.claim(conn, key_info.id, idem_key,
                                     idempotency.fingerprint(request.method, request.path, body))
            if kept is not None:
                response = _json(kept[0], idempotency.answer_of(kept[1]))
                response.headers["Idempotent-Replayed"] = "true"
                return response
        answer = endpoint.view(call)
        if idem_key is not None and key_info is not None:
            idempotency.keep(conn, key_info.id, idem_key, endpoint.status, answer)
    _after_commit(endpoint, call)
    return _json(endpoint.status, answer)


def _authenticate(settings: Any, engine: Any, scope: str) -> ApiKeyInfo:
    """The request's key, or the 401, 403 or 429 it gets; reads only (last_used_at is written apart, when due)."""
    address = _client(request.remote_addr)
    blocked = _blocked_for(address)
    if blocked > 0:  # refused without a database query, so a brute force cannot load the database
        raise _too_many_failures(blocked)
    token = _bearer()
    if token is None:
        raise problems.error(401, gettext("Send the key as Authorization: Bearer <key>"),
                             headers={"WWW-Authenticate": 'Bearer realm="hub"'})
    with engine.connect() as conn:
        found = keys.lookup(conn, token)
    if found is None:
        wait = limiter(settings, f"api-auth-failed:{address}", FAILED_RATE, burst=FAILED_BURST).delay(1)
        if wait > 0:
            _block(address, wait)
            raise _too_many_failures(wait)
        raise problems.error(401, gettext("The key is wrong or was revoked"),
                             headers={"WWW-Authenticate": 'Bearer realm="hub", error="invalid_token"'})
    key_info, rate, due = found
    if due:
        with engine.begin() as conn:  # a short write of its own, at most once a minute a key
            keys.mark_used(conn, key_info.id)
    if scope not in key_info.scopes:
        raise problems.error(403, gettext("This key does not have the scope %(scope)s", scope=scope),
                             headers={"WWW-Authenticate": f'Bearer realm="hub", error="insufficient_scope", '
                                                          f'scope="{scope}"'})
    # Named by the key's hash, not its id: ids restart in another database, the hash never repeats.
    wait = limiter(settings, f"api-key:{keys.digest(token)[:16]}", rate, burst=2 * rate).delay(1)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise problems.error(429, gettext("This key sends more than %(rate)d requests a second; wait "
                                          "%(seconds)d s", rate=rate, seconds=seconds),
                             headers={"Retry-After": str(seconds)})
    return key_info


# Wrong keys from one client address: FAILED_RATE a second, bursts of FAILED_BURST, then 429. A broken
# client or a brute force is slowed down without touching keys that work (they never count here).
FAILED_RATE = 10
FAILED_BURST = 20
_blocked: dict[str, float] = {}  # address -> monotonic time its wrong keys are refused until (this process)
_BLOCKED_MAX = 10_000


def _client(address: str | None) -> str:
    """Who a failed key is counted against: the address (after ProxyFix), an IPv6 client by its /64 network."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return (address or "-")[:64]
    if ip.version == 6 and not getattr(ip, "ipv4_mapped", None):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))  # one host commonly holds the whole /64
    return str(ip)


def _blocked_for(address: str) -> float:
    until = _blocked.get(address)
    return 0.0 if until is None else until - time.monotonic()


def _block(address: str, wait: float) -> None:
    now = time.monotonic()
    if len(_blocked) >= _BLOCKED_MAX:
        for gone in [a for a, until in _blocked.items() if until <= now]:
            del _blocked[gone]
        if len(_blocked) >= _BLOCKED_MAX:
            _blocked.clear()  # a flood of addresses: forget them all rather than grow without end
    _blocked[address] = now + wait


def _too_many_failures(wait: float) -> ApiError:
    seconds = max(1, math.ceil(wait))
    return problems.error(429, gettext("Too many requests with a wrong key from this address; wait %(seconds)d s",
                                       seconds=seconds), headers={"Retry-After": str(seconds)})


def _after_commit(endpoint: Endpoint, call: Call) -> None:
    """Run the view's after-commit work; one that fails is logged, and the committed answer still goes out.

    The request's changes are committed by now, so a 500 saying "nothing was changed" would be untrue (and
    an Idempotency-Key repeat would answer 200). Only the task's name and the error's class are logged: the
    message or a traceback may quote personal data (a phone, an email).
    """
    for task in call.after_commit:
        try:
            task()
        except Exception as exc:  # noqa: BLE001 - committed is committed: the answer must say so
            log.error("API %s %s: the after-commit task %s failed (%s); the request's changes are committed",
                      endpoint.method.upper(), openapi.BASE + endpoint.path, _task_name(task), type(exc).__name__)


def _task_name(task: Callable[[], None]) -> str:
    """A task's qualified name; a partial's arguments (often personal data) are left out."""
    func = task.func if isinstance(task, functools.partial) else task
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', type(func).__name__)}"
