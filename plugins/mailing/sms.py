"""SMS over an HTTP gateway: a generic JSON provider, and presets for SMS.ru, SMSC.ru and SMS Aero.

Settings (settings.extra):

    sms_provider      HUB_SMS_PROVIDER     generic (default) | smsru | smsc | smsaero
    sms_url           HUB_SMS_URL          where to POST (generic: required; a preset: its base URL, e.g. an emulator)
    sms_auth_header   HUB_SMS_AUTH_HEADER  generic: one header, "Authorization: Bearer KEY"
    sms_api_key       HUB_SMS_API_KEY      smsru: the api_id; smsc: an API key instead of login and password;
                                           smsaero: the API key
    sms_login         HUB_SMS_LOGIN        smsc: the login
    sms_password      HUB_SMS_PASSWORD     smsc: the password
    sms_email         HUB_SMS_EMAIL        smsaero: the account's e-mail
    sms_body          HUB_SMS_BODY         generic: the JSON body, a template (see DEFAULT_BODY)
    sms_id_field      HUB_SMS_ID_FIELD     generic: where the answer holds the message id ("id", "data.id")
    sms_sender        HUB_SMS_SENDER       the sender name, when the provider lets you choose one
    sms_timeout       HUB_SMS_TIMEOUT      seconds (default 10)

The presets (smsru here, smsc.py, smsaero.py) also read delivery reports
(`statuses`, polled by sms_reports) and say what the provider charged.

How an answer is read. Generic: HTTP 2xx is sent; 401 and 403 stop the
channel (the key is wrong, nothing is sent or suppressed); 408, 425, 429 and
5xx are temporary; any other 4xx is permanent for that number, which is
suppressed. A gateway that cannot be reached is temporary. A gateway that
took the request and then did not answer in time may have sent the SMS, so
the message is marked `unknown` for review rather than sent twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from jinja2 import StrictUndefined, TemplateError

# not in hub.api on purpose: the SMS gateway's body template renders in the templates' sandbox
from hub import template_sandbox
from hub.api import whole_number
from hub.api import ChannelUnavailable, Delivery, Outgoing, Settings, SettingsError, gettext, text_parts

DEFAULT_TIMEOUT = 10.0
DEFAULT_BODY = ('{"to": {{ phone|tojson }}, "text": {{ text|tojson }}'
                '{% if sender %}, "from": {{ sender|tojson }}{% endif %}}')
SMSRU_URL = "https://sms.ru/sms/send"
SMSRU_STATUS_URL = "https://sms.ru/sms/status"
# SMS.ru status codes (its API documentation): 100 accepted; the number itself
# is wrong or refuses messages; limits and money that will come back; the key.
SMSRU_DEAD_NUMBER = {202, 207}
SMSRU_TEMPORARY = {201, 206, 220, 230, 231, 232}
SMSRU_CREDENTIALS = {200, 300, 301, 302}
# Its delivery statuses (sms/status and the callback): 103 delivered, 110 read; 104-108, 150 not delivered;
# -1 not found, 100-102 still on the way.
SMSRU_DELIVERED = {103, 110}
SMSRU_UNDELIVERED = {104: "expired", 105: "deleted by the operator", 106: "phone failure", 107: "unknown reason",
                     108: "rejected", 150: "no route to the number"}
PRESETS = ("generic", "smsru", "smsc", "smsaero")
MAX_RETRY_AFTER = 3600.0  # seconds: a provider asking for more is waited out by Hub's own backoff

# The body template comes from settings; it gets the same immutable, bounded sandbox as message templates.
_env = template_sandbox.LimitedSandbox(undefined=StrictUndefined, autoescape=False)


def _timeout(settings: Settings) -> float:
    raw = settings.extra.get("sms_timeout") or DEFAULT_TIMEOUT
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise SettingsError(gettext("HUB_SMS_TIMEOUT: %(value)r is not a number of seconds", value=raw)) from None


def _reached_gateway(exc: requests.RequestException) -> bool:
    """False when the connection was never made, so the gateway cannot have sent anything."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    seen: list[Any] = [exc]
    while seen:
        item = seen.pop()
        name = type(item).__name__
        if name in ("NewConnectionError", "ConnectTimeoutError", "NameResolutionError", "ConnectionRefusedError"):
            return False
        seen.extend(a for a in getattr(item, "args", ()) if isinstance(a, BaseException))
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            seen.append(reason)
        if isinstance(item.__context__, BaseException):
            seen.append(item.__context__)
    return True


