"""The library page: the shipped workflows as templates to start from, and copying one to adapt.

Every shipped workflow is shown in the reader's language with its trigger,
its steps and what it needs here; a marketer copies one into a workflow of
their own (switched off, version 1, saved by them) and a viewer can only read.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from hub import i18n
from hub.admin.audit import latest
from hub.api import translated_title
from tests.browser import Browser
from tests.support.admin import AdminEnv, client_as, plain, post, text
from tests.support.admin_browser import sign_in
from workflows import store
from workflows.models import WorkflowRow, WorkflowVersion

CYRILLIC = re.compile(r"[А-Яа-яЁё]")


def words(page: str) -> str:
    """The page's text as read, without tags (a need's «— есть» is bold)."""
    return re.sub(r"<[^>]+>", "", page)


def row(env: AdminEnv, name: str) -> tuple[object, object] | None:
    with env.engine.connect() as conn:
        found = conn.execute(select(WorkflowRow.__table__).where(WorkflowRow.name == name)).first()
        if found is None:
            return None
        version = conn.execute(select(WorkflowVersion.__table__).where(
            WorkflowVersion.workflow_id == found.id)).one()
    return found, version


def test_every_shipped_workflow_is_shown_in_russian_with_what_it_needs(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    assert 'href="/workflows/library"' in text(viewer.get("/workflows/"))  # linked from the list
    page = plain(viewer.get("/workflows/library"))
    assert "<h1>Готовые сценарии</h1>" in page and "Библиотека" not in page
    library = store.library_documents()
    assert {"reactivation_90d", "birthday", "welcome", "winback_dead", "post_purchase_feedback",
            "abandoned_cart"} <= set(library)
    for name, document in library.items():
        with admin_env.app.test_request_context(), i18n.use_language("ru"):
            title, description = translated_title(document["title"]), translated_title(document["description"])
        assert title != document["title"] and CYRILLIC.search(title), name
        assert description != document["description"] and CYRILLIC.search(description), name
        assert f'id="library-{name}"' in page and title in page and description in page, name
    entry = words(page.split('id="library-reactivation_90d"')[1].split("</section>")[0])
    assert "Запуск:" in entry and "вход в сегмент «Не покупали 90 дней" in entry
    assert "Промокод 15\u00a0% на 14 дней" in entry and "Отправить письмо: reactivation_email" in entry
    assert "Что нужно для работы" in entry and "шаблон сообщения reactivation_email — есть" in entry
    assert "канал sms — есть" in entry and "CRM, которая принимает задачи и комментарии" in entry
    cart = words(page.split('id="library-abandoned_cart"')[1].split("</section>")[0])
    assert "событие cart_abandoned" in cart and "заказ за 3 дня после входа" in cart
    assert "ваш сайт отправляет событие cart_abandoned в API (POST /api/v1/events) — ещё не приходило" in cart
    assert "если да:" in cart and "Завершить" in cart
    assert "Использовать как шаблон" not in page  # a viewer reads


def test_a_need_turns_present_when_this_hub_has_it(admin_env: AdminEnv) -> None:
    from hub import events

    viewer = client_as(admin_env, "viewer")
    before = words(plain(viewer.get("/workflows/library")))
    assert "событие cart_abandoned в API (POST /api/v1/events) — ещё не приходило" in before
    with admin_env.engine.begin() as conn:  # the website has sent its first abandoned cart
        events.record(conn, admin_env.settings, [events.Incoming("cart_abandoned", contact_id=admin_env.ids["anna"])],
                      api_key=None)
    after = words(plain(viewer.get("/workflows/library")))
    assert "событие cart_abandoned в API (POST /api/v1/events) — есть" in after


@pytest.mark.both_databases
def test_a_marketer_copies_a_shipped_workflow_into_their_own(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    marketer.get("/workflows/")  # the shipped rows are installed
    page = plain(marketer.get("/workflows/library"))
    assert 'href="/workflows/library/reactivation_90d/copy"' in page and "Использовать как шаблон" in page
    form = plain(marketer.get("/workflows/library/reactivation_90d/copy"))
    assert 'value="reactivation_90d_copy"' in form
    assert 'value="Вернуть клиентов, которые не покупали 90 дней (копия)"' in form
    done = post(marketer, "/workflows/library/reactivation_90d/copy",
                {"name": "reactivation_spring", "title": "Весенний возврат клиентов"},
                token_from="/workflows/library/reactivation_90d/copy")
    assert done.status_code == 302
    assert done.headers["Location"].endswith(("/workflows/reactivation_spring/edit", "/workflows/reactivation_spring"))
    found = row(admin_env, "reactivation_spring")
    assert found is not None
    saved, version = found
    assert saved.origin == "admin" and saved.version == 1 and not saved.enabled  # type: ignore[attr-defined]
    assert saved.title == "Весенний возврат клиентов"  # type: ignore[attr-defined]
    assert version.created_by == "admin:marketer@shop.example"  # type: ignore[attr-defined]
    shipped = store.library_documents()["reactivation_90d"]
    with admin_env.app.test_request_context(), i18n.use_language("ru"):
        described = translated_title(shipped["description"])  # as the card showed it
    assert described.startswith("Персональный промокод") and CYRILLIC.search(described)
    assert saved.definition == {**shipped, "name": "reactivation_spring",  # type: ignore[attr-defined]
                                "title": "Весенний возврат клиентов", "description": described}
    with admin_env.engine.connect() as conn:
        entry = next(e for e in latest(conn) if e["action"] == "workflow_copied")
    assert entry["actor"] == "admin:marketer@shop.example"
    assert entry["details"] == {"workflow": "reactivation_spring", "template": "reactivation_90d"}
    shipped_row = row(admin_env, "reactivation_90d")
    assert shipped_row is not None and shipped_row[0].origin == "library"  # type: ignore[attr-defined]
    assert shipped_row[0].version == 1 and shipped_row[0].definition == shipped  # type: ignore[attr-defined]
    # the next copy's name is free too
    post(marketer, "/workflows/library/reactivation_90d/copy",
         {"name": "reactivation_90d_copy", "title": "Копия"}, token_from="/workflows/library/reactivation_90d/copy")
    assert 'value="reactivation_90d_copy_2"' in plain(marketer.get("/workflows/library/reactivation_90d/copy"))


@pytest.mark.parametrize("name, title, says", [
    ("reactivation_spring", "Копия", "сценарий reactivation_spring уже есть"),
    ("Весна 2027", "Копия", "Весна 2027 не подходит: латинские строчные буквы"),
    ("birthday", "Копия", "birthday — сценарий из поставки Hub"),
    ("a" * 65, "Копия", "слишком длинное (65 символов); не больше 64"),
    ("<script>alert(1)</script>", "Копия", "<script>alert(1)</script> не подходит"),
    ("", "Копия", "введите имя копии"),
    ("reactivation_autumn", "", "введите название"),
    ("reactivation_autumn", "x" * 301, "слишком длинное (301 символов); не больше 300"),
])
def test_a_bad_name_or_title_returns_the_form_with_the_problem(admin_env: AdminEnv, name: str, title: str,
                                                                 says: str) -> None:
    marketer = client_as(admin_env, "marketer")
    path = "/workflows/library/reactivation_90d/copy"
    post(marketer, path, {"name": "reactivation_spring", "title": "Весна"}, token_from=path)
    answer = post(marketer, path, {"name": name, "title": title}, token_from=path)
    assert answer.status_code == 400
    page = text(answer)
    assert "<script>alert(1)</script>" not in page  # what was typed comes back as text
    assert says in plain(answer), plain(answer)[plain(answer).find("<main"):][:2000]
    with admin_env.engine.connect() as conn:
        names = set(conn.execute(select(WorkflowRow.name)).scalars())
    assert names - set(store.library_documents()) == {"reactivation_spring"}


def test_a_viewer_has_no_button_and_cannot_copy(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    assert "Использовать как шаблон" not in text(viewer.get("/workflows/library"))
    assert viewer.get("/workflows/library/reactivation_90d/copy").status_code == 403
    refused = post(viewer, "/workflows/library/reactivation_90d/copy", {"name": "mine", "title": "Моя"},
                   token_from="/workflows/library")
    assert refused.status_code == 403
    assert row(admin_env, "mine") is None
    marketer = client_as(admin_env, "marketer")
    assert marketer.get("/workflows/library/no_such_thing/copy").status_code == 404
    assert marketer.get("/workflows/library/%3Cscript%3E/copy").status_code == 404


def test_the_english_page_reads_english(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    post(marketer, "/language", {"language": "en"}, token_from="/")
    page = words(plain(marketer.get("/workflows/library")))
    assert "Ready-made workflows" in page and "Use as a template" in page and "What it needs" in page
    assert "Win back customers who have not bought for 90 days" in page
    assert "Remind about items left in the cart" in page and "not received yet" in page
    assert "the message template reactivation_email — present" in page
    assert not CYRILLIC.search(page.replace("Русский", "")), "Russian left"  # the language picker names itself
    form = plain(marketer.get("/workflows/library/birthday/copy"))
    assert 'value="Birthday greetings with a promo code (copy)"' in form



def test_a_marketer_copies_from_the_library_in_a_browser(live: str, browser: Browser, admin_env: AdminEnv) -> None:
    sign_in(browser, live, "marketer", "/workflows/")
    browser.click("#library-link")
    browser.wait_text("h1", "Готовые сценарии")
    assert "шаблон сообщения winback_email — есть" in browser.text("#library-winback_dead")
    browser.click("#copy-winback_dead")
    browser.wait(lambda: browser.exists("#copy-form"), "the copy form")
    assert browser.find("#copy-name").get_attribute("value") == "winback_dead_copy"
    browser.fill("#copy-name", "winback_dead")  # a shipped name: the form says so and keeps what was typed
    browser.fill("#copy-title", "Вернуть потерянных, весна")
    browser.click("#copy-save")
    browser.wait_text(".error", "сценарий из поставки Hub")
    assert browser.find("#copy-title").get_attribute("value") == "Вернуть потерянных, весна"
    browser.fill("#copy-name", "winback_spring")
    browser.click("#copy-save")
    browser.wait(lambda: "/workflows/winback_spring" in browser.url, "the copy's page")
    found = row(admin_env, "winback_spring")
    assert found is not None and found[0].title == "Вернуть потерянных, весна"  # type: ignore[attr-defined]
    assert not found[0].enabled  # type: ignore[attr-defined]


def test_a_viewer_reads_the_library_in_a_browser_without_buttons(live: str, browser: Browser) -> None:
    sign_in(browser, live, "viewer", "/workflows/library")
    assert "Напомнить о товарах, оставленных в корзине" in browser.text("#library-abandoned_cart")
    assert not browser.exists("#copy-abandoned_cart")


# --- the new-user trial: rules and schedules in words, the copy in the reader's language ---

def test_conditions_and_schedules_read_as_words(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    page = plain(viewer.get("/workflows/library"))
    shown = words(page)
    for code in ("orders.last_at", "run.started_at", "consent.email.marketing", "0 10 * * *", "none, pending"):
        assert code not in shown, code
    reactivation = words(page.split('id="library-reactivation_90d"')[1].split("</section>")[0])
    assert "Условие: когда закрыт последний выигранный заказ после момента входа в сценарий" in reactivation
    welcome = words(page.split('id="library-welcome"')[1].split("</section>")[0])
    assert "Условие: согласие (Email, Акции и специальные предложения) равно отозвано" in welcome
    assert ("Условие: согласие (Email, Акции и специальные предложения) одно из: не спрашивали, ждёт "
            "подтверждения") in welcome
    birthday = words(page.split('id="library-birthday"')[1].split("</section>")[0])
    assert "Запуск: каждый день в 10:00 для сегмента «День рождения" in birthday
    post(viewer, "/language", {"language": "en"}, token_from="/")
    english = words(plain(viewer.get("/workflows/library")))
    assert "Condition: last won order closed after the moment of entering the workflow" in english
    assert "Condition: consent (Email, Offers and special deals) is one of: never asked, pending" in english
    assert "Starts on: every day at 10:00, for the segment “Birthday" in english


def test_the_copy_keeps_the_english_description_when_read_in_english(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    post(marketer, "/language", {"language": "en"}, token_from="/")
    path = "/workflows/library/birthday/copy"
    assert post(marketer, path, {"name": "birthday_mine", "title": "Birthday, mine"}, token_from=path).status_code \
        == 302
    found = row(admin_env, "birthday_mine")
    assert found is not None
    assert found[0].definition["description"] == store.library_documents()["birthday"]["description"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("cron, russian, english", [
    ("0 10 * * *", "каждый день в 10:00", "every day at 10:00"),
    ("30 9 * * 1", "каждый понедельник в 09:30", "every Monday at 09:30"),
    ("0 18 * * 3", "каждую среду в 18:00", "every Wednesday at 18:00"),
    ("0 12 * * 0", "каждое воскресенье в 12:00", "every Sunday at 12:00"),
    ("0 12 * * 7", "каждое воскресенье в 12:00", "every Sunday at 12:00"),
    ("0 11 * * FRI", "каждую пятницу в 11:00", "every Friday at 11:00"),
    ("0 9 * * 1-5", "по будням в 09:00", "on weekdays at 09:00"),
    ("0 8 1 * *", "1-го числа каждого месяца в 08:00", "on day 1 of every month at 08:00"),
    ("*/15 * * * *", "каждые 15 минут", "every 15 minutes"),
    ("*/21 * * * *", "каждые 21 минуту", "every 21 minutes"),
    ("* * * * *", "каждую минуту", "every minute"),
    ("0 * * * *", "каждый час", "every hour"),
    ("15 * * * *", "каждый час, в :15", "every hour, at :15"),
    ("0 */3 * * *", "каждые 3 часа", "every 3 hours"),
    ("0 */6 * * *", "каждые 6 часов", "every 6 hours"),
])
def test_the_usual_crons_read_as_words(admin_env: AdminEnv, cron: str, russian: str, english: str) -> None:
    from workflows.cron_words import schedule_words

    with admin_env.app.test_request_context():
        with i18n.use_language("ru"):
            assert schedule_words(cron) == russian
        with i18n.use_language("en"):
            assert schedule_words(cron) == english


@pytest.mark.parametrize("cron", ["0 10 * * 1,3", "0 10 1 1 *", "0 10 1 * 1", "5 */3 * * *", "0 25 * * *",
                                  "61 10 * * *", "0 10 * * 9", "0 10 32 * *", "*/0 * * * *", "bad", "", "0 10 * *",
                                  "0 10 L * *", "<b>x</b> 10 * * *"])
def test_other_crons_stay_as_written_in_code(admin_env: AdminEnv, cron: str) -> None:
    from workflows.admin import trigger_html
    from workflows.cron_words import schedule_words
    from workflows.definition import Trigger

    with admin_env.app.test_request_context(), i18n.use_language("ru"):
        assert schedule_words(cron) is None
        trigger = Trigger("schedule", segment="dormant_90d", schedule=cron)
        text_ = trigger.text("Не покупали 90 дней")
        assert text_ == f"по расписанию «{cron}» для сегмента «Не покупали 90 дней» (dormant_90d)"
        html = str(trigger_html(text_, "dormant_90d", cron))
    if cron:
        assert "<b>" not in html
        assert ">" + str(__import__("markupsafe").escape(cron)) + "</code>" in html


def test_a_schedule_trigger_reads_as_words_on_every_page(admin_env: AdminEnv) -> None:
    from workflows.definition import Trigger

    with admin_env.app.test_request_context(), i18n.use_language("ru"):
        trigger = Trigger("schedule", segment="birthday_7d", schedule="0 10 * * *")
        assert trigger.text("День рождения") == "каждый день в 10:00 для сегмента «День рождения» (birthday_7d)"
    marketer = client_as(admin_env, "marketer")
    marketer.get("/workflows/")  # the shipped rows are installed
    detail = words(plain(marketer.get("/workflows/birthday")))
    assert "Запуск каждый день в 10:00 для сегмента" in detail  # the technical form stays beside it, small
