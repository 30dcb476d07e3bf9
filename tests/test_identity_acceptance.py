"""A B2B base exported from Bitrix24 and amoCRM, imported as a new user would, checked against who is who.

The exports under tests/data/identity_acceptance/ (written by generate.py
there) hold four colleagues on one switchboard with their extensions written
four ways, a husband and wife on one home landline, three strangers who typed
one 8-800 hotline, the firm's info@ and sales@ mailboxes, one man written
«Пётр Соколов», «Соколов П.», «Sokolov Pyotr» and «Petr Sokolov», «Саша
Иванова» and «Александра Иванова», two different Мария Петрова, and phones as
Excel and people type them. truth.json says whose each phone and email is.
Everything runs through the `hub` commands a user types.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hub import normalize
from hub.spreadsheet import split_full_name
from tests.conftest import HubDB
from tests.support.cli import cli

DATA = Path(__file__).parent / "data" / "identity_acceptance"
TRUTH = json.loads((DATA / "truth.json").read_text(encoding="utf-8"))
EXPORTS = ("bitrix24_contacts.csv", "amocrm_contacts.csv", "amocrm_leads.xlsx")


def hub(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else result.output


def contacts() -> list[dict[str, Any]]:
    people: list[dict[str, Any]] = hub("contacts", "list", "--json", "--all")
    return people


def own_values(person: str) -> list[str]:
    own = TRUTH["people"][person]
    return [*own["phones"], *own["emails"], *TRUTH["extra_own"].get(person, [])]


def wrong_holders(people: list[dict[str, Any]]) -> list[str]:
    """Each way the base differs from the truth: a person split, or a contact holding two people's values."""
    holders: dict[str, set[int]] = {}
    for contact in people:
        for value in contact["phones"] + contact["emails"]:
            holders.setdefault(value, set()).add(contact["id"])
    problems = []
    owners: dict[int, set[str]] = {}
    for person in TRUTH["people"]:
        ids = set()
        for value in own_values(person):
            if len(holders.get(value, ())) != 1:
                problems.append(f"{person}: {value} held by {sorted(holders.get(value, ()))}")
            ids |= holders.get(value, set())
        if len(ids) > 1:
            problems.append(f"{person} is split over {sorted(ids)}")
        for contact_id in ids:
            owners.setdefault(contact_id, set()).add(person)
    problems += [f"#{cid} holds the values of {sorted(p)}" for cid, p in owners.items() if len(p) > 1]
    return problems


def import_all(tmp_path: Path, names: tuple[str, ...] = EXPORTS) -> list[dict[str, Any]]:
    reports = []
    for name in names:
        copy = tmp_path / name
        shutil.copy(DATA / name, copy)
        reports.append(hub("import", "contacts", str(copy), "--json"))
    return reports


@pytest.mark.both_databases
@pytest.mark.parametrize("names", [EXPORTS, tuple(reversed(EXPORTS)),
                                   ("bitrix24_contacts.xlsx", "amocrm_leads.xlsx", "amocrm_contacts.csv")])
def test_every_person_is_one_contact_holding_only_their_own_values(hub_db: HubDB, tmp_path: Path,
                                                                   names: tuple[str, ...]) -> None:
    import_all(tmp_path, names)
    people = contacts()
    assert wrong_holders(people) == []
    reasons: dict[str, set[str | None]] = {}
    for contact in people:
        for ident in contact["identities"]:
            if ident["value"] in TRUTH["shared"]:
                reasons.setdefault(ident["value"], set()).add(ident["shared"])
    # Marked shared on every contact holding it: why depends on which holders came first (names or how common).
    assert reasons["+74957001020"] <= {"names", "common"} and reasons["+74953214567"] <= {"names", "common"}
    assert reasons["+78002003040"] == {"toll_free"}
    assert reasons["info@vektor-snab.ru"] == reasons["sales@vektor-snab.ru"] == {"role_mailbox"}
    # Colleagues, the household and the hotline callers are apart; the namesakes too.
    assert len([c for c in people if c["last_name"] == "Петрова"]) == 2
    sokolov = next(c for c in people if "+79165556677" in c["phones"])
    # Пётр Соколов and Соколов П., Sokolov Pyotr by their CRM ids; Petr Sokolov of the deal export by his mobile.
    assert len(sokolov["external_refs"]) == 3 and "petr.sokolov@gmail.com" in sokolov["emails"]


