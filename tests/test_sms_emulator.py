"""Each SMS preset end to end against the local emulator of the providers' APIs, through the real dispatcher.

Sent with the provider's cost, a number that does not exist suppressed, the
provider's limit deferred, reports polled into delivered/undelivered events,
and the callbacks SMS.ru and SMSC.ru post accepted while forged ones are refused.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any, Iterator
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

import plugins.mailing
from hub import consent, messaging, schedule, sync
from hub.db import utcnow
from hub.admin import create_app
from hub.message_templates import Template
from hub.models import Message, MessageEvent
from hub.records import ContactRecord
from plugins.mailing import sms_reports, sms_sandbox
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases

TEXT = Template(name="t_sms", channel="sms", text="{{ contact.first_name }}, {{ body }}")
SECRET = "cb-secret-7a1f0c"
FORM_TYPE = "application/x-www-form-urlencoded"


@pytest.fixture
def emulator() -> Iterator[Any]:
    server = sms_sandbox.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mailing(plugin_manager: Any) -> Any:
    plugin_manager.register(plugins.mailing, name="mailing")
    return plugin_manager


def configured(db: HubDB, emulator: Any, provider: str, **extra: Any) -> Any:
    return replace(db.settings, extra={**db.settings.extra, **sms_sandbox.settings_for(emulator.base_url, provider),
                                       "sms_callback_secret": SECRET, **extra})


def queue(db: HubDB, settings: Any, phone: str, key: str, body: str = "ваш заказ готов") -> int:
    with db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="t", first_name="Анна", phones=[phone])], settings,
                                  sync.Counts()).contact_ids[0]
        assert cid is not None
        consent.record(conn, cid, "sms", "marketing", "granted", source="form")
        return messaging.create(conn, settings, contact_id=cid, channel="sms", template=TEXT, key=key,
                                context={"body": body}).id


def message(db: HubDB, mid: int) -> Any:
    with db.engine.connect() as conn:
        return conn.execute(select(Message.__table__).where(Message.id == mid)).one()


def events(db: HubDB, mid: int) -> list[tuple[str, dict[str, Any]]]:
    e = MessageEvent.__table__.c
    with db.engine.connect() as conn:
        return [(r.kind, r.detail) for r in conn.execute(select(e.kind, e.detail).where(e.message_id == mid)
                                                          .order_by(e.id))]


@pytest.mark.parametrize("provider", ["smsru", "smsc", "smsaero"])
def test_a_preset_sends_is_charged_suppresses_dead_numbers_defers_limits_and_polls_reports(
        hub_db: HubDB, mailing: Any, emulator: Any, provider: str) -> None:
    settings = configured(hub_db, emulator, provider)
    ok = queue(hub_db, settings, "+79161234567", "ok", body="скидка " * 11)  # 77 Cyrillic characters: 2 parts
    dead = queue(hub_db, settings, "+79000000001", "dead")
    limited = queue(hub_db, settings, "+79990000001", "limit")
    lost = queue(hub_db, settings, "+79880000001", "lost")

    report = messaging.dispatch(hub_db.engine, settings)

    assert (report.sent, report.bounced) == (2, 1)
    sent = message(hub_db, ok)
    # SMS.ru names the cost in its status answer, the others in the answer to the send
    assert (sent.status, sent.parts, sent.cost) == ("sent", 2, None if provider == "smsru" else Decimal("5.00"))
    assert sent.provider_id
    assert message(hub_db, dead).status == "failed"
    with hub_db.engine.connect() as conn:
        assert consent.is_suppressed(conn, "phone", "+79000000001", secret=settings.require_secret_key())
    assert message(hub_db, limited).status == "deferred"  # it waits and is tried again
    assert message(hub_db, limited).error

    # the first poll finds them on their way, the next one their final word
    first = sms_reports.poll(hub_db.engine, settings)
    assert first["asked"] == 2 and first["delivered"] == first["undelivered"] == 0
    second = sms_reports.poll(hub_db.engine, settings)
    assert (second["delivered"], second["undelivered"]) == (1, 1)
    assert [k for k, _ in events(hub_db, ok)] == ["delivered"]
    assert message(hub_db, ok).cost == Decimal("5.00")
    kind, detail = events(hub_db, lost)[0]
    assert kind == "undelivered" and detail["provider"] == provider and detail["reason"]
    assert sms_reports.poll(hub_db.engine, settings)["asked"] == 0  # nothing left without a final report


def test_smsc_reports_a_wrong_number_as_a_bounce_that_suppresses_it(hub_db: HubDB, mailing: Any,
                                                                    emulator: Any) -> None:
    settings = configured(hub_db, emulator, "smsc")
    mid = queue(hub_db, settings, "+79770000001", "wrong")
    messaging.dispatch(hub_db.engine, settings)
    sms_reports.poll(hub_db.engine, settings)
    assert sms_reports.poll(hub_db.engine, settings)["bounce"] == 1
    assert [k for k, _ in events(hub_db, mid)] == ["bounce"]
    with hub_db.engine.connect() as conn:
        assert consent.is_suppressed(conn, "phone", "+79770000001", secret=settings.require_secret_key())


@pytest.mark.parametrize("provider", ["smsru", "smsc", "smsaero"])
def test_wrong_credentials_stop_the_channel_and_nobody_is_suppressed(hub_db: HubDB, mailing: Any, emulator: Any,
                                                                     provider: str) -> None:
    wrong = {"sms_api_key": "not-the-key", "sms_password": "not-the-password"}
    settings = configured(hub_db, emulator, provider, **wrong)
    mid = queue(hub_db, settings, "+79161234567", "k")
    messaging.dispatch(hub_db.engine, settings)
    row = message(hub_db, mid)
    assert row.status == "queued"
    assert "not-the-key" not in (row.error or "") and "not-the-password" not in (row.error or "")


def test_the_schedule_is_registered_only_for_a_preset_and_zero_turns_it_off(hub_db: HubDB, mailing: Any,
                                                                            emulator: Any) -> None:
    settings = configured(hub_db, emulator, "smsc")
    assert "sms-status" in schedule.schedules(settings, mailing)
    off = replace(settings, extra={**settings.extra, "sms_status_interval_s": "0"})
    assert "sms-status" not in schedule.schedules(off, mailing)
    generic = replace(hub_db.settings, extra={**hub_db.settings.extra, "sms_url": emulator.base_url})
    assert "sms-status" not in schedule.schedules(generic, mailing)
    mid = queue(hub_db, settings, "+79161234567", "k")
    messaging.dispatch(hub_db.engine, settings)
    sms_reports.poll(hub_db.engine, settings)
    ran = schedule.run_due(hub_db.engine, settings, pm=mailing, only=["sms-status"])
    assert ran.ran["sms-status"] == {"sms_status": "started"}
    assert [k for k, _ in events(hub_db, mid)] == ["delivered"]


# --- callbacks ---------------------------------------------------------------------------------

@pytest.fixture
def app(hub_db: HubDB, mailing: Any, emulator: Any) -> Any:
    # hook:register_routes
    return create_app(configured(hub_db, emulator, "smsru"))


def test_smsru_callbacks_are_recorded_once_and_answered_100(hub_db: HubDB, app: Any, emulator: Any) -> None:
    settings = configured(hub_db, emulator, "smsru")
    mid = queue(hub_db, settings, "+79161234567", "k")
    messaging.dispatch(hub_db.engine, settings)
    pid = message(hub_db, mid).provider_id
    body = urlencode([("data[0]", f"sms_status\n{pid}\n103\n1796551200"),
                      ("data[1]", "sms_status\n000000-0000000\n103\n1796551200")])
    client = app.test_client()
    for _ in range(2):
        answer = client.post(f"/sms/status/smsru/{SECRET}", data=body, content_type=FORM_TYPE)
        assert (answer.status_code, answer.get_data(as_text=True)) == (200, "100")
    assert [k for k, _ in events(hub_db, mid)] == ["delivered"]


def test_smsc_callback_records_undelivered_with_the_reason(hub_db: HubDB, app: Any, emulator: Any) -> None:
    settings = configured(hub_db, emulator, "smsc")
    mid = queue(hub_db, settings, "+79161234567", "k")
    messaging.dispatch(hub_db.engine, settings)
    pid = message(hub_db, mid).provider_id
    answer = app.test_client().post(f"/sms/status/smsc/{SECRET}", content_type=FORM_TYPE,
                                    data=urlencode({"id": pid, "phone": "79161234567", "status": "20", "err": "1",
                                                    "cost": "5.00"}))
    assert answer.status_code == 200 and answer.get_json()["undelivered"] == 1
    kind, detail = events(hub_db, mid)[0]
    assert kind == "undelivered" and detail == {"provider": "smsc", "code": "20",
                                                "reason": "impossible to deliver (error 1)"}


def test_a_report_names_its_message_by_id_and_number(hub_db: HubDB, app: Any, emulator: Any) -> None:
    """SMSC.ru's ids name a message only with its number; another provider's equal id is someone else's SMS."""
    settings = configured(hub_db, emulator, "smsc")
    mine = queue(hub_db, settings, "+79161234567", "mine")
    other = queue(hub_db, settings, "+79161234500", "other")
    messaging.dispatch(hub_db.engine, settings)
    pid = message(hub_db, mine).provider_id
    with hub_db.engine.begin() as conn:  # the same id, as an earlier provider numbered the other SMS
        conn.execute(Message.__table__.update().where(Message.id == other).values(provider_id=pid))
    answer = app.test_client().post(f"/sms/status/smsc/{SECRET}", content_type=FORM_TYPE,
                                    data=urlencode({"id": pid, "phone": "79161234567", "status": "1", "err": "0"}))
    assert answer.status_code == 200 and answer.get_json()["delivered"] == 1
    assert [k for k, _ in events(hub_db, mine)] == ["delivered"] and events(hub_db, other) == []
    # A poll asks about each (id, number) pair: the provider knows no SMS of that id to the other number.
    assert sms_reports.poll(hub_db.engine, settings)["asked"] == 1
    assert events(hub_db, other) == [] and [k for k, _ in events(hub_db, mine)] == ["delivered"]


