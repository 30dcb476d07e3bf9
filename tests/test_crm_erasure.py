"""Erasure reaches the CRM: each source erases the person its own way, the answer is told and audited.

The CRMs are the in-memory sample source taught hub.api.Erasing (deleting,
anonymising, refusing) or only the older `delete_contact`; the people come
through a real sync, and the refused CRM is synced again to show the person
stays out.
"""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace
from typing import Any, Callable

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

import plugins.gdpr
from hub import sync
from hub.api import Erasing
from hub.hookspecs import hookimpl
from hub.models import AuditEntry, Contact, ContactIdentity, ExternalRef
from hub.records import ContactRecord
from plugins.gdpr import erasure
from tests.conftest import HubDB
from tests.plugins.sample_source import FakeCRM, SampleSource
from tests.support.admin import AdminEnv, client_as, post, text
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases  # erasure and its keys


class Named(SampleSource):
    """The sample CRM under another source name (its records carry that name)."""

    source_name = "sample"

    def _record(self, entity: str, i: int, row: dict[str, Any]) -> Any:
        return dataclasses.replace(super()._record(entity, i, row), source=self.source_name)


class ErasingSource(Named):
    """The sample CRM answering erase_contact as told: "deleted" (and gone from the CRM), "anonymised", or raising."""

    def __init__(self, crm: FakeCRM, answer: str | Exception) -> None:
        super().__init__(crm)
        self.answer = answer

    def erase_contact(self, external_id: str) -> str:
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.answer == "deleted":
            self.crm.delete_contact(int(external_id))
        elif self.answer == "anonymised":
            self.crm.contacts[int(external_id)].update(first="Удалённый контакт", emails=[], phones=[])
        return self.answer


class OldDeletingSource(Named):
    """A plugin written before Erasing: it has delete_contact only."""

    def delete_contact(self, external_id: str) -> None:
        self.crm.delete_contact(int(external_id))


@pytest.fixture
def hub(hub_db: HubDB, plugin_manager: Any) -> HubDB:
    plugin_manager.register(plugins.gdpr, name="gdpr")
    plugins.gdpr.register_commands(cli)
    return hub_db


def crm_with(plugin_manager: Any, name: str, make: Callable[[FakeCRM], Any]) -> FakeCRM:
    crm = FakeCRM()
    crm.add_contact(1, first="Ольга", emails=["olga@example.ru"], phones=["+7 916 000-00-01"])
    crm.add_contact(2, first="Пётр", emails=["petr@example.ru"])

    @hookimpl
    def register_sources(register: Any) -> None:
        register(name, lambda settings: named(make(crm), name))

    plugin_manager.register(SimpleNamespace(register_sources=register_sources), name=name)
    return crm


def named(source: Any, name: str) -> Any:
    source.source_name = name
    return source


def contact_of(db: HubDB, email: str) -> int | None:
    with db.engine.connect() as conn:
        return conn.execute(select(ContactIdentity.contact_id).where(ContactIdentity.kind == "email",
                                                                     ContactIdentity.value == email)).scalar()


def run(*args: str, code: int = 0, language: str = "ru") -> Any:
    result = CliRunner().invoke(cli, list(args), env={"HUB_LANGUAGE": language})
    assert result.exit_code == code, result.output
    return result


def audited(db: HubDB) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(AuditEntry.details).where(AuditEntry.action == "gdpr.erase.sources")
                                 .order_by(AuditEntry.id)).scalars())


@pytest.mark.parametrize("answer, said", [
    ("deleted", "удалён в Битрикс24"),
    ("anonymised", "обезличен в amoCRM: API amoCRM не удаляет контакты — имя заменено, телефоны и почта удалены, "
                   "добавлен тег"),
])
def test_each_crm_erases_its_own_way_and_says_so(hub: HubDB, plugin_manager: Any, answer: str, said: str) -> None:
    name = "bitrix24" if answer == "deleted" else "amocrm"
    crm = crm_with(plugin_manager, name, lambda crm: ErasingSource(crm, answer))
    assert isinstance(ErasingSource(crm, answer), Erasing)
    sync.run(hub.engine, hub.settings, name)
    olga = contact_of(hub, "olga@example.ru")
    assert olga is not None
    out = run("gdpr", "erase", str(olga), "--delete-in-crm", "--yes").output
    assert f"  {name} 1: {said}\n" in out
    assert audited(hub) == [{"results": [{"source": name, "result": answer}]}]
    if answer == "deleted":
        assert 1 not in crm.contacts and 2 in crm.contacts
    else:
        assert crm.contacts[1]["emails"] == [] and crm.contacts[1]["first"] == "Удалённый контакт"


