"""The contacts search: names with patronymic in any order, ё/е, pieces of emails, phones, promo codes, totals.

Through the admin's search page with Flask's test client, on SQLite and
PostgreSQL (LIKE, case and escapes differ by dialect).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from hub import sync
from hub.db import utcnow
from hub.models import Contact, ContactIdentity
from hub.records import ContactRecord
from tests.support.admin import AdminEnv, client_as, plain, text
from workflows.models import PromoCode

pytestmark = pytest.mark.both_databases


def seed(env: AdminEnv, records: list[ContactRecord]) -> dict[str, int]:
    with env.engine.begin() as conn:
        sync.write_page(conn, records, env.settings, sync.Counts())
    with env.engine.connect() as conn:
        return {f"{r.last_name} {r.first_name}": r.id for r in conn.execute(
            select(Contact.id, Contact.first_name, Contact.last_name))}


@pytest.fixture
def people(admin_env: AdminEnv) -> dict[str, int]:
    return seed(admin_env, [
        ContactRecord(source="import:clients.csv", first_name="Иван", last_name="Иванов", middle_name="Петрович",
                      emails=["ivanov.ivan@mail.ru"], phones=["+7 903 111-22-33"]),
        ContactRecord(source="import:clients.csv", first_name="Мария", last_name="Иванова", middle_name="Сергеевна",
                      emails=["maria@yandex.ru"]),
        ContactRecord(source="import:clients.csv", first_name="Пётр", last_name="Иванов", middle_name="Иванович",
                      emails=["petr@mail.ru"]),
        ContactRecord(source="import:clients.csv", first_name="Алёна", last_name="Ёлкина", middle_name="Фёдоровна",
                      emails=["under_score@example.ru"]),
    ])


def found(env: AdminEnv, query: str, role: str = "viewer", **args: Any) -> tuple[int, list[int], str]:
    """(the total the page states, the contact ids listed, the page) for a search."""
    page = text(client_as(env, role).get("/contacts/", query_string={"q": query, **args}))
    assert "Traceback" not in page
    total = re.search(r'id="found-total" data-total="(\d+)"', page)
    table = re.search(r'<table id="results">.*?</table>', page, re.S)
    assert total is not None and table is not None, page[:500]
    ids = [int(i) for i in dict.fromkeys(re.findall(r'href="/contacts/(\d+)"', table.group(0)))]
    return int(total.group(1)), ids, page


@pytest.mark.parametrize("typed", ["Иванов Иван Петрович", "Иван Петрович", "Петрович Иванов Иван",
                                   "иванов и.п.", "Иванов И. П.", "ИВАНОВ ИВАН", "иван петрович иванов"])
def test_a_full_name_with_patronymic_is_found_in_any_order(admin_env: AdminEnv, people: dict[str, int],
                                                          typed: str) -> None:
    total, ids, _ = found(admin_env, typed)
    assert ids[0] == people["Иванов Иван"], typed  # the exact name first
    if "п" in typed.lower().replace("иван", ""):  # the patronymic typed: nobody else is Петрович
        assert ids == [people["Иванов Иван"]], typed


def test_the_exact_name_comes_first_and_patronymics_count(admin_env: AdminEnv, people: dict[str, int]) -> None:
    total, ids, page = found(admin_env, "Иванов")
    assert total == 4 and set(ids) == {people["Иванов Иван"], people["Иванов Пётр"], people["Иванова Мария"],
                                       admin_env.ids["anna"]}
    assert "4 контакта по запросу «Иванов»" in plain_page(page)
    _, ids, _ = found(admin_env, "иванович")  # a patronymic alone
    assert ids == [people["Иванов Пётр"]]
    _, ids, _ = found(admin_env, "Петр Иванов")  # е for ё, first name before the surname: the exact name first
    assert ids == [people["Иванов Пётр"], people["Иванов Иван"]]  # then Иван Петрович, whose patronymic has «петр»


def plain_page(page: str) -> str:
    import html

    return html.unescape(page)


@pytest.mark.parametrize("typed", ["Елкина Алена", "ёлкина", "Алена Федоровна", "ЁЛКИНА АЛЁНА ФЁДОРОВНА",
                                   "елкина а.ф."])
def test_yo_and_ye_are_one_letter(admin_env: AdminEnv, people: dict[str, int], typed: str) -> None:
    _, ids, _ = found(admin_env, typed)
    assert ids == [people["Ёлкина Алёна"]], typed


def test_each_word_begins_a_word_of_the_name_and_a_name_typed_whole_comes_first(admin_env: AdminEnv,
                                                                                people: dict[str, int]) -> None:
    more = seed(admin_env, [
        ContactRecord(source="import:clients.csv", first_name="Олег", last_name="Яковлев", middle_name="Петрович"),
        ContactRecord(source="import:clients.csv", first_name="Олег", last_name="Петровичев",
                      middle_name="Яковлевич"),
        ContactRecord(source="import:clients.csv", first_name="Михаил", last_name="Салтыков-Щедрин",
                      middle_name="Евграфович"),
    ])
    # Петровичев Олег Яковлевич holds every word's beginning and sorts first by name; the name typed whole wins.
    total, ids, _ = found(admin_env, "Яковлев Олег Петрович")
    assert (total, ids) == (2, [more["Яковлев Олег"], more["Петровичев Олег"]])
    total, ids, _ = found(admin_env, "олег петр")
    assert total == 2 and set(ids) == {more["Яковлев Олег"], more["Петровичев Олег"]}
    # A piece from inside a word is no word's beginning: «ванов» is not Иванов.
    assert found(admin_env, "ванов")[:2] == (0, [])
    assert found(admin_env, "Иван ович")[:2] == (0, [])
    # A double surname: each half is a word, and the whole is the name.
    for typed in ("Щедрин", "салтыков-щедрин михаил", "Михаил Евграфович Салтыков-Щедрин", "щед ми"):
        assert found(admin_env, typed)[:2] == (1, [more["Салтыков-Щедрин Михаил"]]), typed


def test_a_piece_of_an_email_without_at_finds_its_holders(admin_env: AdminEnv, people: dict[str, int]) -> None:
    _, ids, _ = found(admin_env, "ivanov")
    assert ids == [people["Иванов Иван"]]
    total, ids, _ = found(admin_env, "mail.ru")
    assert total == 2 and set(ids) == {people["Иванов Иван"], people["Иванов Пётр"]}
    _, ids, _ = found(admin_env, "YANDEX")
    assert ids == [people["Иванова Мария"]]
    _, ids, _ = found(admin_env, "@example.ru")
    assert people["Ёлкина Алёна"] in ids and admin_env.ids["anna"] in ids


def test_a_whole_address_finds_its_holder_alone_and_a_piece_with_at_the_addresses_containing_it(
        admin_env: AdminEnv, people: dict[str, int]) -> None:
    more = seed(admin_env, [ContactRecord(source="import:clients.csv", first_name="Глеб", last_name="Петров",
                                          emails=["xpetr@mail.ru"])])
    total, ids, _ = found(admin_env, "Petr@Mail.ru ")  # typed whole, in any case: its holder, not xpetr@
    assert (total, ids) == (1, [people["Иванов Пётр"]])
    total, ids, _ = found(admin_env, "etr@mail.ru")  # nobody holds this address: the ones containing it
    assert total == 2 and set(ids) == {people["Иванов Пётр"], more["Петров Глеб"]}


def test_a_shared_mailbox_or_switchboard_typed_whole_finds_everyone_who_holds_it(
        admin_env: AdminEnv, people: dict[str, int]) -> None:
    # Held as shared (two colleagues with different names), the values sit in another index than a
    # person's own; a whole value still finds its holders alone, not the addresses that contain it.
    office = seed(admin_env, [
        ContactRecord(source="import:clients.csv", first_name="Ольга", last_name="Смирнова",
                      emails=["office@roga.ru"], phones=["+7 495 765-43-21"]),
        ContactRecord(source="import:clients.csv", first_name="Борис", last_name="Кузнецов",
                      emails=["office@roga.ru"], phones=["+7 495 765-43-21"]),
        ContactRecord(source="import:clients.csv", first_name="Глеб", last_name="Орлов", emails=["xoffice@roga.ru"]),
    ])
    colleagues = {office["Смирнова Ольга"], office["Кузнецов Борис"]}
    with admin_env.engine.connect() as conn:
        shared = conn.execute(select(ContactIdentity.value).where(ContactIdentity.shared.is_not(None))).scalars()
        assert set(shared) == {"office@roga.ru", "+74957654321"}
    for typed in ("office@roga.ru", "8 (495) 765-43-21"):
        total, ids, _ = found(admin_env, typed)
        assert total == 2 and set(ids) == colleagues, typed


def test_like_wildcards_in_the_query_are_literal(admin_env: AdminEnv, people: dict[str, int]) -> None:
    _, ids, _ = found(admin_env, "under_score")
    assert ids == [people["Ёлкина Алёна"]]
    for typed in ("underXscore", "under%", "%", "_", "Ив_нов", "%ванов", "ivan%", "mail_ru", "и%"):
        total, ids, page = found(admin_env, typed)
        assert total == 0 and ids == [] and "Никого не нашлось" in page, typed


@pytest.mark.parametrize("typed", ["8 (903) 111-22-33", "+7 903 1112233", "9031112233", "89031112233",
                                   "111-22-33", "+7 (903) 111 22 33"])
def test_a_phone_in_any_written_form(admin_env: AdminEnv, people: dict[str, int], typed: str) -> None:
    _, ids, _ = found(admin_env, typed)
    assert ids == [people["Иванов Иван"]], typed


def test_a_promo_code_finds_its_holder_through_the_workflows_plugin(admin_env: AdminEnv,
                                                                    people: dict[str, int]) -> None:
    ivan = people["Иванов Иван"]
    now = utcnow()
    with admin_env.engine.begin() as conn:
        conn.execute(PromoCode.__table__.insert().values(code="BACK-7KX3QZ", prefix="BACK", discount=Decimal("15"),
                                                         contact_id=ivan, created_at=now,
                                                         expires_at=now + dt.timedelta(days=14)))
    for typed in ("BACK-7KX3QZ", "back-7kx3qz", " BACK-7KX3QZ ", "BACK-7KX"):
        _, ids, _ = found(admin_env, typed)
        assert ids == [ivan], typed
    assert found(admin_env, "BACK-7KX3QZZ")[0] == 0
    assert found(admin_env, "BACK_7KX3QZ")[0] == 0  # "_" is no wildcard here either


def test_the_total_is_counted_and_the_matches_paged(admin_env: AdminEnv) -> None:
    seed(admin_env, [ContactRecord(source="import:big.csv", first_name=f"Клиент{i:03d}", last_name="Тестов",
                                   emails=[f"client{i:03d}@shop.example"]) for i in range(123)])
    total, first, page = found(admin_env, "тестов")
    assert total == 123 and len(first) == 50
    assert "123 контакта по запросу «тестов»" in plain_page(page)
    assert "показаны первые 50" in page and "страница 1 из 3" in page
    total, second, page = found(admin_env, "тестов", page="2")
    assert len(second) == 50 and not set(first) & set(second) and "51–100 из 123" in page
    _, third, page = found(admin_env, "тестов", page="3")
    assert len(third) == 23 and 'rel="next"' not in page and 'rel="prev"' in page
    assert len(set(first) | set(second) | set(third)) == 123
    # A forged page number is read as the nearest page there is.
    for forged, expected in (("999", third), ("abc", first), ("-1", first), ("0", first), ("1" * 40, first)):
        assert found(admin_env, "тестов", page=forged)[1] == expected, forged


def test_hostile_queries_get_an_answer_not_an_error(admin_env: AdminEnv, people: dict[str, int]) -> None:
    for typed in ("иванов\x00петрович", "я" * 5000, "#99999999999", "#2147483648", "<script>alert(1)</script>",
                  "' OR 1=1 --", "\\", "и.", "@", "."):
        response = client_as(admin_env, "viewer").get("/contacts/", query_string={"q": typed})
        assert response.status_code == 200, typed
        assert "<script>alert(1)</script>" not in text(response)
    _, ids, _ = found(admin_env, "иванов\x00иван")
    assert ids[0] == people["Иванов Иван"]
    assert found(admin_env, f"#{people['Ёлкина Алёна']}")[1] == [people["Ёлкина Алёна"]]


def test_erased_and_merged_away_contacts_are_not_found(admin_env: AdminEnv, people: dict[str, int]) -> None:
    from hub import dedupe
    from plugins.gdpr import erasure

    erasure.erase(admin_env.engine, admin_env.settings, people["Ёлкина Алёна"], actor="test")
    assert found(admin_env, "ёлкина")[0] == 0 and found(admin_env, "under_score")[0] == 0
    dedupe.merge_by_hand(admin_env.engine, people["Иванов Иван"], people["Иванов Пётр"], actor="test",
                         settings=admin_env.settings)
    total, ids, _ = found(admin_env, "mail.ru")
    assert total == 1 and ids == [people["Иванов Иван"]]
    assert plain(client_as(admin_env, "viewer").get("/contacts/", query_string={"q": "petr@mail.ru"})).count(
        f'href="/contacts/{people["Иванов Иван"]}"') >= 1


def test_counting_stops_past_the_cap_and_the_pages_stay_in_order(admin_env: AdminEnv,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.admin import contact_search

    seed(admin_env, [ContactRecord(source="import:big.csv", first_name=f"Клиент{i:03d}", last_name="Тестов",
                                   emails=[f"client{i:03d}@shop.example"]) for i in range(123)])
    _, every, _ = found(admin_env, "тестов")
    with admin_env.engine.connect() as conn:
        whole = contact_search.find(conn, admin_env.settings, "тестов", limit=200)
    assert whole.total == 123 and not whole.more
    monkeypatch.setattr(contact_search, "TOTAL_CAP", 60)
    with admin_env.engine.connect() as conn:
        capped = contact_search.find(conn, admin_env.settings, "тестов", limit=50)
        deeper = contact_search.find(conn, admin_env.settings, "тестов", limit=50, offset=100)
        exact = contact_search.find(conn, admin_env.settings, "client007@shop.example", limit=50)
    assert capped.more and capped.total == 60
    assert [r["id"] for r in capped.rows] == [r["id"] for r in whole.rows[:50]]
    # The last page is past the cap: it is counted to its end, and the order is the uncapped one.
    assert not deeper.more and deeper.total == 123
    assert [r["id"] for r in deeper.rows] == [r["id"] for r in whole.rows[100:]]
    assert exact.total == 1 and not exact.more
    total, first, page = found(admin_env, "тестов")
    assert total == 60 and first == every
    assert "больше 60 контактов по запросу «тестов»" in plain_page(page) and 'rel="next"' in page
    assert "из 60" not in page
    _, second, page = found(admin_env, "тестов", page="2")
    assert "51–100" in page and "страница 2" in page and 'rel="next"' in page
    _, third, page = found(admin_env, "тестов", page="3")
    assert len(third) == 23 and 'rel="next"' not in page and "101–123 из 123" in page
    assert len(set(first) | set(second) | set(third)) == 123
