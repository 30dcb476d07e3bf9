"""Two more triggers: leaving a segment (`{segment: NAME, on: exit}`) and a date in the card (`{date: …}`).

Time passes only through the `now` the tick is given; the segments engine,
the runs and both databases are real.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from hub.db import utcnow
from hub.models import Contact, Message
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.shop import Person, add_order, enable, make_shop, runs_of, use_workflows, write
from workflows import forecast, store, ticks, triggers

pytestmark = pytest.mark.both_databases  # runs start exactly once (ON CONFLICT), dates compiled for each database

UTC = dt.timezone.utc
PEOPLE = [Person("anna", "Анна", "+74951110001", "anna@example.ru"),
          Person("gleb", "Глеб", "+74951110004", "gleb@example.ru"),
          Person("vera", "Вера", "+74951110003", "vera@example.ru", bought_days_ago=20)]


def hub(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    return use_workflows(hub_db, plugin_manager, monkeypatch)


def add(db: HubDB, tmp_path: Path, text: str, *, on: dt.datetime | None = None) -> str:
    """Save a workflow file and switch it on (at `on`); returns its name."""
    result = hub("workflows", "add", write(tmp_path, "w.yaml", text))
    assert result.exit_code == 0, result.output
    name = text.split("\n", 1)[0].removeprefix("name: ").strip()
    enable(db, name, on)
    return name


def set_birthdays(db: HubDB, ids: dict[str, int], **days: dt.date) -> None:
    with db.engine.begin() as conn:
        for key, day in days.items():
            conn.execute(update(Contact).where(Contact.id == ids[key]).values(birthday=day))


def started(report: ticks.TickReport, name: str) -> int:
    return report.started[name]["started"]


# --- leaving a segment --------------------------------------------------------------------------

THANKS = "name: welcome_back\ntrigger: {segment: dormant_90d, on: exit}\nsteps: [{tag: came_back}]\n"


def test_leaving_a_segment_starts_a_run_entering_it_does_not(wf: HubDB, tmp_path: Path) -> None:
    t0 = (utcnow() - dt.timedelta(days=200)).replace(hour=7, minute=0, second=0, microsecond=0)
    ids = make_shop(wf, PEOPLE, now=t0)
    name = add(wf, tmp_path, THANKS, on=t0)
    first = ticks.tick(wf.engine, wf.settings, now=t0)  # anna and gleb enter dormant_90d: nothing starts
    assert first.started[name] == {"started": 0, "holdout": 0, "skipped": 0}
    assert runs_of(wf, name) == []
    add_order(wf, "anna", closed_at=t0 + dt.timedelta(hours=1))  # anna bought: she leaves the segment
    report = ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(hours=2))
    assert started(report, name) == 1
    (run,) = runs_of(wf, name)
    assert run.contact_id == ids["anna"] and run.trigger == "exit:dormant_90d" and run.status == "done"
    with wf.engine.connect() as conn:
        assert "came_back" in conn.execute(select(Contact.tags).where(Contact.id == ids["anna"])).scalar_one()
    # 92 days on, vera (20 days since her order at t0) and anna (92 days) enter: no runs
    later = t0 + dt.timedelta(days=92, hours=3)
    assert started(ticks.tick(wf.engine, wf.settings, now=later), name) == 0
    # anna buys again and leaves again: reentry is `never`, so no second run
    add_order(wf, "anna", closed_at=later + dt.timedelta(hours=1), order_id="second")
    again = ticks.tick(wf.engine, wf.settings, now=later + dt.timedelta(hours=2))
    assert again.started[name] == {"started": 0, "holdout": 0, "skipped": 1}
    assert len(runs_of(wf, name)) == 1


def test_leaving_again_after_the_reentry_period_and_the_holdout(wf: HubDB, tmp_path: Path) -> None:
    t0 = (utcnow() - dt.timedelta(days=200)).replace(hour=7, minute=0, second=0, microsecond=0)
    people = [Person(f"p{i}", f"Покупатель {i}", None, f"p{i}@example.ru") for i in range(12)]
    ids = make_shop(wf, people, now=t0)
    name = add(wf, tmp_path, "name: came_back\ntrigger: {segment: dormant_90d, on: exit}\nreentry: 30d\n"
                             "holdout: 50%\nsteps: [{wait: 1d}]\n", on=t0)
    ticks.tick(wf.engine, wf.settings, now=t0)
    for p in people:
        add_order(wf, p.key, closed_at=t0 + dt.timedelta(hours=1))
    report = ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(hours=2))
    runs = runs_of(wf, name)
    assert report.started[name]["started"] == 12 == len(runs)
    assert {r.contact_id: r.holdout for r in runs} == {
        ids[p.key]: triggers.in_holdout_name(name, ids[p.key], 50) for p in people}
    assert 0 < report.started[name]["holdout"] < 12
    assert all((r.status == "holdout") == r.holdout for r in runs)
    # 91 days without buying: everyone is dormant again; buying once more leaves again, past the 30 days
    back = t0 + dt.timedelta(days=92)
    ticks.tick(wf.engine, wf.settings, now=back)
    add_order(wf, "p0", closed_at=back + dt.timedelta(hours=1), order_id="again")
    report = ticks.tick(wf.engine, wf.settings, now=back + dt.timedelta(hours=2))
    assert report.started[name]["started"] == 1
    assert sorted(r.cycle for r in runs_of(wf, name) if r.contact_id == ids["p0"]) == [1, 2]


def test_a_refresh_anyone_runs_starts_exit_runs_but_not_for_the_erased(wf: HubDB, tmp_path: Path) -> None:
    now = utcnow()
    ids = make_shop(wf, PEOPLE[:2], now=now)
    name = add(wf, tmp_path, THANKS)
    assert hub("segments", "refresh", "dormant_90d").exit_code == 0
    add_order(wf, "anna", closed_at=utcnow())
    with wf.engine.begin() as conn:  # gleb is erased (deleted): he leaves the segment, and gets nothing
        conn.execute(update(Contact).where(Contact.id == ids["gleb"]).values(deleted_at=utcnow()))
    assert hub("segments", "refresh", "dormant_90d").exit_code == 0
    assert [(r.contact_id, r.trigger) for r in runs_of(wf, name)] == [(ids["anna"], "exit:dormant_90d")]
    with wf.engine.begin() as conn:  # switched off: leaving starts nothing
        store.set_enabled(conn, name, False)


def test_an_exit_forecast_says_leaving_cannot_be_foreseen(wf: HubDB, tmp_path: Path) -> None:
    make_shop(wf, PEOPLE, now=utcnow())
    name = add(wf, tmp_path, THANKS)
    report = forecast.forecast(wf.engine, wf.settings, name)
    assert report["would_start"] == 0
    assert "кто из него выйдет, заранее не узнать" in report["note"]


# --- a date in the card -------------------------------------------------------------------------

BIRTHDAY = ("name: birthday_soon\ntitle: Birthday by the date trigger\ntrigger: {date: contact.birthday, before: 3d}\n"
            "goal: {event: promo.redeemed, within: 21d}\nsteps:\n"
            "  - promo_code: {discount: 20%, valid_for: 14d, prefix: BDAY}\n"
            "  - send: {channel: email, template: birthday_email, purpose: marketing}\n")


def test_a_date_trigger_fires_once_a_day_at_its_time_across_the_new_year(wf: HubDB, tmp_path: Path) -> None:
    """What birthday.yaml does with a schedule and a segment, done by the date trigger: 3 days ahead, at 10:00."""
    people = PEOPLE + [Person("dina", "Дина", None, "dina@example.ru"), Person("egor", "Егор", None, "egor@example.ru")]
    morning = dt.datetime(2025, 12, 29, 6, 0, tzinfo=UTC)  # 09:00 in Moscow
    ids = make_shop(wf, people, now=morning)
    set_birthdays(wf, ids, anna=dt.date(1990, 1, 1), gleb=dt.date(1985, 12, 31), vera=dt.date(2001, 1, 2),
                  dina=dt.date(1979, 1, 3), egor=dt.date(1990, 12, 29))
    name = add(wf, tmp_path, BIRTHDAY, on=morning - dt.timedelta(minutes=5))
    assert started(ticks.tick(wf.engine, wf.settings, now=morning), name) == 0  # 09:00: not yet
    assert runs_of(wf, name) == []
    at_ten = ticks.tick(wf.engine, wf.settings, now=morning + dt.timedelta(hours=1, minutes=1))  # 10:01
    assert started(at_ten, name) == 1
    (run,) = runs_of(wf, name)
    assert run.contact_id == ids["anna"] and run.trigger == "date:contact.birthday" and run.status == "done"
    assert run.context == {"date": "contact.birthday", "day": "2026-01-01"}
    with wf.engine.connect() as conn:
        sent = conn.execute(select(Message.template, Message.body_text).where(Message.contact_id == ids["anna"])).all()
        state = conn.execute(select(store.workflows_t.c.state).where(store.workflows_t.c.name == name)).scalar_one()
    assert [m.template for m in sent] == ["birthday_email"] and "BDAY-" in sent[0].body_text
    assert state["date_day"] == "2025-12-29"
    # later the same day: it looked today already
    assert ticks.tick(wf.engine, wf.settings, now=morning + dt.timedelta(hours=8)).started[name] == {
        "started": 0, "holdout": 0, "skipped": 0}
    # 30 December before 10:00: not yet; after: vera (2 January)
    next_day = morning + dt.timedelta(days=1)
    assert started(ticks.tick(wf.engine, wf.settings, now=next_day), name) == 0
    assert started(ticks.tick(wf.engine, wf.settings, now=next_day + dt.timedelta(hours=2)), name) == 1
    # 31 December: dina (3 January); 29 December's egor waits for next year
    third = morning + dt.timedelta(days=2, hours=3)
    assert started(ticks.tick(wf.engine, wf.settings, now=third), name) == 1
    assert [r.contact_id for r in runs_of(wf, name)] == sorted([ids["anna"], ids["vera"], ids["dina"]])
    # `hub workflows run` on the same day starts nobody twice (one run per date that comes round)
    with wf.engine.connect() as conn:
        row, workflow = store.current(conn, wf.settings, name)
    manual = triggers.fire(wf.engine, wf.settings, row, workflow, now=third, manual=True)
    assert manual.started == 0 and len(runs_of(wf, name)) == 3


@pytest.mark.parametrize("year,leap", [(2025, False), (2028, True)])
def test_29_february_is_celebrated_on_28_february_in_other_years(wf: HubDB, tmp_path: Path, year: int,
                                                                  leap: bool) -> None:
    people = [Person("leap", "Лея", None, "leap@example.ru"), Person("feb", "Фёкла", None, "feb@example.ru"),
              Person("mar", "Марк", None, "mar@example.ru")]
    morning = dt.datetime(year, 2, 28, 7, 30, tzinfo=UTC)  # 10:30 in Moscow
    ids = make_shop(wf, people, now=morning)
    set_birthdays(wf, ids, leap=dt.date(2000, 2, 29), feb=dt.date(1990, 2, 28), mar=dt.date(1990, 3, 1))
    name = add(wf, tmp_path, "name: on_the_day\ntrigger: {date: contact.birthday, at: \"10:15\"}\n"
                             "steps: [{wait: 1d}]\n", on=morning - dt.timedelta(days=1))
    ticks.tick(wf.engine, wf.settings, now=morning)
    on_28 = {r.contact_id for r in runs_of(wf, name)}
    assert on_28 == ({ids["feb"]} if leap else {ids["feb"], ids["leap"]})
    ticks.tick(wf.engine, wf.settings, now=morning + dt.timedelta(days=1))  # 29 February or 1 March
    next_day = {r.contact_id for r in runs_of(wf, name)} - on_28
    assert next_day == ({ids["leap"]} if leap else {ids["mar"]})


def test_a_date_forecast_counts_each_of_its_days(wf: HubDB, tmp_path: Path) -> None:
    """Today's start and the following days' each count, on their own day at 10:00 (the shop's time)."""
    now = dt.datetime(2026, 3, 10, 5, 0, tzinfo=UTC)  # 08:00 in Moscow
    ids = make_shop(wf, PEOPLE, now=now)
    # gleb's birthday comes round in 3 days (today's start), anna's in 8 (the 5th day's), vera's in 30 (past 14)
    set_birthdays(wf, ids, gleb=dt.date(1990, 3, 13), anna=dt.date(1985, 3, 18), vera=dt.date(2000, 4, 9))
    name = add(wf, tmp_path, BIRTHDAY, on=now)
    report = forecast.forecast(wf.engine, wf.settings, name, now=now)
    assert report["would_start"] == 2 and report["first_tick"] == 1  # no holdout
    assert "каждый день в 10:00 (по времени магазина)" in report["note"]
    starts = {c["contact_id"]: c["actions"][0]["at"] for c in report["contacts"] if c["actions"]}
    assert starts == {ids["gleb"]: "2026-03-10T10:00:00+03:00", ids["anna"]: "2026-03-15T10:00:00+03:00"}
    numbers = forecast.switch_on_numbers(report)
    assert numbers["first_tick"] == 1 and numbers["would_start"] == 2


# --- checking and showing ---------------------------------------------------------------------

@pytest.mark.parametrize("trigger,problem", [
    ("{date: contact.birthdy}", "trigger.date: поля 'contact.birthdy' нет; может быть, 'contact.birthday'?; "
                                "для запуска по дате подходят: contact.birthday"),
    ("{date: orders.count}", "trigger.date: 'orders.count' — не дата, которая наступает каждый год (тип поля: "
                             "целое число); для запуска по дате подходят: contact.birthday"),
    ("{date: orders.first_at}", "trigger.date: 'orders.first_at' — не дата, которая наступает каждый год (тип поля: "
                                "дата и время)"),
    ("{date: contact.birthday, before: -3d}", "trigger.before: '-3d': before — за сколько дней до даты запускать, "
                                              "0d или больше, например 7d"),
    ("{date: contact.birthday, before: 12h}", "trigger.before: '12h': before — целое число дней, не больше года"),
    ("{date: contact.birthday, at: \"25:00\"}", "trigger.at: '25:00'"),
    ("{date: contact.birthday, segment: vip}", "trigger.segment: у запуска по дате бывают только date, before, at"),
    ("{segment: vip, on: sideways}", "trigger.on: 'sideways': укажите enter (вход в сегмент, по умолчанию) или exit "
                                     "(выход из него)"),
    ("{segment: vip, on: exit, schedule: \"0 10 * * *\"}", "trigger.on: расписание запускает сценарий для участников"),
    ("{event: order.won, on: exit}", "trigger.on: on (enter или exit) бывает только у запуска по сегменту"),
    ("{segment: vip, at: \"10:00\"}", "trigger.at: at (время запуска) бывает только у запуска по дате"),
])
def test_bad_new_triggers_are_refused_in_russian_with_their_paths(wf: HubDB, tmp_path: Path, trigger: str,
                                                                 problem: str) -> None:
    path = write(tmp_path, "bad.yaml", f"name: bad\ntrigger: {trigger}\nsteps: [{{wait: 1d}}]\n")
    result = hub("workflows", "add", path)
    assert result.exit_code != 0 and result.output.startswith("Ошибка: bad.yaml: ")
    assert problem in result.output, result.output


def test_list_and_show_name_the_new_triggers_in_words(wf: HubDB, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    add(wf, tmp_path, THANKS)
    add(wf, tmp_path, BIRTHDAY)
    add(wf, tmp_path, "name: on_the_day\ntrigger: {date: contact.birthday, before: 0d, at: 9:30}\n"
                      "reentry: 200d\nsteps: [{wait: 1d}]\n")
    listed = {w["name"]: w for w in json.loads(hub("workflows", "list", "--json").output)}
    assert listed["welcome_back"]["trigger"] == "segment dormant_90d (on exit)"
    assert listed["birthday_soon"]["trigger"] == "date contact.birthday, 3d before, at 10:00"
    assert listed["birthday_soon"]["reentry"] == "300d"  # once a year unless the file says
    assert listed["on_the_day"]["trigger"] == "date contact.birthday, 0d before, at 09:30"
    assert listed["on_the_day"]["reentry"] == "200d"
    exit_shown = hub("workflows", "show", "welcome_back").output
    assert ("Запуск: выход из сегмента «Не покупали 90 дней, письма разрешены» (dormant_90d). Запускает сценарий "
            "для каждого контакта, который выходит из сегмента.") in exit_shown
    date_shown = hub("workflows", "show", "birthday_soon").output
    assert "Запуск: за 3 дня до даты «дата рождения» (contact.birthday), в 10:00. Каждый день" in date_shown
    assert "в день даты «дата рождения» (contact.birthday), в 09:30" in hub("workflows", "show", "on_the_day").output
    assert "выход из сегмента «Не покупали" in hub("workflows", "list").output
    with wf.engine.connect() as conn:  # the kind's name, as the admin's list shows it
        kinds = {n: store.current(conn, wf.settings, n)[1].trigger.title() for n in ("welcome_back", "on_the_day")}
    assert kinds == {"welcome_back": "Выход из сегмента", "on_the_day": "Дата в карточке"}
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    assert "leaving the segment “Dormant for 90 days, email allowed” (dormant_90d)" in hub(
        "workflows", "show", "welcome_back").output
    assert "3 days before the date “date of birth” (contact.birthday), at 10:00" in hub(
        "workflows", "show", "birthday_soon").output
