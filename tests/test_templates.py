"""Message templates: sandboxed rendering, checks that name the line, the database over the files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

import plugins.mailing
from hub import i18n, message_templates
from hub.hookspecs import hookimpl
from hub.message_templates import Template, TemplateError
from tests.conftest import HubDB
from tests.support.cli import cli


@pytest.fixture(autouse=True)
def english(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """These tests read messages in English, as the code writes them (tests/test_admin_russian.py reads Russian)."""
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    with i18n.use_language("en"):
        yield

SHIPPED = ("reactivation_email", "reactivation_sms", "birthday_email", "birthday_sms", "welcome_email",
           "double_opt_in_email")


@pytest.fixture
def mailing(plugin_manager):
    plugin_manager.register(plugins.mailing, name="mailing")
    plugin_manager.hook.register_commands(cli=cli)
    return plugin_manager


def email(name: str = "t", subject: str = "Привет", text: str = "Текст", html: str | None = None) -> Template:
    return Template(name=name, channel="email", subject=subject, text=text, html=html)


def test_html_is_autoescaped_and_text_is_not(hub_db: HubDB) -> None:
    t = email(subject="{{ contact.first_name }}", text="{{ contact.first_name }}",
              html="<p>{{ contact.first_name }}</p>")
    rendered = message_templates.render(t, {"contact": {"first_name": "<b>Анна</b> & Co"}})
    assert rendered.html == "<p>&lt;b&gt;Анна&lt;/b&gt; &amp; Co</p>"
    assert rendered.text == "<b>Анна</b> & Co"
    assert rendered.subject == "<b>Анна</b> & Co"


def test_a_template_cannot_reach_python_internals(hub_db: HubDB) -> None:
    t = email(text="{{ contact.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError, match=r"t, text line 1: .*unsafe"):
        message_templates.render(t, {"contact": {}})


def test_a_misspelt_variable_is_an_error_naming_part_and_line(hub_db: HubDB) -> None:
    t = email(html="<p>Здравствуйте!</p>\n<p>Код: {{ promo.code }}</p>\n<p>{{ contcat.first_name }}</p>")
    with pytest.raises(TemplateError) as err:
        message_templates.validate(t, hub_db.settings)
    assert str(err.value) == "t, html line 3: undefined variable 'contcat'"


def test_a_syntax_error_names_the_line(hub_db: HubDB) -> None:
    t = email(text="Строка один\nСтрока два {% if contact.city %}\nтри")
    with pytest.raises(TemplateError, match=r"^t, text line 3: the template ends before the .if. block is closed"):
        message_templates.validate(t, hub_db.settings)


def test_none_renders_as_nothing_and_subjects_stay_on_one_line(hub_db: HubDB) -> None:
    t = email(subject="Привет,\r\n{{ contact.city }}Bcc: x@evil.ru", text="[{{ contact.city }}]")
    rendered = message_templates.render(t, {"contact": {"city": None}})
    assert rendered.text == "[]"
    assert rendered.subject == "Привет, Bcc: x@evil.ru"  # one line: no header can be injected


def test_filters_for_russian_letters(hub_db: HubDB) -> None:
    import datetime as dt
    from decimal import Decimal

    t = Template(name="f", channel="sms",
                 text="{{ d|date }} {{ 12500|money }} {{ m|money }} {{ 1|plural('день','дня','дней') }} "
                      "{{ 3|plural('день','дня','дней') }} {{ 11|plural('день','дня','дней') }} "
                      "{{ 22|plural('день','дня','дней') }}")
    out = message_templates.render(t, {"d": dt.date(2025, 12, 31), "m": Decimal("99.5")}).text
    assert out == "31.12.2025 12 500 ₽ 99,50 ₽ 1 день 3 дня 11 дней 22 дня"


def test_shape_checks(hub_db: HubDB) -> None:
    with pytest.raises(TemplateError, match="an email template needs a subject"):
        message_templates.validate(email(subject=" "), hub_db.settings)
    with pytest.raises(TemplateError, match="a sms template has only a text part"):
        message_templates.validate(Template(name="s", channel="sms", text="x", subject="y"), hub_db.settings)
    with pytest.raises(TemplateError, match="use Latin letters, digits"):
        message_templates.validate(email(name="../x"), hub_db.settings)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_template_renders_against_the_sample(hub_db: HubDB, mailing, name: str) -> None:
    with hub_db.engine.connect() as conn:
        t = message_templates.get(conn, hub_db.settings, name)
    rendered = message_templates.validate(t, hub_db.settings)
    assert "Анна" in rendered.text
    if t.is_email:
        assert rendered.html and "<html" in rendered.html and "Анна" in rendered.html
        assert rendered.subject and "\n" not in rendered.subject
        link = "confirm_url" if name == "double_opt_in_email" else "unsubscribe_url"
        assert "/confirm/" in rendered.text if link == "confirm_url" else "/u/" in rendered.text
    else:
        assert len(rendered.text) <= 134  # at most two Cyrillic SMS parts


@pytest.mark.both_databases  # saved with ON CONFLICT
def test_the_database_copy_overrides_the_shipped_one_until_removed(hub_db: HubDB, mailing) -> None:
    mine = Template(name="reactivation_sms", channel="sms", text="Скидка {{ promo.discount }}%: {{ promo.code }}")
    with hub_db.engine.begin() as conn:
        message_templates.save(conn, hub_db.settings, mine)
        assert message_templates.get(conn, hub_db.settings, "reactivation_sms").origin == "database"
        listed = {t.name: t.origin for t in message_templates.all_templates(conn, hub_db.settings)}
        assert listed["reactivation_sms"] == "database" and listed["welcome_email"].endswith("welcome_email")
        assert message_templates.remove(conn, "reactivation_sms")
        assert message_templates.get(conn, hub_db.settings, "reactivation_sms").origin.endswith("reactivation_sms")
        with pytest.raises(TemplateError, match="no template named 'nope'; known: birthday_email"):
            message_templates.get(conn, hub_db.settings, "nope")


@pytest.mark.both_databases  # saved with ON CONFLICT
def test_an_invalid_template_is_not_saved(hub_db: HubDB, mailing) -> None:
    with hub_db.engine.begin() as conn:
        with pytest.raises(TemplateError, match="line 2"):
            message_templates.save(conn, hub_db.settings, Template(name="x", channel="sms", text="ok\n{{ oops }}"))
        assert all(t.name != "x" for t in message_templates.all_templates(conn, hub_db.settings))


def test_plugins_ship_template_folders(hub_db: HubDB, plugin_manager, tmp_path: Path) -> None:
    # hook:register_template_dirs
    folder = tmp_path / "shipped"
    (folder / "thanks_sms").mkdir(parents=True)
    (folder / "thanks_sms" / "body.txt").write_text("Спасибо, {{ contact.first_name }}!\n", encoding="utf-8")

    class Shipper:
        @hookimpl
        def register_template_dirs(self, register):
            register(folder)

    plugin_manager.register(Shipper())
    with hub_db.engine.connect() as conn:
        found = message_templates.get(conn, hub_db.settings, "thanks_sms")
    assert found.channel == "sms" and found.origin == str(folder / "thanks_sms")
    assert message_templates.render(found, {"contact": {"first_name": "Олег"}}).text == "Спасибо, Олег!"


def test_company_details_come_from_the_company_table_or_variables(hub_db: HubDB) -> None:
    from dataclasses import replace

    settings = replace(hub_db.settings, extra={**hub_db.settings.extra,
                                               "company": {"name": "Лавка", "inn": "7700000000"},
                                               "company_phone": "+7 495 111-22-33"})
    assert message_templates.company(settings) == {"name": "Лавка", "phone": "+7 495 111-22-33", "email": "",
                                           "website": "", "address": "", "inn": "7700000000", "legal_name": "",
                                           "ogrn": ""}


# --- the command line ---------------------------------------------------------------------

@pytest.mark.both_databases  # saved with ON CONFLICT
def test_cli_add_list_preview_export(hub_db: HubDB, mailing, tmp_path: Path) -> None:
    runner = CliRunner()
    text = tmp_path / "body.txt"
    text.write_text("Здравствуйте, {{ contact.first_name }}!\nВаш код {{ bonus }}.\n", encoding="utf-8")
    html = tmp_path / "body.html"
    html.write_text("<p>{{ contact.first_name }}, {{ bonus }}</p>", encoding="utf-8")

    missing = runner.invoke(cli, ["templates", "add", "promo_email", "--subject", "Код", "--text", str(text)])
    assert missing.exit_code == 1
    assert missing.output.strip() == "Error: promo_email, text line 2: undefined variable 'bonus'"

    ok = runner.invoke(cli, ["templates", "add", "promo_email", "--subject", "Код для {{ contact.first_name }}",
                             "--text", str(text), "--html", str(html), "--var", "bonus=X1"])
    assert ok.exit_code == 0, ok.output

    listed = json.loads(runner.invoke(cli, ["templates", "list", "--json"]).output)
    mine = next(t for t in listed if t["name"] == "promo_email")
    assert mine == {"name": "promo_email", "title": None, "channel": "email", "source": "database",
                    "subject": "Код для {{ contact.first_name }}", "html": True}
    assert {t["name"] for t in listed} >= set(SHIPPED)

    preview = runner.invoke(cli, ["templates", "preview", "promo_email", "--var", "bonus=777", "--json"])
    assert preview.exit_code == 0, preview.output
    data = json.loads(preview.output)
    assert data["subject"] == "Код для Анна" and data["text"] == "Здравствуйте, Анна!\nВаш код 777.\n"
    assert data["html"] == "<p>Анна, 777</p>"

    sms = json.loads(runner.invoke(cli, ["templates", "preview", "reactivation_sms", "--json"]).output)
    assert sms["channel"] == "sms" and sms["sms_parts"] == 1 and "ANNA-7K2Q" in sms["text"]

    out = tmp_path / "exported"
    exported = runner.invoke(cli, ["templates", "export", "reactivation_email", str(out)])
    assert exported.exit_code == 0, exported.output
    assert "Come back (email)" in (out / "meta.yaml").read_text(encoding="utf-8")  # the title travels along
    (out / "body.txt").write_text("Новый текст для {{ contact.first_name }}", encoding="utf-8")
    back = runner.invoke(cli, ["templates", "add", "reactivation_email", "--from", str(out)])
    assert back.exit_code == 0, back.output
    listed = {t["name"]: t for t in json.loads(runner.invoke(cli, ["templates", "list", "--json"]).output)}
    assert listed["reactivation_email"]["source"] == "database"
    assert listed["reactivation_email"]["title"] == "Come back (email)"  # the edited copy keeps the shipped title
    again = json.loads(runner.invoke(cli, ["templates", "preview", "reactivation_email", "--json"]).output)
    assert again["source"] == "database" and again["text"] == "Новый текст для Анна"
    assert "ANNA-7K2Q" in again["html"]  # the exported HTML came back unchanged

    unknown = runner.invoke(cli, ["templates", "preview", "nope"])
    assert unknown.exit_code == 1 and unknown.output.startswith("Error: no template named 'nope'")


def test_cli_preview_for_a_real_contact_uses_their_data_but_no_real_link(hub_db: HubDB, mailing) -> None:
    from hub import links, sync
    from hub.records import ContactRecord

    with hub_db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="t", first_name="Ольга", emails=["olga@example.ru"])],
                                  hub_db.settings, sync.Counts()).contact_ids[0]
    out = CliRunner().invoke(cli, ["templates", "preview", "reactivation_email", "--contact", str(cid), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["subject"].startswith("Ольга, мы скучаем")
    token = data["text"].split("/u/")[1].split()[0]
    assert token == message_templates.PREVIEW_TOKEN
    with pytest.raises(links.LinkError):
        links.read_unsubscribe(hub_db.settings, token)


# --- what marketers read --------------------------------------------------------------------

BROKEN = {
    "Привет {{ broken": ("the template ends too early: '}}' is missing", "шаблон обрывается: не хватает «}}»"),
    "Привет, {{ contact.first_name }}\n{{ a b }}": ("line 2: expected '}}' but found 'b'",
                                                   "строка 2: ожидалось «}}», а стоит «b»"),
    "{{ a } }}": ("unexpected '}'", "лишний символ «}»"),
    "{% greet %}": ("unknown tag 'greet'", "неизвестный тег «greet»"),
    "{{ bonus }}": ("undefined variable 'bonus'", "неизвестная переменная «bonus»"),
    "{{ contact.frist_name }}": ("no field 'frist_name' here", "здесь нет поля «frist_name»"),
    "{% if contact.first_name %}Привет": ("the 'if' block is closed: add {% endif %}",
                                          "блок «if» не закрыт: добавьте {% endif %}"),
}


@pytest.mark.parametrize("source", BROKEN)
def test_common_template_mistakes_are_explained_in_the_readers_language(source: str) -> None:
    english, russian = BROKEN[source]
    template = Template(name="t", channel="sms", text=source)
    with pytest.raises(TemplateError) as raised:
        message_templates.render(template, {"contact": {"first_name": "Анна"}})
    assert english in str(raised.value) and str(raised.value).startswith("t, text line ")
    with i18n.use_language("ru"), pytest.raises(TemplateError) as raised:
        message_templates.render(template, {"contact": {"first_name": "Анна"}})
    assert russian in str(raised.value) and "строка" in str(raised.value)


def test_an_unknown_jinja_message_is_kept_as_jinja_wrote_it() -> None:
    assert message_templates.jinja_message("something new went wrong") == "something new went wrong"
    with pytest.raises(TemplateError, match="unexpected char"):
        message_templates.render(Template(name="t", channel="sms", text='{{ "abc }}'), {})


def _long_context(hub_db: HubDB) -> dict:
    import datetime as dt

    context = message_templates.sample_context(hub_db.settings)
    context["contact"] = {**context["contact"], "first_name": "Анна-Мария"}  # 10 characters
    context["promo"] = {"code": "ZXCV-1234-QW", "discount": 15, "expires_at": dt.date(2026, 12, 31)}  # 12
    context["company"] = {**context["company"], "name": "Цветочная лавка Роза"}  # 20
    return context


def test_the_reactivation_sms_fits_one_part_with_long_values(hub_db: HubDB, mailing) -> None:
    from hub.messaging import text_parts

    context = _long_context(hub_db)
    assert (len(context["contact"]["first_name"]), len(context["promo"]["code"]),
            len(context["company"]["name"])) == (10, 12, 20)
    with hub_db.engine.connect() as conn:
        sms = message_templates.get(conn, hub_db.settings, "reactivation_sms")
    for first_name in ("Анна-Мария", ""):
        context["contact"]["first_name"] = first_name
        text = message_templates.render(sms, context).text
        assert len(text) <= 70 and text_parts(text) == 1, text
        assert "ZXCV-1234-QW" in text and "31.12" in text and "15%" in text and "Цветочная лавка Роза" in text


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_templates_never_put_the_shop_name_after_a_preposition(hub_db: HubDB, mailing, name: str) -> None:
    import re

    # «в «Цветочная лавка»» reads wrong: a shop's name stays in the nominative, so it stands on its own.
    with hub_db.engine.connect() as conn:
        template = message_templates.get(conn, hub_db.settings, name)
    rendered = message_templates.render(template, _long_context(hub_db))
    for part in (rendered.subject or "", rendered.text, rendered.html or ""):
        part = part.replace("&nbsp;", " ").replace("\xa0", " ")
        assert not re.search(r"\b(в|во|из|от|для|у|к)\s+«?Цветочная лавка Роза", part), (name, part)


def test_an_edited_copy_of_a_shipped_template_keeps_its_title(hub_db: HubDB, mailing, tmp_path: Path) -> None:
    with hub_db.engine.begin() as conn:
        shipped = message_templates.get(conn, hub_db.settings, "reactivation_email")
        message_templates.save(conn, hub_db.settings, Template(
            name="reactivation_email", channel="email", subject="Скидка", text="Текст"))
        mine = message_templates.get(conn, hub_db.settings, "reactivation_email")
        listed = {t.name: t for t in message_templates.all_templates(conn, hub_db.settings)}
    assert mine.origin == "database" and (mine.title, mine.description) == (shipped.title, shipped.description)
    assert listed["reactivation_email"].title == "Come back (email)"
    written = message_templates.write_dir(mine, tmp_path / "out")
    assert tmp_path / "out" / "meta.yaml" in written
    assert message_templates.read_dir(tmp_path / "out").title == "Come back (email)"
    bare = message_templates.write_dir(Template(name="x", channel="sms", text="Привет"), tmp_path / "bare")
    assert [p.name for p in bare] == ["body.txt"]  # no meta.yaml for a template without a title