def test_a_later_report_never_overturns_the_first_final_one(hub_db: HubDB, app: Any, emulator: Any) -> None:
    """Delivered first: a later "wrong number" callback (replayed, forged or a provider's slip) suppresses nothing."""
    settings = configured(hub_db, emulator, "smsc")
    mid = queue(hub_db, settings, "+79161234567", "k")
    messaging.dispatch(hub_db.engine, settings)
    pid = message(hub_db, mid).provider_id
    client = app.test_client()
    first = client.post(f"/sms/status/smsc/{SECRET}", content_type=FORM_TYPE,
                        data=urlencode({"id": pid, "phone": "79161234567", "status": "1", "err": "0"}))
    assert first.status_code == 200 and first.get_json()["delivered"] == 1
    for status, err in (("22", "0"), ("20", "1")):  # a bounce (wrong number), then plain undelivered
        later = client.post(f"/sms/status/smsc/{SECRET}", content_type=FORM_TYPE,
                            data=urlencode({"id": pid, "phone": "79161234567", "status": status, "err": err}))
        assert later.status_code == 200
        assert (later.get_json()["ignored"], later.get_json()["bounce"], later.get_json()["undelivered"]) == (1, 0, 0)
    assert [k for k, _ in events(hub_db, mid)] == ["delivered"]
    with hub_db.engine.connect() as conn:
        assert not consent.is_suppressed(conn, "phone", "+79161234567", secret=settings.require_secret_key())
    # The same final report again is still just a repeat.
    again = client.post(f"/sms/status/smsc/{SECRET}", content_type=FORM_TYPE,
                        data=urlencode({"id": pid, "phone": "79161234567", "status": "1", "err": "0"}))
    assert again.get_json()["duplicate"] == 1 and again.get_json()["ignored"] == 0


