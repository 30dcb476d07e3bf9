"""A transactional send step may go in the quiet hours (`quiet_hours: ignore`); advertising may not.

An order or pickup notice may go at 22:30; a marketing message with the same
option is refused when the workflow is checked. The step writes the exemption
into its message's meta, and the dispatcher's own check (hub.send_limits)
honours it for that message only, and only because it is transactional. The
runner is driven on a fake clock (ticks.advance_due with `now`, the
dispatcher's clock patched to the same moment), as in test_quiet_hours_after_cap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

from hub import message_templates, send_limits
from hub.api import consent_purposes
from hub.config import load_settings
from hub.db import utcnow
from hub.i18n import use_language
from hub.messaging import dispatcher, rules
from hub.models import Message
from tests.browser import Browser
from tests.conftest import HubDB
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in
from tests.support.cli import cli
from tests.support.shop import Person, make_shop, runs_of, start, use_workflows, write
from workflows import builder_model, forecast, ticks, trial
from workflows.builder_admin import _kinds
from workflows.models import StepResult
from workflows.send import Send

pytestmark = pytest.mark.both_databases

UTC = dt.timezone.utc
MSK = "Europe/Moscow"
PICKUP = message_templates.Template(
    name="pickup_ready_sms", channel="sms",
    text="{{ contact.first_name }}, ваш заказ ждёт в пункте выдачи до 23:00.")
FLOW = ("name: pickup_notice\ntrigger: {segment: dormant_90d}\nsteps:\n"
        "  - send: {channel: sms, template: pickup_ready_sms, purpose: %(purpose)s%(extra)s}\n")
NOTE_RU = "тихие часы не применяются: служебное сообщение"


def local(day: dt.date, hour: int, minute: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZoneInfo(MSK)).astimezone(UTC)


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    db = use_workflows(hub_db, plugin_manager, monkeypatch)
    monkeypatch.setenv("HUB_QUIET_HOURS_SMS", "21:00-09:00")
    monkeypatch.setenv("HUB_FREQUENCY_CAP", "2/7d")
    db = replace(db, settings=load_settings())
    with db.engine.begin() as conn:
        message_templates.save(conn, db.settings, PICKUP)
    return db


def add_flow(tmp_path: Path, purpose: str = "transactional", quiet_hours: str | None = "ignore") -> Any:
    extra = f", quiet_hours: {quiet_hours}" if quiet_hours is not None else ""
    text = FLOW.replace("%(purpose)s", purpose).replace("%(extra)s", extra)
    return CliRunner().invoke(cli, ["workflows", "add", write(tmp_path, "flow.yaml", text)])


def late_evening(wf: HubDB, days_ago: int) -> tuple[int, dt.date, dt.datetime]:
    day = (utcnow() - dt.timedelta(days=days_ago)).date()
    at = local(day, 22, 30)
    ids = make_shop(wf, [Person("olga", "Ольга", "+74951230011", "olga@example.ru", timezone=MSK)], now=at)
    return ids["olga"], day, at


def fake_clock(monkeypatch: pytest.MonkeyPatch, at: dt.datetime) -> list[dt.datetime]:
    clock = [at]
    monkeypatch.setattr(dispatcher, "utcnow", lambda: clock[0])
    monkeypatch.setattr(rules, "utcnow", lambda: clock[0])
    return clock


def sms_messages(db: HubDB) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(Message).where(Message.channel == "sms").order_by(Message.id)))


def test_a_transactional_sms_that_ignores_quiet_hours_goes_at_22_30(
        wf: HubDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cid, _day, evening = late_evening(wf, 20)
    result = add_flow(tmp_path)
    assert result.exit_code == 0, result.output

    # The forecast and the trial: at once, nothing held by the quiet hours, and the trace says why.
    report = forecast.forecast(wf.engine, wf.settings, "pickup_notice", now=evening)
    (contact,) = report["contacts"]
    assert [dt.datetime.fromisoformat(a["at"]) for a in contact["actions"]] == [evening]
    assert report["steps"][0].get("deferred_quiet_hours", 0) == 0
    with use_language("ru"):
        traced = trial.trial(wf.engine, wf.settings, "pickup_notice", cid, now=evening)
    (sms,) = [s for s in traced["steps"] if s["outcome"] != "end"]
    assert sms["outcome"] == "sent" and dt.datetime.fromisoformat(sms["at"]) == evening
    assert sms["moved"] == [NOTE_RU] and NOTE_RU in sms["text"]
    with use_language("en"):
        traced = trial.trial(wf.engine, wf.settings, "pickup_notice", cid, now=evening)
    assert "quiet hours do not apply: a transactional message" in traced["steps"][0]["text"]

    # The runner and the dispatch, on the same clock: the message is written and sent at 22:30.
    fake_clock(monkeypatch, evening)
    start(wf, "pickup_notice", evening)
    (run,) = runs_of(wf, "pickup_notice")
    assert run.status == "done"
    (message,) = sms_messages(wf)
    assert message.status == "sent" and message.contact_id == cid
    assert message.meta["quiet_hours"] == "ignore" and message.purpose == "transactional"
    assert message.created_at.replace(tzinfo=UTC) == evening


def test_respect_still_waits_for_nine_and_the_forecast_and_trial_agree(
        wf: HubDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cid, day, evening = late_evening(wf, 22)
    assert add_flow(tmp_path, quiet_hours="respect").exit_code == 0
    morning = local(day + dt.timedelta(days=1), 9, 0)
    report = forecast.forecast(wf.engine, wf.settings, "pickup_notice", now=evening)
    assert [dt.datetime.fromisoformat(a["at"]) for a in report["contacts"][0]["actions"]] == [morning]
    assert report["steps"][0]["deferred_quiet_hours"] == 1
    with use_language("ru"):
        sms = trial.trial(wf.engine, wf.settings, "pickup_notice", cid, now=evening)["steps"][0]
    assert sms["outcome"] == "sent" and dt.datetime.fromisoformat(sms["at"]) == morning
    assert NOTE_RU not in sms["text"] and "09:00" in sms["moved"][0]

    clock = fake_clock(monkeypatch, evening)
    start(wf, "pickup_notice", evening)
    (run,) = runs_of(wf, "pickup_notice")
    assert run.status == "waiting" and run.next_at.replace(tzinfo=UTC) == morning
    with wf.engine.connect() as conn:
        held = conn.execute(select(StepResult).where(StepResult.run_id == run.id)).one()
    assert held.status == "deferred" and held.detail == "quiet hours 21:00-09:00 in Europe/Moscow"
    assert sms_messages(wf) == []
    clock[0] = morning + dt.timedelta(minutes=1)
    ticks.advance_due(wf.engine, wf.settings, now=clock[0])
    (message,) = sms_messages(wf)
    assert message.status == "sent" and "quiet_hours" not in (message.meta or {})


def test_without_the_option_a_transactional_sms_waits_too(wf: HubDB, tmp_path: Path) -> None:
    _cid, day, evening = late_evening(wf, 24)
    assert add_flow(tmp_path, quiet_hours=None).exit_code == 0
    report = forecast.forecast(wf.engine, wf.settings, "pickup_notice", now=evening)
    assert [dt.datetime.fromisoformat(a["at"]) for a in report["contacts"][0]["actions"]] == [
        local(day + dt.timedelta(days=1), 9, 0)]


@pytest.mark.parametrize("language", ["ru", "en"])
def test_ignore_is_refused_for_every_marketing_purpose_naming_why(
        wf: HubDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, language: str) -> None:
    monkeypatch.setenv("HUB_LANGUAGE", language)
    for purpose in consent_purposes(wf.settings):
        result = add_flow(tmp_path, purpose=purpose)
        assert result.exit_code != 0, purpose
        assert "steps[0].send.quiet_hours" in result.output and repr(purpose) in result.output
        if language == "ru":
            assert "только служебные" in result.output and "реклама" in result.output
        else:
            assert "only for transactional messages" in result.output and "advertising" in result.output
    with wf.engine.connect() as conn:
        assert conn.execute(select(Message)).first() is None
    assert runs_of(wf, "pickup_notice") == []


@pytest.mark.parametrize("value", ["sometimes", "IGNORE", "1", "[ignore]", "{a: b}", "'<script>x</script>'"])
def test_a_value_other_than_respect_or_ignore_is_refused(wf: HubDB, tmp_path: Path, value: str) -> None:
    result = add_flow(tmp_path, quiet_hours=value)
    assert result.exit_code != 0
    assert "steps[0].send.quiet_hours" in result.output and "respect, ignore" in result.output
    assert "Traceback" not in result.output


def test_the_dispatcher_exempts_only_a_transactional_message(wf: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hand-made marketing row with the same meta is held all the same: the purpose decides, not the meta."""
    cid, day, evening = late_evening(wf, 26)
    ids = {}
    with wf.engine.begin() as conn:
        for purpose in ("transactional", "marketing"):
            ids[purpose] = conn.execute(insert(Message).values(
                idempotency_key=f"night-{purpose}", contact_id=cid, channel="sms", purpose=purpose,
                address="+74951230011", body_text="Заказ ждёт вас", status="queued", due_at=evening,
                meta={"quiet_hours": "ignore"}, created_at=evening, updated_at=evening).returning(Message.id)
            ).scalar_one()
    fake_clock(monkeypatch, evening)
    dispatcher.dispatch(wf.engine, wf.settings, ids=list(ids.values()), now=evening)
    found = {m.purpose: m for m in sms_messages(wf)}
    assert found["transactional"].status == "sent"
    assert found["marketing"].status == "queued"
    assert found["marketing"].due_at.replace(tzinfo=UTC) == local(day + dt.timedelta(days=1), 9, 0)
    assert send_limits.ignores_quiet_hours("transactional", {"quiet_hours": "ignore"})
    assert not send_limits.ignores_quiet_hours("marketing", {"quiet_hours": "ignore"})
    assert not send_limits.ignores_quiet_hours("transactional", {"quiet_hours": "respect"})
    assert not send_limits.ignores_quiet_hours("transactional", None)


