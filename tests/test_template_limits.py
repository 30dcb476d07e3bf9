"""Hostile templates: no leaking between recipients, no unbounded memory or time, one clear error each."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hub import message_templates, template_sandbox
from hub.config import SettingsError, load_settings
from hub.message_templates import Template, TemplateError
from plugins.mailing import sms


def text(source: str) -> Template:
    return Template(name="hostile", channel="sms", text=source)


def render(source: str, **context: object) -> str:
    return message_templates.render(text(source), context).text


def test_a_template_cannot_change_the_company_shared_by_every_recipient() -> None:
    company = {"name": "Цветы у дома", "phone": "+74951234567"}
    hostile = "{{ company.update({'name': contact.first_name}) }}{{ company.name }}"
    with pytest.raises(TemplateError, match="unsafe"):
        render(hostile, company=company, contact={"first_name": "Анна"})
    assert company == {"name": "Цветы у дома", "phone": "+74951234567"}
    assert render("{{ company.name }}", company=company) == "Цветы у дома"


@pytest.mark.parametrize("source", [
    "{% set _ = contact.tags.append('vip') %}",
    "{% set _ = contact.attributes.setdefault('card', '1') %}",
    "{% set _ = contact.attributes.pop('card') %}",
    "{% set _ = contact.tags.clear() %}",
])
def test_no_container_in_the_context_can_be_changed(source: str) -> None:
    contact = {"tags": ["new"], "attributes": {"card": "7"}}
    with pytest.raises(TemplateError, match="unsafe"):
        render(source, contact=contact)
    assert contact == {"tags": ["new"], "attributes": {"card": "7"}}


def test_each_render_gets_its_own_copies_of_the_context() -> None:
    """Even where a change gets through (a namespace the template makes), the caller's objects stay."""
    contact = {"tags": ["new"]}
    assert render("{% set ns = namespace(t=contact.tags) %}{{ ns.t|join }}", contact=contact) == "new"
    copy = template_sandbox.fresh({"contact": contact})
    assert copy == {"contact": contact} and copy["contact"] is not contact
    assert copy["contact"]["tags"] is not contact["tags"]


def test_fresh_copies_every_container_inside_plain_values() -> None:
    import datetime as dt
    from decimal import Decimal

    when, price = dt.datetime(2026, 12, 7, 10, 0), Decimal("1990.50")
    nested = {"promo": {"codes": ["A1", "B2"], "seen": {1, 2}, "until": dt.date(2026, 12, 31)}, "n": 3}
    copy = template_sandbox.fresh({"contact": nested, "when": when, "price": price, "name": "Анна"})
    assert copy == {"contact": nested, "when": when, "price": price, "name": "Анна"}
    assert copy["contact"] is not nested and copy["contact"]["promo"] is not nested["promo"]
    assert copy["contact"]["promo"]["codes"] is not nested["promo"]["codes"]
    assert copy["contact"]["promo"]["seen"] is not nested["promo"]["seen"]


@pytest.mark.parametrize("source, expected", [
    ("{{ contact.first_name }}", "Анна"),           # a key read as a name
    ("{{ contact['items'] }}", "ключ"),              # a key named like a dict method, read as a key
    ("{{ contact.items is callable }}", "True"),     # …but as a name it is still the method, as Jinja has it
    ("{{ contact.attributes.card }}", "7"),
])
def test_names_on_dicts_read_as_jinja_reads_them(source: str, expected: str) -> None:
    contact = {"first_name": "Анна", "items": "ключ", "attributes": {"card": "7"}}
    assert render(source, contact=contact) == expected


def test_a_missing_name_on_a_dict_is_still_named_in_the_error() -> None:
    with pytest.raises(TemplateError, match="missing"):
        render("{{ contact.missing }}", contact={"first_name": "Анна"})


def test_dunder_names_on_dicts_stay_refused() -> None:
    with pytest.raises(TemplateError, match="unsafe|undefined|нет|не"):
        render("{{ contact.__class__.__subclasses__() }}", contact={"__class__": "x"})


