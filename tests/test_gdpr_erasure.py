"""Data subject requests: erasure that survives a CRM re-sync, export, retention, and consent from CRM fields.

The CRM is the Bitrix24 plugin's portal emulator, reached over HTTP, or the
in-memory sample source; commands run through the real `hub` command line.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text, update

import plugins.bitrix24 as bitrix24_plugin
import plugins.gdpr
import plugins.mailing
from hub import consent, identity, messaging, normalize, schedule, sync
from hub.config import load_settings
from hub.hookspecs import hookimpl
from hub.i18n import use_language
from hub.models import (
    Activity,
    AuditEntry,
    Company,
    ContactCompany,
    Contact,
    ContactIdentity,
    ContactMerge,
    ExternalRef,
    Message,
    Order,
    Suppression,
    SyncRun,
)
from hub.records import ContactRecord
from plugins.bitrix24.sandbox import Portal, SandboxServer
from plugins.gdpr import crm_consent, erasure, export, retention
from plugins.gdpr.models import ConsentRequest, ErasedKey
from tests.conftest import HubDB
from tests.plugins.sample_source import FakeCRM, SampleSource
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases  # erasure

TODAY = dt.date(2025, 6, 1)


@pytest.fixture
def hub(hub_db: HubDB, plugin_manager: Any) -> HubDB:
    plugin_manager.register(plugins.gdpr, name="gdpr")
    plugin_manager.register(plugins.mailing, name="mailing")
    plugins.gdpr.register_commands(cli)
    return hub_db


@pytest.fixture
def portal(hub: HubDB, plugin_manager: Any) -> Iterator[SandboxServer]:
    plugin_manager.register(bitrix24_plugin, name="bitrix24")
    bitrix24_plugin.register_commands(cli)
    server = SandboxServer(Portal(contacts=30, seed=4, today=TODAY)).start()
    yield server
    server.stop()
    server.portal.close()


def run_cli(*args: str, code: int = 0, language: str | None = None) -> Any:
    result = CliRunner().invoke(cli, list(args), env={"HUB_LANGUAGE": language} if language else None)
    assert result.exit_code == code, result.output
    return result


def cli_json(*args: str) -> Any:
    return json.loads(run_cli(*args, "--json").stdout)


def contact_of(db: HubDB, kind: str, value: str) -> int | None:
    with db.engine.connect() as conn:
        return identity.find_contact(conn, kind, value)


def new_contact(db: HubDB, **fields: Any) -> int:
    with db.engine.begin() as conn:
        contact_id = sync.write_contacts(conn, [ContactRecord(source=fields.pop("source", "t"), **fields)],
                                         db.settings, sync.Counts()).contact_ids[0]
    assert contact_id is not None
    return contact_id


def pick_person(db: HubDB) -> tuple[int, str, str, str]:
    """A synced Bitrix24 contact with a valid email and phone: (hub id, portal id, email, phone)."""
    with db.engine.connect() as conn:
        rows = conn.execute(select(ExternalRef.contact_id, ExternalRef.external_id)
                            .where(ExternalRef.source == "bitrix24").order_by(ExternalRef.id)).all()
        for contact_id, external_id in rows:
            emails = consent.addresses(conn, contact_id, "email")
            phones = consent.addresses(conn, contact_id, "phone")
            if emails and phones:
                return contact_id, external_id, emails[0], phones[0]
    raise AssertionError("the portal has nobody with both an email and a phone")


# --- erasure --------------------------------------------------------------------------------

def test_an_erased_person_stays_gone_after_the_crm_syncs_them_again(hub: HubDB, portal: SandboxServer) -> None:
    # hook:refuse_records
    run_cli("connect", "bitrix24", "--webhook", portal.webhook_url)
    first = cli_json("sync", "bitrix24", "--full")
    contact_id, external_id, address, phone = pick_person(hub)
    with hub.engine.begin() as conn:
        consent.record(conn, contact_id, "email", "marketing", "granted", source="form")
    before = first["contacts"]["created"]

    erased = run_cli("gdpr", "erase", str(contact_id), "--yes")
    assert f"Контакт №{contact_id} удалён" in erased.output and address not in erased.output
    # Not asked to erase in the CRM (--delete-in-crm; tests/test_crm_erasure.py): the portal keeps them.
    assert portal.portal.contact(int(external_id))["ID"]

    # The CRM still holds them, and changes them: neither a full nor an incremental sync brings them back.
    portal.portal.update_contact(int(external_id), {"COMMENTS": "звонил, просил перезвонить"})
    incremental = cli_json("sync", "bitrix24")
    full = cli_json("sync", "bitrix24", "--full")
    assert incremental["contacts"]["created"] == 0 and full["contacts"]["created"] == 0
    # hook:refuse_orders
    deals = [d for d in portal.portal.deal_ids() if portal.portal.deal(d)["CONTACT_ID"] == external_id]
    assert full["orders"]["refused"] == len(deals)
    with hub.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Order).where(
            Order.source == "bitrix24", Order.contact_external_id == external_id)).scalar() == 0
    # … nor a new CRM record with the same email, nor a spreadsheet.
    portal.portal.add_contact({"NAME": "Снова", "EMAIL": [{"VALUE": address.upper(), "VALUE_TYPE": "WORK"}]})
    assert cli_json("sync", "bitrix24")["contacts"]["created"] == 0
    sheet = Path("again.csv")
    sheet.write_text(f"ФИО;Телефон;Email\nКто-то;{phone};\nДругой;;{address}\nНовый Человек;+7 903 000-11-22;\n",
                     encoding="utf-8")
    imported = cli_json("import", "contacts", str(sheet))
    assert imported["created"] == 1  # only the stranger

    assert contact_of(hub, "email", address) is None and contact_of(hub, "phone", phone) is None
    with hub.engine.connect() as conn:
        assert conn.execute(select(ExternalRef.id).where(ExternalRef.source == "bitrix24",
                                                         ExternalRef.external_id == external_id)).first() is None
        live = conn.execute(select(func.count()).select_from(Contact).where(Contact.deleted_at.is_(None))).scalar()
        assert live == before - 1 + 1  # everyone else is still there, and the stranger came in
        for channel, purpose in (("email", "marketing"), ("email", "transactional"), ("sms", "marketing")):
            assert not consent.can_contact(conn, hub.settings, contact_id, channel, purpose).allowed
        # Even an address typed in by hand for someone else is never written to.
        other = conn.execute(select(Contact.id).where(Contact.deleted_at.is_(None)).limit(1)).scalar_one()
        verdict = consent.can_contact(conn, hub.settings, other, "email", "transactional", address=address)
        assert not verdict.allowed and "suppressed" in verdict.reasons[0]


def test_erasure_removes_personal_data_everywhere_and_keeps_no_readable_trace(hub: HubDB) -> None:
    cid = new_contact(hub, first_name="Анна", last_name="Иванова", city="Тверь", emails=["anna@example.ru"],
                      phones=["8 916 123-45-67"], external_id="77", attributes={"Заметка": "любит розы"})
    twin = new_contact(hub, source="shop", first_name="Аня", emails=["anna.work@example.ru"], external_id="A1")
    new_contact(hub, source="shop", emails=["anna.work@example.ru"], phones=["+79161234567"])  # ties the two
    with hub.engine.begin() as conn:
        consent.record(conn, cid, "email", "marketing", "granted", source="form",
                       evidence={"ip": "203.0.113.1", "address": "anna@example.ru"})
        conn.execute(Order.__table__.insert().values(source="t", external_id="o1", contact_external_id="77",
                                                     contact_id=cid, amount=1500, currency="RUB", status="won",
                                                     title="Букет для Анны Ивановой"))
        message = messaging.create(conn, hub.settings, contact_id=cid, channel="email", template="welcome_email",
                                   key="welcome:1", purpose="transactional")
    assert contact_of(hub, "email", "anna.work@example.ru") == cid  # the twin was merged in

    report = erasure.erase(hub.engine, hub.settings, cid, actor="admin:dpo@example.ru")
    assert not report.already_erased and report.suppressed == 3 and report.tombstone_keys == 6  # 3 ids, 2 refs, a deal
    assert report.removed["identities"] == 3 and report.removed["consent_events"] == 1
    assert report.removed["messages"] == 1 and report.removed["orders"] == 1 and report.removed["merges"] == 1

    with hub.engine.connect() as conn:
        row = conn.execute(select(Contact.__table__).where(Contact.id == cid)).one()
        assert row.deleted_at is not None and not any(getattr(row, f) for f in identity.FIELDS)
        assert row.attributes == {} and row.provenance == {} and row.tags == []
        assert conn.execute(select(ContactIdentity.id).where(ContactIdentity.contact_id == cid)).first() is None
        assert conn.execute(select(ExternalRef.id).where(ExternalRef.contact_id == cid)).first() is None
        assert consent.history(conn, cid) == []
        msg = conn.execute(select(Message.__table__).where(Message.id == message.id)).one()
        assert (msg.address, msg.subject, msg.body_text, msg.body_html) == (None, None, "", None)
        assert msg.status == "suppressed" and "erased" in msg.error  # it was still queued: it never goes
        order = conn.execute(select(Order.__table__)).one()
        assert order.contact_id is None and order.title is None and order.amount == 1500
        merge = conn.execute(select(ContactMerge.__table__).where(ContactMerge.merged_id == twin)).one()
        assert merge.snapshot == {} and merge.reason == {"rule": "shared identifier", "erased": True}
        audit = conn.execute(select(AuditEntry.__table__).where(AuditEntry.action == "gdpr.erase")).one()
        assert audit.actor == "admin:dpo@example.ru" and audit.contact_id == cid
        stored = [conn.execute(select(t)).all() for t in (Suppression.__table__, ErasedKey.__table__,
                                                          AuditEntry.__table__, Contact.__table__, Message.__table__)]
    dump = repr(stored)
    for personal in ("anna", "Анна", "Иванова", "9161234567", "Тверь", "роз", "203.0.113.1"):
        assert personal not in dump, personal

    again = erasure.erase(hub.engine, hub.settings, cid)
    assert again.already_erased and not any(again.removed.values())
    assert "уже удалён" in run_cli("gdpr", "erase", str(cid)).output
    assert "already erased" in run_cli("gdpr", "erase", str(cid), language="en").output


def test_an_erased_persons_calls_companies_and_deals_leave_the_card(hub: HubDB) -> None:
    cid = new_contact(hub, source="bitrix24", external_id="31", first_name="Анна", emails=["anna@example.ru"])
    now = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone.utc)
    with hub.engine.begin() as conn:
        firm = conn.execute(Company.__table__.insert().values(source="bitrix24", external_id="5", name="ООО Ромашка")
                            .returning(Company.id)).scalar_one()
        conn.execute(ContactCompany.__table__.insert().values(contact_id=cid, company_id=firm, source="bitrix24"))
        conn.execute(Activity.__table__.insert(), [
            {"source": "bitrix24", "external_id": "c1", "contact_external_id": "31", "contact_id": cid,
             "kind": "call", "direction": "in", "at": now, "subject": "Анна просит перезвонить"},
            {"source": "bitrix24", "external_id": "c2", "contact_external_id": "31", "contact_id": None,
             "kind": "meeting", "direction": None, "at": now, "subject": "Встреча с Анной"},  # not linked yet
            {"source": "bitrix24", "external_id": "c3", "contact_external_id": "99", "contact_id": None,
             "kind": "call", "direction": "out", "at": now, "subject": "someone else"}])
        conn.execute(Order.__table__.insert().values(source="bitrix24", external_id="d1", contact_external_id="31",
                                                     contact_id=cid, amount=900, currency="RUB", status="open",
                                                     title="Сделка Анны", stage="NEW"))
    before = cli_json("contacts", "show", str(cid))
    assert before["activities"]["recent"] and before["companies"] and before["open_deals"]

    report = erasure.erase(hub.engine, hub.settings, cid)
    assert report.removed["activities"] == 2
    card = cli_json("contacts", "show", str(cid))
    assert card["activities"]["recent"] == [] and card["activities"]["last_call_at"] is None
    assert card["companies"] == [] and card["open_deals"] == [] and card["orders"] == []
    with hub.engine.connect() as conn:
        assert conn.execute(select(Activity.external_id)).scalars().all() == ["c3"]
        assert conn.execute(select(Company.name)).scalars().all() == ["ООО Ромашка"]  # the business's own record
    assert "Анн" not in json.dumps(card, ensure_ascii=False)


def test_erase_without_a_terminal_needs_yes(hub: HubDB) -> None:
    cid = new_contact(hub, emails=["keep@example.ru"])
    refused = run_cli("gdpr", "erase", str(cid), "--json", code=1, language="en")
    assert refused.output == (f"Error: erasing contact #{cid} cannot be undone: run the command in a terminal to "
                              "confirm it, or add --yes\n")
    assert contact_of(hub, "email", "keep@example.ru") == cid  # nothing was erased
    assert json.loads(run_cli("gdpr", "erase", str(cid), "--json", "--yes").stdout)["contact_id"] == cid
    assert contact_of(hub, "email", "keep@example.ru") is None


def test_erase_names_what_is_wrong(hub: HubDB) -> None:
    a = new_contact(hub, emails=["a@example.ru"])
    b = new_contact(hub, phones=["+79160000001"])
    new_contact(hub, emails=["a@example.ru"], phones=["+79160000001"])  # b is merged into a
    assert run_cli("gdpr", "erase", str(b), code=1).output == f"Ошибка: контакт №{b} объединён с №{a}; удаляйте №{a}\n"
    assert run_cli("gdpr", "erase", str(b), code=1, language="en").output == (
        f"Error: contact #{b} was merged into #{a}; erase #{a}\n")
    assert run_cli("gdpr", "erase", "999", code=1).output == "Ошибка: нет контакта с id 999\n"
    assert run_cli("gdpr", "erase", "999", code=1, language="en").output == "Error: no contact with id 999\n"
    assert "Ошибка" in run_cli("gdpr", "erase", "x", code=2).output
    with hub.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ErasedKey)).scalar() == 0


def test_plugins_forget_the_person_before_hub_removes_its_own_data(hub: HubDB, plugin_manager: Any) -> None:
    # hook:contact_erased
    seen: list[tuple[int, list[tuple[str, str]]]] = []

    @hookimpl
    def contact_erased(conn: Any, contact_id: int) -> None:
        refs = conn.execute(select(ExternalRef.source, ExternalRef.external_id)
                            .where(ExternalRef.contact_id == contact_id)).all()
        seen.append((contact_id, [tuple(r) for r in refs]))

    plugin_manager.register(SimpleNamespace(contact_erased=contact_erased), name="loyalty")
    cid = new_contact(hub, source="crm", external_id="501", emails=["p@example.ru"])
    erasure.erase(hub.engine, hub.settings, cid)
    assert seen == [(cid, [("crm", "501")])]


class DeletingSource(SampleSource):
    """The sample CRM, able to delete a contact when asked."""

    def delete_contact(self, external_id: str) -> None:
        self.crm.delete_contact(int(external_id))


def test_erase_can_ask_the_crm_to_delete_the_person(hub: HubDB, plugin_manager: Any) -> None:
    crm = FakeCRM()
    crm.add_contact(1, first="Ольга", emails=["olga@example.ru"])
    crm.add_contact(2, first="Пётр", emails=["petr@example.ru"])

    @hookimpl
    def register_sources(register: Any) -> None:
        register("sample", lambda settings: DeletingSource(crm))

    plugin_manager.register(SimpleNamespace(register_sources=register_sources), name="sample")
    sync.run(hub.engine, hub.settings, "sample")
    olga = contact_of(hub, "email", "olga@example.ru")
    out = run_cli("gdpr", "erase", str(olga), "--delete-in-crm", "--yes").output
    assert "sample 1: удалён в sample" in out and 1 not in crm.contacts and 2 in crm.contacts
    with hub.engine.connect() as conn:
        results = conn.execute(select(AuditEntry.details).where(AuditEntry.action == "gdpr.erase.sources")).scalar()
    assert results == {"results": [{"source": "sample", "external_id": "1", "result": "deleted"}]}


# --- export ---------------------------------------------------------------------------------

def test_export_holds_everything_about_the_person_as_json_and_csv(hub: HubDB, tmp_path: Path) -> None:
    cid = new_contact(hub, source="bitrix24", external_id="12", first_name="Анна", emails=["Anna@Example.ru"],
                      phones=["8 (916) 123-45-67"])
    other = new_contact(hub, emails=["someone@example.ru"])
    with hub.engine.begin() as conn:
        consent.record(conn, cid, "email", "news", "granted", source="form",
                       evidence={"ip": "203.0.113.5", "form_id": "footer", "text_version": "3"})
        conn.execute(Order.__table__.insert().values(source="bitrix24", external_id="9", contact_external_id="12",
                                                     contact_id=cid, amount="2500.50", currency="RUB", status="won"))
        messaging.create(conn, hub.settings, contact_id=cid, channel="email", template="welcome_email",
                         key="welcome:1", purpose="transactional")
        conn.execute(text("CREATE TABLE loyalty_cards (id INTEGER PRIMARY KEY, contact_id INTEGER, number TEXT)"))
        conn.execute(text("INSERT INTO loyalty_cards VALUES (1, :c, 'LC-1'), (2, :o, 'LC-2')"), {"c": cid, "o": other})
    try:
        data = cli_json("gdpr", "export", str(cid))
        out = run_cli("gdpr", "export", str(cid), "--csv", str(tmp_path / "bundle"), "--json")
    finally:
        with hub.engine.begin() as conn:
            conn.execute(text("DROP TABLE loyalty_cards"))
    second = json.loads(out.stdout)
    assert {k: v for k, v in second.items() if k not in ("exported_at", "audit")} == {
        k: v for k, v in data.items() if k not in ("exported_at", "audit")}
    assert [a["action"] for a in second["audit"]] == ["consent.granted", "gdpr.export"]  # the first export
    assert data["contact"]["first_name"] == "Анна"
    assert [(i["kind"], i["value"], i["raw"], i["source"]) for i in data["identities"]] == [
        ("phone", "+79161234567", "8 (916) 123-45-67", "bitrix24"), ("email", "anna@example.ru", "Anna@Example.ru",
                                                                     "bitrix24")]
    assert data["external_refs"][0]["external_id"] == "12" and data["orders"][0]["amount"] == "2500.50"
    assert data["consent"] == [{"channel": "email", "purpose": "news", "status": "granted", "source": "form"}]
    assert data["consent_history"][0]["evidence"]["ip"] == "203.0.113.5"
    assert "Здравствуйте" in data["messages"][0]["body_text"]
    assert data["loyalty_cards"] == [{"id": 1, "contact_id": cid, "number": "LC-1"}]
    assert [(a["action"], a["details"]) for a in data["audit"]] == [
        ("consent.granted", {"channel": "email", "purpose": "news", "source": "form"})]

    with (tmp_path / "bundle" / "identities.csv").open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    assert [r["value"] for r in rows] == ["+79161234567", "anna@example.ru"]
    assert json.loads((tmp_path / "bundle" / "export.json").read_text(encoding="utf-8"))["contact_id"] == cid
    assert (tmp_path / "bundle" / "consent_history.csv").exists()
    with hub.engine.connect() as conn:
        exports = conn.execute(select(func.count()).select_from(AuditEntry)
                               .where(AuditEntry.action == "gdpr.export")).scalar()
    assert exports == 2
    summary = run_cli("gdpr", "export", str(cid)).output
    assert "email и телефоны" in summary and "история согласий" in summary and "--json" in summary
    assert "identities" not in summary and "consent_history" not in summary
    english = run_cli("gdpr", "export", str(cid), language="en").output
    assert "emails and phones" in english and "consent history" in english
    assert run_cli("gdpr", "export", "404", code=1).output == "Ошибка: нет контакта с id 404\n"


def test_the_export_of_an_erased_person_is_a_tombstone(hub: HubDB) -> None:
    cid = new_contact(hub, first_name="Анна", emails=["anna@example.ru"])
    erasure.erase(hub.engine, hub.settings, cid)
    data = export.export(hub.engine, hub.settings, cid)
    assert data["erased"]["reason"] == "request" and data["identities"] == [] and data["contact"]["first_name"] is None


# --- retention ------------------------------------------------------------------------------

def test_retention_ages_out_what_is_past_its_time(hub: HubDB) -> None:
    old = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    quiet = new_contact(hub, first_name="Молчун", emails=["quiet@example.ru"])
    fan = new_contact(hub, first_name="Фанат", emails=["fan@example.ru"])
    with hub.engine.begin() as conn:
        consent.record(conn, fan, "email", "news", "granted", source="form")
        for cid in (quiet, fan):
            messaging.create(conn, hub.settings, contact_id=cid, channel="email", template="welcome_email",
                             key=f"w:{cid}", purpose="transactional")
        conn.execute(update(Message.__table__).values(status="sent", created_at=old))
        conn.execute(update(Contact.__table__).values(created_at=old, updated_at=old))
        conn.execute(SyncRun.__table__.insert().values(source="t", kind="full", status="ok", counts={}, errors=[],
                                                       started_at=old))
        conn.execute(ConsentRequest.__table__.insert().values(contact_id=fan, channel="email", topics=["email/news"],
                                                              source="form", evidence={"ip": "1.2.3.4"},
                                                              created_at=old))
    settings = load_settings()
    settings.extra["gdpr"] = {"retention": {"inactive_contacts_days": 730}}  # type: ignore[index]

    planned = retention.run(hub.engine, settings, dry_run=True)
    assert (planned.messages, planned.sync_runs, planned.consent_requests, planned.inactive_contacts) == (2, 1, 1, 1)
    with hub.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(SyncRun)).scalar() == 1  # the dry run changed nothing

    assert schedule.schedules(settings)["gdpr-retention"].every == dt.timedelta(days=1)
    # as the scheduler does
    done = schedule.run_due(hub.engine, settings, only=["gdpr-retention"]).ran["gdpr-retention"]
    assert (done["messages"], done["sync_runs"], done["consent_requests"], done["inactive_contacts"]) == (2, 1, 1, 1)
    with hub.engine.connect() as conn:
        bodies = conn.execute(select(Message.address, Message.body_text)).all()
        assert bodies == [(None, ""), (None, "")]
        assert conn.execute(select(Contact.first_name).where(Contact.id == quiet)).scalar() is None
        assert conn.execute(select(Contact.first_name).where(Contact.id == fan)).scalar() == "Фанат"  # has consent
        assert conn.execute(select(func.count()).select_from(ErasedKey)).scalar() == 0  # no tombstone: not a request
        entry = conn.execute(select(AuditEntry.details).where(AuditEntry.action == "gdpr.retention")).scalar()
    assert entry is not None and entry["messages"] == 2 and entry["inactive_contacts"] == 1
    assert retention.run(hub.engine, settings).messages == 0  # nothing left to age


def test_retention_command_and_its_settings(hub: HubDB) -> None:
    report = cli_json("gdpr", "retention", "--dry-run")
    assert report["dry_run"] is True and report["cutoffs"]["inactive_contacts"] is None
    shown = run_cli("gdpr", "retention", "--dry-run").output
    assert "неактивных контактов обезличено:" in shown and "(старше " in shown
    assert "inactive contacts anonymized:" in run_cli("gdpr", "retention", "--dry-run", language="en").output
    Path("hub.toml").write_text('[gdpr.retention]\nmessages_days = "soon"\n', encoding="utf-8")
    out = run_cli("gdpr", "retention", code=1, language="en").output
    assert out == "Error: [gdpr.retention] messages_days: 'soon' is not a number of days (or \"off\")\n"
    Path("hub.toml").write_text('[gdpr.retention]\nmessage_days = 30\n', encoding="utf-8")
    assert "неизвестная настройка 'message_days'" in run_cli("gdpr", "retention", code=1).output


# --- consent from CRM fields ----------------------------------------------------------------

def test_consent_follows_a_bitrix24_field_without_overriding_an_unsubscribe(hub: HubDB,
                                                                             portal: SandboxServer) -> None:
    Path("hub.toml").write_text('[bitrix24.contact_fields]\nEXPORT = "EXPORT"\n\n'
                                '[gdpr.crm_consent]\nbitrix24 = { EXPORT = "email/marketing" }\n', encoding="utf-8")
    run_cli("connect", "bitrix24", "--webhook", portal.webhook_url)
    p = portal.portal
    ids = sorted(p.contact_ids())
    p.update_contact(ids[1], {"EXPORT": "N"})
    cli_json("sync", "bitrix24", "--full")

    def hub_id(external_id: int) -> int:
        with hub.engine.connect() as conn:
            return conn.execute(select(ExternalRef.contact_id).where(
                ExternalRef.source == "bitrix24", ExternalRef.external_id == str(external_id))).scalar_one()

    def latest(external_id: int) -> tuple[str, str] | None:
        with hub.engine.connect() as conn:
            return consent.latest(conn, hub_id(external_id)).get(("email", "marketing"))

    assert latest(ids[0]) == ("granted", "bitrix24") and latest(ids[1]) is None
    with hub.engine.connect() as conn:
        event = consent.history(conn, hub_id(ids[0]))[0]
    assert event["evidence"]["field"] == "EXPORT" and event["evidence"]["value"] == "Y"

    p.update_contact(ids[0], {"EXPORT": "N"})  # a manager unticks the flag
    cli_json("sync", "bitrix24")
    assert latest(ids[0]) == ("withdrawn", "bitrix24")
    assert cli_json("sync", "bitrix24", "--full")["contacts"]["created"] == 0
    with hub.engine.connect() as conn:
        assert len(consent.history(conn, hub_id(ids[0]))) == 2  # re-reading the same flag adds nothing

    with hub.engine.begin() as conn:  # the person unsubscribes by link; the CRM flag still says yes
        consent.record(conn, hub_id(ids[2]), "email", "marketing", "withdrawn", source="unsubscribe_link")
    p.update_contact(ids[2], {"COMMENTS": "обновлён"})
    cli_json("sync", "bitrix24")
    assert latest(ids[2]) == ("withdrawn", "unsubscribe_link")


def test_crm_consent_settings_are_checked(hub: HubDB) -> None:
    settings = load_settings()
    settings.extra["gdpr"] = {"crm_consent": {"bitrix24": {"EXPORT": "fax/marketing"}}}  # type: ignore[index]
    with pytest.raises(Exception, match=r"\[gdpr.crm_consent\] bitrix24.EXPORT: тема 'fax/marketing': канал"):
        crm_consent.mapping(settings, "bitrix24")
    with use_language("en"), pytest.raises(Exception, match=r"bitrix24.EXPORT: topic 'fax/marketing': channel"):
        crm_consent.mapping(settings, "bitrix24")
    assert [crm_consent.answer(v) for v in ("Y", "да", 1, True, "N", "нет", False, "", "maybe")] == [
        "granted", "granted", "granted", "granted", "withdrawn", "withdrawn", "withdrawn", None, None]
    # the mapping reads attributes of normalized contacts
    assert getattr(normalize.email("X@Y.RU"), "value", None) == "x@y.ru"


def test_the_sections_other_modules_add_are_named(hub: HubDB) -> None:
    from hub import i18n
    from plugins.gdpr import export

    with i18n.use_language("ru"):
        assert export.section_title("interactions") == "взаимодействия"
        assert export.section_title("promo_codes") == "промокоды"
        assert export.section_title("workflow_runs") == "запуски сценариев"
        assert export.section_title("loyalty_cards") == "таблица loyalty_cards"  # a table nobody titled
    with i18n.use_language("en"):
        assert export.section_title("workflow_runs") == "workflow runs"
