"""The template editor through Flask's test client: the letter's own frame, variables, test letters, versions."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import func, select

from hub import message_templates, plugins, template_variables, template_versions
from hub.admin import create_app, letter_previews
from hub.admin.letter_frame import LETTER_CSP
from hub.hookspecs import hookimpl
from hub.i18n import use_language
from hub.models import AuditEntry, Message, MessageTemplate, MessageTemplateVersion
from tests.support.admin import AdminEnv, client_as, csrf_token, plain, post, sign_in, text
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases

BUTTON = ('<p>Здравствуйте, {{ contact.first_name }}!</p>'
          '<a href="https://shop.example/sale" style="background:#d33;color:#fff;padding:12px">Купить</a>'
          '<script>parent.document.title = "взлом"</script>')


def letter(**changes: Any) -> dict[str, Any]:
    return {"name": "spring", "channel": "email", "subject": "Весна, {{ contact.first_name }}", "text": "",
            "html": BUTTON, **changes}


def preview(client: Any, **changes: Any) -> Any:
    return client.post("/templates/preview", data={"csrf_token": csrf_token(client, "/templates/new"),
                                                   **letter(**changes)})


def audit(env: AdminEnv, action: str) -> list[Any]:
    with env.engine.connect() as conn:
        return list(conn.execute(select(AuditEntry.__table__).where(AuditEntry.action == action)
                                 .order_by(AuditEntry.id)))


# --- the letter's frame ---------------------------------------------------------------------

def test_the_preview_frame_is_a_page_with_the_letter_policy(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    answer = preview(marketer, contact=admin_env.ids["anna"]).get_json()
    assert f"контакта №{admin_env.ids['anna']}" in answer["for"] and answer["subject"] == "Весна, Анна"
    assert answer["text_generated"] is True
    assert "Здравствуйте, Анна!" in answer["text"] and "Купить (https://shop.example/sale)" in answer["text"]
    assert "взлом" not in answer["text"]  # the script's text is not the letter's
    frame = marketer.get(answer["frame_url"])
    assert frame.status_code == 200 and frame.mimetype == "text/html"
    policy = frame.headers["Content-Security-Policy"]
    assert policy == LETTER_CSP  # the letter's own policy, not the admin's
    assert "style-src 'unsafe-inline'" in policy and "script-src" not in policy and "default-src 'none'" in policy
    assert policy.startswith("sandbox ") and "allow-scripts" not in policy and "allow-same-origin" not in policy
    assert frame.headers["X-Frame-Options"] == "SAMEORIGIN" and frame.headers["Cache-Control"] == "no-store"
    assert 'style="background:#d33;color:#fff;padding:12px"' in text(frame)
    page = text(marketer.get("/templates/reactivation_email"))
    assert re.search(r'<iframe id="preview-html"[^>]* sandbox="allow-popups"[^>]* src="/templates/frame/[\w-]+"',
                     page)
    assert "srcdoc" not in page


def test_nobody_else_reads_a_preview_frame(admin_env: AdminEnv) -> None:
    url = preview(client_as(admin_env, "marketer")).get_json()["frame_url"]
    assert client_as(admin_env, "admin").get(url).status_code == 404
    assert client_as(admin_env, "viewer").get(url).status_code == 404
    anonymous = client_as(admin_env, None).get(url)
    assert anonymous.status_code == 302 and anonymous.location.startswith("/login?next=")
    assert client_as(admin_env, "marketer").get(url + "x").status_code == 404
    assert client_as(admin_env, "marketer").get("/templates/frame/" + "a" * 5000).status_code == 404


def test_with_redis_every_process_of_the_admin_finds_the_frame(admin_env: AdminEnv, redis_url: str) -> None:
    settings = replace(admin_env.settings, redis_url=redis_url)
    first, second = create_app(settings), create_app(settings)  # two workers of one admin
    marketer = sign_in(first.test_client(), admin_env.users["marketer"])
    url = preview(marketer).get_json()["frame_url"]
    elsewhere = sign_in(second.test_client(), admin_env.users["marketer"])
    shown = elsewhere.get(url)
    assert shown.status_code == 200 and "Купить" in text(shown)
    assert shown.headers["Content-Security-Policy"] == LETTER_CSP
    assert sign_in(second.test_client(), admin_env.users["admin"]).get(url).status_code == 404
    token = url.rsplit("/", 1)[1]
    assert 0 < Redis.from_url(redis_url).ttl(f"hub:letter-preview:{token}") <= letter_previews.FRAME_SECONDS


def test_a_viewer_sees_the_frame_of_the_page_they_opened(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    page = text(viewer.get("/templates/reactivation_email"))
    url = re.search(r'src="(/templates/frame/[\w-]+)"', page)
    assert url and viewer.get(url.group(1)).status_code == 200
    assert client_as(admin_env, "marketer").get(url.group(1)).status_code == 404


# --- hostile input ------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "error"), [
    ("{{ ''.__class__ }}", "spring, html"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "spring, html"),
    ("{% for x in range(10**9) %}{{ x }}{% endfor %}", "spring, html"),
    ("{{ 'a' * 400000000 }}", "spring, html"),
    ("{{ contact.frist_name }}", "frist_name"),
    ("{% if %}", "spring, html"),
])
def test_hostile_templates_are_refused_with_a_message(admin_env: AdminEnv, source: str, error: str) -> None:
    answer = preview(client_as(admin_env, "marketer"), html=source)
    assert answer.status_code == 200
    found = answer.get_json()
    assert error in found["error"] and "Traceback" not in found["error"] and "<class" not in found["error"]
    assert "frame_url" not in found


def test_markup_in_a_name_stays_text_and_huge_or_forged_input_is_refused(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    found = preview(marketer, contact=admin_env.ids["markup"]).get_json()
    assert found["subject"] == "Весна, <script>alert(1)</script>"  # the subject is text; the page escapes it
    frame = text(marketer.get(found["frame_url"]))
    assert "Здравствуйте, &lt;script&gt;alert(1)&lt;/script&gt;!" in frame
    huge = preview(marketer, html="<p>" + "я" * 250_000 + "</p>")
    assert huge.status_code == 400 and "не больше 200 000 символов" in huge.get_json()["error"]
    assert preview(marketer, contact="12abc").status_code == 400
    nobody = preview(marketer, contact=str(10**30)).get_json()
    assert "error" in nobody
    assert preview(marketer, contact=str(2**40)).get_json()["error"] == f"нет контакта с id {2**40}"
    forged = preview(marketer, channel="pigeon")
    assert forged.status_code == 400 and "Канал" in forged.get_json()["error"]
    sms = preview(marketer, channel="sms", subject="", html="", text="Привет, {{ contact.first_name }}!").get_json()
    assert sms["text"] == "Привет, Анна!" and sms["parts_text"] == "13 символов, 1 SMS" and "frame_url" not in sms


# --- variables ----------------------------------------------------------------------------

def test_the_variables_come_with_what_they_mean_and_an_example(admin_env: AdminEnv) -> None:
    page = plain(client_as(admin_env, "marketer").get("/templates/new"))
    for snippet, meaning, example in [
        ("{{ contact.first_name }}", "имя", "Анна"),
        ("{{ contact.revenue|money }}", "сколько всего оплачено заказов", "12 500 ₽"),
        ("{{ promo.code }}", "личный промокод контакта", "ANNA-7K2Q"),
        ("{{ promo.expires_at|date }}", "последний день действия промокода", "."),
        ("{{ company.name }}", "название вашей компании", ""),
        ("{{ unsubscribe_url }}", "ссылка для отписки", "/u/preview"),
    ]:
        row = re.search(rf'data-insert="{re.escape(snippet)}".*?</tr>', page, re.S)
        assert row, snippet
        assert meaning in row.group(0) and example in row.group(0), (snippet, row.group(0))
    assert 'data-insert="{% for link in nps.links %}' in page and "/nps/SAMPLE-0" in page
    viewer = plain(client_as(admin_env, "viewer").get("/templates/reactivation_email"))
    assert "<code>{{ promo.code }}</code>" in viewer and "data-insert" not in viewer
    english = client_as(admin_env, "marketer")
    post(english, "/language", {"language": "en", "next": "/templates/new"}, token_from="/templates/new")
    assert "your company's name" in plain(english.get("/templates/new"))


def test_a_template_using_promo_and_nps_previews(admin_env: AdminEnv) -> None:
    found = preview(client_as(admin_env, "marketer"),
                    html='{{ promo.code }} {% for l in nps.links %}{{ l.score }}{% endfor %}').get_json()
    assert "ANNA-7K2Q" in found["text"] and "012345678910" in found["text"]


# --- test letters -------------------------------------------------------------------------

def test_a_test_letter_of_the_unsaved_text_goes_to_the_marketer(admin_env: AdminEnv, mailbox) -> None:
    box, port = mailbox
    settings = replace(admin_env.settings, extra={**admin_env.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
                                                  "mail_from": "Лавка <shop@example.ru>"})
    app = create_app(settings)
    marketer = sign_in(app.test_client(), admin_env.users["marketer"])
    page = text(marketer.get("/templates/new"))
    assert '<output id="test-to" translate="no">marketer@shop.example</output>' in page
    assert not re.search(r'<input[^>]*name="to"', page)  # the address is shown, not asked for
    token = csrf_token(marketer, "/templates/new")
    sent = marketer.post("/templates/test", data={"csrf_token": token, **letter(html=BUTTON + "{{ promo.code }}")},
                         headers={"Accept": "application/json"})
    assert sent.status_code == 200, sent.get_data(as_text=True)
    assert sent.get_json()["message"] == "Тестовое письмо отправлено на marketer@shop.example."
    assert len(box.received) == 1 and box.received[0].rcpt_tos == ["marketer@shop.example"]
    msg = box.received[0].message
    assert msg["Subject"] == "[Тест] Весна, Анна"
    assert "ANNA-7K2Q" in msg.get_body(("html",)).get_content()
    same = marketer.post("/templates/test", data={"csrf_token": token, "to": " Marketer@Shop.example ", **letter()},
                         headers={"Accept": "application/json"})
    assert same.status_code == 200 and len(box.received) == 2  # their own address, as typed by hand
    for forged in ("<b>кто-то</b>", "boss@competitor.example", "x" * 5000):
        bad = marketer.post("/templates/test", data={"csrf_token": token, "to": forged,
                                                     "contact": admin_env.ids["anna"], **letter()},
                            headers={"Accept": "application/json"})
        assert bad.status_code == 400 and bad.get_json()["error"].startswith(
            "Тестовое письмо уходит только на ваш адрес, marketer@shop.example;"), forged
    without_js = marketer.post("/templates/test", data={"csrf_token": token, "to": "nope", **letter()})
    assert without_js.status_code == 400 and "отправка на nope отклонена" in plain(without_js)
    assert "<script>parent" not in text(without_js)  # the typed HTML is kept, escaped, in its field
    sms = marketer.post("/templates/test", data={"csrf_token": token, **letter(channel="sms", subject="", html="",
                                                                               text="Привет")},
                        headers={"Accept": "application/json"})
    assert sms.status_code == 400 and "только шаблоны писем" in sms.get_json()["error"]
    assert len(box.received) == 2
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Message)).scalar() == 0
    assert [e.actor for e in audit(admin_env, "template_test_sent")] == ["admin:marketer@shop.example"] * 2
    assert len(box.received) == 2
    viewer = sign_in(app.test_client(), admin_env.users["viewer"])
    refused = viewer.post("/templates/test", data={"csrf_token": csrf_token(viewer, "/templates/"),
                                                   "to": "viewer@shop.example", **letter()})
    assert refused.status_code == 403 and len(box.received) == 2


# --- versions -----------------------------------------------------------------------------

def save(client: Any, **changes: Any) -> Any:
    return post(client, "/templates/save", letter(**changes), token_from="/templates/new")


def test_every_save_is_a_version_with_a_diff_and_a_restore(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    assert save(marketer, text="Первая строка\n<b>жирно</b>\n").status_code == 302
    assert save(marketer, text="Первая строка\n<i>курсив</i>\n", subject="Новая тема").status_code == 302
    with admin_env.engine.connect() as conn:
        rows = conn.execute(select(MessageTemplateVersion.__table__).order_by(MessageTemplateVersion.version)).all()
    assert [(r.version, r.saved_by, r.subject) for r in rows] == [
        (1, "admin:marketer@shop.example", "Весна, {{ contact.first_name }}"),
        (2, "admin:marketer@shop.example", "Новая тема")]
    page = text(marketer.get("/templates/spring"))
    assert 'data-version="2"' in page and 'data-version="1"' in page and "текущая" in page
    assert "/templates/spring/versions/1/restore" in page and "/templates/spring/versions/2/restore" not in page
    changes = text(marketer.get("/templates/spring/versions/2"))
    assert '<span class="diff-line removed">- &lt;b&gt;жирно&lt;/b&gt;</span>' in changes
    assert '<span class="diff-line added">+ &lt;i&gt;курсив&lt;/i&gt;</span>' in changes
    assert '<span class="diff-line same">  Первая строка</span>' in changes
    assert "Сравнение с версией 1." in changes and "<b>жирно</b>" not in changes
    assert "@@" not in changes and '<span class="diff-line gap">Строки 1–2</span>' in changes  # no raw hunk header
    assert "admin:" not in changes and "marketer@shop.example" in plain(marketer.get("/templates/spring/versions/2"))
    assert "admin:" not in page and "<td>marketer@shop.example</td>" in page  # the person, as the audit shows them
    first = text(marketer.get("/templates/spring/versions/1"))
    assert "Первая версия: всё в ней новое." in first
    assert marketer.get("/templates/spring/versions/9").status_code == 404

    restored = post(marketer, "/templates/spring/versions/1/restore", token_from="/templates/spring",
                    follow_redirects=True)
    assert "Версия 1 шаблона spring восстановлена как версия 3." in plain(restored)
    with admin_env.engine.connect() as conn:
        current = message_templates.get(conn, admin_env.settings, "spring")
        third = template_versions.get(conn, admin_env.settings, "spring", 3)
    assert current.text == "Первая строка\n<b>жирно</b>\n" and current.subject == "Весна, {{ contact.first_name }}"
    assert third is not None and third.saved_by == "admin:marketer@shop.example"
    [entry] = audit(admin_env, "template_restored")
    assert entry.details == {"template": "spring", "restored": 1, "version": 3}
    assert [e.details["version"] for e in audit(admin_env, "template_saved")] == [1, 2]
    log = plain(client_as(admin_env, "admin").get("/users/audit"))
    assert "версия шаблона восстановлена" in log
    missing = post(marketer, "/templates/spring/versions/77/restore", token_from="/templates/spring",
                   follow_redirects=True)
    assert "у шаблона spring нет версии 77" in plain(missing)


def test_a_template_made_here_is_deleted_and_a_shipped_ones_copy_removed(admin_env: AdminEnv) -> None:
    """With no shipped original the button deletes the template, and says so; an edited shipped one loses its copy."""
    marketer = client_as(admin_env, "marketer")
    assert save(marketer).status_code == 302
    page = text(marketer.get("/templates/spring"))
    assert "Удалить шаблон" in page and "Удалить изменённую копию" not in page and "удалён безвозвратно" in page
    deleted = post(marketer, "/templates/spring/remove", token_from="/templates/spring", follow_redirects=True)
    assert "Шаблон spring удалён." in plain(deleted)
    assert marketer.get("/templates/spring").status_code == 404
    shipped = message_templates.shipped(admin_env.settings, "reactivation_email")
    assert shipped is not None
    assert post(marketer, "/templates/save", letter(name="reactivation_email", text="Своя версия",
                                                    subject="Тема"), token_from="/templates/new").status_code == 302
    edited = text(marketer.get("/templates/reactivation_email"))
    assert "Удалить изменённую копию" in edited and "Удалить шаблон" not in edited
    removed = post(marketer, "/templates/reactivation_email/remove", token_from="/templates/reactivation_email",
                   follow_redirects=True)
    assert "Изменённая копия шаблона reactivation_email удалена." in plain(removed)
    assert marketer.get("/templates/reactivation_email").status_code == 200  # the shipped one shows through again
    viewer = client_as(admin_env, "viewer")
    assert "Удалить" not in text(viewer.get("/templates/reactivation_email"))


def test_a_shipped_template_is_version_zero(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    page = plain(marketer.get("/templates/reactivation_email"))
    assert "0 · исходная" in page and "поставляется с Hub" in page
    shipped = plain(marketer.get("/templates/reactivation_email/versions/0"))
    assert "reactivation_email в том виде, в каком он поставляется с Hub" in shipped
    with admin_env.engine.connect() as conn:
        original = message_templates.get(conn, admin_env.settings, "reactivation_email")
    edited = post(marketer, "/templates/save", {"editing": "reactivation_email", "name": "reactivation_email",
                                                "channel": "email", "subject": original.subject,
                                                "text": original.text + "\nP.S. Ждём вас!", "html": original.html},
                  token_from="/templates/reactivation_email")
    assert edited.status_code == 302
    changes = plain(marketer.get("/templates/reactivation_email/versions/1"))
    assert "Сравнение с исходным шаблоном, поставляемым с Hub." in changes and "+ P.S. Ждём вас!" in changes
    post(marketer, "/templates/reactivation_email/versions/0/restore", token_from="/templates/reactivation_email")
    with admin_env.engine.connect() as conn:
        assert message_templates.get(conn, admin_env.settings, "reactivation_email").text == original.text


def test_a_viewer_sees_versions_but_cannot_save_or_restore(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    save(marketer, text="один")
    save(marketer, text="два")
    viewer = client_as(admin_env, "viewer")
    page = text(viewer.get("/templates/spring"))
    assert 'data-version="1"' in page and "/restore" not in page and 'id="save-button"' not in page
    assert 'id="test-send-button"' not in page
    assert "Восстановить эту версию" not in text(viewer.get("/templates/spring/versions/1"))
    answers = [post(viewer, "/templates/spring/versions/1/restore", token_from="/templates/"),
               post(viewer, "/templates/save", letter(text="три"), token_from="/templates/")]
    assert [a.status_code for a in answers] == [403, 403]
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(func.max(MessageTemplateVersion.version))).scalar() == 2
        assert conn.execute(select(MessageTemplate.body_text)).scalar() == "два"


def test_the_command_line_saves_versions_too(admin_env: AdminEnv, tmp_path) -> None:
    (tmp_path / "body.txt").write_text("Привет, {{ contact.first_name }}!", encoding="utf-8")
    plugins.get_pm().hook.register_commands(cli=cli)
    runner = CliRunner()
    for body in ("Привет, {{ contact.first_name }}!", "Привет, {{ contact.first_name }}!", "Здравствуйте!"):
        (tmp_path / "body.txt").write_text(body, encoding="utf-8")
        out = runner.invoke(cli, ["templates", "add", "hello_sms", "--text", str(tmp_path / "body.txt")])
        assert out.exit_code == 0, out.output
    with admin_env.engine.connect() as conn:
        versions = template_versions.history(conn, admin_env.settings, "hello_sms")
    assert [(v.number, v.saved_by) for v in versions] == [(2, "cli"), (1, "cli")]  # the same text twice: one
    assert "командная строка" in text(client_as(admin_env, "viewer").get("/templates/hello_sms"))


def test_an_email_template_with_html_only_saves(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    assert save(marketer).status_code == 302
    page = plain(marketer.get("/templates/spring"))
    assert "Текстовая версия (создана автоматически)" in page and "Купить (https://shop.example/sale)" in page
    refused = post(marketer, "/templates/save", letter(html=""), token_from="/templates/new")
    assert refused.status_code == 400 and "spring: текст пуст" in plain(refused)


class Loyalty:
    """A stranger's plugin offering a variable of its own."""

    @staticmethod
    @hookimpl
    def register_template_variables(register: Any, settings: Any) -> None:
        register("loyalty", {"points": 120, "level": "<b>gold</b>"},
                 {"loyalty.points": "points on the card", "loyalty.level": "card level"}, title="Loyalty card")


