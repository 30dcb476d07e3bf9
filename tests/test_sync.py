"""The sync engine, driven by the sample source plugin in tests/plugins/."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from hub import contacts, sync
from hub.hookspecs import hookimpl
from hub.models import Contact, ContactIdentity, ExternalRef, Order, SyncRun, SyncState
from tests.conftest import HubDB
from tests.plugins import sample_source
from tests.plugins.sample_source import FakeCRM

pytestmark = pytest.mark.both_databases  # sync upserts


@pytest.fixture
def crm(plugin_manager) -> FakeCRM:
    # hook:register_sources
    fresh = FakeCRM()
    sample_source.CRM = fresh
    plugin_manager.register(sample_source)
    for i in range(1, 11):
        fresh.add_contact(i, first=f"Имя{i}", last="Тестов", phones=[f"8 916 000-00-{i:02d}"])
    fresh.add_contact(11, first="Дубль", phones=["+7 916 000 00 01"], emails=["Dup@Mail.ru"])
    fresh.add_order(1, contact=1, amount="1500.50")
    fresh.add_order(2, contact=1, amount="999", days_ago=100)
    fresh.add_order(3, contact=2, amount="500", status="lost")
    fresh.add_order(4, contact=99, amount="700")  # its contact arrives later
    return fresh


def count(db: HubDB, model) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def test_full_sync_brings_contacts_and_orders_with_stats(hub_db: HubDB, crm: FakeCRM) -> None:
    report = sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    assert report.counts.contacts["created"] == 10  # contact 11 shares a phone with contact 1
    assert report.counts.orders["created"] == 4
    with hub_db.engine.connect() as conn:
        first = conn.execute(select(ExternalRef.contact_id).where(ExternalRef.external_id == "1")).scalar_one()
        (card,) = contacts.iter_contacts(conn, ids=[first])
        run = conn.execute(select(SyncRun.status, SyncRun.counts)).one()
    assert card["orders_count"] == 2 and card["revenue"] == pytest.approx(2499.50)
    assert card["emails"] == ["dup@mail.ru"]
    assert {r["id"] for r in card["external_refs"]} == {"1", "11"}
    assert run.status == "ok" and run.counts["contacts"]["created"] == 10


def test_an_order_before_its_contact_links_when_the_contact_arrives(hub_db: HubDB, crm: FakeCRM) -> None:
    sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(Order.contact_id).where(Order.external_id == "4")).scalar_one() is None
    crm.add_contact(99, first="Поздний", phones=["+79169990099"])
    sync.run(hub_db.engine, hub_db.settings, "sample")
    with hub_db.engine.connect() as conn:
        owner = conn.execute(select(Order.contact_id).where(Order.external_id == "4")).scalar_one()
        stats = conn.execute(select(Contact.orders_count, Contact.revenue).where(Contact.id == owner)).one()
    assert owner is not None and stats.orders_count == 1 and stats.revenue == Decimal("700")


def test_killed_full_sync_resumes_from_the_last_page_without_duplicates(hub_db: HubDB, crm: FakeCRM) -> None:
    crm.fail_after_pages = 2
    with pytest.raises(sync.SyncError, match="sample CRM went away"):
        sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    assert count(hub_db, ExternalRef) == 6  # two pages of three were committed
    with hub_db.engine.connect() as conn:
        failed = conn.execute(select(SyncRun.status, SyncRun.error)).one()
    assert failed.status == "failed" and "went away" in failed.error
    crm.fail_after_pages = None
    served_before = crm.pages_served
    report = sync.run(hub_db.engine, hub_db.settings, "sample")
    # It went on from contact 7, not from the start: 2 more contact pages, 2 order pages.
    assert crm.pages_served - served_before == 4
    assert report.counts.contacts["created"] == 4
    assert count(hub_db, ExternalRef) == 11
    assert count(hub_db, Contact) == 10
    assert count(hub_db, Order) == 4
    with hub_db.engine.connect() as conn:
        phones = conn.execute(select(ContactIdentity.value).where(ContactIdentity.kind == "phone")).scalars().all()
    assert len(phones) == len(set(phones)) == 10


def stats_of(hub_db: HubDB, external_id: str) -> tuple[int, Decimal]:
    with hub_db.engine.connect() as conn:
        cid = conn.execute(select(ExternalRef.contact_id).where(ExternalRef.external_id == external_id)).scalar_one()
        row = conn.execute(select(Contact.orders_count, Contact.revenue).where(Contact.id == cid)).one()
    return row.orders_count, row.revenue


def test_order_stats_are_right_after_a_full_sync_killed_among_the_orders(hub_db: HubDB, crm: FakeCRM) -> None:
    crm.fail_after_pages = 5  # four pages of contacts, then one of orders
    with pytest.raises(sync.SyncError):
        sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    assert count(hub_db, Order) == 3
    crm.fail_after_pages = None
    sync.run(hub_db.engine, hub_db.settings, "sample")
    assert stats_of(hub_db, "1") == (2, Decimal("2499.50"))


def test_a_full_sync_takes_stats_away_from_whom_a_deal_left(hub_db: HubDB, crm: FakeCRM) -> None:
    sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    assert stats_of(hub_db, "1") == (2, Decimal("2499.50"))
    for order in crm.orders.values():
        if order["contact"] == 1:
            order["contact"] = 3
    sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    assert stats_of(hub_db, "1") == (0, Decimal(0))
    assert stats_of(hub_db, "3") == (2, Decimal("2499.50"))


def test_incremental_sync_reads_only_changes_and_marks_deletions(hub_db: HubDB, crm: FakeCRM) -> None:
    sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    crm.add_contact(5, first="Изменён", last="Тестов", phones=["8 916 000-00-05"])
    crm.delete_contact(3)
    report = sync.run(hub_db.engine, hub_db.settings, "sample")
    assert report.kind == "incremental"
    assert report.counts.contacts == {"created": 0, "updated": 1, "deleted": 1, "merged": 0, "refused": 0}
    with hub_db.engine.connect() as conn:
        gone = conn.execute(
            select(Contact.deleted_at).join(ExternalRef).where(ExternalRef.external_id == "3")).scalar_one()
        state = conn.execute(select(SyncState.cursor).where(SyncState.entity == "contacts")).scalar_one()
        listed = list(contacts.iter_contacts(conn))
    assert gone is not None
    assert state == f"tick:{crm.tick}"
    assert len(listed) == 9 and "Изменён" in {c["first_name"] for c in listed}


def test_plugins_hear_about_every_committed_chunk(hub_db: HubDB, crm: FakeCRM, plugin_manager) -> None:
    # hook:contact_synced
    heard: list[tuple[str, list[int], list[int]]] = []

    class Listener:
        @hookimpl
        def contact_synced(self, source: str, contact_ids: list[int], created_ids: list[int]) -> None:
            heard.append((source, contact_ids, created_ids))

    plugin_manager.register(Listener())
    sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    assert [h[0] for h in heard] == ["sample"] * 4  # 11 contacts in pages of 3
    assert sum(len(h[2]) for h in heard) == 10


def test_unknown_source_names_the_available_ones(hub_db: HubDB, crm: FakeCRM) -> None:
    with pytest.raises(sync.SyncError, match="неизвестный источник 'nope' \\(доступны: sample\\)"):
        sync.run(hub_db.engine, hub_db.settings, "nope")


def test_bad_order_is_reported_and_the_rest_kept(hub_db: HubDB, crm: FakeCRM) -> None:
    crm.add_order(5, contact=1, amount="10", status="maybe")
    report = sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    assert report.counts.orders["created"] == 4
    assert report.counts.errors == [
        {"entity": "order", "id": "5", "error": "status 'maybe' is not one of won, lost, open"}]


def test_a_targeted_fetch_writes_current_state_and_treats_missing_ids_as_deleted(hub_db: HubDB, crm: FakeCRM) -> None:
    sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    crm.contacts[3]["emails"] = ["new@mail.ru"]
    crm.contacts.pop(4)  # deleted, and the delete event arrives before any update event
    report = sync.fetch(hub_db.engine, hub_db.settings, "sample", "contacts", ["3", "4", "3"])
    assert report.counts.contacts["deleted"] == 1 and report.kind == "event"
    with hub_db.engine.connect() as conn:
        owner = conn.execute(select(ExternalRef.contact_id).where(ExternalRef.external_id == "3")).scalar_one()
        (card,) = contacts.iter_contacts(conn, ids=[owner])
        gone = conn.execute(select(Contact.deleted_at).join(ExternalRef, ExternalRef.contact_id == Contact.id)
                            .where(ExternalRef.external_id == "4")).scalar_one()
    assert card["emails"] == ["new@mail.ru"] and gone is not None


def test_reconcile_marks_what_the_source_no_longer_lists(hub_db: HubDB, crm: FakeCRM) -> None:
    sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    crm.contacts.pop(5)
    crm.orders.pop(3)
    report = sync.reconcile(hub_db.engine, hub_db.settings, "sample")
    assert report.counts.contacts["deleted"] == 1 and report.counts.orders["deleted"] == 1
    assert sync.reconcile(hub_db.engine, hub_db.settings, "sample").counts.contacts["deleted"] == 0


def test_reconcile_refuses_to_believe_a_source_that_suddenly_lists_nothing(hub_db: HubDB, crm: FakeCRM) -> None:
    sync.run(hub_db.engine, hub_db.settings, "sample", full=True)
    crm.contacts.clear()
    with pytest.raises(sync.SyncError, match="не отдаёт ни одной записи contacts"):
        sync.reconcile(hub_db.engine, hub_db.settings, "sample")
    with hub_db.engine.connect() as conn:
        deleted = select(func.count()).select_from(Contact).where(Contact.deleted_at.is_not(None))
        assert conn.execute(deleted).scalar() == 0
