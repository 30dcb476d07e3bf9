"""Writes the CRM exports of a small B2B base and the truth about who is who in them.

Run `python tests/data/identity_acceptance/generate.py` to rewrite the files
beside it. The people are invented; the files are shaped as the CRMs write
them:

- bitrix24_contacts.csv: Bitrix24's contact export (CRM > Контакты >
  Экспорт в CSV): semicolon-separated, Windows-1251, its own column names,
  several values of one type in one cell joined by ", ";
- bitrix24_contacts.xlsx: the same export saved as a workbook, a title row
  above the header, the mobile column typed as numbers by Excel
  (79165556677.0);
- amocrm_contacts.csv: amoCRM's contact export, UTF-8 with BOM, commas;
- amocrm_leads.xlsx: amoCRM's deal export, whose contact columns carry
  «(контакт)» and the company's «(компания)»;
- truth.json: every person's own phones (E.164) and emails, and the values
  several people use (a switchboard, a household landline, a hotline, the
  firm's info@ and sales@).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import openpyxl

HERE = Path(__file__).resolve().parent

SWITCHBOARD = "+74957001020"
HOME_LINE = "+74953214567"
HOTLINE = "+78002003040"

BITRIX_HEADERS = [
    "ID", "Обращение", "Имя", "Отчество", "Фамилия", "Дата рождения", "Должность", "Компания",
    "Рабочий телефон", "Мобильный телефон", "Номер факса", "Домашний телефон", "Номер пейджера",
    "Телефон для рассылок", "Другой телефон", "Рабочий e-mail", "Частный e-mail", "E-mail для рассылок",
    "Другой e-mail", "Корпоративный сайт", "Адрес", "Ответственный", "Тип контакта", "Источник",
    "Дополнительно об источнике", "Комментарий", "Доступен для всех", "Дата создания", "Кем создан",
]

VEKTOR = "ООО «Вектор-Снаб»"


def _b(**cells: object) -> dict[str, object]:
    return cells


# Each row: (person it belongs to or None, cells).
BITRIX_ROWS: list[tuple[str | None, dict[str, object]]] = [
    ("sokolov", _b(ID=11, Обращение="г-н", Имя="Пётр", Фамилия="Соколов", Должность="Директор по закупкам",
                   Компания=VEKTOR, **{"Рабочий телефон": "+7 (495) 700-10-20 доб. 123",
                                       "Мобильный телефон": "8 (916) 555-66-77",
                                       "Рабочий e-mail": "P.Sokolov@Vektor-Snab.ru",
                                       "Другой e-mail": "sales@vektor-snab.ru"})),
    ("kuznetsova", _b(ID=12, Имя="Анна", Фамилия="Кузнецова", Отчество="Сергеевна", Компания=VEKTOR, **{
        "Рабочий телефон": "8 495 700 10 20 ext. 124", "Мобильный телефон": "+7-926-111-22-33",
        "Рабочий e-mail": " A.KUZNETSOVA@VEKTOR-SNAB.RU ", "E-mail для рассылок": "sales@vektor-snab.ru"})),
    ("orlov", _b(ID=13, Имя="Дмитрий", Фамилия="Орлов", Компания=VEKTOR, **{
        "Рабочий телефон": "+74957001020#125", "Мобильный телефон": "9031234567",
        "Рабочий e-mail": "info@vektor-snab.ru", "Частный e-mail": "mailto:d.orlov@почта.рф"})),
    ("vasilyeva", _b(ID=14, Имя="Елена", Фамилия="Васильева", Компания=VEKTOR, **{
        "Рабочий телефон": "8 (495) 700-10-20 (вн. 126)",
        "Другой телефон": "тел. +7 495 700-10-20, моб. 8 926 555-66-88",
        "Рабочий e-mail": "info@vektor-snab.ru", "Частный e-mail": "Elena.Vasilyeva@mail.ru"})),
    (None, _b(ID=15, Компания=VEKTOR, Комментарий="секретарь, имя не сказала",
              **{"Рабочий телефон": "+7 495 700-10-20"})),
    ("nikolaev", _b(ID=21, Имя="Олег", Фамилия="Николаев", **{
        "Домашний телефон": "8 (495) 321-45-67", "Мобильный телефон": "9161112233"})),
    ("nikolaeva", _b(ID=22, Имя="Ирина", Фамилия="Николаева", **{
        "Домашний телефон": "+7 495 321-45-67", "Мобильный телефон": "8 903 222-33-44",
        "Частный e-mail": "irina.nikolaeva@yandex.ru"})),
    ("morozov", _b(ID=31, Имя="Сергей", Фамилия="Морозов", **{
        "Рабочий телефон": "8-800-200-30-40", "Частный e-mail": "morozov.s@gmail.com"})),
    ("belova", _b(ID=32, Имя="Татьяна", Фамилия="Белова", **{
        "Другой телефон": "8 (800) 200-30-40", "Мобильный телефон": "+7 915 000-11-22"})),
    ("gusev", _b(ID=33, Имя="Алексей", Фамилия="Гусев", **{"Телефон для рассылок": "88002003040"})),
    ("ivanova", _b(ID=41, Имя="Александра", Фамилия="Иванова", **{
        "Мобильный телефон": "8 (917) 444-55-66", "Частный e-mail": "s.ivanova@yandex.ru"})),
    ("petrova1", _b(ID=51, Имя="Мария", Фамилия="Петрова", **{
        "Мобильный телефон": "8 (905) 111-00-01", "Частный e-mail": "m.petrova@mail.ru"})),
    ("petrova2", _b(ID=52, Имя="Мария", Фамилия="Петрова", Компания="ИП Петрова М. А.", **{
        "Мобильный телефон": "8 (905) 222-00-02", "Рабочий e-mail": "petrova.maria@gmail.com"})),
    ("fedorov", _b(ID=61, Имя="Илья", Фамилия="Фёдоров", **{
        "Мобильный телефон": "тел. +7 916 700-80-90, моб. 8 926 700-80-91"})),
]

AMO_HEADERS = [
    "ID", "Полное имя", "Имя", "Фамилия", "Компания", "Ответственный", "Дата создания", "Теги",
    "Рабочий телефон", "Рабочий прямой телефон", "Мобильный телефон", "Факс", "Домашний телефон",
    "Другой телефон", "Рабочий email", "Личный email", "Другой email", "Должность",
]

AMO_ROWS: list[tuple[str | None, dict[str, object]]] = [
    ("sokolov", {"ID": 900101, "Полное имя": "Соколов П.", "Компания": "Вектор-Снаб",
                 "Мобильный телефон": "+7-916-555-66-77"}),
    ("sokolov", {"ID": 900102, "Полное имя": "Sokolov Pyotr", "Мобильный телефон": "9165556677",
                 "Личный email": "petr.sokolov@gmail.com"}),
    ("ivanova", {"ID": 900103, "Полное имя": "Саша Иванова", "Имя": "Саша", "Фамилия": "Иванова",
                 "Личный email": " S.IVANOVA@YANDEX.RU "}),
    ("nikolaeva", {"ID": 900104, "Полное имя": "Николаева Ирина", "Домашний телефон": "8 495 321 45 67",
                   "Личный email": "irina.nikolaeva@yandex.ru"}),
    ("gusev", {"ID": 900105, "Полное имя": "Гусев Алексей", "Рабочий телефон": "8 800 200 30 40",
               "Мобильный телефон": "+7 (977) 123-45-67"}),
    ("petrova1", {"ID": 900106, "Полное имя": "Мария Петрова", "Мобильный телефон": "8 905 111 00 01"}),
    ("kuznetsova", {"ID": 900107, "Полное имя": "Кузнецова Анна", "Компания": "Вектор-Снаб",
                    "Рабочий email": "a.kuznetsova@vektor-snab.ru",
                    "Рабочий прямой телефон": "+7 495 700-10-24"}),
    ("orlov", {"ID": 900108, "Полное имя": "Орлов Д.", "Другой email": "D.ORLOV@ПОЧТА.РФ",
               "Рабочий телефон": "+7 495 700-10-20"}),
    (None, {"ID": 900109, "Компания": "Вектор-Снаб", "Рабочий телефон": "+7 495 700-10-20",
            "Рабочий email": "info@vektor-snab.ru"}),
]

LEAD_HEADERS = [
    "ID", "Название сделки", "Бюджет", "Ответственный", "Этап сделки", "Воронка", "Теги сделки",
    "Основной контакт", "Компания контакта", "Должность (контакт)", "Рабочий телефон (контакт)",
    "Мобильный телефон (контакт)", "Домашний телефон (контакт)", "Другой телефон (контакт)",
    "Рабочий email (контакт)", "Личный email (контакт)", "Рабочий телефон (компания)", "Web (компания)",
]

LEAD_ROWS: list[tuple[str | None, dict[str, object]]] = [
    ("sokolov", {"ID": 3301, "Название сделки": "Поставка бумаги", "Бюджет": 120000, "Основной контакт": "Petr Sokolov",
                 "Компания контакта": "Вектор-Снаб", "Мобильный телефон (контакт)": 79165556677.0,
                 "Рабочий телефон (компания)": "+7 495 700-10-20"}),
    ("belova", {"ID": 3302, "Название сделки": "Сервис", "Бюджет": 15000, "Основной контакт": "Белова Татьяна",
                "Мобильный телефон (контакт)": "+7 915 000 11 22", "Рабочий телефон (компания)": "8 800 200-30-40"}),
    ("fedorov", {"ID": 3303, "Название сделки": "Картриджи", "Бюджет": 8000, "Основной контакт": "Фёдоров Илья",
                 "Рабочий email (контакт)": "ilya.fedorov@mail.ru", "Мобильный телефон (контакт)": 89267008091}),
]

TRUTH = {
    "people": {
        "sokolov": {"phones": ["+79165556677"], "emails": ["p.sokolov@vektor-snab.ru", "petr.sokolov@gmail.com"]},
        "kuznetsova": {"phones": ["+79261112233"], "emails": ["a.kuznetsova@vektor-snab.ru"]},
        "orlov": {"phones": ["+79031234567"], "emails": ["d.orlov@почта.рф"]},
        "vasilyeva": {"phones": ["+79265556688"], "emails": ["elena.vasilyeva@mail.ru"]},
        "nikolaev": {"phones": ["+79161112233"], "emails": []},
        "nikolaeva": {"phones": ["+79032223344"], "emails": ["irina.nikolaeva@yandex.ru"]},
        "morozov": {"phones": [], "emails": ["morozov.s@gmail.com"]},
        "belova": {"phones": ["+79150001122"], "emails": []},
        "gusev": {"phones": ["+79771234567"], "emails": []},
        "ivanova": {"phones": ["+79174445566"], "emails": ["s.ivanova@yandex.ru"]},
        "petrova1": {"phones": ["+79051110001"], "emails": ["m.petrova@mail.ru"]},
        "petrova2": {"phones": ["+79052220002"], "emails": ["petrova.maria@gmail.com"]},
        "fedorov": {"phones": ["+79167008090", "+79267008091"], "emails": ["ilya.fedorov@mail.ru"]},
    },
    # Values several people use: held by whoever typed them, joining nobody.
    "shared": [SWITCHBOARD, HOME_LINE, HOTLINE, "info@vektor-snab.ru", "sales@vektor-snab.ru"],
    # A direct line only one person gives (amoCRM's «Рабочий прямой телефон») is theirs.
    "extra_own": {"kuznetsova": ["+74957001024"]},
}


def _rows(headers: list[str], rows: list[tuple[str | None, dict[str, object]]]) -> list[list[object]]:
    for _, cells in rows:
        unknown = set(cells) - set(headers)
        assert not unknown, unknown
    return [[cells.get(h, "") for h in headers] for _, cells in rows]


def write_csv(path: Path, headers: list[str], rows: list[list[object]], *, encoding: str, delimiter: str) -> None:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow(headers)
        writer.writerows(rows)


def write_xlsx(path: Path, headers: list[str], rows: list[list[object]], *, title: str | None,
               float_columns: tuple[str, ...] = ()) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.worksheets[0]
    sheet.title = "Контакты"
    if title:
        sheet.append([title])
        sheet.append([])
    sheet.append(headers)
    for row in rows:
        out: list[object] = []
        for header, value in zip(headers, row, strict=True):
            if header in float_columns and isinstance(value, str) and value.isdigit():
                value = float(value)
            out.append(value)
        sheet.append(out)
    workbook.save(path)


def main() -> None:
    bitrix = _rows(BITRIX_HEADERS, BITRIX_ROWS)
    write_csv(HERE / "bitrix24_contacts.csv", BITRIX_HEADERS, bitrix, encoding="cp1251", delimiter=";")
    # The workbook: Excel read the mobile column as numbers (9161112233 → 9161112233.0).
    write_xlsx(HERE / "bitrix24_contacts.xlsx", BITRIX_HEADERS, bitrix, title="Контакты (выгрузка от 07.12.2026)",
               float_columns=("Мобильный телефон",))
    write_csv(HERE / "amocrm_contacts.csv", AMO_HEADERS, _rows(AMO_HEADERS, AMO_ROWS), encoding="utf-8-sig",
              delimiter=",")
    write_xlsx(HERE / "amocrm_leads.xlsx", LEAD_HEADERS, _rows(LEAD_HEADERS, LEAD_ROWS), title=None)
    (HERE / "truth.json").write_text(json.dumps(TRUTH, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
