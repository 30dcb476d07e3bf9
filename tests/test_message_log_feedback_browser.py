"""What came back about a message, in headless Chromium: a viewer finds the complained letter and reads why.

The log marks a bounce, a complaint and a click beside the status and filters
by them; the message page lists the events newest first in Russian, the
reporter's own text shown as text (never markup), the clicked link never live.
"""

from __future__ import annotations

import datetime as dt

import pytest

from hub.messaging import feedback
from tests.browser import Browser
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in
from tests.test_message_log import add_message
from tests.test_message_log_browser import row_ids

pytestmark = pytest.mark.both_databases  # what a viewer sees must not depend on the database

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def test_a_viewer_filters_the_log_by_complaints_and_reads_what_came_back(live: str, browser: Browser,
                                                                         admin_env: AdminEnv) -> None:
    quiet = add_message(admin_env, key="quiet", created=dt.datetime(2026, 12, 1, 8, tzinfo=UTC))
    bounced = add_message(admin_env, key="bounced", created=dt.datetime(2026, 12, 1, 9, tzinfo=UTC))
    complained = add_message(admin_env, key="complained", created=dt.datetime(2026, 12, 1, 10, tzinfo=UTC))
    with admin_env.engine.begin() as conn:
        feedback.record(conn, admin_env.settings, bounced, "bounce", at=T0, detail={"status": "5.1.1"})
        feedback.record(conn, admin_env.settings, complained, "click", at=T0,
                        url="https://shop.example.ru/sale?<b>x</b>")
        feedback.record(conn, admin_env.settings, complained, "complaint", at=T0 + dt.timedelta(minutes=5),
                        detail={"feedback_type": "abuse", "reporter": "mail.ru<script>window.hacked=1</script>"})
    sign_in(browser, live, "viewer", "/messages/")
    assert row_ids(browser) == [complained, bounced, quiet]
    assert browser.text(f'#messages-log tr[data-id="{bounced}"] [data-heard="bounce"]') == "отказ"
    assert browser.text(f'#messages-log tr[data-id="{complained}"] [data-heard="complaint"]') == "жалоба"
    assert not browser.exists(f'#messages-log tr[data-id="{quiet}"] [data-heard]')

    browser.select("#heard", "complaint")
    browser.click("#log-filters button[type=submit]")
    browser.wait(lambda: "heard=complaint" in browser.url, "the log of complained messages")
    assert row_ids(browser) == [complained]

    browser.click(f'#messages-log tr[data-id="{complained}"] a')
    browser.wait_text("h1", f"Сообщение #{complained}")
    lines = [r.text for r in browser.find_all("#events-list tbody tr")]
    assert len(lines) == 2
    assert "Жалоба на спам (mail.ru<script>window.hacked=1</script>)" in lines[0]
    assert "Переход по ссылке https://shop.example.ru/sale?<b>x</b>" in lines[1]
    assert "04.12.2026" in lines[0] or "4 дек" in lines[0]
    assert browser.script("return window.hacked === undefined") is True
    assert not browser.exists("#events-list a")  # the clicked link is shown, not followed
    assert not browser.exists("form.resolve")  # a viewer reads, decides nothing
