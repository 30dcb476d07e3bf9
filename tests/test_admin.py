"""The admin through Flask's test client: roles on every route, CSRF, sign-in limits, and each page.

The browser tests (test_admin_browser.py) walk the same flows in headless
Chromium; both use the fixtures in tests/support/admin.py.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select

from hub import plugins, queue, users
from hub.admin import access, create_app
from hub.admin.registry import stricter
from hub.db import utcnow
from hub.models import AuditEntry, ContactMerge, MessageTemplate, Segment, SyncRun
from tests.conftest import HubDB
from tests.support.admin import PASSWORD, ROLES, AdminEnv, client_as, csrf_token, login, plain, post, sign_in, text


# --- access: every route, every role ------------------------------------------------------

def admin_rules(app: Flask) -> list[Any]:
    own = app.config[access.ADMIN_BLUEPRINTS]
    # A page's own static files (its scripts) are served to anyone, like the core's: access.enforce lets them by.
    return [r for r in app.url_map.iter_rules() if r.endpoint.rpartition(".")[0] in own
            and r.endpoint.rpartition(".")[2] != "static"]


def sample_url(env: AdminEnv, rule: Any) -> str:
    blueprint = rule.endpoint.partition(".")[0]
    values: dict[str, Any] = {}
    for arg in rule.arguments:
        values[arg] = {
            "contact_id": env.ids["anna"],
            "merge_id": 999999,  # no such merge: refused with a flash, as a stale page would be
            "hook_id": 999999,  # no such webhook: a 404, as a stale page would be
            "message_id": 999999,  # no such message: a 404, as a stale link would be
            "user_id": env.users["leaver"].id,
            "source": "nosuch",
            "token": "nosuch",  # a preview frame nobody kept: a 404, as an expired one
            "number": 1,  # a template version that does not exist yet: a 404, or a flash for a restore
            "version": 1,  # a workflow's first version (of "x": no such workflow, a 404)
            "template": "nosuch",  # no such shipped workflow to copy: a 404
            "name": {"segments": "dormant_90d", "message_templates": "reactivation_email"}.get(blueprint, "x"),
        }[arg]
    with env.app.test_request_context():
        from flask import url_for

        return url_for(rule.endpoint, **values)


def test_every_admin_view_declares_who_may_use_it(admin_env: AdminEnv) -> None:
    missing = [r.endpoint for r in admin_rules(admin_env.app) if access.policy_of(admin_env.app, r.endpoint) is None]
    assert not missing, f"views without @allow(...): {missing}"
    assert len(admin_rules(admin_env.app)) >= 30


def test_every_route_with_every_role_and_without_login(admin_env: AdminEnv) -> None:
    env = admin_env
    checked = 0
    for rule in sorted(admin_rules(env.app), key=lambda r: r.rule):
        policy = access.policy_of(env.app, rule.endpoint)
        assert policy is not None
        page = env.app.config[access.ADMIN_BLUEPRINTS][rule.endpoint.rpartition(".")[0]]
        url = sample_url(env, rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            # The stricter of the view's @allow and its page's roles (the page's are a ceiling).
            need = (stricter(policy.read, page.read_role) if method == "GET"
                    else stricter(policy.write, page.write_role))
            for role in (None, *ROLES):
                client = client_as(env, role)
                if method == "GET":
                    answer = client.get(url)
                else:
                    token = csrf_token(client, "/login" if role is None else "/workflows/")
                    answer = client.post(url, data={"csrf_token": token})
                where = f"{method} {url} as {role or 'nobody'} (needs {need})"
                allowed = need == access.PUBLIC or (role is not None and need is not None
                                                    and users.RANK[role] >= users.RANK[need])
                if rule.endpoint == "health.status" and role is None:
                    assert answer.status_code == 401, where  # public route, its own check: a token
                elif allowed:
                    assert answer.status_code not in (401, 403, 500), f"{where}: {answer.status_code}"
                    if answer.status_code == 302:
                        assert not answer.location.startswith("/login?next="), f"{where}: sent to sign in"
                elif role is None and method == "GET":
                    assert answer.status_code == 302 and answer.location.startswith("/login?next="), where
                elif role is None:
                    assert answer.status_code == 401, f"{where}: {answer.status_code}"
                else:
                    assert answer.status_code == 403, f"{where}: {answer.status_code}"
                    assert "Ваша роль этого не позволяет" in text(answer)
                checked += 1
    assert checked > 100
    walked = {r.endpoint.rpartition(".")[0] for r in admin_rules(env.app)}
    assert {"workflows", "gdpr", "bitrix24_admin", "amocrm_admin"} <= walked  # plugins' pages are walked too


def test_a_viewer_changes_nothing(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    answers = [
        post(viewer, "/contacts/merge", {"survivor": admin_env.ids["petrov_1"], "other": admin_env.ids["petrov_2"]}),
        post(viewer, "/segments/save", {"document": "name: mine\nrule: {field: contact.city, op: eq, value: Тула}\n"}),
        post(viewer, "/templates/save", {"name": "mine", "channel": "sms", "text": "Привет"}),
        post(viewer, "/connections/bitrix24", {"webhook": "http://127.0.0.1:1/rest/1/abc/"}),
        post(viewer, "/users/", {"email": "new@shop.example", "role": "admin", "password": PASSWORD}),
    ]
    assert [a.status_code for a in answers] == [403] * 5
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ContactMerge)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(Segment)).scalar_one() == 0
        assert users.find(conn, "new@shop.example") is None
    page = text(viewer.get("/contacts/duplicates"))
    assert "Присоединить к №" not in page and 'class="merge"' not in page  # no buttons for what the role cannot do
    assert "Save segment" not in text(viewer.get("/segments/dormant_90d"))
    assert "Users" not in re.search(r"<nav.*?</nav>", text(viewer.get("/")), re.S).group(0)


# --- CSRF -----------------------------------------------------------------------------------

def test_a_form_posted_without_its_csrf_token_is_refused(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    ids = admin_env.ids
    answer = marketer.post("/contacts/merge", data={"survivor": ids["petrov_1"], "other": ids["petrov_2"]})
    assert answer.status_code == 400
    assert "токен безопасности отсутствует" in text(answer)
    forged = marketer.post("/contacts/merge", data={"survivor": ids["petrov_1"], "other": ids["petrov_2"],
                                                    "csrf_token": "forged"})
    assert forged.status_code == 400
    json_answer = marketer.post("/segments/check", json={"document": "name: x"})
    assert json_answer.status_code == 400 and "токен безопасности" in json_answer.get_json()["error"]
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ContactMerge)).scalar_one() == 0
    # The same form with its token goes through.
    ok = post(marketer, "/contacts/merge", {"survivor": ids["petrov_1"], "other": ids["petrov_2"]})
    assert ok.status_code == 302
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ContactMerge)).scalar_one() == 1


def test_login_form_needs_its_csrf_token(admin_env: AdminEnv) -> None:
    client = admin_env.app.test_client()
    answer = client.post("/login", data={"email": "admin@shop.example", "password": PASSWORD})
    assert answer.status_code == 400 and "токен безопасности отсутствует" in text(answer)
    assert client.get("/").status_code == 302  # not signed in


# --- signing in ---------------------------------------------------------------------------

def test_sign_in_and_out(admin_env: AdminEnv) -> None:
    client = admin_env.app.test_client()
    assert client.get("/contacts/").location == "/login?next=/contacts/"
    wrong = login(client, "marketer@shop.example", "not the password")
    assert wrong.status_code == 401 and "Неверный email или пароль" in text(wrong)
    assert client.get("/").status_code == 302
    answer = client.post("/login", data={"email": "Marketer@Shop.example ", "password": PASSWORD,
                                         "csrf_token": csrf_token(client), "next": "/contacts/"})
    assert answer.status_code == 302 and answer.location == "/contacts/"
    assert client.get("/contacts/").status_code == 200
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    out = post(client, "/logout")
    assert out.status_code == 302 and client.get("/").status_code == 302
    with admin_env.engine.connect() as conn:
        actions = conn.execute(select(AuditEntry.action).where(AuditEntry.action.like("login%"))
                               .order_by(AuditEntry.id)).scalars().all()
    assert actions == ["login_failed", "login"]


def test_sign_in_page_warns_when_the_cookie_cannot_be_kept(admin_env: AdminEnv) -> None:
    client = admin_env.app.test_client()
    assert "cookie-warning" not in text(client.get("/login"))
    remote = text(client.get("/login", base_url="http://192.168.1.5:5000"))
    assert "браузер не сохранит вход" in remote and "192.168.1.5" in remote
    assert "cookie-warning" not in text(client.get("/login", base_url="https://hub.example.com"))


def test_sign_in_never_sends_you_to_another_site(admin_env: AdminEnv) -> None:
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        client = admin_env.app.test_client()
        answer = client.post("/login", data={"email": "viewer@shop.example", "password": PASSWORD,
                                             "csrf_token": csrf_token(client), "next": target})
        assert answer.status_code == 302 and answer.location == "/", target


def test_sign_in_attempts_are_limited_per_account(admin_env: AdminEnv) -> None:
    client = admin_env.app.test_client()
    for _ in range(users.MAX_FAILURES_PER_ACCOUNT):
        assert login(client, "admin@shop.example", "guess").status_code == 401
    refused = login(client, "admin@shop.example", PASSWORD)
    assert refused.status_code == 401 and "Слишком много неудачных попыток входа в эту учётную запись" in text(refused)
    assert client.get("/").status_code == 302
    other = admin_env.app.test_client()
    assert login(other, "viewer@shop.example", PASSWORD).status_code == 302  # other accounts still sign in
    # Once the window has passed, the right password works again.
    later = utcnow() + users.WINDOW + dt.timedelta(seconds=1)
    assert users.authenticate(admin_env.engine, "admin@shop.example", PASSWORD, address="127.0.0.1",
                              now=later).role == "admin"


def test_sign_in_attempts_are_limited_per_address(admin_env: AdminEnv) -> None:
    client = admin_env.app.test_client()
    for n in range(users.MAX_FAILURES_PER_ADDRESS):
        login(client, f"nobody{n}@shop.example", "guess", REMOTE_ADDR="10.1.2.3")
    refused = login(client, "viewer@shop.example", PASSWORD, REMOTE_ADDR="10.1.2.3")
    assert "Слишком много неудачных попыток входа с вашего адреса" in text(refused)
    assert login(admin_env.app.test_client(), "viewer@shop.example", PASSWORD,
                 REMOTE_ADDR="10.9.9.9").status_code == 302


def test_switching_a_user_off_ends_their_session(admin_env: AdminEnv) -> None:
    leaver = admin_env.app.test_client()
    assert login(leaver, "leaver@shop.example", PASSWORD).status_code == 302
    assert leaver.get("/contacts/").status_code == 200
    admin = client_as(admin_env, "admin")
    answer = post(admin, f"/users/{admin_env.users['leaver'].id}/active", follow_redirects=True)
    assert "leaver@shop.example больше не может входить" in text(answer)
    assert leaver.get("/contacts/").status_code == 302
    assert login(admin_env.app.test_client(), "leaver@shop.example", PASSWORD).status_code == 401


def test_a_new_password_ends_other_sessions(admin_env: AdminEnv) -> None:
    old = admin_env.app.test_client()
    assert login(old, "viewer@shop.example", PASSWORD).status_code == 302
    with admin_env.engine.begin() as conn:
        users.set_password(conn, admin_env.users["viewer"].id, "another long password 42")
    assert old.get("/").status_code == 302


def test_users_page_adds_and_changes_users(admin_env: AdminEnv) -> None:
    admin = client_as(admin_env, "admin")
    weak = post(admin, "/users/", {"email": "new@shop.example", "role": "marketer", "password": "short"},
                follow_redirects=True)
    assert "слишком короткий" in text(weak)
    bad = post(admin, "/users/", {"email": "not-an-email", "role": "marketer", "password": PASSWORD},
               follow_redirects=True)
    assert "не адрес email" in plain(bad)
    added = post(admin, "/users/", {"email": "New@Shop.example", "role": "marketer", "password": PASSWORD},
                 follow_redirects=True)
    assert "Добавлен new@shop.example с ролью «Маркетолог»" in plain(added)
    new_id = next(u.id for u in users.all_users(admin_env.engine.connect()) if u.email == "new@shop.example")
    changed = post(admin, f"/users/{new_id}/role", {"role": "viewer"}, follow_redirects=True)
    assert "new@shop.example теперь: Наблюдатель" in text(changed)
    self_off = post(admin, f"/users/{admin_env.users['admin'].id}/active", follow_redirects=True)
    assert "нельзя отключить собственный доступ" in text(self_off)
    last_admin = post(admin, f"/users/{admin_env.users['admin'].id}/role", {"role": "viewer"}, follow_redirects=True)
    assert "единственный активный администратор" in text(last_admin)
    audit = text(admin.get("/users/audit"))
    assert "user_added" in audit and "user_role_changed" in audit and PASSWORD not in audit


# --- contacts -----------------------------------------------------------------------------

@pytest.mark.both_databases  # LIKE and case differ by dialect
@pytest.mark.parametrize("typed", ["8 (916) 123-45-67", "+7 916 1234567", "9161234567", "89161234567",
                                   "123-45-67", "anna@example.ru", "ANNA@example.RU", "иванова", "Иванова Анна",
                                   "#ID"])
def test_find_a_contact_by_what_people_type(admin_env: AdminEnv, typed: str) -> None:
    typed = typed.replace("ID", str(admin_env.ids["anna"]))
    page = text(client_as(admin_env, "viewer").get("/contacts/", query_string={"q": typed}))
    assert "1 контакт по запросу" in page, typed
    assert 'href="tel:+79161234567"' in page and "+7 916 123-45-67" in page and "Иванова" in page


@pytest.mark.both_databases  # LIKE's wildcards and escapes differ by dialect
def test_search_finds_nobody_for_a_stranger_and_escapes_wildcards(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    assert "Никого не нашлось" in text(viewer.get("/contacts/", query_string={"q": "8 (999) 000-00-00"}))
    assert "Никого не нашлось" in text(viewer.get("/contacts/", query_string={"q": "%"}))
    assert "Никого не нашлось" in text(viewer.get("/contacts/", query_string={"q": "_@%"}))


def test_contact_card_shows_where_everything_came_from(admin_env: AdminEnv) -> None:
    page = text(client_as(admin_env, "viewer").get(f"/contacts/{admin_env.ids['anna']}"))
    for expected in ("+79161234567", "8 (916) 123-45-67", "bitrix24", "anna@example.ru", "Anna@Example.ru",
                     "Зимняя куртка", "paper form", "дано", "№17", "Неактивные", 'data-stage="inactive"'):
        assert expected in page, expected
    assert 'id="workflow-runs"' in page  # what the workflows plugin adds to the card


def test_names_are_escaped_everywhere(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    for path in (f"/contacts/{admin_env.ids['markup']}", "/contacts/?q=Хакер"):
        page = text(viewer.get(path))
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    headers = viewer.get("/").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"


def test_duplicates_are_suggested_and_merged_by_a_marketer(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    ids = admin_env.ids
    page = text(marketer.get("/contacts/duplicates"))
    assert "Петров Пётр" in page and "тот же город" in page and f"Присоединить к №{ids['petrov_1']}" in page
    answer = post(marketer, "/contacts/merge", {"survivor": ids["petrov_1"], "other": ids["petrov_2"]},
                  follow_redirects=True)
    card = text(answer)
    assert f"Контакт #{ids['petrov_2']} объединён с #{ids['petrov_1']}" in card
    assert 'href="tel:+74952223344"' in card and "объединено вручную" in card and ">marketer@shop.example<" in card
    gone = marketer.get(f"/contacts/{ids['petrov_2']}")
    assert gone.status_code == 302 and gone.location == f"/contacts/{ids['petrov_1']}"
    again = post(marketer, "/contacts/merge", {"survivor": ids["petrov_1"], "other": ids["petrov_2"]},
                 follow_redirects=True)
    assert f"нет контакта с id {ids['petrov_2']}" in text(again)
    away = post(marketer, "/contacts/merge", {"survivor": ids["anna"], "other": ids["anna"], "back": "/\\evil.example"})
    assert away.location == "/contacts/duplicates"
    itself = post(marketer, "/contacts/merge", {"survivor": ids["anna"], "other": ids["anna"]}, follow_redirects=True)
    assert "нельзя объединить с самим собой" in text(itself)


# --- segments -----------------------------------------------------------------------------

def test_segment_check_names_the_typo_and_counts_a_good_rule(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    token = csrf_token(marketer, "/segments/new")
    typo = marketer.post("/segments/check", headers={"X-CSRFToken": token}, json={
        "document": "name: moscow\nrule: {field: contact.city, op: eqq, value: Москва}\n"})
    problems = typo.get_json()["problems"]
    assert typo.get_json()["ok"] is False and any("rule.op" in p and "eqq" in p for p in problems), problems
    unknown = marketer.post("/segments/check", headers={"X-CSRFToken": token}, json={
        "document": "name: moscow\nrule: {field: contact.cty, op: eq, value: Москва}\n"}).get_json()
    assert any("может быть, 'contact.city'" in p for p in unknown["problems"]), unknown
    broken = marketer.post("/segments/check", headers={"X-CSRFToken": token},
                           json={"document": "name: [unclosed\n"}).get_json()
    assert "не корректный YAML" in broken["problems"][0] and "строке" in broken["problems"][0]
    good = marketer.post("/segments/check", headers={"X-CSRFToken": token}, json={
        "document": "name: moscow\nrule: {field: contact.city, op: eq, value: Москва}\n"}).get_json()
    assert good == {"ok": True, "problems": [], "name": "moscow", "count": 1, "summary": "1 контакт подходит сейчас"}


def test_segment_saved_listed_explained_and_removed(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    bad = post(marketer, "/segments/save", {"document": "name: tula\nrule: {field: contact.city, op: eq}\n"})
    assert bad.status_code == 400 and "rule" in text(bad)
    saved = post(marketer, "/segments/save", {"document": "name: tula\ntitle: Из Тулы\n"
                                                          "rule: {field: contact.city, op: eq, value: Тула}\n"},
                 follow_redirects=True)
    assert "Сегмент tula сохранён: сейчас под него подходят 2 контакта." in text(saved)
    listing = text(marketer.get("/segments/"))
    assert "tula" in listing and "Из Тулы" in listing and "dormant_90d" in listing
    explained = text(marketer.get("/segments/tula/explain", query_string={"contact": admin_env.ids["anna"]}))
    assert "не входит в сегмент" in explained and "Москва" in explained
    inside = text(marketer.get("/segments/tula/explain", query_string={"contact": admin_env.ids["petrov_1"]}))
    assert "<strong>входит в сегмент" in inside
    assert "не номер контакта" in text(marketer.get("/segments/tula/explain", query_string={"contact": "x"}))
    builtin = post(marketer, "/segments/save", {"document": "name: dormant_90d\nrule: {field: contact.city, op: eq, "
                                                            "value: Тула}\n"})
    assert "встроенный сегмент" in text(builtin)
    removed = post(marketer, "/segments/tula/delete", follow_redirects=True)
    assert "Сегмент tula удалён." in text(removed)


def test_segment_copy_starts_from_the_builtin(admin_env: AdminEnv) -> None:
    page = text(client_as(admin_env, "marketer").get("/segments/new", query_string={"copy": "dormant_90d"}))
    assert "name: my_dormant_90d" in page and "orders.last_at" in page


# --- templates ----------------------------------------------------------------------------

def test_template_preview_against_a_chosen_contact(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    page = text(viewer.get("/templates/reactivation_email", query_string={"contact": admin_env.ids["anna"]}))
    assert "Здравствуйте, Анна!" in page and f"контакта №{admin_env.ids['anna']}" in page
    sample = text(viewer.get("/templates/reactivation_email"))
    assert "образца контакта" in sample
    missing = text(viewer.get("/templates/reactivation_email", query_string={"contact": 999999}))
    assert "нет контакта" in missing and "999999" in missing
    assert viewer.get("/templates/nope").status_code == 404


def test_template_edit_preview_and_save(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    token = csrf_token(marketer, "/templates/new")
    preview = marketer.post("/templates/preview", data={
        "csrf_token": token, "name": "hello_sms", "channel": "sms", "text": "Привет, {{ contact.first_name }}!",
        "contact": admin_env.ids["markup"]}).get_json()
    assert preview["text"] == "Привет, <script>alert(1)</script>!" and preview["sms_parts"] == 1
    html = marketer.post("/templates/preview", data={
        "csrf_token": token, "name": "hello", "channel": "email", "subject": "Hi", "text": "x",
        "html": "<p>{{ contact.first_name }}</p>", "contact": admin_env.ids["markup"]}).get_json()
    assert html["html"] == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    typo = marketer.post("/templates/preview", data={
        "csrf_token": token, "name": "hello_sms", "channel": "sms", "text": "Привет, {{ contact.frist_name }}!"})
    assert "frist_name" in typo.get_json()["error"]
    refused = post(marketer, "/templates/save", {"name": "hello_sms", "channel": "sms",
                                                 "text": "Привет, {{ contact.frist_name }}!"})
    assert refused.status_code == 400 and "frist_name" in text(refused)
    saved = post(marketer, "/templates/save", {"name": "hello_sms", "channel": "sms",
                                               "text": "Привет, {{ contact.first_name }}!"}, follow_redirects=True)
    assert "Шаблон hello_sms сохранён" in text(saved)
    assert "изменён здесь" in text(marketer.get("/templates/"))


def test_a_refused_edit_stays_on_the_templates_page_with_the_text_kept(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    page = text(marketer.get("/templates/welcome_email"))
    assert 'name="editing" value="welcome_email"' in page
    subject = re.search(r'name="subject"[^>]*value="([^"]*)"', page)
    assert subject
    broken = "Спасибо, что вы с нами {{ broken"
    refused = post(marketer, "/templates/save", {"editing": "welcome_email", "name": "welcome_email",
                                                 "channel": "email", "subject": plain_value(subject.group(1)),
                                                 "text": broken})
    answer = plain(refused)
    assert refused.status_code == 400
    heading = re.search(r"<h1>(.*?)</h1>", page, re.S)
    assert heading and "Приветственное письмо" in heading.group(1)
    assert heading.group(0) in refused.get_data(as_text=True) and "Новый шаблон" not in answer
    assert 'name="editing" value="welcome_email"' in answer and broken in answer  # the typed text is kept
    assert "welcome_email, text, строка 1: шаблон обрывается: не хватает «}}»" in answer
    assert "unexpected end of template" not in answer
    with admin_env.engine.connect() as conn:  # nothing was saved
        assert conn.execute(select(func.count()).select_from(MessageTemplate)).scalar() == 0


def plain_value(attribute: str) -> str:
    import html

    return html.unescape(attribute)


# --- connections --------------------------------------------------------------------------

def test_connect_bitrix24_by_webhook_and_sync_now(admin_env: AdminEnv) -> None:
    from plugins.bitrix24.sandbox import Portal, SandboxServer

    admin = client_as(admin_env, "admin")
    wrong = post(admin, "/connections/bitrix24", {"webhook": "https://portal.bitrix24.ru/api/x"},
                 follow_redirects=True)
    assert "должен выглядеть так: https://portal.bitrix24.ru/rest/ID_ПОЛЬЗОВАТЕЛЯ/КОД/" in text(wrong)
    with SandboxServer(Portal(contacts=5, seed=3)) as server:
        refused = post(admin, "/connections/bitrix24", {"webhook": server.base_url + "/rest/1/wrongcode/"},
                       follow_redirects=True)
        assert "Битрикс24 отклонил подключение" in text(refused)
        assert "wrongcode" not in text(refused)
        answer = post(admin, "/connections/bitrix24", {"webhook": server.webhook_url}, follow_redirects=True)
        page = text(answer)
        assert "Подключено к Битрикс24 127.0.0.1" in page and "способ: входящий вебхук" in page
        assert 'href="/connections/bitrix24"' in text(admin.get("/connections/"))  # the source's own page
        code = server.webhook_url.rstrip("/").rpartition("/")[2]
        assert code not in page
        started = post(admin, "/connections/bitrix24/sync", {"full": "y"}, follow_redirects=True)
        assert "Полная синхронизация Битрикс24 запущена" in text(started)
        queue.drain(timeout=120)
    with admin_env.engine.connect() as conn:
        run = conn.execute(select(SyncRun.__table__).order_by(SyncRun.id.desc())).first()
    assert run is not None and run.source == "bitrix24" and run.status == "ok"
    history = text(admin.get("/connections/"))
    assert "новых: 5" in history
    dashboard = text(admin.get("/"))
    assert "bitrix24" in dashboard and "полная синхронизация" in dashboard


def continue_link(page: Any) -> str:
    found = re.search(r'id="amocrm-continue" href="([^"]+)"', text(page))
    assert found, text(page)
    return found.group(1).replace("&amp;", "&")


def test_connect_amocrm_through_its_oauth_redirect(admin_env: AdminEnv) -> None:
    from plugins.amocrm.sandbox import Account, SandboxServer

    admin = client_as(admin_env, "admin")
    callback = "http://localhost/connections/amocrm/callback"
    with SandboxServer(Account(contacts=3, seed=5, redirect_uri=callback)) as server:
        page = text(admin.get("/connections/amocrm"))
        assert callback in page  # the redirect URI to register with the integration
        start = post(admin, "/connections/amocrm/authorize", {
            "base_url": server.base_url, "client_id": server.client_id, "client_secret": server.client_secret})
        assert start.status_code == 200
        link = continue_link(start)
        assert link.startswith(server.base_url + "/oauth?")
        query = parse_qs(urlsplit(link).query)
        assert query["client_id"] == [server.client_id] and query["mode"] == ["post_message"]
        assert server.client_secret not in text(start)
        back = requests.get(link, allow_redirects=False, timeout=10)
        assert back.status_code == 302 and back.headers["Location"].startswith(callback)
        returned = urlsplit(back.headers["Location"])
        forged = admin.get(f"{returned.path}?code=stolen&state=forged", follow_redirects=True)
        assert "эта ссылка для входа не та, что выдал Hub" in text(forged)
        # The forged call used the pending request up; start again and finish properly.
        start = post(admin, "/connections/amocrm/authorize", {
            "base_url": server.base_url, "client_id": server.client_id, "client_secret": server.client_secret})
        back = requests.get(continue_link(start), allow_redirects=False, timeout=10)
        returned = urlsplit(back.headers["Location"])
        done = admin.get(f"{returned.path}?{returned.query}", follow_redirects=True)
        page = text(done)
        assert "Подключено к аккаунту amoCRM" in page and "обновляются автоматически" in page
        assert server.client_secret not in page and "access_token" not in page
        replay = admin.get(f"{returned.path}?{returned.query}", follow_redirects=True)
        assert "эта ссылка для входа не та, что выдал Hub" in text(replay)
        from plugins.amocrm import tokens

        stored, _ = tokens.load(admin_env.engine, admin_env.settings)
        assert stored["kind"] == "oauth" and stored["base_url"] == server.base_url
        assert stored["redirect_uri"] == callback


def test_amocrm_authorize_url_for_real_accounts() -> None:
    from plugins.amocrm.admin import authorize_url

    url = authorize_url("https://shop.amocrm.ru", "abc", "s1")
    assert url == "https://www.amocrm.ru/oauth?client_id=abc&state=s1&mode=post_message"
    assert authorize_url("https://shop.kommo.com", "abc", "s1").startswith("https://www.kommo.com/oauth?")
    assert authorize_url("http://127.0.0.1:8025", "abc", "s1").startswith("http://127.0.0.1:8025/oauth?")
    # A look-alike host is not amoCRM: its consent page is its own (the callback trusts the same check).
    assert authorize_url("https://evilamocrm.ru", "abc", "s1").startswith("https://evilamocrm.ru/oauth?")


def test_amocrm_declined_stores_nothing(admin_env: AdminEnv) -> None:
    admin = client_as(admin_env, "admin")
    post(admin, "/connections/amocrm/authorize", {"base_url": "http://127.0.0.1:9", "client_id": "id",
                                                  "client_secret": "secret"})
    declined = admin.get("/connections/amocrm/callback?error=access_denied&state=x", follow_redirects=True)
    assert "amoCRM не предоставил доступ" in text(declined)
    with admin_env.engine.connect() as conn:
        from hub.models import Credential

        assert conn.execute(select(func.count()).select_from(Credential)).scalar_one() == 0


# --- dashboard, GDPR, health, workflows seam ----------------------------------------------

def test_dashboard_shows_the_base_and_what_feeds_it(admin_env: AdminEnv) -> None:
    with admin_env.engine.begin() as conn:
        conn.execute(SyncRun.__table__.insert().values(source="amocrm", kind="incremental", status="failed",
                                                       counts={}, errors=[], error="amoCRM blocked the account",
                                                       started_at=utcnow(), finished_at=utcnow()))
    page = text(client_as(admin_env, "viewer").get("/"))
    assert 'id="base-size">4<' in page
    chart = re.search(r'id="lifecycle-chart-data">(.*?)</script>', page, re.S).group(1)
    assert '"values": [3, 0, 0, 0, 1, 0]' in chart.replace("\n", "") or '"values":[3,0,0,0,1,0]' in chart
    assert "amoCRM blocked the account" in page
    assert "Redis не настроен" in page and "На этой неделе сообщений нет" in page


def test_gdpr_page_shows_the_consent_log(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    page = text(viewer.get("/gdpr/"))
    assert "paper form" in page and "Иванова Анна" in page
    assert "Nothing" not in page
    filtered = text(viewer.get("/gdpr/", query_string={"status": "withdrawn"}))
    assert "Записей о согласиях нет" in filtered and "Журнал согласий" in filtered
    assert "— не один из" in text(viewer.get("/gdpr/", query_string={"channel": "pigeon"}))
    post(viewer, "/language", {"language": "en"})  # a viewer who reads English
    assert "No consent events" in text(viewer.get("/gdpr/", query_string={"status": "withdrawn"}))
    assert "is not one of" in text(viewer.get("/gdpr/", query_string={"channel": "pigeon"}))


def test_gdpr_export_and_erase_a_person(admin_env: AdminEnv) -> None:
    import json

    admin = client_as(admin_env, "admin")
    anna = admin_env.ids["anna"]
    assert "выгрузить или удалить" in text(admin.get("/gdpr/"))
    assert "выгрузить или удалить" not in text(client_as(admin_env, "marketer").get("/gdpr/"))
    page = text(admin.get("/gdpr/person", query_string={"contact": anna}))
    assert "Скачать выгрузку" in page and "Удалить этого человека" in page
    assert "не номер контакта" in text(admin.get("/gdpr/person", query_string={"contact": "abc"},
                                                 follow_redirects=True))
    assert "Контакта с номером 999999 нет" in text(admin.get("/gdpr/person", query_string={"contact": 999999},
                                                             follow_redirects=True))
    exported = post(admin, f"/gdpr/person/{anna}/export")
    assert exported.status_code == 200
    assert exported.headers["Content-Disposition"] == f'attachment; filename="contact-{anna}-export.json"'
    data = json.loads(exported.get_data(as_text=True))
    assert "+79161234567" in json.dumps(data, ensure_ascii=False) and "paper form" in json.dumps(data,
                                                                                                ensure_ascii=False)
    unconfirmed = post(admin, f"/gdpr/person/{anna}/erase", {"confirm": "erase"}, follow_redirects=True)
    assert "введите ERASE заглавными буквами" in text(unconfirmed)
    assert "+79161234567" in text(admin.get(f"/contacts/{anna}"))
    post(admin, "/language", {"language": "en"})  # an admin who reads English
    assert "type ERASE in capitals" in text(post(admin, f"/gdpr/person/{anna}/erase", {"confirm": "erase"},
                                                 follow_redirects=True))
    erased = post(admin, f"/gdpr/person/{anna}/erase", {"confirm": "ERASE"}, follow_redirects=True)
    assert f"Erased contact #{anna}" in text(erased) and "has been erased" in text(erased)
    assert "+79161234567" not in text(admin.get("/contacts/", query_string={"q": "8 916 123-45-67"}))
    audit = text(admin.get("/users/audit"))
    assert "gdpr.export" in audit and "gdpr.erase" in audit
    assert "admin@shop.example" in audit and "admin:admin@" not in audit  # the person, not how the log keys them


def park_a_run(env: AdminEnv, workflow: str = "reactivation_90d") -> int:
    """A run of Anna's parked at step 6 (as if a CRM call's answer was lost)."""
    from workflows.models import WorkflowRow, WorkflowRun

    with env.engine.connect() as conn:
        workflow_id, version = conn.execute(select(WorkflowRow.id, WorkflowRow.version)
                                            .where(WorkflowRow.name == workflow)).one()
    with env.engine.begin() as conn:
        return conn.execute(WorkflowRun.__table__.insert().returning(WorkflowRun.id).values(
            workflow_id=workflow_id, version=version, contact_id=env.ids["anna"], cycle=1, holdout=False,
            status="parked", step=5, error="crm_task: the CRM's answer was lost; check the task in the CRM",
            trigger="segment:dormant_90d", context={}, started_at=utcnow(), updated_at=utcnow())).scalar_one()


def test_workflows_list_and_switch_on_and_off(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    page = text(viewer.get("/workflows/"))
    assert "reactivation_90d" in page and "segment dormant_90d" in page and "Включить" not in page
    assert "Вернуть клиентов, которые не покупали 90 дней" in page and "вход в сегмент «Не покупали 90 дней" in page
    marketer = client_as(admin_env, "marketer")
    assert "Включить" in text(marketer.get("/workflows/"))
    asked = post(marketer, "/workflows/reactivation_90d/enabled", {"enabled": "1"}, follow_redirects=True)
    assert "Включение сначала спрашивает" in text(asked)  # no confirmed numbers: the confirmation page
    expected = re.search(r'name="expected" value="(\d+)"', marketer.get("/workflows/reactivation_90d/enable")
                         .get_data(as_text=True)).group(1)
    on = post(marketer, "/workflows/reactivation_90d/enabled", {"enabled": "1", "expected": expected},
              follow_redirects=True)
    assert "Сценарий «Вернуть клиентов, которые не покупали 90 дней» включён" in text(on)  # by its title
    from workflows.models import WorkflowRow

    with admin_env.engine.connect() as conn:
        assert conn.execute(select(WorkflowRow.enabled).where(WorkflowRow.name == "reactivation_90d")).scalar_one()
    off = post(marketer, "/workflows/reactivation_90d/enabled", {"enabled": "0"}, follow_redirects=True)
    assert "Сценарий «Вернуть клиентов, которые не покупали 90 дней» выключен" in text(off)
    post(marketer, "/language", {"language": "en"})  # the marketer reads English; the names follow
    english = text(marketer.get("/workflows/"))
    assert "Win back customers who have not bought for 90 days" in english
    assert "entering the segment “Dormant for 90 days" in english
    assert "Switch on" in english and "reactivation_90d" in english
    unknown = post(marketer, "/workflows/reactivaton_90d/enabled", {"enabled": "1", "expected": "0"},
                   follow_redirects=True)
    assert "did you mean 'reactivation_90d'" in plain(unknown)


def test_workflow_dry_run_forecast(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")  # a forecast changes nothing, so anyone may run one
    page = text(viewer.get("/workflows/reactivation_90d/forecast", query_string={"days": 14}))
    assert "Ничего не записано и ничего не отправлено" in page
    assert "Промокод 15\u00a0% на 14 дней" in page and "Отправить письмо: reactivation_email" in page  # the step
    started = int(re.search(r'id="would-start">(\d+)<', page).group(1))
    held = int(re.search(r"Контрольная группа <strong>(\d+)<", page).group(1))
    assert started + held == 1  # Anna: bought before, nothing for 90 days, email allowed
    with admin_env.engine.connect() as conn:
        from workflows.models import WorkflowRun

        assert conn.execute(select(func.count()).select_from(WorkflowRun)).scalar_one() == 0
    wrong = viewer.get("/workflows/reactivation_90d/forecast", query_string={"days": "a week"},
                       follow_redirects=True)
    assert "'a week' — не целое число от 1 до 90" in plain(wrong)
    assert viewer.get("/workflows/nope/forecast").status_code == 404


def test_workflow_funnel_and_parked_runs(admin_env: AdminEnv) -> None:
    client_as(admin_env, "viewer").get("/workflows/")  # installs the shipped workflows
    run_id = park_a_run(admin_env)
    viewer = client_as(admin_env, "viewer")
    page = text(viewer.get("/workflows/reactivation_90d"))
    assert 'id="funnel-chart"' in page and "Конверсия и прирост относительно контрольной группы" in page
    assert "пока не измерить" in page and "the CRM&#39;s answer was lost" in page
    assert "Задача в CRM" in page and "crm_task" in page  # a step kind's name first, the technical one beside it
    assert "Задача в CRM со сроком 2 дня" in page and "Промокод 15\u00a0% на 14 дней" in page
    assert 'вход в сегмент «Не покупали 90 дней, письма разрешены» (<code translate="no">dormant_90d</code>)' in page
    assert "заказ в течение 30 дней" in page and "30d<" not in page  # the goal's window as people say it
    assert "Повторить шаг" not in page
    card = text(viewer.get(f"/contacts/{admin_env.ids['anna']}"))
    assert "reactivation_90d" in card or "Вернуть клиентов" in card
    marketer = client_as(admin_env, "marketer")
    retried = post(marketer, "/workflows/reactivation_90d/retry", {"run": run_id}, follow_redirects=True)
    assert f"Запуск №{run_id} снова в работе" in text(retried) and "Остановленных запусков нет" in text(retried)
    again = post(marketer, "/workflows/reactivation_90d/retry", {"run": run_id}, follow_redirects=True)
    assert "не остановлен" in text(again)
    assert viewer.get("/workflows/nope").status_code == 404


def test_pages_of_plugins_not_loaded_are_neither_served_nor_in_the_menu(admin_env: AdminEnv) -> None:
    plugins.use(plugins.build(replace(admin_env.settings, plugins=("mailing",))))
    app = create_app(admin_env.settings)
    admin = sign_in(app.test_client(), admin_env.users["admin"])
    nav = re.search(r"<nav.*?</nav>", text(admin.get("/")), re.S).group(0)
    assert "/workflows/" not in nav and "/gdpr/" not in nav and "/contacts/" in nav
    for path in ("/workflows/", "/workflows/reactivation_90d", "/gdpr/", "/connections/bitrix24"):
        assert admin.get(path).status_code == 404, path
    card = text(admin.get(f"/contacts/{admin_env.ids['anna']}"))
    assert "Anna@Example.ru".lower() in card.lower() and 'id="workflow-runs"' not in card


def test_healthz_and_status(admin_env: AdminEnv) -> None:
    anonymous = admin_env.app.test_client()
    health = anonymous.get("/healthz")
    assert health.status_code == 200 and health.get_json() == {"status": "ok", "checks": {"database": "ok"}}
    assert anonymous.get("/status.json").status_code == 401
    status = client_as(admin_env, "viewer").get("/status.json").get_json()
    assert status["contacts"] == 4 and status["queue"] == {"mode": "in-process"}
    assert {s["source"] for s in status["syncs"]} == {"amocrm", "bitrix24"}


def test_status_with_a_monitoring_token(hub_db: HubDB) -> None:
    settings = replace(hub_db.settings, extra={**hub_db.settings.extra, "status_token": "mon-1234567890"})
    client = create_app(settings).test_client()
    assert client.get("/status.json", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.get("/status.json", headers={"Authorization": "Bearer mon-1234567890"})
    assert answer.status_code == 200 and answer.get_json()["status"] == "ok"


def test_healthz_reports_redis(hub_db: HubDB, redis_url: str) -> None:
    up = create_app(replace(hub_db.settings, redis_url=redis_url)).test_client().get("/healthz")
    assert up.status_code == 200 and up.get_json()["checks"]["redis"] == "ok"
    down = create_app(replace(hub_db.settings, redis_url="redis://127.0.0.1:1/0")).test_client().get("/healthz")
    assert down.status_code == 503 and down.get_json()["checks"]["redis"].startswith("error")


def test_dashboard_queue_health_with_redis(admin_env: AdminEnv, redis_url: str) -> None:
    app = create_app(replace(admin_env.settings, redis_url=redis_url))
    page = text(sign_in(app.test_client(), admin_env.users["viewer"]).get("/"))
    assert 'id="queue-health"' in page and "<td>high</td>" in page


# --- plugins' public routes ---------------------------------------------------------------

def test_plugin_routes_stay_public_without_csrf(admin_env: AdminEnv) -> None:
    answer = admin_env.app.test_client().post("/hooks/bitrix24", data={"event": "ONCRMCONTACTADD"})
    assert answer.status_code == 503  # the receiver's own answer (not connected), not a login or CSRF refusal


# --- hub users ----------------------------------------------------------------------------

def test_hub_users_add_list_disable(sqlite_db: HubDB) -> None:
    from tests.support.cli import cli

    runner = CliRunner()
    added = runner.invoke(cli, ["users", "add", "Boss@Shop.example", "--role", "admin", "--password-stdin"],
                          input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert "Добавлен boss@shop.example, роль: Администратор" in added.output and PASSWORD not in added.output
    prompted = runner.invoke(cli, ["users", "add", "m@shop.example", "--role", "marketer"],
                             input=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0, prompted.output
    again = runner.invoke(cli, ["users", "add", "boss@shop.example", "--role", "viewer", "--password-stdin"],
                          input=PASSWORD + "\n")
    assert again.exit_code == 1 and "Ошибка: пользователь boss@shop.example уже есть" in again.output
    weak = runner.invoke(cli, ["users", "add", "v@shop.example", "--role", "viewer", "--password-stdin"],
                         input="short\n")
    assert weak.exit_code == 1 and "слишком короткий" in weak.output
    bad_role = runner.invoke(cli, ["users", "add", "v@shop.example", "--role", "owner"])
    assert bad_role.exit_code == 2
    listed = runner.invoke(cli, ["users", "list", "--json"])
    import json

    rows = json.loads(listed.output)
    assert [(r["email"], r["role"], r["active"]) for r in rows] == [
        ("boss@shop.example", "admin", True), ("m@shop.example", "marketer", True)]
    assert runner.invoke(cli, ["users", "disable", "m@shop.example"]).exit_code == 0
    last = runner.invoke(cli, ["users", "disable", "boss@shop.example"])
    assert last.exit_code == 1 and "единственный активный администратор" in last.output
    with pytest.raises(users.LoginRefused):
        users.authenticate(sqlite_db.engine, "m@shop.example", PASSWORD, address="cli")
    assert users.authenticate(sqlite_db.engine, "boss@shop.example", PASSWORD, address="cli").role == "admin"


def test_an_id_past_what_the_database_holds_is_a_page_not_found(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    huge = str(2**63)  # one past the largest row id: bound as is, the database driver would overflow
    assert marketer.get(f"/contacts/{huge}").status_code == 404
    assert post(marketer, f"/contacts/merges/{huge}/undo", {}).status_code == 404
    assert marketer.get(f"/contacts/{2**63 - 1}").status_code == 404  # the largest id is a contact not found
