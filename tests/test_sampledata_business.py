"""The B2B sample base: its truth must be right for the import benchmark to mean anything.

The benchmark counts a contact holding two people as a resolver's error, so
the generator must never make two people indistinguishable: a place's values
(switchboard, role mailboxes, home phone, hotline) are shared by design and
a person's own mobile and emails belong to them alone, while people of one
place can always be told apart by name.
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from datetime import date

import phonenumbers
import pytest
from click.testing import CliRunner

from hub import normalize, sampledata
from hub.sampledata import business
from hub.sampledata.business import BUSINESS_COLUMNS, Customer, business_people, business_rows

from tests.support.cli import cli

TODAY = date(2025, 6, 1)
SEED = 5
POPULATION = 3_000
PHONE_COLUMNS = ("Рабочий телефон", "Мобильный телефон", "Домашний телефон")
EMAIL_COLUMNS = ("Рабочий e-mail", "Частный e-mail")


@pytest.fixture(scope="module")
def customers() -> list[Customer]:
    return list(business_people(POPULATION, SEED, today=TODAY))


@pytest.fixture(scope="module")
def rows(customers: list[Customer]) -> list[tuple[int, dict[str, str]]]:
    return list(business_rows(customers, SEED))


def phones_in(cell: str) -> set[str]:
    return {i.value for i in normalize.phones(cell, "RU") if i.valid}


def emails_in(cell: str) -> set[str]:
    return {i.value for i in normalize.emails(cell) if i.valid}


def by_company(customers: list[Customer]) -> dict[int, list[Customer]]:
    grouped: dict[int, list[Customer]] = defaultdict(list)
    for customer in customers:
        if customer.company:
            grouped[customer.company.company_id].append(customer)
    return grouped


def company(customer: Customer) -> business.Company:
    assert customer.company is not None
    return customer.company


def male_form(surname: str) -> str:
    return {female: male for male, female in sampledata._FEMALE_FORMS.items()}.get(surname, surname)


# --- determinism -------------------------------------------------------------


def test_same_seed_gives_the_same_base_and_file(tmp_path):
    first = list(business_rows(business_people(400, 3, today=TODAY), 3))
    assert first == list(business_rows(business_people(400, 3, today=TODAY), 3))
    assert first != list(business_rows(business_people(400, 4, today=TODAY), 4))

    for name in ("a.csv", "b.csv"):
        sampledata.write_sample(tmp_path / name, people_count=300, seed=3, today=TODAY, b2b=True,
                                truth_path=tmp_path / f"{name}.truth")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv.truth").read_bytes() == (tmp_path / "b.csv.truth").read_bytes()


def test_smaller_base_is_a_prefix_of_a_larger_one():
    assert list(business_people(150, 2, today=TODAY)) == list(business_people(400, 2, today=TODAY))[:150]


def test_the_plain_sample_is_unchanged_by_default(tmp_path):
    """`hub sample contacts` without --b2b writes the shop's base, with its own columns."""
    plain = tmp_path / "plain.csv"
    sampledata.write_sample(plain, people_count=50, seed=1, today=TODAY, encoding="utf-8")
    with open(plain, encoding="utf-8", newline="") as handle:
        assert next(csv.reader(handle, delimiter=";")) == list(sampledata.SPREADSHEET_COLUMNS)


# --- places ------------------------------------------------------------------


def test_the_base_holds_companies_households_and_single_customers(customers):
    kinds = Counter("company" if c.company else "household" if c.household else "single" for c in customers)
    assert 0.25 * POPULATION <= kinds["company"] <= 0.45 * POPULATION
    assert 0.12 * POPULATION <= kinds["household"] <= 0.3 * POPULATION
    assert kinds["single"] >= 0.3 * POPULATION
    assert [c.person_id for c in customers] == list(range(1, POPULATION + 1))


