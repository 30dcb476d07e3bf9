"""The builder's «Условие» card says what a relative time means («-60d» — «60 дней назад»), in headless Chromium."""

from __future__ import annotations

import pytest

from tests.browser import Browser
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in
from workflows import store

pytestmark = pytest.mark.both_databases

DOCUMENT = {"name": "hinted", "title": "Hinted", "trigger": {"segment": "dormant_90d"}, "reentry": "never",
            "steps": [{"wait": "1d"},
                      {"if": {"field": "orders.last_at", "op": "after", "value": "-60d"}, "then": "exit"}]}
HINT = '[data-hint-for="steps[1].if.value"]'


def test_a_condition_card_shows_what_a_relative_time_means(admin_env: AdminEnv, live: str, browser: Browser) -> None:
    with admin_env.engine.begin() as conn:
        store.add(conn, admin_env.settings, DOCUMENT, by="marketer@shop.example", kind=store.ADMIN_ORIGIN)
    sign_in(browser, live, "marketer", "/workflows/hinted/edit")
    browser.wait_text(HINT, "60 дней назад")  # drawn with the page
    text = browser.find("#workflow-document").get_attribute("value")
    browser.fill("#workflow-document", text.replace("-60d", "-30d"))
    browser.wait_text(HINT, "30 дней назад")  # the typed text's check answers with the hints again
