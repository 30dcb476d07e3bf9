"""The admin over a Hub with sample people: one signed-in user per role, and helpers to drive it.

Used by every test of the admin, through Flask's test client (tests/test_admin.py and
the tests of what the admin shows) and in headless Chromium (tests/support/admin_browser.py).
Import `admin_env` in a test module to use the fixture.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, select

from hub import consent, plugins, queue, sync, users
from hub.admin import create_app
from hub.config import Settings
from hub.db import utcnow
from hub.records import ContactRecord, OrderRecord
from tests.conftest import HubDB

PASSWORD = "correct horse battery staple"
ROLES = ("viewer", "marketer", "admin")
ADMIN_PLUGINS = ("amocrm", "bitrix24", "gdpr", "mailing", "workflows")


@dataclass
class AdminEnv:
    """A Hub with sample people, one user per role, and the admin app over it."""

    db: HubDB
    settings: Settings
    app: Flask
    users: dict[str, users.Account] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    @property
    def engine(self) -> Engine:
        return self.db.engine


def seed_people(engine: Engine, settings: Settings) -> dict[str, int]:
    """Anna (phones and email, two won orders, marketing consent), two namesakes, and a name that is markup."""
    now = utcnow()
    records: list[Any] = [
        ContactRecord(source="bitrix24", external_id="101", first_name="Анна", last_name="Иванова",
                      phones=["8 (916) 123-45-67"], emails=["Anna@Example.ru"], city="Москва"),
        ContactRecord(source="import:clients.csv", first_name="Пётр", last_name="Петров",
                      phones=["+7 495 111 00 00"], city="Тула"),
        ContactRecord(source="import:site.csv", first_name="Петр", last_name="Петров",
                      phones=["+7 495 222 33 44"], city="Тула"),
        ContactRecord(source="import:clients.csv", first_name="<script>alert(1)</script>", last_name="Хакер",
                      emails=["hacker@example.ru"]),
        OrderRecord(source="bitrix24", external_id="o1", contact_external_id="101", amount=Decimal("1500"),
                    status="won", closed_at=now - dt.timedelta(days=200)),
        OrderRecord(source="bitrix24", external_id="o2", contact_external_id="101", amount=Decimal("2500"),
                    status="won", closed_at=now - dt.timedelta(days=120), title="Зимняя куртка"),
    ]
    with engine.begin() as conn:
        sync.write_page(conn, records, settings, sync.Counts())
    with engine.connect() as conn:
        from hub.models import Contact

        rows = conn.execute(select(Contact.id, Contact.first_name, Contact.last_name).order_by(Contact.id)).all()
    ids = {"anna": rows[0].id, "petrov_1": rows[1].id, "petrov_2": rows[2].id, "markup": rows[3].id}
    with engine.begin() as conn:
        consent.record(conn, ids["anna"], "email", "marketing", "granted", source="paper form", settings=settings,
                       evidence={"form": "№17"})
    return ids


@pytest.fixture
def admin_env(hub_db: HubDB) -> Iterator[AdminEnv]:
    settings = replace(hub_db.settings, plugins=ADMIN_PLUGINS)
    plugins.use(plugins.build(settings))
    env = AdminEnv(db=hub_db, settings=settings, app=create_app(settings))
    with hub_db.engine.begin() as conn:
        for role in ROLES:
            env.users[role] = users.add(conn, f"{role}@shop.example", role, PASSWORD)
        env.users["leaver"] = users.add(conn, "leaver@shop.example", "viewer", PASSWORD)
    env.ids = seed_people(hub_db.engine, settings)
    yield env
    queue.drain(timeout=60)  # background jobs a test started end before its database goes


def sign_in(client: FlaskClient, user: users.Account | None) -> FlaskClient:
    """Put a signed-in session in the client's cookie (the sign-in form has tests of its own)."""
    with client.session_transaction() as session:
        session.pop("uid", None)
        session.pop("auth", None)
        if user is not None:
            session["uid"] = user.id
            session["auth"] = user.fingerprint
    return client


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path)
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.get_data(as_text=True))
    assert found, f"no CSRF token on {path} ({page.status_code})"
    return found.group(1)


def login(client: FlaskClient, email: str, password: str, **environ: Any) -> Any:
    token = csrf_token(client)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token},
                       **({"environ_base": environ} if environ else {}))


def client_as(env: AdminEnv, role: str | None) -> FlaskClient:
    return sign_in(env.app.test_client(), env.users[role] if role else None)


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, *, token_from: str = "/workflows/",
         **kwargs: Any) -> Any:
    """POST a form with the CSRF token a page of the admin hands out."""
    return client.post(path, data={"csrf_token": csrf_token(client, token_from), **(data or {})}, **kwargs)


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def plain(response: Any) -> str:
    """The page with HTML entities read back (quotes in messages are escaped in the page)."""
    return html.unescape(text(response))
