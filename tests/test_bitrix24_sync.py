"""Bitrix24 end to end, as a user meets it: connect, full sync, changes, deletions, events, write-back.

Every test talks HTTP to the plugin's own portal emulator (plugins/bitrix24/sandbox/),
which follows the documented protocol, limits and quirks.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import replace
from decimal import Decimal
from typing import Any, Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from werkzeug.serving import make_server

import plugins.bitrix24 as bitrix24_plugin
from hub import contacts, normalize, sampledata, sync, writeback
from hub.admin import create_app
from hub.models import Contact, ExternalRef, Order
from plugins.bitrix24 import connection
from plugins.bitrix24.client import Bitrix24Error, Client
from plugins.bitrix24.sandbox import Portal, SandboxServer
from plugins.bitrix24.source import Bitrix24Source
from tests.conftest import HubDB
from tests.support.cli import cli, run_ok
from tests.transport import TRANSPORTS, Transport, use_transport

TODAY = dt.date(2025, 6, 1)
PEOPLE = 240
SEED = 11


@pytest.fixture
def portal() -> Iterator[SandboxServer]:
    server = SandboxServer(Portal(contacts=PEOPLE, seed=SEED, today=TODAY)).start()
    yield server
    server.stop()
    server.portal.close()


@pytest.fixture
def hub(hub_db: HubDB, plugin_manager: Any) -> HubDB:
    plugin_manager.register(bitrix24_plugin, name="bitrix24")
    bitrix24_plugin.register_commands(cli)
    return hub_db


def connect(server: SandboxServer, *extra: str) -> None:
    run_ok("connect", "bitrix24", "--webhook", server.webhook_url, *extra)


def sync_json(*extra: str) -> dict[str, Any]:
    return json.loads(run_ok("sync", "bitrix24", "--json", *extra).output)


def hub_card(db: HubDB, external_id: int) -> dict[str, Any]:
    with db.engine.connect() as conn:
        contact_id = conn.execute(select(ExternalRef.contact_id).where(
            ExternalRef.source == "bitrix24", ExternalRef.external_id == str(external_id))).scalar_one()
        (card,) = contacts.iter_contacts(conn, ids=[contact_id])
    return card


def test_connect_checks_the_webhook_and_never_prints_its_code(hub: HubDB, portal: SandboxServer) -> None:
    result = run_ok("connect", "bitrix24", "--webhook", portal.webhook_url)
    assert "Подключено к Битрикс24 127.0.0.1" in result.output and "Дальше: hub sync bitrix24" in result.output
    assert portal.portal.webhook.code not in result.output
    wrong = portal.webhook_url.replace(portal.portal.webhook.code, "wrongcode123")
    failed = CliRunner().invoke(cli, ["connect", "bitrix24", "--webhook", wrong])
    assert failed.exit_code == 1 and "hub connect bitrix24" in failed.output and "wrongcode123" not in failed.output


def test_full_sync_brings_every_contact_phone_email_and_won_deal(hub: HubDB, portal: SandboxServer) -> None:
    connect(portal)
    report = sync_json("--full")
    people = {p.person_id: p for p in sampledata.people(PEOPLE, SEED, today=TODAY)}
    assert report["contacts"]["created"] + report["contacts"]["merged"] <= PEOPLE
    assert report["rate_limited"] == 0 and report["errors"] == 0
    # One request for the directories (custom fields, funnels, stages), one per entity, one for the
    # companies' requisites and one for the contacts' companies: a request brings up to 2,500 records.
    listed = PEOPLE + portal.portal.deal_count + portal.portal.company_count + portal.portal.activity_count
    assert report["requests"] <= 7 + listed // 2000
    for contact_id, person_id in portal.portal.contact_person.items():
        person, card, held = people[person_id], hub_card(hub, contact_id), portal.portal.contact(contact_id)
        assert set(person.phones) <= set(card["phones"]), (contact_id, person.phones, card["phones"])
        # Every email the portal holds arrives: normalized, or kept as typed and flagged when broken.
        for value in (e["VALUE"] for e in held.get("EMAIL", [])):
            (ident,) = normalize.emails(value)
            assert ident.value in (card["emails"] if ident.valid else card["invalid_emails"])
        won = [o for o in person.orders if o.status == "won"]
        assert card["orders_count"] == len(won)
        assert Decimal(str(card["revenue"])) == sum((o.amount for o in won), Decimal(0))
    with hub.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Order)).scalar_one() == portal.portal.deal_count


def test_incremental_sync_brings_changes_and_deletions_in_few_requests(hub: HubDB, portal: SandboxServer) -> None:
    connect(portal)
    sync_json("--full")
    p = portal.portal
    ids = sorted(p.contact_ids())
    p.update_contact(ids[0], {"PHONE": [{"VALUE": "+7 (999) 111-22-33", "VALUE_TYPE": "MOBILE"}]})
    p.update_contact(ids[1], {"EMAIL": [{"VALUE": "New.Address@Example.RU", "VALUE_TYPE": "WORK"}]})
    new_id = p.add_contact({"NAME": "Новый", "LAST_NAME": "Клиент", "PHONE": [{"VALUE": "89990001122",
                                                                             "VALUE_TYPE": "WORK"}]})
    p.add_deal({"TITLE": "Новая покупка", "CONTACT_ID": new_id, "STAGE_ID": "WON", "OPPORTUNITY": "2500",
                "CURRENCY_ID": "RUB"})
    p.delete_contact(ids[2])
    report = sync_json("--reconcile")
    assert report["contacts"]["created"] == 1 and report["contacts"]["deleted"] == 1
    assert report["orders"]["created"] == 1
    assert "+79991112233" in hub_card(hub, ids[0])["phones"]
    assert "new.address@example.ru" in hub_card(hub, ids[1])["emails"]
    card = hub_card(hub, new_id)
    assert card["phones"] == ["+79990001122"] and card["orders_count"] == 1
    with hub.engine.connect() as conn:
        gone = conn.execute(select(ExternalRef.deleted_at).where(
            ExternalRef.source == "bitrix24", ExternalRef.external_id == str(ids[2]))).scalar_one()
    assert gone is not None


def test_a_small_incremental_sync_costs_one_request_per_entity(hub: HubDB, portal: SandboxServer) -> None:
    connect(portal)
    sync_json("--full")
    for contact_id in sorted(portal.portal.contact_ids())[:100]:
        portal.portal.update_contact(contact_id, {"COMMENTS": "touched"})
    report = sync_json()
    # The directories, then companies, contacts (and their companies), deals and activities changed
    # since the last run.
    assert report["requests"] <= 6
    assert report["contacts"]["updated"] + report["contacts"]["created"] <= 100


def test_a_killed_full_sync_resumes_without_duplicates(hub: HubDB, portal: SandboxServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    connect(portal)
    real_batch = Client.batch
    calls = {"n": 0}

    def dies_on_second_batch(self: Client, commands: Any, **kwargs: Any) -> Any:
        listing = any(c.startswith("crm.contact.list") for c in commands.values())
        calls["n"] += listing
        if listing and calls["n"] == 2:
            raise ConnectionError("network went away")
        return real_batch(self, commands, **kwargs)

    # Small pages so the run is several batches long.
    monkeypatch.setattr("plugins.bitrix24.client.MAX_BATCH", 2)
    monkeypatch.setattr(Client, "batch", dies_on_second_batch)
    failed = CliRunner().invoke(cli, ["sync", "bitrix24", "--full"])
    assert failed.exit_code == 1 and "следующий запуск продолжит с последней сохранённой страницы" in failed.output
    with hub.engine.connect() as conn:
        after_first = conn.execute(select(func.count()).select_from(ExternalRef)).scalar_one()
    assert after_first == 100  # one batch of two pages was committed
    report = sync_json()
    with hub.engine.connect() as conn:
        refs = conn.execute(select(func.count()).select_from(ExternalRef)).scalar_one()
        orders = conn.execute(select(func.count()).select_from(Order)).scalar_one()
    assert refs == PEOPLE and orders == portal.portal.deal_count
    assert report["contacts"]["created"] + report["contacts"]["merged"] + after_first >= PEOPLE - 5


@pytest.mark.parametrize("mode", ["drop", "truncate"])
def test_answers_cut_off_mid_body_are_asked_again_and_the_sync_completes(
        hub: HubDB, portal: SandboxServer, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    connect(portal)
    monkeypatch.setattr("plugins.bitrix24.client.MAX_BATCH", 2)  # several batches, so cuts land mid-sync
    sync_json("--full")
    portal.portal.update_contact(sorted(portal.portal.contact_ids())[5], {"NAME": "Обрыв"})
    portal.portal.cut_answers(2, method="batch", mode=mode)
    report = sync_json("--full")
    assert portal.portal.stats()["answers_cut"] == 2
    assert report["errors"] == 0 and report["retries"] >= 2
    with hub.engine.connect() as conn:
        refs = conn.execute(select(func.count()).select_from(ExternalRef)).scalar_one()
        orders = conn.execute(select(func.count()).select_from(Order)).scalar_one()
    assert refs == PEOPLE and orders == portal.portal.deal_count
    assert hub_card(hub, sorted(portal.portal.contact_ids())[5])["first_name"] == "Обрыв"


def test_a_comment_whose_answer_was_cut_off_is_not_added_twice(hub: HubDB, portal: SandboxServer) -> None:
    connect(portal)
    target = sorted(portal.portal.contact_ids())[0]
    source = Bitrix24Source(hub.settings)
    portal.portal.cut_answers(1, method="crm.timeline.comment.add")
    with pytest.raises(Bitrix24Error, match="not repeated"):
        source.add_comment(str(target), "Промокод ABC")
    assert portal.portal.stats()["methods"].get("crm.timeline.comment.add") == 1


def test_the_client_keeps_inside_the_portal_bucket(hub: HubDB) -> None:
    server = SandboxServer(Portal(contacts=60, seed=3, today=TODAY, rate=20, burst=4)).start()
    try:
        settings = replace(hub.settings, extra={**hub.settings.extra, "bitrix24": {"rate": 20, "burst": 4}})
        client = connection.client(settings, hub.engine, {"kind": "webhook", "url": server.webhook_url})
        for _ in range(25):
            client.call("crm.contact.list", {"select": ["ID"], "start": -1})
        assert client.stats.rate_limited == 0 and server.portal.stats()["status_503"] == 0
    finally:
        server.stop()
        server.portal.close()


def test_oauth_app_connects_with_a_code_and_refreshes_an_expired_token(hub: HubDB) -> None:
    clock = {"now": 1_750_000_000.0}
    server = SandboxServer(Portal(contacts=30, seed=5, today=TODAY, token_lifetime=60,
                                  clock=lambda: clock["now"])).start()
    try:
        app = server.oauth_app
        run_ok("connect", "bitrix24", "--client-id", app.client_id, "--client-secret", app.client_secret,
                "--code", server.portal.authorization_code(), "--oauth-url", app.token_url)
        clock["now"] += 3600  # the access token expired
        report = sync_json("--full")
        assert report["refreshes"] == 1 and report["contacts"]["created"] > 0
        data, _ = connection.load(hub.engine, hub.settings)
        assert data["kind"] == "oauth" and data["refresh_token"]
    finally:
        server.stop()
        server.portal.close()


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, hub: HubDB, monkeypatch: pytest.MonkeyPatch) -> Transport:
    return use_transport(request, hub.settings, monkeypatch)


@pytest.fixture
def hub_server(hub: HubDB, transport: Transport) -> Iterator[str]:
    """Hub's web routes on a real port, as the portal would reach them."""
    web = make_server("127.0.0.1", 0, create_app(transport.settings), threaded=True)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{web.server_port}"
    finally:
        web.shutdown()
        web.server_close()


