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
from hub import queue, sync
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
    assert audited(hub) == [{"results": [{"source": name, "external_id": "1", "result": answer}]}]
    again = run("gdpr", "erase", str(olga), "--delete-in-crm", "--yes").output  # done: nothing more to ask
    assert f"Все CRM, где был контакт №{olga}, уже подтвердили удаление." in again and len(audited(hub)) == 1
    if answer == "deleted":
        assert 1 not in crm.contacts and 2 in crm.contacts
    else:
        assert crm.contacts[1]["emails"] == [] and crm.contacts[1]["first"] == "Удалённый контакт"


PHONE, NAME = "+7 916 000-00-01", "Ольга"


def test_a_crm_that_refuses_is_told_and_a_later_sync_still_keeps_the_person_out(hub: HubDB,
                                                                                  plugin_manager: Any) -> None:
    # The CRM's own text echoes her phone and name: it reaches neither the audit log nor the output.
    crm = crm_with(plugin_manager, "bitrix24", lambda crm: ErasingSource(crm, PermissionError(
        f"ACCESS_DENIED: the webhook has no right to delete {NAME} {PHONE}")))
    sync.run(hub.engine, hub.settings, "bitrix24")
    olga = contact_of(hub, "olga@example.ru")
    result = run("gdpr", "erase", str(olga), "--delete-in-crm", "--yes", "--json", code=1)
    data = json.loads(result.stdout)
    assert data["sources"] == [{"source": "bitrix24", "external_id": "1", "result": "failed: not allowed"}]
    assert data["crm_failed"] is True and data["crm"] == "asked"
    assert audited(hub) == [{"results": [{"source": "bitrix24", "external_id": "1", "result": "failed: not allowed"}]}]
    assert PHONE not in result.output and NAME not in result.output
    assert_audit_log_holds_no(hub, PHONE, "916 000", NAME)
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


def test_a_crm_that_was_down_is_asked_again_by_a_rerun(hub: HubDB, plugin_manager: Any) -> None:
    import requests

    sources: list[ErasingSource] = []

    def make(crm: FakeCRM) -> ErasingSource:
        source = ErasingSource(crm, answers[0])
        sources.append(source)
        return source

    answers: list[str | Exception] = [requests.ConnectionError(f"no route to host; contact {NAME}, {PHONE}")]
    crm = crm_with(plugin_manager, "bitrix24", make)
    sync.run(hub.engine, hub.settings, "bitrix24")
    olga = contact_of(hub, "olga@example.ru")
    down = run("gdpr", "erase", str(olga), "--delete-in-crm", "--yes", code=1)
    assert "  bitrix24 1: не удалён в Битрикс24: CRM недоступна, повторите удаление позже\n" in down.output
    assert "запустите эту команду с --delete-in-crm ещё раз" in down.output
    assert PHONE not in down.output and 1 in crm.contacts
    assert_audit_log_holds_no(hub, PHONE, NAME)

    answers[0] = "deleted"  # the portal is back
    up = run("gdpr", "erase", str(olga), "--delete-in-crm", "--yes")
    assert "  bitrix24 1: удалён в Битрикс24\n" in up.output and 1 not in crm.contacts
    assert [d["results"] for d in audited(hub)] == [
        [{"source": "bitrix24", "external_id": "1", "result": "failed: unreachable"}],
        [{"source": "bitrix24", "external_id": "1", "result": "deleted"}]]
    done = json.loads(run("gdpr", "erase", str(olga), "--delete-in-crm", "--yes", "--json").stdout)
    assert done["crm"] == "all_erased" and done["sources"] == [] and len(audited(hub)) == 2


