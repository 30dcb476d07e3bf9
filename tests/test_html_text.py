"""The text part written from a letter's HTML: what a person would type, never markup."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from hub import message_templates
from hub.html_text import to_text


def test_a_whole_letter_reads_as_text() -> None:
    html = """<!doctype html><html><head><title>Письмо</title>
    <style>p { color: red }</style><meta charset="utf-8"></head><body>
    <div style="display:none;max-height:0">Скрытый прехедер</div>
    <h1>Весна &amp; скидки</h1>
    <p>Здравствуйте,   Анна!<br>Ваш код: <b>ANNA-7K2Q</b>&nbsp;&mdash; скидка 15%.</p>
    <ul><li>Розы</li><li>Тюльпаны <a href="https://shop.example/t">смотреть</a></li></ul>
    <ol><li>Выберите</li><li>Оплатите<ul><li>картой</li></ul></li></ol>
    <table><tr><th>Товар</th><th>Цена</th></tr><tr><td>Розы</td><td>1 500 ₽</td></tr></table>
    <p><a href="https://shop.example/sale" style="background:#d33">Купить</a></p>
    <script>alert("x")</script><img src="logo.png" alt="Цветочная лавка">
    </body></html>"""
    assert to_text(html) == "\n".join([
        "Весна & скидки",
        "",
        "Здравствуйте, Анна!",
        "Ваш код: ANNA-7K2Q — скидка 15%.",
        "",
        "- Розы",
        "- Тюльпаны смотреть (https://shop.example/t)",
        "",
        "1. Выберите",
        "2. Оплатите",
        "  - картой",
        "",
        "Товар | Цена",
        "Розы | 1 500 ₽",
        "",
        "Купить (https://shop.example/sale)",
        "",
        "Цветочная лавка",
    ])


@pytest.mark.parametrize(("html", "text"), [
    ('<a href="https://shop.example">https://shop.example</a>', "https://shop.example"),  # the URL once
    ('<a href="mailto:shop@example.ru">shop@example.ru</a>', "shop@example.ru"),
    ('<a href="mailto:shop@example.ru">Напишите нам</a>', "Напишите нам (shop@example.ru)"),
    ('<a href="javascript:alert(1)">Нажми</a>', "Нажми"),  # no script URL in the text
    ('<a href="#top">Наверх</a>', "Наверх"),
    ('<a href="https://shop.example/x"></a>', "https://shop.example/x"),
    ("<p>a</p><p>b</p>", "a\n\nb"),
    ("<div>a</div><div>b</div>", "a\nb"),
    ("строка<br/>вторая<br>третья", "строка\nвторая\nтретья"),
    ("<pre>  отступ\n    сохранён</pre>", "  отступ\n    сохранён"),
    ("&lt;script&gt; &#1046; &quot;кавычки&quot;", '<script> Ж "кавычки"'),
    ("<p>не закрыт <b>тег", "не закрыт тег"),
    ("<span hidden>нет</span>да", "да"),
    ("<div style='DISPLAY: NONE'><div>вложенный</div></div>видно", "видно"),
    ("<table><tr><td><table><tr><td>внутри</td></tr></table></td></tr></table>", "внутри"),
    ("", ""),
])
def test_pieces(html: str, text: str) -> None:
    assert to_text(html) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/ab p=\"'&;#li\n")), max_size=200))
def test_any_markup_becomes_text_without_failing(html: str) -> None:
    out = to_text(html)
    assert "<p>" not in out and "<li>" not in out and "\n\n\n" not in out


def test_an_email_without_a_text_part_renders_one_from_its_html() -> None:
    template = message_templates.Template(name="t", channel="email", subject="s", text="",
                                          html='<p>Привет, {{ name }}!</p><a href="{{ url }}">Отписаться</a>')
    rendered = message_templates.render(template, {"name": "<Анна>", "url": "https://x.example/u/1"})
    assert rendered.text == "Привет, <Анна>!\n\nОтписаться (https://x.example/u/1)"
    assert not message_templates.writes_text(template)
    written = message_templates.render(replace(template, text="Свой текст"), {"name": "А", "url": "u"})
    assert written.text == "Свой текст"  # a text part someone wrote is kept as written