def test_amocrm_deal_export_columns_of_the_deals_contact_are_the_contacts(hub_db: HubDB, tmp_path: Path) -> None:
    """amoCRM's deal export names its contact's columns «Мобильный телефон (контакт)», «Основной контакт»."""
    report = import_all(tmp_path, ("amocrm_leads.xlsx",))[0]
    columns = {c["column"]: (c["field"], c["label"]) for c in report["columns"]}
    assert columns["Основной контакт"] == ("full_name", None)
    assert columns["Мобильный телефон (контакт)"] == ("phone", "mobile")
    assert columns["Рабочий email (контакт)"] == ("email", "work")
    # The company's own line is not the person's: it is named among the columns not used.
    assert "Рабочий телефон (компания)" in report["unused_columns"]
    people = {c["last_name"]: c for c in contacts()}
    assert people["Sokolov"]["first_name"] == "Petr" and people["Sokolov"]["phones"] == ["+79165556677"]
    assert people["Фёдоров"]["emails"] == ["ilya.fedorov@mail.ru"]


def test_the_summary_says_a_deal_exports_company_columns_are_not_the_persons(hub_db: HubDB, tmp_path: Path) -> None:
    """A marketer told to --map «Рабочий телефон (компания)» as a phone would give every colleague one number."""
    shutil.copy(DATA / "amocrm_leads.xlsx", tmp_path / "amocrm_leads.xlsx")
    said = hub("import", "contacts", str(tmp_path / "amocrm_leads.xlsx"))
    company, _, rest = said.partition("столбца компаний сделок")
    assert company and "«Рабочий телефон (компания)», «Web (компания)»" in rest.splitlines()[0]
    assert "(компания)" not in "".join(line for line in said.splitlines() if "--map" in line)


@pytest.mark.both_databases
def test_a_wrong_merge_undone_stays_undone_on_every_reimport(hub_db: HubDB, tmp_path: Path) -> None:
    import_all(tmp_path)
    # A shop's order mixes the two Мария Петрова: one's mobile, the other's email. Their names agree, so Hub
    # merges them, as its rule says; a person finds out and undoes it.
    order = tmp_path / "shop.csv"
    order.write_text("ФИО;Телефон;Email\nПетрова Мария;+7 905 222-00-02;M.Petrova@mail.ru\n", encoding="utf-8")
    assert hub("import", "contacts", str(order), "--json")["contacts_merged"] == 1
    merged = next(c for c in contacts() if "m.petrova@mail.ru" in c["emails"])
    assert set(merged["phones"]) == {"+79051110001", "+79052220002"}
    card = hub("contacts", "show", str(merged["id"]))
    assert "hub contacts unmerge 1" in card

    assert "Слияние №1 отменено" in hub("contacts", "unmerge", "1")
    for _round in range(2):
        import_all(tmp_path)
        assert hub("import", "contacts", str(order), "--json")["contacts_merged"] == 0
        people = contacts()
        assert wrong_holders(people) == []
        maria = {c["id"]: c for c in people if c["last_name"] == "Петрова"}
        assert len(maria) == 2
        # The company the merge gave the first Мария (from the other one's row of the same export) went back.
        assert sorted(str(c["company"]) for c in maria.values()) == ["None", "ИП Петрова М. А."]


@pytest.mark.parametrize(("typed", "expected"), [
    ("79165556677.0", "+79165556677"),  # a phone Excel kept as a number, written to CSV
    ("7,9165556677E+10", "+79165556677"),  # the same in Russian Excel's scientific form
    ("7.9165556677E10", "+79165556677"),
])
def test_a_phone_excel_wrote_as_a_number_is_the_number(typed: str, expected: str) -> None:
    assert [(p.value, p.valid) for p in normalize.phones(typed)] == [(expected, True)]


def test_a_rounded_excel_number_has_lost_digits_and_is_kept_flagged() -> None:
    assert [(p.value, p.valid) for p in normalize.phones("7,92E+10")] == [("7,92E+10", False)]


@pytest.mark.parametrize("typed", ["Иван Петров <ivan@mail.ru>", "Иван <MAILTO:Ivan@Mail.ru>", "ivan@mail.ru (личный)",
                                   "e-mail: ivan@mail.ru", "почта: Ivan@mail.ru"])
def test_an_address_with_a_name_word_or_comment_around_it_is_the_address(typed: str) -> None:
    assert [(e.value, e.valid) for e in normalize.emails(typed)] == [("ivan@mail.ru", True)]


def test_spaces_inside_an_address_still_make_it_one_bad_address() -> None:
    assert [e.valid for e in normalize.emails("ivan petrov@mail.ru")] == [False]