def test_a_plugin_offers_variables_to_the_editor_and_its_previews(admin_env: AdminEnv) -> None:
    # hook:register_template_variables
    plugins.get_pm().register(Loyalty(), name="loyalty")
    try:
        with use_language("en"):
            groups = dict(template_variables.variables(admin_env.settings))
        assert [(v.snippet, v.description, v.example) for v in groups["Loyalty card"]] == [
            ("{{ loyalty.points }}", "points on the card", "120"), ("{{ loyalty.level }}", "card level", "<b>gold</b>")]
        assert template_variables.samples(admin_env.settings)["loyalty"]["points"] == 120
        page = text(client_as(admin_env, "marketer").get("/templates/new"))
        assert "Loyalty card" in page and "&lt;b&gt;gold&lt;/b&gt;" in page and "<b>gold</b>" not in page
        found = preview(client_as(admin_env, "marketer"), html="{{ loyalty.points }} / {{ loyalty.level }}").get_json()
        assert found["text"] == "120 / <b>gold</b>"  # the value as text, never as markup
        assert "120 / &lt;b&gt;gold&lt;/b&gt;" in text(client_as(admin_env, "marketer").get(found["frame_url"]))
    finally:
        plugins.get_pm().unregister(name="loyalty")


# --- two people editing one template --------------------------------------------------------

