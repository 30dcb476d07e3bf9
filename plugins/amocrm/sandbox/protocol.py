"""What travels over the wire: answers, problem documents, HAL pages and PHP-style query strings.

Every part of the account builds its answers from these, so they read the
same as the real API's whichever part answers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

DEFAULT_LIMIT = 50
MAX_LIMIT = 250
MAX_EVENTS_LIMIT = 100

HAL_JSON = "application/hal+json"
PROBLEM_JSON = "application/problem+json"
HTML = "text/html; charset=UTF-8"
OAUTH_PROBLEM_TYPE = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"
OAUTH_BAD_REQUEST_DETAIL = "В запросе отсутствует ряд параметров или параметры невалидны"

EVENT_ENTITY = {"contacts": "contact", "companies": "company", "leads": "lead"}
EVENT_ENTITY_PLURAL = {value: key for key, value in EVENT_ENTITY.items()}


@dataclass(slots=True)
class Response:
    """What the account answers; the HTTP layer only writes it out."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _encode(payload: Any) -> bytes:
    """`payload` as compact JSON; the lists under a HAL `_embedded` are encoded one item at a time.

    json.dumps runs in C and holds the GIL for the whole call: a page of 250
    contacts (about 300 KB) takes 4-13 ms, and meanwhile no other emulator
    thread can read a request that has just arrived (nor stamp it, where the
    kernel gives no receive time) or answer one. Item by item, the
    interpreter can hand the GIL over between items. The bytes are the same
    as one json.dumps call would give.
    """
    embedded = payload.get("_embedded") if isinstance(payload, dict) else None
    if not isinstance(embedded, dict) or not any(isinstance(v, list) for v in embedded.values()):
        return _dumps(payload).encode()
    parts = []
    for key, value in payload.items():
        if key == "_embedded":
            inner = [f"{_dumps(name)}:[{','.join(_dumps(item) for item in items)}]" if isinstance(items, list)
                     else f"{_dumps(name)}:{_dumps(items)}" for name, items in value.items()]
            parts.append(f'"_embedded":{{{",".join(inner)}}}')
        else:
            parts.append(f"{_dumps(str(key))}:{_dumps(value)}")
    return ("{" + ",".join(parts) + "}").encode()


def _json_response(status: int, payload: Any, content_type: str = HAL_JSON) -> Response:
    return Response(status, _encode(payload), content_type)


def _problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    payload = {**extra, "title": title, "type": f"https://httpstatus.es/{status}", "status": status, "detail": detail}
    return _json_response(status, payload, PROBLEM_JSON)


def _oauth_problem(status: int, title: str, detail: str, hint: str | None = None) -> Response:
    payload: dict[str, Any] = {"hint": hint} if hint else {}
    payload.update({"title": title, "type": OAUTH_PROBLEM_TYPE, "status": status, "detail": detail})
    return _json_response(status, payload, PROBLEM_JSON)


def _validation_failed(errors: list[tuple[str, list[dict[str, str]]]]) -> Response:
    return _problem(
        400, "Bad Request", "Request validation failed",
        **{"validation-errors": [{"request_id": request_id, "errors": errs} for request_id, errs in errors]},
    )


def _error(code: str, path: str, detail: str) -> dict[str, str]:
    return {"code": code, "path": path, "detail": detail}


NO_CONTENT = Response(204)
UNAUTHORIZED = _problem(401, "Unauthorized", "Неверный логин или пароль")
PAYMENT_REQUIRED = _problem(402, "Payment Required", "Тариф не позволяет включать покупателей")


class BadRequest(Exception):
    """A malformed parameter: answered with a 400 problem."""


# ---------------------------------------------------------------------------
# Query strings: PHP-style brackets, as amoCRM clients send them.
# ---------------------------------------------------------------------------

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def parse_query(query: str) -> dict[str, Any]:
    """`filter[id][]=1&filter[id][]=2&order[id]=asc` -> nested dicts; `[]` and `[0]` both index."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        match = _KEY.match(key)
        if not match:
            result[key] = value
            continue
        parts = [match.group(1), *_PART.findall(match.group(2))]
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {} if child is None else {"0": child}
                node[part] = child
            node = child
        last = parts[-1]
        if last == "":
            last = str(len(node))
        node[last] = value
    return result


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict):
        def position(key: str) -> tuple[bool, int]:
            return (not key.isdigit(), int(key) if key.isdigit() else 0)

        return [str(value[key]) for key in sorted(value, key=position)]
    return [part for part in str(value).split(",") if part != ""]


def _int(value: Any, name: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


def _range(value: Any, name: str) -> tuple[int | None, int | None] | None:
    """`x[from]`/`x[to]`, a single timestamp (from), or "from,to" as the older docs show."""
    if value is None:
        return None
    if isinstance(value, dict) and ("from" in value or "to" in value):
        low = _int(value["from"], name) if value.get("from", "") != "" else None
        high = _int(value["to"], name) if value.get("to", "") != "" else None
        return low, high
    parts = _as_list(value)
    if not parts:
        return None
    low = _int(parts[0], name)
    high = _int(parts[1], name) if len(parts) > 1 else None
    return low, high


def _in_range(value: int | None, bounds: tuple[int | None, int | None]) -> bool:
    if value is None:
        return False
    low, high = bounds
    return (low is None or value >= low) and (high is None or value <= high)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _hal_page(base: str, path: str, params: dict[str, Any], page: int, limit: int, has_next: bool,
              key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    def href(number: int) -> dict[str, str]:
        return {"href": f"{base}{path}?{_page_query(params, number, limit)}"}

    links = {"self": href(page)}
    if has_next:
        links["next"] = href(page + 1)
    if page > 1:
        links["first"] = href(1)
        links["prev"] = href(page - 1)
    return {"_page": page, "_links": links, "_embedded": {key: items}}


def _page_query(params: dict[str, Any], page: int, limit: int) -> str:
    """The request's own parameters with page and limit replaced, re-encoded with brackets."""
    pairs: list[tuple[str, str]] = []

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                flatten(f"{prefix}[{key}]", inner)
        else:
            pairs.append((prefix, str(value)))

    for key, value in params.items():
        if key not in ("page", "limit"):
            flatten(key, value)
    pairs += [("page", str(page)), ("limit", str(limit))]
    return urlencode(pairs)


def _decode_params(body: bytes, content_type: str) -> dict[str, Any]:
    """OAuth bodies come as JSON (the documented examples) or form-encoded (OAuth clients)."""
    text = body.decode("utf-8", errors="replace")
    if "json" in content_type or text.lstrip().startswith("{"):
        try:
            data = json.loads(text or "{}")
        except ValueError:
            raise BadRequest("Request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("Request body must be an object")
        return data
    return dict(parse_qsl(text, keep_blank_values=True))

