"""The shipped abandoned-cart workflow: a website posts cart_abandoned to the API, the customer gets the cart back.

The event goes through the real API (an API key, POST /api/v1/events), the
workflow is switched on as shipped, the scheduler's tick moves the clock, and
the letter goes to a real SMTP server. What the sender put in the event
(items, the link, the total) reaches the letter only through the sandboxed,
autoescaping renderer; the API's own limits refuse an oversized cart.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import select

from hub import messaging
from hub.admin.app import create_app
from hub.db import utcnow
from hub.models import Message
from tests.conftest import HubDB
from tests.support.shop import Person, add_order, enable, make_shop, runs_of, use_workflows
from tests.test_api_gate import auth, make_key
from workflows import ticks

CART = {"cart_url": "https://shop.example/cart/8812", "total": 7130,
        "items": [{"name": "Кроссовки беговые", "qty": 1, "price": 5990},
                  {"name": "Носки спортивные", "qty": 2, "price": 570}]}


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch, mailbox: Any) -> HubDB:
    _, port = mailbox
    monkeypatch.setenv("HUB_SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("HUB_MAIL_FROM", "Лавка <shop@example.ru>")
    monkeypatch.setenv("HUB_PUBLIC_URL", "https://hub.example.ru")
    return use_workflows(hub_db, plugin_manager, monkeypatch)


def post(db: HubDB, body: Any, status: int = 200) -> dict[str, Any]:
    client = create_app(db.settings).test_client()
    key = make_key(db, "events:write")
    r = client.post("/api/v1/events", json=body, headers=auth(key))
    assert r.status_code == status, r.get_data(as_text=True)
    return r.get_json(force=True)


def outbox(db: HubDB) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(Message.__table__).order_by(Message.__table__.c.id)))


@pytest.mark.both_databases
def test_a_cart_event_brings_a_letter_with_the_cart_then_an_sms_unless_they_ordered(wf: HubDB, mailbox: Any) -> None:
    box, _ = mailbox
    now = utcnow()
    ids = make_shop(wf, [Person("anna", "Анна", "+74951110001", "anna@example.ru"),
                         Person("boris", "Борис", "+74951110002", "boris@example.ru")], now=now)
    enable(wf, "abandoned_cart", now=now - dt.timedelta(minutes=1))
    sent = post(wf, {"events": [
        {"id": "site:cart:1", "name": "cart_abandoned", "email": "anna@example.ru", "properties": CART},
        {"id": "site:cart:2", "name": "cart_abandoned", "contact_id": ids["boris"], "properties": CART}]})
    assert sent["stored"] == 2
    ticks.tick(wf.engine, wf.settings, now=now + dt.timedelta(minutes=1))
    again = post(wf, {"id": "site:cart:1", "name": "cart_abandoned", "email": "anna@example.ru", "properties": CART})
    assert again["items"][0]["status"] == "duplicate"
    ticks.tick(wf.engine, wf.settings, now=now + dt.timedelta(minutes=2))
    runs = runs_of(wf, "abandoned_cart")
    assert [r.contact_id for r in runs] == sorted([ids["anna"], ids["boris"]])  # one run per event, not per post
    assert outbox(wf) == []  # an hour first

    ticks.tick(wf.engine, wf.settings, now=now + dt.timedelta(hours=1, minutes=5))
    messaging.dispatch(wf.engine, wf.settings, now=now + dt.timedelta(hours=1, minutes=6))
    letters = [m for m in outbox(wf) if m.channel == "email"]
    assert sorted(m.address for m in letters) == ["anna@example.ru", "boris@example.ru"]
    anna = next(m for m in letters if m.address == "anna@example.ru")
    assert anna.subject == "Анна, ваша корзина ждёт вас"
    for shown in ("Здравствуйте, Анна!", "Кроссовки беговые × 1 — 5 990 ₽", "Носки спортивные × 2 — 570 ₽",
                  "Итого: 7 130 ₽", "Вернуться к корзине: https://shop.example/cart/8812", "Отписаться"):
        assert shown in anna.body_text, shown
    got = next(r for r in box.received if r.rcpt_tos == ["anna@example.ru"])
    html = got.message.get_body(("html",)).get_content()
    assert 'href="https://shop.example/cart/8812"' in (anna.body_html or "")  # the letter as written
    # As received, its links go through Hub's click redirect (tracking is on by default).
    assert re.search(r'href="http[^"]+/c/[0-9]+-0-[^"]+"', html) and "Кроссовки беговые" in html and "7 130 ₽" in html

    add_order(wf, "boris", closed_at=now + dt.timedelta(hours=3))  # Boris bought: no SMS for him
    ticks.tick(wf.engine, wf.settings, now=now + dt.timedelta(days=1, hours=1, minutes=10))
    texts = [m for m in outbox(wf) if m.channel == "sms"]
    assert [m.address for m in texts] == ["+74951110001"]
    assert texts[0].body_text.startswith("Анна, ваша корзина ждёт вас: https://shop.example/cart/8812")
    statuses = {r.contact_id: r.status for r in runs_of(wf, "abandoned_cart")}
    assert statuses == {ids["anna"]: "done", ids["boris"]: "exited"}
    assert len(outbox(wf)) == 3  # nothing twice


@pytest.mark.both_databases
def test_hostile_values_are_escaped_and_a_bad_link_is_not_a_link(wf: HubDB, mailbox: Any) -> None:
    now = utcnow()
    make_shop(wf, [Person("anna", "Анна", "+74951110001", "anna@example.ru")], now=now)
    enable(wf, "abandoned_cart", now=now - dt.timedelta(minutes=1))
    post(wf, {"id": "site:cart:x", "name": "cart_abandoned", "email": "anna@example.ru", "properties": {
        "cart_url": "javascript:alert(1)", "total": "много",
        "items": [{"name": "<script>alert(1)</script><b>Кеды</b>", "qty": 1, "price": "<i>0</i>"}, "<img src=x>"]}})
    ticks.tick(wf.engine, wf.settings, now=now + dt.timedelta(minutes=1))
    ticks.tick(wf.engine, wf.settings, now=now + dt.timedelta(hours=1, minutes=5))
    (letter,) = outbox(wf)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;Кеды&lt;/b&gt;" in letter.body_html
    assert "&lt;img src=x&gt;" in letter.body_html and "<script" not in letter.body_html
    assert "javascript:" not in letter.body_html and "javascript:" not in letter.body_text
    assert "много" not in letter.body_text and "<i>0</i>" not in letter.body_html  # not numbers: not shown as money
    assert {r.status for r in runs_of(wf, "abandoned_cart")} == {"waiting"}  # the run carries on to the SMS


def test_an_oversized_cart_is_refused_by_the_api_with_the_field_named(wf: HubDB) -> None:
    now = utcnow()
    make_shop(wf, [Person("anna", "Анна", "+74951110001", "anna@example.ru")], now=now)
    items = [{"name": f"Товар {i}", "qty": 1, "price": 100} for i in range(10_000)]
    refused = post(wf, {"id": "site:cart:big", "name": "cart_abandoned", "email": "anna@example.ru",
                        "properties": {"items": items}}, status=422)
    assert "/properties/items" in str(refused)
    long_name = post(wf, {"id": "site:cart:long", "name": "cart_abandoned", "email": "anna@example.ru",
                          "properties": {"items": [{"name": "x" * 5000}]}}, status=422)
    assert "/properties/items/0/name" in str(long_name)
    nested = post(wf, {"id": "site:cart:deep", "name": "cart_abandoned", "email": "anna@example.ru",
                       "properties": {"items": [{"name": {"deeper": [1]}}]}}, status=422)
    assert "/properties/items/0/name" in str(nested)
    assert outbox(wf) == []


def test_the_template_editor_offers_the_event_and_previews_the_sample_cart(wf: HubDB) -> None:
    from hub import message_templates, template_variables

    groups = dict(template_variables.variables(wf.settings))
    offered = [v for vs in groups.values() for v in vs if v.group == "event"]
    assert any(v.expression == "event.properties.cart_url" and "shop.example/cart" in v.example for v in offered)
    with wf.engine.connect() as conn:
        template = message_templates.get(conn, wf.settings, "abandoned_cart_email")
    rendered = message_templates.render(template, message_templates.sample_context(
        wf.settings, template_variables.samples(wf.settings)))
    assert "Кроссовки беговые" in rendered.text and "Итого: 7 820 ₽" in rendered.text


def test_a_template_using_the_event_is_refused_in_a_workflow_no_api_event_starts(wf: HubDB) -> None:
    from workflows import store
    from workflows.definition import WorkflowError

    document = {"name": "cart_on_order", "trigger": {"event": "order.created"},
                "steps": [{"send": {"channel": "email", "template": "abandoned_cart_email"}}]}
    with wf.engine.begin() as conn, pytest.raises(WorkflowError) as caught:
        store.add(conn, wf.settings, document)
    assert "abandoned_cart_email показывает событие, с которого начался запуск" in str(caught.value)
