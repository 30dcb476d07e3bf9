"""Reading customer spreadsheets the way Russian offices export them."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import openpyxl
import pytest

from hub import i18n
from hub.spreadsheet import FIELDS, Row, SpreadsheetError, detect_columns, read_rows


def write_csv(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "clients.csv"
    path.write_bytes(text.encode(encoding))
    return path


def read_all(path: Path, **kwargs) -> list[Row]:
    kwargs.setdefault("source", "excel")
    return list(read_rows(path, **kwargs))


def only_record(rows: list[Row]):
    assert len(rows) == 1, rows
    assert rows[0].record is not None, rows[0]
    return rows[0].record


# --- encodings and delimiters ---------------------------------------------------------


def test_cp1251_with_semicolons(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "ФИО;Телефон;Город\r\nПетрова Ольга Сергеевна;8 (916) 123-45-67;Санкт-Петербург\r\n",
        encoding="cp1251",
    )
    record = only_record(read_all(path, source="1c"))
    assert record.source == "1c"
    assert record.last_name == "Петрова"
    assert record.first_name == "Ольга"
    assert record.middle_name == "Сергеевна"
    assert record.phones == ["8 (916) 123-45-67"]
    assert record.city == "Санкт-Петербург"


def test_utf8_bom_with_commas(tmp_path: Path) -> None:
    text = "Комментарий,Имя,Фамилия,Email\nVIP,Анна,Смирнова,anna@example.ru\n"
    path = write_csv(tmp_path, text, encoding="utf-8-sig")
    record = only_record(read_all(path))
    assert record.attributes == {"Комментарий": "VIP"}  # no BOM stuck to the first header
    assert record.first_name == "Анна"
    assert record.last_name == "Смирнова"
    assert record.emails == ["anna@example.ru"]


def test_plain_utf8_with_tabs(tmp_path: Path) -> None:
    text = "Клиент\tМобильный\tКомпания\nЁжиков Пётр\t+79161234567\tООО «Ёлка, и К»\n"
    path = write_csv(tmp_path, text)
    record = only_record(read_all(path))
    assert record.last_name == "Ёжиков"
    assert record.first_name == "Пётр"
    assert record.phones == ["+79161234567"]
    assert record.company == "ООО «Ёлка, и К»"


def test_utf8_letter_split_at_sniff_boundary_is_still_utf8(tmp_path: Path) -> None:
    # Pad so that a two-byte Cyrillic letter straddles the 64 KiB sample end.
    header = "ФИО;Комментарий\n"
    name = "Иванов Иван;"
    padding = 65536 - 1 - len(header.encode()) - len(name.encode())
    text = header + name + "x" * padding + "Ж\n"
    assert len(text.encode()) > 65536
    rows = read_all(write_csv(tmp_path, text))
    assert rows[0].record.attributes["Комментарий"].endswith("xЖ")


def test_quoted_cells_with_delimiters_and_newlines(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        'ФИО;Телефон;Комментарий\n'
        '"Сидоров; Пётр";+7 900 000-00-01;"первая строка\nвторая; строка"\n'
        'Козлова Анна;+7 900 000-00-02;\n',
        encoding="cp1251",
    )
    rows = read_all(path)
    assert [row.line for row in rows] == [2, 3]  # a multi-line cell is still one Excel row
    first = rows[0].record
    assert first.attributes["Комментарий"] == "первая строка\nвторая; строка"
    assert first.phones == ["+7 900 000-00-01"]
    assert rows[1].record.last_name == "Козлова"


def test_excel_sep_line_sets_delimiter_and_is_not_a_row(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "sep=,\nФИО,Комментарий\nИванов Иван,a;b\n")
    [row] = read_all(path)
    assert row.line == 2  # Excel hides the hint line, so the header is row 1
    assert row.record.last_name == "Иванов"
    assert row.record.attributes == {"Комментарий": "a;b"}


# --- XLSX -----------------------------------------------------------------------------


def test_xlsx_numeric_phone_and_date_cell(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Фамилия", "Имя", "Телефон", "Дата рождения", "Код клиента", "Скидка"])
    sheet.append(["ИВАНОВ", "иван", 79161234567, dt.datetime(1985, 3, 14), 1042.0, 7.5])
    sheet.append([None, None, None, None, None, None])
    sheet.append(["Петрова", "Мария", 7.9031112233e10, dt.date(1990, 12, 1), 1043, None])
    path = tmp_path / "clients.xlsx"
    workbook.save(path)

    rows = read_all(path)
    assert [row.line for row in rows] == [2, 4]
    ivanov, petrova = (row.record for row in rows)
    assert (ivanov.last_name, ivanov.first_name) == ("Иванов", "Иван")
    assert ivanov.phones == ["79161234567"]
    assert ivanov.birthday == dt.date(1985, 3, 14)
    assert ivanov.external_id == "1042"
    assert ivanov.attributes == {"Скидка": "7.5"}
    assert petrova.phones == ["79031112233"]
    assert petrova.birthday == dt.date(1990, 12, 1)
    assert rows[0].warnings == []


def test_xlsx_as_other_programs_write_it(tmp_path: Path) -> None:
    # Some exporters store a wrong sheet size ("A1") and numbers in exponent
    # form; neither may cut rows off or turn a phone into "7.9e10".
    workbook = openpyxl.Workbook()
    workbook.active.append(["ФИО", "Телефон"])
    workbook.active.append(["Иванов Иван", 79161234567])
    workbook.active.append(["Петров Пётр", 79031112233])
    saved = tmp_path / "saved.xlsx"
    workbook.save(saved)
    path = tmp_path / "clients.xlsx"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                xml = data.decode()
                assert '<dimension ref="A1:B3"' in xml and "<v>79161234567</v>" in xml
                xml = xml.replace('<dimension ref="A1:B3"', '<dimension ref="A1"')
                xml = xml.replace("<v>79161234567</v>", "<v>7.9161234567E10</v>")
                data = xml.encode()
            target.writestr(item, data)

    rows = read_all(path)
    assert [row.record.phones for row in rows] == [["79161234567"], ["79031112233"]]


def test_broken_xlsx_is_a_spreadsheet_error(tmp_path: Path) -> None:
    path = tmp_path / "clients.xlsx"
    path.write_bytes(b"not a zip file")
    with pytest.raises(SpreadsheetError, match="clients.xlsx"):
        read_all(path)


_SHEET = ('<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
          '2006/main"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>'
          '<row r="2"><c r="A2" t="s"><v>2</v></c><c r="B2" t="s"><v>3</v></c></row></sheetData></worksheet>')
_SHARED_TYPE = ('<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-'
                'officedocument.spreadsheetml.sharedStrings+xml"/>')


def _workbook_with_shared_strings(path: Path, shared: "callable") -> Path:
    """A workbook as Excel writes it: cells point into xl/sharedStrings.xml, written by `shared`."""
    saved = path.with_name("saved.xlsx")
    openpyxl.Workbook().save(saved)
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = _SHEET.encode()
            elif item.filename == "[Content_Types].xml":
                data = data.replace(b"</Types>", _SHARED_TYPE.encode() + b"</Types>")
            target.writestr(item.filename, data)
        with target.open("xl/sharedStrings.xml", "w") as out:  # streamed: the test never holds the bomb
            shared(out)
    return path


def _shared(out, *texts: str) -> None:
    out.write(b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/'
              b'spreadsheetml/2006/main">')
    for text in texts:
        out.write(f"<si><t>{text}</t></si>".encode())
    out.write(b"</sst>")


def _huge_cell(out, megabytes: int) -> None:
    """Shared strings whose second cell is `megabytes` of one letter: tiny once deflated."""
    out.write('<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/'
              'spreadsheetml/2006/main"><si><t>ФИО</t></si><si><t>Телефон</t></si><si><t>'.encode())
    block = b"A" * (1024 * 1024)
    for _ in range(megabytes):
        out.write(block)
    out.write(b"</t></si><si><t>+79161234567</t></si></sst>")


def test_xlsx_bomb_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    """24 MB of shared text packed into a few kilobytes: refused from the zip directory, with one line."""
    path = _workbook_with_shared_strings(tmp_path / "bomb.xlsx", lambda out: _huge_cell(out, 24))
    assert path.stat().st_size < 200_000
    with pytest.raises(SpreadsheetError, match="zip-бомба") as caught:
        read_all(path)
    assert str(caught.value).startswith("bomb.xlsx: ") and "\n" not in str(caught.value)


def test_xlsx_shared_strings_beyond_the_memory_cap_are_refused(tmp_path: Path, monkeypatch) -> None:
    """openpyxl holds shared strings in memory, so their size is capped even when they compress modestly."""
    from hub import spreadsheet

    monkeypatch.setattr(spreadsheet, "MAX_XLSX_SHARED_STRINGS", 2 * 1024 * 1024)
    path = _workbook_with_shared_strings(tmp_path / "big.xlsx", lambda out: _huge_cell(out, 3))
    with pytest.raises(SpreadsheetError, match="МБ без сжатия"):
        read_all(path)


def test_xlsx_damaged_near_its_end_is_refused_before_any_row(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    workbook.active.append(["ФИО", "Телефон"])
    for i in range(2000):
        workbook.active.append([f"Иванов Иван {i}", f"+7916{i:07d}"])
    path = tmp_path / "clients.xlsx"
    workbook.save(path)
    with zipfile.ZipFile(path) as archive:
        sheet = archive.getinfo("xl/worksheets/sheet1.xml")
    data = bytearray(path.read_bytes())
    # Flip bytes near the end of the sheet's compressed data: its checksum no longer matches.
    at = sheet.header_offset + 30 + len(sheet.filename) + sheet.compress_size - 40
    data[at:at + 8] = bytes(b ^ 0x55 for b in data[at:at + 8])
    path.write_bytes(bytes(data))
    with pytest.raises(SpreadsheetError, match="повреждена"):
        read_all(path)


def test_a_normal_workbook_still_reads_through_the_checks(tmp_path: Path) -> None:
    path = _workbook_with_shared_strings(
        tmp_path / "ok.xlsx",
        lambda out: _shared(out, "ФИО", "Телефон", "Иванов Иван", "+79161234567"))
    assert only_record(read_all(path)).phones == ["+79161234567"]


# --- headers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("Ф.И.О.", "full_name"),
        ("  фио ", "full_name"),
        ("Имя клиента", "full_name"),
        ("Full name", "full_name"),
        ("Contact name", "full_name"),
        ("Firstname", "first_name"),
        ("Given name", "first_name"),
        ("Surname", "last_name"),
        ("Отчество", "middle_name"),
        ("Patronymic", "middle_name"),
        ("Тел.", "phone"),
        ("Моб. телефон", "phone"),
        ("Phone number", "phone"),
        ("Номер телефона", "phone"),
        ("Телефон 2", "phone"),
        ("E-mail", "email"),
        ("Эл. почта", "email"),
        ("ДР", "birthday"),
        ("Date of birth", "birthday"),
        ("DOB", "birthday"),
        ("Населённый пункт", "city"),
        ("Откуда пришёл", "source"),
        ("Sex", "gender"),
        ("Организация", "company"),
        ("Метки", "tags"),
        ("Customer ID", "external_id"),
        ("Код", "external_id"),
    ],
)
def test_header_synonyms(header: str, field: str) -> None:
    assert field in FIELDS
    assert detect_columns([header, "Телефон"]).get(0) == field


def test_header_detection_end_to_end(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "Customer ID,Name,Mobile,Mail,Birthday,City,Gender,Company,Tags,Source,Notes\n"
        "C-7,John Smith,+1 202 555 0100,john@example.com,1985-03-14,"
        "Boston,male,Acme,vip; b2b,Instagram,likes tea\n",
    )
    row = read_all(path, source="amocrm")[0]
    record = row.record
    assert record.external_id == "C-7"
    assert (record.first_name, record.last_name) == ("John", "Smith")
    assert record.phones == ["+1 202 555 0100"]
    assert record.emails == ["john@example.com"]
    assert record.birthday == dt.date(1985, 3, 14)
    assert record.city == "Boston"
    assert record.gender == "m"
    assert record.company == "Acme"
    assert record.tags == ["vip", "b2b"]
    assert record.source == "amocrm"  # the system, not the marketing channel
    assert record.attributes == {"lead_source": "Instagram", "Notes": "likes tea"}
    assert row.warnings == []


def test_several_phone_and_email_columns(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "ФИО;Телефон;Моб. телефон;Рабочий телефон;Email;Почта\n"
        "Иванов Иван;8 495 111-22-33;;+7 916 000 11 22 доб. 5;a@x.ru;b@x.ru\n",
    )
    record = only_record(read_all(path))
    assert record.phones == ["8 495 111-22-33", "+7 916 000 11 22 доб. 5"]
    assert record.emails == ["a@x.ru", "b@x.ru"]


def test_unrecognised_columns_become_attributes(tmp_path: Path) -> None:
    text = "ФИО;Комментарий;;Комментарий\nИванов Иван;звонить после 18;;\nПетров Пётр;;x;y\n"
    path = write_csv(tmp_path, text)
    first, second = (row.record for row in read_all(path))
    assert first.attributes == {"Комментарий": "звонить после 18"}  # empty values are dropped
    assert second.attributes == {"column 3": "x", "Комментарий (column 4)": "y"}


def test_extra_and_missing_cells(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "ФИО;Телефон;Город\nИванов Иван;123;Тверь;лишнее\nПетров Пётр\n")
    first, second = (row.record for row in read_all(path))
    assert first.attributes == {"column 4": "лишнее"}
    assert second.last_name == "Петров"
    assert second.phones == []
    assert second.city is None


def test_no_recognisable_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "Колонка1;Колонка2\nа;б\n")
    with pytest.raises(SpreadsheetError, match="--map") as caught:
        read_all(path)
    assert "'Колонка1'" in str(caught.value)
    assert "\n" not in str(caught.value)


# --- --map overrides ------------------------------------------------------------------


def test_map_override(tmp_path: Path) -> None:
    text = "Клиент;Моб;Комментарий;Город\nИванов Иван;89161234567;секрет;Тверь\n"
    path = write_csv(tmp_path, text)
    mapping = {"моб": "phone", "Комментарий": "ignore", "Город": "company"}
    record = only_record(read_all(path, mapping=mapping))
    assert record.phones == ["89161234567"]
    assert record.attributes == {}  # the ignored column is dropped, not kept
    assert record.company == "Тверь"
    assert record.city is None


def test_map_makes_an_unrecognised_file_readable(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "Колонка1;Колонка2\nИванов Иван;+7 900 1\n")
    record = only_record(read_all(path, mapping={"Колонка1": "full_name", "Колонка2": "phone"}))
    assert record.last_name == "Иванов"
    assert record.phones == ["+7 900 1"]


def test_map_beats_automatic_detection_of_the_same_field() -> None:
    headers = ["ФИО", "Контактное лицо", "Телефон"]
    columns = detect_columns(headers, {"Контактное лицо": "full_name"})
    assert columns == {1: "full_name", 2: "phone"}


def test_map_unknown_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "ФИО;Телефон\nИванов Иван;1\n")
    with pytest.raises(SpreadsheetError, match="'Мобила'"):
        read_all(path, mapping={"Мобила": "phone"})


def test_map_unknown_field(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "ФИО;Телефон\nИванов Иван;1\n")
    with pytest.raises(SpreadsheetError, match="'phon'"):
        read_all(path, mapping={"Телефон": "phon"})


# --- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("full_name", "expected"),
    [
        ("Иванов Иван Иванович", ("Иван", "Иванов", "Иванович")),
        ("  ИВАНОВА   МАРИЯ  ПЕТРОВНА ", ("Мария", "Иванова", "Петровна")),
        ("Иван Иванович Иванов", ("Иван", "Иванов", "Иванович")),
        ("Иванов Иван", ("Иван", "Иванов", None)),
        ("Иван Иванов", ("Иван", "Иванов", None)),
        ("Марина Кузнецова", ("Марина", "Кузнецова", None)),
        ("Лина Петрова", ("Лина", "Петрова", None)),
        ("Петрова Лина", ("Лина", "Петрова", None)),
        ("Кузнецова Марина", ("Марина", "Кузнецова", None)),
        ("Константин Ильин", ("Константин", "Ильин", None)),
        ("Иван Петрович", ("Иван", None, "Петрович")),
        ("Мельник Олег", ("Олег", "Мельник", None)),
        ("Анна Карпович", ("Анна", "Карпович", None)),
        ("Марина Алексеевна Станкевич", ("Марина", "Станкевич", "Алексеевна")),
        ("Бабич Андрей Иванович", ("Андрей", "Бабич", "Иванович")),
        ("Толстая", (None, "Толстая", None)),
        ("John Smith", ("John", "Smith", None)),
        ("john ronald smith", ("John", "Smith", "Ronald")),
        ("Smith, John", ("John", "Smith", None)),
        ("McDonald Anna", ("McDonald", "Anna", None)),
        ("Анна", ("Анна", None, None)),
        ("Петров", (None, "Петров", None)),
    ],
)
def test_full_name_split(tmp_path: Path, full_name: str, expected: tuple) -> None:
    path = write_csv(tmp_path, f'ФИО;Телефон\n"{full_name}";1\n')
    record = only_record(read_all(path))
    assert (record.first_name, record.last_name, record.middle_name) == expected


def test_explicit_name_columns_win_over_full_name(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "ФИО;Имя;Отчество\nИванов Ваня Иванович;Иван;\n")
    record = only_record(read_all(path))
    assert record.first_name == "Иван"
    assert record.last_name == "Иванов"
    assert record.middle_name == "Иванович"  # empty explicit cell falls back to the FIO part


# --- dates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell",
    [
        "1985-03-14",
        "14.03.1985",
        "14.03.85",
        "14.3.1985",
        "14/03/1985",
        "14-03-1985",
        "14 марта 1985",
        "14 март 1985 г.",
        "14 мар. 1985",
        "14.03.1985 0:00",
        "1985-03-14 00:00:00",
    ],
)
def test_birthday_forms(tmp_path: Path, cell: str) -> None:
    path = write_csv(tmp_path, f"ФИО;Дата рождения\nИванов Иван;{cell}\n")
    rows = read_all(path)
    assert rows[0].record.birthday == dt.date(1985, 3, 14)
    assert rows[0].warnings == []


def test_two_digit_year_pivot(tmp_path: Path) -> None:
    this_year = dt.date.today().year % 100
    text = f"ФИО;ДР\nА Б;01.01.{this_year:02d}\nВ Г;01.01.{(this_year + 1) % 100:02d}\n"
    first, second = (row.record for row in read_all(write_csv(tmp_path, text)))
    assert first.birthday == dt.date(2000 + this_year, 1, 1)
    assert second.birthday == dt.date(1900 + (this_year + 1) % 100, 1, 1)


def test_other_may_and_genitive_months(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "ФИО;ДР\nА Б;1 мая 1990\nВ Г;5 декабря 2001\n")
    birthdays = [row.record.birthday for row in read_all(path)]
    assert birthdays == [dt.date(1990, 5, 1), dt.date(2001, 12, 5)]


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("31.02.1985", "день рождения: '31.02.1985' — не дата"),
        ("скоро", "день рождения: 'скоро' — не дата"),
        ("14.03", "день рождения: в '14.03' нет года"),
        ("01.01.1850", "день рождения: '01.01.1850' — раньше 1900 года"),
        (f"01.01.{dt.date.today().year + 1}", "— в будущем"),
    ],
)
def test_bad_birthday_keeps_the_contact(tmp_path: Path, cell: str, problem: str) -> None:
    path = write_csv(tmp_path, f"ФИО;Телефон;Дата рождения\nИванов Иван;+7 900;{cell}\n")
    [row] = read_all(path)
    assert row.error is None
    assert row.record is not None
    assert row.record.phones == ["+7 900"]
    assert row.record.birthday is None
    assert len(row.warnings) == 1 and problem in row.warnings[0]


# --- gender ---------------------------------------------------------------------------


def test_gender_values(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "ФИО;Пол\nА Б;М\nВ Г;жен.\nД Е;female\nЖ З;?\nИ К;\n")
    rows = read_all(path)
    assert [row.record.gender for row in rows] == ["m", "f", "f", None, None]
    assert rows[3].warnings == ["пол: '?' не распознан"]
    with i18n.use_language("en"):
        assert read_all(path)[3].warnings == ["gender: '?' is not recognised"]
    assert rows[4].warnings == []


def test_no_gender_column_means_no_guess(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "ФИО\nИванова Мария Петровна\n")
    assert only_record(read_all(path)).gender is None


# --- skipped and ignored rows ---------------------------------------------------------


def test_empty_rows_are_ignored_and_rows_without_contact_are_skipped(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "ФИО;Телефон;Город\n"
        "Иванов Иван;1;\n"
        "\n"
        ";;\n"
        " ; \xa0;\n"
        ";;Тверь\n"
        "Петров Пётр;;\n",
        encoding="utf-8",
    )
    rows = read_all(path)
    assert [row.line for row in rows] == [2, 6, 7]
    skipped = rows[1]
    assert skipped.record is None
    assert skipped.error == "нет ни имени, ни телефона, ни email"
    assert rows[2].record.last_name == "Петров"


def test_nbsp_is_stripped(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "ФИО;Телефон\n\xa0Иванов Иван\xa0;\xa0+7 900\xa0\n")
    record = only_record(read_all(path))
    assert record.last_name == "Иванов"
    assert record.phones == ["+7 900"]


# --- whole-file errors ----------------------------------------------------------------


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "clients.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(SpreadsheetError, match=r"'\.xls'"):
        read_all(path)


def test_empty_file_has_no_header(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "\n;;\n")
    with pytest.raises(SpreadsheetError, match="нет строки заголовков"):
        read_all(path)
    with i18n.use_language("en"), pytest.raises(SpreadsheetError, match="no header"):
        read_all(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpreadsheetError, match="nope.csv"):
        read_all(tmp_path / "nope.csv")


def test_header_only_file_yields_nothing(tmp_path: Path) -> None:
    assert read_all(write_csv(tmp_path, "ФИО;Телефон\n")) == []
