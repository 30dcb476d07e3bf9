"""How SQLite plans the statements a sync runs for every page or chunk.

Hub's SQLite databases carry no planner statistics (nothing runs ANALYZE), so
SQLite picks an index by the shape of the WHERE alone. Given an IN list of
ids and an equality on another indexed column, it starts from the equality:
refreshing the order stats of 5,000 contacts read every won order of the
base, and relinking a page's contacts to their companies read every
membership of the source, for every chunk, so a full sync grew with the
square of the portal's size. These tests pin the plans that start from the
ids, and the partial indexes (migration 0020) that the lookups must still use.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Callable

from sqlalchemy import Connection, event, insert, select

from hub import companies, identity
from hub.db import among
from hub.models import Activity, Company, CompanyMembership, Contact, ExternalRef, Order

orders_t = Order.__table__
activities_t = Activity.__table__
companies_t = Company.__table__
contacts_t = Contact.__table__
refs_t = ExternalRef.__table__
members_t = CompanyMembership.__table__
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


def _plans(conn: Connection, work: Callable[[], Any]) -> list[tuple[str, list[str]]]:
    """Each statement `work` runs on `conn` with its EXPLAIN QUERY PLAN lines."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        if not many:
            seen.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", record)
    try:
        work()
    finally:
        event.remove(conn, "before_cursor_execute", record)
    return [(sql, [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)])
            for sql, params in seen]


def _new(conn: Connection, statement: Any) -> int:
    key = conn.execute(statement).inserted_primary_key
    assert key is not None
    return int(key[0])


def _base(conn: Connection) -> tuple[list[int], list[int]]:
    """Forty contacts at four companies, each with won, lost and open deals, all from one source."""
    firms = [_new(conn, insert(companies_t).values(source="crm", external_id=f"F{i}", name=f"ООО {i}",
                                                   created_at=NOW, updated_at=NOW)) for i in range(4)]
    people = []
    for i in range(40):
        cid = _new(conn, insert(contacts_t).values(first_name=f"Имя{i}", created_at=NOW, updated_at=NOW))
        people.append(cid)
        conn.execute(insert(refs_t).values(source="crm", external_id=f"C{i}", contact_id=cid, created_at=NOW))
        conn.execute(insert(members_t).values(source="crm", contact_external_id=f"C{i}",
                                              company_external_id=f"F{i % 4}"))
        for n, status in enumerate(("won", "won", "lost", "open")):
            conn.execute(insert(orders_t).values(
                source="crm", external_id=f"D{i}-{n}", contact_external_id=f"C{i}", contact_id=cid,
                company_id=firms[i % 4], amount=Decimal(100 * (n + 1)), status=status,
                closed_at=NOW - dt.timedelta(days=n) if status != "open" else None, created_at=NOW, updated_at=NOW))
    return people, firms


def _searches(plans: list[tuple[str, list[str]]], table: str) -> list[str]:
    return [line for _sql, lines in plans for line in lines if line.startswith(("SEARCH " + table, "SCAN " + table))]


def test_contact_order_stats_are_read_by_contact_not_by_status(sqlite_db: Any) -> None:
    with sqlite_db.engine.begin() as conn:
        people, _firms = _base(conn)
        plans = _plans(conn, lambda: identity.refresh_stats(conn, people[:10]))
        orders = _searches(plans, "orders")
        assert orders and all("ix_orders_contact_id (contact_id=?)" in line for line in orders), orders
        row = conn.execute(select(contacts_t.c.orders_count, contacts_t.c.revenue, contacts_t.c.first_order_at,
                                  contacts_t.c.last_order_at).where(contacts_t.c.id == people[0])).one()
        # The two won deals only: the lost and the open one count for nothing.
        assert (row.orders_count, row.revenue) == (2, Decimal(300))
        assert (row.first_order_at, row.last_order_at) == (NOW - dt.timedelta(days=1), NOW)
        untouched = conn.execute(select(contacts_t.c.orders_count).where(contacts_t.c.id == people[10])).scalar()
        assert untouched == 0


def test_company_order_stats_are_read_by_company_not_by_status(sqlite_db: Any) -> None:
    with sqlite_db.engine.begin() as conn:
        _people, firms = _base(conn)
        plans = _plans(conn, lambda: companies.refresh_stats(conn, firms))
        orders = _searches(plans, "orders")
        assert orders and all("ix_orders_company_id (company_id=?)" in line for line in orders), orders
        counts = dict(conn.execute(select(companies_t.c.id, companies_t.c.orders_count)).all())
        assert counts == {firm: 20 for firm in firms}  # ten people a company, two won deals each


