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
    assert "<h1>Библиотека шаблонов</h1>" in page
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
    assert saved.definition == {**shipped, "name": "reactivation_spring",  # type: ignore[attr-defined]
                                "title": "Весенний возврат клиентов"}
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
    ("reactivation_spring", "Копия", "автоматизация reactivation_spring уже есть"),
    ("Весна 2027", "Копия", "Весна 2027 не подходит: латинские строчные буквы"),
    ("birthday", "Копия", "birthday — автоматизация из комплекта Hub"),
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
    assert "Workflow library" in page and "Use as a template" in page and "What it needs" in page
    assert "Win back customers who have not bought for 90 days" in page
    assert "Remind about items left in the cart" in page and "not received yet" in page
    assert "the message template reactivation_email — present" in page
    assert not CYRILLIC.search(page.replace("Русский", "")), "Russian left"  # the language picker names itself
    form = plain(marketer.get("/workflows/library/birthday/copy"))
    assert 'value="Birthday greetings with a promo code (copy)"' in form



def test_a_marketer_copies_from_the_library_in_a_browser(live: str, browser: Browser, admin_env: AdminEnv) -> None:
    sign_in(browser, live, "marketer", "/workflows/")
    browser.click("#library-link")
    browser.wait_text("h1", "Библиотека шаблонов")
    assert "шаблон сообщения winback_email — есть" in browser.text("#library-winback_dead")
    browser.click("#copy-winback_dead")
    browser.wait(lambda: browser.exists("#copy-form"), "the copy form")
    assert browser.find("#copy-name").get_attribute("value") == "winback_dead_copy"
    browser.fill("#copy-name", "winback_dead")  # a shipped name: the form says so and keeps what was typed
    browser.fill("#copy-title", "Вернуть потерянных, весна")
    browser.click("#copy-save")
    browser.wait_text(".error", "автоматизация из комплекта Hub")
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
