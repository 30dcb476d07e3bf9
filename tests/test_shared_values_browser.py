"""A contact card in headless Chromium: a shared phone badged with why, and a wrong merge undone by a marketer.

A viewer sees the badge but no undo button, and a POST they forge with a
valid token is refused by the server.
"""

from __future__ import annotations

from sqlalchemy import select, update

from hub import identity, sync
from hub.models import Contact, ContactMerge
from hub.records import ContactRecord
from tests.browser import Browser
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in


def office_and_wrong_merge(env: AdminEnv) -> tuple[int, int, int]:
    """Two colleagues sharing the switchboard, and one of them wrongly merged with a stranger before."""
    with env.engine.begin() as conn:
        anna, oleg = (cid for cid in sync.write_contacts(conn, [
            ContactRecord(source="bitrix24", external_id="s1", first_name="Анна", last_name="Смирнова",
                          phones=["+7 495 111-22-33", "+7 916 100-00-01"], labels={"+7 495 111-22-33": "work"}),
            ContactRecord(source="bitrix24", external_id="s2", first_name="Олег", last_name="Кузнецов",
                          phones=["+7 495 111-22-33"], labels={"+7 495 111-22-33": "work"}),
        ], env.settings, sync.Counts()).contact_ids if cid is not None)
        (stranger,) = (cid for cid in sync.write_contacts(conn, [
            ContactRecord(source="shop", first_name="Зоя", last_name="Смирнова", emails=["zoya@example.ru"]),
        ], env.settings, sync.Counts()).contact_ids if cid is not None)
        merge_id = identity.merge_contacts(conn, anna, stranger, reason={"rule": "merged by hand", "by": "cli"},
                                           settings=env.settings, actor="cli")
    assert anna != oleg
    return anna, stranger, merge_id


def test_a_marketer_undoes_a_merge_from_the_card_and_a_viewer_cannot(live: str, browser: Browser,
                                                                    admin_env: AdminEnv) -> None:
    anna, stranger, merge_id = office_and_wrong_merge(admin_env)
    sign_in(browser, live, "viewer", f"/contacts/{anna}")
    browser.wait(lambda: browser.exists("#identities"), "the contact card")
    badge = browser.find("#identities .badge.shared")
    assert badge.text == "общий" and badge.get_attribute("title") == "у людей с разными именами"
    assert "рабочий" in browser.text("#identities")
    assert f"#{stranger}" in browser.text("#merges") and not browser.exists("button.unmerge")
    # Posting anyway, with a valid token, is refused by the server.
    browser.script("""
        const form = document.createElement('form');
        form.method = 'post'; form.action = arguments[0];
        const input = document.createElement('input'); input.name = 'csrf_token';
        input.value = document.querySelector('meta[name=csrf-token]').content; form.appendChild(input);
        document.body.appendChild(form); form.submit();""", f"/contacts/merges/{merge_id}/undo")
    browser.wait_text("h1", "Нет доступа")
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(ContactMerge.undone_at).where(ContactMerge.id == merge_id)).scalar_one() is None

    sign_in(browser, live, "marketer", f"/contacts/{anna}")
    browser.wait(lambda: browser.exists("button.unmerge"), "the undo button")
    browser.click(f"tr[data-merge='{merge_id}'] button.unmerge")
    browser.accept_confirm()
    flash = browser.wait_text(".flash", "Слияние отменено")
    assert f"#{stranger} снова самостоятельный контакт, отдельно от #{anna}" in flash
    assert browser.url.endswith(f"/contacts/{stranger}")
    assert "Смирнова Зоя" in browser.text("#contact-name") and "zoya@example.ru" in browser.text("#identities")
    with admin_env.engine.connect() as conn:
        row = conn.execute(select(ContactMerge.undone_by).where(ContactMerge.id == merge_id)).scalar_one()
        assert row == "marketer@shop.example"
        assert conn.execute(select(Contact.first_name).where(Contact.id == anna)).scalar_one() == "Анна"
    browser.open(live + f"/contacts/{anna}")
    assert "отменено" in browser.text(f"tr[data-merge='{merge_id}']") and not browser.exists("button.unmerge")


def test_undoing_twice_shows_why_as_a_flash(live: str, browser: Browser, admin_env: AdminEnv) -> None:
    anna, _stranger, merge_id = office_and_wrong_merge(admin_env)
    sign_in(browser, live, "marketer", f"/contacts/{anna}")
    browser.wait(lambda: browser.exists("button.unmerge"), "the undo button")
    with admin_env.engine.begin() as conn:  # someone else undid it meanwhile, from the command line
        conn.execute(update(ContactMerge).where(ContactMerge.id == merge_id).values(undone_by="cli",
                                                                                     undone_at=ContactMerge.at))
    browser.click("button.unmerge")
    browser.accept_confirm()
    assert f"Слияние №{merge_id} уже отменено." in browser.wait_text(".flash.error", "уже отменено")
    assert browser.url.endswith(f"/contacts/{anna}")
