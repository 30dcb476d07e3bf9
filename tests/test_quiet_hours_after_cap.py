"""Quiet hours still hold when the frequency cap moves a message later.

A cap that frees up at 22:58 puts an SMS in the night: it must go at 09:00
the next morning in the contact's own zone, and be asked about the cap again
then. The step, the forecast, the trial and the dispatcher all ask one
function (hub.send_limits.first_allowed), so they must agree; the runner is
driven on a fake clock (ticks.advance_due with `now`), as in test_workflows.
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

from hub import localtime, send_limits
from hub.config import load_settings
from hub.db import utcnow
from hub.i18n import use_language
from hub.messaging import dispatcher, rules
from hub.models import Message
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.shop import Person, make_shop, runs_of, start, use_workflows, write
from workflows import forecast, ticks, trial
from workflows.models import StepResult

pytestmark = pytest.mark.both_databases

UTC = dt.timezone.utc
CAP = send_limits.FrequencyCap(2, dt.timedelta(days=7))
QUIET = localtime.parse_quiet_hours("21:00-09:00")
ZONES = {"moscow": ("Europe/Moscow", "+74951230001"), "vladivostok": ("Asia/Vladivostok", "+74232230001")}
SMS_FLOW = ("name: sms_after_cap\ntrigger: {segment: dormant_90d}\nsteps:\n"
            "  - promo_code: {discount: 10%, valid_for: %(valid)s}\n"
            "  - send: {channel: sms, template: reactivation_sms}\n")


def local(zone: str, day: dt.date, hour: int, minute: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def a_day(days_ago: int = 20) -> dt.date:
    return (utcnow() - dt.timedelta(days=days_ago)).date()


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    db = use_workflows(hub_db, plugin_manager, monkeypatch)
    monkeypatch.setenv("HUB_QUIET_HOURS_SMS", "21:00-09:00")
    monkeypatch.setenv("HUB_FREQUENCY_CAP", "2/7d")
    return replace(db, settings=load_settings())


def sent_before(db: HubDB, contact_id: int, *moments: dt.datetime) -> None:
    """Letters the contact was already sent (they count against the cap), at the given moments."""
    with db.engine.begin() as conn:
        for i, at in enumerate(moments):
            conn.execute(insert(Message).values(
                idempotency_key=f"earlier:{contact_id}:{i}", contact_id=contact_id, channel="email",
                purpose="marketing", address="earlier@example.ru", subject="Раньше", body_text="Раньше",
                status="sent", due_at=at, created_at=at, updated_at=at))


def add_flow(tmp_path: Path, valid: str = "30d") -> None:
    result = CliRunner().invoke(cli, ["workflows", "add", write(tmp_path, "flow.yaml",
                                                                SMS_FLOW.replace("%(valid)s", valid))])
    assert result.exit_code == 0, result.output


# --- the function itself ----------------------------------------------------------------------

def test_a_slot_the_cap_frees_at_night_waits_for_the_morning() -> None:
    assert QUIET is not None
    msk = ZoneInfo("Europe/Moscow")
    day = dt.date(2026, 12, 6)
    evening = local("Europe/Moscow", day, 20, 30)
    times = [local("Europe/Moscow", day - dt.timedelta(days=7), 22, 58), evening - dt.timedelta(days=2)]
    slot = send_limits.first_allowed(evening, quiet=QUIET, zone=msk, cap=CAP, times=times)
    assert slot.at == local("Europe/Moscow", day + dt.timedelta(days=1), 9, 0)
    assert [m.kind for m in slot.moves] == ["frequency_cap", "quiet_hours"]
    assert slot.moves[0].until == local("Europe/Moscow", day, 22, 58)
    assert slot.reason == "frequency cap 2/7d reached; quiet hours 21:00-09:00 in Europe/Moscow"
    # Nothing in the way: the moment itself, no moves, no reason.
    free = send_limits.first_allowed(evening, quiet=QUIET, zone=msk, cap=CAP, times=times[1:])
    assert free.at == evening and free.moves == () and free.reason == ""


def test_cap_then_quiet_then_cap_again_and_quiet_again() -> None:
    """The morning the quiet hours move it to is under the cap again (a message planned for tonight)."""
    assert QUIET is not None
    zone = "Asia/Vladivostok"
    day = dt.date(2026, 12, 6)
    evening = local(zone, day, 20, 30)
    times = [local(zone, day - dt.timedelta(days=7), 22, 58), local(zone, day - dt.timedelta(days=2), 22, 0),
             local(zone, day, 23, 30)]  # the last: queued later tonight (an email, no quiet hours)
    slot = send_limits.first_allowed(evening, quiet=QUIET, zone=ZoneInfo(zone), cap=CAP, times=times)
    assert [(m.kind, m.until) for m in slot.moves] == [
        ("frequency_cap", local(zone, day, 22, 58)),
        ("quiet_hours", local(zone, day + dt.timedelta(days=1), 9, 0)),
        ("frequency_cap", local(zone, day + dt.timedelta(days=5), 22, 0)),
        ("quiet_hours", local(zone, day + dt.timedelta(days=6), 9, 0))]
    assert slot.at == local(zone, day + dt.timedelta(days=6), 9, 0)
    assert slot.reason == "frequency cap 2/7d reached; quiet hours 21:00-09:00 in Asia/Vladivostok"
    assert QUIET.end_after(slot.at, ZoneInfo(zone)) is None
    assert send_limits.cap_until(CAP, times, slot.at) is None


def test_it_ends_however_many_messages_count() -> None:
    """Many messages an hour apart each free a slot in the night: still one answer, outside both limits."""
    assert QUIET is not None
    msk = ZoneInfo("Europe/Moscow")
    start_at = local("Europe/Moscow", dt.date(2026, 12, 6), 20, 30)
    times = [start_at - dt.timedelta(days=7) + dt.timedelta(hours=h, minutes=1) for h in range(200)]
    slot = send_limits.first_allowed(start_at, quiet=QUIET, zone=msk, cap=send_limits.FrequencyCap(1, CAP.period),
                                     times=times)
    assert QUIET.end_after(slot.at, msk) is None
    assert send_limits.cap_until(send_limits.FrequencyCap(1, CAP.period), times, slot.at) is None
    assert len(slot.moves) <= 2 * len(times) + 1


# --- the runner, the forecast and the trial agree ------------------------------------------------

@pytest.mark.parametrize("where", ["moscow", "vladivostok"])
def test_an_sms_the_cap_holds_into_the_night_goes_at_nine_in_the_contacts_zone(
        wf: HubDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    zone, phone = ZONES[where]
    day = a_day(20)
    evening = local(zone, day, 20, 30)
    ids = make_shop(wf, [Person(where, "Мария", phone, f"{where}@example.ru", timezone=zone)], now=evening)
    cid = ids[where]
    sent_before(wf, cid, local(zone, day - dt.timedelta(days=7), 22, 58), evening - dt.timedelta(days=2))
    add_flow(tmp_path)
    morning = local(zone, day + dt.timedelta(days=1), 9, 0)

    # What the forecast and the trial say, before anything runs.
    report = forecast.forecast(wf.engine, wf.settings, "sms_after_cap", now=evening)
    (contact,) = report["contacts"]
    assert [dt.datetime.fromisoformat(a["at"]) for a in contact["actions"]] == [evening, morning]
    sms_step = report["steps"][1]
    assert sms_step["deferred_frequency_cap"] == 1 and sms_step["deferred_quiet_hours"] == 1
    with use_language("ru"):
        traced = trial.trial(wf.engine, wf.settings, "sms_after_cap", cid, now=evening)
    sms = traced["steps"][1]
    assert sms["outcome"] == "sent" and dt.datetime.fromisoformat(sms["at"]) == morning
    assert len(sms["moved"]) == 2
    assert "22:58" in sms["moved"][0] and "09:00" in sms["moved"][1]  # the cap first, then the night
    assert "истёк" not in sms["text"]  # the code is valid for 30 days

    # The runner: at 20:30 the step waits straight for the morning, not for 22:58. The tick hands new
    # messages to the outbox, whose dispatch reads the clock: it reads the test's clock too.
    clock = [evening]
    monkeypatch.setattr(dispatcher, "utcnow", lambda: clock[0])
    monkeypatch.setattr(rules, "utcnow", lambda: clock[0])
    start(wf, "sms_after_cap", evening)
    (run,) = runs_of(wf, "sms_after_cap")
    assert run.status == "waiting" and run.next_at == morning
    with wf.engine.connect() as conn:
        held = conn.execute(select(StepResult).where(StepResult.run_id == run.id,
                                                     StepResult.kind == "send")).one()
    assert held.status == "deferred"
    assert held.detail == f"frequency cap 2/7d reached; quiet hours 21:00-09:00 in {zone}"
    clock[0] = local(zone, day, 22, 59)
    ticks.advance_due(wf.engine, wf.settings, now=clock[0])
    assert sms_sent(wf) == []
    clock[0] = morning + dt.timedelta(minutes=1)
    ticks.advance_due(wf.engine, wf.settings, now=clock[0])
    (message,) = sms_sent(wf)
    assert message.status == "sent" and message.contact_id == cid
    assert message.created_at.replace(tzinfo=UTC) == morning + dt.timedelta(minutes=1)
    assert runs_of(wf, "sms_after_cap")[0].status == "done"


def sms_sent(db: HubDB) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(Message).where(Message.channel == "sms")))


def test_the_dispatcher_holds_a_capped_message_past_the_night(wf: HubDB) -> None:
    """A message queued by anyone (not a workflow): the outbox's own check holds it to 09:00, not to 22:58."""
    zone = "Europe/Moscow"
    day = a_day(15)
    evening = local(zone, day, 20, 30)
    ids = make_shop(wf, [Person("masha", "Мария", "+74951230002", "masha@example.ru", timezone=zone)], now=evening)
    cid = ids["masha"]
    sent_before(wf, cid, local(zone, day - dt.timedelta(days=7), 22, 58), evening - dt.timedelta(days=2))
    with wf.engine.begin() as conn:
        message_id = conn.execute(insert(Message).values(
            idempotency_key="evening-sms", contact_id=cid, channel="sms", purpose="marketing",
            address="+74951230002", body_text="Скидка до воскресенья", status="queued", due_at=evening,
            created_at=evening, updated_at=evening).returning(Message.id)).scalar_one()
    dispatcher.dispatch(wf.engine, wf.settings, ids=[message_id], now=evening)
    morning = local(zone, day + dt.timedelta(days=1), 9, 0)
    (held,) = sms_sent(wf)
    assert held.status == "queued" and held.due_at.replace(tzinfo=UTC) == morning
    assert held.error == "held: frequency cap 2/7d reached; quiet hours 21:00-09:00 in Europe/Moscow"
    dispatcher.dispatch(wf.engine, wf.settings, ids=[message_id], now=local(zone, day, 22, 59))
    assert sms_sent(wf)[0].status == "queued"
    dispatcher.dispatch(wf.engine, wf.settings, ids=[message_id], now=morning + dt.timedelta(minutes=1))
    assert sms_sent(wf)[0].status == "sent"