class GatewayChannel:
    """A generic JSON-over-HTTP SMS provider; one HTTP session per batch."""

    name = "sms"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = str(settings.extra.get("sms_url") or "").strip()
        if not self.url.startswith(("http://", "https://")):
            raise SettingsError(gettext("HUB_SMS_URL: %(url)r is not an http:// or https:// URL", url=self.url))
        self.timeout = _timeout(settings)
        self.sender = str(settings.extra.get("sms_sender") or "")
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        # Some gateways take the key in the URL (?apikey=…): never show query values.
        self._secrets: list[str] = [v for values in parse_qs(urlsplit(self.url).query).values() for v in values
                                    if len(v) >= 4]
        auth = str(settings.extra.get("sms_auth_header") or "").strip()
        if auth:
            name, colon, value = auth.partition(":")
            if not colon or not name.strip() or not value.strip():
                raise SettingsError(gettext("HUB_SMS_AUTH_HEADER: write it as 'Header-Name: value', "
                                            "e.g. 'Authorization: Bearer KEY'"))
            self.headers[name.strip()] = value.strip()
            self._secrets.append(value.strip())
        self.id_field = str(settings.extra.get("sms_id_field") or "id")
        source = str(settings.extra.get("sms_body") or DEFAULT_BODY)
        try:
            self.body = _env.from_string(source)
            json.loads(self._render("+79161234567", "Проверка", 0))
        except TemplateError as exc:
            raise SettingsError(f"HUB_SMS_BODY: {exc}") from None
        except ValueError as exc:
            raise SettingsError(gettext("HUB_SMS_BODY: does not render to JSON (%(reason)s)", reason=exc)) from None
        self.session: requests.Session | None = None

    def _render(self, phone: str, text: str, message_id: int) -> str:
        return template_sandbox.render(self.body, {
            "phone": phone, "phone_digits": phone.lstrip("+"), "text": text, "sender": self.sender,
            "message_id": message_id, "parts": text_parts(text)})

    def open(self) -> None:
        if self.session is None:
            self.session = requests.Session()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _post(self, message: Outgoing, **kwargs: Any) -> requests.Response | Delivery:
        self.open()
        assert self.session is not None
        try:
            return self.session.post(self.url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            what = self._redact(f"{type(exc).__name__}: {exc}")[:300]
            if _reached_gateway(exc):
                return Delivery("unknown", error=f"the gateway took the request but did not answer ({what})")
            return Delivery("deferred", error=f"cannot reach the SMS gateway ({what})")

    def send(self, message: Outgoing) -> Delivery:
        if not message.address:
            return Delivery("failed", error="no phone number")
        parts = text_parts(message.text)
        body = self._render(message.address, message.text, message.id).encode("utf-8")
        answer = self._post(message, data=body, headers=self.headers)
        if isinstance(answer, Delivery):
            return Delivery(answer.status, error=answer.error, parts=parts)
        return self._classify(answer, parts)

    def _classify(self, response: requests.Response, parts: int) -> Delivery:
        status = response.status_code
        snippet = self._redact(" ".join(response.text.split()))[:200]
        if 200 <= status < 300:
            return Delivery("sent", provider_id=self._provider_id(response), parts=parts)
        if status in (401, 403):
            raise ChannelUnavailable(gettext("the SMS gateway refused the credentials (HTTP %(status)s)",
                                             status=status))
        if status in (408, 425, 429) or status >= 500:
            return Delivery("deferred", error=f"HTTP {status}: {snippet}", parts=parts)
        return Delivery("bounced", error=f"HTTP {status}: {snippet}", parts=parts)

    def _provider_id(self, response: requests.Response) -> str | None:
        try:
            value: Any = response.json()
        except ValueError:
            return None
        for key in self.id_field.split("."):
            if isinstance(value, dict):
                value = value.get(key)
            elif isinstance(value, list) and (index := whole_number(key, least=0, most=len(value) - 1)) is not None:
                value = value[index]
            else:
                return None
        return None if value is None or isinstance(value, (dict, list)) else str(value)


@dataclass(frozen=True, slots=True)
class Report:
    """A provider's word on one sent SMS: its id, the status code, and what it means for Hub.

    kind: "delivered", "undelivered" (reason says why), "bounce" (the number
    does not exist: suppressed) or None (still on its way: asked again later).
    phone: the number the report is about, digits only, when the provider
    names it (SMSC.ru's ids are unique only together with the number) or
    when Hub asked about that pair; "" when nobody said.
    """

    provider_id: str
    code: str
    kind: str | None
    reason: str = ""
    cost: Decimal | None = None
    phone: str = ""


def rubles(value: Any) -> Decimal | None:
    """A cost as providers write it ("1.40", 1.4, "2,10"): rubles, or None when absent or nonsense."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        found = Decimal(str(value).strip().replace(",", "."))
    except InvalidOperation:
        return None
    return found if found.is_finite() and 0 <= found < 100000 else None


def retry_after(response: requests.Response) -> float | None:
    """The Retry-After header in seconds (a number; a date is rare from SMS gateways and ignored)."""
    raw = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return min(seconds, MAX_RETRY_AFTER) if seconds >= 0 else None


def parts_of(delivery: Delivery, parts: int) -> Delivery:
    """The same answer with the parts counted from the text (what the outbox stores)."""
    return Delivery(delivery.status, provider_id=delivery.provider_id, error=delivery.error, parts=parts,
                    retry_after=delivery.retry_after, cost=delivery.cost)


class PresetChannel(GatewayChannel):
    """What the named providers share: a base URL, secrets kept out of errors, one session per batch.

    A preset implements `_request(number, text)` (the keyword arguments of one
    HTTP call, its path included) and `_read(response)` (the Delivery), and,
    for delivery reports, `statuses(sent)` with `status_batch` ids per call.
    """

    provider = ""
    title = ""
    default_url = ""
    status_batch = 100

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = str(settings.extra.get("sms_url") or self.default_url).strip().rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise SettingsError(gettext("HUB_SMS_URL: %(url)r is not an http:// or https:// URL", url=self.url))
        self.timeout = _timeout(settings)
        self.sender = str(settings.extra.get("sms_sender") or "")
        self._secrets: list[str] = []
        self.session: requests.Session | None = None

    def _setting(self, key: str, name: str) -> str:
        value = str(self.settings.extra.get(key) or "").strip()
        if not value:
            raise SettingsError(gettext("%(setting)s: not set; %(provider)s needs it with HUB_SMS_PROVIDER=%(name)s",
                                        setting=name, provider=self.title, name=self.provider))
        if len(value) >= 4:
            self._secrets.append(value)
        return value

    def _request(self, number: str, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def _read(self, response: requests.Response, number: str) -> Delivery:
        raise NotImplementedError

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request outside a send (status reports): a failure to reach the provider is raised as it is."""
        self.open()
        assert self.session is not None
        try:
            return self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise ChannelUnavailable(gettext("cannot reach %(provider)s: %(error)s", provider=self.title,
                                             error=self._redact(f"{type(exc).__name__}: {exc}")[:300])) from None

    def send(self, message: Outgoing) -> Delivery:
        if not message.address:
            return Delivery("failed", error="no phone number")
        parts = text_parts(message.text)
        number = message.address.lstrip("+")
        request = self._request(number, message.text)
        self.open()
        assert self.session is not None
        path = request.pop("path", "")
        method = request.pop("method", "POST")
        try:
            response = self.session.request(method, self.url + path, timeout=self.timeout, **request)
        except requests.RequestException as exc:
            what = self._redact(f"{type(exc).__name__}: {exc}")[:300]
            if _reached_gateway(exc):
                return Delivery("unknown", error=f"{self.title} took the request but did not answer ({what})",
                                parts=parts)
            return Delivery("deferred", error=f"cannot reach {self.title} ({what})", parts=parts)
        if response.status_code == 429 or response.status_code >= 500:
            return Delivery("deferred", error=f"{self.title}: HTTP {response.status_code}", parts=parts,
                            retry_after=retry_after(response))
        return parts_of(self._read(response, number), parts)

    def statuses(self, sent: list[tuple[str, str]]) -> list[Report]:
        """Reports for (provider id, phone) pairs, at most `status_batch` of them."""
        raise NotImplementedError

    def refused(self, reply: str) -> ChannelUnavailable:
        return ChannelUnavailable(gettext("%(provider)s refused the request: %(reply)s", provider=self.title,
                                          reply=self._redact(reply)[:200]))


class SmsRuChannel(PresetChannel):
    """The SMS.ru shape: a form POST with api_id, to, msg, json=1; a status code per number."""

    provider, title, default_url = "smsru", "SMS.ru", "https://sms.ru"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # HUB_SMS_URL used to name the send method itself: either form is taken.
        self.url = self.url.removesuffix("/sms/send")
        self.api_key = str(settings.extra.get("sms_api_key") or "").strip()
        if not self.api_key:
            raise SettingsError(gettext("HUB_SMS_API_KEY: not set; the SMS.ru api_id is needed with "
                                        "HUB_SMS_PROVIDER=smsru"))
        self._secrets = [self.api_key]

    def _request(self, number: str, text: str) -> dict[str, Any]:
        form = {"api_id": self.api_key, "to": number, "msg": text, "json": "1"}
        if self.sender:
            form["from"] = self.sender
        return {"path": "/sms/send", "data": form}

    def _read(self, answer: requests.Response, number: str) -> Delivery:
        try:
            data = answer.json()
        except ValueError:
            return Delivery("unknown", error=f"HTTP {answer.status_code}: the answer is not JSON")
        top = _code(data)
        if top != 100:
            text = self._redact(str(data.get("status_text") or "")) if isinstance(data, dict) else ""
            if top in SMSRU_CREDENTIALS:
                reply = " ".join((str(top), text)).strip()
                raise ChannelUnavailable(gettext("SMS.ru refused the request: %(reply)s", reply=reply))
            kind = "deferred" if top in SMSRU_TEMPORARY else "failed"
            return Delivery(kind, error=f"SMS.ru {top}: {text}".strip())
        entry = (data.get("sms") or {}).get(number) or {}
        code = _code(entry)
        text = self._redact(str(entry.get("status_text") or ""))
        if code == 100:
            return Delivery("sent", provider_id=entry.get("sms_id"), cost=rubles(entry.get("cost")))
        if code in SMSRU_DEAD_NUMBER:
            return Delivery("bounced", error=f"SMS.ru {code}: {text}".strip())
        if code in SMSRU_TEMPORARY:
            return Delivery("deferred", error=f"SMS.ru {code}: {text}".strip())
        return Delivery("failed", error=f"SMS.ru {code}: {text}".strip())

    def statuses(self, sent: list[tuple[str, str]]) -> list[Report]:
        ids = [pid for pid, _ in sent]
        answer = self._call("POST", "/sms/status", data={"api_id": self.api_key, "sms_id": ",".join(ids),
                                                          "json": "1"})
        try:
            data = answer.json()
        except ValueError:
            raise ChannelUnavailable(gettext("%(provider)s answered HTTP %(status)s without JSON",
                                             provider=self.title, status=answer.status_code)) from None
        top = _code(data)
        if top in SMSRU_CREDENTIALS:
            raise self.refused(f"{top} {data.get('status_text') or ''}")
        entries = data.get("sms") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            return []
        return [smsru_report(str(pid), entry) for pid, entry in entries.items() if str(pid) in ids]

    @staticmethod
    def callback(form: Any) -> list[Report]:
        """SMS.ru's callback: data[N] fields of lines sms_status, ID, CODE, UNIXTIME; ValueError when malformed."""
        found = []
        for key in form:
            if not (key == "data" or key.startswith("data[")):
                continue
            for value in form.getlist(key):
                lines = str(value).split("\n")
                if lines[0].strip() != "sms_status":
                    continue  # other notices (callback checks) carry nothing to record
                if len(lines) < 3 or not lines[1].strip() or not lines[2].strip().lstrip("-").isdigit():
                    raise ValueError("a data line is not sms_status, id, status code")
                found.append(smsru_report(lines[1].strip()[:100], {"status_code": lines[2].strip()}))
        if not found and not any(k == "data" or k.startswith("data[") for k in form):
            raise ValueError("no data fields")
        return found


def smsru_report(provider_id: str, entry: Any) -> Report:
    code = _code(entry)
    cost = rubles(entry.get("cost")) if isinstance(entry, dict) else None
    if code in SMSRU_DELIVERED:
        return Report(provider_id, str(code), "delivered", cost=cost)
    if code in SMSRU_UNDELIVERED:
        return Report(provider_id, str(code), "undelivered", SMSRU_UNDELIVERED[code], cost)
    return Report(provider_id, str(code), None, cost=cost)


def _code(data: Any) -> int | None:
    try:
        return int(data.get("status_code"))
    except (AttributeError, TypeError, ValueError):
        return None


def preset_channel(settings: Settings) -> PresetChannel | None:
    """The named provider's channel, or None for the generic gateway (and the file fallback)."""
    provider = str(settings.extra.get("sms_provider") or "").strip().lower()
    if provider == "smsru":
        return SmsRuChannel(settings)
    if provider == "smsc":
        from plugins.mailing.smsc import SmscChannel

        return SmscChannel(settings)
    if provider == "smsaero":
        from plugins.mailing.smsaero import SmsAeroChannel

        return SmsAeroChannel(settings)
    if provider not in ("", "generic"):
        raise SettingsError(gettext("HUB_SMS_PROVIDER: %(value)r; use one of %(known)s", value=provider,
                                    known=", ".join(PRESETS)))
    return None


def channel(settings: Settings) -> Any:
    """The sms channel these settings describe: a gateway, or the file channel when none is set."""
    preset = preset_channel(settings)
    if preset is not None:
        return preset
    if settings.extra.get("sms_url"):
        return GatewayChannel(settings)
    from plugins.mailing.file import FileChannel

    return FileChannel(settings, "sms")