@pytest.mark.parametrize("path, body, status", [
    (f"/sms/status/smsru/{SECRET}x", "data[0]=sms_status%0A1%0A103%0A1", 403),
    ("/sms/status/smsc/forged", "id=1&status=1", 403),
    (f"/sms/status/smsaero/{SECRET}", "id=1&status=1", 404),
    (f"/sms/status/smsru/{SECRET}", "data[0]=sms_status%0A%0Axx", 400),
    (f"/sms/status/smsru/{SECRET}", "nothing=here", 400),
    (f"/sms/status/smsc/{SECRET}", "id=1&status=<script>", 400),
    (f"/sms/status/smsc/{SECRET}", "id=99999&status=1", 200),
])
def test_forged_malformed_and_unknown_callbacks(app: Any, path: str, body: str, status: int) -> None:
    answer = app.test_client().post(path, data=body, content_type=FORM_TYPE)
    assert answer.status_code == status
    assert "Traceback" not in answer.get_data(as_text=True)


def test_an_oversized_callback_is_refused(app: Any) -> None:
    body = "data[0]=" + "x" * (sms_reports.MAX_CALLBACK_BYTES + 10)
    answer = app.test_client().post(f"/sms/status/smsru/{SECRET}", data=body, content_type=FORM_TYPE)
    assert answer.status_code == 413


def test_more_sms_waiting_than_a_run_asks_about_are_asked_about_in_turn(hub_db: HubDB, mailing: Any,
                                                                        emulator: Any) -> None:
    settings = configured(hub_db, emulator, "smsc")
    for i in range(5):
        queue(hub_db, settings, f"+7916123450{i}", f"k{i}")
    assert messaging.dispatch(hub_db.engine, settings).sent == 5
    now = utcnow()
    with hub_db.engine.connect() as conn:
        every = sms_reports.waiting(conn, now)
        pages = [sms_reports.waiting(conn, now, limit=2, turn=turn) for turn in range(1, 7)]
    assert len(every) == 5
    # Three pages of two, one after another, then round again: none waits more than three runs.
    assert pages[:3] == [every[2:4], every[4:], every[:2]] and pages[3:] == pages[:3]