def test_on_cap_skip_waits_out_the_night_then_skips_as_the_forecast_says(wf: HubDB, tmp_path: Path) -> None:
    zone = "Europe/Moscow"
    day = a_day(25)
    night = local(zone, day, 22, 0)
    ids = make_shop(wf, [Person("olga", "Ольга", "+74951230003", "olga@example.ru", timezone=zone)], now=night)
    cid = ids["olga"]
    sent_before(wf, cid, night - dt.timedelta(days=3), night - dt.timedelta(days=2))
    text = SMS_FLOW.replace("%(valid)s", "30d").replace("reactivation_sms}", "reactivation_sms, on_cap: skip}")
    assert CliRunner().invoke(cli, ["workflows", "add", write(tmp_path, "skip.yaml", text)]).exit_code == 0
    morning = local(zone, day + dt.timedelta(days=1), 9, 0)
    report = forecast.forecast(wf.engine, wf.settings, "sms_after_cap", now=night)
    assert report["steps"][1]["skipped_frequency_cap"] == 1
    traced = trial.trial(wf.engine, wf.settings, "sms_after_cap", cid, now=night)
    assert traced["steps"][1]["outcome"] == "stopped" and traced["steps"][1]["reason"] == "capped"
    assert dt.datetime.fromisoformat(traced["steps"][1]["at"]) == morning
    start(wf, "sms_after_cap", night)
    assert runs_of(wf, "sms_after_cap")[0].next_at == morning
    ticks.advance_due(wf.engine, wf.settings, now=morning)
    (run,) = runs_of(wf, "sms_after_cap")
    with wf.engine.connect() as conn:
        results = list(conn.execute(select(StepResult).where(StepResult.run_id == run.id,
                                                             StepResult.kind == "send")))
    assert [r.status for r in results] == ["skipped"] and results[0].detail == "frequency cap 2/7d reached"
    assert sms_sent(wf) == [] and run.status == "done"


def test_the_trial_says_when_the_code_expires_before_the_held_sms_goes(wf: HubDB, tmp_path: Path) -> None:
    zone = "Europe/Moscow"
    day = a_day(30)
    evening = local(zone, day, 20, 30)
    ids = make_shop(wf, [Person("ira", "Ирина", "+74951230004", "ira@example.ru", timezone=zone)], now=evening)
    cid = ids["ira"]
    sent_before(wf, cid, evening - dt.timedelta(days=3), evening - dt.timedelta(days=2, hours=10))
    add_flow(tmp_path, valid="1d")
    with use_language("ru"):
        sms = trial.trial(wf.engine, wf.settings, "sms_after_cap", cid, now=evening)["steps"][1]
    assert sms["outcome"] == "sent"
    assert "промокод из сообщения уже истёк (действовал до " in sms["text"]
    with use_language("en"):
        sms = trial.trial(wf.engine, wf.settings, "sms_after_cap", cid, now=evening)["steps"][1]
    assert "By then the promo code it shows has expired" in sms["text"]
