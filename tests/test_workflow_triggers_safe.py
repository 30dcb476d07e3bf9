"""Exit and date triggers that a marketer can trust: nothing stale or wholesale fires unseen, no day is lost.

Time passes only through the `now` the tick is given; the segments engine,
the runs and both databases are real.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from hub.db import utcnow
from hub.models import Contact
from tests.conftest import HubDB
from tests.support.admin import AdminEnv, admin_env  # noqa: F401
from tests.support.cli import cli
from tests.support.shop import Person, add_order, enable, make_shop, runs_of, use_workflows, write
from workflows import forecast, store, ticks, trial, triggers

pytestmark = pytest.mark.both_databases  # savepoints, runs started once (ON CONFLICT), dates for each database

UTC = dt.timezone.utc
PEOPLE = [Person("anna", "Анна", "+74951110001", "anna@example.ru"),
          Person("gleb", "Глеб", "+74951110004", "gleb@example.ru"),
          Person("vera", "Вера", "+74951110003", "vera@example.ru", bought_days_ago=20)]
THANKS = "name: welcome_back\ntrigger: {segment: dormant_90d, on: exit}\nsteps: [{tag: came_back}]\n"
BIRTHDAY = ("name: birthday_soon\ntrigger: {date: contact.birthday, before: 3d}\n"
            "steps: [{tag: birthday_soon}]\n")


def hub(*args: str, **env: str) -> Any:
    return CliRunner().invoke(cli, list(args), env=env or None)


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    return use_workflows(hub_db, plugin_manager, monkeypatch)


def add(db: HubDB, tmp_path: Path, text: str, *, on: dt.datetime | None = None, switch_on: bool = True) -> str:
    result = hub("workflows", "add", write(tmp_path, "w.yaml", text))
    assert result.exit_code == 0, result.output
    name = text.split("\n", 1)[0].removeprefix("name: ").strip()
    if switch_on:
        enable(db, name, on)
    return name


def state_of(db: HubDB, name: str) -> dict[str, Any]:
    with db.engine.connect() as conn:
        return dict(store.row(conn, name).state or {})


def refresh(db: HubDB, now: dt.datetime) -> None:
    from hub.segments import membership

    membership.refresh(db.engine, db.settings, ["dormant_90d"], now=now)


def dormant_shop(db: HubDB) -> tuple[dt.datetime, dict[str, int]]:
    """Anna and Gleb have not bought for 120 days (dormant), Vera bought 20 days ago; the segment refreshed."""
    now = utcnow().replace(microsecond=0) - dt.timedelta(hours=1)
    ids = make_shop(db, PEOPLE, now=now)
    refresh(db, now)
    return now, ids


# --- leaving a segment: the forecast, switching on, many at once, one failing --------------------

def test_an_exit_forecast_counts_who_no_longer_fits_and_switching_on_sends_them_nothing(
        wf: HubDB, tmp_path: Path) -> None:
    now, ids = dormant_shop(wf)
    name = add(wf, tmp_path, THANKS, switch_on=False)
    add_order(wf, "anna", closed_at=now)  # anna bought: recorded as dormant, no longer fits
    off = forecast.forecast(wf.engine, wf.settings, name, now=now + dt.timedelta(minutes=1))
    assert off["would_start"] == 0
    assert "кто из него выйдет, заранее не узнать" in off["note"]
    assert "1 человек из сегмента уже не подходит под его правило: при включении сегмент сначала обновится" \
        in off["note"]
    enable(wf, name, now + dt.timedelta(minutes=2))  # the segment is brought up to date first: anna is no exit
    report = ticks.tick(wf.engine, wf.settings, now=now + dt.timedelta(minutes=3))
    assert report.started[name]["started"] == 0 and runs_of(wf, name) == []
    add_order(wf, "gleb", closed_at=now + dt.timedelta(minutes=4))  # gleb leaves after it is on
    on = forecast.forecast(wf.engine, wf.settings, name, now=now + dt.timedelta(minutes=5))
    assert on["would_start"] + on["holdout"] == 1 and forecast.switch_on_numbers(on)["first_tick"] == 1
    ticks.tick(wf.engine, wf.settings, now=now + dt.timedelta(minutes=6))
    assert [(r.contact_id, r.trigger) for r in runs_of(wf, name)] == [(ids["gleb"], "exit:dormant_90d")]


def test_too_many_leaving_at_once_are_held_for_an_admin(wf: HubDB, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    now, ids = dormant_shop(wf)
    name = add(wf, tmp_path, THANKS, on=now)
    monkeypatch.setenv("HUB_WORKFLOWS_CONFIRM_ADMIN_OVER", "1")
    settings = replace(wf.settings, extra={**wf.settings.extra, "workflows_confirm_admin_over": 1})
    add_order(wf, "anna", closed_at=now)
    add_order(wf, "gleb", closed_at=now)
    later = now + dt.timedelta(hours=1)
    report = ticks.tick(wf.engine, settings, now=later)  # both leave in one refresh: more than 1
    assert report.started[name]["started"] == 0 and runs_of(wf, name) == []
    held = state_of(wf, name)["held_exits"]
    assert held == {"segment": "dormant_90d", "at": later.isoformat(), "count": 2,
                    "ids": sorted([ids["anna"], ids["gleb"]])}
    with wf.engine.begin() as conn:  # gleb is erased meanwhile: he is not started
        conn.execute(update(Contact).where(Contact.id == ids["gleb"]).values(deleted_at=later))
        started = triggers.start_held_exits(conn, wf.settings, name, now=later + dt.timedelta(minutes=1))
    assert started.started == 1 and [r.contact_id for r in runs_of(wf, name)] == [ids["anna"]]
    assert "held_exits" not in state_of(wf, name)


def test_one_workflow_failing_does_not_fail_the_refresh_nor_the_others(wf: HubDB, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    now, ids = dormant_shop(wf)
    good = add(wf, tmp_path, THANKS, on=now)
    bad = add(wf, tmp_path, THANKS.replace("welcome_back", "broken_thanks"), on=now)
    real_start = triggers.start

    def failing(conn: Any, row: Any, *args: Any, **kwargs: Any) -> triggers.StartReport:
        if row.name == bad:
            real_start(conn, row, *args, **kwargs)  # writes, then fails: the savepoint takes the writes back
            raise IntegrityError("INSERT INTO workflow_runs", {}, Exception("duplicate key"))
        return real_start(conn, row, *args, **kwargs)

    monkeypatch.setattr(triggers, "start", failing)
    add_order(wf, "anna", closed_at=now)
    assert hub("segments", "refresh", "dormant_90d").exit_code == 0
    assert [r.contact_id for r in runs_of(wf, good)] == [ids["anna"]]
    assert runs_of(wf, bad) == []
    failed = state_of(wf, bad)["exit_failed"]
    assert failed["segment"] == "dormant_90d" and failed["error"] == "IntegrityError" and failed["count"] == 1
    assert "broken_thanks" in caplog.text and "Анна" not in caplog.text and "anna@" not in caplog.text
    with wf.engine.connect() as conn:  # the refresh committed: anna is no longer recorded as a member
        assert triggers.exit_pending(conn, wf.settings, "dormant_90d", now=utcnow()) == []


# --- the date trigger: missed days, the forecast's days, a far time zone ------------------------

def test_missed_days_are_caught_up_at_most_a_week_back(wf: HubDB, tmp_path: Path) -> None:
    day0 = dt.datetime(2026, 3, 1, 7, 30, tzinfo=UTC)  # 10:30 in Moscow
    people = [Person(f"p{i}", f"Покупатель {i}", None, f"p{i}@example.ru") for i in range(12)]
    ids = make_shop(wf, people, now=day0)
    # p{i}'s birthday comes round 3 days after day i: one person a day
    with wf.engine.begin() as conn:
        for i in range(12):
            day = (day0 + dt.timedelta(days=i + 3)).date()
            conn.execute(update(Contact).where(Contact.id == ids[f"p{i}"]).values(birthday=day.replace(year=1990)))
    name = add(wf, tmp_path, BIRTHDAY, on=day0 - dt.timedelta(hours=1))
    assert ticks.tick(wf.engine, wf.settings, now=day0).started[name]["started"] == 1  # day 0: p0
    # the scheduler is down for days 1 and 2; on day 3 it catches them up with today's
    assert ticks.tick(wf.engine, wf.settings, now=day0 + dt.timedelta(days=3)).started[name]["started"] == 3
    assert [r.contact_id for r in runs_of(wf, name)] == sorted(ids[f"p{i}"] for i in range(4))
    assert state_of(wf, name)["date_day"] == "2026-03-04"
    # down for ten days: only the last week (days 7..11 here, of which p7..p11 exist) is looked at again
    assert ticks.tick(wf.engine, wf.settings, now=day0 + dt.timedelta(days=14)).started[name]["started"] == 5
    assert {r.contact_id for r in runs_of(wf, name)} == {ids[f"p{i}"] for i in (0, 1, 2, 3, 7, 8, 9, 10, 11)}
    # before 10:00 the next day: yesterday is done, today waits for its time
    early = day0 + dt.timedelta(days=15, hours=-1)
    with wf.engine.connect() as conn:
        workflow = store.current(conn, wf.settings, name)[1]
    assert triggers.date_days(workflow, state_of(wf, name), wf.settings, early) == []


@pytest.mark.parametrize("zone", ["Pacific/Tongatapu", "Pacific/Pago_Pago"])
def test_a_date_trigger_in_a_far_time_zone_reaches_the_right_day(wf: HubDB, tmp_path: Path, zone: str) -> None:
    """+13 and −11: the target day is the shop's day, not UTC's."""
    settings = replace(wf.settings, timezone=zone)
    now = dt.datetime.combine(dt.date(2026, 5, 10), dt.time(11), settings.tz)  # 11:00 local, 10 May
    ids = make_shop(wf, PEOPLE, now=now)
    with wf.engine.begin() as conn:
        conn.execute(update(Contact).where(Contact.id == ids["anna"]).values(birthday=dt.date(1990, 5, 13)))
        conn.execute(update(Contact).where(Contact.id == ids["gleb"]).values(birthday=dt.date(1990, 5, 12)))
        conn.execute(update(Contact).where(Contact.id == ids["vera"]).values(birthday=dt.date(1990, 5, 14)))
    name = add(wf, tmp_path, BIRTHDAY, switch_on=False)
    with wf.engine.connect() as conn:
        workflow = store.current(conn, settings, name)[1]
        found = [c.contact_id for c in triggers.date_candidates(conn, settings, workflow, now=now)]
        assert found == [ids["anna"]]
        assert triggers.date_next(conn, settings, workflow, ids["vera"], now=now) == dt.date(2026, 5, 11)


# --- the test on a contact, for every kind of trigger ------------------------------------------

def entry(db: HubDB, name: str, cid: int, now: dt.datetime) -> dict[str, Any]:
    return trial.trial(db.engine, db.settings, name, cid, now=now)["entry"]


def test_trying_a_date_workflow_says_when_the_date_comes_round(wf: HubDB, tmp_path: Path) -> None:
    now = dt.datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
    ids = make_shop(wf, PEOPLE, now=now)
    with wf.engine.begin() as conn:
        conn.execute(update(Contact).where(Contact.id == ids["anna"]).values(birthday=dt.date(1990, 3, 13)))
        conn.execute(update(Contact).where(Contact.id == ids["gleb"]).values(birthday=dt.date(1988, 4, 1)))
    name = add(wf, tmp_path, BIRTHDAY, switch_on=False)
    today = entry(wf, name, ids["anna"], now)
    assert today["enters"] and today["status"] == "enters"
    assert "наступает 13.03.2026: сценарий запустится для него сегодня в 10:00 (по времени магазина)" in today["text"]
    later = entry(wf, name, ids["gleb"], now)
    assert not later["enters"] and later["status"] == "not_today"
    assert "наступит 01.04.2026: сценарий запустится для него 29.03.2026 в 10:00 (по времени магазина)" \
        in later["text"]
    never = entry(wf, name, ids["vera"], now)
    assert never["status"] == "no_date" and "в карточке нет даты «дата рождения»" in never["text"]
    result = hub("workflows", "try", name, "--contact", str(ids["gleb"]))
    assert result.exit_code == 0, result.output


def test_trying_an_exit_workflow_reads_the_right_way_round(wf: HubDB, tmp_path: Path) -> None:
    now, ids = dormant_shop(wf)
    name = add(wf, tmp_path, THANKS, on=now)
    member = entry(wf, name, ids["anna"], now)
    assert member["status"] == "not_left" and not member["enters"]
    assert member["text"].startswith("сейчас не входит: в сегменте «Не покупали 90 дней")
    assert "(dormant_90d) — войдёт, когда выйдет из него" in member["text"]
    outside = entry(wf, name, ids["vera"], now)
    assert outside["status"] == "not_member"
    assert "(dormant_90d) — этот сценарий для тех, кто из него выходит" in outside["text"]
    add_order(wf, "gleb", closed_at=now)  # gleb left; the segment has not been refreshed yet
    left = entry(wf, name, ids["gleb"], now + dt.timedelta(minutes=1))
    assert left["enters"] and "следующее обновление сегмента заметит выход" in left["text"]


@pytest.mark.parametrize("trigger,status", [
    ("{segment: dormant_90d}", "enters"),
    ("{schedule: \"0 10 * * *\", segment: dormant_90d}", "enters"),
    ("{event: order.won}", "event"),
])
def test_trying_the_other_triggers(wf: HubDB, tmp_path: Path, trigger: str, status: str) -> None:
    now, ids = dormant_shop(wf)
    name = add(wf, tmp_path, f"name: other_kind\ntrigger: {trigger}\nsteps: [{{tag: x}}]\n", switch_on=False)
    found = entry(wf, name, ids["anna"], now)
    assert found["status"] == status and found["enters"]
    if "segment" in trigger:
        assert entry(wf, name, ids["vera"], now)["status"] == "not_member"


# --- the page: the held exits' warning and its admin-only button --------------------------------

def test_the_held_exits_warning_and_its_admin_only_button(admin_env: AdminEnv,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from hub import sync
    from hub.api import OrderRecord
    from tests.support.admin import client_as, plain, post

    monkeypatch.setenv("HUB_WORKFLOWS_CONFIRM_ADMIN_OVER", "0")
    env = admin_env
    with env.engine.begin() as conn:
        store.add(conn, env.settings, {"name": "welcome_back", "title": "<b>Спасибо</b>",
                                       "trigger": {"segment": "dormant_90d", "on": "exit"},
                                       "steps": [{"tag": "came_back"}]}, by="test")
        store.set_enabled(conn, "welcome_back", True)
    with env.engine.begin() as conn:  # anna (last order 120 days ago) buys again: she leaves, and is held
        sync.write_page(conn, [OrderRecord(source="bitrix24", external_id="o3", contact_external_id="101",
                                           amount=Decimal("900"), status="won", closed_at=utcnow())],
                        env.settings, sync.Counts())
    from hub.segments import membership

    membership.refresh(env.engine, env.settings, ["dormant_90d"])
    with env.engine.connect() as conn:
        held = triggers.held_exits(store.row(conn, "welcome_back"))
    assert held is not None and held["count"] == 1
    marketer = client_as(env, "marketer")
    page = plain(marketer.get("/workflows/welcome_back"))
    assert "1 человек вышел из сегмента dormant_90d разом" in page and "изменили правило?" in page
    assert 'id="start-held-exits"' not in page
    refused = post(marketer, "/workflows/welcome_back/held-exits")
    assert refused.status_code == 403
    admin = client_as(env, "admin")
    assert 'id="start-held-exits"' in plain(admin.get("/workflows/welcome_back"))
    done = post(admin, "/workflows/welcome_back/held-exits", follow_redirects=True)
    assert done.status_code == 200 and "Сценарий запущен для 1 человека." in plain(done)
    assert "вышел из сегмента" not in plain(admin.get("/workflows/welcome_back"))
    again = post(admin, "/workflows/welcome_back/held-exits", follow_redirects=True)
    assert "Задержанных больше нет: запускать нечего." in plain(again)
    assert post(admin, "/workflows/no_such/held-exits").status_code == 404
    assert post(admin, "/workflows/welcome_back/held-exits", {"csrf_token": "forged"}).status_code in (302, 400)


def test_the_try_page_of_a_date_workflow(admin_env: AdminEnv) -> None:  # noqa: F811
    from tests.support.admin import client_as, plain

    with admin_env.engine.begin() as conn:
        store.add(conn, admin_env.settings, {"name": "birthday_soon", "trigger": {"date": "contact.birthday"},
                                             "steps": [{"tag": "birthday"}]}, by="test")
    viewer = client_as(admin_env, "viewer")
    page = viewer.get("/workflows/birthday_soon/try", query_string={"contact": admin_env.ids["anna"]})
    assert page.status_code == 200 and "в карточке нет даты «дата рождения»" in plain(page)
    for hostile in ("1", "<script>", "99999999999999999999"):
        assert viewer.get("/workflows/birthday_soon/try", query_string={"contact": hostile}).status_code in (200, 404)
