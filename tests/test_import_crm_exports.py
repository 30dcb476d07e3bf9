"""Bitrix24 and amoCRM contact exports, and office files with titles, empty sheets and formulas, imported as they are.

Parsing is checked at the spreadsheet level (what reaches ContactRecord); the
import end to end only for what the report says, not for who merges with whom.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from hub import i18n, identity, importer
from hub.spreadsheet import Layout, Row, SpreadsheetError, read_rows
from tests.conftest import HubDB
from tests.support.cli import cli

# The columns of Bitrix24's own contact export (CRM > Контакты > Экспорт), in its order, shortened.
BITRIX_HEADERS = [
    "ID", "Обращение", "Имя", "Фамилия", "Отчество", "Дата рождения", "Компания", "Ответственный",
    "Рабочий телефон", "Мобильный телефон", "Номер факса", "Домашний телефон", "Номер пейджера",
    "Телефон для рассылок", "Другой телефон", "Корпоративный сайт", "Рабочий e-mail", "Частный e-mail",
    "E-mail для рассылок", "Другой e-mail", "E-mail (рабочий)", "Должность", "Комментарий", "Тип контакта",
    "Источник", "Дополнительно об источнике",
]


def bitrix_row(**cells: object) -> list[object]:
    return [cells.get(header, "") for header in BITRIX_HEADERS]


BITRIX_PEOPLE = [
    bitrix_row(ID=101, Обращение="г-н", Имя="Иван", Фамилия="Соколов", Отчество="Петрович", Компания="ООО Ромашка",
               Ответственный="Мария Менеджерова", **{
                   "Рабочий телефон": "+7 495 111-22-33", "Мобильный телефон": "8 916 555-66-77",
                   "Номер факса": "8 495 111-22-34", "Рабочий e-mail": "sokolov@romashka.ru",
                   "Частный e-mail": "ivan@почта.рф", "E-mail (рабочий)": "i.sokolov@romashka.ru",
                   "Корпоративный сайт": "romashka.ru", "Должность": "Директор", "Тип контакта": "Клиенты",
                   "Источник": "Звонок"}),
    bitrix_row(ID=102, Имя="Ольга", Фамилия="Соколова", Компания="ООО Ромашка", **{
        "Рабочий телефон": "+7 495 111-22-33", "Домашний телефон": "8 (495) 222-33-44",
        "Номер пейджера": "8 495 777-88-99", "Телефон для рассылок": "8 903 000-11-22",
        "E-mail для рассылок": "mailto:olga@romashka.ru", "Другой e-mail": "olga@mail.ru",
        "Другой телефон": "тел. +7 916 555-66-70, моб. 8 926 555-66-88"}),
]


def bitrix_xlsx(path: Path, people: list[list[object]] = BITRIX_PEOPLE) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.worksheets[0]
    sheet.title = "Контакты"
    sheet.append(["Контакты — выгрузка от 01.12.2026"])
    sheet.append([])
    sheet.append(BITRIX_HEADERS)
    for row in people:
        sheet.append(row)
    workbook.save(path)
    return path


# amoCRM's contact export of a B2B base: «Полное имя контакта», «Рабочий прямой телефон», «Личный email»...
AMO_ROWS = [
    ["ID", "Тип", "Полное имя контакта", "Компания", "Ответственный", "Теги", "Рабочий телефон",
     "Рабочий прямой телефон", "Мобильный телефон", "Факс", "Домашний телефон", "Другой телефон", "Рабочий email",
     "Личный email", "Другой email", "Должность (контакт)", "Web"],
    ["5001", "контакт", "Петров Пётр", "АО Вектор", "Иван Продавцов", "опт, b2b", "8 800 555-35-35",
     "+7 (812) 400-10-20", "+7 921 100-20-30", "", "", "", "info@vector.ru", "petrov@gmail.com", "", "Закупщик",
     "vector.ru"],
    ["5002", "контакт", "Сидорова Анна", "АО Вектор", "Иван Продавцов", "опт", "8 800 555-35-35", "", "",
     "+7 812 400-10-29", "", "", "info@vector.ru", "", "MAILTO:anna@vector.ru", "Бухгалтер", ""],
]


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8", delimiter: str = ";") -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        csv.writer(handle, delimiter=delimiter).writerows(rows)
    return path


def read(path: Path, **kwargs: object) -> tuple[list[Row], Layout]:
    layout = Layout()
    rows = list(read_rows(path, source="test", layout=layout, **kwargs))  # type: ignore[arg-type]
    return rows, layout


def cli_json(*args: str) -> object:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- Bitrix24 --------------------------------------------------------------------------


def test_bitrix24_export_under_a_title_row_keeps_each_phone_and_email_type(tmp_path: Path) -> None:
    rows, layout = read(bitrix_xlsx(tmp_path / "bitrix.xlsx"))
    assert layout.header_row == 3 and layout.sheet == "Контакты"
    assert [row.line for row in rows] == [4, 5]  # as Excel shows them, the title rows counted
    ivan, olga = (row.record for row in rows)
    assert ivan is not None and olga is not None
    assert (ivan.first_name, ivan.last_name, ivan.middle_name, ivan.company, ivan.external_id) == (
        "Иван", "Соколов", "Петрович", "ООО Ромашка", "101")
    assert ivan.labels == {"+7 495 111-22-33": "work", "8 916 555-66-77": "mobile", "8 495 111-22-34": "fax",
                           "sokolov@romashka.ru": "work", "ivan@почта.рф": "private"}
    assert olga.labels == {"+7 495 111-22-33": "work", "8 (495) 222-33-44": "home", "8 495 777-88-99": "other",
                           "8 903 000-11-22": "mailing", "тел. +7 916 555-66-70, моб. 8 926 555-66-88": "other",
                           "mailto:olga@romashka.ru": "mailing", "olga@mail.ru": "other"}
    # Known CRM columns are kept under documented keys; the rest under their header.
    assert ivan.attributes == {"salutation": "г-н", "responsible": "Мария Менеджерова", "position": "Директор",
                               "contact_type": "Клиенты", "lead_source": "Звонок",
                               "E-mail (рабочий)": "i.sokolov@romashka.ru", "Корпоративный сайт": "romashka.ru"}
    assert layout.attributes == {"Обращение": "salutation", "Ответственный": "responsible", "Должность": "position",
                                 "Тип контакта": "contact_type", "Дополнительно об источнике": "source_details"}
    assert layout.unused == ["Корпоративный сайт", "E-mail (рабочий)", "Комментарий"]
    used = {column["column"]: (column["field"], column["label"]) for column in layout.columns}
    assert used["Номер пейджера"] == ("phone", "other") and used["Частный e-mail"] == ("email", "private")
    assert used["Фамилия"] == ("last_name", None)


def test_the_cells_of_a_bitrix24_export_become_typed_identifiers(tmp_path: Path) -> None:
    rows, _layout = read(bitrix_xlsx(tmp_path / "bitrix.xlsx"))
    olga = rows[1].record
    assert olga is not None
    found = {(i.kind, i.value): i.label for cell in olga.phones
             for i in _with_labels(cell, olga.labels, phone=True)}
    found |= {(i.kind, i.value): i.label for cell in olga.emails for i in _with_labels(cell, olga.labels, phone=False)}
    assert found == {
        ("phone", "+74951112233"): "work", ("phone", "+74952223344"): "home", ("phone", "+74957778899"): "other",
        ("phone", "+79030001122"): "mailing", ("phone", "+79165556670"): "other", ("phone", "+79265556688"): "mobile",
        ("email", "olga@romashka.ru"): "mailing", ("email", "olga@mail.ru"): "other",
    }
    assert all(i.valid for i in identity.prepare(olga, "RU").identifiers)


def _with_labels(cell: str, labels: dict[str, str], *, phone: bool) -> list:
    from hub import normalize

    if phone:
        return normalize.phones(cell, "RU", label=labels.get(cell))
    return normalize.emails(cell, label=labels.get(cell))


def test_bitrix24_csv_in_windows_1251_with_a_title_and_an_empty_line(tmp_path: Path) -> None:
    rows = [["Контакты — выгрузка от 01.12.2026"], [], BITRIX_HEADERS,
            [str(cell) for cell in BITRIX_PEOPLE[0]]]
    path = write_csv(tmp_path / "bitrix.csv", rows, encoding="cp1251")
    found, layout = read(path)
    assert layout.header_row == 3 and layout.sheet is None
    assert [row.line for row in found] == [4]
    record = found[0].record
    assert record is not None and record.labels["8 916 555-66-77"] == "mobile"


def test_a_whole_name_typed_into_one_name_field_is_split(tmp_path: Path) -> None:
    rows = [["ID", "Имя", "Фамилия", "Мобильный телефон"],
            ["1", "Смирнов Дмитрий", "", "8 921 222-33-55"],
            ["2", "", "Орлова Анна Сергеевна", "8 921 222-33-56"],
            ["3", "Анна Мария", "", "8 921 222-33-57"],  # two first names: left as typed
            ["4", "Иван", "", "8 921 222-33-58"]]
    found, _layout = read(write_csv(tmp_path / "bitrix.csv", rows, encoding="cp1251"))
    names = [(r.record.first_name, r.record.last_name, r.record.middle_name) for r in found if r.record]
    assert names == [("Дмитрий", "Смирнов", None), ("Анна", "Орлова", "Сергеевна"), ("Анна Мария", None, None),
                     ("Иван", None, None)]


# --- amoCRM ----------------------------------------------------------------------------


def test_amocrm_b2b_export(tmp_path: Path) -> None:
    rows, layout = read(write_csv(tmp_path / "amocrm.csv", AMO_ROWS, encoding="utf-8-sig", delimiter=","))
    assert layout.header_row == 1
    petrov, anna = (row.record for row in rows)
    assert petrov is not None and anna is not None
    assert (petrov.last_name, petrov.first_name, petrov.company, petrov.tags) == ("Петров", "Пётр", "АО Вектор",
                                                                                 ["опт", "b2b"])
    assert petrov.labels == {"8 800 555-35-35": "work", "+7 (812) 400-10-20": "work", "+7 921 100-20-30": "mobile",
                             "info@vector.ru": "work", "petrov@gmail.com": "private"}
    assert anna.labels == {"8 800 555-35-35": "work", "+7 812 400-10-29": "fax", "info@vector.ru": "work",
                           "MAILTO:anna@vector.ru": "other"}
    assert petrov.attributes == {"Тип": "контакт", "responsible": "Иван Продавцов", "position": "Закупщик",
                                 "Web": "vector.ru"}
    assert layout.unused == ["Тип", "Web"]
    assert {"column": "Рабочий прямой телефон", "field": "phone", "label": "work"} in layout.columns


# --- where the header is -----------------------------------------------------------------


def test_header_row_given_by_hand(tmp_path: Path) -> None:
    # Row 1 names one known column as a title would ("Клиент"); row 2 is the real header of a one-column list.
    path = write_csv(tmp_path / "list.csv", [["Клиент"], ["Телефон"], ["8 916 123-45-67"], ["8 903 111-22-33"]])
    rows, layout = read(path)
    assert layout.header_row == 1  # found on its own: the first row naming a name, phone or email column
    rows, layout = read(path, header_row=2)
    assert layout.header_row == 2
    assert [(row.line, row.record.phones if row.record else None) for row in rows] == [
        (3, ["8 916 123-45-67"]), (4, ["8 903 111-22-33"])]
    with pytest.raises(SpreadsheetError, match="--header-row 9"):
        read(path, header_row=9)
    blank = write_csv(tmp_path / "blank.csv", [["Контакты"], [], ["Телефон"], ["8 916 123-45-67"]])
    with i18n.use_language("en"), pytest.raises(SpreadsheetError, match="row 2 .--header-row. is empty"):
        read(blank, header_row=2)


def test_a_strong_header_under_a_weak_title_wins(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [["Клиент"], ["ФИО", "Телефон", "E-mail"], ["Ким Олег", "89161234567", ""]])
    rows, layout = read(path)
    assert layout.header_row == 2 and rows[0].record is not None and rows[0].record.last_name == "Ким"


def test_a_file_of_headers_only_reads_no_rows_but_says_where_the_header_was(tmp_path: Path) -> None:
    rows, layout = read(write_csv(tmp_path / "empty.csv", [["Выгрузка"], BITRIX_HEADERS, [], []]))
    assert rows == [] and layout.header_row == 2


# --- workbooks: sheets and formulas --------------------------------------------------------


def test_an_empty_active_sheet_names_the_sheets_with_data(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    workbook.worksheets[0].title = "Лист1"
    data = workbook.create_sheet("Клиенты")
    data.append(["ФИО", "Телефон"])
    data.append(["Ким Олег", "89161234567"])
    workbook.create_sheet("Пустой")
    path = tmp_path / "book.xlsx"
    workbook.save(path)
    with pytest.raises(SpreadsheetError) as error:
        read(path)
    message = str(error.value)
    assert "«Лист1»" in message and "«Клиенты»" in message and "на листе «Клиенты»" in message
    assert "--sheet" in message and "Пустой" not in message
    rows, layout = read(path, sheet="Клиенты")
    assert layout.sheet == "Клиенты" and rows[0].record is not None and rows[0].record.phones == ["89161234567"]
    with pytest.raises(SpreadsheetError, match="Нет листа|нет листа"):
        read(path, sheet="Нет листа")
    csv_path = write_csv(tmp_path / "a.csv", [["Телефон"], ["89161234567"]])
    with pytest.raises(SpreadsheetError, match="--sheet"):
        read(csv_path, sheet="Клиенты")


def test_a_formula_in_a_phone_cell_is_reported_by_cell_and_never_imported(tmp_path: Path) -> None:
    # openpyxl, like many scripts, saves formulas without the values Excel would compute.
    workbook = openpyxl.Workbook()
    sheet = workbook.worksheets[0]
    sheet.append(["Имя", "Фамилия", "Мобильный телефон", "E-mail"])
    sheet.append(["Иван", "Ким", '="8916"&"1234567"', "ivan@mail.ru"])
    sheet.append(["Анна", "Ли", "8 903 111-22-33", "=LOWER(\"ANNA@MAIL.RU\")"])
    sheet.append(["=UPPER(\"пётр\")", "Ли", "8 903 111-22-44", ""])
    path = tmp_path / "formulas.xlsx"
    workbook.save(path)
    with i18n.use_language("en"):
        rows, _layout = read(path)
    ivan, anna, petr = rows
    assert petr.record is not None and petr.record.first_name is None and petr.record.last_name == "Ли"
    assert petr.warnings == ['A4: the formula =UPPER("пётр") was not imported (save the file from Excel so that it '
                             "keeps the values of its formulas, or paste the values instead)"]
    assert ivan.record is not None and ivan.record.phones == [] and ivan.record.labels == {}
    assert ivan.record.emails == ["ivan@mail.ru"]
    assert len(ivan.warnings) == 1 and ivan.warnings[0].startswith('C2: the formula ="8916"&"1234567" is not a phone')
    assert anna.record is not None and anna.record.emails == [] and anna.record.phones == ["8 903 111-22-33"]
    assert anna.warnings[0].startswith("D3: the formula =LOWER")
    with i18n.use_language("ru"):
        rows, _layout = read(path)
    assert rows[0].warnings[0].startswith('C2: формула ="8916"&"1234567" — не номер телефона')


def test_a_workbook_with_computed_formulas_imports_their_values(tmp_path: Path) -> None:
    # Excel stores each formula's value next to it: that value is what is imported.
    workbook = openpyxl.Workbook()
    sheet = workbook.worksheets[0]
    sheet.append(["ФИО", "Телефон"])
    sheet.append(["Ким Олег", "=A1"])
    path = tmp_path / "computed.xlsx"
    workbook.save(path)
    import zipfile

    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    sheet_xml = "xl/worksheets/sheet1.xml"
    parts[sheet_xml] = parts[sheet_xml].replace(b"<f>A1</f><v />", b"<f>A1</f><v>89161234567</v>")
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    rows, _layout = read(path)
    assert rows[0].record is not None and rows[0].record.phones == ["89161234567"] and rows[0].warnings == []


def test_a_formula_typed_into_a_csv_phone_cell(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", [["ФИО", "Телефон"], ["Ким Олег", "=+7 916 123-45-67"]])
    rows, _layout = read(path)
    assert rows[0].record is not None and rows[0].record.phones == []
    assert rows[0].warnings and rows[0].warnings[0].startswith("B2: ")


# --- end to end ------------------------------------------------------------------------------


def test_import_reports_unused_columns_header_row_and_formulas(hub_db: HubDB, tmp_path: Path) -> None:
    people = [*BITRIX_PEOPLE, bitrix_row(ID=103, Имя="Пётр", Фамилия="Ли", **{"Мобильный телефон": "=B5"})]
    path = bitrix_xlsx(tmp_path / "bitrix.xlsx", people)
    report = cli_json("import", "contacts", str(path), "--json")
    assert isinstance(report, dict)
    assert report["header_row"] == 3 and report["sheet"] == "Контакты"
    assert report["rows"] == 3 and report["skipped_count"] == 0
    assert report["unused_columns"] == ["Корпоративный сайт", "E-mail (рабочий)", "Комментарий"]
    assert report["attribute_columns"]["Ответственный"] == "responsible"
    assert {"column": "Телефон для рассылок", "field": "phone", "label": "mailing"} in report["columns"]
    assert report["ignored_columns"] == []
    assert [w["line"] for w in report["warnings"]] == [6]
    assert report["warnings"][0]["warning"].startswith("J6: формула =B5 — не номер телефона")
    contacts = cli_json("contacts", "list", "--json")
    assert isinstance(contacts, list)
    phones = {phone for person in contacts for phone in person["phones"]}
    assert "+79265556688" in phones and "+74957778899" in phones  # the labelled second number, the pager
    assert not any(phone.startswith("=") for phone in phones)
    emails = {email for person in contacts for email in person["emails"]}
    assert {"ivan@почта.рф", "olga@romashka.ru"} <= emails and "i.sokolov@romashka.ru" not in emails


def test_import_summary_names_the_columns_it_did_not_use(hub_db: HubDB, tmp_path: Path) -> None:
    path = bitrix_xlsx(tmp_path / "bitrix.xlsx")
    result = CliRunner().invoke(cli, ["import", "contacts", str(path), "--map", "Комментарий=ignore"])
    assert result.exit_code == 0, result.output
    assert "Заголовки столбцов взяты из строки 3." in result.output
    assert "2 столбца не использованы" in result.output and "«E-mail (рабочий)»" in result.output
    assert "«Ответственный» → responsible" in result.output
    assert "Отброшены, как указано (--map …=ignore): «Комментарий»." in result.output
    result = CliRunner().invoke(cli, ["import", "contacts", str(path)], env={"HUB_LANGUAGE": "en"})
    assert "3 columns not used" in result.output and "Column headers read from row 3." in result.output


def test_a_headers_only_file_is_a_warning_not_a_silent_success(hub_db: HubDB, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "empty.csv", [["Контакты на 01.12.2026"], [], BITRIX_HEADERS])
    report = cli_json("import", "contacts", str(path), "--json")
    assert isinstance(report, dict)
    assert report["rows"] == 0 and report["header_row"] == 3
    assert report["warnings"] == [{"line": 3, "warning": "в этой строке заголовки столбцов, но под ними нет ни одной "
                                                          "строки с данными; ничего не импортировано"}]
    result = CliRunner().invoke(cli, ["import", "contacts", str(path)])
    assert "строка 3: в этой строке заголовки столбцов, но под ними нет ни одной строки" in result.output


def test_header_row_and_sheet_options_reach_the_reader(hub_db: HubDB, tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    workbook.worksheets[0].title = "Пусто"
    data = workbook.create_sheet("Клиенты")
    data.append(["Клиент"])
    data.append(["Телефон"])
    data.append(["8 916 123-45-67"])
    path = tmp_path / "book.xlsx"
    workbook.save(path)
    result = CliRunner().invoke(cli, ["import", "contacts", str(path)])
    assert result.exit_code == 1 and "--sheet 'Клиенты'" in result.output
    report = cli_json("import", "contacts", str(path), "--sheet", "Клиенты", "--header-row", "2", "--json")
    assert isinstance(report, dict)
    assert (report["sheet"], report["header_row"], report["created"]) == ("Клиенты", 2, 1)


def test_the_reader_process_tells_the_layout_too(hub_db: HubDB, tmp_path: Path) -> None:
    path = bitrix_xlsx(tmp_path / "bitrix.xlsx")
    report = importer.import_contacts(hub_db.engine, hub_db.settings, path, parallel=True)
    assert report.header_row == 3 and report.unused_columns == ["Корпоративный сайт", "E-mail (рабочий)",
                                                                "Комментарий"]
    empty = write_csv(tmp_path / "empty.csv", [BITRIX_HEADERS])
    report = importer.import_contacts(hub_db.engine, hub_db.settings, empty, parallel=True)
    assert report.header_row == 1 and report.rows == 0 and report.warnings[0]["line"] == 1
