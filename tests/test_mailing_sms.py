"""SMS through an HTTP gateway (mocked at the HTTP layer with `responses`), and the file fallback."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from sqlalchemy import select

import plugins.mailing
from hub import consent, messaging, sync
from hub.config import SettingsError
from hub.i18n import use_language
from hub.models import Message
from hub.records import ContactRecord
from hub.message_templates import Template
from plugins.mailing import sms
from tests.conftest import HubDB

GATEWAY = "https://sms.example.ru/api/send"
KEY = "sk_live_0123456789abcdef"
TEXT = Template(name="t_sms", channel="sms", text="{{ contact.first_name }}, {{ body }}")
CYRILLIC_80 = "скидка " * 11 + "ура"  # 80 characters of Cyrillic: two UCS-2 parts


@pytest.fixture
def mailing(plugin_manager):
    plugin_manager.register(plugins.mailing, name="mailing")
    return plugin_manager


def gateway_settings(db: HubDB, **extra: Any):
    return replace(db.settings, extra={**db.settings.extra, "sms_url": GATEWAY, "sms_sender": "LAVKA",
                                       "sms_auth_header": f"Authorization: Bearer {KEY}", **extra})


def person(db: HubDB, phone: str = "+79161234567", first: str = "Анна") -> int:
    with db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="t", first_name=first, phones=[phone])], db.settings,
                                  sync.Counts()).contact_ids[0]
        consent.record(conn, cid, "sms", "marketing", "granted", source="form")
    return cid


def queue_sms(db: HubDB, settings, cid: int, body: str = "привет", key: str = "k") -> int:
    with db.engine.begin() as conn:
        return messaging.create(conn, settings, contact_id=cid, channel="sms", template=TEXT, key=key,
                                context={"body": body}).id


def row(db: HubDB, message_id: int) -> Any:
    with db.engine.connect() as conn:
        return conn.execute(select(Message.__table__).where(Message.id == message_id)).one()


@responses.activate
def test_a_gateway_sends_json_with_the_auth_header_and_the_parts_are_stored(hub_db: HubDB, mailing) -> None:
    responses.add(responses.POST, GATEWAY, json={"id": "msg-77", "status": "queued"}, status=200)
    settings = gateway_settings(hub_db)
    mid = queue_sms(hub_db, settings, person(hub_db), body=CYRILLIC_80)
    assert row(hub_db, mid).parts == 2  # counted when created
    report = messaging.dispatch(hub_db.engine, settings)
    assert report.sent == 1
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == f"Bearer {KEY}" and sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.body) == {"to": "+79161234567", "text": f"Анна, {CYRILLIC_80}", "from": "LAVKA"}
    saved = row(hub_db, mid)
    assert (saved.status, saved.provider_id, saved.parts) == ("sent", "msg-77", 2)


@responses.activate
def test_a_custom_body_template_and_id_field(hub_db: HubDB, mailing) -> None:
    responses.add(responses.POST, GATEWAY, json={"data": {"messages": [{"uid": 991}]}}, status=201)
    settings = gateway_settings(hub_db, sms_body='{"phone": {{ phone_digits|tojson }}, "message": {{ text|tojson }},'
                                                 ' "ref": {{ message_id }}}',
                                sms_id_field="data.messages.0.uid")
    mid = queue_sms(hub_db, settings, person(hub_db))
    messaging.dispatch(hub_db.engine, settings)
    assert json.loads(responses.calls[0].request.body) == {"phone": "79161234567", "message": "Анна, привет",
                                                           "ref": mid}
    assert row(hub_db, mid).provider_id == "991"


@pytest.mark.parametrize("answer, status, error", [
    ({"status": 503}, "deferred", "HTTP 503"),
    ({"status": 429}, "deferred", "HTTP 429"),
    ({"body": requests.ConnectTimeout("connect timed out")}, "deferred", "cannot reach the SMS gateway"),
    ({"body": requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))}, "deferred",
     "cannot reach the SMS gateway"),
    ({"body": requests.ReadTimeout("read timed out")}, "unknown", "took the request but did not answer"),
    ({"status": 400, "json": {"error": "invalid phone number"}}, "failed", "bounced: HTTP 400"),
])
@responses.activate
def test_the_gateways_answer_is_classified(hub_db: HubDB, mailing, answer: dict, status: str, error: str) -> None:
    responses.add(responses.POST, GATEWAY, **answer)
    settings = gateway_settings(hub_db)
    cid = person(hub_db)
    mid = queue_sms(hub_db, settings, cid)
    messaging.dispatch(hub_db.engine, settings)
    saved = row(hub_db, mid)
    assert saved.status == status and error in saved.error
    assert KEY not in saved.error
    with hub_db.engine.connect() as conn:
        suppressed = consent.is_suppressed(conn, "phone", "+79161234567", settings.secret_key)
    assert suppressed == (error == "bounced: HTTP 400")  # only a permanent answer suppresses the number


@responses.activate
def test_refused_credentials_stop_the_channel_without_suppressing_anyone(hub_db: HubDB, mailing) -> None:
    responses.add(responses.POST, GATEWAY, status=401, json={"error": f"bad token {KEY}"})
    settings = gateway_settings(hub_db)
    ids = [queue_sms(hub_db, settings, person(hub_db, f"+7916123456{i}"), key=f"k{i}") for i in range(3)]
    report = messaging.dispatch(hub_db.engine, settings)
    assert report.errors == ["sms: SMS-шлюз не принял учётные данные (HTTP 401)"]
    assert len(responses.calls) == 1 and report.released == 3
    assert {row(hub_db, i).status for i in ids} == {"queued"}


@responses.activate
def test_a_key_in_the_gateway_url_never_shows_in_errors(hub_db: HubDB, mailing) -> None:
    url = f"{GATEWAY}?apikey={KEY}"
    responses.add(responses.POST, url, body=requests.ConnectionError(f"Max retries exceeded with url: {url}"))
    settings = replace(hub_db.settings, extra={**hub_db.settings.extra, "sms_url": url})
    mid = queue_sms(hub_db, settings, person(hub_db))
    messaging.dispatch(hub_db.engine, settings)
    saved = row(hub_db, mid)
    assert saved.status == "unknown" and "apikey=***" in saved.error and KEY not in saved.error


@responses.activate
def test_smsru_preset(hub_db: HubDB, mailing) -> None:
    def answer(request):
        form = dict(p.split("=", 1) for p in request.body.split("&"))
        number = form["to"]
        code = {"79161234567": 100, "79031112233": 202, "79261112233": 220}[number]
        entry = {"status": "OK" if code == 100 else "ERROR", "status_code": code}
        if code == 100:
            entry["sms_id"] = "000000-10000001"
        else:
            entry["status_text"] = "Неправильно указан номер" if code == 202 else "Сервис временно недоступен"
        return 200, {}, json.dumps({"status": "OK", "status_code": 100, "sms": {number: entry}, "balance": 10.5})

    responses.add_callback(responses.POST, sms.SMSRU_URL, callback=answer)
    settings = replace(hub_db.settings, extra={**hub_db.settings.extra, "sms_provider": "smsru", "sms_api_key": KEY})
    ok = queue_sms(hub_db, settings, person(hub_db, "+79161234567"), key="a")
    dead = queue_sms(hub_db, settings, person(hub_db, "+79031112233"), key="b")
    later = queue_sms(hub_db, settings, person(hub_db, "+79261112233"), key="c")
    report = messaging.dispatch(hub_db.engine, settings)
    assert (report.sent, report.bounced, report.deferred) == (1, 1, 1)
    assert row(hub_db, ok).provider_id == "000000-10000001"
    assert row(hub_db, dead).error == "bounced: SMS.ru 202: Неправильно указан номер"
    assert row(hub_db, later).status == "deferred"
    first = responses.calls[0].request.body
    assert f"api_id={KEY}" in first and "json=1" in first


@responses.activate
def test_smsru_refusing_the_key_stops_the_channel(hub_db: HubDB, mailing) -> None:
    responses.add(responses.POST, sms.SMSRU_URL,
                  json={"status": "ERROR", "status_code": 200, "status_text": f"Неправильный api_id {KEY}"})
    settings = replace(hub_db.settings, extra={**hub_db.settings.extra, "sms_provider": "smsru", "sms_api_key": KEY})
    queue_sms(hub_db, settings, person(hub_db))
    with use_language("en"):  # the channel's error in the reader's language (Russian by default)
        report = messaging.dispatch(hub_db.engine, settings)
    assert report.errors == ["sms: SMS.ru refused the request: 200 Неправильный api_id ***"]


@pytest.mark.parametrize("extra, error", [
    ({"sms_url": "sms.example.ru"}, "HUB_SMS_URL: 'sms.example.ru' is not an http:// or https:// URL"),
    ({"sms_url": GATEWAY, "sms_auth_header": "Bearer abc"}, "HUB_SMS_AUTH_HEADER: write it as 'Header-Name: value'"),
    ({"sms_url": GATEWAY, "sms_body": '{"to": {{ phone }}'}, "HUB_SMS_BODY: does not render to JSON"),
    ({"sms_url": GATEWAY, "sms_body": '{"to": {{ phone|tojson }'}, "HUB_SMS_BODY: unexpected '}'"),
    ({"sms_provider": "smsru"}, "HUB_SMS_API_KEY: not set"),
    ({"sms_provider": "twilio"}, "HUB_SMS_PROVIDER: 'twilio'; use one of generic, smsru, smsc, smsaero"),
    ({"sms_url": GATEWAY, "sms_timeout": "soon"}, "HUB_SMS_TIMEOUT: 'soon' is not a number of seconds"),
])
def test_wrong_gateway_settings_are_named(hub_db: HubDB, extra: dict, error: str) -> None:
    with pytest.raises(SettingsError) as err:
        sms.channel(replace(hub_db.settings, extra=extra))
    assert str(err.value).startswith(error)


def test_without_a_gateway_sms_goes_to_the_outbox_folder(hub_db: HubDB, mailing, tmp_path: Path) -> None:
    settings = replace(hub_db.settings, extra={**hub_db.settings.extra, "outbox_dir": str(tmp_path / "out")})
    mid = queue_sms(hub_db, settings, person(hub_db))
    assert messaging.dispatch(hub_db.engine, settings).sent == 1
    written = tmp_path / "out" / f"{mid:08d}-sms.txt"
    assert written.read_text(encoding="utf-8") == "To: +79161234567\nChannel: sms\n\nАнна, привет"
