"""amoCRM's write side of the round trip: promo codes, erasure by anonymising, scores in batches.

First the requests in the shapes amoCRM documents (responses), then the whole
round trip against the plugin's emulator: a code issued by a campaign lands in
the contact's field with a note, a lead carrying it (a field, or a tag) is
synced and the code redeemed, as with Bitrix24; an erased contact is
anonymised in the account and a later sync brings nobody back.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
import responses
from click.testing import CliRunner
from sqlalchemy import select

import plugins.amocrm as amocrm_plugin
import plugins.gdpr as gdpr_plugin
from hub import consent, sync
from hub.config import Settings, SettingsError
from hub.db import utcnow
from hub.models import Contact, ContactIdentity, ExternalRef
from hub.ratelimit import LocalBucket
from hub.records import OrderRecord
from hub.segments.evaluate import Segments
from hub.writeback import Erasing, FieldBatches, WriteBackError
from plugins.amocrm import erase, promo
from plugins.amocrm.client import AmoClient, StaticAuth
from plugins.amocrm.sandbox import Account, SandboxServer
from plugins.amocrm.sandbox.data import (BIRTHDAY, CITY, CONTACT_PROMO, EMAIL, LEAD_SCORE, LIFECYCLE, OFFERED_CODE,
                                         PHONE, PROMO_CODE, WON_STATUS_ID)
from plugins.amocrm.source import AmoSource
from tests.conftest import HubDB, with_settings
from tests.support.cli import cli
from tests.support.shop import runs_of, use_workflows
from workflows import promo as workflows_promo
from workflows.models import PromoCode

BASE = "https://shop.amocrm.ru"
NOW = 1_700_000_000


def make_source(**options: Any) -> AmoSource:
    fields = {"promo_code": 777001, "lead_score": 777002}
    # In memory: a note asks the database for the code's discount, and a test must leave no hub.db behind.
    settings = Settings(database_url="sqlite://", extra={"amocrm": {"fields": fields, **options}})
    client = AmoClient(BASE, StaticAuth("tok"), LocalBucket(10_000, 10_000), sleep=lambda s: None)
    return AmoSource(settings, client=client, account={"currency": "RUB", "customers_mode": "disabled"},
                     clock=lambda: NOW)


def body(call: Any) -> Any:
    return json.loads(call.request.body or b"null")


def bodies(method: str = "PATCH") -> list[Any]:
    return [body(c) for c in responses.calls if c.request.method == method]


# --- scores: many contacts' fields in few requests ---------------------------------------------

@responses.activate
def test_scores_go_250_contacts_a_request_and_unmapped_names_are_skipped() -> None:
    source = make_source()
    assert isinstance(source, FieldBatches)
    responses.patch(f"{BASE}/api/v4/contacts", json={"_embedded": {"contacts": [{"id": 1}]}})
    values = [(str(i), "lead_score", i % 100) for i in range(1, 601)] + [("7", "lifecycle", "regular")]
    source.set_fields(values)
    sent = bodies()
    assert [len(b) for b in sent] == [250, 250, 100]
    assert sent[0][0] == {"id": 1, "custom_fields_values": [{"field_id": 777002, "values": [{"value": 1}]}]}
    assert all(f["field_id"] == 777002 for b in sent for c in b for f in c["custom_fields_values"])


@responses.activate
def test_an_account_that_refuses_250_gets_fifties_from_then_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("plugins.amocrm.source._field_batches", {})
    source = make_source()
    responses.patch(f"{BASE}/api/v4/contacts", status=400, json={
        "validation-errors": [{"request_id": "0", "errors": [
            {"code": "TooManyElements", "path": "", "detail": "This collection should contain 50 elements or less."}]}],
        "title": "Bad Request", "status": 400, "detail": "Request validation failed"})
    responses.patch(f"{BASE}/api/v4/contacts", json={"_embedded": {"contacts": [{"id": 1}]}})
    source.set_fields([(str(i), "lead_score", i) for i in range(1, 121)])
    assert [len(b) for b in bodies()] == [120, 50, 50, 20]
    make_source().set_fields([(str(i), "lead_score", i) for i in range(1, 61)])
    assert [len(b) for b in bodies()][4:] == [50, 10]


@responses.activate
def test_a_score_cleared_empties_the_field_and_nothing_mapped_sends_nothing() -> None:
    source = make_source()
    responses.patch(f"{BASE}/api/v4/contacts", json={"_embedded": {"contacts": [{"id": 5}]}})
    assert source.set_fields([("5", "lead_score", None)]) == ["5"]
    assert bodies() == [[{"id": 5, "custom_fields_values": [{"field_id": 777002, "values": None}]}]]
    assert source.set_fields([("5", "lifecycle", "vip"), ("6", "nps", 9)]) == []
    assert len(responses.calls) == 1
    with pytest.raises(WriteBackError, match="contact id 'x' is not a number"):
        source.set_fields([("x", "lead_score", 1)])
    with pytest.raises(WriteBackError, match="lifecycle"):
        make_source(fields={"lifecycle": "Стадия"}).set_fields([("5", "lifecycle", "vip")])


# --- promo codes: the field, the note, the newest open lead ---------------------------------------

@responses.activate
def test_a_promo_code_goes_to_the_field_alone() -> None:
    source = make_source()
    responses.patch(f"{BASE}/api/v4/contacts", json={"_embedded": {"contacts": [{"id": 42}]}})
    assert source.set_field("42", "promo_code", "BACK-7K2QXM") == "42"
    assert bodies() == [[{"id": 42, "custom_fields_values": [
        {"field_id": 777001, "values": [{"value": "BACK-7K2QXM"}]}]}]]
    # The note saying what the code is worth is the workflows plugin's comment, not the field's.
    assert [c.request.method for c in responses.calls] == ["PATCH"]
    assert not hasattr(promo, "details")  # the plugin reads no other plugin's table


def test_the_note_says_the_discount_and_the_last_day_in_the_shops_zone() -> None:
    moscow = Settings(timezone="Europe/Moscow")
    end = dt.datetime(2026, 12, 31, 20, 59, 59)  # the end of 31 December in Moscow, stored in UTC
    assert workflows_promo.note_text(moscow, "ABC123", Decimal("15.00"), end) == \
        "Промокод ABC123, скидка 15\N{NO-BREAK SPACE}%, действует до 31 декабря 2026"
    english = Settings(timezone="Europe/Moscow", language="en")
    assert workflows_promo.note_text(english, "ABC123", Decimal("12.5"), end) == \
        "Promo code ABC123, 12.5% off, valid until December 31, 2026"
    assert workflows_promo.note_text(moscow, "ABC123", None, None) == "Промокод ABC123"


@responses.activate
def test_with_lead_promo_field_the_code_also_goes_to_the_newest_open_lead() -> None:
    source = make_source(lead_promo_field=888002, promo_field=888001)
    responses.patch(f"{BASE}/api/v4/contacts", json={"_embedded": {"contacts": [{"id": 42}]}})
    responses.get(f"{BASE}/api/v4/contacts/42", json={"id": 42, "_embedded": {"leads": [
        {"id": 1}, {"id": 2}, {"id": 3}]}})
    responses.get(f"{BASE}/api/v4/leads", json={"_embedded": {"leads": [
        {"id": 1, "status_id": 7100001, "created_at": NOW - 10},
        {"id": 2, "status_id": 7100002, "created_at": NOW - 5},
        {"id": 3, "status_id": WON_STATUS_ID, "created_at": NOW}]}})
    responses.patch(f"{BASE}/api/v4/leads", json={"_embedded": {"leads": [{"id": 2}]}})
    source.set_field("42", "promo_code", "BACK-7K2QXM")
    assert body(responses.calls[-1]) == [
        {"id": 2, "custom_fields_values": [{"field_id": 888002, "values": [{"value": "BACK-7K2QXM"}]}]}]
    leads_query = str(responses.calls[2].request.url)
    assert "filter%5Bid%5D%5B%5D=1" in leads_query and "filter%5Bid%5D%5B%5D=3" in leads_query


@responses.activate
def test_the_lead_field_cannot_be_the_one_codes_are_redeemed_from() -> None:
    source = make_source(lead_promo_field=888001, promo_field="888001")
    responses.patch(f"{BASE}/api/v4/contacts", json={"_embedded": {"contacts": [{"id": 42}]}})
    with pytest.raises(WriteBackError, match="lead_promo_field — то же поле, из которого promo_field читает"):
        source.set_field("42", "promo_code", "BACK-7K2QXM")
    with pytest.raises(WriteBackError, match="lead_promo_field = 'abc': укажите номер"):
        make_source(lead_promo_field="abc").set_field("42", "promo_code", "X")


def lead(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": i, "name": f"L{i}", "price": 1000, "status_id": WON_STATUS_ID, "pipeline_id": 1,
            "created_at": NOW - 100, "updated_at": NOW, "closed_at": NOW,
            "_embedded": {"contacts": [{"id": 5, "is_main": True}], **extra.pop("_embedded", {})}, **extra}


@responses.activate
def test_a_lead_carries_its_code_in_the_field_or_a_tag() -> None:
    source = make_source(promo_field=888001, promo_tag_prefix="promo:")
    responses.get(f"{BASE}/api/v4/leads/pipelines", json={"_embedded": {"pipelines": []}})
    records = source._leads([
        lead(1, custom_fields_values=[{"field_id": 888001, "field_name": "Промокод", "field_type": "text",
                                       "values": [{"value": " back-7k2qxm "}]}]),
        lead(2, _embedded={"tags": [{"id": 1, "name": "vip"}, {"id": 2, "name": "PROMO:SPRING-22"}]}),
        lead(3, custom_fields_values=[{"field_id": 888001, "values": [{"value": "FIELD-1"}]}],
             _embedded={"tags": [{"id": 3, "name": "promo:TAG-1"}]}),
        lead(4, _embedded={"tags": [{"id": 4, "name": "promo:"}, {"id": 5, "name": "promo: "}]}),
        lead(5),
        # as managers type them: spaces around the tag, after the prefix and inside the code
        lead(6, _embedded={"tags": [{"id": 6, "name": " Promo:  try-x7k2 "}]}),
        lead(7, custom_fields_values=[{"field_id": 888001, "values": [{"value": "BACK- 7K2"}]}])])
    codes = {r.external_id: r.promo_code for r in records if isinstance(r, OrderRecord)}
    assert codes == {"1": "back-7k2qxm", "2": "SPRING-22", "3": "FIELD-1", "4": None, "5": None, "6": "try-x7k2",
                     "7": "BACK-7K2"}


def test_a_wrong_promo_setting_is_named() -> None:
    with pytest.raises(SettingsError, match=r"\[amocrm\] promo_field = 'Промокод': укажите номер \(ID\) поля сделки"):
        make_source(promo_field="Промокод")._leads([lead(1)])
    with pytest.raises(SettingsError, match=r"promo_tag_prefix = ' ': укажите, с чего начинается тег"):
        promo.reading({"promo_tag_prefix": " "})
    too_long = {"custom_fields_values": [{"field_id": 1, "values": [{"value": "A" * 65}]}]}
    assert promo.lead_code(too_long, 1, None) is None


# --- notes and tasks ----------------------------------------------------------------------------

@responses.activate
def test_a_task_for_the_manager_the_sync_read_costs_no_lookup() -> None:
    source = make_source()
    responses.post(f"{BASE}/api/v4/tasks", json={"_embedded": {"tasks": [{"id": 8001}]}})
    due = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone.utc)
    assert source.add_task("42", "Позвонить", due_at=due, responsible_id="6100003") == "8001"
    assert len(responses.calls) == 1
    assert bodies("POST")[0][0]["responsible_user_id"] == 6100003


@responses.activate
def test_an_nps_answer_is_a_common_note_and_a_blank_one_is_refused() -> None:
    source = make_source()
    responses.post(f"{BASE}/api/v4/contacts/42/notes", json={"_embedded": {"notes": [{"id": 9002}]}})
    assert source.add_comment("42", "Оценка NPS: 9 из 10. «Всё быстро»") == "9002"
    assert bodies("POST") == [[{"note_type": "common", "params": {"text": "Оценка NPS: 9 из 10. «Всё быстро»"}}]]
    with pytest.raises(WriteBackError, match="a note needs some text"):
        source.add_comment("42", "  ")
    with pytest.raises(WriteBackError, match="contact id '42/../1' is not a number"):
        source.add_comment("42/../1", "x")
    assert len(responses.calls) == 1


# --- erasure: anonymised, since amoCRM's API cannot delete a contact ---------------------------------

PERSON = {"id": 42, "name": "Анна Иванова", "first_name": "Анна", "last_name": "Иванова", "custom_fields_values": [
    {"field_id": 1, "field_code": "PHONE", "values": [{"value": "+79161234567", "enum_code": "MOB"},
                                                      {"value": "+74951234567", "enum_code": "WORK"}]},
    {"field_id": 2, "field_code": "EMAIL", "values": [{"value": "anna@example.ru", "enum_code": "PRIV"}]},
    {"field_id": 5, "field_name": "День рождения", "field_type": "birthday", "values": [{"value": 638_150_400}]},
    {"field_id": 9, "field_name": "Адрес", "field_type": "textarea", "values": [{"value": "Тверская, 1"}]},
    {"field_id": 10, "field_name": "Пусто", "values": []}], "_embedded": {"tags": [{"id": 1, "name": "vip"}]}}


@responses.activate
def test_erasing_overwrites_the_name_removes_phones_emails_and_personal_fields_and_tags_it() -> None:
    source = make_source()
    assert isinstance(source, Erasing)
    responses.get(f"{BASE}/api/v4/contacts/42", json=PERSON)
    responses.patch(f"{BASE}/api/v4/contacts", json={"_embedded": {"contacts": [{"id": 42}]}})
    responses.get(f"{BASE}/api/v4/contacts/42/notes", status=204)  # no calls (see test_crm_plugins_hostile)
    assert source.erase_contact("42") == "anonymised"
    assert bodies() == [[{"id": 42, "name": "Удалённый контакт", "first_name": "", "last_name": "",
                          "_embedded": {"tags": [{"name": "удалён по запросу"}]},
                          "custom_fields_values": [{"field_id": 1, "values": None}, {"field_id": 2, "values": None},
                                                   {"field_id": 5, "values": None},
                                                   {"field_id": 9, "values": None}]}]]


@responses.activate
def test_erasing_in_english_or_with_the_shops_own_words() -> None:
    responses.get(f"{BASE}/api/v4/contacts/42", json={"id": 42, "name": "Anna", "custom_fields_values": None})
    responses.patch(f"{BASE}/api/v4/contacts", json={"_embedded": {"contacts": [{"id": 42}]}})
    responses.get(f"{BASE}/api/v4/contacts/42/notes", status=204)
    source = make_source()
    source.settings = with_settings(source.settings, language="en")
    assert source.erase_contact("42") == "anonymised"
    assert bodies()[-1] == [{"id": 42, "name": "Erased contact", "first_name": "", "last_name": "",
                             "_embedded": {"tags": [{"name": "erased on request"}]}}]
    assert make_source(erase_name="Клиент удалён", erase_tag="152-ФЗ").erase_contact("42") == "anonymised"
    assert bodies()[-1][0]["name"] == "Клиент удалён" and bodies()[-1][0]["_embedded"] == {"tags": [{"name": "152-ФЗ"}]}
    with pytest.raises(WriteBackError, match=r"\[amocrm\] erase_tag = '': нужен текст длиной от 1 до 250"):
        make_source(erase_tag="").erase_contact("42")


@responses.activate
def test_a_contact_already_gone_is_gone_and_a_refusal_says_why() -> None:
    source = make_source()
    responses.get(f"{BASE}/api/v4/contacts/7", status=204)
    assert source.erase_contact("7") == "gone"
    responses.get(f"{BASE}/api/v4/contacts/8", status=404, json={"title": "Not Found", "status": 404})
    assert source.erase_contact("8") == "gone"
    assert not bodies()
    responses.get(f"{BASE}/api/v4/contacts/42", json=PERSON)
    responses.patch(f"{BASE}/api/v4/contacts", status=400, json={
        "validation-errors": [{"request_id": "0", "errors": [
            {"code": "NotSupportedChoice", "path": "custom_fields_values.3.field_id",
             "detail": "The value you selected is not a valid choice."}]}],
        "title": "Bad Request", "status": 400, "detail": "Request validation failed"})
    with pytest.raises(WriteBackError, match="custom_fields_values.3.field_id: NotSupportedChoice"):
        source.erase_contact("42")
    with pytest.raises(WriteBackError, match="contact id '-1' is not a number"):
        source.erase_contact("-1")


def test_the_anonymised_change_names_each_filled_field_once() -> None:
    twice = {"id": "3", "custom_fields_values": [{"field_id": 1, "values": [{"value": "a"}]},
                                                 {"field_id": 1, "values": [{"value": "b"}]}, "junk"]}
    assert erase.anonymised(twice, "X", "t")["custom_fields_values"] == [{"field_id": 1, "values": None}]


# --- against the emulator -----------------------------------------------------------------------

PEOPLE = 80


@pytest.fixture
def account() -> Iterator[SandboxServer]:
    server = SandboxServer(Account(contacts=PEOPLE, seed=3, today=utcnow().date())).start()
    yield server
    server.stop()
    server.account.close()


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    Path("hub.toml").write_text(
        f'[amocrm]\npromo_field = {PROMO_CODE.id}\npromo_tag_prefix = "promo:"\n'
        f'lead_promo_field = {OFFERED_CODE.id}\n'
        f'fields = {{ promo_code = {CONTACT_PROMO.id}, lead_score = {LEAD_SCORE.id}, lifecycle = {LIFECYCLE.id} }}\n\n'
        '[workflows]\npromo_crm_field = "promo_code"\n', encoding="utf-8")
    plugin_manager.register(amocrm_plugin, name="amocrm")
    amocrm_plugin.register_commands(cli)
    return use_workflows(hub_db, plugin_manager, monkeypatch)


def hub_json(*args: str) -> Any:
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def connect(server: SandboxServer) -> None:
    connected = CliRunner().invoke(cli, ["connect", "amocrm", "--base-url", server.base_url,
                                         "--long-lived-token", server.account.issue_long_lived_token()])
    assert connected.exit_code == 0, connected.output


def field(contact: dict[str, Any] | None, field_id: int) -> list[Any]:
    for f in (contact or {}).get("custom_fields_values") or []:
        if f["field_id"] == field_id:
            return [v["value"] for v in f["values"]]
    return []


@pytest.mark.both_databases
def test_a_code_issued_to_an_amocrm_contact_is_redeemed_by_the_lead_that_carries_it(
        wf: HubDB, account: SandboxServer) -> None:
    connect(account)
    assert hub_json("sync", "amocrm", "--full")["contacts"]["created"] > 0
    with wf.engine.begin() as conn:
        refs = dict(conn.execute(select(ExternalRef.contact_id, ExternalRef.external_id)
                                 .where(ExternalRef.source == "amocrm")).all())
        for contact_id in sorted(refs)[::2]:
            consent.record(conn, contact_id, "email", "marketing", "granted", source="form")
    with wf.engine.connect() as conn:
        dormant = set(Segments(conn, wf.settings).member_ids("dormant_90d"))
    assert len(dormant) >= 4

    hub_json("workflows", "run", "reactivation_90d")
    treated = {r.contact_id for r in runs_of(wf, "reactivation_90d") if not r.holdout}
    with wf.engine.connect() as conn:
        codes = {r.contact_id: r for r in conn.execute(select(PromoCode))}
    assert set(codes) == treated and len(treated) >= 3
    # An open lead of one of them gets the code offered too (lead_promo_field).
    first, second, third, *_ = sorted(treated)
    open_lead = account.account.add_lead(name="Открытая сделка", contact_id=int(refs[first]), price=1)

    tick = hub_json("workflows", "tick")
    assert tick["promo_written_back"]["written"] == len(treated), (tick["promo_written_back"], tick["errors"])
    for contact_id in treated:
        external = int(refs[contact_id])
        assert field(account.account.contact(external), CONTACT_PROMO.id) == [codes[contact_id].code]
        (note,) = [n for n in account.account.notes if n["entity_id"] == external]
        expires = dt.datetime.combine(codes[contact_id].expires_at.date(), dt.time())
        assert note["note_type"] == "common" and note["params"]["text"].startswith(
            f"Промокод {codes[contact_id].code}, скидка 15\N{NO-BREAK SPACE}%, действует до {expires.day} ")
    assert field(account.account.lead(open_lead), OFFERED_CODE.id) == [codes[first].code]
    assert field(account.account.lead(open_lead), PROMO_CODE.id) == []
    assert hub_json("sync", "amocrm")["orders"]["created"] >= 1
    assert hub_json("workflows", "tick")["redeemed"] == 0  # the code offered on a lead is not a purchase

    # The customer buys with the code; the manager's lead carries it in the field, typed in lower case.
    account.account.add_lead(name="Заказ по промокоду", contact_id=int(refs[first]), price=3200,
                             status_id=WON_STATUS_ID, promo_code=codes[first].code.lower())
    # Another one's lead is only tagged.
    account.account.add_lead(name="Заказ с тегом", contact_id=int(refs[second]), price=1500,
                             status_id=WON_STATUS_ID, tags=["vip", f"promo:{codes[second].code}"])
    second_sync = hub_json("sync", "amocrm")
    assert second_sync["orders"]["created"] == 2, json.dumps(second_sync)[:3000]
    assert hub_json("workflows", "tick")["redeemed"] == 2
    with wf.engine.connect() as conn:
        after = {r.contact_id: r for r in conn.execute(select(PromoCode))}
    assert after[first].redeemed_by == after[second].redeemed_by == "order:amocrm"
    status = hub_json("workflows", "status", "reactivation_90d")
    assert status["promo_codes"]["redeemed"] == 2
    assert status["converted"] >= 2 and float(status["revenue"]) >= 4700

    # The same rules as Bitrix24's: a used code is not used again, an unknown one redeems nothing,
    # a lost lead redeems nothing.
    account.account.add_lead(name="Повтор", contact_id=int(refs[third]), price=900, status_id=WON_STATUS_ID,
                             promo_code=codes[first].code)
    account.account.add_lead(name="Чужой код", contact_id=int(refs[third]), price=900, status_id=WON_STATUS_ID,
                             tags=["promo:NOSUCH-CODE"])
    account.account.add_lead(name="Проиграна", contact_id=int(refs[third]), price=900, status_id=143,
                             promo_code=codes[third].code)
    assert hub_json("sync", "amocrm")["orders"]["created"] == 3
    assert hub_json("workflows", "tick")["redeemed"] == 0
    with wf.engine.connect() as conn:
        final = {r.contact_id: r for r in conn.execute(select(PromoCode))}
    assert final[first].order_id == after[first].order_id and final[third].redeemed_at is None


def test_a_note_the_crm_refuses_leaves_the_code_written_and_logs_no_personal_data(
        wf: HubDB, account: SandboxServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    connect(account)
    hub_json("sync", "amocrm", "--full")
    with wf.engine.begin() as conn:
        for (contact_id,) in conn.execute(select(ExternalRef.contact_id).where(ExternalRef.source == "amocrm")):
            consent.record(conn, contact_id, "email", "marketing", "granted", source="form")
    hub_json("workflows", "run", "reactivation_90d")

    def refused(self: AmoSource, external_id: str, text: str) -> str | None:
        raise WriteBackError(f"amoCRM: the note «{text}» on Иван Петров, ivan@example.ru was refused")

    monkeypatch.setattr(AmoSource, "add_comment", refused)
    caplog.set_level("WARNING", logger="workflows.promo")
    tick = hub_json("workflows", "tick")
    with wf.engine.connect() as conn:
        codes = list(conn.execute(select(PromoCode)))
        refs = dict(conn.execute(select(ExternalRef.contact_id, ExternalRef.external_id)
                                 .where(ExternalRef.source == "amocrm")).all())
    assert codes and tick["promo_written_back"] == {"written": len(codes), "refused": 0, "later": 0}
    assert all(c.written_back_at is not None and c.writeback_error is None for c in codes)
    for code in codes:  # the field, which redeems, is there; no note is
        assert field(account.account.contact(int(refs[code.contact_id])), CONTACT_PROMO.id) == [code.code]
    assert account.account.notes == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "workflows.promo"]
    assert len(warnings) == len(codes) and all("comment was not" in w for w in warnings)
    assert not any("Петров" in w or "@" in w or c.code in w for w in warnings for c in codes)
    assert hub_json("workflows", "tick")["promo_written_back"]["written"] == 0  # not written twice


def test_scores_pushed_in_few_requests_land_in_the_contacts_fields(wf: HubDB, account: SandboxServer) -> None:
    connect(account)
    source = AmoSource(wf.settings)
    ids = account.account.contact_ids()
    written = source.set_fields([(str(i), "lead_score", n) for n, i in enumerate(ids)]
                                + [(str(ids[0]), "lifecycle", "regular"), (str(ids[1]), "nps", 10)])
    assert sorted(written) == sorted(str(i) for i in ids)
    # The emulator takes 50 a request: the 80 are refused whole (nothing written), then go in fifties.
    assert [len(p["body"]) for p in account.account.patches] == [50, 30]
    assert field(account.account.contact(ids[5]), LEAD_SCORE.id) == ["5"]
    assert field(account.account.contact(ids[0]), LIFECYCLE.id) == ["regular"]


@pytest.mark.both_databases
def test_an_erased_contact_is_anonymised_in_amocrm_and_never_comes_back(
        hub_db: HubDB, plugin_manager: Any, account: SandboxServer) -> None:
    plugin_manager.register(amocrm_plugin, name="amocrm")
    plugin_manager.register(gdpr_plugin, name="gdpr")
    amocrm_plugin.register_commands(cli)
    gdpr_plugin.register_commands(cli)
    connect(account)
    sync.run(hub_db.engine, hub_db.settings, "amocrm", full=True)
    target = next(i for i in account.account.contact_ids() if len(field(account.account.contact(i), PHONE.id)) > 0
                  and field(account.account.contact(i), EMAIL.id))
    account.account.update_contact(target, city="Казань")
    sync.run(hub_db.engine, hub_db.settings, "amocrm")
    with hub_db.engine.connect() as conn:
        contact_id = conn.execute(select(ExternalRef.contact_id).where(
            ExternalRef.source == "amocrm", ExternalRef.external_id == str(target))).scalar_one()
        before = conn.execute(select(Contact.id)).scalars().all()

    erased = CliRunner().invoke(cli, ["gdpr", "erase", str(contact_id), "--delete-in-crm", "--yes", "--json"],
                                catch_exceptions=False)
    assert erased.exit_code == 0, erased.output
    row = account.account.contact(target)
    assert row is not None and row["name"] == "Удалённый контакт"
    assert (row["first_name"], row["last_name"]) == ("", "")
    assert row["custom_fields_values"] is None  # phones, emails, the city: all gone
    assert [t["name"] for t in row["_embedded"]["tags"]][-1] == "удалён по запросу"
    report = json.loads(erased.output)
    assert {"source": "amocrm", "external_id": str(target), "result": "anonymised"}.items() <= \
        next(s for s in report["sources"] if s["source"] == "amocrm").items()

    sync.run(hub_db.engine, hub_db.settings, "amocrm")
    sync.run(hub_db.engine, hub_db.settings, "amocrm", full=True)
    with hub_db.engine.connect() as conn:
        now = set(conn.execute(select(Contact.id)).scalars().all())
        names = set(conn.execute(select(Contact.first_name)).scalars().all())
        keys = conn.execute(select(ContactIdentity.value).where(ContactIdentity.contact_id == contact_id)).all()
    assert now <= set(before) and "Удалённый контакт" not in names and keys == []
    assert CITY.id and BIRTHDAY.id  # the account's personal fields the erasure cleared
