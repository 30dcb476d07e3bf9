"""Admin pages from plugins: a stranger's page gets sign-in, roles, CSRF and a menu entry, as the core's own do.

The sample plugin (tests/plugins/admin_page.py) registers a "Notes" page
through register_admin_pages, readable by viewers and changed by marketers,
and a public blueprint through register_routes.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Iterator

import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from hub import plugins, users
from hub.admin import access, create_app
from hub.admin.registry import AdminPage, collect
from hub.hookspecs import hookimpl
from hub.models import AuditEntry
from tests.conftest import HubDB
from tests.plugins import admin_page
from tests.support.admin import PASSWORD, ROLES, csrf_token, sign_in


@pytest.fixture
def notes_app(hub_db: HubDB) -> Iterator[tuple[Flask, dict[str, users.Account], HubDB]]:
    settings = replace(hub_db.settings, plugins=("mailing",))
    pm = plugins.build(settings)
    pm.register(admin_page, name="admin_page")
    plugins.use(pm)
    admin_page.NOTES.clear()
    with hub_db.engine.begin() as conn:
        accounts = {role: users.add(conn, f"{role}@shop.example", role, PASSWORD) for role in ROLES}
    yield create_app(settings), accounts, hub_db
    admin_page.NOTES.clear()


def signed_in(app: Flask, user: users.Account | None) -> FlaskClient:
    return sign_in(app.test_client(), user)


def menu(client: FlaskClient) -> list[str]:
    page = client.get("/").get_data(as_text=True)
    nav = re.search(r"<nav.*?</nav>", page, re.S)
    return re.findall(r'href="([^"]+)"', nav.group(0)) if nav else []


# hook:register_admin_pages
def test_a_plugin_page_needs_sign_in(notes_app: Any) -> None:
    app, _, _ = notes_app
    anonymous = app.test_client()
    answer = anonymous.get("/notes/")
    assert answer.status_code == 302 and answer.location.startswith("/login?next=")
    token = csrf_token(anonymous, "/login")
    assert anonymous.post("/notes/", data={"csrf_token": token, "text": "x"}).status_code == 401
    assert admin_page.NOTES == []


def test_a_viewer_reads_a_plugin_page_but_cannot_change_it(notes_app: Any) -> None:
    app, accounts, db = notes_app
    viewer = signed_in(app, accounts["viewer"])
    page = viewer.get("/notes/")
    assert page.status_code == 200 and "viewer@shop.example" in page.get_data(as_text=True)
    assert 'id="note-form"' not in page.get_data(as_text=True)
    # The view allows any signed-in user to post; the page's write_role (marketer) is stricter and wins.
    refused = viewer.post("/notes/", data={"csrf_token": csrf_token(viewer, "/notes/"), "text": "from a viewer"})
    assert refused.status_code == 403 and "Ваша роль этого не позволяет" in refused.get_data(as_text=True)
    marketer = signed_in(app, accounts["marketer"])
    done = marketer.post("/notes/", data={"csrf_token": csrf_token(marketer, "/notes/"), "text": "call Anna"})
    assert done.status_code == 302
    assert admin_page.NOTES == ["call Anna"]
    with db.engine.connect() as conn:
        entry = conn.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.details)).one()
    assert entry.actor == "admin:marketer@shop.example" and entry.action == "notes.added"


def test_a_plugin_page_post_without_its_csrf_token_is_refused(notes_app: Any) -> None:
    app, accounts, _ = notes_app
    marketer = signed_in(app, accounts["marketer"])
    answer = marketer.post("/notes/", data={"text": "no token"})
    assert answer.status_code == 400 and "токен безопасности отсутствует" in answer.get_data(as_text=True)
    assert marketer.post("/notes/", data={"text": "forged", "csrf_token": "forged"}).status_code == 400
    assert admin_page.NOTES == []


def test_a_plugin_page_gets_the_admin_security_headers(notes_app: Any) -> None:
    app, accounts, _ = notes_app
    answer = signed_in(app, accounts["viewer"]).get("/notes/")
    assert answer.headers["X-Frame-Options"] == "DENY" and "script-src 'self'" in answer.headers[
        "Content-Security-Policy"]
    assert answer.headers["Cache-Control"] == "no-store"


def test_a_plugin_view_without_a_policy_is_refused(notes_app: Any) -> None:
    app, accounts, _ = notes_app
    assert access.policy_of(app, "notes.forgotten") is None
    for role in ROLES:
        assert signed_in(app, accounts[role]).get("/notes/forgotten").status_code == 403


def test_the_menu_holds_registered_pages_for_the_roles_that_may_open_them(notes_app: Any) -> None:
    app, accounts, _ = notes_app
    for role in ROLES:
        links = menu(signed_in(app, accounts[role]))
        assert "/notes/" in links, role
        assert ("/users/" in links) == (role == "admin"), role
        assert "/notes-feed/" not in links  # served (public), but not registered as an admin page
        assert "/workflows/" not in links and "/gdpr/" not in links  # their plugins are not loaded
    assert signed_in(app, None).get("/notes-feed/").get_json() == {"notes": []}  # a public route stays public
    admin = signed_in(app, accounts["admin"])
    for path in ("/workflows/", "/workflows/reactivation_90d", "/gdpr/"):  # pages of plugins not loaded: not served
        assert admin.get(path).status_code == 404, path
    # In the page order: the core's Templates (50) before Notes (55) before Connections (60).
    links = menu(signed_in(app, accounts["viewer"]))
    assert links.index("/templates/") < links.index("/notes/") < links.index("/connections/")


def test_a_page_adds_a_section_to_the_contact_card_for_those_who_may_read_it(notes_app: Any) -> None:
    app, accounts, db = notes_app
    from hub import sync
    from hub.records import ContactRecord

    with db.engine.begin() as conn:
        sync.write_page(conn, [ContactRecord(source="import:t.csv", first_name="Анна", emails=["anna@example.ru"])],
                        db.settings, sync.Counts())
        contact_id = conn.exec_driver_sql("SELECT id FROM contacts").scalar_one()
    card = signed_in(app, accounts["admin"]).get(f"/contacts/{contact_id}").get_data(as_text=True)
    assert f'<p id="pinned-note">Pinned for #{contact_id}: call back</p>' in card
    card = signed_in(app, accounts["marketer"]).get(f"/contacts/{contact_id}").get_data(as_text=True)
    assert "pinned-note" not in card and "Анна" in card
    assert "/pinned/" not in menu(signed_in(app, accounts["admin"]))  # in_menu=False


def test_menu_titles_follow_the_language_setting(notes_app: Any) -> None:
    app, accounts, db = notes_app
    nav = re.search(r"<nav.*?</nav>", signed_in(app, accounts["viewer"]).get("/").get_data(as_text=True), re.S)
    assert nav and "Заметки" in nav.group(0) and "Контакты" in nav.group(0) and "✎" in nav.group(0)
    english = create_app(replace(db.settings, language="en"))
    nav = re.search(r"<nav.*?</nav>", signed_in(english, accounts["viewer"]).get("/").get_data(as_text=True), re.S)
    assert nav and "Notes" in nav.group(0) and "Contacts" in nav.group(0) and "Заметки" not in nav.group(0)
    only_english = AdminPage(Blueprint("x", __name__), "x.index", {"en": "Only English"})
    assert only_english.title_in("ru") == "Only English"


def test_a_page_is_refused_when_it_is_not_what_it_says() -> None:
    with pytest.raises(ValueError, match="not a view of blueprint"):
        AdminPage(Blueprint("a", __name__), "b.index", {"en": "A"})
    with pytest.raises(ValueError, match="unknown role"):
        AdminPage(Blueprint("a", __name__), "a.index", {"en": "A"}, read_role="editor")
    with pytest.raises(ValueError, match="give a title"):
        AdminPage(Blueprint("a", __name__), "a.index", {})


def test_a_page_naming_a_view_its_blueprint_lacks_is_refused(hub_db: HubDB) -> None:
    from hub.hookspecs import hookimpl

    class Typo:
        @hookimpl
        def register_admin_pages(self, register: Any) -> None:
            register(AdminPage(Blueprint("typo", __name__), "typo.index", {"en": "Typo"}))

    pm = plugins.build(replace(hub_db.settings, plugins=()))
    pm.register(Typo(), name="typo")
    plugins.use(pm)
    with pytest.raises(ValueError, match="admin page 'typo.index': blueprint 'typo' has no such view"):
        create_app(hub_db.settings)


def test_two_pages_on_one_blueprint_name_are_refused(hub_db: HubDB) -> None:
    from hub.hookspecs import hookimpl

    class Again:
        @hookimpl
        def register_admin_pages(self, register: Any) -> None:
            register(admin_page.PAGE)

    pm = plugins.build(replace(hub_db.settings, plugins=()))
    pm.register(admin_page, name="admin_page")
    pm.register(Again(), name="again")
    with pytest.raises(ValueError, match="two admin pages use the blueprint name 'notes'"):
        collect(pm)


OUTER = Blueprint("outer", __name__, url_prefix="/outer", static_folder="plugins/admin_page_static",
                  static_url_path="/assets")
INNER = Blueprint("inner", __name__, url_prefix="/inner")
INNER_CALLS: list[str] = []


@OUTER.get("/")
@access.allow(read="admin")
def outer_index() -> str:
    return "outer"


@INNER.route("/", methods=["GET", "POST"])
@access.allow(read="admin", write="admin")
def inner_secret() -> str:
    INNER_CALLS.append("called")
    return "inner secret"


OUTER.register_blueprint(INNER)


class NestedPage:
    @staticmethod
    @hookimpl
    def register_admin_pages(register: Any) -> None:
        register(AdminPage(OUTER, "outer.outer_index", {"en": "Outer"}, read_role="admin", write_role="admin"))


def test_a_blueprint_nested_in_an_admin_page_is_guarded_like_the_page(hub_db: HubDB) -> None:
    settings = replace(hub_db.settings, plugins=("mailing",))
    pm = plugins.build(settings)
    pm.register(NestedPage, name="nested_page")
    plugins.use(pm)
    with hub_db.engine.begin() as conn:
        accounts = {role: users.add(conn, f"{role}@shop.example", role, PASSWORD) for role in ROLES}
    app = create_app(settings)
    INNER_CALLS.clear()
    anonymous = app.test_client()
    assert anonymous.get("/outer/inner/").status_code == 302  # to sign-in, as the page itself
    assert anonymous.post("/outer/inner/").status_code in (400, 401)
    viewer = signed_in(app, accounts["viewer"])
    assert viewer.get("/outer/inner/").status_code == 403
    admin = signed_in(app, accounts["admin"])
    assert admin.post("/outer/inner/").status_code == 400  # no CSRF token: the global check holds
    shown = admin.get("/outer/inner/")
    assert shown.status_code == 200 and "Content-Security-Policy" in shown.headers
    assert INNER_CALLS == ["called"]  # only the admin's GET reached the view
    # The page's own static files (CSS, JS) are served, as the core's are: the CSP allows no inline script.
    assert anonymous.get("/outer/assets/page.css").status_code == 200