@pytest.mark.parametrize(("cell", "expected"), [
    ("Sokolov P.", ("P.", "Sokolov", None)),
    ("Sokolov P. I.", ("P.", "Sokolov", "I.")),
    ("П. И. Соколов", ("П.", "Соколов", "И.")),
    ("Petr Sokolov", ("Petr", "Sokolov", None)),
    ("Соколов П. И.", ("П.", "Соколов", "И.")),
])
def test_initials_before_or_after_a_surname_leave_it_the_surname(cell: str, expected: tuple[str, ...]) -> None:
    assert split_full_name(cell) == expected


def test_a_shared_line_joins_a_surname_written_with_initials_in_latin(hub_db: HubDB, tmp_path: Path) -> None:
    office = tmp_path / "office.csv"
    office.write_text("ФИО;Рабочий телефон\nСоколов Пётр;+7 495 700-10-20 доб. 123\nКузнецова Анна;"
                      "+7 495 700-10-20 доб. 124\nSokolov P.;+7 495 700-10-20 #123\nП. И. Соколов;"
                      "8 495 700 10 20 ext. 123\n", encoding="utf-8")
    hub("import", "contacts", str(office))
    assert sorted(c["last_name"] for c in contacts()) == ["Кузнецова", "Соколов"]


def test_an_initial_gives_way_to_the_name_it_stands_for(hub_db: HubDB, tmp_path: Path) -> None:
    first = tmp_path / "a.csv"
    first.write_text("ФИО;Мобильный телефон\nОрлов Д.;8 903 123-45-67\n", encoding="utf-8")
    second = tmp_path / "b.csv"
    second.write_text("Фамилия;Имя;Мобильный телефон\nОрлов;Дмитрий;+7 903 123 45 67\n", encoding="utf-8")
    hub("import", "contacts", str(first))
    hub("import", "contacts", str(second))
    [orlov] = contacts()
    assert (orlov["last_name"], orlov["first_name"]) == ("Орлов", "Дмитрий")


def test_a_phone_kept_as_text_with_an_excel_formula_is_the_phone(hub_db: HubDB, tmp_path: Path) -> None:
    """="89161234567" is how exports keep Excel from reading a phone as a number; a real formula still warns."""
    path = tmp_path / "export.csv"
    path.write_text('Фамилия;Имя;Мобильный телефон;Email\nЛебедев;Игорь;"=""89161234567""";lebedev@mail.ru\n'
                    'Лебедева;Ольга;"=""8916""&""7654321""";\n', encoding="utf-8")
    report = hub("import", "contacts", str(path), "--json")
    assert [w["line"] for w in report["warnings"]] == [3]
    people = {c["first_name"]: c for c in contacts()}
    assert people["Игорь"]["phones"] == ["+79161234567"]
    assert [(i["value"], i["label"]) for i in people["Игорь"]["identities"] if i["kind"] == "phone"] == [
        ("+79161234567", "mobile")]
    assert people["Ольга"]["phones"] == []


@pytest.mark.parametrize(("cell", "expected"), [
    ("Sokolov Pyotr", ("Pyotr", "Sokolov", None)),
    ("Ivanova Aleksandra", ("Aleksandra", "Ivanova", None)),
    ("John Smith", ("John", "Smith", None)),
])
def test_a_russian_name_in_latin_after_the_surname_is_the_first_name(cell: str, expected: tuple[str, ...]) -> None:
    assert split_full_name(cell) == expected


def test_spaces_around_the_at_sign_are_a_typing_slip() -> None:
    assert [(e.value, e.valid) for e in normalize.emails(" IVAN @ MAIL.RU ")] == [("ivan@mail.ru", True)]


def test_the_deal_id_of_an_amocrm_deal_export_is_not_a_persons_id(hub_db: HubDB, tmp_path: Path) -> None:
    """A deal whose main contact changed between two exports does not make the two contacts one."""
    report = import_all(tmp_path, ("amocrm_leads.xlsx",))[0]
    assert "external_id" not in {c["field"] for c in report["columns"]} and "ID" in report["unused_columns"]
    later = tmp_path / "amocrm_leads_later.csv"
    later.write_text("ID;Название сделки;Основной контакт;Мобильный телефон (контакт)\n"
                     "3301;Поставка бумаги;Гришин Антон;+7 999 123-45-67\n", encoding="utf-8")
    hub("import", "contacts", str(later), "--source", "import:amocrm_leads.xlsx")
    people = {c["last_name"]: c for c in contacts()}
    assert people["Гришин"]["id"] != people["Sokolov"]["id"]
    assert people["Sokolov"]["phones"] == ["+79165556677"]