def test_a_crm_that_refuses_is_told_and_a_later_sync_still_keeps_the_person_out(hub: HubDB,
                                                                                  plugin_manager: Any) -> None:
    crm = crm_with(plugin_manager, "bitrix24", lambda crm: ErasingSource(crm, PermissionError(
        "ACCESS_DENIED: the webhook has no right to delete contacts")))
    sync.run(hub.engine, hub.settings, "bitrix24")
    olga = contact_of(hub, "olga@example.ru")
    data = json.loads(run("gdpr", "erase", str(olga), "--delete-in-crm", "--yes", "--json").stdout)
    assert data["sources"] == [{"source": "bitrix24", "external_id": "1",
                                "result": "failed: ACCESS_DENIED: the webhook has no right to delete contacts"}]
    assert audited(hub) == [{"results": [{"source": "bitrix24", "result": data["sources"][0]["result"]}]}]
    assert 1 in crm.contacts  # the CRM still holds her

    crm.add_contact(1, first="Ольга", emails=["olga@example.ru"], phones=["+7 916 000-00-01"])  # and edits her
    report = sync.run(hub.engine, hub.settings, "bitrix24", full=True)
    assert report.as_dict()["contacts"]["refused"] >= 1
    assert contact_of(hub, "olga@example.ru") is None
    with hub.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ExternalRef)
                            .where(ExternalRef.external_id == "1")).scalar() == 0
        live = conn.execute(select(func.count()).select_from(Contact).where(Contact.deleted_at.is_(None))).scalar()
    assert live == 1  # Пётр only


def test_older_plugins_and_sources_that_cannot_erase(hub: HubDB, plugin_manager: Any) -> None:
    old = crm_with(plugin_manager, "legacy", OldDeletingSource)
    crm_with(plugin_manager, "readonly", Named)
    sync.run(hub.engine, hub.settings, "legacy")
    sync.run(hub.engine, hub.settings, "readonly")  # the same Ольга in both: one contact, two references
    olga = contact_of(hub, "olga@example.ru")
    out = run("gdpr", "erase", str(olga), "--delete-in-crm", "--yes", language="en").output
    assert "  legacy 1: deleted in legacy\n" in out and 1 not in old.contacts
    assert "  readonly 1: readonly cannot erase contacts through Hub: erase the person there by hand\n" in out
    assert audited(hub) == [{"results": [{"source": "legacy", "result": "deleted"},
                                         {"source": "readonly", "result": "cannot erase"}]}]
    # Without the flag nothing is asked of the CRMs, and a second erasure has nothing left to ask about.
    petr = contact_of(hub, "petr@example.ru")
    run("gdpr", "erase", str(petr), "--yes")
    assert 2 in old.contacts and len(audited(hub)) == 1
    again = json.loads(run("gdpr", "erase", str(olga), "--delete-in-crm", "--yes", "--json").stdout)
    assert again["already_erased"] and again["sources"] == []


def test_describe_names_every_outcome_in_words(hub: HubDB) -> None:
    from hub.i18n import use_language

    with use_language("ru"):
        assert erasure.describe({"source": "amocrm", "result": "gone"}) == "в amoCRM его уже нет"
        assert erasure.describe({"source": "bitrix24", "result": "failed: 503"}) == "не удалён в Битрикс24: 503"
    with use_language("en"):
        assert erasure.describe({"source": "x", "result": "cannot erase"}).startswith("x cannot erase contacts")


# --- the admin's erase form ---------------------------------------------------------------------

