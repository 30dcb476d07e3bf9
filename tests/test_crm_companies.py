"""Companies from a CRM: stored once, linked to their people and deals whichever arrives first, counted,
deleted, reconciled; a company's own line never makes two colleagues one person; merges, unmerges and
erasure carry the links."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Iterator, Sequence

import pytest
from sqlalchemy import select

from hub import companies, identity, sync, unmerge
from hub.commands.sync import progress_label, summary
from hub.i18n import use_language
from hub.models import Company, CompanyMembership, Contact, ContactCompany, ContactIdentity, ExternalRef, Order
from hub.records import CompanyRecord, ContactRecord, Deletion, OrderRecord
from plugins.gdpr import erasure
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases  # set-wise upserts, UPDATE … FROM, links and merges

WHEN = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
SWITCHBOARD = "+79161110000"  # a small firm's main line is often a mobile


class TinyCRM:
    """A source holding companies, contacts and deals in memory: one page an entity."""

    name = "crm"

    def __init__(self) -> None:
        self.records: dict[str, list[Any]] = {"companies": [], "contacts": [], "orders": []}

    def entities(self) -> Sequence[str]:
        return ("companies", "contacts", "orders")

    def read(self, entity: str, cursor: str | None, full: bool) -> Iterator[sync.Page]:
        yield sync.Page(list(self.records[entity]), "end")

    def checkpoint(self, entity: str) -> str | None:
        return "end"

    def live_ids(self, entity: str) -> Iterator[list[str]]:
        yield [r.external_id for r in self.records[entity]]


def firm(ext: str = "c1", **extra: Any) -> CompanyRecord:
    values: dict[str, Any] = {"name": "ООО «Ромашка»", "inn": "7707083893", "city": "Тверь",
                              "phones": [f"8 {SWITCHBOARD[2:5]} {SWITCHBOARD[5:]}"], "emails": ["Office@Romashka.RU"],
                              "responsible_id": "7"}
    values.update(extra)
    return CompanyRecord(source="crm", external_id=ext, **values)


def person(ext: str, first: str, phones: Sequence[str] = (), companies_: Sequence[str] = ("c1",),
           **extra: Any) -> ContactRecord:
    return ContactRecord(source="crm", external_id=ext, first_name=first, last_name="Смирнова", phones=list(phones),
                         company_external_ids=list(companies_), **extra)


def deal(ext: str, contact: str | None, company: str | None, amount: str, status: str = "won") -> OrderRecord:
    return OrderRecord(source="crm", external_id=ext, contact_external_id=contact, company_external_id=company,
                       amount=Decimal(amount), status=status, closed_at=WHEN if status == "won" else None,  # type: ignore[arg-type]
                       pipeline="Опт", stage="WON" if status == "won" else "Переговоры",
                       stage_entered_at=WHEN, responsible_id="7", attributes={"UF_SOURCE": "Выставка"})


def page(db: HubDB, *records: Any) -> sync.Counts:
    counts = sync.Counts()
    with db.engine.begin() as conn:
        sync.write_page(conn, list(records), db.settings, counts)
    return counts


def contact_of(db: HubDB, ext: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(ExternalRef.contact_id).where(ExternalRef.source == "crm",
                                                                 ExternalRef.external_id == ext)).scalar_one()


def links(db: HubDB) -> set[tuple[int, str]]:
    with db.engine.connect() as conn:
        return {(cid, ext) for cid, ext in conn.execute(
            select(ContactCompany.contact_id, Company.external_id).join(Company,
                                                                        Company.id == ContactCompany.company_id))}


def company_row(db: HubDB, ext: str = "c1") -> Any:
    with db.engine.connect() as conn:
        return conn.execute(select(Company).where(Company.source == "crm", Company.external_id == ext)).one()


def test_a_sync_stores_companies_links_their_people_and_deals_and_counts_won_deals(hub_db: HubDB) -> None:
    crm = TinyCRM()
    crm.records["companies"] = [firm(), firm("c2", name="ИП Котов", inn=None, phones=[], emails=[])]
    crm.records["contacts"] = [person("1", "Анна", ["+79035550001"]), person("2", "Ольга", ["+79035550002"],
                                                                              companies_=("c1", "c2"))]
    crm.records["orders"] = [deal("d1", "1", "c1", "1500.50"), deal("d2", "2", "c1", "500"),
                             deal("d3", "2", "c1", "999", status="open")]
    report = sync.run(hub_db.engine, hub_db.settings, "crm", full=True, source=crm)
    assert report.counts.companies == {"created": 2, "updated": 0, "deleted": 0}
    row = company_row(hub_db)
    assert (row.name, row.inn, row.city, row.responsible_id) == ("ООО «Ромашка»", "7707083893", "Тверь", "7")
    assert row.phones == [SWITCHBOARD] and row.emails == ["office@romashka.ru"]
    assert row.orders_count == 2 and row.revenue == Decimal("2000.50")
    anna, olga = contact_of(hub_db, "1"), contact_of(hub_db, "2")
    assert links(hub_db) == {(anna, "c1"), (olga, "c1"), (olga, "c2")}
    with hub_db.engine.connect() as conn:
        names = dict(conn.execute(select(Contact.id, Contact.company).where(Contact.id.in_([anna, olga]))).all())
        open_deal = conn.execute(select(Order).where(Order.external_id == "d3")).one()
    # One company: its name fills the empty field; two: nothing is guessed.
    assert names == {anna: "ООО «Ромашка»", olga: None}
    assert (open_deal.company_id, open_deal.pipeline, open_deal.stage, open_deal.responsible_id) == (
        row.id, "Опт", "Переговоры", "7")
    assert open_deal.stage_entered_at == WHEN and open_deal.attributes == {"UF_SOURCE": "Выставка"}

    again = sync.run(hub_db.engine, hub_db.settings, "crm", full=True, source=crm)
    assert again.counts.companies == {"created": 0, "updated": 0, "deleted": 0}  # read again, nothing changed
    assert links(hub_db) == {(anna, "c1"), (olga, "c1"), (olga, "c2")}
    assert company_row(hub_db).orders_count == 2


def test_people_and_deals_synced_before_their_company_are_linked_when_it_arrives(hub_db: HubDB) -> None:
    page(hub_db, person("1", "Анна", ["+79035550001"]), deal("d1", "1", "c1", "700"))
    anna = contact_of(hub_db, "1")
    assert links(hub_db) == set()
    page(hub_db, firm())
    row = company_row(hub_db)
    assert links(hub_db) == {(anna, "c1")}
    assert row.orders_count == 1 and row.revenue == Decimal("700")
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(Order.company_id).where(Order.external_id == "d1")).scalar_one() == row.id
        assert conn.execute(select(Contact.company).where(Contact.id == anna)).scalar_one() == "ООО «Ромашка»"


def test_a_contact_that_stops_naming_a_company_loses_the_link_and_a_typed_company_name_stays(hub_db: HubDB) -> None:
    page(hub_db, firm(), firm("c2", name="ИП Котов", phones=[], emails=[]),
         person("1", "Анна", ["+79035550001"], company="Ромашка и партнёры"))
    anna = contact_of(hub_db, "1")
    assert links(hub_db) == {(anna, "c1")}
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(Contact.company).where(Contact.id == anna)).scalar_one() == "Ромашка и партнёры"
    page(hub_db, person("1", "Анна", ["+79035550001"], companies_=("c2",)))
    assert links(hub_db) == {(anna, "c2")}
    page(hub_db, person("1", "Анна", ["+79035550001"], companies_=()))
    assert links(hub_db) == set()
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(CompanyMembership.id)).first() is None


def test_bad_company_data_is_reported_and_the_rest_is_written(hub_db: HubDB) -> None:
    counts = page(hub_db, firm("c1", inn="12345", name="Я" * 5000, created_at=dt.datetime(2026, 1, 1)),
                  firm("c2", inn=" 7707 083 893 "), firm("", name="без id"),
                  firm("c3", phones=["не телефон", "+7 916 111-00-00"], emails=["not-an-email"],
                       attributes={"UF_SUM": Decimal("12.50"), "UF_DAY": dt.date(2026, 1, 2),
                                   "UF_BAD": float("nan")}))
    problems = {(e["id"], e["error"].split(" ")[0]) for e in counts.errors}
    assert problems == {("c1", "INN"), ("c1", "created_at"), (None, "the")}
    assert counts.companies["created"] == 3
    first, second, third = company_row(hub_db, "c1"), company_row(hub_db, "c2"), company_row(hub_db, "c3")
    assert first.inn is None and len(first.name) == 300
    assert second.inn == "7707083893"
    assert third.phones == ["не телефон", SWITCHBOARD] and third.emails == ["not-an-email"]
    assert third.attributes == {"UF_SUM": 12.5, "UF_DAY": "2026-01-02", "UF_BAD": None}


def test_deleted_companies_are_marked_unlinked_and_found_by_reconcile(hub_db: HubDB) -> None:
    crm = TinyCRM()
    crm.records["companies"] = [firm(), firm("c2", name="ИП Котов", phones=[], emails=[])]
    crm.records["contacts"] = [person("1", "Анна", ["+79035550001"], companies_=("c1", "c2"))]
    crm.records["orders"] = [deal("d1", "1", "c1", "100")]
    sync.run(hub_db.engine, hub_db.settings, "crm", full=True, source=crm)
    counts = page(hub_db, Deletion("crm", "company", "c1"), Deletion("crm", "company", "nobody"))
    assert counts.companies["deleted"] == 1
    assert company_row(hub_db).deleted_at is not None
    anna = contact_of(hub_db, "1")
    assert links(hub_db) == {(anna, "c2")}
    crm.records["companies"] = [firm()]  # c2 is gone without an event; c1 came back
    page(hub_db, firm())
    assert company_row(hub_db).deleted_at is None and links(hub_db) == {(anna, "c1"), (anna, "c2")}
    report = sync.reconcile(hub_db.engine, hub_db.settings, "crm", source=crm, entities=["companies"])
    assert report.counts.companies["deleted"] == 1
    assert company_row(hub_db, "c2").deleted_at is not None and links(hub_db) == {(anna, "c1")}


def test_colleagues_sharing_the_company_line_stay_two_people(hub_db: HubDB) -> None:
    page(hub_db, firm())
    # Two employees whose only phone is the company's main line (one never typed her name).
    page(hub_db, person("1", "Анна", [SWITCHBOARD]), ContactRecord(source="crm", external_id="2",
                                                                    phones=[SWITCHBOARD], company_external_ids=["c1"]))
    assert contact_of(hub_db, "1") != contact_of(hub_db, "2")
    with hub_db.engine.connect() as conn:
        reasons = set(conn.execute(select(ContactIdentity.shared)
                                   .where(ContactIdentity.value == SWITCHBOARD)).scalars())
    assert reasons == {"company"}
    assert identity.shared_title("company")
    # A person's own mobile still makes one person of two records, as before.
    page(hub_db, person("3", "Мария", ["+79035550003"]), person("4", "Мария", ["8 903 555-00-03"]))
    assert contact_of(hub_db, "3") == contact_of(hub_db, "4")


def test_a_contact_synced_before_its_company_holds_the_line_as_shared_from_then_on(hub_db: HubDB) -> None:
    page(hub_db, person("1", "Анна", [SWITCHBOARD], companies_=()))
    page(hub_db, firm())
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(ContactIdentity.shared).where(ContactIdentity.value == SWITCHBOARD)).scalar() == (
            "company")
    page(hub_db, ContactRecord(source="crm", external_id="2", phones=[SWITCHBOARD]))
    assert contact_of(hub_db, "1") != contact_of(hub_db, "2")


def test_the_manager_of_each_contact_is_kept_on_its_reference(hub_db: HubDB) -> None:
    page(hub_db, person("1", "Анна", ["+79035550001"], responsible_id="15"))
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(ExternalRef.responsible_id)).scalar_one() == "15"
    page(hub_db, person("1", "Анна", ["+79035550001"], responsible_id="16"))  # nothing else changed
    page(hub_db, person("1", "Анна", ["+79035550001"]))  # a record that does not say keeps the last known
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(ExternalRef.responsible_id)).scalar_one() == "16"


def test_a_merge_unites_company_links_and_an_unmerge_gives_each_their_own(hub_db: HubDB) -> None:
    page(hub_db, firm(), firm("c2", name="ИП Котов", phones=[], emails=[]))
    page(hub_db, person("1", "Анна", ["+79035550001"]))
    page(hub_db, person("2", "Анна", ["+79035550002"], companies_=("c1", "c2")))
    first, second = contact_of(hub_db, "1"), contact_of(hub_db, "2")
    page(hub_db, person("2", "Анна", ["+79035550002", "+79035550001"], companies_=("c1", "c2")))
    assert contact_of(hub_db, "2") == first
    assert links(hub_db) == {(first, "c1"), (first, "c2")}  # one link a company
    with hub_db.engine.connect() as conn:
        merge_id = conn.execute(select(identity.merges_t.c.id)).scalar_one()
    unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    assert contact_of(hub_db, "2") == second
    assert links(hub_db) == {(first, "c1"), (second, "c1"), (second, "c2")}


def test_erasure_removes_where_the_person_works(hub_db: HubDB) -> None:
    page(hub_db, firm(), person("1", "Анна", ["+79035550001"]), person("2", "Ольга", ["+79035550002"]))
    anna, olga = contact_of(hub_db, "1"), contact_of(hub_db, "2")
    erasure.erase(hub_db.engine, hub_db.settings, anna, actor="cli")
    assert links(hub_db) == {(olga, "c1")}
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(CompanyMembership.contact_external_id)).scalars().all() == ["2"]
    assert company_row(hub_db).name == "ООО «Ромашка»"


def test_company_stats_follow_deals_that_move_or_go(hub_db: HubDB) -> None:
    page(hub_db, firm(), firm("c2", name="ИП Котов", phones=[], emails=[]), deal("d1", None, "c1", "300"))
    assert company_row(hub_db).orders_count == 1
    page(hub_db, deal("d1", None, "c2", "300"))
    assert (company_row(hub_db).orders_count, company_row(hub_db, "c2").revenue) == (0, Decimal("300"))
    page(hub_db, Deletion("crm", "order", "d1"))
    assert company_row(hub_db, "c2").orders_count == 0
    with hub_db.engine.begin() as conn:
        companies.refresh_source_stats(conn, "crm")
    assert company_row(hub_db, "c2").revenue == 0


def test_the_sync_summary_says_what_happened_to_companies_and_activities(hub_db: HubDB) -> None:
    crm = TinyCRM()
    crm.records["companies"] = [firm()]
    data = sync.run(hub_db.engine, hub_db.settings, "crm", full=True, source=crm).as_dict()
    with use_language("ru"):
        line = summary("crm", data)
        label = progress_label("crm", "companies")
    assert "компании: новых 1, обновлено 0, удалено 0" in line and "звонки" not in line
    assert label == "crm: компании"
    with use_language("en"):
        assert "companies 1 new, 0 updated, 0 deleted" in summary("crm", data)
