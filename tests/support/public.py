"""Hub's public pages as a visitor meets them: the signup form, confirmation letters, signed links.

`site` (registered for every test module by tests/conftest.py) is the public app
with the mailing and gdpr plugins, mail going to the test's loopback SMTP server
(the `mailbox` fixture), and a website allowed to post the form. A module that
needs other settings defines its own `site`, which takes precedence there.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

import plugins.gdpr
import plugins.mailing
from hub import consent, identity, queue, sync
from hub.admin import create_app
from hub.config import load_settings
from hub.records import ContactRecord
from tests.conftest import HubDB
from tests.support.smtp import Mailbox

PUBLIC = "https://hub.example.ru"
API_KEY = "site-backend-key-0123456789"
SHOP_SITE = "https://shop.example.ru"


@pytest.fixture
def site(hub_db: HubDB, plugin_manager: Any, mailbox: tuple[Mailbox, int], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Hub's public pages with the mailing and gdpr plugins, mail going to the loopback SMTP server."""
    _, port = mailbox
    for name, value in {"HUB_SMTP_URL": f"smtp://127.0.0.1:{port}",
                        "HUB_MAIL_FROM": "Цветочная лавка <shop@example.ru>",
                        "HUB_PUBLIC_URL": PUBLIC, "HUB_COMPANY_NAME": "Цветочная лавка",
                        "HUB_GDPR_API_KEY": API_KEY, "HUB_GDPR_FORM_ORIGINS": SHOP_SITE,
                        "HUB_GDPR_TEXT_VERSION": "2024-05"}.items():
        monkeypatch.setenv(name, value)
    plugin_manager.register(plugins.mailing, name="mailing")
    plugin_manager.register(plugins.gdpr, name="gdpr")
    hub_db.settings = load_settings()
    return create_app(hub_db.settings)


def letters(box: Mailbox) -> list[email.message.EmailMessage]:
    """Every letter the SMTP server received, once the background jobs sending them are done."""
    queue.drain(timeout=60)
    return [email.message_from_bytes(r.data, policy=email.policy.default) for r in box.received]  # type: ignore[misc]


def confirm_path(letter: email.message.EmailMessage) -> str:
    text = letter.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    url = re.search(rf"{re.escape(PUBLIC)}/confirm/\S+", text).group(0)  # type: ignore[union-attr]
    return urlsplit(url).path


def csrf_of(page: Any) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]


def signup_on_hub_form(client: Any, **fields: Any) -> Any:
    page = client.get("/consent/form")
    assert page.status_code == 200
    data = {"csrf_token": csrf_of(page), "form_id": "default", "text_version": "2024-05", **fields}
    return client.post("/consent/form", data=data, headers={"User-Agent": "Mozilla/5.0 (Android) Test"})


def person(db: HubDB, *, email_: str | None = None, phone: str | None = None, name: str = "Анна",
           granted: tuple[str, ...] = ()) -> int:
    """A contact from a CRM with these topics granted ("email/marketing"); returns its id."""
    with db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="crm", first_name=name, emails=[email_] if email_ else [],
                                                       phones=[phone] if phone else [])],
                                  db.settings, sync.Counts()).contact_ids[0]
        for topic in granted:
            channel, purpose = topic.split("/")
            consent.record(conn, cid, channel, purpose, "granted", source="paper form")
    assert cid is not None
    return cid


def state(db: HubDB, contact_id: int) -> dict[tuple[str, str], str]:
    with db.engine.connect() as conn:
        return consent.current(conn, contact_id)


def history(db: HubDB, contact_id: int) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        return consent.history(conn, contact_id)


def holder(db: HubDB, address: str) -> int | None:
    with db.engine.connect() as conn:
        return identity.find_contact(conn, "email", address)