def test_employees_of_a_company_share_its_switchboard_and_mailboxes(customers, rows):
    companies = by_company(customers)
    assert len(companies) > 100
    switchboards = {company(employees[0]).switchboard for employees in companies.values()}
    assert len(switchboards) == len(companies)  # one switchboard per company
    for employees in companies.values():
        place = company(employees[0])
        assert all(e.company == place for e in employees)
        assert 1 <= len(employees) <= business.COMPANY_SIZE[1]
        for box in place.mailboxes:
            login, _, domain = box.partition("@")
            assert domain == place.domain
            assert login in {"info", "sales", "office", "zakaz", "mail"}
    assert sum(len(employees) >= 2 for employees in companies.values()) > 0.9 * len(companies)

    holders: dict[str, set[int]] = defaultdict(set)
    for person_id, row in rows:
        for value in phones_in(row["Рабочий телефон"]) | emails_in(row["Рабочий e-mail"]):
            holders[value].add(person_id)
    company_of = {c.person_id: company(c) for c in customers if c.company}
    listed_by_several = [s for s in switchboards if len(holders[s]) >= 3]
    assert len(listed_by_several) > 0.5 * len(companies)
    for value, people in holders.items():
        if value in switchboards:
            assert len({company_of[p].company_id for p in people}) == 1  # only its own employees
    mailboxes = [box for employees in companies.values() for box in company(employees[0]).mailboxes]
    assert sum(len(holders[box]) >= 2 for box in mailboxes) > 0.3 * len(mailboxes)


def test_people_of_one_company_can_be_told_apart_by_name(customers):
    for employees in by_company(customers).values():
        firsts = [e.person.first_name for e in employees]
        stems = [male_form(e.person.last_name) for e in employees]
        assert len(set(firsts)) == len(firsts)
        assert len(set(stems)) == len(stems)
        work = [e.work_email for e in employees if e.work_email]
        assert len(set(work)) == len(work)
        assert all(email.endswith("@" + company(employees[0]).domain) for email in work)


def test_a_household_is_husband_and_wife_with_gender_forms_of_one_surname(customers, rows):
    households: dict[int, list[Customer]] = defaultdict(list)
    for customer in customers:
        if customer.household:
            households[customer.household.household_id].append(customer)
    assert len(households) > 100
    home_holders: dict[str, set[int]] = defaultdict(set)
    for person_id, row in rows:
        for value in phones_in(row["Домашний телефон"]):
            home_holders[value].add(person_id)
    gender_forms = 0
    for members in households.values():
        if len(members) == 1:  # the base ended between husband and wife
            continue
        husband, wife = (m.person for m in members)
        assert (husband.gender, wife.gender) == ("m", "f")
        assert male_form(wife.last_name) == husband.last_name
        gender_forms += wife.last_name != husband.last_name
        assert not business.initials(wife.first_name) & business.initials(husband.first_name)
        assert husband.city == wife.city
        assert members[0].household is not None
        phone = members[0].household.phone
        assert home_holders[phone] <= {husband.person_id, wife.person_id}
    assert gender_forms > 0.8 * len(households)  # Соколов / Соколова; indeclinable ones read the same
    assert sum(len(people) == 2 for people in home_holders.values()) > 0.5 * len(households)


def test_hotlines_are_toll_free_and_typed_by_unrelated_customers(customers, rows):
    lines = business.hotlines(SEED)
    assert len(set(lines)) == business.HOTLINE_COUNT
    for number in lines:
        parsed = phonenumbers.parse(number)
        assert phonenumbers.is_valid_number(parsed) and number.startswith("+7800")
    typed: dict[str, set[int]] = defaultdict(set)
    for person_id, row in rows:
        for column in PHONE_COLUMNS:
            for value in phones_in(row[column]) & set(lines):
                typed[value].add(person_id)
    assert any(len(people) >= 3 for people in typed.values())
    assert all(not customer.company and not customer.household for customer in customers if customer.hotline)


# --- people and their rows ---------------------------------------------------------


def test_own_values_belong_to_one_person_and_shared_ones_to_places(customers):
    owners: Counter[str] = Counter()
    for customer in customers:
        own = set(customer.own_phones) | set(customer.own_emails)
        owners.update(own)
        assert not any(business.shared_by_design("phone", p) for p in customer.own_phones)
        assert not any(business.shared_by_design("email", e) for e in customer.own_emails)
        assert all(business.shared_by_design("phone", p) for p in customer.shared_phones)
        assert all(business.shared_by_design("email", e) for e in customer.shared_emails)
        assert not own & (set(customer.shared_phones) | set(customer.shared_emails))
    assert max(owners.values()) == 1


