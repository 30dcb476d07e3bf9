"""A small Bot API client: one method call, its answer or a BotError in Telegram's own terms.

Telegram answers every method with {"ok": true, "result": ...} or
{"ok": false, "error_code": N, "description": "...", "parameters":
{"retry_after": S}}. The token is part of the URL, so it is kept out of this
object's repr, out of every error text, and out of urllib3's debug log lines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests
import urllib3.exceptions

from plugins.telegram.config import BotSettings

_DEBUG_LOGGERS = ("urllib3.connectionpool",)  # logs "POST /bot<token>/sendMessage" at debug level


@dataclass
class BotError(Exception):
    """Telegram said no (code is Telegram's error_code), or could not be asked (code 0)."""

    code: int
    description: str
    retry_after: float | None = None
    never_sent: bool = False  # code 0: no connection was made, the request certainly did not arrive

    def __str__(self) -> str:
        return f"{self.code}: {self.description}" if self.code else self.description


class _Redact(logging.Filter):
    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if self.secret in text:
            record.msg, record.args = text.replace(self.secret, "<token>"), None
        return True


class Bot:
    def __init__(self, config: BotSettings) -> None:
        self.config = config
        self.session = requests.Session()
        self._redact = _Redact(config.token)
        for name in _DEBUG_LOGGERS:
            logging.getLogger(name).addFilter(self._redact)

    def __repr__(self) -> str:
        return f"Bot({self.config.api_url!r})"

    def close(self) -> None:
        self.session.close()
        for name in _DEBUG_LOGGERS:
            logging.getLogger(name).removeFilter(self._redact)

    def __enter__(self) -> "Bot":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, **params: Any) -> Any:
        """The method's result; BotError otherwise (its text never holds the token)."""
        url = f"{self.config.api_url}/bot{self.config.token}/{method}"
        timeout = self.config.timeout + float(params.get("timeout") or 0)
        try:
            answer = self.session.post(url, json=params, timeout=timeout)
        except requests.RequestException as exc:
            raise BotError(0, f"Telegram could not be reached ({type(exc).__name__})",
                           never_sent=_never_sent(exc)) from None
        try:
            data = answer.json()
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
            raise BotError(answer.status_code if answer.status_code >= 400 else 500,
                           f"HTTP {answer.status_code} without a Bot API answer")
        if data["ok"]:
            return data.get("result")
        error_code = data.get("error_code")
        code = error_code if isinstance(error_code, int) else answer.status_code
        parameters: dict[str, Any] = data["parameters"] if isinstance(data.get("parameters"), dict) else {}
        retry_after = parameters.get("retry_after")
        retry = float(retry_after) if isinstance(retry_after, (int, float)) and retry_after >= 0 else None
        description = self.config.redact(str(data.get("description") or f"HTTP {answer.status_code}"))[:300]
        raise BotError(code, description, retry)


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly did not reach Telegram: no connection was ever made."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or isinstance(exc, requests.ReadTimeout):
        return False
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3 wraps the cause in MaxRetryError
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))