def test_portal_events_reach_hub_and_bring_the_changed_record(hub: HubDB, portal: SandboxServer,
                                                               hub_server: str, transport: Transport) -> None:
    token = portal.portal.add_outgoing_webhook(f"{hub_server}/hooks/bitrix24",
                                               ["ONCRMCONTACTADD", "ONCRMCONTACTUPDATE", "ONCRMCONTACTDELETE"])
    connect(portal, "--application-token", token)
    sync_json("--full")
    new_id = portal.portal.add_contact({"NAME": "Из события", "EMAIL": [{"VALUE": "event@example.ru",
                                                                         "VALUE_TYPE": "WORK"}]})
    gone = sorted(portal.portal.contact_ids())[0]
    portal.portal.delete_contact(gone)
    assert portal.portal.drain_events(timeout=10)
    transport.run_jobs()
    assert [d.status for d in portal.portal.event_deliveries][-2:] == [200, 200]
    assert hub_card(hub, new_id)["emails"] == ["event@example.ru"]
    with hub.engine.connect() as conn:
        deleted = conn.execute(select(ExternalRef.deleted_at).where(
            ExternalRef.source == "bitrix24", ExternalRef.external_id == str(gone))).scalar_one()
    assert deleted is not None


def test_write_back_adds_a_comment_a_todo_and_a_field(hub: HubDB, portal: SandboxServer) -> None:
    connect(portal)
    # A real portal holds the code in a contact UF_CRM_* field; the emulator's contacts have none, so a
    # standard field stands in for it.
    settings = replace(hub.settings, extra={**hub.settings.extra, "bitrix24": {"fields": {"promo_code": "COMMENTS"}}})
    sync.run(hub.engine, settings, "bitrix24", full=True)
    external_id = sorted(portal.portal.contact_ids())[5]
    contact_id = hub_card(hub, external_id)["id"]
    due = dt.datetime(2025, 6, 3, 9, 0, tzinfo=dt.timezone.utc)
    with hub.engine.begin() as conn:
        writeback.apply(conn, settings, contact_id, "add_comment", text="Отправлен промокод BACK-7F3K")
        (task,) = writeback.apply(conn, settings, contact_id, "add_task", first_only=True,
                                  title="Позвонить: промокод истекает", due_at=due, description="Скидка 15%")
    comments = portal.portal.timeline_comments("contact", external_id)
    assert [c["COMMENT"] for c in comments] == ["Отправлен промокод BACK-7F3K"]
    (todo,) = portal.portal.activities(3, external_id)
    assert todo["title"] == "Позвонить: промокод истекает" and str(todo["id"]) == task.result
    assert todo["responsibleId"] == int(portal.portal.contact(external_id)["ASSIGNED_BY_ID"])
    with hub.engine.begin() as conn:
        writeback.apply(conn, settings, contact_id, "set_field", name="promo_code", value="BACK-7F3K")
    assert portal.portal.contact(external_id)["COMMENTS"] == "BACK-7F3K"
    with hub.engine.begin() as conn:
        with pytest.raises(Bitrix24Error, match="no portal field configured for 'birthday_gift'"):
            writeback.apply(conn, settings, contact_id, "set_field", name="birthday_gift", value="x")


def test_write_back_needs_a_contact_that_lives_in_a_crm(hub: HubDB) -> None:
    with hub.engine.begin() as conn:
        contact_id = conn.execute(Contact.__table__.insert().values(first_name="Только", name_key="только")
                                  .returning(Contact.id)).scalar_one()
        with pytest.raises(writeback.WriteBackError, match="in no CRM that accepts write-back"):
            writeback.apply(conn, hub.settings, contact_id, "add_comment", text="x")
