"""amoCRM (and Bitrix24) round-trip follow-ups: the links API in the emulator, push fields, the sandbox's size.

- The emulator links records as amoCRM documents it (POST …/{id}/link, the
  bulk …/link, unlink, GET …/links) and creates leads with their company
  (`_embedded.companies`), refusing what amoCRM refuses with its errors.
- A connection that maps no push field (`[amocrm] fields`, `[bitrix24] fields`)
  costs `hub crm push` no query and no request.
- `hub sandbox amocrm` takes --companies and --activities like Bitrix24's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import plugins.amocrm as amocrm_plugin
import plugins.bitrix24 as bitrix24_plugin
from hub import crm_push
from hub.config import Settings
from plugins.amocrm.sandbox import Account
from plugins.amocrm.sandbox.data import WON_STATUS_ID
from plugins.amocrm.source import AmoSource
from plugins.bitrix24.source import Bitrix24Source
from tests.conftest import HubDB
from tests.support.cli import cli

# --- the links API ------------------------------------------------------------------------------


class Api:
    """An account answered in-process, as an integration calls it."""

    def __init__(self) -> None:
        self.account = Account(contacts=24, seed=5, companies=0, activities=0, rate_limit=None)
        self.headers = {"Authorization": f"Bearer {self.account.issue_long_lived_token()}"}

    def __call__(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        answer = self.account.handle(method, path, headers=self.headers,
                                     body=b"" if body is None else json.dumps(body).encode())
        assert answer.status == status, answer.body[:2000]
        return answer.json() if answer.body else None


def errors(answer: Any) -> list[tuple[str, str]]:
    return [(e["path"], e["code"]) for item in answer["validation-errors"] for e in item["errors"]]


def test_contacts_link_to_a_company_from_either_side_and_the_records_show_it() -> None:
    api = Api()
    first, second, third = api.account.contact_ids()[:3]
    assert api.account.companies_count == 0
    (made,) = api("POST", "/api/v4/companies", [{"name": "ООО «Парус»"}])["_embedded"]["companies"]
    company = made["id"]
    before = api("GET", f"/api/v4/contacts/{first}")["updated_at"]
    later = time.time() + 60
    api.account.clock = lambda: later  # the link happens a minute later

    one = api("POST", f"/api/v4/companies/{company}/link", [{"to_entity_id": first, "to_entity_type": "contacts"}])
    assert one["_total_items"] == 1 and one["_links"]["self"]["href"].endswith(f"/api/v4/companies/{company}/link")
    bulk = api("POST", "/api/v4/contacts/link", [
        {"entity_id": second, "to_entity_id": company, "to_entity_type": "companies"},
        {"entity_id": third, "to_entity_id": company, "to_entity_type": "companies", "metadata": None}])
    assert [(x["entity_id"], x["entity_type"], x["to_entity_id"]) for x in bulk["_embedded"]["links"]] == [
        (second, "contacts", company), (third, "contacts", company)]

    held = api("GET", f"/api/v4/companies/{company}?with=contacts")
    assert [c["id"] for c in held["_embedded"]["contacts"]] == [first, second, third]
    contact = api("GET", f"/api/v4/contacts/{first}")
    assert [c["id"] for c in contact["_embedded"]["companies"]] == [company]
    assert contact["updated_at"] > before  # an integration reading changed records sees the link
    links = api("GET", f"/api/v4/contacts/{first}/links")["_embedded"]["links"]
    assert links == [{"entity_id": first, "entity_type": "contacts", "to_entity_id": company,
                      "to_entity_type": "companies", "metadata": None}]

    assert api("POST", f"/api/v4/companies/{company}/unlink",
               [{"to_entity_id": first, "to_entity_type": "contacts"}], status=204) is None
    assert api("GET", f"/api/v4/contacts/{first}")["_embedded"]["companies"] == []
    api("DELETE", f"/api/v4/companies/{company}", status=404)  # amoCRM deletes no company through the API
    api.account.delete_company(company)
    assert api("GET", f"/api/v4/contacts/{second}")["_embedded"]["companies"] == []


def test_a_lead_is_created_with_its_company_and_linked_to_one_company_at_most() -> None:
    api = Api()
    person = api.account.contact_ids()[0]
    companies = [api("POST", "/api/v4/companies", [{"name": name}])["_embedded"]["companies"][0]["id"]
                 for name in ("ООО «Кедр»", "АО «Гранит»")]
    (lead,) = api("POST", "/api/v4/leads", [{
        "name": "Поставка", "price": 50_000, "status_id": WON_STATUS_ID,
        "_embedded": {"contacts": [{"id": person, "is_main": True}], "companies": [{"id": companies[0]}]}}],
    )["_embedded"]["leads"]
    held = api("GET", f"/api/v4/leads/{lead['id']}?with=contacts")
    assert [c["id"] for c in held["_embedded"]["companies"]] == [companies[0]]
    assert [c["id"] for c in held["_embedded"]["contacts"]] == [person]

    api("POST", f"/api/v4/leads/{lead['id']}/link", [{"to_entity_id": companies[1], "to_entity_type": "companies"}])
    held = api("GET", f"/api/v4/leads/{lead['id']}")
    assert [c["id"] for c in held["_embedded"]["companies"]] == [companies[1]]  # replaced, not added
    other = api.account.contact_ids()[1]
    linked = api("POST", f"/api/v4/leads/{lead['id']}/link", [
        {"to_entity_id": other, "to_entity_type": "contacts", "metadata": {"main_contact": True}}])
    assert linked["_embedded"]["links"][0]["metadata"] == {"main_contact": True}
    held = api("GET", f"/api/v4/leads/{lead['id']}?with=contacts")
    assert [(c["id"], c["is_main"]) for c in held["_embedded"]["contacts"]] == [(other, True), (person, False)]


def test_links_amocrm_refuses_are_refused_with_its_errors_and_nothing_changes() -> None:
    api = Api()
    person = api.account.contact_ids()[0]
    company = api("POST", "/api/v4/companies", [{"name": "ООО «Сфера»"}])["_embedded"]["companies"][0]["id"]
    bad = api("POST", f"/api/v4/contacts/{person}/link", [
        {"to_entity_id": company, "to_entity_type": "companies"},
        {"to_entity_id": 999, "to_entity_type": "companies"},
        {"to_entity_id": company, "to_entity_type": "leads"},
        {"to_entity_type": "companies"},
        {"to_entity_id": "<script>", "to_entity_type": "companies"},
        "junk"], status=400)
    assert errors(bad) == [("to_entity_id", "NotFound"), ("to_entity_type", "NotSupportedChoice"),
                           ("to_entity_id", "FieldMissing"), ("to_entity_id", "InvalidType"), ("", "InvalidType")]
    assert api("GET", f"/api/v4/contacts/{person}")["_embedded"]["companies"] == []  # the good one waits too
    assert errors(api("POST", "/api/v4/contacts/link", [{"to_entity_id": company, "to_entity_type": "companies"}],
                      status=400)) == [("entity_id", "FieldMissing")]
    assert errors(api("POST", "/api/v4/contacts/77/link", [{"to_entity_id": company, "to_entity_type": "companies"}],
                      status=400)) == [("entity_id", "NotFound")]
    assert errors(api("POST", "/api/v4/contacts/link", {"entity_id": person}, status=400)) == [("", "InvalidType")]
    too_many = [{"entity_id": person, "to_entity_id": company, "to_entity_type": "companies"}] * 51
    assert errors(api("POST", "/api/v4/contacts/link", too_many, status=400)) == [("", "TooManyElements")]
    api("GET", f"/api/v4/contacts/{person}/link", status=405)
    assert errors(api("POST", "/api/v4/leads", [{"name": "x", "_embedded": {"companies": [{"id": 999}]}}],
                      status=400)) == [("_embedded.companies.0.id", "NotFound")]


# --- push fields: none mapped, nothing read ---------------------------------------------------------

@pytest.mark.parametrize("crm", ["amocrm", "bitrix24"])
def test_a_connection_with_no_push_fields_is_not_read_by_hub_crm_push(
        hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch, crm: str) -> None:
    module, source = (amocrm_plugin, AmoSource) if crm == "amocrm" else (bitrix24_plugin, Bitrix24Source)
    promo = "777001" if crm == "amocrm" else '"UF_CRM_PROMO"'
    Path("hub.toml").write_text(f"[{crm}]\nfields = {{ promo_code = {promo} }}\n", encoding="utf-8")
    plugin_manager.register(module, name=crm)
    calls: list[Any] = []

    def set_fields(self: Any, values: Any) -> list[str]:
        calls.append(values)
        return []

    def changed(*args: Any, **kwargs: Any) -> tuple[list[Any], int | None]:
        calls.append("read")
        return [], None

    monkeypatch.setattr(source, "set_fields", set_fields)
    monkeypatch.setattr(crm_push, "_changed", changed)
    result = CliRunner().invoke(cli, ["crm", "push", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sources"] == {} and calls == []


def test_each_crm_pushes_only_the_names_its_connection_maps() -> None:
    amo = AmoSource(Settings(extra={"amocrm": {"fields": {"lead_score": 777002, "lifecycle": ""}}}))
    assert (amo.pushes("lead_score"), amo.pushes("lifecycle"), amo.pushes("nps")) == (True, False, False)
    bitrix = Bitrix24Source(Settings(extra={"bitrix24": {"fields": {"lifecycle": "UF_CRM_STAGE"}}}))
    assert (bitrix.pushes("lead_score"), bitrix.pushes("lifecycle")) == (False, True)
    assert not AmoSource(Settings()).pushes("lead_score") and not Bitrix24Source(Settings()).pushes("lifecycle")


# --- the sandbox's size ------------------------------------------------------------------------------

def test_the_amocrm_sandbox_holds_as_many_companies_and_activities_as_asked() -> None:
    account = Account(contacts=60, seed=2, companies=4, activities=25, rate_limit=None)
    assert (account.companies_count, account.activities_count) == (4, 25)
    default = Account(contacts=60, seed=2, rate_limit=None)
    assert (default.companies_count, default.activities_count) == (5, 120)  # one per twelve, two per person
    assert Account(contacts=60, seed=2, b2b=True, companies=0, activities=0, rate_limit=None).companies_count == 0


def test_hub_sandbox_amocrm_says_its_size_options_in_both_languages(plugin_manager: Any) -> None:
    plugin_manager.register(amocrm_plugin, name="amocrm")
    amocrm_plugin.register_commands(cli)
    english = " ".join(CliRunner().invoke(cli, ["sandbox", "amocrm", "--help"], env={"HUB_LANGUAGE": "en"})
                       .output.split())
    assert "--companies" in english and "one per twelve people" in english and "--activities" in english
    russian = " ".join(CliRunner().invoke(cli, ["sandbox", "amocrm", "--help"], env={"HUB_LANGUAGE": "ru"})
                       .output.split())
    assert "Сколько компаний" in russian and "звонков и задач" in russian
    refused = CliRunner().invoke(cli, ["sandbox", "amocrm", "--companies", "-1"], env={"HUB_LANGUAGE": "ru"})
    assert refused.exit_code == 2 and "--companies" in refused.output
