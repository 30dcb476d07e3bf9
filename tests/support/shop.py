"""A shop of customers to run workflows on, and the moves workflow tests make: enable, start, read the runs.

Shared by the workflow tests (in-process, on RQ, NPS, promo codes, on a CRM) and the
public pages' tests that need a workflow running.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

import plugins.mailing
import workflows
from hub import consent, sync
from hub.config import load_settings
from hub.models import Contact, ExternalRef
from hub.records import ContactRecord, OrderRecord
from tests.conftest import HubDB
from tests.support.cli import cli
from workflows import store, ticks, triggers
from workflows.models import WorkflowRow, WorkflowRun


@dataclass
class Person:
    key: str
    first: str
    phone: str | None = None
    email: str | None = None
    bought_days_ago: int | None = 120  # the last won order, counted back from `now`
    consent: tuple[str, ...] = ("email", "sms")  # channels with marketing consent granted
    timezone: str | None = None


SHOP = [
    Person("anna", "Анна", "+74951110001", "anna@example.ru"),
    Person("boris", "Борис", "+74951110002", "boris@example.ru", consent=()),           # no consent
    Person("vera", "Вера", "+74951110003", "vera@example.ru", bought_days_ago=20),      # bought lately
    Person("gleb", "Глеб", "+74951110004", "gleb@example.ru"),
    Person("dina", "Дина", None, "dina@example.ru", consent=("email",)),
    Person("egor", "Егор", "+74951110006", "egor@example.ru", bought_days_ago=None),   # never bought
    Person("zoya", "Зоя", "+74951110007", "zoya@example.ru"),
    Person("ivan", "Иван", "+74951110008", "ivan@example.ru"),
]


def make_shop(db: HubDB, people: list[Person], *, now: dt.datetime) -> dict[str, int]:
    """Contacts with a won order and marketing consent as each Person says; returns key → contact id."""
    records = [ContactRecord(source="shop", external_id=p.key, first_name=p.first, last_name="Тестова",
                             phones=[p.phone] if p.phone else [], emails=[p.email] if p.email else [])
               for p in people]
    orders = [OrderRecord(source="shop", external_id=f"order-{p.key}", contact_external_id=p.key,
                          amount=Decimal("2500"), status="won",
                          closed_at=now - dt.timedelta(days=p.bought_days_ago),
                          created_at=now - dt.timedelta(days=p.bought_days_ago + 1))
              for p in people if p.bought_days_ago is not None]
    with db.engine.begin() as conn:
        counts = sync.Counts()
        sync.write_contacts(conn, records, db.settings, counts)
        sync.write_orders(conn, orders, counts)
        ids = dict(conn.execute(select(ExternalRef.external_id, ExternalRef.contact_id)
                                .where(ExternalRef.source == "shop")).all())
        for p in people:
            for channel in p.consent:
                consent.record(conn, ids[p.key], channel, "marketing", "granted", source="test")
            if p.timezone:
                conn.execute(update(Contact).where(Contact.id == ids[p.key]).values(timezone=p.timezone))
    return {p.key: ids[p.key] for p in people}


def add_order(db: HubDB, key: str, *, closed_at: dt.datetime, amount: str = "1800", promo: str | None = None,
              status: str = "won", order_id: str | None = None) -> None:
    with db.engine.begin() as conn:
        sync.write_orders(conn, [OrderRecord(source="shop", external_id=order_id or f"new-{key}",
                                             contact_external_id=key,
                                             amount=Decimal(amount), status=status, closed_at=closed_at,
                                             created_at=closed_at, promo_code=promo)], sync.Counts())


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def runs_of(db: HubDB, name: str) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(WorkflowRun).join(WorkflowRow, WorkflowRow.id == WorkflowRun.workflow_id)
                                 .where(WorkflowRow.name == name).order_by(WorkflowRun.contact_id)))


def use_workflows(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    """Hub with the mailing and workflows plugins, SMS quiet hours off (tests of them switch them on)."""
    monkeypatch.setenv("HUB_QUIET_HOURS_SMS", "none")
    plugin_manager.register(plugins.mailing, name="mailing")
    plugin_manager.register(workflows, name="workflows")
    workflows.register_commands(cli)
    return replace(hub_db, settings=load_settings())


def enable(db: HubDB, name: str, now: dt.datetime | None = None) -> None:
    with db.engine.begin() as conn:
        store.install_library(conn)
        store.set_enabled(conn, name, True, now=now)


def start(db: HubDB, name: str, now: dt.datetime) -> triggers.StartReport:
    """What `hub workflows run NAME` does, at a chosen moment: start entrants, then do what is due."""
    with db.engine.begin() as conn:
        store.install_library(conn)
    with db.engine.connect() as conn:
        row, workflow = store.current(conn, db.settings, name)
    report = triggers.fire(db.engine, db.settings, row, workflow, now=now, manual=True)
    ticks.advance_due(db.engine, db.settings, now=now, workflow_id=row.id)
    return report
