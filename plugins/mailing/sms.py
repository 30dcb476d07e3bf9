"""SMS over an HTTP gateway: a generic JSON provider, and a preset for the SMS.ru API shape.

Settings (settings.extra):

    sms_provider      HUB_SMS_PROVIDER     generic (default) | smsru
    sms_url           HUB_SMS_URL          where to POST (generic: required; smsru: https://sms.ru/sms/send)
    sms_auth_header   HUB_SMS_AUTH_HEADER  generic: one header, "Authorization: Bearer KEY"
    sms_api_key       HUB_SMS_API_KEY      smsru: the api_id
    sms_body          HUB_SMS_BODY         generic: the JSON body, a template (see DEFAULT_BODY)
    sms_id_field      HUB_SMS_ID_FIELD     generic: where the answer holds the message id ("id", "data.id")
    sms_sender        HUB_SMS_SENDER       the sender name, when the provider lets you choose one
    sms_timeout       HUB_SMS_TIMEOUT      seconds (default 10)

How an answer is read. Generic: HTTP 2xx is sent; 401 and 403 stop the
channel (the key is wrong, nothing is sent or suppressed); 408, 425, 429 and
5xx are temporary; any other 4xx is permanent for that number, which is
suppressed. A gateway that cannot be reached is temporary. A gateway that
took the request and then did not answer in time may have sent the SMS, so
the message is marked `unknown` for review rather than sent twice.
"""

from __future__ import annotations

import json
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
# SMS.ru status codes (its API documentation): 100 accepted; the number itself
# is wrong or refuses messages; limits and money that will come back; the key.
SMSRU_DEAD_NUMBER = {202, 207}
SMSRU_TEMPORARY = {201, 206, 220, 230, 231, 232}
SMSRU_CREDENTIALS = {200, 300, 301, 302}

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


class SmsRuChannel(GatewayChannel):
    """The SMS.ru shape: a form POST with api_id, to, msg, json=1; a status code per number."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = str(settings.extra.get("sms_url") or SMSRU_URL).strip()
        self.api_key = str(settings.extra.get("sms_api_key") or "").strip()
        if not self.api_key:
            raise SettingsError(gettext("HUB_SMS_API_KEY: not set; the SMS.ru api_id is needed with "
                                        "HUB_SMS_PROVIDER=smsru"))
        self.timeout = _timeout(settings)
        self.sender = str(settings.extra.get("sms_sender") or "")
        self._secrets = [self.api_key]
        self.session = None

    def send(self, message: Outgoing) -> Delivery:
        if not message.address:
            return Delivery("failed", error="no phone number")
        parts = text_parts(message.text)
        number = message.address.lstrip("+")
        form = {"api_id": self.api_key, "to": number, "msg": message.text, "json": "1"}
        if self.sender:
            form["from"] = self.sender
        answer = self._post(message, data=form)
        if isinstance(answer, Delivery):
            return Delivery(answer.status, error=answer.error, parts=parts)
        if answer.status_code >= 500 or answer.status_code == 429:
            return Delivery("deferred", error=f"HTTP {answer.status_code}", parts=parts)
        try:
            data = answer.json()
        except ValueError:
            return Delivery("unknown", error=f"HTTP {answer.status_code}: the answer is not JSON", parts=parts)
        top = _code(data)
        if top != 100:
            text = self._redact(str(data.get("status_text") or ""))
            if top in SMSRU_CREDENTIALS:
                reply = " ".join((str(top), text)).strip()
                raise ChannelUnavailable(gettext("SMS.ru refused the request: %(reply)s", reply=reply))
            kind = "deferred" if top in SMSRU_TEMPORARY else "failed"
            return Delivery(kind, error=f"SMS.ru {top}: {text}".strip(), parts=parts)
        entry = (data.get("sms") or {}).get(number) or {}
        code = _code(entry)
        text = self._redact(str(entry.get("status_text") or ""))
        if code == 100:
            return Delivery("sent", provider_id=entry.get("sms_id"), parts=parts)
        if code in SMSRU_DEAD_NUMBER:
            return Delivery("bounced", error=f"SMS.ru {code}: {text}".strip(), parts=parts)
        if code in SMSRU_TEMPORARY:
            return Delivery("deferred", error=f"SMS.ru {code}: {text}".strip(), parts=parts)
        return Delivery("failed", error=f"SMS.ru {code}: {text}".strip(), parts=parts)


def _code(data: Any) -> int | None:
    try:
        return int(data.get("status_code"))
    except (AttributeError, TypeError, ValueError):
        return None


def channel(settings: Settings) -> Any:
    """The sms channel these settings describe: a gateway, or the file channel when none is set."""
    provider = str(settings.extra.get("sms_provider") or "").strip().lower()
    if provider == "smsru":
        return SmsRuChannel(settings)
    if provider not in ("", "generic"):
        raise SettingsError(gettext("HUB_SMS_PROVIDER: %(value)r; use generic or smsru", value=provider))
    if settings.extra.get("sms_url"):
        return GatewayChannel(settings)
    from plugins.mailing.file import FileChannel

    return FileChannel(settings, "sms")
