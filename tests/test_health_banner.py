"""The health banner on every admin page, the dashboard's recurring jobs and `hub scheduler status`.

The scheduler's starts are written the way `hub scheduler` writes them
(hub.schedule.run_due); the workers are real `hub worker` processes on a real
Redis. The banner keeps its answer for a few seconds per process, so each
test forgets it before it looks.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from redis import Redis

from hub import formats, plugins, queue, schedule, users
from hub.admin import create_app, health_banner
from hub.db import utcnow
from hub.hookspecs import hookimpl
from hub.i18n import N_
from tests.conftest import HubDB
from tests.processes import hub_env, hub_process, stop
from tests.support.admin import AdminEnv, client_as, plain, sign_in
from tests.support.cli import cli

NOT_RUNNING = "Планировщик не запущен: сценарии и запланированные рассылки не работают."
NO_WORKER = "Нет ни одного работающего обработчика очереди (hub worker): письма и шаги ждут в очереди."
TELL_ADMIN = "Сообщите администратору: нужно запустить планировщик (hub scheduler)."
TELL_ADMIN_WORKER = "Сообщите администратору: нужно запустить обработчик очереди (hub worker)."
BANNER = re.compile(r'<p class="health-banner" role="alert" data-health="(\w+)">(.*?)</p>')


@pytest.fixture(autouse=True)
def fresh_banner() -> Iterator[None]:
    health_banner.forget()
    yield
    health_banner.forget()


class Chores:
    """A plugin's own schedules: one that works and one that fails, as a plugin's would."""

    @hookimpl
    def register_schedules(self, register: Any, settings: Any) -> None:
        register("chores", schedule.Schedule(dt.timedelta(hours=1), lambda run: {"runs started": 2},
                                             N_("give every segment today's point on its size chart")))
        register("broken", schedule.Schedule(dt.timedelta(hours=1), self.fail))

    def fail(self, run: schedule.ScheduledRun) -> None:
        raise ConnectionError("the shop is down")


def banner(page: str) -> dict[str, str]:
    return {about: line for about, line in BANNER.findall(page)}


def page(env: AdminEnv, path: str = "/", role: str = "viewer", app: Any = None) -> str:
    client = sign_in((app or env.app).test_client(), env.users[role])
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return plain(response)


def tick(env: AdminEnv, now: dt.datetime | None = None, only: list[str] | None = None) -> schedule.Report:
    """What one pass of `hub scheduler` does: run what is due and record each start in schedule_state."""
    report = schedule.run_due(env.engine, env.settings, now=now, only=only)
    queue.drain(timeout=60)
    health_banner.forget()
    return report


# --- the scheduler --------------------------------------------------------------------------------

def test_the_banner_says_the_scheduler_never_ran_and_goes_once_it_ticks(admin_env: AdminEnv) -> None:
    shown = banner(page(admin_env))
    assert shown == {"scheduler": f"{NOT_RUNNING} Последний запуск: ни разу. {TELL_ADMIN}"}
    assert banner(page(admin_env, role="admin")) == {
        "scheduler": f"{NOT_RUNNING} Последний запуск: ни разу. Запустите <code>hub scheduler</code>."}
    tick(admin_env)
    for path in ("/", "/contacts/", "/workflows/", "/segments/"):
        assert banner(page(admin_env, path)) == {}, path


def test_the_banner_says_when_the_scheduler_last_ran_when_it_stopped(admin_env: AdminEnv, hub_clock: Any) -> None:
    now = hub_clock.set(dt.datetime(2026, 12, 6, 10, 0, tzinfo=dt.timezone.utc))
    tick(admin_env, only=["api_idempotency"])
    assert banner(page(admin_env)) == {}
    hub_clock.advance(seconds=110)  # within 2 minutes: twice the 30-second tick is less than the least window
    health_banner.forget()
    assert banner(page(admin_env)) == {}
    hub_clock.advance(hours=3)
    health_banner.forget()
    when = formats.moment(now, admin_env.settings.tz, zone=True)
    assert when == "06.12.2026 13:00 МСК"
    assert banner(page(admin_env, "/contacts/", role="marketer")) == {
        "scheduler": f"{NOT_RUNNING} Последний запуск: {when} (3 часа назад). {TELL_ADMIN}"}


def test_the_banner_is_in_the_readers_language(admin_env: AdminEnv) -> None:
    with admin_env.engine.begin() as conn:
        me = users.set_language(conn, admin_env.users["viewer"].id, "en")
    client = sign_in(admin_env.app.test_client(), me)
    assert banner(plain(client.get("/"))) == {"scheduler": (
        "The scheduler is not running: workflows and scheduled campaigns do not work. Last run: never. "
        "Tell an administrator: the scheduler (hub scheduler) must be started.")}
    tick(admin_env, now=utcnow() - dt.timedelta(minutes=21), only=["api_idempotency"])
    assert "Last run: " in banner(plain(client.get("/")))["scheduler"]
    assert "(21 minutes ago)" in banner(plain(client.get("/")))["scheduler"]


def test_public_pages_and_the_sign_in_page_show_no_banner(admin_env: AdminEnv) -> None:
    anonymous = admin_env.app.test_client()
    assert "health-banner" not in plain(anonymous.get("/login"))
    signed_in = client_as(admin_env, "admin")
    assert "health-banner" in plain(signed_in.get("/"))  # the scheduler never ran: admin pages say so
    for path in ("/login", "/u/not-a-token", "/consent/", "/preferences/x", "/no/such/page"):
        assert "health-banner" not in plain(signed_in.get(path)), path


def test_a_setting_that_cannot_be_read_is_said_on_the_page_never_a_failed_page(admin_env: AdminEnv) -> None:
    broken = replace(admin_env.settings, extra={**admin_env.settings.extra, "reconcile_interval_s": "daily"})
    app = create_app(broken)
    shown = page(admin_env, "/", app=app)
    assert banner(shown) == {"scheduler": (
        "Не удалось узнать, работает ли планировщик: его состояние не читается (SettingsError).")}
    assert "Не удалось показать регулярные задачи: HUB_RECONCILE_INTERVAL_S должно быть числом секунд" in shown


@pytest.mark.both_databases
def test_the_heartbeat_counts_only_registered_schedules_in_twice_the_shortest_interval(hub_db: HubDB) -> None:
    t0 = dt.datetime(2026, 12, 6, 7, 0, tzinfo=dt.timezone.utc)
    beat = schedule.scheduler_alive(hub_db.engine, hub_db.settings, now=t0)
    assert not beat.alive and beat.last_started_at is None
    assert beat.window == dt.timedelta(minutes=2)  # the webhooks sweep runs every minute: twice that
    # A job a schedule handed out is recorded by whoever ran it (a worker): it says nothing of the scheduler.
    schedule._record(hub_db.engine, "sync:bitrix24", last_started_at=t0)
    assert not schedule.scheduler_alive(hub_db.engine, hub_db.settings, now=t0).alive
    schedule.run_due(hub_db.engine, hub_db.settings, now=t0, only=["api_idempotency"])
    assert schedule.scheduler_alive(hub_db.engine, hub_db.settings, now=t0 + dt.timedelta(minutes=2)).alive
    late = schedule.scheduler_alive(hub_db.engine, hub_db.settings, now=t0 + dt.timedelta(minutes=2, seconds=1))
    assert not late.alive and late.last_started_at == t0
    slow = {"sync": schedule.Schedule(dt.timedelta(minutes=10), print),
            "daily": schedule.Schedule(dt.timedelta(days=1), print)}
    assert schedule.alive_window(slow) == dt.timedelta(minutes=20)  # twice the shortest
    assert schedule.scheduler_alive(hub_db.engine, hub_db.settings, now=t0 + dt.timedelta(minutes=19),
                                    found=slow).alive is False  # "sync" never started: only its own start counts
    assert schedule.scheduler_alive(hub_db.engine, hub_db.settings, now=t0, found={}).alive  # nothing to tick


# --- the dashboard's recurring jobs ------------------------------------------------------------------

def test_the_dashboard_lists_every_schedule_with_its_last_run_and_outcome(admin_env: AdminEnv) -> None:
    plugins.get_pm().register(Chores(), name="chores")
    shown = page(admin_env)
    assert "<h2>Регулярные задачи</h2>" in shown
    never = set(re.findall(r'<tr data-schedule="(\w+)" data-outcome="never" class="overdue">', shown))
    assert {"sync", "reconcile", "segment_sizes", "workflows", "chores", "broken"} <= never
    assert "ещё не запускалась" in shown

    report = tick(admin_env)
    assert "chores" in report.ran and "broken" in report.failed
    shown = page(admin_env)

    def row(name: str) -> str:
        found = re.search(rf'<tr data-schedule="{name}" (.*?)</tr>', shown, re.S)
        assert found, name
        return found.group(1)

    assert 'data-outcome="ok"' in row("sync")  # the core's own: nothing connected, nothing handed out
    assert "Синхронизация с CRM" in row("sync")  # a viewer reads the plain title, not the setting's words
    assert "синхронизация изменений" not in row("sync") and "<code" not in row("sync")
    assert "каждые 15 минут" in row("sync")
    assert 'data-outcome="ok"' in row("workflows")  # a plugin's
    assert "каждые 30 секунд" in row("workflows")
    chores = row("chores")
    assert 'data-outcome="ok"' in chores and "успешно: запущено сценариев: 2" in chores
    assert "Отметить сегодняшний размер каждого сегмента на графике" in chores  # the plugin's words, translated
    broken = row("broken")
    assert 'data-outcome="failed"' in broken and 'class="failing"' in broken
    assert "ошибка: ConnectionError: the shop is down" in broken
    assert "overdue" not in shown.split('id="schedules"')[1].split("</table>")[0]  # all ran just now
    assert "через 1 час" in chores  # when it is next due


def test_a_schedule_left_behind_is_marked_overdue(admin_env: AdminEnv) -> None:
    long_ago = utcnow() - dt.timedelta(days=3)
    tick(admin_env, now=long_ago)
    shown = page(admin_env)
    sync = re.search(r'<tr data-schedule="sync" data-outcome="ok" class="overdue">(.*?)</tr>', shown, re.S)
    assert sync, shown
    next_due = formats.moment(long_ago + dt.timedelta(minutes=15), admin_env.settings.tz)
    assert f'<td class="next">просрочена: {next_due}</td>' in sync.group(1)
    assert "3 дня назад" in sync.group(1)


# --- workers, with Redis ---------------------------------------------------------------------------

@pytest.fixture
def with_redis(admin_env: AdminEnv, redis_url: str) -> Any:
    Redis.from_url(redis_url).flushdb()  # no worker another test left registered
    settings = replace(admin_env.settings, redis_url=redis_url)
    return settings, create_app(settings)


def test_with_redis_and_no_worker_the_banner_says_letters_wait(admin_env: AdminEnv, with_redis: Any) -> None:
    settings, app = with_redis
    tick(admin_env, only=["api_idempotency"])
    shown = page(admin_env, "/", app=app)
    assert banner(shown) == {"workers": f"{NO_WORKER} {TELL_ADMIN_WORKER}"}
    assert f'<p id="queue-workers" class="error">{NO_WORKER}</p>' in shown
    assert banner(page(admin_env, "/", role="admin", app=app)) == {
        "workers": f"{NO_WORKER} Запустите <code>hub worker</code>."}


def test_a_running_worker_takes_the_worker_banner_away(admin_env: AdminEnv, with_redis: Any,
                                                      tmp_path: Path) -> None:
    settings, app = with_redis
    tick(admin_env, only=["api_idempotency"])
    env = hub_env(HUB_DATABASE_URL=admin_env.db.url, HUB_REDIS_URL=settings.redis_url,
                  HUB_SECRET_KEY=settings.secret_key or "", HUB_PLUGINS="mailing,workflows")
    with hub_process(["worker"], env=env, cwd=tmp_path) as worker:
        try:
            wait_for(lambda: queue.workers(settings) == 1, "the worker to register")
            health_banner.forget()
            shown = page(admin_env, "/workflows/", app=app)
            assert banner(shown) == {}
            assert "Работает 1 обработчик очереди (hub worker)." in page(admin_env, "/", app=app)
            assert queue.health(settings)["workers"] == 1
        finally:
            stop(worker)
    assert queue.workers(settings) == 0  # a worker that stopped says so itself
    health_banner.forget()
    assert banner(page(admin_env, "/", app=app)) == {"workers": f"{NO_WORKER} {TELL_ADMIN_WORKER}"}


def wait_for(condition: Any, what: str, timeout: float = 120) -> None:
    """Poll until `condition()` holds; the generous timeout only stops a broken test."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_down_is_said_in_the_banner_never_a_failed_page(admin_env: AdminEnv) -> None:
    settings = replace(admin_env.settings, redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    shown = page(admin_env, "/contacts/", app=create_app(settings))
    assert banner(shown)["workers"] == (
        "Redis недоступен (ConnectionError): письма и шаги не ставятся в очередь, и неизвестно, "
        "работает ли обработчик очереди (hub worker). Сообщите администратору.")
    assert NOT_RUNNING in banner(shown)["scheduler"]


def test_the_status_json_says_whether_the_scheduler_ticks_and_how_many_workers_listen(
        admin_env: AdminEnv, with_redis: Any) -> None:
    settings, app = with_redis
    client: FlaskClient = sign_in(app.test_client(), admin_env.users["viewer"])
    data = client.get("/status.json").get_json()
    assert data["scheduler"] == {"alive": False, "last_started_at": None, "window_s": 120.0}
    assert data["queue"]["workers"] == 0
    tick(admin_env, only=["api_idempotency"])
    assert client.get("/status.json").get_json()["scheduler"]["alive"] is True


# --- the command line -----------------------------------------------------------------------------

def hub(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(cli, ["scheduler", *args])
    assert result.exit_code == code, result.output
    return result


def test_hub_scheduler_status_says_the_same_as_the_banner(hub_db: HubDB, redis_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    plugins.get_pm()
    out = hub("status", code=1).output
    assert out.startswith(f"{NOT_RUNNING} Последний запуск: ни разу. Запустите hub scheduler.\n")
    assert "`" not in out
    assert "sync                 каждые 15 минут, последний запуск: никогда (просрочена)" in out
    data = json.loads(hub("status", "--json", code=1).output)
    assert data["ok"] is False and data["scheduler"]["alive"] is False and data["workers"] is None
    assert {r["name"] for r in data["schedules"]} >= {"sync", "reconcile", "segment_sizes"}

    schedule.run_due(hub_db.engine, hub_db.settings)
    queue.drain(timeout=60)  # the work it handed out (segment sizes) finishes first, so both listings see it done
    out = hub("status").output
    assert out.startswith("Планировщик работает: последний запуск ")
    assert hub("--status").output.splitlines()[1:] == out.splitlines()[1:]  # the older spelling says the same
    data = json.loads(hub("status", "--json").output)
    assert data["ok"] is True and data["scheduler"]["alive"] is True
    assert {r["name"]: r for r in data["schedules"]}["sync"]["overdue"] is False

    Redis.from_url(redis_url).flushdb()
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    out = hub("status", code=1).output
    assert out.splitlines()[1] == f"{NO_WORKER} Запустите hub worker."
    assert json.loads(hub("status", "--json", code=1).output)["workers"] == 0
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    assert "No queue worker is running (hub worker)" in hub("status", code=1).output