def base_of(page: str) -> str:
    found = re.search(r'<input type="hidden" name="base" value="(-?\d+)">', page)
    assert found, "no base version in the form"
    return found.group(1)


def test_the_later_of_two_saves_is_refused_and_keeps_what_was_typed(admin_env: AdminEnv) -> None:
    first, second = client_as(admin_env, "marketer"), client_as(admin_env, "admin")
    assert base_of(text(first.get("/templates/new"))) == "-1"
    assert post(first, "/templates/save", {**letter(text="Начало"), "base": "-1"},
                token_from="/templates/new").status_code == 302
    opened_by_first = base_of(text(first.get("/templates/spring")))
    opened_by_second = base_of(text(second.get("/templates/spring")))
    assert opened_by_first == opened_by_second == "1"
    saved = post(second, "/templates/save", {**letter(text="Вариант второго"), "editing": "spring",
                                              "base": opened_by_second}, token_from="/templates/spring")
    assert saved.status_code == 302
    late = post(first, "/templates/save", {**letter(text="Вариант первого <i>мой</i>"), "editing": "spring",
                                           "base": opened_by_first}, token_from="/templates/spring")
    assert late.status_code == 409
    page = plain(late)
    conflict = re.search(r'id="save-conflict".*?</div>', page, re.S)
    assert conflict and "admin@shop.example" in conflict.group(0) and "версия 2" in conflict.group(0)
    assert 'href="/templates/spring/versions/2"' in conflict.group(0)
    assert "Вариант первого &lt;i&gt;мой&lt;/i&gt;" in text(late)  # what the first typed is still in the form
    with admin_env.engine.connect() as conn:
        assert message_templates.get(conn, admin_env.settings, "spring").text == "Вариант второго"
        assert conn.execute(select(func.max(MessageTemplateVersion.version))).scalar() == 2
    assert base_of(text(late)) == "2"  # having seen theirs, saving again is a decision
    again = post(first, "/templates/save", {**letter(text="Вариант первого"), "editing": "spring",
                                            "base": base_of(text(late))}, token_from="/templates/spring")
    assert again.status_code == 302
    with admin_env.engine.connect() as conn:
        assert message_templates.get(conn, admin_env.settings, "spring").text == "Вариант первого"
    # A new template under a name someone took meanwhile is refused the same way.
    taken = post(second, "/templates/save", {**letter(text="Чужое"), "base": "-1"}, token_from="/templates/new")
    assert taken.status_code == 409 and "версия 3" in plain(taken)
    english = client_as(admin_env, "marketer")
    post(english, "/language", {"language": "en", "next": "/templates/"}, token_from="/templates/")
    shown = plain(post(english, "/templates/save", {**letter(text="x"), "editing": "spring", "base": "1"},
                       token_from="/templates/spring"))
    assert "Not saved:" in shown and "See what they changed" in shown


