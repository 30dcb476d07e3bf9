"""The SMS Aero preset (HUB_SMS_PROVIDER=smsaero): its API v2, https://smsaero.ru/integration/documentation/api/.

Every call uses HTTP basic auth: the account's e-mail (HUB_SMS_EMAIL) and
its API key (HUB_SMS_API_KEY). Sending is POST /v2/sms/send with number,
text and sign (the sender name; "SMS Aero" when none is set); the answer
is {"success": true, "data": {"id", "status", "extendStatus", "cost", ...}}
or {"success": false, "data": ..., "message": "..."}. How Hub reads it:

    success                                 sent, with the id and the cost
    HTTP 401 / 403                          the channel stops (wrong e-mail or key)
    HTTP 429, 5xx                           deferred (Retry-After honoured)
    a validation error about the number     bounced: the number is suppressed
    a message about money or limits         deferred
    any other refusal (text, sign)          failed

Delivery reports: GET /v2/sms/status?id=N, one message per call, answers
the same data; status 1 delivered; 2 not delivered and 6 rejected are
undelivered; 0 queued, 3 handed to the operator, 4 waiting for the status,
8 on moderation are asked again later. SMS Aero reports no dead numbers
apart from the validation at sending, and has no status callback.
"""

from __future__ import annotations

from typing import Any

import requests

from hub.api import Delivery, Settings
from plugins.mailing.sms import PresetChannel, Report, rubles

SMSAERO_URL = "https://gate.smsaero.ru/v2"
DEFAULT_SIGN = "SMS Aero"  # the shared sender name every account may use
DELIVERED = {1: "delivered"}
UNDELIVERED = {2: "not delivered", 6: "rejected"}
# Words of its refusals that mean "later": the balance, the limits, the queue.
TEMPORARY_WORDS = ("balance", "money", "funds", "limit", "too many", "недостаточно", "баланс", "лимит")


class SmsAeroChannel(PresetChannel):
    provider, title, default_url = "smsaero", "SMS Aero", SMSAERO_URL
    status_batch = 50  # messages asked per round; the API takes one id per call

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.auth = (self._setting("sms_email", "HUB_SMS_EMAIL"), self._setting("sms_api_key", "HUB_SMS_API_KEY"))

    def _request(self, number: str, text: str) -> dict[str, Any]:
        return {"path": "/sms/send", "auth": self.auth,
                "json": {"number": number, "text": text, "sign": self.sender or DEFAULT_SIGN}}

    def _read(self, response: requests.Response, number: str) -> Delivery:
        if response.status_code in (401, 403):
            raise self.refused(f"HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            return Delivery("unknown", error=f"SMS Aero: HTTP {response.status_code}, the answer is not JSON")
        if not isinstance(data, dict):
            return Delivery("unknown", error="SMS Aero: the answer is not a JSON object")
        found = data.get("data")
        body: dict[str, Any] = found if isinstance(found, dict) else {}
        if data.get("success") is True:
            if body.get("id") in (None, ""):
                return Delivery("unknown", error="SMS Aero: accepted without an id")
            return Delivery("sent", provider_id=str(body["id"]), cost=rubles(body.get("cost")))
        message = self._redact(str(data.get("message") or ""))
        what = f"SMS Aero: {message} {self._redact(_flat(body))}".strip()[:300]
        if "number" in body:
            return Delivery("bounced", error=what)
        if any(word in message.lower() for word in TEMPORARY_WORDS):
            return Delivery("deferred", error=what)
        return Delivery("failed", error=what)

    def statuses(self, sent: list[tuple[str, str]]) -> list[Report]:
        found = []
        for pid, _ in sent:
            response = self._call("GET", "/sms/status", params={"id": pid}, auth=self.auth)
            if response.status_code in (401, 403):
                raise self.refused(f"HTTP {response.status_code}")
            try:
                data = response.json()
            except ValueError:
                continue
            body = data.get("data") if isinstance(data, dict) else None
            if isinstance(body, dict) and data.get("success") is True and str(body.get("id")) == pid:
                found.append(report(body))
        return found


def report(body: dict[str, Any]) -> Report:
    pid, cost = str(body.get("id")), rubles(body.get("cost"))
    try:
        code = int(body.get("status"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return Report(pid, str(body.get("status")), None, cost=cost)
    extended = str(body.get("extendStatus") or "")[:100]
    if code in DELIVERED:
        return Report(pid, str(code), "delivered", extended or DELIVERED[code], cost)
    if code in UNDELIVERED:
        return Report(pid, str(code), "undelivered", extended or UNDELIVERED[code], cost)
    return Report(pid, str(code), None, cost=cost)


def _flat(body: dict[str, Any]) -> str:
    """A validation answer's fields in one line: number: Invalid phone number."""
    return "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in body.items())
