"""Two requests at once: the same new person is one contact, and overlapping batches never deadlock.

SQLite writers are one at a time (BEGIN IMMEDIATE), so the races are real
only on PostgreSQL; both databases run them. On PostgreSQL both threads are
inside their transactions when they start writing (a barrier), which is
where the races were: two requests both found nobody and made two contacts,
the second without its identifier; two batches locking rows in opposite
orders waited on each other in a circle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from hub import events
from hub.records import ContactRecord, OrderRecord
from hub.sync import Counts, write_contacts, write_orders
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases

ROUNDS = 12


def race(db: HubDB, work: Callable[[Any, str], Any]) -> dict[str, Any]:
    """Run work(conn, name) for "A" and "B" at once, each in its own transaction; what each returned or raised."""
    results: dict[str, Any] = {}
    barrier = threading.Barrier(2)
    inside = db.dialect == "postgresql"  # SQLite's second BEGIN IMMEDIATE waits for the first commit

    def go(name: str) -> None:
        try:
            if not inside:
                barrier.wait()
            with db.engine.begin() as conn:
                if inside:
                    barrier.wait()
                results[name] = work(conn, name)
        except Exception as exc:  # noqa: BLE001 - the test reports what went wrong in the thread
            results[name] = exc

    threads = [threading.Thread(target=go, args=(name,)) for name in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, result in results.items():
        assert not isinstance(result, Exception), f"{name}: {result!r}"
    return results


def holders(db: HubDB, value: str) -> list[int]:
    with db.engine.connect() as conn:
        return list(conn.execute(text("SELECT DISTINCT contact_id FROM contact_identities WHERE value = :v"),
                                 {"v": value}).scalars())


def bare_contacts(db: HubDB) -> int:
    """Contacts holding no phone, email or reference: what the lost race left behind."""
    with db.engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM contacts c WHERE NOT EXISTS (SELECT 1 FROM contact_identities i "
            "WHERE i.contact_id = c.id) AND NOT EXISTS (SELECT 1 FROM external_refs r WHERE r.contact_id = c.id)"
        )).scalar_one())


def test_the_same_new_phone_twice_at_once_is_one_contact(hub_db: HubDB) -> None:
    for n in range(ROUNDS):
        phone = f"+7916000{n:04d}"

        def write(conn: Any, name: str, phone: str = phone) -> Any:
            record = ContactRecord(source="api", external_id=None, first_name="Пётр", phones=[phone])
            return write_contacts(conn, [record], hub_db.settings, Counts()).contact_ids[0]

        results = race(hub_db, write)
        assert holders(hub_db, phone) == [results["A"]] == [results["B"]]
    assert bare_contacts(hub_db) == 0


def test_the_same_new_email_in_two_events_at_once_is_one_contact(hub_db: HubDB) -> None:
    for n in range(ROUNDS):
        email = f"new{n}@mail.ru"

        def send(conn: Any, name: str, email: str = email, n: int = n) -> Any:
            (out,) = events.record(conn, hub_db.settings, [events.Incoming(name="cart_abandoned", email=email,
                                                                            uid=f"{name}-{n}")], api_key=name)
            assert out.status == "stored", out.problems
            return conn.execute(text("SELECT contact_id FROM events WHERE id = :i"), {"i": out.event_id}).scalar()

        results = race(hub_db, send)
        assert holders(hub_db, email) == [results["A"]] == [results["B"]]
    assert bare_contacts(hub_db) == 0


def test_overlapping_event_batches_in_opposite_orders_do_not_deadlock(hub_db: HubDB) -> None:
    with hub_db.engine.begin() as conn:
        (cid,) = write_contacts(conn, [ContactRecord(source="shop", external_id="1", emails=["iya@mail.ru"])],
                                hub_db.settings, Counts()).contact_ids
    for n in range(3):
        uids = [f"r{n}-{i:04d}" for i in range(400)]

        def send(conn: Any, name: str, uids: list[str] = uids) -> int:
            order = uids if name == "A" else uids[::-1]
            out = events.record(conn, hub_db.settings, [events.Incoming(name="page_viewed", contact_id=cid, uid=u)
                                                        for u in order], api_key=name)
            return sum(o.status == "stored" for o in out)

        results = race(hub_db, send)
        assert results["A"] + results["B"] == len(uids)


def test_overlapping_order_batches_in_opposite_orders_do_not_deadlock(hub_db: HubDB) -> None:
    for n in range(3):
        keys = [f"o{n}-{i:04d}" for i in range(400)]

        def write(conn: Any, name: str, keys: list[str] = keys) -> None:
            order = keys if name == "A" else keys[::-1]
            write_orders(conn, [OrderRecord("shop", k, None, Decimal(100 + len(name)), status="won") for k in order],
                         Counts(), hub_db.settings)

        race(hub_db, write)
        with hub_db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM orders WHERE external_id LIKE :p"),
                                {"p": f"o{n}-%"}).scalar_one() == len(keys)