def test_the_option_survives_the_builder_and_its_form_speaks_russian(wf: HubDB) -> None:
    document: dict[str, Any] = {"name": "pickup_notice", "trigger": {"segment": "dormant_90d"}, "steps": [
        {"send": {"channel": "sms", "template": "pickup_ready_sms", "purpose": "transactional",
                  "quiet_hours": "ignore"}}]}
    kinds = {"send": Send}
    tree = builder_model.to_model(document, kinds)
    assert tree is not None
    assert tree["steps"][0] == {"kind": "send", "options": document["steps"][0]["send"]}
    assert builder_model.to_document(tree) == document
    assert builder_model.from_text(builder_model.to_text(document)) == document
    with use_language("ru"):
        (form,) = [k["form"] for k in _kinds() if k["kind"] == "send"]
    (field,) = [f for f in form if f["key"] == "quiet_hours"]
    assert field["kind"] == "choice"
    assert field["choices"] == [["respect", "соблюдать тихие часы"],
                                ["ignore", "отправлять и в тихие часы (только для служебных)"]]


# --- the builder, in headless Chromium as a marketer ------------------------------------------------

def test_the_builder_offers_the_exemption_only_for_a_transactional_step(admin_env: AdminEnv, live: str,
                                                                         browser: Browser) -> None:
    sign_in(browser, live, "marketer", "/workflows/new")
    browser.wait(lambda: browser.exists('.wf-add[data-at="steps[0]"]'), "the builder to draw an empty workflow")
    browser.click('.wf-add[data-at="steps[0]"]')
    browser.click('.wf-add[data-at="steps[0]"] ~ .wf-menu button[data-add-kind="send"]')
    card = '.wf-step[data-path="steps[0]"] > .wf-body'
    browser.wait(lambda: browser.exists(f'{card} > [data-option="quiet_hours"]'), "the send step's form")
    field = f'{card} > [data-option="quiet_hours"]'
    assert not browser.find(field).is_displayed()  # no purpose yet: advertising by default
    browser.select(f'{card} > [data-option="channel"] select', "sms")
    browser.select(f'{card} > [data-option="template"] select', "reactivation_sms")
    browser.select(f'{card} > [data-option="purpose"] select', "transactional")
    browser.wait(lambda: browser.find(field).is_displayed(), "the exemption offered for a transactional step")
    assert "отправлять и в тихие часы (только для служебных)" in browser.text(f"{field} select")
    browser.select(f"{field} select", "ignore")

    def document() -> str:
        return str(browser.find("#workflow-document").get_attribute("value"))

    browser.wait(lambda: "quiet_hours: ignore" in document(), "the text to follow the choice")
    # Switched to advertising with the exemption still chosen: it stays in sight, and the check says why not.
    browser.select(f'{card} > [data-option="purpose"] select', "marketing")
    problem = browser.wait_text('.wf-step[data-path="steps[0]"] > .node-problems', "только служебные")
    assert "реклама" in problem and browser.find(field).is_displayed()
    browser.select(f"{field} select", "")
    browser.wait(lambda: "quiet_hours" not in document(), "the option gone from the text")
    browser.wait(lambda: not browser.find(field).is_displayed(), "the exemption hidden again for advertising")
