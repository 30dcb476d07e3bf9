"""The consent ledger, suppressions and the can-contact decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub import consent, importer, sync
from hub.hookspecs import hookimpl
from hub.models import ConsentEvent
from hub.records import ContactRecord
from tests.conftest import HubDB
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases  # the consent ledger


def new_contact(db: HubDB, **fields) -> int:
    with db.engine.begin() as conn:
        result = sync.write_contacts(conn, [ContactRecord(source="t", **fields)], db.settings, sync.Counts())
    return result.contact_ids[0]


def test_marketing_needs_granted_consent_transactional_does_not(hub_db: HubDB) -> None:
    cid = new_contact(hub_db, emails=["a@b.ru"])
    with hub_db.engine.begin() as conn:
        assert not consent.can_contact(conn, hub_db.settings, cid, "email", "marketing").allowed
        assert consent.can_contact(conn, hub_db.settings, cid, "email", "transactional").allowed
        consent.record(conn, cid, "email", "marketing", "granted", source="form", settings=hub_db.settings)
        assert consent.can_contact(conn, hub_db.settings, cid, "email", "marketing").allowed
        assert not consent.can_contact(conn, hub_db.settings, cid, "sms", "marketing").allowed  # no phone
        consent.record(conn, cid, "email", "marketing", "withdrawn", source="unsubscribe", settings=hub_db.settings)
        decision = consent.can_contact(conn, hub_db.settings, cid, "email", "marketing")
    assert decision.reasons == ("no granted consent for email/marketing (current: withdrawn)",)


def test_a_suppressed_address_is_never_contacted_and_is_stored_only_as_a_hash(hub_db: HubDB) -> None:
    cid = new_contact(hub_db, emails=["gone@b.ru"])
    with hub_db.engine.begin() as conn:
        consent.record(conn, cid, "email", "marketing", "granted", source="form")
        consent.suppress(conn, "email", "gone@b.ru", reason="bounce", source="smtp", secret=hub_db.settings.secret_key)
        assert not consent.can_contact(conn, hub_db.settings, cid, "email", "transactional").allowed
        stored = conn.execute(consent.suppressions_t.select()).one()
    assert "gone" not in stored.value_hash and len(stored.value_hash) == 64


def test_the_ledger_is_append_only(hub_db: HubDB) -> None:
    cid = new_contact(hub_db, phones=["+79161234567"])
    with hub_db.engine.begin() as conn:
        for status in ("pending", "granted", "withdrawn"):
            consent.record(conn, cid, "sms", "marketing", status, source="form")
        history = consent.history(conn, cid)
    assert [e["status"] for e in history] == ["pending", "granted", "withdrawn"]


def test_any_plugin_may_veto_and_plugins_hear_every_change(hub_db: HubDB, plugin_manager) -> None:
    # hook:can_contact hook:consent_changed
    changes: list[tuple] = []

    class DoNotCall:
        @hookimpl
        def can_contact(self, contact_id: int, channel: str) -> str | None:
            return "on the do-not-call list" if channel == "sms" else None

        @hookimpl
        def consent_changed(self, contact_id: int, channel: str, purpose: str, status: str, source: str,
                            evidence: dict) -> None:
            changes.append((contact_id, channel, purpose, status, source, evidence))

    plugin_manager.register(DoNotCall())
    cid = new_contact(hub_db, phones=["+79161234567"])
    with hub_db.engine.begin() as conn:
        consent.record(conn, cid, "sms", "marketing", "granted", source="form", evidence={"ip": "10.0.0.1"})
        decision = consent.can_contact(conn, hub_db.settings, cid, "sms", "marketing")
    assert decision.reasons == ("on the do-not-call list",)
    assert changes == [(cid, "sms", "marketing", "granted", "form", {"ip": "10.0.0.1"})]


def test_unknown_channel_or_purpose_is_refused_with_the_known_ones(hub_db: HubDB) -> None:
    cid = new_contact(hub_db, emails=["a@b.ru"])
    with hub_db.engine.begin() as conn, pytest.raises(consent.ConsentError, match="не один из: email, sms, phone"):
        consent.record(conn, cid, "pigeon", "marketing", "granted", source="x", settings=hub_db.settings)


def test_consent_cli_set_and_show(hub_db: HubDB) -> None:
    cid = new_contact(hub_db, emails=["a@b.ru"])
    runner = CliRunner()
    result = runner.invoke(cli, ["consent", "set", str(cid), "email", "marketing", "granted", "--source", "paper"])
    assert result.exit_code == 0, result.output
    shown = json.loads(runner.invoke(cli, ["consent", "show", str(cid), "--json"]).stdout)
    assert shown["current"] == [{"channel": "email", "purpose": "marketing", "status": "granted"}]
    assert shown["history"][0]["source"] == "paper"
    result = runner.invoke(cli, ["consent", "set", "999", "email", "marketing", "granted"])
    assert result.exit_code == 1 and "нет контакта с id 999" in result.output


def test_consent_import_reports_each_bad_row_and_keeps_the_rest(hub_db: HubDB, tmp_path: Path) -> None:
    known = new_contact(hub_db, emails=["known@mail.ru"])
    path = tmp_path / "consent.csv"
    path.write_text(
        "email;phone;channel;purpose;status;source;date\n"
        "KNOWN@mail.ru;;email;marketing;да;paper form;14.03.2024\n"
        ";8 916 123-45-67;sms;marketing;granted;site;2024-03-15\n"
        "x@;;email;marketing;granted;site;\n"
        "new@mail.ru;;email;spam;granted;site;\n"
        "new@mail.ru;;email;news;maybe;site;\n",
        encoding="cp1251",
    )
    report = importer.import_consent(hub_db.engine, hub_db.settings, path)
    assert report.recorded == 2 and report.contacts_created == 1
    assert [s["line"] for s in report.skipped] == [4, 5, 6]
    assert "цель 'spam'" in report.skipped[1]["reason"]
    # the words the sheet may use, by what they mean, not only the stored values
    assert report.skipped[2]["reason"].startswith("статус 'maybe' не распознан; пишите так — дано: granted, yes, да,")
    assert "отозвано: withdrawn, no, нет," in report.skipped[2]["reason"]
    with hub_db.engine.connect() as conn:
        assert consent.current(conn, known) == {("email", "marketing"): "granted"}
        event = conn.execute(ConsentEvent.__table__.select().where(ConsentEvent.contact_id == known)).one()
    assert event.source == "paper form" and event.at.year == 2024 and event.at.tzinfo is not None


def test_an_older_answer_imported_later_does_not_undo_a_newer_one(hub_db: HubDB, tmp_path: Path) -> None:
    cid = new_contact(hub_db, emails=["late@mail.ru"], phones=["+79160001122"])
    path = tmp_path / "c.csv"
    path.write_text("email;phone;channel;purpose;status;date\n"
                    ";8 916 000-11-22;email;marketing;withdrawn;2024-05-01\n"
                    "late@mail.ru;;email;marketing;granted;2024-03-14\n"
                    "new@mail.ru;+79160001122;sms;news;granted;2024-03-14\n", encoding="utf-8")
    first = importer.import_consent(hub_db.engine, hub_db.settings, path)
    again = importer.import_consent(hub_db.engine, hub_db.settings, path)
    assert (first.recorded, first.contacts_created) == (3, 0)  # the known phone finds the person
    assert (again.recorded, again.already_recorded) == (0, 3)
    with hub_db.engine.connect() as conn:
        state = consent.current(conn, cid)
    assert state[("email", "marketing")] == "withdrawn"
    assert state[("sms", "news")] == "granted"


def test_channels_and_purposes_can_be_configured_as_text(hub_db: HubDB) -> None:
    settings = hub_db.settings.__class__(**{**hub_db.settings.__dict__,
                                            "extra": {"consent_channels": "email, telegram"}})
    assert consent.channels(settings) == ("email", "telegram")


def test_reimporting_rows_without_a_date_records_nothing_new(hub_db: HubDB, tmp_path: Path) -> None:
    cid = new_contact(hub_db, emails=["nodate@mail.ru"])
    path = tmp_path / "c.csv"
    path.write_text("email;channel;purpose;status;source\nnodate@mail.ru;email;news;granted;site\n", encoding="utf-8")
    assert importer.import_consent(hub_db.engine, hub_db.settings, path).recorded == 1
    again = importer.import_consent(hub_db.engine, hub_db.settings, path)
    assert (again.recorded, again.already_recorded) == (0, 1)
    with hub_db.engine.begin() as conn:
        consent.record(conn, cid, "email", "news", "withdrawn", source="unsubscribe")
    # After a later withdrawal, the same undated grant in a file is a new answer again.
    assert importer.import_consent(hub_db.engine, hub_db.settings, path).recorded == 1
    with hub_db.engine.connect() as conn:
        assert len(consent.history(conn, cid)) == 3


def test_a_consent_sheet_without_the_columns_names_them_as_a_sheet_would(hub_db: HubDB, tmp_path: Path) -> None:
    from hub.i18n import use_language
    from hub.spreadsheet import SpreadsheetError

    path = tmp_path / "анкеты.csv"
    path.write_text("имя;согласие\nАнна;да\n", encoding="utf-8")
    with pytest.raises(SpreadsheetError) as refused:
        importer.import_consent(hub_db.engine, hub_db.settings, path)
    assert ("нет столбца для: email или телефон (email, phone), канал (channel), цель (purpose) "
            "(найдены: имя, согласие)") in str(refused.value)
    with use_language("en"), pytest.raises(SpreadsheetError) as english:
        importer.import_consent(hub_db.engine, hub_db.settings, path)
    assert "no column for email or phone (email, phone), channel, purpose (found: имя, согласие)" in str(english.value)
