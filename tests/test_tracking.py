"""Clicks and opens, the rewriting half: which links of which letters go through Hub; tokens nobody can forge."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from hub.api import ChannelUnavailable, Outgoing, Settings, SettingsError
from hub.i18n import use_language
from plugins.mailing import tracking

PUBLIC = "https://hub.example.ru"
UNSUBSCRIBE = f"{PUBLIC}/u/signed-unsubscribe-token"
TOKEN_URL = re.compile(rf"{re.escape(PUBLIC)}/c/([A-Za-z0-9_-]+)")


def settings(mode: str | None = "clicks", **extra: Any) -> Settings:
    values = {"public_url": PUBLIC, **extra}
    if mode is not None:
        values["mail_tracking"] = mode
    return Settings(secret_key="test-secret-key-0123456789abcdef", extra=values)


def letter(html: str | None, text: str = "", *, purpose: str = "marketing", channel: str = "email",
           message_id: int = 4711) -> Outgoing:
    return Outgoing(id=message_id, channel=channel, contact_id=1, address="anna@example.ru", purpose=purpose,
                    template="sale", subject="Распродажа", text=text, html=html, key="k",
                    meta={"unsubscribe_url": UNSUBSCRIBE})


def clicked(s: Settings, sent: str | None) -> list[tuple[int, int]]:
    """(message, index) of every tracking link in a sent part, in order."""
    found = []
    for token in TOKEN_URL.findall(sent or ""):
        read = tracking.read_click(s, token)
        assert read is not None, token
        found.append(read)
    return found


def where(s: Settings, original: Outgoing, sent: str | None) -> list[str]:
    """Where each tracking link of a sent part leads: what the redirect will read from the stored letter."""
    links = tracking.targets(original.html, original.text)
    return [links[index] for _, index in clicked(s, sent)]


# --- the setting --------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "clicks", "opens"), [
    (None, True, False), ("clicks", True, False), ("clicks,opens", True, True), (" Opens , CLICKS ", True, True),
    ("off", False, False), ("opens", False, True)])
def test_the_setting_reads_clicks_opens_or_off(raw: str | None, clicks: bool, opens: bool) -> None:
    assert tracking.mode(settings(raw)) == tracking.Tracking(clicks, opens)


@pytest.mark.parametrize("raw", ["on", "clicks;opens", "clicks,off", "yes", "клики"])
def test_a_bad_setting_is_refused_in_russian_naming_the_variable(raw: str) -> None:
    with use_language("ru"), pytest.raises(SettingsError) as caught:
        tracking.mode(settings(raw))
    assert "HUB_MAIL_TRACKING" in str(caught.value) and "используйте" in str(caught.value)
    with use_language("ru"), pytest.raises(ChannelUnavailable, match="HUB_MAIL_TRACKING"):
        tracking.track(settings(raw), letter('<a href="https://shop.ru/">x</a>'))  # the letters wait, none is lost


# --- what is rewritten ----------------------------------------------------------------------

def test_every_http_link_of_the_html_goes_through_hub_and_leads_back_where_it_pointed() -> None:
    s = settings()
    html = ('<html><head><link href="https://fonts.example.ru/a.css" rel="stylesheet">'
            '<a href="https://head.example.ru/">in head</a></head><body>'
            '<a href="https://shop.ru/sale?utm_source=hub&amp;utm_medium=email">Распродажа</a> '
            "<A HREF='https://shop.ru/Catalog'>Каталог</A> "
            '<a class="btn" data-x=\'a>b\' href = https://shop.ru/bare>Голая</a> '
            '<a\nhref="http://shop.ru/plain">http</a>'
            '<a href="mailto:shop@shop.ru">почта</a> <a href="tel:+74950000000">телефон</a> <a href="#top">вверх</a>'
            f'<a href="{UNSUBSCRIBE}">Отписаться</a> <a href="{PUBLIC}/preferences/tok">Настройки</a> '
            f'<a href="{PUBLIC}/confirm/tok">Подтвердить</a> <!-- <a href="https://hidden.example.ru/">x</a> -->'
            '<a href="https://магазин.рф/акция?код=ВЕСНА">РФ</a></body></html>')
    original = letter(html)
    sent = tracking.track(s, original)
    assert where(s, original, sent.html) == [
        "https://shop.ru/sale?utm_source=hub&utm_medium=email", "https://shop.ru/Catalog", "https://shop.ru/bare",
        "http://shop.ru/plain", "https://магазин.рф/акция?код=ВЕСНА"]
    assert {m for m, _ in clicked(s, sent.html)} == {4711} and sent.html is not None
    for kept in ("https://fonts.example.ru/a.css", "https://head.example.ru/", "mailto:shop@shop.ru",
                 "tel:+74950000000", 'href="#top"', UNSUBSCRIBE, f"{PUBLIC}/preferences/tok",
                 f"{PUBLIC}/confirm/tok", "https://hidden.example.ru/"):
        assert kept in sent.html
    assert "shop.ru/sale" not in sent.html and "магазин.рф" not in sent.html
    assert "<A HREF='https://hub.example.ru/c/" in sent.html  # the quoting a letter used is kept
    assert '<a class="btn" data-x=\'a>b\' href = "https://hub.example.ru/c/' in sent.html
    assert '<a\nhref="https://hub.example.ru/c/' in sent.html
    # Only the links changed: the letter with its tracking links put back is the letter as written.
    back = TOKEN_URL.sub(lambda m: "TRACKED", sent.html)
    assert back == TOKEN_URL.sub(lambda m: "TRACKED", html.replace(
        "https://shop.ru/sale?utm_source=hub&amp;utm_medium=email", f"{PUBLIC}/c/x").replace(
        "'https://shop.ru/Catalog'", f"'{PUBLIC}/c/x'").replace("https://shop.ru/bare", f'"{PUBLIC}/c/x"').replace(
        "http://shop.ru/plain", f"{PUBLIC}/c/x").replace("https://магазин.рф/акция?код=ВЕСНА", f"{PUBLIC}/c/x"))


def test_links_in_the_text_part_go_through_hub_without_their_trailing_punctuation() -> None:
    s = settings()
    text = ("Скидки тут: https://shop.ru/sale. Каталог (https://shop.ru/catalog), «https://shop.ru/new»\n"
            "Ещё раз: https://shop.ru/catalog!\n"
            f"Отписаться: {UNSUBSCRIBE}\nНастройки: {PUBLIC}/preferences/tok")
    original = letter('<p><a href="https://shop.ru/sale">Скидки</a></p>', text)
    sent = tracking.track(s, original)
    # Every link of the text, those the HTML lacks too, each leading back where it pointed.
    assert where(s, original, sent.text) == ["https://shop.ru/sale", "https://shop.ru/catalog", "https://shop.ru/new",
                                             "https://shop.ru/catalog"]
    assert "shop.ru/catalog" not in sent.text and "shop.ru/new" not in sent.text
    tokens = TOKEN_URL.findall(sent.text)
    # The same address in both parts is one link: the same token; the same text link twice is one link too.
    assert tokens[0] == TOKEN_URL.findall(sent.html or "")[0] and tokens[1] == tokens[3] != tokens[2]
    assert "Скидки тут: https://hub.example.ru/c/" in sent.text and re.search(r"/c/\S+\. Каталог \(", sent.text)
    assert re.search(r"\(https://hub\.example\.ru/c/[^)\s]+\), «https://hub\.example\.ru/c/[^»\s]+»", sent.text)
    assert UNSUBSCRIBE in sent.text and f"{PUBLIC}/preferences/tok" in sent.text


def test_a_text_link_whose_html_twin_differs_is_tracked_on_its_own() -> None:
    s = settings()
    original = letter('<a href="https://shop.ru/sale?utm_source=hub&amp;x=1">Распродажа</a>',
                      "Распродажа: https://shop.ru/sale?utm_source=hub")
    sent = tracking.track(s, original)
    assert where(s, original, sent.html) == ["https://shop.ru/sale?utm_source=hub&x=1"]
    assert where(s, original, sent.text) == ["https://shop.ru/sale?utm_source=hub"]
    assert "shop.ru" not in sent.text


def test_a_text_only_letter_and_a_letter_without_links() -> None:
    s = settings()
    only_text = letter(None, "Заходите: https://shop.ru/\nОтписаться: " + UNSUBSCRIBE)
    sent = tracking.track(s, only_text)
    assert where(s, only_text, sent.text) == ["https://shop.ru/"] and "Заходите: https://hub.example.ru/c/" in sent.text
    assert UNSUBSCRIBE in sent.text and sent.html is None
    plain = letter("<p>Без ссылок</p>", "Без ссылок")
    assert tracking.track(s, plain) == plain


def test_a_link_inside_the_readers_name_is_never_a_redirect() -> None:
    """A name typed into a form may hold an address: Hub's redirect must lead only where the template pointed."""
    s = settings()
    spam = "https://spam.example.com/win"
    original = dataclasses.replace(letter(f"<p>Здравствуйте, {spam}!</p>", f"Здравствуйте, {spam}!\n"
                                          f"Ещё раз {spam}\nНовинки: https://shop.ru/new"),
                                   meta={"unsubscribe_url": UNSUBSCRIBE, "to_name": f"{spam} Иванова"})
    sent = tracking.track(s, original)
    assert sent.text.count(spam) == 2 and where(s, original, sent.text) == ["https://shop.ru/new"]


