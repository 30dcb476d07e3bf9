"""Recurring work: a missed webhook is made good by the scheduled sync; schedules run once per interval."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hub import plugins, queue, schedule, sync
from hub.config import SettingsError
from hub.hookspecs import hookimpl
from hub.models import Contact, ExternalRef
from tests.conftest import HubDB
from tests.plugins import sample_source
from tests.plugins.sample_source import FakeCRM
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases  # schedules run once per interval (ON CONFLICT, locking)


class Chores:
    """A plugin with two schedules: one that counts its runs, one that always fails."""

    def __init__(self) -> None:
        self.runs: list[dt.datetime] = []

    @hookimpl
    def register_schedules(self, register: Any, settings: Any) -> None:  # hook:register_schedules
        every = dt.timedelta(hours=float(settings.extra.get("chores_every_h", 1)))
        register("chores", schedule.Schedule(every, self.count, "count the runs"))
        register("broken", schedule.Schedule(every, self.fail, "always fails"))

    def count(self, run: schedule.ScheduledRun) -> dict[str, int]:
        self.runs.append(run.now)
        return {"runs": len(self.runs)}

    def fail(self, run: schedule.ScheduledRun) -> None:
        raise ConnectionError("the shop is down")


@pytest.fixture
def chores(plugin_manager: Any) -> Chores:
    plugin = Chores()
    plugin_manager.register(plugin, name="chores")
    return plugin


@pytest.fixture
def crm(plugin_manager: Any) -> FakeCRM:
    fresh = FakeCRM()
    sample_source.CRM = fresh
    plugin_manager.register(sample_source)
    return fresh


def hub(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(cli, ["scheduler", *args])
    assert result.exit_code == code, result.output
    return result


def test_a_schedule_runs_once_per_interval_and_a_failure_stops_no_other(hub_db: HubDB, chores: Chores) -> None:
    t0 = dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.timezone.utc)
    first = schedule.run_due(hub_db.engine, hub_db.settings, now=t0)
    assert first.ran["chores"] == {"runs": 1}
    assert first.failed == {"broken": "ConnectionError: the shop is down"}
    assert set(first.ran) == {"chores", "sync", "reconcile", "webhooks", "api_idempotency",
                              "segment_sizes", "crm_push"}  # the core's own

    # 14 minutes on, only the minutely webhooks sweep and the 5-minute push of scores are due again
    assert set(schedule.run_due(hub_db.engine, hub_db.settings, now=t0 + dt.timedelta(minutes=14)).ran) == {
        "webhooks", "crm_push"}
    assert "chores" not in schedule.run_due(hub_db.engine, hub_db.settings, now=t0 + dt.timedelta(minutes=59)).ran
    later = schedule.run_due(hub_db.engine, hub_db.settings, now=t0 + dt.timedelta(minutes=60))
    assert later.ran["chores"] == {"runs": 2} and "broken" in later.failed  # a failed one is tried again too
    assert chores.runs == [t0, t0 + dt.timedelta(minutes=60)]

    last = schedule.last_runs(hub_db.engine)
    assert last["broken"]["last_error"] == "ConnectionError: the shop is down"
    assert last["chores"]["last_error"] is None and last["chores"]["last_result"] == {"runs": 2}


def test_an_interval_of_zero_turns_a_schedule_off_and_a_bad_one_is_named(hub_db: HubDB, chores: Chores) -> None:
    off = replace(hub_db.settings, extra={**hub_db.settings.extra, "chores_every_h": "0", "sync_interval_s": "0"})
    assert {"chores", "sync"}.isdisjoint(schedule.schedules(off))
    bad = replace(hub_db.settings, extra={**hub_db.settings.extra, "reconcile_interval_s": "daily"})
    with pytest.raises(SettingsError, match="HUB_RECONCILE_INTERVAL_S должно быть числом секунд"):
        schedule.schedules(bad)


def test_two_plugins_cannot_register_the_same_schedule(hub_db: HubDB, chores: Chores, plugin_manager: Any) -> None:
    plugin_manager.register(Chores(), name="chores-again")
    with pytest.raises(SettingsError, match="two plugins register schedule 'chores'"):
        schedule.schedules(hub_db.settings)


def contact_names(hub_db: HubDB) -> set[str]:
    with hub_db.engine.connect() as conn:
        return set(conn.execute(select(Contact.first_name).where(Contact.deleted_at.is_(None))).scalars())


def test_the_scheduled_sync_brings_what_a_missed_webhook_did_not(hub_db: HubDB, crm: FakeCRM) -> None:
    crm.add_contact(1, first="Анна", phones=["+79161234567"])
    # never synced: not connected
    assert schedule.run_due(hub_db.engine, hub_db.settings, only=["sync"]).ran["sync"] == {}
    assert contact_names(hub_db) == set()

    sync.run(hub_db.engine, hub_db.settings, "sample")
    crm.add_contact(2, first="Олег", phones=["+79031112233"])  # the portal's event never reached Hub
    report = schedule.run_due(hub_db.engine, hub_db.settings, only=["sync"])
    assert report.ran["sync"] == {"sample": "started"}
    queue.drain(timeout=60)
    assert contact_names(hub_db) == {"Анна", "Олег"}, {
        k: v for k, v in schedule.last_runs(hub_db.engine)["sync:sample"].items() if k.startswith("last_")}


def test_a_scheduled_sync_that_fails_is_recorded_and_shown(hub_db: HubDB, crm: FakeCRM) -> None:
    crm.add_contact(1, first="Анна", phones=["+79161234567"])
    sync.run(hub_db.engine, hub_db.settings, "sample")
    crm.fail_after_pages = 0  # the CRM is down
    plugins.get_pm()
    once = json.loads(hub("--run", "sync", "--json", code=1).output)
    assert once["ran"]["sync"] == {"sample": "started"}
    assert once["failed"] == {"sync:sample": "синхронизация sample не удалась: sample CRM went away"}
    shown = {r["name"]: r for r in json.loads(hub("--status", "--json").output)}["sync"]["jobs"]
    assert [(j["name"], j["last_error"]) for j in shown] == [
        ("sync:sample", "синхронизация sample не удалась: sample CRM went away")]
    crm.fail_after_pages = None  # back: the next pass clears the error
    assert json.loads(hub("--run", "sync", "--json").output)["failed"] == {}
    assert schedule.last_runs(hub_db.engine)["sync:sample"]["last_error"] is None


def test_the_daily_reconcile_marks_what_was_deleted_without_an_event(hub_db: HubDB, crm: FakeCRM) -> None:
    crm.add_contact(1, first="Анна", phones=["+79161234567"])
    crm.add_contact(2, first="Олег", phones=["+79031112233"])
    sync.run(hub_db.engine, hub_db.settings, "sample")
    crm.contacts.pop(2)  # deleted in the CRM, no event and no incremental record of it
    ran = schedule.run_due(hub_db.engine, hub_db.settings, only=["reconcile"]).ran
    assert ran["reconcile"] == {"sample": "started"}
    queue.drain(timeout=60)
    with hub_db.engine.connect() as conn:
        gone = conn.execute(select(func.count()).select_from(ExternalRef)
                            .where(ExternalRef.source == "sample", ExternalRef.deleted_at.is_not(None))).scalar()
    assert gone == 1


def test_a_sync_still_running_is_not_started_twice(hub_db: HubDB, crm: FakeCRM, monkeypatch: Any) -> None:
    crm.add_contact(1, first="Анна", phones=["+79161234567"])
    sync.run(hub_db.engine, hub_db.settings, "sample")
    import threading

    release = threading.Event()
    started: list[str] = []

    def slow_sync(name: str, full: bool = False) -> None:
        started.append(name)
        release.wait(30)

    from hub import jobs

    monkeypatch.setattr(jobs, "sync_source", slow_sync)
    first = schedule.run_due(hub_db.engine, hub_db.settings, only=["sync"]).ran["sync"]
    second = schedule.run_due(hub_db.engine, hub_db.settings, only=["sync"]).ran["sync"]
    release.set()
    queue.drain(timeout=60)
    assert first == {"sample": "started"} and second == {"sample": "still running"}
    assert started == ["sample"]


def test_the_command_runs_lists_and_respects_another_schedulers_lock(hub_db: HubDB, chores: Chores) -> None:
    plugins.get_pm()  # the test's manager, with the chores plugin, is the one the command uses
    once = json.loads(hub("--once", "--json", code=1).output)  # exit 1: a schedule failed
    assert once["ran"]["chores"] == {"runs": 1} and "broken" in once["failed"]
    assert "Запускать было нечего." in hub("--once").output
    assert json.loads(hub("--run", "chores", "--json").output)["ran"] == {"chores": {"runs": 2}}
    assert "нет расписания nope" in hub("--run", "nope", code=1).output

    status = {r["name"]: r for r in json.loads(hub("--status", "--json").output)}
    assert status["broken"]["last_error"] == "ConnectionError: the shop is down"
    assert status["sync"]["every_s"] == 900 and status["reconcile"]["every_s"] == 86400
    assert not status["chores"]["due"]

    other = schedule.DatabaseLock(hub_db.engine, dt.timedelta(minutes=5), holder="elsewhere")
    assert other.acquire()
    assert "работает другой планировщик (elsewhere)" in hub("--run", "chores", code=1).output
    other.release()


def test_intervals_and_outcomes_read_as_people_say_them(monkeypatch: Any) -> None:
    from hub.i18n import use_language

    assert schedule.every_text(dt.timedelta(minutes=15)) == "каждые 15 минут"
    assert schedule.every_text(dt.timedelta(days=1)) == "раз в сутки"
    assert schedule.every_text(dt.timedelta(seconds=30)) == "каждые 30 секунд"
    assert schedule.every_text(dt.timedelta(hours=2)) == "каждые 2 часа"
    assert schedule.every_text(dt.timedelta(seconds=86400 * 400)) == "каждые 400 дней"
    assert schedule.result_text({"bitrix24": "started", "amocrm": "still running"}) == (
        "bitrix24: запущена, amocrm: ещё выполняется")
    assert schedule.result_text({"runs started": 1, "codes redeemed": 0, "steps": 1234}) == (
        "запущено сценариев: 1, выполнено шагов: 1\u00a0234")
    with use_language("en"):
        assert schedule.every_text(dt.timedelta(minutes=15)) == "every 15 minutes"
        assert schedule.every_text(dt.timedelta(days=1)) == "once a day"
        assert schedule.result_text({"bitrix24": "started"}) == "bitrix24: started"


def test_the_command_shows_schedules_and_their_outcomes_in_words(hub_db: HubDB, crm: FakeCRM,
                                                                monkeypatch: Any) -> None:
    sync.run(hub_db.engine, hub_db.settings, "sample")
    plugins.get_pm()
    ran = hub("--run", "sync", "--run", "reconcile").output
    assert "выполнено: reconcile (sample: запущена); sync (sample: запущена)" in ran
    status = hub("--status").output
    assert "sync                 каждые 15 минут, последний запуск: " in status
    assert "  синхронизация изменений каждого подключённого источника\n" in status
    assert "reconcile            раз в сутки, " in status and "86" not in status
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    english = hub("--status").output
    assert "sync                 every 15 minutes, last run " in english
    assert "  an incremental sync of every connected source\n" in english
    assert json.loads(hub("--run", "sync", "--json").output)["ran"] == {"sync": {"sample": "started"}}
