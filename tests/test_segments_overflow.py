"""A number no column can hold, typed into a segment rule, is refused in words, never a 500.

"1e999" used to reach the database: SQLite raised OverflowError binding it,
PostgreSQL NumericValueOutOfRange. The rule checker now knows each type's
limit (a BIGINT, Numeric(14, 2) for money) and names it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert

from hub.models import Company, Contact, ContactCompany, CustomField
from hub.records import ContactRecord
from hub.segments import crm_fields, store
from hub.segments.evaluate import Segments
from hub.segments.rules import RuleError
from hub.sync import Counts, write_contacts
from tests.conftest import HubDB
from tests.support.admin import AdminEnv, client_as, csrf_token

pytestmark = pytest.mark.both_databases  # each database fails its own way past the limit

HUGE_FIELDS = ["company.won_deals", "company.revenue", "calls.count.30d", "deals.open_count", "orders.count",
               "orders.revenue", "orders.avg", "deals.open_stuck_days", "crm.bitrix24.contact.UF_BUDGET"]
HUGE_VALUES = ["1e999", "-1e999", "9223372036854775808", "1" + "0" * 5000, "1e999999999"]


def seed(db: HubDB) -> int:
    """One buyer at a company, with a number custom field: every field above has something to compare."""
    with db.engine.begin() as conn:
        (anna,) = write_contacts(conn, [ContactRecord(source="shop", external_id="anna", emails=["anna@example.ru"])],
                                 db.settings, Counts()).contact_ids
        assert anna is not None
        contacts = Contact.__table__
        conn.execute(contacts.update().where(contacts.c.id == anna).values(
            orders_count=3, revenue=Decimal("4500.00"), attributes={"UF_BUDGET": 150000}))
        company = conn.execute(insert(Company.__table__).values(
            source="bitrix24", external_id="1", name="Ромашка", orders_count=5, revenue=Decimal("500000.00"))
            .returning(Company.__table__.c.id)).scalar_one()
        conn.execute(insert(ContactCompany.__table__).values(contact_id=anna, company_id=company, source="bitrix24"))
        conn.execute(insert(CustomField.__table__).values(source="bitrix24", entity="contact", code="UF_BUDGET",
                                                          name="Бюджет", type="number", multiple=False, options=[]))
    crm_fields.forget(db.settings)
    return anna


def cond(field: str, op: str, value: Any) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


def members(db: HubDB, rule: dict[str, Any]) -> list[int]:
    with db.engine.begin() as conn:
        segments = Segments(conn, db.settings)
        store.add(conn, segments.registry, {"name": "probe", "rule": rule})
        found = Segments(conn, db.settings).member_ids("probe")
        store.remove(conn, segments.registry, "probe")
    return found


def test_a_number_past_the_column_is_refused_by_the_rule_api(hub_db: HubDB) -> None:
    seed(hub_db)
    with hub_db.engine.begin() as conn:
        registry = Segments(conn, hub_db.settings).registry
        for field in HUGE_FIELDS:
            for value in HUGE_VALUES:
                for op, typed in (("gte", value), ("lt", value), ("in", [1, value])):
                    with pytest.raises(RuleError) as refused:
                        store.add(conn, registry, {"name": "x", "rule": cond(field, op, typed)})
                    words = str(refused.value)
                    assert "число слишком большое" in words, (field, op, value, words[:300])
                    assert len(words) < 500  # five thousand digits are quoted cut, not whole


def test_infinity_nan_and_too_fine_numbers_are_refused_too(hub_db: HubDB) -> None:
    seed(hub_db)
    with hub_db.engine.begin() as conn:
        registry = Segments(conn, hub_db.settings).registry
        for field in HUGE_FIELDS:
            for value in ("inf", "-Infinity", "nan", "sNaN", float("inf")):
                with pytest.raises(RuleError) as refused:
                    store.add(conn, registry, {"name": "x", "rule": cond(field, "gte", value)})
                assert "не число" in str(refused.value), (field, value, str(refused.value))
        with pytest.raises(RuleError) as fine:
            store.add(conn, registry, {"name": "x", "rule": cond("crm.bitrix24.contact.UF_BUDGET", "gt", "1e-999999")})
        assert "больше 15 цифр после запятой" in str(fine.value), str(fine.value)
        with pytest.raises(RuleError) as kopecks:
            store.add(conn, registry, {"name": "x", "rule": cond("company.revenue", "gt", "1e-999999")})
        assert "копейках" in str(kopecks.value)
        with pytest.raises(RuleError) as whole:
            store.add(conn, registry, {"name": "x", "rule": cond("orders.count", "gt", "1e-999999")})
        assert "не целое число" in str(whole.value)


def test_the_largest_value_each_column_holds_still_runs(hub_db: HubDB) -> None:
    anna = seed(hub_db)
    biggest = {"company.won_deals": 2 ** 63 - 1, "calls.count.30d": 2 ** 63 - 1, "deals.open_count": 2 ** 63 - 1,
               "orders.count": 2 ** 63 - 1, "company.revenue": "999999999999.99", "orders.revenue": "999999999999.99",
               "orders.avg": "999999999999.99",
               "crm.bitrix24.contact.UF_BUDGET": "999999999999999"}
    for field, value in biggest.items():
        assert members(hub_db, cond(field, "gte", value)) == [], field
        assert members(hub_db, cond(field, "lte", value)) == [anna], field
        assert members(hub_db, cond(field, "gt", f"-{value}")) == [anna], field
        assert members(hub_db, cond(field, "gt", value)) == [], field
        assert members(hub_db, cond(field, "in", [value, f"-{value}"])) == [], field
    assert members(hub_db, cond("company.won_deals", "gte", "5")) == [anna]  # an ordinary rule is unchanged


def test_admin_check_answers_a_huge_number_with_the_problem_not_a_500(admin_env: AdminEnv) -> None:
    seed(admin_env.db)
    marketer = client_as(admin_env, "marketer")
    token = csrf_token(marketer, "/segments/new")
    for field in HUGE_FIELDS:
        for value in ('"1e999"', "1.0e999", "-9223372036854775809", '"' + "9" * 5_000 + '"'):
            answer = marketer.post("/segments/check", headers={"X-CSRFToken": token}, json={
                "document": f"name: big\nrule: {{field: {field}, op: gte, value: {value}}}\n"})
            assert answer.status_code < 500, (field, value)
            body = answer.get_json()
            assert body["ok"] is False, (field, value, body)
            problem = " ".join(body["problems"])
            assert "rule.value" in problem and ("число слишком большое" in problem or "не число" in problem), \
                (field, value, problem[:300])
            assert len(problem) < 500
    good = marketer.post("/segments/check", headers={"X-CSRFToken": token}, json={
        "document": "name: big\nrule: {field: company.revenue, op: lte, value: 999999999999.99}\n"}).get_json()
    assert good["ok"] is True and good["count"] == 1, good
