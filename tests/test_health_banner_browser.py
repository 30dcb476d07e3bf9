"""The health banner in headless Chromium: on every admin page until the scheduler ticks, then gone."""

from __future__ import annotations

from click.testing import CliRunner

from hub.admin import health_banner
from tests.browser import Browser
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in
from tests.support.cli import cli

NOT_RUNNING = ("Планировщик не запущен: сценарии и запланированные рассылки не работают. "
               "Последний запуск: ни разу. Сообщите администратору: нужно запустить планировщик (hub scheduler).")


def shown(browser: Browser) -> list[str]:
    return [p.text for p in browser.find_all('main > p.health-banner[role="alert"]')]


def test_the_banner_is_on_every_page_until_the_scheduler_ticks(live: str, browser: Browser,
                                                               admin_env: AdminEnv) -> None:
    health_banner.forget()
    browser.open(live + "/login")
    assert shown(browser) == []  # the sign-in page never shows it
    sign_in(browser, live, "marketer", "/")
    for path in ("/contacts/", "/workflows/", "/"):
        browser.open(live + path)
        browser.wait_text("main", "Планировщик не запущен")
        assert shown(browser) == [NOT_RUNNING], path
    assert browser.text('#schedules tr[data-schedule="workflows"] td.next') == "просрочена"

    result = CliRunner().invoke(cli, ["scheduler", "--run", "workflows"])  # one pass of the scheduler, now
    assert result.exit_code == 0, result.output
    health_banner.forget()  # the page keeps its answer for a few seconds; the next one asks again
    for path in ("/workflows/", "/contacts/", "/"):
        browser.open(live + path)
        browser.wait(lambda: browser.exists("main h1"), f"{path} to load")
        assert shown(browser) == [], path
    row = '#schedules tr[data-schedule="workflows"]'
    assert browser.find(row).get_attribute("data-outcome") == "ok"
    assert browser.text(f"{row} td.outcome").startswith("успешно")
    assert "каждые 30 секунд" in browser.text(row)
