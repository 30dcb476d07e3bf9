"""In headless Chromium: a marketer tries a workflow on a contact found by the search box, then switches it on
through the confirmation page with the forecast's numbers."""

from __future__ import annotations

from sqlalchemy import select

from tests.browser import Browser
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in
from workflows.models import WorkflowRow


def test_try_on_a_contact_then_switch_on_after_the_confirmation(live: str, browser: Browser,
                                                               admin_env: AdminEnv) -> None:
    sign_in(browser, live, "marketer", "/workflows/reactivation_90d")
    browser.click("#try-link")
    browser.wait(lambda: browser.exists("#try-search"), "the try page")
    browser.fill("#try-search input[name=q]", "Иванова")
    browser.click("#try-search button")
    browser.wait(lambda: browser.exists("#try-found a"), "the contacts found")
    assert "Иванова Анна" in browser.text("#try-found")
    browser.click("#try-found a")
    browser.wait(lambda: browser.exists("#trace"), "the trace")
    assert browser.url.endswith(f"contact={admin_env.ids['anna']}")
    entry = browser.text("#try-entry")
    assert "Вход:" in entry
    steps = browser.find_all("#trace li.trace-step")
    assert not browser.exists("#try-holdout")  # Anna (#1) is outside reactivation_90d's holdout
    outcomes = [s.get_attribute("data-outcome") for s in steps]
    assert outcomes[:4] == ["done", "sent", "waited", "branch"]
    assert "промокод будет выдан: 15" in browser.text("#trace")
    assert "anna@example.ru" in browser.text("#trace") and "ветка «нет»" in browser.text("#trace")
    frame = browser.find("#trace iframe.letter-frame")
    assert frame.get_attribute("sandbox") == "allow-popups"
    browser.driver.switch_to.frame(frame)
    try:
        browser.wait(lambda: "Анна" in browser.driver.find_element("css selector", "body").text, "the letter")
    finally:
        browser.driver.switch_to.default_content()
    browser.open(live + "/workflows/")
    row = next(r for r in browser.find_all("#workflows tbody tr") if "reactivation_90d" in r.text)
    row.find_element("css selector", "a.toggle").click()
    browser.wait(lambda: browser.exists("#enable-form"), "the confirmation page")
    assert "Сразу войд" in browser.text("#enable-summary") and "За 14 дней:" in browser.text("#enable-summary")
    with admin_env.engine.connect() as conn:
        assert not conn.execute(select(WorkflowRow.enabled).where(WorkflowRow.name == "reactivation_90d")).scalar()
    browser.click("#enable-confirm")
    assert "«Вернуть клиентов, которые не покупали 90 дней» включён" in browser.wait_text(".flash", "включён")
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(WorkflowRow.enabled).where(WorkflowRow.name == "reactivation_90d")).scalar()