def test_saving_unchanged_text_adds_no_version(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    post(marketer, "/templates/save", {**letter(text="Одно и то же"), "base": "-1"}, token_from="/templates/new")
    for _ in range(2):
        same = post(marketer, "/templates/save", {**letter(text="Одно и то же"), "editing": "spring", "base": "1"},
                    token_from="/templates/spring", follow_redirects=True)
        assert "В шаблоне spring ничего не изменилось: текущей остаётся версия 1." in plain(same)
    restored = post(marketer, "/templates/spring/versions/1/restore", token_from="/templates/spring",
                    follow_redirects=True)
    assert "ничего не изменилось" in plain(restored)
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(MessageTemplateVersion)).scalar() == 1
    assert len(audit(admin_env, "template_saved")) == 1 and audit(admin_env, "template_restored") == []


@pytest.mark.parametrize("base", ["abc", "1.5", "9" * 40, "<b>1</b>", "-7"])
def test_a_forged_base_version_is_named(admin_env: AdminEnv, base: str) -> None:
    marketer = client_as(admin_env, "marketer")
    refused = post(marketer, "/templates/save", {**letter(), "base": base}, token_from="/templates/new")
    assert refused.status_code == 400
    assert "— не число: обновите страницу" in plain(refused) and "<b>1</b>" not in text(refused)
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(MessageTemplateVersion)).scalar() == 0