def test_a_person_erased_without_the_flag_can_be_erased_in_the_crm_later(hub: HubDB, plugin_manager: Any) -> None:
    crm = crm_with(plugin_manager, "bitrix24", lambda crm: ErasingSource(crm, "deleted"))
    sync.run(hub.engine, hub.settings, "bitrix24")
    olga = contact_of(hub, "olga@example.ru")
    run("gdpr", "erase", str(olga), "--yes")
    assert 1 in crm.contacts and audited(hub) == []
    with hub.engine.connect() as conn:  # the references are gone from Hub; the audit entry keeps the way to reach her
        assert conn.execute(select(ExternalRef.id).where(ExternalRef.contact_id == olga)).first() is None
    later = json.loads(run("gdpr", "erase", str(olga), "--delete-in-crm", "--yes", "--json").stdout)
    assert later["already_erased"] and later["sources"] == [
        {"source": "bitrix24", "external_id": "1", "result": "deleted"}]
    assert 1 not in crm.contacts and 2 in crm.contacts


def test_hub_says_plainly_when_it_knows_no_crm_record_of_the_person(hub: HubDB) -> None:
    with hub.engine.begin() as conn:
        sync.write_page(conn, [], hub.settings, sync.Counts())
        anna = conn.execute(Contact.__table__.insert().values(first_name="Анна").returning(Contact.id)).scalar_one()
    out = run("gdpr", "erase", str(anna), "--delete-in-crm", "--yes", language="en").output
    assert f"Hub knows no CRM record of contact #{anna}, so no CRM was asked" in out
    data = json.loads(run("gdpr", "erase", str(anna), "--delete-in-crm", "--yes", "--json").stdout)
    assert data["crm"] == "none_known" and data["sources"] == [] and not data["crm_failed"]


def assert_audit_log_holds_no(db: HubDB, *texts: str) -> None:
    with db.engine.connect() as conn:
        stored = json.dumps([d for d in conn.execute(select(AuditEntry.details)).scalars()], ensure_ascii=False)
    for found in texts:
        assert found not in stored


