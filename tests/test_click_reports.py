"""Clicks after they happen: a campaign sent over SMTP, links followed, then segments, scores and reports read them.

On SQLite and PostgreSQL: the segment fields and the report are SQL over
message_events joined to messages.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub import message_templates, queue
from hub.admin import create_app
from hub.api import record_message_event
from hub.db import utcnow
from hub.models import Message
from hub.segments import fields, scoring
from hub.segments import store as segment_store
from hub.segments.evaluate import Segments
from hub.segments.rules import Parser
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.shop import Person, make_shop, use_workflows
from tests.support.smtp import Mailbox
from workflows import campaigns, measure, ticks
from workflows.campaigns import Draft

pytestmark = pytest.mark.both_databases

PUBLIC = "https://hub.example.ru"
PEOPLE = [Person("anna", "Анна", None, "anna@example.ru"), Person("boris", "Борис", None, "boris@example.ru"),
          Person("vera", "Вера", None, "vera@example.ru"), Person("gleb", "Глеб", None, "gleb@example.ru")]
LETTER = message_templates.Template(
    name="spring_email", channel="email", subject="{{ contact.first_name }}, весна в лавке",
    text="Скидки: https://shop.example.ru/spring\nКаталог: https://shop.example.ru/catalog",
    html='<html><body><p><a href="https://shop.example.ru/spring">Скидки</a> · '
         '<a href="https://shop.example.ru/catalog">Каталог</a></p></body></html>')
CLICK = re.compile(rf"{re.escape(PUBLIC)}/c/[A-Za-z0-9_-]+")


@pytest.fixture
def shop(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch, mailbox: tuple[Mailbox, int]) -> HubDB:
    _, port = mailbox
    for name, value in {"HUB_SMTP_URL": f"smtp://127.0.0.1:{port}", "HUB_MAIL_FROM": "Лавка <shop@example.ru>",
                        "HUB_PUBLIC_URL": PUBLIC, "HUB_MAIL_TRACKING": "clicks,opens"}.items():
        monkeypatch.setenv(name, value)
    db = use_workflows(hub_db, plugin_manager, monkeypatch)
    make_shop(db, PEOPLE, now=utcnow())
    with db.engine.begin() as conn:
        segment_store.add(conn, fields.build(db.settings), {
            "name": "buyers", "title": "Покупатели", "rule": {"field": "orders.count", "op": "gte", "value": 1}})
        message_templates.save(conn, db.settings, LETTER)
    return db


def send_campaign(db: HubDB, box: Mailbox) -> tuple[str, dict[str, email.message.EmailMessage]]:
    made = campaigns.create(db.engine, db.settings, Draft(title="Весна", segment="buyers", channel="email",
                                                          template=LETTER.name), actor="m")
    campaigns.send_now(db.engine, db.settings, made["name"], actor="m")
    ticks.advance_due(db.engine, db.settings, now=utcnow())
    queue.drain(timeout=60)
    received = [email.message_from_bytes(r.data, policy=email.policy.default) for r in box.received]
    return made["name"], {str(m["To"]).split("<")[-1].strip(">"): m for m in received}


def follow(app: Any, letter: Any, which: int = 0) -> str:
    html = letter.get_body(("html",)).get_content()
    answer = app.test_client().get(urlsplit(CLICK.findall(html)[which]).path)
    assert answer.status_code == 302
    return str(answer.headers["Location"])


def who(db: HubDB, rule: dict[str, Any], now: dt.datetime | None = None) -> list[int]:
    with db.engine.connect() as conn:
        segments = Segments(conn, db.settings, now=now)
        parser = Parser(segments.registry)
        node = parser.rule(rule, "rule")
        parser.raise_problems()
        assert node is not None
        return sorted(conn.execute(segments.compiler.members(node)).scalars())


def contact_of(db: HubDB, address: str) -> int:
    with db.engine.connect() as conn:
        found = conn.execute(select(Message.contact_id).where(Message.address == address)).scalar_one()
        assert found is not None
        return int(found)


def test_a_campaigns_clicks_reach_its_report_its_json_and_segments(shop: HubDB, mailbox) -> None:
    box, _ = mailbox
    name, letters = send_campaign(shop, box)
    assert set(letters) == {p.email for p in PEOPLE}
    app = create_app(shop.settings)
    assert follow(app, letters["anna@example.ru"]) == "https://shop.example.ru/spring"
    assert follow(app, letters["anna@example.ru"], 1) == "https://shop.example.ru/catalog"  # one letter, twice
    assert follow(app, letters["boris@example.ru"], 1) == "https://shop.example.ru/catalog"
    vera_html = letters["vera@example.ru"].get_body(("html",))
    assert vera_html is not None
    pixel = re.search(rf"{re.escape(PUBLIC)}(/o/[^\"]+)", vera_html.get_content())
    assert pixel is not None and app.test_client().get(pixel[1]).status_code == 200

    expected = {"emails": 4, "clicks": 2, "click_rate": 0.5, "opens": 1, "open_rate": 0.25, "opens_reliable": False}
    assert campaigns.show(shop.engine, shop.settings, name)["engagement"] == expected
    shown = json.loads(CliRunner().invoke(cli, ["campaigns", "show", name, "--json"]).output)
    assert shown["engagement"] == expected
    workflow = campaigns.workflow_name(name)
    assert measure.status(shop.engine, shop.settings, workflow)["engagement"] == expected
    status = json.loads(CliRunner().invoke(cli, ["workflows", "status", workflow, "--json"]).output)
    assert status["engagement"]["click_rate"] == 0.5
    human = CliRunner().invoke(cli, ["campaigns", "show", name]).output.replace("\xa0", " ")
    assert "Перешли по ссылке: 2 из 4 писем (50 %)" in human
    assert "открытия неточны: почтовые сервисы загружают картинки сами" in human
    table = CliRunner().invoke(cli, ["workflows", "status", workflow]).output.replace("\xa0", " ")
    assert "перешли по ссылке: 2 из 4 писем (50 %)" in table

    anna, boris, vera = (contact_of(shop, f"{k}@example.ru") for k in ("anna", "boris", "vera"))
    assert who(shop, {"field": "email.last_click_at", "op": "within_last", "value": "7d"}) == sorted([anna, boris])
    assert who(shop, {"field": "email.last_click_at", "op": "not_null"}) == sorted([anna, boris])
    assert vera in who(shop, {"field": "email.last_click_at", "op": "is_null"})
    assert who(shop, {"field": "email.last_open_at", "op": "within_last", "value": "1d"}) == [vera]
    assert who(shop, {"field": f"email.clicks.{name}", "op": "gte", "value": 1}) == sorted([anna, boris])
    assert who(shop, {"field": f"email.clicks.{workflow}", "op": "eq", "value": 1}) == sorted([anna, boris])
    assert who(shop, {"field": "email.clicks.another_campaign", "op": "gte", "value": 1}) == []
    assert who(shop, {"field": "email.clicks", "op": "gte", "value": 1}) == sorted([anna, boris])
    later = utcnow() + dt.timedelta(days=10)
    assert who(shop, {"field": "email.last_click_at", "op": "within_last", "value": "7d"}, now=later) == []
    assert who(shop, {"field": "email.last_click_at", "op": "before", "value": "-1d"}, now=later) == sorted(
        [anna, boris])
    assert who(shop, {"not": {"field": "email.last_click_at", "op": "within_last", "value": "7d"}}, now=later) \
        == sorted(c for c in who(shop, {"field": "orders.count", "op": "gte", "value": 0}))


def test_clicks_and_opens_feed_the_lead_score(shop: HubDB, mailbox) -> None:
    box, _ = mailbox
    _, letters = send_campaign(shop, box)
    app = create_app(shop.settings)
    follow(app, letters["anna@example.ru"])
    anna, gleb = contact_of(shop, "anna@example.ru"), contact_of(shop, "gleb@example.ru")
    model = [
        {"title": "Clicked an email within 30 days", "rule": {"field": "email.last_click_at", "op": "within_last",
                                                              "value": "30d"}, "points": 10},
        {"title": "Emails clicked", "per": "email.clicks", "points": 2, "max": 6},
    ]
    with shop.engine.connect() as conn:
        segments = Segments(conn, shop.settings)
        parsed = scoring.parse_model(model, segments.registry, segments.catalog.definitions, origin="test")
        assert scoring.score_of(conn, segments.compiler, parsed, anna) == 12
        assert scoring.score_of(conn, segments.compiler, parsed, gleb) == 0


def test_a_workflows_report_without_email_letters_shows_no_rate(shop: HubDB) -> None:
    with shop.engine.begin() as conn:
        from workflows import engagement

        assert engagement.rates(conn, "nobody_wrote_this") == {
            "emails": 0, "clicks": 0, "click_rate": None, "opens": 0, "open_rate": None, "opens_reliable": False}
        assert engagement.rates(conn, None)["click_rate"] is None
        assert record_message_event(conn, shop.settings, 2**31 - 1, "click", url="https://x.ru") is None
