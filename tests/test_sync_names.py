"""Names that arrive from the CRMs in CAPITALS ("ИВАНОВ ИВАН") are kept in normal case, as imports keep them.

The rule is hub.api.person_name, shared by both CRM mappings and the
spreadsheet import; each CRM is checked with answers in its documented shape
and end to end through its emulator.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import responses
from click.testing import CliRunner
from sqlalchemy import select

from hub import api, contacts
from hub.models import ExternalRef
from hub.normalize import person_name
from hub.ratelimit import LocalBucket
from hub.spreadsheet import _clean_name
from plugins.amocrm import commands as amocrm_commands
from plugins.amocrm import mapping as amocrm_mapping
from plugins.amocrm import tokens
from plugins.amocrm.client import AmoClient, StaticAuth
from plugins.amocrm.sandbox import Account
from plugins.amocrm.sandbox import SandboxServer as AmoServer
from plugins.bitrix24 import connection
from plugins.bitrix24 import mapping as bitrix24_mapping
from plugins.bitrix24.client import Client, WebhookAuth
from plugins.bitrix24.sandbox import Portal
from plugins.bitrix24.sandbox import SandboxServer as Bitrix24Server
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.crms import load_crm_plugins

HOOK = "https://shop.bitrix24.ru/rest/1/s3cr3tc0de/"
AMO = "https://shop.amocrm.ru"


@pytest.mark.parametrize("raw, shown", [
    ("ИВАНОВ ИВАН", "Иванов Иван"),
    ("иванов", "Иванов"),
    ("  АННА-МАРИЯ   ", "Анна-Мария"),
    ("JOHN SMITH", "John Smith"),
    ("McDonald", "McDonald"),  # written in mixed case on purpose: kept
    ("де Голль", "де Голль"),
    ("", None),
    ("   ", None),
    (None, None),
])
def test_a_name_in_capitals_or_lower_case_is_shown_in_normal_case(raw: str | None, shown: str | None) -> None:
    assert person_name(raw) == shown
    assert api.person_name is person_name  # what a plugin uses
    if raw is not None:
        assert _clean_name(raw) == (shown or "")  # imports follow the same rule


# --- answers in the documented shape ------------------------------------------------------------

@responses.activate
def test_bitrix24_contacts_in_capitals_are_mapped_in_normal_case() -> None:
    responses.post(HOOK + "crm.contact.list", json={"result": [
        {"ID": "7", "NAME": "ИВАН", "LAST_NAME": "ИВАНОВ", "SECOND_NAME": "ИВАНОВИЧ"},
        {"ID": "8", "NAME": "Ольга", "LAST_NAME": "фон Дервиз", "SECOND_NAME": None},
        {"ID": "9", "NAME": "", "LAST_NAME": "СИДОРОВА", "SECOND_NAME": "  "},
    ], "total": 3})
    client = Client(WebhookAuth(HOOK), LocalBucket(1000, 1000), sleep=lambda s: None)
    rows = client.call("crm.contact.list", {"select": bitrix24_mapping.CONTACT_FIELDS})["result"]
    names = [(r.first_name, r.middle_name, r.last_name) for r in map(bitrix24_mapping.contact, rows)]
    assert names == [("Иван", "Иванович", "Иванов"), ("Ольга", None, "фон Дервиз"), (None, None, "Сидорова")]


@responses.activate
def test_amocrm_contacts_in_capitals_are_mapped_in_normal_case() -> None:
    responses.get(AMO + "/api/v4/contacts", json={"_page": 1, "_links": {}, "_embedded": {"contacts": [
        {"id": 5, "name": "ПЁТР СИДОРОВ", "first_name": "ПЁТР", "last_name": "СИДОРОВ", "custom_fields_values": None,
         "created_at": 1717200000, "updated_at": 1717200000},
        {"id": 6, "name": "ИВАНОВ ИВАН", "first_name": "", "last_name": "", "custom_fields_values": None,
         "created_at": 1717200000, "updated_at": 1717200000},
        {"id": 7, "name": "Анна Ли", "first_name": "Анна", "last_name": "Ли", "custom_fields_values": None,
         "created_at": 1717200000, "updated_at": 1717200000},
    ]}})
    client = AmoClient(AMO, StaticAuth("tok"), LocalBucket(1000, 1000), sleep=lambda s: None)
    rows = client.get("/api/v4/contacts")["_embedded"]["contacts"]
    names = [(r.first_name, r.last_name) for r in map(amocrm_mapping.contact, rows)]
    assert names == [("Пётр", "Сидоров"), ("Иван", "Иванов"), ("Анна", "Ли")]  # a whole name is read as an ФИО


# --- end to end, through the emulators ------------------------------------------------------------

@pytest.fixture
def hub(hub_db: HubDB, plugin_manager: Any) -> HubDB:
    load_crm_plugins(plugin_manager)
    return hub_db


@pytest.fixture
def portal() -> Iterator[Bitrix24Server]:
    server = Bitrix24Server(Portal(contacts=3, seed=5)).start()
    yield server
    server.stop()
    server.portal.close()


@pytest.fixture
def account() -> Iterator[AmoServer]:
    server = AmoServer(Account(contacts=3, seed=5)).start()
    yield server
    server.stop()
    server.account.close()


def card(db: HubDB, source: str, external_id: int) -> dict[str, Any]:
    with db.engine.connect() as conn:
        contact_id = conn.execute(select(ExternalRef.contact_id).where(
            ExternalRef.source == source, ExternalRef.external_id == str(external_id))).scalar_one()
        (found,) = contacts.iter_contacts(conn, ids=[contact_id])
    return found


def sync(source: str) -> None:
    result = CliRunner().invoke(cli, ["sync", source, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_a_bitrix24_contact_typed_in_capitals_is_stored_and_shown_in_normal_case(hub: HubDB,
                                                                                portal: Bitrix24Server) -> None:
    shouted = portal.portal.add_contact({"NAME": "ОЛЬГА", "LAST_NAME": "ПЕТРОВА", "SECOND_NAME": "СЕРГЕЕВНА",
                                         "PHONE": [{"VALUE": "+7 916 555-01-02", "VALUE_TYPE": "MOBILE"}]})
    connection.save(hub.engine, hub.settings, {"kind": "webhook", "url": portal.webhook_url})
    sync("bitrix24")
    stored = card(hub, "bitrix24", shouted)
    assert (stored["first_name"], stored["middle_name"], stored["last_name"]) == ("Ольга", "Сергеевна", "Петрова")

    portal.portal.update_contact(shouted, {"NAME": "ОЛЯ"})  # a later change arrives the same way
    sync("bitrix24")
    assert card(hub, "bitrix24", shouted)["first_name"] == "Оля"


def test_an_amocrm_contact_typed_in_capitals_is_stored_and_shown_in_normal_case(hub: HubDB,
                                                                               account: AmoServer) -> None:
    split = account.account.add_contact(first_name="ПЁТР", last_name="СИДОРОВ", phones=["+79165550103"])
    whole = account.account.add_contact(name="ИВАНОВА МАРИЯ", phones=["+79165550104"])
    pair = account.account.issue_tokens()
    tokens.save(hub.engine, hub.settings, tokens.oauth_connection(
        account.base_url, account.client_id, account.client_secret, account.redirect_uri,
        access_token=pair["access_token"], refresh_token=pair["refresh_token"]))
    amocrm_commands.account_details(hub.settings)
    sync("amocrm")
    assert (card(hub, "amocrm", split)["first_name"], card(hub, "amocrm", split)["last_name"]) == ("Пётр", "Сидоров")
    assert (card(hub, "amocrm", whole)["first_name"], card(hub, "amocrm", whole)["last_name"]) == ("Мария", "Иванова")
