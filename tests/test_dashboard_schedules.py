"""The dashboard's recurring jobs and the health banner as a marketer reads them.

A schedule that only hands work out (the syncs) says so and says how that work
ended; a sync that failed is said in the banner to those who work with the
data; every result is in the reader's words; nothing asks a marketer to run a
command or shows them setting names; Russian words never split across lines.
"""

from __future__ import annotations

import html
import re
from typing import Iterator

import pytest
from sqlalchemy import select

from hub import formats, plugins, queue, schedule, sync, users
from hub.admin import health_banner
from hub.db import utcnow
from hub.i18n import use_language
from tests.browser import Browser
from tests.plugins import sample_source
from tests.plugins.sample_source import FakeCRM
from tests.support.admin import AdminEnv, plain, sign_in
from tests.support.admin_browser import sign_in as browser_sign_in

BANNER = re.compile(r'<p class="health-banner" role="alert" data-health="(\w+)">(.*?)</p>')
TAGS = re.compile(r"<[^>]+>")
INLINE = re.compile(r"</?(a|span|code)\b[^>]*>")


@pytest.fixture(autouse=True)
def fresh_banner() -> Iterator[None]:
    health_banner.forget()
    yield
    health_banner.forget()


@pytest.fixture
def crm(admin_env: AdminEnv) -> FakeCRM:
    """The sample CRM, connected (synced once), as a source plugin of this Hub."""
    fresh = FakeCRM()
    fresh.add_contact(1, name="Анна Смирнова", email="anna.s@example.ru")
    sample_source.CRM = fresh
    plugins.get_pm().register(sample_source)
    sync.run(admin_env.engine, admin_env.settings, "sample")
    return fresh


def page(env: AdminEnv, path: str = "/", role: str = "marketer", language: str | None = None,
         raw: bool = False) -> str:
    """The page as `role` reads it (entities read back), or as served when `raw`."""
    account = env.users[role]
    if language:
        with env.engine.begin() as conn:
            account = users.set_language(conn, account.id, language)
    client = sign_in(env.app.test_client(), account)
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True) if raw else plain(response)


def banner(shown: str) -> dict[str, str]:
    return {about: line for about, line in BANNER.findall(shown)}


def row(shown: str, name: str) -> str:
    found = re.search(rf'<tr data-schedule="{name}" (.*?)</tr>', shown, re.S)
    assert found, name
    return found.group(1)


def words(fragment: str) -> str:
    """What a reader sees of an HTML fragment: tags dropped, spaces collapsed."""
    return " ".join(html.unescape(TAGS.sub(" ", INLINE.sub("", fragment))).split())


def tick(env: AdminEnv, only: list[str] | None = None) -> schedule.Report:
    report = schedule.run_due(env.engine, env.settings, now=utcnow(), only=only)
    queue.drain(timeout=60)
    health_banner.forget()
    return report


def failed_run(env: AdminEnv, source: str, error: str, kind: str = "incremental") -> int:
    run_id = sync.start_run(env.engine, source, kind)
    sync.finish_run(env.engine, run_id, sync.Counts(), error=error)
    return run_id


# --- 1. a schedule that hands work out says so, and how the work went ------------------------------

@pytest.mark.both_databases
def test_a_sync_schedule_says_handed_out_and_how_the_sync_it_started_ended(admin_env: AdminEnv,
                                                                          crm: FakeCRM) -> None:
    assert tick(admin_env, only=["sync", "reconcile"]).ran == {"sync": {"sample": "started"},
                                                               "reconcile": {"sample": "started"}}
    shown = page(admin_env)
    sync_row = row(shown, "sync")
    assert 'data-outcome="handed_out"' in sync_row
    assert "передано в работу; последняя синхронизация sample: успешно" in words(sync_row)
    assert "передано в работу; последняя сверка sample: успешно" in words(row(shown, "reconcile"))

    crm.fail_after_pages = 0  # the CRM goes away: the next sync the schedule hands out fails
    tick(admin_env, only=["sync"])
    shown = page(admin_env)
    sync_row = row(shown, "sync")
    assert 'data-outcome="handed_out"' in sync_row and 'class="failing' in sync_row
    assert "передано в работу; последняя синхронизация sample: ошибка (см. выше)" in words(sync_row)
    assert '<a href="#syncs">см. выше</a>' in sync_row  # the «last sync per CRM» table shows the error
    assert "sample CRM went away" in words(shown.split('id="syncs"')[1].split("</table>")[0])
    # The reconcile's own last run is fine: its row does not borrow the sync's failure.
    assert "последняя сверка sample: успешно" in words(row(shown, "reconcile"))

    english = page(admin_env, language="en")
    assert "handed out; last sync of sample: error (see above)" in words(row(english, "sync"))