def test_relinking_starts_from_the_contacts_own_refs(sqlite_db: Any) -> None:
    with sqlite_db.engine.begin() as conn:
        people, firms = _base(conn)
        plans = _plans(conn, lambda: companies.relink(conn, people[:5], sources=["crm"]))
        joined = next(lines for sql, lines in plans if "company_memberships" in sql and sql.startswith("SELECT"))
        assert "ix_external_refs_contact_id" in joined[0], joined
        assert not any("company_memberships" in line and "(source=?)" in line for line in joined), joined
        links = companies.links_t
        got = dict(conn.execute(select(links.c.contact_id, links.c.company_id)).all())
        assert got == {cid: firms[i % 4] for i, cid in enumerate(people[:5])}
        companies.relink(conn, people[5:6], sources=["other"])  # another source's links: none made
        assert conn.execute(select(links.c.id).where(links.c.contact_id == people[5])).first() is None


def test_partial_indexes_serve_the_lookups_and_the_foreign_keys(sqlite_db: Any) -> None:
    with sqlite_db.engine.begin() as conn:
        _people, firms = _base(conn)
        conn.execute(insert(activities_t).values(source="crm", external_id="A1", kind="call", at=NOW,
                                                 order_external_id="D0-0", company_id=firms[0], created_at=NOW))
        conn.execute(insert(activities_t).values(source="crm", external_id="A2", kind="call", at=NOW,
                                                 created_at=NOW))

        def plan(statement: Any) -> str:
            compiled = statement.compile(conn)
            return " ".join(row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled),
                                                                   tuple(compiled.params.values())))

        o, a = orders_t.c, activities_t.c
        assert "ix_orders_promo_code" in plan(select(o.id).where(o.promo_code == "ВЕСНА-1"))
        assert "ix_orders_company_id" in plan(select(o.id).where(o.company_id == 1))
        assert "ix_activities_company_id" in plan(select(a.id).where(a.company_id == 1))
        assert "ix_activities_source_order_external_id" in plan(
            select(a.id).where(a.source == "crm", among(conn, a.order_external_id, ["D0-0", "D1-0"])))
        # ON DELETE SET NULL still reaches the rows that named the company, through the partial indexes.
        conn.execute(companies_t.delete().where(companies_t.c.id == firms[0]))
        assert conn.execute(select(a.company_id).where(a.external_id == "A1")).scalar() is None
        assert conn.execute(select(o.id).where(o.company_id == firms[0])).first() is None
        assert conn.execute(select(o.id).where(o.company_id == firms[1])).first() is not None


def test_activities_waiting_for_their_contact_are_found_through_the_partial_index(sqlite_db: Any) -> None:
    """Only an activity that came before its contact is in (source, contact_external_id) (migration 0022)."""
    from hub import activities

    with sqlite_db.engine.begin() as conn:
        people, _firms = _base(conn)
        conn.execute(insert(activities_t).values(source="crm", external_id="A1", kind="call", at=NOW,
                                                 contact_external_id="C1", contact_id=people[1], created_at=NOW))
        conn.execute(insert(activities_t).values(source="crm", external_id="A2", kind="call", at=NOW,
                                                 contact_external_id="C40", created_at=NOW))
        made = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = "
                                    "'ix_activities_source_contact_external_id'").scalar()
        assert made is not None and made.endswith("WHERE contact_id IS NULL"), made
        cid = _new(conn, insert(contacts_t).values(first_name="Новый", created_at=NOW, updated_at=NOW))
        conn.execute(insert(refs_t).values(source="crm", external_id="C40", contact_id=cid, created_at=NOW))
        plans = _plans(conn, lambda: activities.link_orphans(conn, {"crm": {"C40"}}))
        waiting = [line for sql, lines in plans if sql.startswith("SELECT") and "activities" in sql
                   and "orders" not in sql for line in lines if "activities" in line]
        assert waiting and "ix_activities_source_contact_external_id" in waiting[0], waiting
        a = activities_t.c
        assert conn.execute(select(a.contact_id).where(a.external_id == "A2")).scalar() == cid
