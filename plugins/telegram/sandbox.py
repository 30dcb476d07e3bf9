"""A local Telegram Bot API for the demo and the tests: the methods Hub calls, in their documented shapes.

Methods (POST or GET /bot<TOKEN>/<method>, parameters as JSON, a form or the
query string): getMe, sendMessage, getUpdates, setWebhook (url,
secret_token), deleteWebhook, getWebhookInfo. Answers are
{"ok": true, "result": ...} or {"ok": false, "error_code": N,
"description": "..."}, with the real texts: 401 "Unauthorized" for another
token, 404 "Not Found" for an unknown method, 400 "Bad Request: chat not
found" for a chat that never pressed Start, 403 "Forbidden: bot was blocked
by the user", 409 for getUpdates while a webhook is set, and 429 "Too Many
Requests: retry after N" with parameters.retry_after when more than 30
messages arrive within a second, or more than one in one chat (counted on
arrival).

The user side (`User` methods in Python, POST /_user/start and /_user/block
over HTTP) stands for people: pressing Start on a deep link (the update
goes to the webhook at once, with the secret header, and a reply in the
webhook's answer is carried out; without a webhook it waits for getUpdates),
writing /stop, blocking the bot. `sent` lists every message delivered.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from hub.api import BackgroundServer, serve_until_interrupted

TOKEN = "123456789:AAHubSandboxTokenForTheLocalBotApi_x"
BOT = {"id": 123456789, "is_bot": True, "first_name": "Магазин", "username": "hub_shop_bot",
       "can_join_groups": False, "can_read_all_group_messages": False, "supports_inline_queries": False}
OVERALL_PER_SECOND = 30
PER_CHAT_PER_SECOND = 1


@dataclass
class Sent:
    chat_id: int
    text: str
    message_id: int
    at: float  # monotonic, on arrival


@dataclass
class BotApi:
    token: str = TOKEN
    bot: dict[str, Any] = field(default_factory=lambda: dict(BOT))
    sent: list[Sent] = field(default_factory=list)
    refused: list[tuple[int, int, str]] = field(default_factory=list)  # (chat, code, description)
    pending: list[dict[str, Any]] = field(default_factory=list)
    started: set[int] = field(default_factory=set)  # chats that pressed Start
    blocked: set[int] = field(default_factory=set)
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_answers: list[int] = field(default_factory=list)
    throttle_next: list[int] = field(default_factory=list)  # retry_after for the next sendMessage calls
    calls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._update_id = 500_000
        self._message_id = 0
        self._arrivals: deque[float] = deque()
        self._chat_arrivals: dict[int, float] = {}

    # --- the Bot API --------------------------------------------------------------------

    def answer(self, token: str, method: str, params: dict[str, Any], arrived: float) -> tuple[int, dict[str, Any]]:
        if token != self.token:
            return _error(401, "Unauthorized")
        with self.lock:
            self.calls.append(method)
        handler = getattr(self, f"_m_{method.lower()}", None)
        if handler is None:
            return _error(404, "Not Found")
        return handler(params, arrived)

    def _m_getme(self, params: dict[str, Any], arrived: float) -> tuple[int, dict[str, Any]]:
        return 200, {"ok": True, "result": self.bot}

    def _m_sendmessage(self, params: dict[str, Any], arrived: float) -> tuple[int, dict[str, Any]]:
        chat = _integer(params.get("chat_id"))
        text = params.get("text")
        if chat is None:
            return _error(400, "Bad Request: chat_id is empty")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        with self.lock:
            if self.throttle_next:
                return self._refuse(chat, *_error(429, "Too Many Requests: retry after "
                                                  f"{self.throttle_next[0]}", self.throttle_next.pop(0)))
            while self._arrivals and arrived - self._arrivals[0] >= 1.0:
                self._arrivals.popleft()
            if len(self._arrivals) >= OVERALL_PER_SECOND:
                return self._refuse(chat, *_error(429, "Too Many Requests: retry after 1", 1))
            last = self._chat_arrivals.get(chat)
            if last is not None and arrived - last < 1.0 / PER_CHAT_PER_SECOND:
                return self._refuse(chat, *_error(429, "Too Many Requests: retry after 1", 1))
            if chat not in self.started:
                return self._refuse(chat, *_error(400, "Bad Request: chat not found"))
            if chat in self.blocked:
                return self._refuse(chat, *_error(403, "Forbidden: bot was blocked by the user"))
            self._arrivals.append(arrived)
            self._chat_arrivals[chat] = arrived
            self._message_id += 1
            self.sent.append(Sent(chat, text, self._message_id, arrived))
            return 200, {"ok": True, "result": {
                "message_id": self._message_id, "from": self.bot, "date": int(time.time()),
                "chat": {"id": chat, "type": "private"}, "text": text}}

    def _refuse(self, chat: int, status: int, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.refused.append((chat, body["error_code"], body["description"]))
        return status, body

    def _m_getupdates(self, params: dict[str, Any], arrived: float) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if self.webhook_url:
                return _error(409, "Conflict: can't use getUpdates method while webhook is active; use "
                                   "deleteWebhook to delete the webhook first")
            offset = _integer(params.get("offset")) or 0
            limit = min(max(_integer(params.get("limit")) or 100, 1), 100)
            if offset:  # confirmed: forget what came before
                self.pending = [u for u in self.pending if u["update_id"] >= offset]
            return 200, {"ok": True, "result": self.pending[:limit]}

    def _m_setwebhook(self, params: dict[str, Any], arrived: float) -> tuple[int, dict[str, Any]]:
        url = str(params.get("url") or "")
        secret = str(params.get("secret_token") or "")
        if url and not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            return _error(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        with self.lock:
            self.webhook_url, self.webhook_secret = url, secret
        return 200, {"ok": True, "result": True, "description": "Webhook was set" if url else "Webhook was deleted"}

    def _m_deletewebhook(self, params: dict[str, Any], arrived: float) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.webhook_url, self.webhook_secret = "", ""
        return 200, {"ok": True, "result": True, "description": "Webhook was deleted"}

    def _m_getwebhookinfo(self, params: dict[str, Any], arrived: float) -> tuple[int, dict[str, Any]]:
        with self.lock:
            return 200, {"ok": True, "result": {"url": self.webhook_url, "has_custom_certificate": False,
                                                "pending_update_count": len(self.pending)}}

    # --- people -------------------------------------------------------------------------

    def write(self, user_id: int, text: str, username: str | None = None) -> dict[str, Any]:
        """A person writes `text` to the bot; the update goes to the webhook, or waits for getUpdates."""
        with self.lock:
            self._update_id += 1
            self.started.add(user_id)
            if text.startswith("/start"):
                self.blocked.discard(user_id)  # pressing Start again unblocks the bot
            person = {"id": user_id, "is_bot": False, "first_name": "Покупатель", "language_code": "ru"}
            if username:
                person["username"] = username
            command = text.split(" ", 1)[0]
            update = {"update_id": self._update_id, "message": {
                "message_id": self._update_id, "from": person, "date": int(time.time()),
                "chat": {"id": user_id, "type": "private", "first_name": "Покупатель",
                         **({"username": username} if username else {})},
                "text": text,
                **({"entities": [{"type": "bot_command", "offset": 0, "length": len(command)}]}
                   if text.startswith("/") else {})}}
            url, secret = self.webhook_url, self.webhook_secret
            if not url:
                self.pending.append(update)
                return update
        self._deliver(url, secret, update)
        return update

    def press_start(self, user_id: int, payload: str | None, username: str | None = None) -> dict[str, Any]:
        """The person opened t.me/BOT?start=PAYLOAD and pressed Start."""
        return self.write(user_id, f"/start {payload}" if payload else "/start", username)

    def block(self, user_id: int) -> None:
        with self.lock:
            self.blocked.add(user_id)

    def _deliver(self, url: str, secret: str, update: dict[str, Any]) -> None:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
        try:
            answer = requests.post(url, json=update, headers=headers, timeout=10)
        except requests.RequestException:
            with self.lock:
                self.webhook_answers.append(0)
                self.pending.append(update)
            return
        with self.lock:
            self.webhook_answers.append(answer.status_code)
        if answer.status_code != 200:
            return
        try:
            body = answer.json()
        except ValueError:
            return
        if isinstance(body, dict) and isinstance(body.get("method"), str):
            params = {k: v for k, v in body.items() if k != "method"}
            self.answer(self.token, body["method"], params, time.monotonic())

    def texts_to(self, chat_id: int) -> list[str]:
        with self.lock:
            return [s.text for s in self.sent if s.chat_id == chat_id]


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def _error(code: int, description: str, retry_after: int | None = None) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return code, body


class _Handler(BaseHTTPRequestHandler):
    server_version = "nginx"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # the token is in every path: log nothing
        pass

    def _params(self) -> dict[str, Any]:
        parts = urlsplit(self.path)
        params: dict[str, Any] = dict(parse_qsl(parts.query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        kind = self.headers.get("Content-Type") or ""
        if raw and "json" in kind:
            body = json.loads(raw)
            if isinstance(body, dict):
                params.update(body)
        elif raw:
            params.update(parse_qsl(raw.decode("utf-8", "replace")))
        return params

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        arrived = time.monotonic()
        api: BotApi = self.server.emulator  # type: ignore[attr-defined]
        try:
            params = self._params()
        except ValueError:
            self._reply(*_error(400, "Bad Request: can't parse JSON object"))
            return
        path = urlsplit(self.path).path
        if path == "/_user/start" or path == "/_user/write":
            user = _integer(params.get("user_id"))
            if user is None:
                self._reply(400, {"ok": False, "description": "user_id is a number"})
                return
            text = str(params.get("text") or "") if path == "/_user/write" else None
            update = (api.write(user, text) if text is not None
                      else api.press_start(user, params.get("payload"), params.get("username")))
            self._reply(200, {"ok": True, "result": update})
            return
        if path == "/_user/block":
            user = _integer(params.get("user_id"))
            if user is not None:
                api.block(user)
            self._reply(200, {"ok": user is not None})
            return
        if path == "/_sandbox/sent":
            with api.lock:
                self._reply(200, {"ok": True, "result": [s.__dict__ for s in api.sent]})
            return
        segments = path.strip("/").split("/")
        if len(segments) != 2 or not segments[0].startswith("bot"):
            self._reply(*_error(404, "Not Found"))
            return
        self._reply(*api.answer(segments[0][3:], segments[1], params, arrived))

    do_GET = _serve
    do_POST = _serve


class Sandbox:
    """The emulator on a local port: `api` is the Bot API's state, `url` goes into HUB_TELEGRAM_API_URL."""

    def __init__(self, api: BotApi | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api = api or BotApi()
        self.server = BackgroundServer(_Handler, host=host, port=port, emulator=self.api, name="telegram")

    @property
    def url(self) -> str:
        return self.server.base_url

    def start(self) -> "Sandbox":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(host: str, port: int) -> None:
    running = Sandbox(host=host, port=port).start()
    print(f"Telegram Bot API emulator on {running.url}\n"
          f"  HUB_TELEGRAM_API_URL={running.url}\n  HUB_TELEGRAM_BOT_TOKEN={TOKEN}\n"
          f"  HUB_TELEGRAM_BOT_NAME={BOT['username']}\n"
          f"A person presses Start: curl -d user_id=1001 -d payload=PAYLOAD {running.url}/_user/start", flush=True)
    serve_until_interrupted(running.stop)