def test_a_failure_no_longer_shown_above_is_said_in_the_row_itself(admin_env: AdminEnv, crm: FakeCRM) -> None:
    tick(admin_env, only=["reconcile"])
    failed_run(admin_env, "sample", "the CRM refused the id list", kind="reconcile")
    sync.run(admin_env.engine, admin_env.settings, "sample")  # a later sync is fine: the table above shows that
    text = words(row(page(admin_env), "reconcile"))
    assert "передано в работу; последняя сверка sample: ошибка: the CRM refused the id list" in text


@pytest.mark.both_databases
def test_a_failed_sync_is_in_the_banner_for_marketers_and_admins_with_a_link(admin_env: AdminEnv) -> None:
    tick(admin_env, only=["api_idempotency"])  # the scheduler ticks: only the sync line is left to say
    hostile = "доступы 'amocrm' не расшифровать: <script>alert(1)</script> " + "подробности " * 30 + "\nTraceback"
    run_id = failed_run(admin_env, "amocrm", hostile)
    with admin_env.engine.connect() as conn:
        at = conn.execute(select(sync.runs_t.c.finished_at).where(sync.runs_t.c.id == run_id)).scalar_one()
    when = formats.moment(at, admin_env.settings.tz)
    for role in ("marketer", "admin"):
        served = banner(page(admin_env, "/contacts/", role=role, raw=True))["sync"]
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in served and "<script>" not in served  # escaped
        line = banner(page(admin_env, "/contacts/", role=role))["sync"]
        assert line.startswith(f"Синхронизация amoCRM не удалась {when}: доступы 'amocrm' не расшифровать: "
                               "<script>alert(1)</script> подробности"), line
        assert "Traceback" not in line  # one short line: the connection page has the whole error
        assert words(line).endswith("… Открыть подключение")
        assert len(words(line)) < 260
        assert line.endswith('<a href="/connections/amocrm">Открыть подключение</a>')
    assert "sync" not in banner(page(admin_env, "/contacts/", role="viewer"))  # a viewer changes nothing there

    english = banner(page(admin_env, "/contacts/", role="marketer", language="en"))["sync"]
    assert english.startswith("The amoCRM sync failed on ")
    assert english.endswith('<a href="/connections/amocrm">Open the connection</a>')

    ok = sync.start_run(admin_env.engine, "amocrm", "incremental")  # the next sync works: the line goes
    sync.finish_run(admin_env.engine, ok, sync.Counts())
    health_banner.forget()
    assert banner(page(admin_env, role="marketer")) == {}


# --- 2. every result summary in the reader's words ---------------------------------------------------

def test_the_core_schedules_results_are_worded_in_russian_and_english() -> None:
    assert schedule.result_text({"refreshed": 9, "measured": 3}, "segment_sizes:today") == (
        "пересчитано сегментов: 9, измерено сегментов: 3")
    assert schedule.result_text({"enqueued": 2, "given_up": 0, "switched_off": 1, "pruned": 1500}, "webhooks") == (
        "доставок поставлено в очередь: 2, вебхуков выключено: 1, старых доставок удалено: 1\u00a0500")
    assert schedule.result_text({"forgotten": 4}, "api_idempotency") == "сохранённых ответов удалено: 4"
    assert schedule.result_text({"mystery_count": 2}, "a_plugins") == "mystery_count: 2"  # unknown: as it is
    assert schedule.result_text({"amocrm": "enqueued"}, "sync") == "amocrm: передана обработчику очереди (hub worker)"
    with use_language("en"):
        assert schedule.result_text({"refreshed": 9, "measured": 3}, "segment_sizes") == (
            "segments recounted: 9, segments measured: 3")
        assert schedule.result_text({"forgotten": 4}, "api_idempotency") == "kept answers forgotten: 4"
        assert schedule.result_text({"amocrm": "enqueued"}) == "amocrm: handed to a queue worker (hub worker)"
    assert schedule.handed_out({"amocrm": "started", "bitrix24": "still running"})
    assert not schedule.handed_out({}) and not schedule.handed_out({"runs": 2}) and not schedule.handed_out(None)


def test_segment_sizes_shows_the_work_it_handed_out_in_words(admin_env: AdminEnv) -> None:
    assert tick(admin_env, only=["segment_sizes"]).ran == {"segment_sizes": {"segment_sizes": "started"}}
    runs = schedule.last_runs(admin_env.engine)
    # The job keeps its own record: the schedule's row still says what the schedule did.
    assert runs["segment_sizes"]["last_result"] == {"segment_sizes": "started"}
    assert runs["segment_sizes:today"]["last_error"] is None
    shown = page(admin_env)
    text = words(row(shown, "segment_sizes"))
    assert re.search(r"передано в работу; выполнено: (пересчитано|измерено) сегментов: \d", text), text
    assert "refreshed" not in shown and "measured" not in shown
    english = words(row(page(admin_env, language="en"), "segment_sizes"))
    assert re.search(r"handed out; work done: segments (recounted|measured): \d", english), english