@pytest.mark.parametrize("source, error", [
    ("{{ 'a' * 400000000 }}", "400\u00a0000\u00a0000 символов"),
    ("{{ ['a'] * 400000000 }}", "400\u00a0000\u00a0000 символов"),
    ("{% for i in range(10**9) %}x{% endfor %}", "Range too big"),
    ("{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}", "шагов"),
    ("{% set s = 'x' * 2000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}", "шагов"),
    ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "выводит больше"),
    ("{% for i in range(100000) %}" + "x" * 100 + "{% endfor %}", "выводит больше"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(25) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "символов"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(25) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "символов"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(25) %}{% set x %}{{ ns.s }}{{ ns.s }}{% endset %}"
     "{% set ns.s = x %}{% endfor %}", "пишет больше"),
    ("{{ 'a'|center(400000000) }}", "символов"),
    ("{{ 'a'|indent(400000000, true) }}", "400\u00a0000\u00a0001 символ "),
    ("{{ '%0999999999d'|format(1) }}", "символов"),
    ("{{ '%0999999999d' % 1 }}", "символов"),
    ("{{ '%*d' % (999999999, 1) }}", "символов"),
    ("{{ 'x'.ljust(10**9) }}", "символов"),
    ("{{ '{:>999999999}'.format(1) }}", "символов"),
    ("{{ '{:>{}}'.format(1, 999999999) }}", "символов"),
    ("{{ ('a' * 100000).replace('a', 'a' * 100000) }}", "символов"),
    ("{{ ('a' * 100000)|replace('a', 'a' * 100) }}", "символов"),
    ("{{ range(100000)|join('a' * 100000) }}", "символов"),
    ("{{ ('a' * 100000)|wordwrap(1, true, 'x' * 100000) }}", "символов"),
    ("{{ [1]|batch(10**9, 'x')|list }}", "символов"),
    ("{{ 10 ** 10000000 }}", "2\\*\\*100000"),
    ("{{ lipsum(10**9) }}", "неизвестная переменная «lipsum»"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "слишком глубоко"),
])
def test_a_template_asking_for_too_much_fails_with_a_clear_line(source: str, error: str) -> None:
    with pytest.raises(TemplateError, match=error) as caught:
        render(source, contact={"tags": []})
    assert str(caught.value).startswith("hostile, text") and "\n" not in str(caught.value)


def test_render_time_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_sandbox, "MAX_RENDER_SECONDS", -1.0)  # every check is past the deadline
    with pytest.raises(TemplateError, match="дольше"):
        render("{% for i in range(2000) %}{{ i }}{% endfor %}")


def test_ordinary_templates_still_render() -> None:
    source = ("{{ contact.first_name }}, {{ '%s-%d'|format('A', 3) }} {{ '{:>4}'.format(7) }} "
              "{% for t in contact.tags %}{{ loop.index }}{{ t }}{% if not loop.last %},{% endif %}{% endfor %} "
              "{{ 2 ** 10 }} {{ '=' * 3 }} {{ contact.tags|join('+') }} {{ 'ab'|center(6) }}|"
              "{{ contact.revenue|money }}")
    out = render(source, contact={"first_name": "Анна", "tags": ["vip", "new"], "revenue": 12500})
    assert out == "Анна, A-3    7 1vip,2new 1024 === vip+new   ab  |12 500 ₽"
    letter = "Здравствуйте!\n" + "Строка письма.\n" * 20_000  # a long letter, well under the limits
    assert render(letter) == letter.strip()


def test_the_sms_gateway_body_template_is_sandboxed_the_same_way(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    for body, error in (("{{ 'a' * 400000000 }}", "символов"),
                        ("{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}",
                         "шагов")):
        with pytest.raises(SettingsError, match=f"HUB_SMS_BODY: .*{error}"):
            sms.channel(replace(settings, extra={**settings.extra, "sms_url": "http://127.0.0.1:9/send",
                                                 "sms_body": body}))
