"""One local emulator of the three SMS providers' APIs, for the demo and the tests (`hub sandbox sms`).

It answers in each provider's documented shapes, on the paths a preset's
HUB_SMS_URL leads to:

    SMS.ru     /sms/send, /sms/status, /my/balance    api_id in the form or query; JSON with json=1
    SMSC.ru    /sys/send.php, /sys/status.php         login+psw or apikey; fmt=3 JSON; error_code 1-9
    SMS Aero   /v2/sms/send, /v2/sms/status, /v2/balance   HTTP basic auth (e-mail, API key)

So HUB_SMS_URL is BASE for smsru, BASE/sys for smsc and BASE/v2 for smsaero.
The numbers say what happens, as a real network would:

    7900000xxxx   does not exist: refused at sending (SMS.ru 207, SMSC 7, SMS Aero
                  validation error), and a bounce in reports for SMSC (22)
    7999000xxxx   the provider's limit: SMS.ru 220, SMSC 9, SMS Aero HTTP 429 with Retry-After
    7988000xxxx   accepted, then not delivered (SMS.ru 104, SMSC 20, SMS Aero 2)
    7977000xxxx   accepted, then reported as a wrong number (SMSC 22; SMS.ru 106, SMS Aero 2)
    any other     accepted and delivered

A message is accepted with the price of its parts (PRICE per part) and is
"handed to the operator" until its status is first asked for: from then on
the final status is reported (so a poll after a send sees the final word).
Every request is kept in `requests` for tests to read.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click

from hub.api import BackgroundServer, gettext, serve_until_interrupted, text_parts

PRICE = Decimal("2.50")
API_KEY = "sandbox-api-key-0000"
LOGIN, PASSWORD = "sandbox", "sandbox-password"
EMAIL = "shop@sandbox.example"
BALANCE = Decimal("1000.00")


@dataclass
class Sent:
    id: str
    provider: str
    phone: str
    text: str
    parts: int
    asked: bool = False


@dataclass
class SmsProviders:
    """The emulated accounts: what was sent, and every request seen (path, form)."""

    sent: dict[str, Sent] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    balance: Decimal = BALANCE
    lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 1000

    def accept(self, provider: str, phone: str, text: str) -> Sent:
        with self.lock:
            self._next += 1
            ident = f"{self._next}" if provider != "smsru" else f"{self._next:06d}-{self._next:07d}"
            item = Sent(ident, provider, phone, text, text_parts(text))
            self.sent[ident] = item
            self.balance -= self.cost(item)
            return item

    @staticmethod
    def cost(item: Sent) -> Decimal:
        return PRICE * item.parts

    def look(self, ident: str) -> Sent | None:
        """The message as a status request sees it: asked once, it has reached its final state."""
        with self.lock:
            item = self.sent.get(ident)
            if item is None:
                return None
            was = item.asked
            item.asked = True
            return Sent(item.id, item.provider, item.phone, item.text, item.parts, was)


def fate(phone: str) -> str:
    digits = phone.lstrip("+")
    for prefix, what in (("7900000", "dead"), ("7999000", "limit"), ("7988000", "undelivered"),
                         ("7977000", "wrong")):
        if digits.startswith(prefix):
            return what
    return "ok"


class Handler(BaseHTTPRequestHandler):
    server_version = "sms-sandbox"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def state(self) -> SmsProviders:
        return self.server.emulator  # type: ignore[attr-defined]

    def _form(self) -> dict[str, str]:
        url = urlsplit(self.path)
        found = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1_000_000)).decode("utf-8", "replace") if length else ""
        if body and "json" in (self.headers.get("Content-Type") or ""):
            try:
                data = json.loads(body)
            except ValueError:
                data = {}
            found |= {str(k): str(v) for k, v in (data.items() if isinstance(data, dict) else [])}
        elif body:
            found |= {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        return found

    def _send(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        body = (data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8" if not isinstance(data, str)
                         else "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        form = self._form()
        self.state.requests.append((path, {k: v for k, v in form.items() if k not in ("api_id", "psw", "apikey")}))
        routes = {"/sms/send": self._smsru_send, "/sms/status": self._smsru_status, "/my/balance": self._smsru_balance,
                  "/sys/send.php": self._smsc_send, "/sys/status.php": self._smsc_status,
                  "/v2/sms/send": self._aero_send, "/v2/sms/status": self._aero_status,
                  "/v2/balance": self._aero_balance}
        route = routes.get(path)
        if route is None:
            self._send(404, {"error": "not found"})
            return
        route(form)

    # --- SMS.ru ------------------------------------------------------------------------------

    def _smsru_auth(self, form: dict[str, str]) -> bool:
        if form.get("api_id") == API_KEY:
            return True
        self._send(200, {"status": "ERROR", "status_code": 200, "status_text": "Неправильный api_id"})
        return False

    def _smsru_send(self, form: dict[str, str]) -> None:
        if not self._smsru_auth(form):
            return
        numbers = [n.strip() for n in form.get("to", "").split(",") if n.strip()]
        if not numbers or not form.get("msg"):
            self._send(200, {"status": "ERROR", "status_code": 202 if not numbers else 204,
                             "status_text": "Неправильно указан получатель" if not numbers else "Пустое сообщение"})
            return
        out: dict[str, Any] = {}
        for number in numbers:
            what = fate(number)
            if what == "dead":
                out[number] = {"status": "ERROR", "status_code": 207,
                               "status_text": "На этот номер нельзя отправлять сообщения"}
            elif what == "limit":
                out[number] = {"status": "ERROR", "status_code": 220,
                               "status_text": "Сервис временно недоступен, попробуйте чуть позже"}
            else:
                item = self.state.accept("smsru", number, form["msg"])
                out[number] = {"status": "OK", "status_code": 100, "sms_id": item.id}
        self._send(200, {"status": "OK", "status_code": 100, "sms": out, "balance": float(self.state.balance)})

    def _smsru_status(self, form: dict[str, str]) -> None:
        if not self._smsru_auth(form):
            return
        out: dict[str, Any] = {}
        for ident in [i.strip() for i in form.get("sms_id", "").split(",") if i.strip()][:100]:
            item = self.state.look(ident)
            if item is None:
                out[ident] = {"status": "ERROR", "status_code": -1, "status_text": "Сообщение не найдено"}
                continue
            if not item.asked:
                out[ident] = {"status": "OK", "status_code": 102, "status_text": "Сообщение отправлено"}
                continue
            what = fate(item.phone)
            code, text = ((104, "Не может быть доставлено: время жизни истекло") if what == "undelivered" else
                          (106, "Не может быть доставлено: сбой в телефоне") if what == "wrong" else
                          (103, "Сообщение доставлено"))
            out[ident] = {"status": "OK", "status_code": code, "status_text": text,
                          "cost": float(self.state.cost(item)), "sms_status": code}
        self._send(200, {"status": "OK", "status_code": 100, "sms": out, "balance": float(self.state.balance)})

    def _smsru_balance(self, form: dict[str, str]) -> None:
        if self._smsru_auth(form):
            self._send(200, {"status": "OK", "status_code": 100, "balance": float(self.state.balance)})

    # --- SMSC.ru -----------------------------------------------------------------------------

    def _smsc_auth(self, form: dict[str, str]) -> bool:
        if form.get("apikey") == API_KEY or (form.get("login") == LOGIN and form.get("psw") == PASSWORD):
            return True
        self._send(200, {"error": "authorise error", "error_code": 2})
        return False

    def _smsc_send(self, form: dict[str, str]) -> None:
        if not self._smsc_auth(form):
            return
        phone, text = form.get("phones", "").strip(), form.get("mes", "")
        if not phone or not text:
            self._send(200, {"error": "parameters error", "error_code": 1})
            return
        what = fate(phone)
        if what == "dead":
            self._send(200, {"error": "invalid number", "error_code": 7})
            return
        if what == "limit":
            self._send(200, {"error": "duplicate request, wait a minute", "error_code": 9})
            return
        item = self.state.accept("smsc", phone, text)
        answer: dict[str, Any] = {"id": int(item.id), "cnt": item.parts}
        if form.get("cost") in ("2", "3"):
            answer |= {"cost": f"{self.state.cost(item):.2f}", "balance": f"{self.state.balance:.2f}"}
        self._send(200, answer)

    def _smsc_status(self, form: dict[str, str]) -> None:
        if not self._smsc_auth(form):
            return
        ids = [i.strip() for i in form.get("id", "").split(",") if i.strip()]
        phones = [p.strip() for p in form.get("phone", "").split(",") if p.strip()]
        if not ids or len(ids) != len(phones):
            self._send(200, {"error": "parameters error", "error_code": 1})
            return
        out = []
        for ident, phone in zip(ids, phones, strict=True):
            item = self.state.look(ident)
            if item is None or item.phone.lstrip("+") != phone.lstrip("+"):
                out.append({"id": ident, "status": -3, "err": 0})
                continue
            what = fate(item.phone)
            status, err = ((0, 0) if not item.asked else (20, 1) if what == "undelivered" else
                           (22, 0) if what == "wrong" else (1, 0))
            entry: dict[str, Any] = {"id": int(ident), "status": status, "last_date": "06.12.2026 10:00:00",
                                     "last_timestamp": 1796551200, "err": err}
            if form.get("all") in ("1", "2"):
                entry |= {"cost": f"{self.state.cost(item):.2f}", "phone": item.phone, "sms_cnt": item.parts}
            out.append(entry)
        self._send(200, out if len(ids) > 1 else out[0])

    # --- SMS Aero ----------------------------------------------------------------------------

    def _aero_auth(self) -> bool:
        expected = "Basic " + base64.b64encode(f"{EMAIL}:{API_KEY}".encode()).decode()
        if self.headers.get("Authorization") == expected:
            return True
        self._send(401, {"success": False, "data": None, "message": "Unauthorized."})
        return False

    def _aero_send(self, form: dict[str, str]) -> None:
        if not self._aero_auth():
            return
        number, text, sign = form.get("number", "").strip(), form.get("text", ""), form.get("sign", "")
        if not number or fate(number) == "dead":
            self._send(400, {"success": False, "data": {"number": ["Invalid phone number."]},
                             "message": "Validation error."})
            return
        if not text or not sign:
            self._send(400, {"success": False, "data": {"text" if not text else "sign": ["Field is required."]},
                             "message": "Validation error."})
            return
        if fate(number) == "limit":
            self._send(429, {"success": False, "data": None, "message": "Too Many Requests."}, {"Retry-After": "30"})
            return
        item = self.state.accept("smsaero", number, text)
        self._send(200, {"success": True, "data": self._aero_data(item, 8, "moderation"), "message": None})

    def _aero_data(self, item: Sent, status: int, extended: str) -> dict[str, Any]:
        return {"id": int(item.id), "from": "SMS Aero", "number": item.phone, "text": item.text, "status": status,
                "extendStatus": extended, "channel": "FREE SIGN", "cost": f"{self.state.cost(item):.2f}",
                "dateCreate": 1796551200, "dateSend": 1796551200}

    def _aero_status(self, form: dict[str, str]) -> None:
        if not self._aero_auth():
            return
        item = self.state.look(form.get("id", "").strip())
        if item is None:
            self._send(404, {"success": False, "data": None, "message": "Message not found."})
            return
        what = fate(item.phone)
        status, extended = ((3, "transfer") if not item.asked else
                            (2, "undelivered") if what in ("undelivered", "wrong") else (1, "delivery"))
        self._send(200, {"success": True, "data": self._aero_data(item, status, extended), "message": None})

    def _aero_balance(self, form: dict[str, str]) -> None:
        if self._aero_auth():
            self._send(200, {"success": True, "data": {"balance": float(self.state.balance)}, "message": None})


def start(host: str = "127.0.0.1", port: int = 0) -> BackgroundServer:
    """The emulator serving on a background thread; its state is `server.httpd.emulator`."""
    return BackgroundServer(Handler, host=host, port=port, emulator=SmsProviders(), name="sms-sandbox").start()


def settings_for(base_url: str, provider: str) -> dict[str, str]:
    """The settings (extra keys) that point each preset at the emulator with its sample credentials."""
    if provider == "smsru":
        return {"sms_provider": "smsru", "sms_url": base_url, "sms_api_key": API_KEY}
    if provider == "smsc":
        return {"sms_provider": "smsc", "sms_url": base_url + "/sys", "sms_login": LOGIN, "sms_password": PASSWORD}
    if provider == "smsaero":
        return {"sms_provider": "smsaero", "sms_url": base_url + "/v2", "sms_email": EMAIL, "sms_api_key": API_KEY}
    raise ValueError(f"unknown SMS provider {provider!r}")


@click.command("sms")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8026, show_default=True, help="Port to listen on.")
def sandbox_command(host: str, port: int) -> None:
    """Local SMS.ru, SMSC.ru and SMS Aero APIs with their answers and error codes (Ctrl+C stops it)."""
    server = start(host, port)
    click.echo(gettext("SMS providers' emulator at %(url)s; point Hub at it with:", url=server.base_url))
    for provider in ("smsru", "smsc", "smsaero"):
        line = " ".join(f"HUB_{k.upper()}={v}" for k, v in settings_for(server.base_url, provider).items())
        click.echo(f"  {line}")
    click.echo(gettext("Numbers 7900000…: do not exist; 7999000…: the provider's limit; 7988000…: not delivered."))
    serve_until_interrupted(server.stop)