def test_a_worker_recording_a_handed_out_job_does_not_pass_for_the_scheduler(admin_env: AdminEnv) -> None:
    at = utcnow()
    schedule._record(admin_env.engine, "segment_sizes:today", last_started_at=at)
    assert not schedule.scheduler_alive(admin_env.engine, admin_env.settings, now=at).alive


# --- 4. no backticks, and a marketer is never asked to run a command --------------------------------

@pytest.mark.parametrize("language", ["ru", "en"])
def test_no_backticks_and_the_command_only_for_admins(admin_env: AdminEnv, language: str) -> None:
    for role in ("viewer", "marketer", "admin"):
        shown = page(admin_env, role=role, language=language)
        assert "`" not in words(shown.split("<main>")[1]), role
        line = banner(shown)["scheduler"]
        if role == "admin":
            assert line.endswith("<code>hub scheduler</code>.")
        else:
            assert "<code>" not in line
            assert line.endswith("Сообщите администратору: нужно запустить планировщик (hub scheduler)."
                                 if language == "ru" else
                                 "Tell an administrator: the scheduler (hub scheduler) must be started.")


# --- 5. plain titles for marketers, the technical words for admins ----------------------------------

def test_marketers_read_plain_titles_admins_also_the_technical_ones(admin_env: AdminEnv) -> None:
    marketer = page(admin_env, role="marketer")
    table = marketer.split('id="schedules"')[1].split("</table>")[0]
    assert "[gdpr.retention]" not in table and "Idempotency-Key" not in table and "<code" not in table
    assert "Применить правила сроков хранения</td>" in row(marketer, "gdpr-retention")
    assert "Служебная очистка API</td>" in row(marketer, "api_idempotency")
    assert "Синхронизация с CRM</td>" in row(marketer, "sync")
    assert "Доставка вебхуков</td>" in row(marketer, "webhooks")

    admin = page(admin_env, role="admin")
    gdpr = row(admin, "gdpr-retention")
    assert "Применить правила сроков хранения" in gdpr
    assert ('<span class="schedule-detail hint">применить правила сроков хранения ([gdpr.retention]) '
            "<code>gdpr-retention</code></span>") in gdpr
    assert "забыть ответы API, сохранённые для Idempotency-Key, через 24 часа" in row(admin, "api_idempotency")
    # Where the description says nothing more than the title, it is not repeated.
    assert '<span class="schedule-detail hint"><code>amocrm-keep-alive</code></span>' in row(admin, "amocrm-keep-alive")

    english = page(admin_env, role="viewer", language="en")
    assert "Sync with the CRMs</td>" in row(english, "sync")
    assert "Apply the retention rules</td>" in row(english, "gdpr-retention")
    assert "[gdpr.retention]" not in english.split('id="schedules"')[1].split("</table>")[0]


# --- 3. Russian words do not split, in narrow columns too --------------------------------------------

SPLIT_WORDS = """
const out = [];
for (const cell of document.querySelectorAll(arguments[0])) {
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const m of node.data.matchAll(/[\\p{L}\\p{N}]+/gu)) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (lines.size > 1) out.push(m[0]);
    }
  }
}
return out;
"""


@pytest.mark.parametrize("width", [1280, 700, 420])
def test_russian_words_never_split_in_the_schedules_table(live: str, browser: Browser, admin_env: AdminEnv,
                                                          width: int) -> None:
    failed_run(admin_env, "amocrm", "доступы 'amocrm' не расшифровать: ключ шифрования сменился " * 3)
    browser_sign_in(browser, live, "admin", "/")
    browser.driver.set_window_size(width, 900)
    browser.open(live + "/")
    browser.wait_text("#schedules", "ещё не запускалась")
    assert browser.script(SPLIT_WORDS, "#schedules td, #syncs td") == []
    assert browser.script(SPLIT_WORDS, "main > p.health-banner") == []
    # The old rule (overflow-wrap: anywhere) split «запускалась» here: the check above would see it.
    browser.script("document.querySelectorAll('#schedules td').forEach(td => "
                   "{ td.style.overflowWrap = 'anywhere'; td.style.minWidth = '0'; });")
    if width == 420:
        assert browser.script(SPLIT_WORDS, "#schedules td") != []


def test_the_banner_in_a_browser_tells_a_marketer_whom_to_ask(live: str, browser: Browser,
                                                             admin_env: AdminEnv) -> None:
    browser_sign_in(browser, live, "marketer", "/segments/")
    line = browser.wait_text("main > p.health-banner", "Сообщите администратору")
    assert line.endswith("Сообщите администратору: нужно запустить планировщик (hub scheduler).")
    assert "`" not in browser.text("main") and not browser.exists("main > p.health-banner code")
    browser_sign_in(browser, live, "admin", "/segments/")
    assert browser.text("main > p.health-banner code") == "hub scheduler"
    assert "`" not in browser.text("main")

