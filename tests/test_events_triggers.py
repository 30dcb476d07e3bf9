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


@pytest.mark.both_databases
def test_an_event_of_a_contact_deleted_in_every_source_starts_nothing(wf: HubDB) -> None:
    """Like the segment trigger: a contact no source holds any more gets no run (nor is the event stored)."""
    from sqlalchemy import update

    from hub.models import Contact

    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru"),
                         Person("boris", "Борис", None, "boris@example.ru")], now=utcnow())
    add(wf, CART, enabled_at=utcnow() - dt.timedelta(minutes=1))
    post(wf, {"events": [{"id": "c-a", "name": "cart_abandoned", "contact_id": ids["anna"]},
                         {"id": "c-b", "name": "cart_abandoned", "contact_id": ids["boris"]}]})
    with wf.engine.begin() as conn:  # deleted after the event came, before the workflow looked
        conn.execute(update(Contact).where(Contact.id == ids["anna"]).values(deleted_at=utcnow()))
    ticks.tick(wf.engine, wf.settings, now=utcnow() + dt.timedelta(minutes=1))
    assert [r.contact_id for r in runs_of(wf, "cart_reminder")] == [ids["boris"]]


@pytest.mark.both_databases
def test_erasure_clears_the_event_properties_kept_in_the_runs_context(wf: HubDB) -> None:
    from sqlalchemy import select

    from plugins.gdpr import erasure
    from workflows.models import WorkflowRun

    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru"),
                         Person("boris", "Борис", None, "boris@example.ru")], now=utcnow())
    add(wf, CART, enabled_at=utcnow() - dt.timedelta(minutes=1))
    post(wf, {"events": [{"id": "c-a", "name": "cart_abandoned", "email": "anna@example.ru",
                          "properties": {"address": "Тверская 1, кв 5"}},
                         {"id": "c-b", "name": "cart_abandoned", "email": "boris@example.ru",
                          "properties": {"address": "Арбат 2"}}]})
    ticks.tick(wf.engine, wf.settings, now=utcnow() + dt.timedelta(minutes=1))
    erasure.erase(wf.engine, wf.settings, ids["anna"], actor="tests")
    with wf.engine.connect() as conn:
        found = conn.execute(select(WorkflowRun.contact_id, WorkflowRun.context)).all()
    contexts: dict[int, dict[str, Any]] = {cid: context for cid, context in found}
    assert "Тверская" not in str(contexts) and "properties" not in contexts[ids["anna"]]
    assert contexts[ids["anna"]]["event"] == "cart_abandoned"
    assert contexts[ids["boris"]]["properties"] == {"address": "Арбат 2"}  # nobody else's is touched


@pytest.mark.both_databases
def test_events_are_read_a_bounded_page_at_a_time_each_starting_one_run(wf: HubDB,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy event costs a bounded read per tick; a backlog is caught up on later ticks, never twice."""
    from workflows import triggers

    monkeypatch.setattr(triggers, "EVENT_PAGE", 3)
    monkeypatch.setattr(triggers, "EVENT_PAGES", 2)
    people = [Person(f"p{n}", "Анна", None, f"p{n}@example.ru") for n in range(10)]
    make_shop(wf, people, now=utcnow())
    add(wf, CART, enabled_at=utcnow() - dt.timedelta(minutes=1))
    post(wf, {"events": [{"id": f"e{n}", "name": "cart_abandoned", "email": f"p{n}@example.ru"} for n in range(10)]
              + [{"id": "v1", "name": "page_viewed", "email": "p1@example.ru"}]})
    seen = []
    for minute in range(1, 5):
        ticks.tick(wf.engine, wf.settings, now=utcnow() + dt.timedelta(minutes=minute))
        seen.append(len(runs_of(wf, "cart_reminder")))
    assert seen == [6, 10, 10, 10]
    keys = sorted(r.trigger_key for r in runs_of(wf, "cart_reminder"))
    assert len(set(keys)) == 10



@pytest.mark.both_databases
def test_an_event_committed_after_a_later_one_still_starts_its_run(wf: HubDB) -> None:
    """Ids come from a sequence: event 10 may commit after event 11. The trigger reads only up to an id
    below which everything is committed (hub.api.settled_event_id), so paging by id skips nothing."""
    import threading
    import time

    from sqlalchemy import text

    from hub import events

    ids = make_shop(wf, [Person("anna", "Анна", None, "anna@example.ru"),
                         Person("boris", "Борис", None, "boris@example.ru")], now=utcnow())
    add(wf, CART, enabled_at=utcnow() - dt.timedelta(minutes=1))
    late = wf.engine.connect()
    slow = late.begin()
    events.record(late, wf.settings, [events.Incoming(name="cart_abandoned", contact_id=ids["anna"], uid="slow")],
                  api_key="tests")
    if wf.dialect == "sqlite":  # one writer at a time: the slow request commits before anyone else writes
        slow.commit()
    post(wf, {"id": "fast", "name": "cart_abandoned", "contact_id": ids["boris"]})
    ticking = threading.Thread(target=ticks.tick, args=(wf.engine, wf.settings),
                               kwargs={"now": utcnow() + dt.timedelta(minutes=1)})
    ticking.start()
    if wf.dialect == "postgresql":
        with wf.engine.connect() as conn:  # until the tick waits for the slow request (or has finished)
            for _ in range(400):
                if not ticking.is_alive() or conn.execute(text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).scalar():
                    break
                conn.rollback()
                time.sleep(0.01)
        slow.commit()
    ticking.join()
    late.close()
    ticks.tick(wf.engine, wf.settings, now=utcnow() + dt.timedelta(minutes=2))
    assert sorted(r.contact_id for r in runs_of(wf, "cart_reminder")) == sorted([ids["anna"], ids["boris"]])
