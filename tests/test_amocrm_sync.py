"""amoCRM end to end against the emulator: connect, sync, change, webhooks, write-back, resume."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from typing import Any, Iterator

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import func, select
from werkzeug.serving import make_server

import plugins.amocrm
from hub import contacts, sync
from hub.admin import create_app
from hub.models import Contact, ExternalRef, Order, SyncRun, SyncState
from hub.normalize import phones as normalize_phones
from plugins.amocrm import commands, tokens
from plugins.amocrm.client import DEFAULT_CONCURRENCY
from plugins.amocrm.sandbox import Account, SandboxServer
from plugins.amocrm.sandbox.data import BIRTHDAY, CITY, INTERESTS, LEAD_SOURCE, POSITION
from plugins.amocrm.source import AmoSource
from tests.conftest import HubDB, with_settings
from tests.support.cli import cli
from tests.transport import TRANSPORTS, Transport, use_transport


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    account = Account(contacts=300, seed=5)
    with SandboxServer(account) as server:
        yield server
    account.close()


@pytest.fixture
def amo(plugin_manager: Any) -> Any:
    plugin_manager.register(plugins.amocrm)
    return plugin_manager


def connect(db: HubDB, server: SandboxServer) -> dict[str, Any]:
    pair = server.account.issue_tokens()
    tokens.save(db.engine, db.settings, tokens.oauth_connection(
        server.base_url, server.client_id, server.client_secret, server.redirect_uri,
        access_token=pair["access_token"], refresh_token=pair["refresh_token"]))
    commands.account_details(db.settings)
    return pair


def api(server: SandboxServer, method: str, path: str, body: Any = None) -> Any:
    """A change made in amoCRM by someone else: another integration, with a rate limit of its own.

    With Hub's own token these requests would share Hub's 7 a second, and a
    sync that has just used them all would get a 429 for its next request.
    """
    token = (getattr(server, "_test_token", None)
             or server.account.issue_long_lived_token(client_id="another-integration"))
    server._test_token = token  # type: ignore[attr-defined]
    response = requests.request(method, server.base_url + path, json=body, headers={"Authorization": f"Bearer {token}"},
                                timeout=10)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def hub_by_ref(db: HubDB) -> dict[str, dict[str, Any]]:
    with db.engine.connect() as conn:
        return {ref["id"]: c for c in contacts.iter_contacts(conn) for ref in c["external_refs"]
                if ref["source"] == "amocrm"}


def count(db: HubDB, model: Any) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def test_connect_with_a_token_pair_then_a_full_sync_brings_every_phone_email_and_won_lead(
        hub_db: HubDB, amo: Any, sandbox: SandboxServer) -> None:
    account = sandbox.account
    pair = account.issue_tokens()
    account.expire_access_tokens()  # a day has passed since the pair was issued
    amo.hook.register_commands(cli=cli)
    runner = CliRunner()
    connected = runner.invoke(cli, ["connect", "amocrm", "--base-url", sandbox.base_url, "--client-id",
                                    sandbox.client_id, "--client-secret", sandbox.client_secret, "--redirect-uri",
                                    sandbox.redirect_uri, "--access-token", pair["access_token"],
                                    "--refresh-token", pair["refresh_token"]])
    assert connected.exit_code == 0, connected.output
    assert "Подключено к аккаунту amoCRM hubsandbox" in connected.output and "/hooks/amocrm/" in connected.output
    synced = runner.invoke(cli, ["sync", "amocrm", "--json"])
    assert synced.exit_code == 0, synced.output
    report = json.loads(synced.output)
    for secret in (pair["access_token"], pair["refresh_token"], sandbox.client_secret):
        assert secret not in connected.output and secret not in synced.output
    assert report["kind"] == "full" and report["errors"] == 0 and report["rate_limited"] == 0
    assert report["contacts"]["created"] + report["contacts"]["merged"] <= account.contacts_count
    assert report["orders"]["created"] == account.leads_count

    held = hub_by_ref(hub_db)
    assert set(held) == {str(i) for i in account.contact_ids()}
    for contact_id in account.contact_ids():
        row = account.contact(contact_id)
        assert row is not None
        mine = held[str(contact_id)]
        for entry in row["custom_fields_values"] or []:
            for value in entry["values"]:
                if entry["field_code"] == "PHONE":
                    for phone in normalize_phones(value["value"]):
                        assert phone.value in (mine["phones"] if phone.valid else mine["invalid_phones"])
                if entry["field_code"] == "EMAIL" and "@" in value["value"]:
                    assert value["value"].strip().lower() in mine["emails"] + mine.get("invalid_emails", [])
    won = [lead for lead in (account.lead(i, with_contacts=True) for i in account.lead_ids())
           if lead and lead["status_id"] == 142 and lead["_embedded"].get("contacts")]
    assert won
    with hub_db.engine.connect() as conn:
        stored_won = set(conn.execute(select(Order.external_id).where(Order.status == "won")).scalars())
        linked = dict(conn.execute(select(Order.external_id, Order.contact_id).where(Order.status == "won")).all())
    assert {str(lead["id"]) for lead in won} <= stored_won
    for lead in won:
        main = next(c for c in lead["_embedded"]["contacts"] if c["is_main"])
        assert linked[str(lead["id"])] == held[str(main["id"])]["id"]
    assert account.stats()["refreshes"] == 1


def test_a_full_sync_brings_the_birthday_the_city_the_tags_and_the_accounts_own_fields(
        hub_db: HubDB, amo: Any, sandbox: SandboxServer) -> None:
    account = sandbox.account
    connect(hub_db, sandbox)
    sync.run(hub_db.engine, hub_db.settings, "amocrm", full=True)
    held = hub_by_ref(hub_db)
    seen: Counter[str] = Counter()
    with hub_db.engine.connect() as conn:
        for contact_id in account.contact_ids():
            mine = held[str(contact_id)]
            if len(mine["external_refs"]) > 1:
                continue  # one person in several amoCRM contacts: fields come from whichever came first
            row = account.contact(contact_id)
            assert row is not None
            fields = {f["field_id"]: [v["value"] for v in f["values"]] for f in row["custom_fields_values"] or []}
            attributes = (contacts.card(conn, mine["id"]) or {})["attributes"]
            assert {tag["name"] for tag in row["_embedded"]["tags"]} <= set(mine["tags"])
            if BIRTHDAY.id in fields:  # midnight in Moscow, as unix seconds
                moment = dt.datetime.fromtimestamp(fields[BIRTHDAY.id][0], dt.timezone.utc) + dt.timedelta(hours=3)
                assert mine["birthday"] == moment.date().isoformat()
                seen["birthday"] += 1
            if CITY.id in fields and fields[CITY.id][0].strip():
                assert mine["city"] == fields[CITY.id][0].strip()
                seen["city"] += 1
            for field, key in ((POSITION, "POSITION"), (LEAD_SOURCE, "Источник"), (INTERESTS, "Интересы")):
                if field.id in fields:
                    values = fields[field.id]
                    several = len(values) > 1 or field.type == "multiselect"  # a multiselect is always a list
                    assert attributes[key] == (values if several else values[0])
                    seen[key if len(values) == 1 else f"{key} (several)"] += 1
            assert not {"Город", "День рождения", "PHONE", "EMAIL"} & set(attributes)
    assert {"birthday", "city", "POSITION", "Источник", "Интересы", "Интересы (several)"} <= set(seen)


def test_changes_and_deletions_arrive_in_an_incremental_sync_of_three_requests(
        hub_db: HubDB, amo: Any, sandbox: SandboxServer) -> None:
    account = sandbox.account
    connect(hub_db, sandbox)
    sync.run(hub_db.engine, hub_db.settings, "amocrm", full=True)
    changed, gone = account.contact_ids()[:2]
    lost_lead = account.lead_ids()[0]
    api(sandbox, "PATCH", "/api/v4/contacts", [{"id": changed, "first_name": "Изменённая", "custom_fields_values": [
        {"field_code": "PHONE", "values": [{"value": "+7 999 123-45-67", "enum_code": "MOB"}]}]}])
    made = api(sandbox, "POST", "/api/v4/contacts", [{"first_name": "Новая", "last_name": "Клиентка",
                                                      "custom_fields_values": [{"field_code": "EMAIL", "values": [
                                                          {"value": "new.client@example.ru", "enum_code": "WORK"}]}]}])
    new_id = str(made["_embedded"]["contacts"][0]["id"])
    account.delete_contact(gone)
    account.delete_lead(lost_lead)
    account.reset_stats()

    report = sync.run(hub_db.engine, hub_db.settings, "amocrm")

    assert report.kind == "incremental"
    # Three for the contacts and leads; one each for changed companies, calls of contacts, of
    # companies and of leads, and tasks (field definitions are read again only when an hour old).
    assert account.stats()["by_path"] == {"GET /api/v4/contacts": 1, "GET /api/v4/events": 1,
                                          "GET /api/v4/leads": 1, "GET /api/v4/companies": 1,
                                          "GET /api/v4/contacts/notes": 1, "GET /api/v4/companies/notes": 1,
                                          "GET /api/v4/leads/notes": 1, "GET /api/v4/tasks": 1}
    assert report.counts.contacts["created"] == 1 and report.counts.contacts["deleted"] == 1
    assert report.counts.orders["deleted"] == 1
    held = hub_by_ref(hub_db)
    assert held[str(changed)]["first_name"] == "Изменённая" and "+79991234567" in held[str(changed)]["phones"]
    assert held[new_id]["emails"] == ["new.client@example.ru"]
    assert str(gone) not in held
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(Order.id).where(Order.external_id == str(lost_lead))).first() is None


def test_a_run_stopped_by_a_block_resumes_from_its_last_page_without_duplicates(
        hub_db: HubDB, amo: Any) -> None:
    account = Account(contacts=3000, seed=9)  # 12 pages of contacts: more than the client reads ahead
    with SandboxServer(account) as server:
        connect(hub_db, server)
        pages: list[int] = []

        def progress(entity: str, n: int) -> None:
            if not n or entity != "contacts":  # the line shown before the first page; other entities' pages
                return
            pages.append(n)
            if entity == "contacts" and len(pages) == 2:
                account.block(600)  # amoCRM blocks the account: every request now gets an HTML 403

        with pytest.raises(sync.SyncError, match="заблокировал доступ к API"):
            sync.run(hub_db.engine, hub_db.settings, "amocrm", full=True, progress=progress)
        blocked = account.stats()
        # Stopped at the first 403, never hammered: only requests already on the wire beside it may meet
        # the block too (the client keeps a few pages in flight).
        assert 1 <= blocked["blocked"] <= DEFAULT_CONCURRENCY
        with hub_db.engine.connect() as conn:
            failed = conn.execute(select(SyncRun.status)).scalar_one()
            state = conn.execute(select(SyncState.full_cursor).where(SyncState.entity == "contacts")).scalar_one()
        reached = int(json.loads(state)["page"])
        assert failed == "failed" and reached >= 2

        account.block(0)
        account.reset_stats()
        sync.run(hub_db.engine, hub_db.settings, "amocrm")
        asked = account.stats()["by_path"]["GET /api/v4/contacts"]
    contact_pages = -(-account.contacts_count // 250)
    assert asked <= contact_pages - reached + 4  # went on after the saved page (+ the pages read ahead past the end)
    assert count(hub_db, ExternalRef) == account.contacts_count
    assert count(hub_db, Order) == account.leads_count
    with hub_db.engine.connect() as conn:
        refs = conn.execute(select(ExternalRef.external_id)).scalars().all()
    assert len(refs) == len(set(refs))


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, hub_db: HubDB, monkeypatch: pytest.MonkeyPatch) -> Transport:
    return use_transport(request, hub_db.settings, monkeypatch)


def test_a_webhook_from_the_account_brings_the_record_in(hub_db: HubDB, amo: Any, sandbox: SandboxServer,
                                                       transport: Transport, caplog: pytest.LogCaptureFixture) -> None:
    connect(hub_db, sandbox)
    stored, _ = tokens.load(hub_db.engine, hub_db.settings)
    web = make_server("127.0.0.1", 0, create_app(transport.settings), threaded=True)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        sandbox.account.register_webhook(f"http://127.0.0.1:{web.server_port}/hooks/amocrm/{stored['webhook_secret']}")
        made = api(sandbox, "POST", "/api/v4/contacts", [{"first_name": "Из", "last_name": "Вебхука",
                                                          "custom_fields_values": [{"field_code": "PHONE", "values": [
                                                              {"value": "8 (912) 555-00-11", "enum_code": "MOB"}]}]}])
        new_id = str(made["_embedded"]["contacts"][0]["id"])
        assert sandbox.account.wait_for_webhooks()
        transport.run_jobs()
        assert hub_by_ref(hub_db)[new_id]["phones"] == ["+79125550011"]
        sandbox.account.delete_contact(int(new_id))
        assert sandbox.account.wait_for_webhooks()
        transport.run_jobs()
        assert new_id not in hub_by_ref(hub_db)
        deliveries = sandbox.account.webhook_deliveries
        assert deliveries and all(d.get("status") == 200 for d in deliveries)
        assert "POST /hooks/amocrm/…" in caplog.text and stored["webhook_secret"] not in caplog.text
    finally:
        web.shutdown()
        web.server_close()
    with hub_db.engine.connect() as conn:
        kinds = conn.execute(select(SyncRun.kind, SyncRun.status)).all()
    assert kinds and all(k == ("event", "ok") for k in kinds)
    assert count(hub_db, Contact) == 1


def test_write_back_sets_a_field_adds_a_note_and_a_task_for_the_manager(
        hub_db: HubDB, amo: Any, sandbox: SandboxServer) -> None:
    import datetime as dt

    connect(hub_db, sandbox)
    settings = with_settings(hub_db.settings, extra={**hub_db.settings.extra, "amocrm": {"fields": {"city": CITY.id}}})
    source = AmoSource(settings)
    target = sandbox.account.contact_ids()[3]
    manager = sandbox.account.contact(target)["responsible_user_id"]
    assert source.set_field(str(target), "city", "Казань") == str(target)
    row = sandbox.account.contact(target)
    assert {"field_id": CITY.id, "values": ["Казань"]} in [
        {"field_id": f["field_id"], "values": [v["value"] for v in f["values"]]} for f in row["custom_fields_values"]]
    note_id = source.add_comment(str(target), "Промокод SALE-10 выдан")
    task_id = source.add_task(str(target), "Позвонить клиенту", due_at=dt.datetime.now(dt.timezone.utc)
                              + dt.timedelta(days=1))
    (note,) = [n for n in sandbox.account.notes if str(n["id"]) == note_id]
    (task,) = [t for t in sandbox.account.tasks if str(t["id"]) == task_id]
    assert note["entity_id"] == target and note["params"]["text"] == "Промокод SALE-10 выдан"
    assert task["entity_id"] == target and task["responsible_user_id"] == manager
    assert all(set(p["body"][0]) <= {"id", "custom_fields_values"} for p in sandbox.account.patches
               if isinstance(p.get("body"), list))


@pytest.mark.parametrize("mode", ["drop", "truncate"])
def test_answers_cut_off_mid_body_are_asked_again_and_the_sync_completes(
        hub_db: HubDB, amo: Any, sandbox: SandboxServer, mode: str) -> None:
    connect(hub_db, sandbox)
    account = sandbox.account
    account.cut_answers(1, path="/api/v4/contacts", mode=mode)
    account.cut_answers(1, path="/api/v4/leads", mode=mode)
    report = sync.run(hub_db.engine, hub_db.settings, "amocrm", full=True).as_dict()
    assert account.stats()["answers_cut"] == 2
    assert report["errors"] == 0 and report["retries"] >= 2
    assert count(hub_db, ExternalRef) == account.contacts_count
    assert count(hub_db, Order) == account.leads_count
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(SyncRun.status)).scalar_one() == "ok"


def test_reconcile_marks_what_the_account_no_longer_lists(hub_db: HubDB, amo: Any, sandbox: SandboxServer) -> None:
    connect(hub_db, sandbox)
    sync.run(hub_db.engine, hub_db.settings, "amocrm", full=True)
    gone_contact = sandbox.account.contact_ids()[7]
    gone_lead = sandbox.account.lead_ids()[5]
    sandbox.account.delete_contact(gone_contact)
    sandbox.account.delete_lead(gone_lead)
    report = sync.reconcile(hub_db.engine, hub_db.settings, "amocrm")
    assert report.counts.contacts["deleted"] == 1 and report.counts.orders["deleted"] == 1
    assert str(gone_contact) not in hub_by_ref(hub_db)
    assert report.extra["requests"] >= 2 and report.extra["rate_limited"] == 0