def test_rows_hold_only_their_person_and_their_places_values(customers, rows):
    of = {c.person_id: c for c in customers}
    assert {person_id for person_id, _ in rows} == set(of)
    for person_id, row in rows:
        customer = of[person_id]
        phones = set().union(*(phones_in(row[column]) for column in PHONE_COLUMNS))
        emails = set().union(*(emails_in(row[column]) for column in EMAIL_COLUMNS))
        assert phones <= set(customer.own_phones) | set(customer.shared_phones)
        assert emails <= set(customer.own_emails) | set(customer.shared_emails)
        assert list(row) == list(BUSINESS_COLUMNS)


def test_later_rows_keep_an_own_value_of_their_person(customers, rows):
    """Each later appearance holds a value of the person's own, unless it is the nameless switchboard row."""
    of = {c.person_id: c for c in customers}
    seen: set[int] = set()
    nameless = 0
    for person_id, row in rows:
        if person_id not in seen:
            seen.add(person_id)
            continue
        customer = of[person_id]
        phones = set().union(*(phones_in(row[column]) for column in PHONE_COLUMNS))
        emails = set().union(*(emails_in(row[column]) for column in EMAIL_COLUMNS))
        if not (row["Имя"] or row["Фамилия"]):
            nameless += 1
            assert phones == {company(customer).switchboard} and not emails
            continue
        own = (phones & set(customer.own_phones)) | (emails & set(customer.own_emails))
        # An email may be typed broken (1%): then the row holds the raw text, not a valid value.
        assert own or any(row[column] for column in EMAIL_COLUMNS + ("Мобильный телефон",))
    assert nameless > 0


def test_people_are_written_several_ways(customers, rows):
    of = {c.person_id: c.person for c in customers}
    ways: Counter[str] = Counter()
    latin = re.compile(r"^[A-Za-z]+$")
    for person_id, row in rows:
        person = of[person_id]
        first, last = row["Имя"], row["Фамилия"]
        if latin.match(first) and latin.match(last):
            ways["latin"] += 1
        elif first in business.DIMINUTIVES.get(person.first_name, ()):
            ways["diminutive"] += 1
        elif first == person.last_name and last == person.first_name:
            ways["swapped"] += 1
        elif first == f"{person.first_name[0]}." and last == person.last_name:
            ways["initials"] += 1
        elif first.startswith(f"{person.last_name} {person.first_name}") and not last:
            ways["in one cell"] += 1
        if "ё" in person.first_name + person.last_name and "е" in first + last and "ё" not in first + last:
            ways["е for ё"] += 1
    assert min(ways[way] for way in ("latin", "diminutive", "swapped", "initials", "in one cell", "е for ё")) >= 5
    assert business.name_cells(of[1], "latin", __import__("random").Random(1))[0].isascii()


def test_transliteration_systems_differ():
    assert {business._latin("Пётр", table) for table in business._LATIN_TABLES} >= {"Petr", "Pyotr"}
    assert {business._latin("Юлия", table) for table in business._LATIN_TABLES} >= {"Yuliya", "Iuliia"}


# --- files and the command line ---------------------------------------------------


def test_write_sample_b2b_writes_bitrix24_columns_and_truth(tmp_path):
    sheet, truth = tmp_path / "b2b.csv", tmp_path / "b2b.truth"
    count = sampledata.write_sample(sheet, people_count=200, seed=SEED, today=TODAY, b2b=True, truth_path=truth)
    with open(sheet, encoding="cp1251", newline="") as handle:
        lines = list(csv.reader(handle, delimiter=";"))
    assert lines[0] == list(BUSINESS_COLUMNS)
    assert len(lines) - 1 == count >= 200
    mapping = truth.read_text(encoding="utf-8").splitlines()[1:]
    assert {int(line.split(",")[1]) for line in mapping} == set(range(1, 201))
    expected = [row for _, row in business_rows(business_people(200, SEED, today=TODAY), SEED)]
    assert lines[1:] == [[row[column] for column in BUSINESS_COLUMNS] for row in expected]


def test_command_line_b2b(tmp_path):
    sheet, truth = tmp_path / "out.csv", tmp_path / "truth.csv"
    result = CliRunner().invoke(cli, ["sample", "contacts", str(sheet), "--people", "80", "--seed", "2", "--b2b",
                                      "--truth", str(truth), "--today", TODAY.isoformat(), "--encoding", "utf-8"])
    assert result.exit_code == 0, result.output
    assert "80" in result.output
    assert sheet.read_text(encoding="utf-8").splitlines()[0] == ";".join(BUSINESS_COLUMNS)