def test_the_picker_offers_a_ready_button_and_promo_block(admin_env: AdminEnv) -> None:
    page = plain(client_as(admin_env, "marketer").get("/templates/new"))
    button = re.search(r'id="insert-button" data-part="html" data-insert="([^"]*)"', text(
        client_as(admin_env, "marketer").get("/templates/new")))
    assert button and "Вставить" in page and "Кнопка" in page and "Блок с промокодом" in page
    snippet = plain_attr(button.group(1))
    assert snippet.startswith('<p><a href="https://example.ru/" style="display:inline-block;') and \
        "Перейти в магазин" in snippet
    promo = re.search(r'id="insert-promo" data-part="html" data-insert="([^"]*)"', text(
        client_as(admin_env, "marketer").get("/templates/new")))
    assert promo and "{{ promo.code }}" in plain_attr(promo.group(1))
    found = preview(client_as(admin_env, "marketer"), html=snippet + plain_attr(promo.group(1))).get_json()
    assert "Перейти в магазин (https://example.ru/)" in found["text"] and "ANNA-7K2Q" in found["text"]
    assert re.search(r"Ваш промокод на скидку \d+ %:", found["text"]), found["text"]
    assert 'id="insert-blocks"' not in text(client_as(admin_env, "viewer").get("/templates/reactivation_email"))


def plain_attr(value: str) -> str:
    import html

    return html.unescape(value)
