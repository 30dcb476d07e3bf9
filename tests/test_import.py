"""Spreadsheet import end to end, read back through `hub contacts list --json`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub import importer, sampledata
from hub.demo import score
from tests.conftest import HubDB
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases  # the importer's bulk writes

OFFICE_ROWS = [
    ["ФИО", "Телефон", "E-mail", "Дата рождения", "Город"],
    ["Иванов Иван Иванович", "8 (916) 123-45-67", "Ivan.Ivanov@Mail.RU", "14.03.1985", "Москва"],
    ["Иванов Иван Иванович", "+7 903 000 11 22", "", "1990-01-02", "Казань"],          # a namesake
    ["Иван Иванов", "+7 916 1234567, 8 10 375 29 1234567", "", "", "Москва"],        # same as row 2
    ["Петрова Анна", "нет", " ANNA@YANDEX.RU ", "31.02.1985", "Самара"],             # bad phone, bad date
    ["Анна Петрова", "9031112233 доб. 45", "anna@yandex.ru", "", ""],                # same as row 5
    ["", "", "", "", "Тула"],                                                        # nothing to keep
    ["Сидоров Пётр", "123", "petr@", "", ""],
]


def write_csv(path: Path, rows: list[list[str]], encoding: str, delimiter: str) -> Path:
    with path.open("w", encoding=encoding, newline="") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return path


def cli_json(*args: str) -> object:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("encoding,delimiter", [("cp1251", ";"), ("utf-8-sig", ","), ("utf-8", ";")])
def test_messy_office_export_becomes_one_contact_per_person(hub_db: HubDB, tmp_path: Path, encoding: str,
                                                            delimiter: str) -> None:
    path = write_csv(tmp_path / "clients.csv", OFFICE_ROWS, encoding, delimiter)
    report = cli_json("import", "contacts", str(path), "--json")
    assert report["rows"] == 7
    assert report["skipped"] == [{"line": 7, "reason": "нет ни имени, ни телефона, ни email"}]
    assert report["created"] == 4 and report["merged"] == 2
    assert report["invalid_phones"] == 2 and report["invalid_emails"] == 1
    people = cli_json("contacts", "list", "--json")
    assert len(people) == 4
    by_phone = {p: c for c in people for p in c["phones"]}
    ivan = by_phone["+79161234567"]
    assert sorted(ivan["phones"]) == ["+375291234567", "+79161234567"]
    assert ivan["emails"] == ["ivan.ivanov@mail.ru"] and ivan["city"] == "Москва"
    namesake = by_phone["+79030001122"]
    assert namesake["id"] != ivan["id"] and namesake["last_name"] == "Иванов"
    anna = by_phone["+79031112233"]
    assert anna["emails"] == ["anna@yandex.ru"] and anna["invalid_phones"] == ["нет"]
    petr = next(c for c in people if c["first_name"] == "Пётр")
    assert petr["invalid_phones"] == ["123"] and petr["invalid_emails"] == ["petr@"]
    for contact in people:
        assert set(contact) >= {"id", "first_name", "last_name", "phones", "emails", "external_refs",
                                "orders_count", "revenue", "last_order_at", "lifecycle"}
        assert all(p.startswith("+") and p[1:].isdigit() for p in contact["phones"])


def test_reimporting_the_same_file_creates_nobody(hub_db: HubDB, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "clients.csv", OFFICE_ROWS, "utf-8", ";")
    first = importer.import_contacts(hub_db.engine, hub_db.settings, path)
    second = importer.import_contacts(hub_db.engine, hub_db.settings, path)
    assert first.created == 4 and second.created == 0 and second.merged == 6
    assert second.updated == 0  # rows 2 and 4 disagree about nothing a re-read would change


def test_generated_base_resolves_without_a_single_wrong_merge(hub_db: HubDB, tmp_path: Path) -> None:
    path = tmp_path / "base.csv"
    truth_path = tmp_path / "truth.csv"
    sampledata.write_csv(path, sampledata.spreadsheet_rows(sampledata.people(400, 5), 5), encoding="cp1251",
                         delimiter=";", truth_path=str(truth_path))
    truth = {int(line): int(person) for line, person in
             (row.split(",") for row in truth_path.read_text().splitlines()[1:])}
    placed: dict[int, int | None] = {}
    report = importer.import_contacts(hub_db.engine, hub_db.settings, path,
                                      placed=lambda lines, ids: placed.update(zip(lines, ids, strict=True)))
    quality = score(truth, placed)
    assert report.skipped_count == 0 and quality["rows_unplaced"] == 0
    assert quality["false_merges"] == 0
    assert quality["people"] == 400
    # A person stays split only where their rows share no valid phone or email: a few percent.
    assert quality["split_people"] <= 0.05 * quality["people"]


def test_xlsx_import(hub_db: HubDB, tmp_path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["Name", "Phone", "Email"])
    ws.append(["John Smith", 79161234567, "JOHN@EXAMPLE.ORG"])
    ws.append(["Jane Roe", "8 903 111-22-33", ""])
    wb.save(tmp_path / "c.xlsx")
    report = importer.import_contacts(hub_db.engine, hub_db.settings, tmp_path / "c.xlsx")
    assert report.created == 2
    people = cli_json("contacts", "list", "--json")
    assert {tuple(c["phones"]) for c in people} == {("+79161234567",), ("+79031112233",)}


def test_map_overrides_and_bad_files_give_one_clear_line(hub_db: HubDB, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "odd.csv", [["Клиент", "Моб", "Заметка"], ["Олег Ким", "89161234567", "vip"]],
                     "utf-8", ";")
    report = cli_json("import", "contacts", str(path), "--map", "Моб=phone", "--json")
    assert report["created"] == 1
    result = CliRunner().invoke(cli, ["import", "contacts", str(path), "--map", "Нет=phone"])
    assert result.exit_code == 1
    assert result.output.startswith("Ошибка: ") and "Нет" in result.output and "Traceback" not in result.output
    bad = tmp_path / "x.pdf"
    bad.write_text("x")
    result = CliRunner().invoke(cli, ["import", "contacts", str(bad)])
    assert result.exit_code == 1 and result.output.count("\n") == 1


def test_commands_refuse_a_database_that_was_not_initialised(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUB_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    result = CliRunner().invoke(cli, ["contacts", "list"])
    assert result.exit_code == 1
    assert "сначала выполните `hub init`" in result.output


def test_reading_in_a_second_process_gives_the_same_base(hub_db: HubDB, tmp_path: Path) -> None:
    path = tmp_path / "base.csv"
    sampledata.write_csv(path, sampledata.spreadsheet_rows(sampledata.people(300, 9), 9), encoding="cp1251",
                         delimiter=";")
    here: dict[int, int | None] = {}
    there: dict[int, int | None] = {}
    a = importer.import_contacts(hub_db.engine, hub_db.settings, path, parallel=False,
                                 placed=lambda lines, ids: here.update(zip(lines, ids, strict=True)))
    b = importer.import_contacts(hub_db.engine, hub_db.settings, path, parallel=True,
                                 placed=lambda lines, ids: there.update(zip(lines, ids, strict=True)))
    assert a.created > 250 and b.created == 0  # the second pass finds everyone again
    assert (a.rows, a.invalid_phones, a.invalid_emails) == (b.rows, b.invalid_phones, b.invalid_emails)
    assert here == there


def test_a_bad_file_read_in_a_second_process_is_one_clear_error(hub_db: HubDB, tmp_path: Path) -> None:
    from hub.spreadsheet import SpreadsheetError

    path = tmp_path / "x.csv"
    path.write_text("Комментарий;Дата\nничего;вчера\n", encoding="utf-8")
    with pytest.raises(SpreadsheetError, match="Комментарий"):
        importer.import_contacts(hub_db.engine, hub_db.settings, path, parallel=True)


def test_import_leaves_the_garbage_collector_as_it_found_it(hub_db: HubDB, tmp_path: Path) -> None:
    import gc

    from hub.spreadsheet import SpreadsheetError

    path = write_csv(tmp_path / "clients.csv", OFFICE_ROWS, "utf-8", ";")
    before = gc.get_threshold()
    importer.import_contacts(hub_db.engine, hub_db.settings, path)
    bad = tmp_path / "bad.csv"
    bad.write_text("Комментарий\nничего\n", encoding="utf-8")
    with pytest.raises(SpreadsheetError):
        importer.import_contacts(hub_db.engine, hub_db.settings, bad)
    assert gc.get_threshold() == before


def test_one_person_on_rows_that_disagree_is_not_updated_by_a_reimport(hub_db: HubDB, tmp_path: Path) -> None:
    rows = [["ФИО", "Телефон", "Город"], ["Олег Ким", "89161234567", "Мск"], ["Олег Ким", "+79161234567", "Москва"]]
    path = write_csv(tmp_path / "c.csv", rows, "utf-8", ";")
    importer.import_contacts(hub_db.engine, hub_db.settings, path)
    again = importer.import_contacts(hub_db.engine, hub_db.settings, path)
    assert again.updated == 0
    (person,) = cli_json("contacts", "list", "--json")
    assert person["city"] == "Москва"  # the later row of the same file wins


def test_a_consent_row_for_a_refused_person_is_skipped_with_a_reason(hub_db, tmp_path, plugin_manager) -> None:
    from hub.hookspecs import hookimpl
    from hub import importer

    class KeepOut:
        @hookimpl
        def refuse_records(self, records):
            return {i for i, p in enumerate(records) if ("email", "gone@example.ru") in p.keys}

    plugin_manager.register(KeepOut())
    path = tmp_path / "consent.csv"
    path.write_text("email;channel;purpose;status;source;date\n"
                    "gone@example.ru;email;marketing;granted;form;2025-01-01\n"
                    "kept@example.ru;email;marketing;granted;form;2025-01-01\n", encoding="utf-8")
    report = importer.import_consent(hub_db.engine, hub_db.settings, path)
    assert report.recorded == 1
    assert report.skipped == [{"line": 2, "reason": "данные этого человека удалены по его просьбе"}]
