"""The message log in headless Chromium: a marketer filters it, reads a letter as it went out, settles a doubt.

The letter is served by its own route into a sandboxed frame with a policy of
its own, so its inline styles apply there although the admin's policy forbids
them: the test reads the computed style inside the frame. A viewer sees the
same pages without a single button that changes anything.
"""

from __future__ import annotations

import pytest

import datetime as dt

from sqlalchemy import select

from hub.models import Message
from tests.browser import Browser
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in
from tests.test_message_log import LETTER, add_message

pytestmark = pytest.mark.both_databases  # what a marketer sees must not depend on the database

UTC = dt.timezone.utc


def seed(env: AdminEnv) -> dict[str, int]:
    return {
        "letter": add_message(env, origin="reactivation_90d", html=LETTER, provider_id="<letter@hub>",
                              created=dt.datetime(2026, 12, 1, 8, tzinfo=UTC)),
        "failed": add_message(env, origin="reactivation_90d", status="failed", error="bounced: 550 no such user",
                              created=dt.datetime(2026, 12, 1, 9, tzinfo=UTC)),
        "sms": add_message(env, origin="reactivation_90d", channel="sms", status="failed", error="HTTP 500",
                           created=dt.datetime(2026, 12, 1, 10, tzinfo=UTC)),
        "doubt": add_message(env, origin="birthday", contact="petrov_1", status="unknown", address="petrov@example.ru",
                             error="connection lost after DATA", created=dt.datetime(2026, 12, 2, 9, tzinfo=UTC)),
    }


def row_ids(browser: Browser) -> list[int]:
    return [int(r.get_attribute("data-id")) for r in browser.find_all("#messages-log tbody tr[data-id]")]


def test_a_marketer_filters_reads_the_letter_and_settles_a_doubt(live: str, browser: Browser,
                                                                 admin_env: AdminEnv) -> None:
    ids = seed(admin_env)
    sign_in(browser, live, "marketer", "/messages/")
    assert "Журнал сообщений" in browser.text("h1")
    assert row_ids(browser) == sorted(ids.values(), reverse=True)
    browser.select("#channel", "email")
    browser.select("#status", "failed")
    browser.click("#log-filters button[type=submit]")
    browser.wait(lambda: "status=failed" in browser.url, "the filtered log")
    assert row_ids(browser) == [ids["failed"]]
    assert "1–1 из 1" in browser.text("#paging")
    assert "возврат, адрес заблокирован: 550 no such user" in browser.text("#messages-log")  # hub.send_reasons

    browser.click("#reset")
    browser.wait(lambda: len(row_ids(browser)) == 4, "every message again")
    browser.click(f'#messages-log tr[data-id="{ids["letter"]}"] a')
    browser.wait_text("h1", f"Сообщение #{ids['letter']}")
    assert "Здравствуйте, Анна! Ваш промокод BACK-15." in browser.text("#text")
    frame = browser.find("iframe#letter")
    assert frame.get_attribute("sandbox") == ""  # the person's own links do nothing here
    browser.driver.switch_to.frame(frame)
    try:
        hello = browser.find("#hello")
        assert hello.text == "Здравствуйте, Анна!"
        assert hello.value_of_css_property("color") == "rgba(200, 0, 0, 1)"  # the letter's own inline style
        assert hello.value_of_css_property("font-size") == "22px"
    finally:
        browser.driver.switch_to.default_content()

    browser.open(live + "/messages/review")
    assert f'data-id="{ids["doubt"]}"' in browser.driver.page_source
    browser.click(f'#doubtful tr[data-id="{ids["doubt"]}"] button[data-outcome="sent"]')
    browser.wait_text(".flash", f"Сообщение #{ids['doubt']} отмечено отправленным")
    assert not browser.exists(f'#doubtful tr[data-id="{ids["doubt"]}"]')
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(Message.status).where(Message.id == ids["doubt"])).scalar_one() == "sent"


def test_a_viewer_reads_the_log_but_has_no_buttons(live: str, browser: Browser, admin_env: AdminEnv) -> None:
    ids = seed(admin_env)
    sign_in(browser, live, "viewer", "/messages/review")
    assert "Сообщения под вопросом" in browser.text("h1")
    assert browser.exists(f'#doubtful tr[data-id="{ids["doubt"]}"]')
    assert not browser.exists("form.resolve") and not browser.exists("button[data-outcome]")
    browser.open(live + f"/messages/{ids['doubt']}")
    browser.wait_text("h1", f"Сообщение #{ids['doubt']}")
    assert not browser.exists("form.resolve")
    assert "Сообщения" in [a.text for a in browser.find_all("header nav a")]