def test_the_admin_chooses_to_erase_in_the_crm_too_and_reads_its_answer(admin_env: AdminEnv,
                                                                        plugin_manager: Any) -> None:
    crm = crm_with(plugin_manager, "shopcrm", lambda crm: ErasingSource(crm, "anonymised"))
    with admin_env.engine.begin() as conn:
        sync.write_page(conn, [ContactRecord(source="shopcrm", external_id="1", first_name="Ольга",
                                             emails=["olga@example.ru"]),
                               ContactRecord(source="shopcrm", external_id="2", first_name="Пётр",
                                             emails=["petr@example.ru"])], admin_env.settings, sync.Counts())
    olga, petr = contact_of(admin_env.db, "olga@example.ru"), contact_of(admin_env.db, "petr@example.ru")
    admin = client_as(admin_env, "admin")
    page = text(admin.get("/gdpr/person", query_string={"contact": olga}))
    assert 'name="in_crm"' in page and "Удалить и в CRM (shopcrm)" in page
    assert 'name="in_crm"' in text(admin.get(f"/contacts/{olga}"))
    assert 'name="in_crm"' not in text(admin.get("/gdpr/person", query_string={"contact": admin_env.ids["petrov_1"]}))

    for role in ("viewer", "marketer"):  # erasing stays the admin's: no form, and the POST is refused
        other = client_as(admin_env, role)
        assert 'name="in_crm"' not in text(other.get(f"/contacts/{olga}"))
        refused = post(other, f"/gdpr/person/{olga}/erase", {"confirm": "ERASE", "in_crm": "y"})
        assert refused.status_code in (302, 403) and crm.contacts[1]["first"] == "Ольга"

    done = post(admin, f"/gdpr/person/{olga}/erase", {"confirm": "ERASE", "in_crm": "y"}, follow_redirects=True)
    assert "В CRM: обезличен в shopcrm: API shopcrm не удаляет контакты" in text(done)
    assert crm.contacts[1]["first"] == "Удалённый контакт"

    post(admin, "/language", {"language": "en"})
    kept = post(admin, f"/gdpr/person/{petr}/erase", {"confirm": "ERASE"}, follow_redirects=True)
    assert f"Erased contact #{petr}" in text(kept) and "In the CRM" not in text(kept)
    assert crm.contacts[2]["first"] == "Пётр"  # not ticked: the CRM keeps its copy


# --- against the Bitrix24 emulator ----------------------------------------------------------------

def test_an_erased_contact_disappears_from_the_bitrix24_portal_and_never_comes_back(hub: HubDB,
                                                                                     plugin_manager: Any) -> None:
    import datetime as dt

    import plugins.bitrix24 as bitrix24_plugin
    from plugins.bitrix24.sandbox import Portal, SandboxServer

    plugin_manager.register(bitrix24_plugin, name="bitrix24")
    bitrix24_plugin.register_commands(cli)
    server = SandboxServer(Portal(contacts=10, seed=4, today=dt.date(2026, 12, 1))).start()
    try:
        run("connect", "bitrix24", "--webhook", server.webhook_url)
        run("sync", "bitrix24", "--full")
        with hub.engine.connect() as conn:
            contact_id, external_id = conn.execute(select(ExternalRef.contact_id, ExternalRef.external_id)
                                                   .where(ExternalRef.source == "bitrix24")
                                                   .order_by(ExternalRef.id)).first()  # type: ignore[misc]
        out = run("gdpr", "erase", str(contact_id), "--delete-in-crm", "--yes").output
        assert f"  bitrix24 {external_id}: удалён в Битрикс24\n" in out
        assert int(external_id) not in server.portal.contact_ids()
        assert audited(hub) == [{"results": [{"source": "bitrix24", "result": "deleted"}]}]
        again = json.loads(run("sync", "bitrix24", "--full", "--json").stdout)
        assert again["contacts"]["created"] == 0
        with hub.engine.connect() as conn:
            assert conn.execute(select(ExternalRef.id).where(ExternalRef.source == "bitrix24",
                                                             ExternalRef.external_id == external_id)).first() is None
    finally:
        server.stop()
        server.portal.close()
