"""Segment rules over events: occurred within a window, how many times, when last, a property's value."""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

import pytest

from hub import events, i18n
from hub.db import utcnow
from hub.records import ContactRecord
from hub.segments import store
from hub.segments.evaluate import Segments
from hub.segments.explain import explain
from hub.segments.rules import RuleError
from hub.sync import Counts, write_contacts
from tests.conftest import HubDB
from tests.support.segments import members as probe_members

pytestmark = pytest.mark.both_databases  # the rules compile to each dialect's SQL (JSON properties differ)

NOW = utcnow().replace(microsecond=0)


@pytest.fixture(autouse=True)
def english(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    with i18n.use_language("en"):
        yield


def ago(days: float) -> str:
    return (NOW - dt.timedelta(days=days)).isoformat()


@pytest.fixture
def people(hub_db: HubDB) -> dict[str, int]:
    """Four shoppers with event histories relative to NOW."""
    names = ("anna", "boris", "vera", "gleb")
    with hub_db.engine.begin() as conn:
        result = write_contacts(conn, [ContactRecord(source="shop", external_id=n, emails=[f"{n}@example.ru"])
                                       for n in names], hub_db.settings, Counts())
        ids = dict(zip(names, result.contact_ids, strict=True))
        history: list[tuple[str, str, float, dict[str, Any]]] = [
            # anna: left a big cart yesterday, viewed pages 3 times this month
            ("anna", "cart_abandoned", 1, {"total": 5400, "step": "payment"}),
            ("anna", "page_viewed", 2, {}), ("anna", "page_viewed", 10, {}), ("anna", "page_viewed", 29, {}),
            # boris: a small cart 5 days ago, a big one 20 days ago; two views, one long ago
            ("boris", "cart_abandoned", 5, {"total": 900, "step": "delivery"}),
            ("boris", "cart_abandoned", 20, {"total": 12000}),
            ("boris", "page_viewed", 3, {}), ("boris", "page_viewed", 60, {}),
            # vera: a cart with a total written as text (not a number)
            ("vera", "cart_abandoned", 1, {"total": "много"}),
        ]
        out = events.record(conn, hub_db.settings, [
            events.Incoming(name=name, contact_id=ids[who], properties=props, occurred_at=ago(days))
            for who, name, days, props in history], api_key="tests", now=NOW)
        assert all(o.status == "stored" for o in out)
    return {k: v for k, v in ids.items() if v is not None}


def members(db: HubDB, rule: dict[str, Any]) -> set[int]:
    return probe_members(db, rule, NOW)


def named(people: dict[str, int], ids: set[int]) -> set[str]:
    return {k for k, v in people.items() if v in ids}


@pytest.mark.parametrize("rule, expected", [
    # had cart_abandoned within 7 days
    ({"field": "events.cart_abandoned.last_at", "op": "within_last", "value": "7d"}, {"anna", "boris", "vera"}),
    # had page_viewed at least 3 times in 30 days
    ({"field": "events.page_viewed.count.30d", "op": "gte", "value": 3}, {"anna"}),
    ({"field": "events.page_viewed.count", "op": "eq", "value": 2}, {"boris"}),
    # last cart_abandoned more than 2 days ago
    ({"field": "events.cart_abandoned.last_at", "op": "before", "value": "-2d"}, {"boris"}),
    # never had the event
    ({"field": "events.cart_abandoned.last_at", "op": "is_null"}, {"gleb"}),
    # had cart_abandoned with total >= 5000 within 14 days (text totals never pass)
    ({"field": "events.cart_abandoned.max.total.14d", "op": "gte", "value": 5000}, {"anna"}),
    ({"field": "events.cart_abandoned.max.total.30d", "op": "gte", "value": 5000}, {"anna", "boris"}),
    ({"field": "events.cart_abandoned.min.total.30d", "op": "lt", "value": 1000}, {"boris"}),
    # a property's value in the latest event
    ({"field": "events.cart_abandoned.last.step", "op": "eq", "value": "delivery"}, {"boris"}),
    ({"field": "events.cart_abandoned.last.total", "op": "eq", "value": "много"}, {"vera"}),
    ({"not": {"field": "events.cart_abandoned.last_at", "op": "within_last", "value": "3d"}}, {"boris", "gleb"}),
])
def test_rules_over_events(hub_db: HubDB, people: dict[str, int], rule: dict[str, Any], expected: set[str]) -> None:
    assert named(people, members(hub_db, rule)) == expected


def test_a_bad_event_name_or_window_is_refused_with_did_you_mean(hub_db: HubDB, people: dict[str, int]) -> None:
    with hub_db.engine.begin() as conn:
        registry = Segments(conn, hub_db.settings, now=NOW).registry
        with pytest.raises(RuleError) as typo:
            store.add(conn, registry, {"name": "x", "rule": {"field": "events.cart_abandonned.count", "op": "gte",
                                                             "value": 1}})
        with pytest.raises(RuleError) as window:
            store.add(conn, registry, {"name": "x", "rule": {"field": "events.page_viewed.count.30days",
                                                             "op": "gte", "value": 1}})
        with pytest.raises(RuleError) as op:
            store.add(conn, registry, {"name": "x", "rule": {"field": "events.page_viewed.last_at", "op": "gte",
                                                             "value": 1}})
    assert "did you mean 'cart_abandoned'?" in str(typo.value)
    assert "did you mean '30d'?" in str(window.value)
    assert "events.page_viewed.last_at" in str(op.value)


def test_a_name_first_received_now_is_usable_at_once(hub_db: HubDB, people: dict[str, int]) -> None:
    rule = {"field": "events.order_paid.count", "op": "gte", "value": 1}
    with pytest.raises(RuleError):
        members(hub_db, rule)
    with hub_db.engine.begin() as conn:
        events.record(conn, hub_db.settings, [events.Incoming(name="order_paid", contact_id=people["gleb"])],
                      api_key="tests")
    assert named(people, members(hub_db, rule)) == {"gleb"}


def test_explain_shows_the_value_seen(hub_db: HubDB, people: dict[str, int]) -> None:
    with hub_db.engine.begin() as conn:
        segments = Segments(conn, hub_db.settings, now=NOW)
        store.add(conn, segments.registry, {"name": "big_carts", "rule": {"all": [
            {"field": "events.cart_abandoned.max.total.14d", "op": "gte", "value": 5000},
            {"field": "events.page_viewed.count.30d", "op": "gte", "value": 3},
            {"field": "events.cart_abandoned.last_at", "op": "within_last", "value": "7d"}]}})
        segments = Segments(conn, hub_db.settings, now=NOW)
        anna = explain(segments, "big_carts", people["anna"])
        boris = explain(segments, "big_carts", people["boris"])
    assert anna["member"] is True
    seen = [(c["field"], c["seen"], c["passed"]) for c in anna["rule"]["items"]]
    assert seen[0][1:] == (5400, True) and seen[1][1:] == (3, True)
    assert dt.datetime.fromisoformat(seen[2][1]) == NOW - dt.timedelta(days=1)
    assert boris["member"] is False
    assert [(c["seen"], c["passed"]) for c in boris["rule"]["items"][:2]] == [(900, False), (1, False)]
