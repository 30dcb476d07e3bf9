"""A campaign's clicks on its page and its workflow's page, in headless Chromium, in Russian and in English.

The letter goes through a real SMTP server; its link is followed through the
same server the admin runs on (the public route), as a reader's browser would.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace
from typing import Any

import pytest

from hub import message_templates
from hub.db import utcnow
from tests.browser import Browser
from tests.support.admin import AdminEnv, admin_env, client_as, csrf_token  # noqa: F401
from tests.support.admin_browser import sign_in
from tests.test_campaigns_admin import seed_campaign_world
from workflows import campaigns, ticks
from workflows.campaigns import Draft

pytestmark = pytest.mark.both_databases

PUBLIC = "https://hub.example.ru"


@pytest.fixture
def env(admin_env: AdminEnv, mailbox: Any) -> AdminEnv:  # noqa: F811
    _box, port = mailbox
    admin_env.settings = replace(admin_env.settings, extra={
        **admin_env.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
        "mail_from": "Цветочная лавка <shop@example.ru>", "public_url": PUBLIC})
    admin_env.app.config["HUB_SETTINGS"] = admin_env.settings
    seed_campaign_world(admin_env)
    with admin_env.engine.begin() as conn:
        message_templates.save(conn, admin_env.settings, message_templates.Template(
            name="spring_links", channel="email", subject="Весна, {{ contact.first_name }}",
            text="Скидки: https://shop.example.ru/spring",
            html='<p><a href="https://shop.example.ru/spring" id="go">Скидки <b>&lt;script&gt;</b></a></p>'))
    return admin_env


def test_the_campaign_and_workflow_pages_show_the_click_rate(env: AdminEnv, mailbox: Any, browser: Browser,
                                                             live: str) -> None:
    box, _ = mailbox
    made = campaigns.create(env.engine, env.settings, Draft(title="Весенние <i>скидки</i>", segment="moscow",
                                                            channel="email", template="spring_links"), actor="m")
    name = made["name"]
    campaigns.send_now(env.engine, env.settings, name, actor="m")
    ticks.advance_due(env.engine, env.settings, now=utcnow())
    (received,) = [email.message_from_bytes(r.data, policy=email.policy.default) for r in box.received]
    html = received.get_body(("html",)).get_content()  # type: ignore[union-attr]
    link = re.search(rf"{re.escape(PUBLIC)}(/c/[A-Za-z0-9_-]+)", html)
    assert link is not None

    # The reader's browser follows the link: Hub records the click and sends it on.
    browser.open(live + link[1] + "x")  # a truncated or altered link: a page that says so
    browser.wait_text("h1", "Ссылка не работает")
    assert client_as(env, "viewer").get(link[1]).status_code == 302

    sign_in(browser, live, "viewer", f"/campaigns/{name}")
    browser.wait(lambda: browser.exists("#engagement"), "the clicks on the campaign's page")
    assert browser.text("#emails-sent") == "1" and browser.text("#clicks") == "1"
    assert browser.text("#click-rate").replace("\xa0", " ") == "(100 %)"
    assert "Перешли по ссылке" in browser.text("#engagement") and not browser.exists("#opens")

    browser.open(f"{live}/workflows/{campaigns.workflow_name(name)}")
    browser.wait(lambda: browser.exists("#engagement"), "the clicks on the workflow's page")
    assert browser.text("#clicks") == "1"

    english = client_as(env, "viewer")  # a reader who chose English in the header's form
    assert english.post("/language", data={"csrf_token": csrf_token(english, "/"), "language": "en",
                                           "next": "/"}).status_code == 302
    page = english.get(f"/campaigns/{name}").get_data(as_text=True)
    assert "Clicked" in page and "Emails sent" in page and "Перешли" not in page