def test_five_hundred_links_each_get_their_own_token() -> None:
    s = settings()
    html = "".join(f'<a href="https://shop.ru/item/{i}">{i}</a>' for i in range(500))
    original = letter(html)
    sent = tracking.track(s, original)
    assert where(s, original, sent.html) == [f"https://shop.ru/item/{i}" for i in range(500)]
    assert max(len(t) for t in TOKEN_URL.findall(sent.html or "")) <= 30


def test_transactional_mail_sms_and_test_letters_are_never_tracked() -> None:
    s = settings("clicks,opens")
    html = '<html><body><a href="https://shop.ru/order/1">Заказ</a></body></html>'
    for untouched in (letter(html, "https://shop.ru/order/1", purpose="transactional"),
                      letter(None, "https://shop.ru/x", channel="sms"),
                      letter(html, "https://shop.ru/x", message_id=0)):
        assert tracking.track(s, untouched) == untouched


def test_off_leaves_letters_alone_and_opens_add_one_pixel_before_the_body_ends() -> None:
    html = '<html><body><a href="https://shop.ru/">Магазин</a></body></html>'
    assert tracking.track(settings("off"), letter(html, "https://shop.ru/")) == letter(html, "https://shop.ru/")
    s = settings("clicks,opens")
    sent = tracking.track(s, letter(html))
    pixel = re.search(rf'<img src="{re.escape(PUBLIC)}/o/([^"]+)\.gif" width="1" height="1" alt=""[^>]*></body>',
                      sent.html or "")
    assert pixel is not None and tracking.read_open(s, pixel[1]) == 4711
    only_opens = tracking.track(settings("opens"), letter(html))
    assert 'href="https://shop.ru/"' in (only_opens.html or "") and "/o/" in (only_opens.html or "")
    no_body = tracking.track(s, letter("<p>фрагмент</p>"))
    assert (no_body.html or "").startswith("<p>фрагмент</p>") and (no_body.html or "").endswith(".gif\" width=\"1\" "
                                                                                              "height=\"1\" alt=\"\" "
                                                                                              "style=\"display:block;"
                                                                                              "border:0\">")


# --- tokens ---------------------------------------------------------------------------------

def test_tokens_are_short_and_cannot_be_forged_or_moved_to_another_letter() -> None:
    s = settings()
    key = s.require_secret_key().encode()
    token = tracking.click_token(key, 4711, 3)
    assert len(token) <= 30 and tracking.read_click(s, token) == (4711, 3)
    number, index, signature = token.split("-", 2)
    other = "A" if signature[0] != "A" else "B"
    for forged in (f"4712-{index}-{signature}", f"{number}-4-{signature}", f"{number}-{index}-{other}{signature[1:]}",
                   token[:-1], token + "x", "", "1-2", "x" * 201, token + "й", "١٢-3-" + signature,
                   f"{number}-{index}-{signature}/../x"):
        assert tracking.read_click(s, forged) is None, forged
    assert tracking.read_click(settings(), token) == (4711, 3)
    assert tracking.read_click(Settings(secret_key="another-key-0123456789abcdef", extra={}), token) is None
    assert tracking.read_open(s, token) is None and tracking.read_click(s, tracking.open_token(key, 4711)) is None
