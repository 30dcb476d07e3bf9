"""The admin in the reader's language: Russian by default, English when a person picks it, and the
formats people read (dates, money, phones) on the contact card and the lists.

Each signed-in person's choice is kept on their account (users.language), so it follows them and
nobody else; pages without a signed-in person speak the shop's HUB_LANGUAGE.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Connection, select, update

from hub import i18n, sync, users
from hub.admin import create_app
from hub.models import AuditEntry, Contact
from hub.records import ContactRecord, OrderRecord
from tests.browser import Browser
from tests.support.admin import AdminEnv, client_as, csrf_token, plain, text
from tests.support.admin_browser import sign_in as browser_sign_in


def readable(page: str) -> str:
    """The page with Babel's no-break spaces read as spaces, so "639 660,00 ₽" can be written plainly."""
    return page.replace("\u00a0", " ").replace("\u202f", " ")


def choose(client: FlaskClient, language: str, back: str = "/contacts/") -> Any:
    """Pick a language with the header's form, as the signed-in person."""
    return client.post("/language", data={"csrf_token": csrf_token(client, "/"), "language": language, "next": back})


def language_of(conn: Connection, env: AdminEnv, role: str) -> str | None:
    account = users.get(conn, env.users[role].id)
    assert account is not None
    return account.language


# --- Russian by default ---------------------------------------------------------------------

def test_the_admin_speaks_russian_by_default(admin_env: AdminEnv) -> None:
    admin = client_as(admin_env, "admin")
    dashboard = text(admin.get("/"))
    assert '<html lang="ru">' in dashboard
    assert "<h1>Обзор</h1>" in dashboard and "Клиентская база" in dashboard and "Выйти" in dashboard
    assert "Dashboard" not in dashboard and "Sign out" not in dashboard
    assert "Потенциальные" in dashboard or "Рабочие" in dashboard  # lifecycle stages by their names

    listing = text(admin.get("/contacts/"))
    assert "Новые контакты" in listing and "Поиск по имени, email или телефону" in listing
    assert "1 контакт по запросу «Иванова»" in plain(admin.get("/contacts/", query_string={"q": "Иванова"}))

    card = text(admin.get(f"/contacts/{admin_env.ids['anna']}"))
    assert "Телефоны и email" in card and "Заказы" in card and "История объединений" in card
    assert "Phones and emails" not in card

    people = text(admin.get("/users/"))
    assert "Добавить пользователя" in people and "Маркетолог" in people and "Журнал действий" in people

    login = text(admin_env.app.test_client().get("/login"))
    assert '<html lang="ru">' in login and "<h1>Вход</h1>" in login and "Ещё нет учётной записи?" in login


def test_error_pages_and_refusals_in_russian(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    missing = viewer.get("/contacts/999999")
    assert missing.status_code == 404 and "Не найдено" in text(missing) and "Вернуться к обзору" in text(missing)
    forbidden = viewer.get("/users/")
    assert forbidden.status_code == 403 and "Ваша роль этого не позволяет" in text(forbidden)
    refused = admin_env.app.test_client().post("/login", data={"email": "a@b.ru", "password": "x"})
    assert refused.status_code == 400 and "Форма не принята" in text(refused)
    wrong = admin_env.app.test_client()
    token = csrf_token(wrong)
    answer = wrong.post("/login", data={"email": "viewer@shop.example", "password": "not it", "csrf_token": token})
    assert answer.status_code == 401 and "Неверный email или пароль" in text(answer)
    empty = wrong.post("/login", data={"email": "", "password": "", "csrf_token": token})
    assert "Введите email." in text(empty) and "Введите пароль." in text(empty)


def test_a_refusal_speaks_the_language_the_reader_chose(admin_env: AdminEnv) -> None:
    """A 403 is decided before the reader's language is: its page must still be in one language, theirs."""
    viewer = client_as(admin_env, "viewer")
    choose(viewer, "en")
    forbidden = viewer.get("/users/")
    page = text(forbidden)
    assert forbidden.status_code == 403 and "Not allowed" in page and "Sign out" in page
    assert '<html lang="en">' in page and "Нет доступа" not in page and "Выйти" not in page


def test_anonymous_pages_follow_hub_language(admin_env: AdminEnv) -> None:
    app = create_app(replace(admin_env.settings, language="en"))
    login = text(app.test_client().get("/login"))
    assert '<html lang="en">' in login and "<h1>Sign in</h1>" in login and "No account yet?" in login
    missing = app.test_client().get("/healthz/nothing-here")
    assert missing.status_code == 404
    refused = app.test_client().post("/login", data={"email": "a@b.ru", "password": "x"})
    assert "Form refused" in text(refused) and "Форма" not in text(refused)


def test_an_error_page_for_nobody_starts_no_session(admin_env: AdminEnv) -> None:
    """A browser's stray /favicon.ico must not set a session cookie that voids the sign-in form's token."""
    stray = admin_env.app.test_client().get("/favicon.ico")
    assert stray.status_code == 404 and "Не найдено" in text(stray)
    assert "Set-Cookie" not in stray.headers and "csrf-token" not in text(stray)


def test_the_old_filter_names_keep_working_and_dates_never_shift(admin_env: AdminEnv) -> None:
    """`when` and `number` stay for pages that use them; a date-only value is never read as midnight UTC."""
    from hub.admin import filters

    with admin_env.app.test_request_context(), i18n.use_language("ru"):
        assert filters.when("1992-03-30") == "30.03.1992"
        assert filters.when(dt.date(1992, 3, 30)) == "30.03.1992"
        assert filters.when(dt.datetime(2026, 12, 6, 11, 5, tzinfo=dt.timezone.utc)) == "06.12.2026 14:05"
        assert filters.moment("2026-12-06T11:05:00+00:00", zone=True) == "06.12.2026 14:05 МСК"
        assert filters.when(dt.datetime(2026, 12, 6, 11, 5, 7, tzinfo=dt.timezone.utc), "%H:%M:%S") == "14:05:07"
        assert filters.date(dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)) == "02.03.2026"  # a CRM's date
        assert filters.date(dt.datetime(2026, 3, 2, 22, 30, tzinfo=dt.timezone.utc)) == "03.03.2026"  # Moscow's day
        assert filters.number(1234567) == "1\u00a0234\u00a0567"
        assert filters.money(Decimal("639660"), "RUB") == "639\u00a0660,00\u00a0₽"
        assert filters.money("10", "EUR") == "10,00\u00a0€"
        assert filters.phone("+79161234567") == "+7 916 123-45-67" and filters.phone("12") == "12"
        assert filters.percent(0.125) == "12,5\u00a0%"
        assert filters.status_title("sent") == "отправлено" and filters.status_title("parked") == "parked"


