"""Recording consent as staff on a contact's card, in headless Chromium, as a marketer and as a viewer."""

from __future__ import annotations

from hub import consent
from tests.browser import Browser
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in


def test_a_marketer_records_consent_as_staff_and_a_viewer_sees_no_form(live: str, browser: Browser,
                                                                      admin_env: AdminEnv) -> None:
    petrov = admin_env.ids["petrov_1"]
    sign_in(browser, live, "viewer", f"/contacts/{petrov}")
    browser.wait(lambda: browser.exists("#identities"), "the contact card")
    assert not browser.exists("#staff-consent")

    sign_in(browser, live, "marketer", f"/contacts/{petrov}")
    browser.wait(lambda: browser.exists("#staff-consent"), "the staff consent form")
    browser.script("""
        const form = document.querySelector('#staff-consent');
        form.querySelector('[name=channel]').value = 'sms';
        form.querySelector('[name=purpose]').value = 'marketing';
        form.querySelector('[name=status]').value = 'granted';""")
    browser.fill("#staff-consent input[name=note]", "анкета в магазине")
    browser.click("#staff-consent button")
    assert "внёс marketer@shop.example" in browser.wait_text(".flash", "Записано")
    assert "staff:marketer@shop.example" in browser.text("#consent-history")
    with admin_env.engine.connect() as conn:
        (event,) = consent.history(conn, petrov)
    assert (event["channel"], event["purpose"], event["status"]) == ("sms", "marketing", "granted")
    assert event["evidence"]["staff_user"] == "marketer@shop.example"
