"""The SMSC.ru preset (HUB_SMS_PROVIDER=smsc): its HTTP API, https://smsc.ru/api/http/.

Sending is send.php with login and psw (or apikey), phones, mes, sender,
fmt=3 (answers in JSON), cost=3 (send, and say what it cost) and
charset=utf-8. The answer is {"id", "cnt", "cost", "balance"} or
{"error", "error_code"}. Error codes, as its documentation lists them:

    1 bad parameters          failed (Hub sent something SMSC cannot read)
    2 wrong login/password    the channel stops (nothing sent, nobody suppressed)
    3 not enough money        deferred: it comes back once the balance is topped up
    4 IP blocked for a while  deferred
    5 wrong date format       failed
    6 message prohibited      failed (text or sender name not allowed)
    7 wrong number format     bounced: the number is suppressed
    8 cannot be delivered     bounced
    9 too many same requests  deferred, a minute at least (its flood limit)

Delivery reports: status.php with the ids and phones (comma lists, fmt=3)
answers a status per message; the codes that are final:

    1 delivered, 2 read, 4 link opened      delivered
    3 expired, 20 impossible to deliver,
    23 prohibited, 24 no money              undelivered
    22 wrong number, 25 unavailable number  bounce (the number is suppressed)

-3 (not found), -1 (waiting), 0 (handed to the operator) are asked again
later. SMSC can also POST each status to a URL set in its personal
account (id, phone, status, err), which sms_reports receives.
"""

from __future__ import annotations

from typing import Any

import requests

from hub.api import Delivery, Settings, gettext
from plugins.mailing.sms import PresetChannel, Report, rubles

SMSC_URL = "https://smsc.ru/sys"
CREDENTIALS = {2}
TEMPORARY = {3: 0.0, 4: 60.0, 9: 60.0}  # error code → least seconds to wait
DEAD_NUMBER = {7, 8}
DELIVERED = {1: "delivered", 2: "read", 4: "link opened"}
UNDELIVERED = {3: "expired", 20: "impossible to deliver", 23: "prohibited", 24: "not enough money"}
BOUNCED = {22: "wrong number", 25: "unavailable number"}


class SmscChannel(PresetChannel):
    provider, title, default_url = "smsc", "SMSC.ru", SMSC_URL
    status_batch = 100  # ids per status.php call; longer lists make URLs some proxies refuse

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if str(settings.extra.get("sms_api_key") or "").strip():
            self.auth = {"apikey": self._setting("sms_api_key", "HUB_SMS_API_KEY")}
        else:
            self.auth = {"login": self._setting("sms_login", "HUB_SMS_LOGIN"),
                         "psw": self._setting("sms_password", "HUB_SMS_PASSWORD")}

    def _request(self, number: str, text: str) -> dict[str, Any]:
        form = {**self.auth, "phones": number, "mes": text, "fmt": "3", "cost": "3", "charset": "utf-8"}
        if self.sender:
            form["sender"] = self.sender
        return {"path": "/send.php", "data": form}

    def _read(self, response: requests.Response, number: str) -> Delivery:
        try:
            data = response.json()
        except ValueError:
            return Delivery("unknown", error=f"SMSC.ru: HTTP {response.status_code}, the answer is not JSON")
        if not isinstance(data, dict):
            return Delivery("unknown", error="SMSC.ru: the answer is not a JSON object")
        if "error_code" not in data and "error" not in data:
            if data.get("id") in (None, ""):
                return Delivery("unknown", error="SMSC.ru: accepted without an id")
            return Delivery("sent", provider_id=str(data["id"]), cost=rubles(data.get("cost")))
        code = _int(data.get("error_code"))
        what = f"SMSC.ru {code}: {self._redact(str(data.get('error') or ''))}".strip()[:300]
        if code in CREDENTIALS:
            raise self.refused(f"{code} {data.get('error') or ''}")
        if code in TEMPORARY:
            return Delivery("deferred", error=what, retry_after=TEMPORARY[code] or None)
        if code in DEAD_NUMBER:
            return Delivery("bounced", error=what)
        return Delivery("failed", error=what)

    def statuses(self, sent: list[tuple[str, str]]) -> list[Report]:
        form = {**self.auth, "id": ",".join(pid for pid, _ in sent),
                "phone": ",".join(phone.lstrip("+") for _, phone in sent), "fmt": "3", "all": "1",
                "charset": "utf-8"}
        response = self._call("POST", "/status.php", data=form)
        try:
            data = response.json()
        except ValueError:
            raise self.refused(gettext("HTTP %(status)s without JSON", status=response.status_code)) from None
        if isinstance(data, dict) and ("error_code" in data or "error" in data) and "status" not in data:
            if _int(data.get("error_code")) in CREDENTIALS:
                raise self.refused(f"{data.get('error_code')} {data.get('error') or ''}")
            return []
        entries = data if isinstance(data, list) else [data]
        wanted = {pid for pid, _ in sent}
        return [report(e) for e in entries if isinstance(e, dict) and str(e.get("id")) in wanted]

    @staticmethod
    def callback(form: Any) -> list[Report]:
        """SMSC's status POST: id, phone, status (and err); ValueError when those are not there."""
        pid, status = str(form.get("id") or "").strip(), str(form.get("status") or "").strip()
        if not pid or len(pid) > 100 or _int(status) is None:
            raise ValueError("id and a numeric status are needed")
        return [report({"id": pid, "status": status, "err": form.get("err"), "cost": form.get("cost"),
                        "phone": form.get("phone")})]


def report(entry: dict[str, Any]) -> Report:
    """One status.php entry (or callback) as a Report."""
    pid, code = str(entry.get("id")), _int(entry.get("status"))
    cost = rubles(entry.get("cost"))
    err = _int(entry.get("err"))
    suffix = f" (error {err})" if err else ""
    phone = "".join(ch for ch in str(entry.get("phone") or "")[:40] if ch.isdigit())
    if code in DELIVERED:
        return Report(pid, str(code), "delivered", DELIVERED[code], cost, phone)
    if code in BOUNCED:
        return Report(pid, str(code), "bounce", BOUNCED[code] + suffix, cost, phone)
    if code in UNDELIVERED:
        return Report(pid, str(code), "undelivered", UNDELIVERED[code] + suffix, cost, phone)
    return Report(pid, str(code), None, cost=cost, phone=phone)


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None