# --- each person's own language -----------------------------------------------------------------

def test_a_user_picks_english_and_only_they_read_it(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    chosen = choose(marketer, "en", back="/contacts/")
    assert chosen.status_code == 302 and chosen.headers["Location"].endswith("/contacts/")
    page = text(marketer.get("/contacts/"))
    assert '<html lang="en">' in page and "Newest contacts" in page and "Sign out" in page
    assert "The admin&#39;s language is now English." in page
    assert "Find by name, email or phone" in page and "Новые контакты" not in page
    card = text(marketer.get(f"/contacts/{admin_env.ids['anna']}"))
    assert "Phones and emails" in card and "Merge history" in card

    with admin_env.engine.connect() as conn:  # kept on the account, so any browser gets it
        assert language_of(conn, admin_env, "marketer") == "en"
        assert language_of(conn, admin_env, "viewer") is None
        entry = conn.execute(select(AuditEntry).where(AuditEntry.action == "user_language_changed")).one()
    assert entry.actor == "admin:marketer@shop.example" and entry.details == {"user": "marketer@shop.example",
                                                                              "language": "en"}
    assert "Новые контакты" in text(client_as(admin_env, "viewer").get("/contacts/"))  # others keep theirs
    fresh = client_as(admin_env, "marketer")  # a new session of the same person
    assert '<html lang="en">' in text(fresh.get("/"))

    back = choose(marketer, "ru")
    assert back.status_code == 302
    assert "Язык админки теперь: Русский." in text(marketer.get("/contacts/"))


def test_a_refused_form_is_explained_in_the_language_the_person_chose(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    choose(marketer, "en")
    refused = marketer.post("/contacts/merge", data={"survivor": admin_env.ids["petrov_1"],
                                                     "other": admin_env.ids["petrov_2"]})
    assert refused.status_code == 400 and "Form refused" in text(refused) and '<html lang="en">' in text(refused)


def test_the_language_form_needs_its_csrf_token(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    refused = viewer.post("/language", data={"language": "en"})
    assert refused.status_code == 400 and "Форма не принята" in text(refused)
    nobody = admin_env.app.test_client()
    assert nobody.post("/language", data={"language": "en", "csrf_token": csrf_token(nobody)}).status_code == 401
    with admin_env.engine.connect() as conn:
        assert language_of(conn, admin_env, "viewer") is None


def test_a_forged_language_is_refused_with_a_clear_error(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    for forged in ("klingon", "", "<script>"):
        answer = choose(viewer, forged)
        assert answer.status_code == 400, forged
        page = plain(answer)
        assert "Язык не изменён" in page and "— не один из: ru, en" in page, page
        assert "<script>" not in text(answer)
    with admin_env.engine.connect() as conn:
        assert language_of(conn, admin_env, "viewer") is None


def test_users_functions_set_and_clear_the_language(admin_env: AdminEnv) -> None:
    uid = admin_env.users["viewer"].id
    with admin_env.engine.begin() as conn:
        assert users.set_language(conn, uid, "EN").language == "en"
        assert users.set_language(conn, uid, None).language is None
        with i18n.use_language("en"), pytest.raises(users.UserError, match="'de' is not one of: ru, en"):
            users.set_language(conn, uid, "de")
        with i18n.use_language("ru"), pytest.raises(users.UserError, match="язык 'de' — не один из: ru, en"):
            users.set_language(conn, uid, "de")


# --- formats ----------------------------------------------------------------------------------

def test_the_card_shows_dates_money_and_phones_as_people_read_them(admin_env: AdminEnv) -> None:
    anna = admin_env.ids["anna"]
    with admin_env.engine.begin() as conn:
        conn.execute(update(Contact).where(Contact.id == anna).values(birthday=dt.date(1992, 3, 30)))
        sync.write_page(conn, [OrderRecord(source="bitrix24", external_id="o3", contact_external_id="101",
                                           amount=Decimal("639660"), currency="RUB", status="won",
                                           closed_at=dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc))],
                        admin_env.settings, sync.Counts())
    viewer = client_as(admin_env, "viewer")
    card = readable(text(viewer.get(f"/contacts/{anna}")))
    assert re.search(r'id="birthday">30\.03\.1992</strong>', card), "a birthday is a date, without a time"
    assert "30.03.1992 0" not in card
    assert "639 660,00 ₽" in card and "1 500,00 ₽" in card
    assert "<td>02.03.2026</td>" in card  # a close date kept as UTC midnight is that day, not 03:00
    assert '<a href="tel:+79161234567">+7 916 123-45-67</a>' in card  # readable, E.164 in the link
    assert "(МСК)" in card  # the zone of the times is said in the headers

    listing = readable(text(viewer.get("/contacts/", query_string={"q": "Иванова"})))
    assert '<a href="tel:+79161234567">+7 916 123-45-67</a>' in listing

    choose(viewer, "en")
    english = readable(text(viewer.get(f"/contacts/{anna}")))
    assert 'id="birthday">Mar 30, 1992</strong>' in english
    assert "₽639,660.00" in english
    assert "+7 916 123-45-67" in english


def test_the_search_json_keeps_machine_forms(admin_env: AdminEnv) -> None:
    """What scripts read is not reformatted: the stored E.164 stays as it is."""
    with admin_env.engine.begin() as conn:
        sync.write_page(conn, [ContactRecord(source="import:x.csv", first_name="Олег", last_name="Сидоров",
                                             phones=["8 903 000-11-22"])], admin_env.settings, sync.Counts())
    page = text(client_as(admin_env, "viewer").get("/contacts/", query_string={"q": "Сидоров"}))
    assert 'href="tel:+79030001122"' in page and "+7 903 000-11-22" in page.replace("\u00a0", " ")


# --- in a real browser -----------------------------------------------------------------------

def test_switching_the_language_in_the_browser(admin_env: AdminEnv, live: str, browser: Browser) -> None:
    browser_sign_in(browser, live, "marketer", "/contacts/")
    assert browser.find("html").get_attribute("lang") == "ru"
    assert "Новые контакты" in browser.text("h2")
    browser.select("#language", "en")
    browser.click("#language-form button[type=submit]")
    browser.wait(lambda: browser.find("html").get_attribute("lang") == "en", "the page in English")
    assert "/contacts/" in browser.url and "Newest contacts" in browser.text("h2")
    assert "The admin's language is now English." in browser.text(".flash")
    browser.select("#language", "ru")
    browser.click("#language-form button[type=submit]")
    browser.wait(lambda: browser.find("html").get_attribute("lang") == "ru", "the page in Russian again")
    assert "Язык админки теперь: Русский." in browser.text(".flash")


def test_form_errors_are_in_the_readers_language(admin_env: AdminEnv) -> None:
    """Our own messages and WTForms' built-in ones ("not a valid integer") alike."""
    marketer = client_as(admin_env, "marketer")
    token = csrf_token(marketer, "/")
    answer = marketer.post("/contacts/merge", data={"csrf_token": token, "survivor": admin_env.ids["anna"],
                                                    "other": "x"}, follow_redirects=True)
    page = plain(answer)
    assert "Объединение отклонено:" in page and "Not a valid" not in page, page[page.find("flash"):][:300]
    missing = marketer.post("/contacts/merge", data={"csrf_token": token, "survivor": admin_env.ids["anna"]},
                            follow_redirects=True)
    assert "Объединение отклонено: Выберите контакт для объединения." in plain(missing)
    admin = client_as(admin_env, "admin")
    short = admin.post("/users/", data={"csrf_token": csrf_token(admin, "/"), "email": "x@shop.example",
                                        "role": "viewer", "password": "short"}, follow_redirects=True)
    assert "Пароль слишком короткий: нужно не меньше 10 символов." in plain(short)
    choose(marketer, "en")
    english = marketer.post("/contacts/merge", data={"csrf_token": token, "survivor": admin_env.ids["anna"]},
                            follow_redirects=True)
    assert "Merge refused: Choose the contact to merge." in plain(english)