class HttpError(Exception):
    """A plugin's error class carrying the HTTP status, as the CRM plugins' do."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class NeedsUserAction(HttpError):
    pass


class OutcomeUnknown(HttpError):
    pass


class PortalUnreachable(HttpError):
    pass


def test_a_failure_is_kept_as_its_kind_never_as_the_crm_text() -> None:
    import requests

    gone = requests.Response()
    gone.status_code = 404
    cases = [
        (requests.ConnectionError(PHONE), "unreachable"), (requests.Timeout(PHONE), "unreachable"),
        (TimeoutError(PHONE), "unreachable"), (PortalUnreachable(PHONE), "unreachable"),
        (HttpError(PHONE, status=503), "unreachable"), (HttpError(PHONE, status=429), "unreachable"),
        (PermissionError(PHONE), "not allowed"), (NeedsUserAction(PHONE), "not allowed"),
        (HttpError(PHONE, status=403), "not allowed"), (HttpError(PHONE, code="ACCESS_DENIED"), "not allowed"),
        (requests.HTTPError(PHONE, response=gone), "refused"), (HttpError(PHONE, status=400), "refused"),
        (HttpError(PHONE), "refused"), (OutcomeUnknown(PHONE, status=500), "outcome unknown"),
        (ValueError(PHONE), "error"), (KeyError(PHONE), "error"),
    ]
    assert [(type(e).__name__, erasure.failure(e)) for e, _ in cases] == [(type(e).__name__, k) for e, k in cases]


def test_older_plugins_and_sources_that_cannot_erase(hub: HubDB, plugin_manager: Any) -> None:
    old = crm_with(plugin_manager, "legacy", OldDeletingSource)
    crm_with(plugin_manager, "readonly", Named)
    sync.run(hub.engine, hub.settings, "legacy")
    sync.run(hub.engine, hub.settings, "readonly")  # the same Ольга in both: one contact, two references
    olga = contact_of(hub, "olga@example.ru")
    out = run("gdpr", "erase", str(olga), "--delete-in-crm", "--yes", language="en").output
    assert "  legacy 1: deleted in legacy\n" in out and 1 not in old.contacts
    assert "  readonly 1: readonly cannot erase contacts through Hub: erase the person there by hand\n" in out
    assert audited(hub) == [{"results": [{"source": "legacy", "external_id": "1", "result": "deleted"},
                                         {"source": "readonly", "external_id": "1", "result": "cannot erase"}]}]
    # Without the flag nothing is asked of the CRMs; a later run with it asks them.
    petr = contact_of(hub, "petr@example.ru")
    run("gdpr", "erase", str(petr), "--yes")
    assert 2 in old.contacts and len(audited(hub)) == 1
    run("gdpr", "erase", str(petr), "--delete-in-crm", "--yes")
    assert 2 not in old.contacts
    # Asked again, only the CRM that has not confirmed is asked; "cannot erase" is told, not an error.
    again = json.loads(run("gdpr", "erase", str(olga), "--delete-in-crm", "--yes", "--json").stdout)
    assert again["already_erased"] and [(s["source"], s["result"]) for s in again["sources"]] == [
        ("readonly", "cannot erase")]


def test_describe_names_every_outcome_in_words(hub: HubDB) -> None:
    from hub.i18n import use_language

    with use_language("ru"):
        assert erasure.describe({"source": "amocrm", "result": "gone"}) == "в amoCRM его уже нет"
        assert erasure.describe({"source": "bitrix24", "result": "failed: not allowed"}) == \
            "не удалён в Битрикс24: у подключения Hub нет права удалять там контакты"
        # An older entry's free text is never shown: only what kind of failure it was.
        assert erasure.describe({"source": "bitrix24", "result": "failed: ACCESS_DENIED +7 916 000-00-01"}) == \
            "не удалён в Битрикс24: ошибка в модуле этой CRM (подробности — в журнале Hub)"
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

    # "0" and "no" are a script's no: nothing is asked of the CRM, and it can be asked later.
    for no in ("0", "no"):
        post(admin, f"/gdpr/person/{olga}/erase", {"confirm": "ERASE", "in_crm": no})
        assert crm.contacts[1]["first"] == "Ольга"
    queue.drain(timeout=60)
    assert crm.contacts[1]["first"] == "Ольга" and not audited(admin_env.db)

    # Asked later, a worker asks the CRM: the page answers at once, and the answer goes to the audit log.
    done = post(admin, f"/gdpr/person/{olga}/erase", {"confirm": "ERASE", "in_crm": "y"}, follow_redirects=True)
    assert "Запрос в CRM отправлен, результат — в журнале действий." in text(done)
    queue.drain(timeout=60)
    assert crm.contacts[1]["first"] == "Удалённый контакт"
    assert audited(admin_env.db) == [{"results": [{"source": "shopcrm", "external_id": "1", "result": "anonymised"}]}]
    # The journal the page points to reads the answer and the erasures as sentences, not stored keys.
    journal = text(admin.get("/users/audit"))
    assert "обезличен в shopcrm: API shopcrm не удаляет контакты" in journal
    assert "остался в shopcrm: удалить там не просили" in journal  # the erasures with "no"
    assert "CRM попросили удалить человека и у себя" in journal
    assert "удалено: 1 телефон или email" in journal
    assert "external_id" not in journal and "anonymised" not in journal and "crm_refs" not in journal

    post(admin, "/language", {"language": "en"})
    kept = post(admin, f"/gdpr/person/{petr}/erase", {"confirm": "ERASE"}, follow_redirects=True)
    assert f"Erased contact #{petr}" in text(kept) and "In the CRM" not in text(kept)
    assert crm.contacts[2]["first"] == "Пётр"  # not ticked: the CRM keeps its copy
    journal = text(admin.get("/users/audit"))
    assert "still in shopcrm: not asked to erase there" in journal and "removed: 1 phone or email" in journal


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
        assert audited(hub) == [{"results": [{"source": "bitrix24", "external_id": external_id, "result": "deleted"}]}]
        again = json.loads(run("sync", "bitrix24", "--full", "--json").stdout)
        assert again["contacts"]["created"] == 0
        with hub.engine.connect() as conn:
            assert conn.execute(select(ExternalRef.id).where(ExternalRef.source == "bitrix24",
                                                             ExternalRef.external_id == external_id)).first() is None
    finally:
        server.stop()
        server.portal.close()
