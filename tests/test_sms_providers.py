"""The SMS presets answer by answer, mocked at the HTTP layer with payloads in each provider's documented shape.

SMS.ru (sms.ru/api/send, sms.ru/api/status), SMSC.ru (smsc.ru/api/http: send.php,
status.php, error_code 1-9, status codes) and SMS Aero (API v2: /sms/send,
/sms/status) each map their answers onto Delivery and delivery reports exactly.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses
from werkzeug.datastructures import MultiDict

from hub.api import ChannelUnavailable, Outgoing, SettingsError, use_language
from plugins.mailing import sms
from plugins.mailing.smsaero import SmsAeroChannel
from plugins.mailing.smsc import SmscChannel

SECRET_KEY = "key-0123456789abcdef"
PASSWORD = "pass-9876543210"
EMAIL = "shop@example.ru"


def settings(**extra: Any) -> Any:
    return SimpleNamespace(extra=extra)


def outgoing(address: str | None = "+79161234567", text: str = "Ваш заказ готов") -> Outgoing:
    return Outgoing(id=1, channel="sms", contact_id=1, address=address, purpose="marketing", template="t",
                    subject=None, text=text, html=None, key="k")


def smsc(**extra: Any) -> SmscChannel:
    return SmscChannel(settings(sms_provider="smsc", sms_login="shop", sms_password=PASSWORD, sms_sender="LAVKA",
                                **extra))


def aero(**extra: Any) -> SmsAeroChannel:
    return SmsAeroChannel(settings(sms_provider="smsaero", sms_email=EMAIL, sms_api_key=SECRET_KEY, **extra))


def smsru(**extra: Any) -> sms.SmsRuChannel:
    return sms.SmsRuChannel(settings(sms_provider="smsru", sms_api_key=SECRET_KEY, **extra))


def form(call: Any) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(call.request.body).items()}


# --- choosing and setting up a preset ----------------------------------------------------------

@pytest.mark.parametrize("extra, kind", [
    ({"sms_provider": "smsc", "sms_login": "a", "sms_password": "b"}, SmscChannel),
    ({"sms_provider": "SMSC", "sms_api_key": "k"}, SmscChannel),
    ({"sms_provider": "smsaero", "sms_email": "a@b.ru", "sms_api_key": "k"}, SmsAeroChannel),
    ({"sms_provider": "smsru", "sms_api_key": "k"}, sms.SmsRuChannel),
])
def test_the_provider_setting_picks_the_preset(extra: dict[str, str], kind: type) -> None:
    assert isinstance(sms.channel(settings(**extra)), kind)


@pytest.mark.parametrize("extra, error", [
    ({"sms_provider": "smsc"}, "HUB_SMS_LOGIN: not set; SMSC.ru needs it with HUB_SMS_PROVIDER=smsc"),
    ({"sms_provider": "smsc", "sms_login": "a"}, "HUB_SMS_PASSWORD: not set"),
    ({"sms_provider": "smsaero", "sms_api_key": "k"}, "HUB_SMS_EMAIL: not set"),
    ({"sms_provider": "smsaero", "sms_email": "a@b.ru"}, "HUB_SMS_API_KEY: not set"),
    ({"sms_provider": "smsc", "sms_api_key": "k", "sms_url": "ftp://x"}, "is not an http:// or https:// URL"),
    ({"sms_provider": "nexmo"}, "use one of generic, smsru, smsc, smsaero"),
])
def test_missing_settings_are_named(extra: dict[str, str], error: str) -> None:
    with use_language("en"), pytest.raises(SettingsError, match=error):
        sms.channel(settings(**extra))


def test_a_settings_error_reads_in_russian() -> None:
    with use_language("ru"), pytest.raises(SettingsError, match="HUB_SMS_EMAIL не задан, а он нужен для SMS Aero"):
        sms.channel(settings(sms_provider="smsaero", sms_api_key="k"))


# --- SMSC.ru -----------------------------------------------------------------------------------

SMSC_SEND = "https://smsc.ru/sys/send.php"
SMSC_STATUS = "https://smsc.ru/sys/status.php"


@responses.activate
def test_smsc_sends_the_documented_form_and_reads_id_and_cost() -> None:
    responses.add(responses.POST, SMSC_SEND, json={"id": 2345, "cnt": 1, "cost": "1.40", "balance": "98.60"})
    delivery = smsc().send(outgoing())
    assert (delivery.status, delivery.provider_id, delivery.cost, delivery.parts) == ("sent", "2345",
                                                                                      Decimal("1.40"), 1)
    assert form(responses.calls[0]) == {"login": "shop", "psw": PASSWORD, "phones": "79161234567",
                                        "mes": "Ваш заказ готов", "fmt": "3", "cost": "3", "charset": "utf-8",
                                        "sender": "LAVKA"}


@responses.activate
def test_smsc_takes_an_api_key_instead_of_login_and_password() -> None:
    responses.add(responses.POST, SMSC_SEND, json={"id": 1, "cnt": 1})
    channel = SmscChannel(settings(sms_provider="smsc", sms_api_key=SECRET_KEY))
    assert channel.send(outgoing()).cost is None  # no cost in the answer: none recorded
    sent = form(responses.calls[0])
    assert sent["apikey"] == SECRET_KEY and "login" not in sent and "psw" not in sent


@pytest.mark.parametrize("code, status, wait", [
    (1, "failed", None), (3, "deferred", None), (4, "deferred", 60.0), (5, "failed", None), (6, "failed", None),
    (7, "bounced", None), (8, "bounced", None), (9, "deferred", 60.0),
])
@responses.activate
def test_smsc_error_codes(code: int, status: str, wait: float | None) -> None:
    responses.add(responses.POST, SMSC_SEND, json={"error": f"error text {code}", "error_code": code})
    delivery = smsc().send(outgoing())
    assert (delivery.status, delivery.retry_after) == (status, wait)
    assert delivery.error is not None and delivery.error.startswith(f"SMSC.ru {code}:")


@responses.activate
def test_smsc_wrong_login_stops_the_channel_without_showing_the_password() -> None:
    responses.add(responses.POST, SMSC_SEND, json={"error": f"authorise error {PASSWORD}", "error_code": 2})
    with pytest.raises(ChannelUnavailable) as caught:
        smsc().send(outgoing())
    assert "SMSC.ru" in str(caught.value) and PASSWORD not in str(caught.value)


@responses.activate
def test_smsc_a_429_or_5xx_is_deferred_with_retry_after() -> None:
    responses.add(responses.POST, SMSC_SEND, status=429, headers={"Retry-After": "45"})
    responses.add(responses.POST, SMSC_SEND, status=503)
    first, second = smsc().send(outgoing()), smsc().send(outgoing())
    assert (first.status, first.retry_after) == ("deferred", 45.0)
    assert (second.status, second.retry_after) == ("deferred", None)


@responses.activate
def test_smsc_no_answer_after_the_request_is_unknown_and_an_unreachable_host_deferred() -> None:
    responses.add(responses.POST, SMSC_SEND, body=requests.ReadTimeout("read timed out"))
    assert smsc().send(outgoing()).status == "unknown"
    responses.replace(responses.POST, SMSC_SEND, body=requests.ConnectTimeout("connect timed out"))
    assert smsc().send(outgoing()).status == "deferred"
    responses.replace(responses.POST, SMSC_SEND, body="<html>oops</html>", status=200)
    assert smsc().send(outgoing()).status == "unknown"


@responses.activate
def test_smsc_status_codes_become_reports() -> None:
    responses.add(responses.POST, SMSC_STATUS, json=[
        {"id": 11, "status": 1, "err": 0, "cost": "1.40"}, {"id": 12, "status": 20, "err": 1},
        {"id": 13, "status": 22, "err": 0}, {"id": 14, "status": -1, "err": 0}, {"id": 15, "status": 3, "err": 0},
        {"id": 16, "status": 25, "err": 0}, {"id": 99, "status": 1, "err": 0}])
    sent = [("11", "+79161234567"), ("12", "+79161234568"), ("13", "+79161234569"), ("14", "+79161234570"),
            ("15", "+79161234571"), ("16", "+79161234572")]
    found = {r.provider_id: r for r in smsc().statuses(sent)}
    assert set(found) == {"11", "12", "13", "14", "15", "16"}  # an id not asked about is ignored
    assert (found["11"].kind, found["11"].cost) == ("delivered", Decimal("1.40"))
    assert (found["12"].kind, found["12"].reason) == ("undelivered", "impossible to deliver (error 1)")
    assert (found["13"].kind, found["16"].kind) == ("bounce", "bounce")
    assert (found["14"].kind, found["15"].kind) == (None, "undelivered")
    asked = form(responses.calls[0])
    assert asked["id"] == "11,12,13,14,15,16" and asked["phone"].startswith("79161234567,79161234568")


@responses.activate
def test_smsc_status_with_a_wrong_login_stops() -> None:
    responses.add(responses.POST, SMSC_STATUS, json={"error": "authorise error", "error_code": 2})
    with pytest.raises(ChannelUnavailable):
        smsc().statuses([("1", "79161234567")])


def test_smsc_callback_shapes() -> None:
    [report] = SmscChannel.callback(MultiDict({"id": "77", "phone": "79161234567", "status": "1", "err": "0"}))
    assert (report.provider_id, report.kind, report.phone) == ("77", "delivered", "79161234567")
    for bad in ({"id": "77"}, {"status": "1"}, {"id": "77", "status": "x"}, {"id": "7" * 101, "status": "1"}):
        with pytest.raises(ValueError):
            SmscChannel.callback(MultiDict(bad))


# --- SMS Aero ----------------------------------------------------------------------------------

AERO_SEND = "https://gate.smsaero.ru/v2/sms/send"
AERO_STATUS = "https://gate.smsaero.ru/v2/sms/status"


def aero_data(**values: Any) -> dict[str, Any]:
    return {"id": 501, "from": "SMS Aero", "number": "79161234567", "text": "Ваш заказ готов", "status": 8,
            "extendStatus": "moderation", "channel": "FREE SIGN", "cost": "4.24", "dateCreate": 1796551200,
            "dateSend": 1796551200, **values}


@responses.activate
def test_smsaero_sends_with_basic_auth_and_reads_id_and_cost() -> None:
    responses.add(responses.POST, AERO_SEND, json={"success": True, "data": aero_data(), "message": None})
    delivery = aero(sms_sender="LAVKA").send(outgoing())
    assert (delivery.status, delivery.provider_id, delivery.cost) == ("sent", "501", Decimal("4.24"))
    request = responses.calls[0].request
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"{EMAIL}:{SECRET_KEY}".encode()).decode()
    assert json.loads(request.body or b"") == {"number": "79161234567", "text": "Ваш заказ готов", "sign": "LAVKA"}


@responses.activate
def test_smsaero_uses_its_shared_sign_when_none_is_set() -> None:
    responses.add(responses.POST, AERO_SEND, json={"success": True, "data": aero_data(), "message": None})
    aero().send(outgoing())
    assert json.loads(responses.calls[0].request.body or b"")["sign"] == "SMS Aero"


@pytest.mark.parametrize("status, answer, kind", [
    (400, {"success": False, "data": {"number": ["Invalid phone number."]}, "message": "Validation error."}, "bounced"),
    (400, {"success": False, "data": {"sign": ["Sign not approved."]}, "message": "Validation error."}, "failed"),
    (200, {"success": False, "data": None, "message": "Insufficient balance."}, "deferred"),
    (200, {"success": False, "data": None, "message": "Daily limit exceeded."}, "deferred"),
    (200, {"success": True, "data": {"status": 8}, "message": None}, "unknown"),
])
@responses.activate
def test_smsaero_refusals(status: int, answer: dict[str, Any], kind: str) -> None:
    responses.add(responses.POST, AERO_SEND, json=answer, status=status)
    assert aero().send(outgoing()).status == kind


@responses.activate
def test_smsaero_wrong_key_stops_and_429_waits() -> None:
    responses.add(responses.POST, AERO_SEND, json={"success": False, "data": None, "message": "Unauthorized."},
                  status=401)
    with pytest.raises(ChannelUnavailable) as caught:
        aero().send(outgoing())
    assert SECRET_KEY not in str(caught.value)
    responses.replace(responses.POST, AERO_SEND, json={"success": False, "message": "Too Many Requests."},
                      status=429, headers={"Retry-After": "30"})
    delivery = aero().send(outgoing())
    assert (delivery.status, delivery.retry_after) == ("deferred", 30.0)


@responses.activate
def test_smsaero_statuses_one_call_each() -> None:
    for pid, status, extended in (("501", 1, "delivery"), ("502", 2, "undelivered"), ("503", 3, "transfer"),
                                  ("504", 6, "rejected")):
        responses.add(responses.GET, AERO_STATUS, match=[responses.matchers.query_param_matcher({"id": pid})],
                      json={"success": True, "data": aero_data(id=int(pid), status=status, extendStatus=extended),
                            "message": None})
    found = {r.provider_id: r for r in aero().statuses([("501", "7"), ("502", "7"), ("503", "7"), ("504", "7")])}
    assert [found[p].kind for p in ("501", "502", "503", "504")] == ["delivered", "undelivered", None, "undelivered"]
    assert found["502"].reason == "undelivered" and found["501"].cost == Decimal("4.24")


# --- SMS.ru ------------------------------------------------------------------------------------

@responses.activate
def test_smsru_statuses_and_cost() -> None:
    responses.add(responses.POST, "https://sms.ru/sms/status", json={
        "status": "OK", "status_code": 100, "balance": 100.5, "sms": {
            "000001-000001": {"status": "OK", "status_code": 103, "cost": 2.5, "status_text": "Доставлено"},
            "000001-000002": {"status": "OK", "status_code": 104, "status_text": "Не доставлено: время жизни истекло"},
            "000001-000003": {"status": "OK", "status_code": 102, "status_text": "Отправлено"},
            "000001-000004": {"status": "ERROR", "status_code": -1, "status_text": "Не найдено"}}})
    found = {r.provider_id: r for r in smsru().statuses([(f"000001-00000{i}", "7") for i in range(1, 5)])}
    assert (found["000001-000001"].kind, found["000001-000001"].cost) == ("delivered", Decimal("2.5"))
    assert (found["000001-000002"].kind, found["000001-000002"].reason) == ("undelivered", "expired")
    assert found["000001-000003"].kind is None and found["000001-000004"].kind is None
    assert form(responses.calls[0]) == {"api_id": SECRET_KEY, "sms_id": ",".join(
        f"000001-00000{i}" for i in range(1, 5)), "json": "1"}


@responses.activate
def test_smsru_status_with_a_wrong_key_stops() -> None:
    responses.add(responses.POST, "https://sms.ru/sms/status",
                  json={"status": "ERROR", "status_code": 200, "status_text": "Неправильный api_id"})
    with pytest.raises(ChannelUnavailable):
        smsru().statuses([("1", "7")])


@responses.activate
def test_smsru_send_reads_a_per_number_cost_when_given() -> None:
    responses.add(responses.POST, sms.SMSRU_URL, json={"status": "OK", "status_code": 100, "sms": {
        "79161234567": {"status": "OK", "status_code": 100, "sms_id": "000001-000009", "cost": "3.10"}}})
    delivery = smsru().send(outgoing())
    assert (delivery.status, delivery.provider_id, delivery.cost) == ("sent", "000001-000009", Decimal("3.10"))


def test_smsru_callback_shapes() -> None:
    reports = sms.SmsRuChannel.callback(MultiDict([("data[0]", "sms_status\n000001-000001\n103\n1796551200"),
                                                   ("data[1]", "sms_status\n000001-000002\n105\n1796551200"),
                                                   ("data[2]", "callback_check\n")]))
    assert [(r.provider_id, r.kind) for r in reports] == [("000001-000001", "delivered"),
                                                         ("000001-000002", "undelivered")]
    for bad in ({"data[0]": "sms_status\n\n103"}, {"data[0]": "sms_status\nid\nxx"}, {"other": "1"}):
        with pytest.raises(ValueError):
            sms.SmsRuChannel.callback(MultiDict(bad))


@pytest.mark.parametrize("value, expected", [
    ("1.40", Decimal("1.40")), (2.5, Decimal("2.5")), ("2,10", Decimal("2.10")), ("", None), (None, None),
    ("NaN", None), ("-1", None), ("abc", None), (True, None)])
def test_costs_as_providers_write_them(value: Any, expected: Decimal | None) -> None:
    assert sms.rubles(value) == expected
