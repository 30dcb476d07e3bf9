"""What travels over the wire: PHP-style parameters, JSON as the portal writes it, value formats, errors."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

MOSCOW = dt.timezone(dt.timedelta(hours=3), "MSK")
PAGE_SIZE = 50
JSON_TYPE = "application/json; charset=utf-8"


class ApiError(Exception):
    """An error answer: HTTP status plus the portal's ``error`` and ``error_description``."""

    def __init__(self, status: int, code: str, description: str = "") -> None:
        super().__init__(f"{status} {code}: {description}")
        self.status = status
        self.code = code
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.code, "error_description": self.description}


def _not_found_method() -> ApiError:
    return ApiError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")


# --------------------------------------------------------------------------- PHP-style parameters


def php_params(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Nest ``a[b][]=x`` pairs the way PHP builds $_REQUEST; arrays keyed 0..n-1 become lists.

    Clients send nested parameters three ways (query string, form body, JSON);
    folding the first two into the JSON shape lets every method read one form.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        bracket = key.find("[")
        if bracket <= 0:
            root[key] = value
            continue
        segments = [key[:bracket]] + re.findall(r"\[([^\]]*)\]", key[bracket:])
        node = root
        for position, segment in enumerate(segments):
            if segment == "":
                numbers = [int(k) for k in node if isinstance(k, str) and k.isdigit()]
                segment = str(max(numbers) + 1 if numbers else 0)
            if position == len(segments) - 1:
                node[segment] = value
            else:
                child = node.get(segment)
                if not isinstance(child, dict):
                    child = {}
                    node[segment] = child
                node = child
    return _listify(root)


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        value = {key: _listify(item) for key, item in value.items()}
        if value and list(value) == [str(index) for index in range(len(value))]:
            return list(value.values())
    return value


def parse_query(text: str) -> dict[str, Any]:
    """A query string or form body with PHP-style keys, as nested dicts and lists."""
    return php_params(parse_qsl(text, keep_blank_values=True))


def php_truthy(value: Any) -> bool:
    """PHP's idea of true: "" and "0" are false, "false" is true."""
    if isinstance(value, str):
        return value not in ("", "0")
    return bool(value)


def php_intval(value: Any) -> int:
    """PHP's intval: leading digits of a string, 0 for anything else."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        match = re.match(r"\s*([+-]?\d+)", value)
        return int(match.group(1)) if match else 0
    return 0


def php_json(value: Any) -> Any:
    """PHP's json_encode shape: an empty map is ``[]`` and a map keyed 0..n-1 is a list."""
    if isinstance(value, dict):
        if not value:
            return []
        if list(value) == [str(index) for index in range(len(value))]:
            return [php_json(item) for item in value.values()]
        return {key: php_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [php_json(item) for item in value]
    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def encode_json(payload: Any) -> bytes:
    """JSON as the portal's PHP writes it: non-ASCII as \\u escapes and slashes as \\/."""
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    return text.replace("/", "\\/").encode("ascii")


# --------------------------------------------------------------------------- values and time


_KIND_BY_TYPE = {
    "integer": "int", "user": "int", "crm_lead": "int", "crm_company": "int", "crm_contact": "int",
    "crm_quote": "int", "crm_category": "int", "double": "float", "date": "date", "datetime": "datetime",
    "crm_multifield": "multi", "enumeration": "int", "boolean": "bool", "object": "object",
}


def _parse_moment(value: Any, tz: dt.tzinfo) -> dt.datetime | None:
    """A datetime from the formats clients send: ISO 8601 (with or without offset) or DD.MM.YYYY[ HH:MM[:SS]]."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=tz)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        iso = text.replace("Z", "+00:00").replace(" ", "T", 1) if "-" in text[:5] else text
        moment = dt.datetime.fromisoformat(iso)
    except ValueError:
        match = re.fullmatch(r"(\d{1,2})\.(\d{1,2})\.(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?", text)
        if not match:
            return None
        day, month, year, hour, minute, second = match.groups()
        try:
            moment = dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def _parse_date(value: Any, tz: dt.tzinfo) -> dt.date | None:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    moment = _parse_moment(value, tz)
    return moment.astimezone(tz).date() if moment else None


def _typed(kind: str, value: Any, tz: dt.tzinfo) -> Any:
    """A filter or field value converted to the Python type the records hold."""
    if kind == "int":
        return php_intval(value)
    if kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            return 0.0
    if kind == "datetime":
        moment = _parse_moment(value, tz)
        return None if moment is None else moment.timestamp()
    if kind == "date":
        return _parse_date(value, tz)
    if value is None:
        return None
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


# Tells the HTTP server to cut this answer off mid-body; never sent (Portal.cut_answers).
CUT_HEADER = "X-Sandbox-Cut"


def _json_answer(status: int, payload: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": JSON_TYPE}, encode_json(payload)


@dataclass
class _Answer:
    result: Any
    total: int | None = None
    next: int | None = None
    cost: float = 0.0  # modelled server time on top of the real processing time
