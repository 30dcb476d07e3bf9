"""Workflows started by events other systems send: one run per stored event, never twice, properties in context."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from hub.admin.app import create_app
from hub.db import utcnow
from tests.conftest import HubDB
from tests.support.shop import Person, make_shop, runs_of, use_workflows
from tests.test_api_gate import auth, make_key
from workflows import store, ticks
from workflows.definition import WorkflowError

CART = {"name": "cart_reminder", "trigger": {"event": "cart_abandoned"}, "steps": [{"wait": "1d"}]}


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    return use_workflows(hub_db, plugin_manager, monkeypatch)


def add(db: HubDB, document: dict[str, Any], *, enabled_at: dt.datetime | None = None) -> None:
    with db.engine.begin() as conn:
        store.install_library(conn)
        store.add(conn, db.settings, document)
        if enabled_at is not None:
            store.set_enabled(conn, document["name"], True, now=enabled_at)


def post(db: HubDB, body: Any) -> dict[str, Any]:
    client = create_app(db.settings).test_client()
    key = make_key(db, "events:write")
    r = client.post("/api/v1/events", json=body, headers=auth(key))
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def test_a_posted_event_starts_one_run_and_the_same_id_again_starts_nothing(wf: HubDB) -> None:
    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru"),
                         Person("boris", "Борис", None, "boris@example.ru")], now=utcnow())
    add(wf, CART, enabled_at=utcnow() - dt.timedelta(minutes=1))
    sent = post(wf, {"id": "cart-1", "name": "cart_abandoned", "email": "anna@example.ru",
                     "properties": {"total": 5400, "url": "https://shop.example/cart"}})
    event_id = sent["items"][0]["event_id"]
    ticks.tick(wf.engine, wf.settings, now=utcnow() + dt.timedelta(minutes=1))
    (run,) = runs_of(wf, "cart_reminder")
    assert run.contact_id == ids["anna"] and run.trigger_key == f"event:{event_id}"
    assert run.context == {"event": "cart_abandoned", "event_id": event_id,
                           "properties": {"total": 5400, "url": "https://shop.example/cart"}}
    # the same event again (same id): a duplicate, and the next ticks start nothing
    again = post(wf, {"id": "cart-1", "name": "cart_abandoned", "email": "anna@example.ru"})
    assert again["items"][0]["status"] == "duplicate"
    ticks.tick(wf.engine, wf.settings, now=utcnow() + dt.timedelta(minutes=2))
    ticks.tick(wf.engine, wf.settings, now=utcnow() + dt.timedelta(minutes=3))
    assert len(runs_of(wf, "cart_reminder")) == 1
    # another person's event, and an event of another name
    post(wf, {"events": [{"id": "cart-2", "name": "cart_abandoned", "contact_id": ids["boris"]},
                         {"id": "view-1", "name": "page_viewed", "contact_id": ids["boris"]}]})
    ticks.tick(wf.engine, wf.settings, now=utcnow() + dt.timedelta(minutes=4))
    assert [r.contact_id for r in runs_of(wf, "cart_reminder")] == sorted([ids["anna"], ids["boris"]])


def test_events_received_before_the_workflow_was_switched_on_start_nothing(wf: HubDB) -> None:
    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru")], now=utcnow())
    post(wf, {"id": "old-1", "name": "cart_abandoned", "contact_id": ids["anna"]})
    add(wf, CART, enabled_at=utcnow() + dt.timedelta(seconds=1))
    ticks.tick(wf.engine, wf.settings, now=utcnow() + dt.timedelta(minutes=1))
    assert runs_of(wf, "cart_reminder") == []


@pytest.mark.parametrize("event, words", [
    ("Cart Abandoned", "/api/v1/events"),
    ("order_won", "order.won"),
    ("order.paid", "order.created"),
])
def test_a_trigger_event_name_is_checked(wf: HubDB, event: str, words: str) -> None:
    with pytest.raises(WorkflowError) as info:
        add(wf, {**CART, "trigger": {"event": event}})
    assert words in str(info.value)


def test_an_api_event_trigger_takes_no_promo_options(wf: HubDB) -> None:
    with pytest.raises(WorkflowError):
        add(wf, {**CART, "trigger": {"event": "cart_abandoned", "before": "3d"}})
