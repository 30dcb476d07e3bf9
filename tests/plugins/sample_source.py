"""A sample third-party source plugin: an in-memory "CRM" used to prove the sync engine.

It pages contacts and orders by a numeric cursor (the last id sent), can be
told to fail after a number of pages to simulate a killed run, and counts
reads so tests can check that a resumed run does not start over.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterator

from hub.hookspecs import hookimpl
from hub.records import ContactRecord, Deletion, OrderRecord
from hub.sync import Page

UTC = dt.timezone.utc


@dataclass
class FakeCRM:
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    deleted: list[tuple[str, int, int]] = field(default_factory=list)  # (entity, id, tick)
    tick: int = 0
    page_size: int = 3
    fail_after_pages: int | None = None
    pages_served: int = 0

    def touch(self) -> int:
        self.tick += 1
        return self.tick

    def add_contact(self, cid: int, **fields: Any) -> None:
        self.contacts[cid] = {**fields, "_tick": self.touch()}

    def add_order(self, oid: int, contact: int, amount: str, status: str = "won", days_ago: int = 10,
                  promo: str | None = None) -> None:
        closed = dt.datetime(2026, 11, 1, tzinfo=UTC) - dt.timedelta(days=days_ago)
        self.orders[oid] = {"contact": contact, "amount": amount, "status": status, "closed": closed,
                            "promo": promo, "_tick": self.touch()}

    def delete_contact(self, cid: int) -> None:
        self.contacts.pop(cid)
        self.deleted.append(("contact", cid, self.touch()))


CRM = FakeCRM()


class SampleSource:
    name = "sample"

    def __init__(self, crm: FakeCRM) -> None:
        self.crm = crm

    def entities(self) -> tuple[str, ...]:
        return ("contacts", "orders")

    def checkpoint(self, entity: str) -> str:
        return f"tick:{self.crm.tick}"

    def _serve(self) -> None:
        if self.crm.fail_after_pages is not None and self.crm.pages_served >= self.crm.fail_after_pages:
            raise ConnectionError("sample CRM went away")
        self.crm.pages_served += 1

    def read(self, entity: str, cursor: str | None, full: bool) -> Iterator[Page]:
        table = self.crm.contacts if entity == "contacts" else self.crm.orders
        if full:
            last = int(cursor or 0)
            ids = sorted(i for i in table if i > last)
            for start in range(0, len(ids), self.crm.page_size):
                part = ids[start:start + self.crm.page_size]
                self._serve()
                yield Page([self._record(entity, i, table[i]) for i in part], str(part[-1]))
            return
        since = int((cursor or "tick:0").split(":")[1])
        changed = sorted((row["_tick"], i) for i, row in table.items() if row["_tick"] > since)
        records: list[Any] = [self._record(entity, i, table[i]) for _, i in changed]
        if entity == "contacts":
            records += [Deletion("sample", "contact", str(i)) for _, i, t in self.crm.deleted if t > since]
        self._serve()
        yield Page(records, f"tick:{self.crm.tick}")

    def fetch(self, entity: str, ids: list[str]) -> list[Any]:
        table = self.crm.contacts if entity == "contacts" else self.crm.orders
        self._serve()
        return [self._record(entity, int(i), table[int(i)]) for i in ids if int(i) in table]

    def live_ids(self, entity: str) -> Iterator[list[str]]:
        table = self.crm.contacts if entity == "contacts" else self.crm.orders
        ids = sorted(table)
        for start in range(0, len(ids), self.crm.page_size):
            self._serve()
            yield [str(i) for i in ids[start:start + self.crm.page_size]]

    def _record(self, entity: str, i: int, row: dict[str, Any]) -> Any:
        if entity == "contacts":
            return ContactRecord(source="sample", external_id=str(i), first_name=row.get("first"),
                                 last_name=row.get("last"), phones=row.get("phones", []),
                                 emails=row.get("emails", []))
        return OrderRecord(source="sample", external_id=str(i), contact_external_id=str(row["contact"]),
                           amount=Decimal(row["amount"]), status=row["status"], closed_at=row["closed"],
                           promo_code=row["promo"])


@hookimpl
def register_sources(register: Any) -> None:
    register("sample", lambda settings: SampleSource(CRM))
