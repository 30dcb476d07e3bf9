"""Random contacts, orders and consent, random rules: compiled SQL must agree with the plain-Python reference.

Runs on SQLite and on PostgreSQL (the hub_db fixture). Data is drawn around the
edges that break segment engines: ties between consent answers given at the
same moment, orders exactly 90 or 365 days old, birthdays on 29 February and
across the new year, money in kopecks, names differing only in case, and
substrings with LIKE's own wildcards in them. Order statistics come from the
core's own refresh_stats, so the reference (which works them out from the
orders) checks them too, and lead scores are compared as well.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from hub import consent as ledger, identity
from hub.db import bulk_insert
from hub.models import ConsentEvent, ConsentState, Contact, LeadScore, Order, Segment, SegmentMember
from hub.segments import fields, scoring, store
from hub.segments.compile import compiler_for
from hub.segments.lifecycle import STAGES
from hub.segments.reference import Reference, Snapshot
from hub.segments.rules import Parser
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases  # segments compile to each dialect's SQL

UTC = dt.timezone.utc
# Moments chosen for their edges: a year's end, a non-leap and a leap February
# (the first is already the next day in Moscow), an ordinary day.
NOWS = [dt.datetime(2025, 12, 28, 9, 0, tzinfo=UTC), dt.datetime(2023, 2, 27, 21, 30, tzinfo=UTC),
        dt.datetime(2024, 2, 27, 12, 0, tzinfo=UTC), dt.datetime(2025, 6, 1, 12, 0, tzinfo=UTC)]
DAYS = [0, 1, 29, 30, 31, 89, 90, 91, 179, 180, 181, 364, 365, 366, 700, -3]
NAMES = ["Анна", "анна", "Олег", "Ёлка", "ann_%x", None]
CITIES = ["Москва", "москва", "МОСКВА-2", "Санкт-Петербург", "Тула", None]
SOURCES = ["vk", "instagram", "site", None]
TAGS = ["vip", "decision-maker", "opt-out-city", "email-bounced"]
AMOUNTS = [Decimal(x) for x in ("0.10", "0.20", "33.33", "100", "199.99", "1000.01", "50000", "100000")]
MONEY_VALUES = ["0", "0.1", "0.3", "33.33", "50.05", "100", "199.99", "1000", "100000"]
BIRTHDAYS = [dt.date(1992, 2, 29), dt.date(1990, 2, 28), dt.date(1991, 3, 1), dt.date(1980, 12, 31),
             dt.date(1985, 1, 1), dt.date(1999, 1, 3), dt.date(2024, 6, 3), dt.date(2025, 12, 30), None]
CHANNELS, PURPOSES = ["email", "sms"], ["marketing", "news"]
RELATIVE = ["-0d", "-1d", "-30d", "-90d", "-13w", "-3m", "-6m", "-1y", "+7d", "+1m", "-30y"]
SPANS = ["0d", "1d", "3d", "7d", "2w", "1m", "6m", "1y", "40y"]
ABSOLUTE = ["2023-02-28", "2024-02-29", "2025-01-01", "2025-06-01", "1990-01-01"]

FIELDS = ["contact.first_name", "contact.city", "contact.source", "contact.birthday", "contact.created_at",
          "contact.tags", "contact.gender", "contact.lifecycle", "contact.lead_score", "orders.count",
          "orders.revenue", "orders.first_at", "orders.last_at"] + [
    f"consent.{ch}.{p}" for ch in CHANNELS for p in PURPOSES]
# The test's own segments, so rules can reference saved segments as well as built-in ones.
LIBRARY = {
    "buyers_in_moscow": {"all": [{"field": "orders.count", "op": "gte", "value": 1},
                                 {"field": "contact.city", "op": "eq", "value": "Москва"}]},
    "no_email": {"not": {"field": "consent.email.marketing", "op": "eq", "value": "granted"}},
    "nested": {"any": [{"segment": "buyers_in_moscow"}, {"segment": "dormant_90d"}]},
}


def conditions() -> st.SearchStrategy[dict[str, Any]]:
    text_field = st.sampled_from(["contact.first_name", "contact.city", "contact.source"])
    texts = st.sampled_from([n for n in NAMES + CITIES + SOURCES if n])
    substrings = st.sampled_from(["анн", "АН", "моск", "МОСКВА", "_%", "%", "_", "ёл", "a"])
    number_field = st.sampled_from(["orders.count", "contact.lead_score"])
    money_field = st.sampled_from(["orders.revenue", "orders.avg"])
    time_field = st.sampled_from(["contact.created_at", "orders.first_at", "orders.last_at"])
    compare = st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"])
    consent_field = st.builds(lambda ch, p: f"consent.{ch}.{p}", st.sampled_from(CHANNELS[:1] * 3 + CHANNELS),
                              st.sampled_from(PURPOSES[:1] * 3 + PURPOSES))
    states = st.sampled_from(["granted", "withdrawn", "pending", "none"])

    def cond(field: Any, op: Any, value: Any = None) -> st.SearchStrategy[dict[str, Any]]:
        base = {"field": field, "op": op}
        return st.fixed_dictionaries({**base, "value": value} if value is not None else base)

    return st.one_of(
        cond(text_field, st.sampled_from(["eq", "ne"]), texts),
        cond(text_field, st.sampled_from(["in", "not_in"]), st.lists(texts, min_size=1, max_size=3)),
        cond(text_field, st.just("matches"), substrings),
        cond(st.sampled_from(["contact.city", "contact.source", "contact.birthday", "orders.last_at", "orders.avg"]),
             st.sampled_from(["is_null", "not_null"])),
        cond(number_field, compare, st.integers(-20, 50)),
        cond(st.just("orders.count"), st.sampled_from(["in", "not_in"]), st.lists(st.integers(0, 4), min_size=1)),
        cond(money_field, compare, st.sampled_from(MONEY_VALUES)),
        cond(money_field, st.sampled_from(["in", "not_in"]), st.lists(st.sampled_from(MONEY_VALUES), min_size=1)),
        cond(time_field, st.sampled_from(["before", "after"]), st.sampled_from(RELATIVE + ABSOLUTE)),
        cond(time_field, st.just("within_last"), st.sampled_from(SPANS)),
        cond(st.just("contact.birthday"), st.sampled_from(["before", "after"]), st.sampled_from(RELATIVE + ABSOLUTE)),
        cond(st.just("contact.birthday"), st.sampled_from(["within_last", "birthday_within"]), st.sampled_from(SPANS)),
        cond(st.just("contact.tags"), st.just("contains"), st.sampled_from(TAGS)),
        cond(st.just("contact.lifecycle"), st.sampled_from(["eq", "ne"]), st.sampled_from(STAGES)),
        cond(st.just("contact.lifecycle"), st.sampled_from(["in", "not_in"]),
             st.lists(st.sampled_from(STAGES), min_size=1, max_size=3)),
        cond(consent_field, st.sampled_from(["eq", "ne"]), states),
        cond(consent_field, st.sampled_from(["in", "not_in"]), st.lists(states, min_size=1, max_size=3)),
        cond(st.just("contact.gender"), st.sampled_from(["eq", "ne"]), st.sampled_from(["m", "f"])),
        st.builds(lambda name: {"segment": name},
                  st.sampled_from(sorted(LIBRARY) + ["dormant_90d", "vip", "birthday_7d", "never_bought"])),
    )


rules = st.recursive(
    conditions(),
    lambda inner: st.one_of(
        st.builds(lambda items: {"all": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"any": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda item: {"not": item}, inner),
    ),
    max_leaves=6,
)


@st.composite
def bases(draw: st.DrawFn) -> dict[str, Any]:
    now = draw(st.sampled_from(NOWS))
    contacts, orders, events = [], [], []
    for cid in range(1, draw(st.integers(0, 30)) + 1):
        contacts.append({
            "id": cid, "first_name": draw(st.sampled_from(NAMES)), "city": draw(st.sampled_from(CITIES)),
            "gender": draw(st.sampled_from(["m", "f", None])), "birthday": draw(st.sampled_from(BIRTHDAYS)),
            "tags": draw(st.lists(st.sampled_from(TAGS), unique=True, max_size=2)),
            "attributes": {"lead_source": s} if (s := draw(st.sampled_from(SOURCES))) else {},
            "created_at": now - dt.timedelta(days=draw(st.sampled_from(DAYS[:-1])), hours=draw(st.integers(0, 23))),
            "deleted_at": now if draw(st.integers(0, 9)) == 0 else None,
        })
        for _ in range(draw(st.integers(0, 4))):
            closed = draw(st.one_of(st.none(), st.sampled_from(DAYS)))
            orders.append({"contact_id": cid, "status": draw(st.sampled_from(["won", "won", "lost", "open"])),
                           "amount": draw(st.sampled_from(AMOUNTS)),
                           "closed_at": None if closed is None else now - dt.timedelta(days=closed)})
        for _ in range(draw(st.integers(0, 3))):
            # mostly email marketing, so one contact's answers to the same question compete
            events.append({"contact_id": cid, "channel": draw(st.sampled_from(CHANNELS[:1] * 3 + CHANNELS)),
                           "purpose": draw(st.sampled_from(PURPOSES[:1] * 3 + PURPOSES)),
                           "status": draw(st.sampled_from(["granted", "withdrawn", "pending"])),
                           # few distinct moments, so answers given at the same time happen
                           "at": now - dt.timedelta(days=draw(st.sampled_from([1, 400])))})
    return {"now": now, "contacts": contacts, "orders": draw(st.permutations(orders)),
            "events": draw(st.permutations(events))}


def load(db: HubDB, base: dict[str, Any]) -> Snapshot:
    """Replace the database's contents with the drawn base; returns the reference's view of it."""
    now = base["now"]
    with db.engine.begin() as conn:
        for model in (SegmentMember, Segment, LeadScore, ConsentState, ConsentEvent, Order, Contact):
            conn.execute(delete(model.__table__))
        rows = [{**c, "provenance": {}, "orders_count": 0, "revenue": Decimal(0), "updated_at": now}
                for c in base["contacts"]]
        bulk_insert(conn, Contact.__table__, rows)
        orders = [{**o, "source": "crm", "external_id": str(i), "currency": "RUB", "created_at": now,
                   "updated_at": now} for i, o in enumerate(base["orders"], 1)]
        bulk_insert(conn, Order.__table__, orders)
        events = [{**e, "id": i, "source": "test", "evidence": {}} for i, e in enumerate(base["events"], 1)]
        bulk_insert(conn, ConsentEvent.__table__, events)
        ledger.rebuild_states(conn)  # written past hub.consent.record
        identity.refresh_stats(conn, [c["id"] for c in base["contacts"]])
    contacts = {c["id"]: c for c in base["contacts"]}
    by_contact: dict[int, list[dict[str, Any]]] = {}
    for o in base["orders"]:
        by_contact.setdefault(o["contact_id"], []).append(o)
    consent: dict[int, list[dict[str, Any]]] = {}
    for i, e in enumerate(base["events"], 1):
        consent.setdefault(e["contact_id"], []).append({**e, "id": i})
    return Snapshot(contacts, by_contact, consent)


@settings(max_examples=50, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(base=bases(), drawn=st.lists(rules, min_size=5, max_size=20))
def test_compiled_rules_agree_with_the_reference(hub_db: HubDB, base: dict[str, Any],
                                                 drawn: list[dict[str, Any]]) -> None:
    snapshot = load(hub_db, base)
    registry = fields.build(hub_db.settings)
    definitions = {name: store.parse(doc, registry, builtin=True) for name, doc in store.builtin_documents().items()}
    for name, rule in LIBRARY.items():
        definitions[name] = store.parse({"name": name, "rule": rule}, registry)
    now = base["now"]
    with hub_db.engine.begin() as conn:
        compiler = compiler_for(conn, registry, now=now, segments=definitions)
        model = scoring.load_model(registry, definitions)
        scoring.refresh(conn, compiler, model, at=now)
        stored = dict(conn.execute(select(LeadScore.__table__.c.contact_id, LeadScore.__table__.c.score)).all())
    reference = Reference(snapshot, registry, now=now, segments=definitions)
    live = [cid for cid, c in snapshot.contacts.items() if c["deleted_at"] is None]
    assert stored == {cid: reference.score(model, cid) for cid in live}
    snapshot.scores = stored
    with hub_db.engine.connect() as conn:
        compiler = compiler_for(conn, registry, now=now, segments=definitions)
        for name in FIELDS:  # the values explain shows
            field = registry.resolve(name)
            seen = dict(conn.execute(select(Contact.__table__.c.id, compiler.value(field))).all())
            assert seen == {cid: reference.value(field, cid) for cid in snapshot.contacts}, name
        for rule in drawn:
            parser = Parser(registry)
            node = parser.rule(rule, "rule")
            assert node is not None and not parser.problems, parser.problems
            got = set(conn.execute(compiler.members(node)).scalars())
            assert got == reference.members(node), rule
