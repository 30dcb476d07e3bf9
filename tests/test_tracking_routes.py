"""Clicks and opens, the public half: a letter received over SMTP, its link followed, the event recorded.

Through the Flask test client (the `site` fixture: the public app with the
mailing and gdpr plugins, mail going to a real loopback SMTP server) and
through `hub admin` serving in a process of its own, as in production.
"""

from __future__ import annotations

import datetime as dt
import email
import email.message
import email.policy
import logging
import re
from typing import Any

import pytest
import requests
from sqlalchemy import select, update

from hub import identity, message_templates, messaging, sync
from hub.db import utcnow
from hub.models import Message, MessageEvent
from hub.records import ContactRecord
from plugins.gdpr import erasure
from plugins.mailing import tracking
from tests.conftest import HubDB
from tests.support.public import PUBLIC, person
from tests.support.server import serving_admin
from tests.support.smtp import Mailbox

SALE = message_templates.Template(
    name="sale_links_email", channel="email", subject="Распродажа для {{ contact.first_name }}",
    text="{{ contact.first_name }}, всё со скидкой: https://shop.example.ru/sale?from=email&id=7\n"
         "Магазин на русском: https://магазин.рф/акция",
    html='<html><head><link href="https://fonts.example.ru/a.css" rel="stylesheet"></head><body>'
         '<p>{{ contact.first_name }}, <a href="https://shop.example.ru/sale?from=email&amp;id=7">'
         'всё со скидкой</a></p>'
         "<p><A HREF='https://магазин.рф/акция'>Магазин на русском</A> · "
         '<a href="mailto:shop@shop.example.ru">Написать нам</a></p></body></html>')
CLICK = re.compile(rf"{re.escape(PUBLIC)}(/c/[A-Za-z0-9_-]+)")
PIXEL = re.compile(rf'<img src="{re.escape(PUBLIC)}(/o/[A-Za-z0-9_-]+\.gif)"')


@pytest.fixture
def shop(hub_db: HubDB, site: Any) -> HubDB:
    with hub_db.engine.begin() as conn:
        message_templates.save(conn, hub_db.settings, SALE)
    return hub_db


def mail(db: HubDB, box: Mailbox, contact_id: int, key: str, purpose: str = "marketing") -> tuple[
        int, email.message.EmailMessage]:
    before = len(box.received)
    row = messaging.send(db.engine, db.settings, contact_id=contact_id, channel="email", template=SALE.name, key=key,
                         purpose=purpose)
    assert row["status"] == "sent", row["error"]
    (got,) = box.received[before:]
    return int(row["id"]), email.message_from_bytes(got.data, policy=email.policy.default)


def parts(letter: email.message.EmailMessage) -> tuple[str, str]:
    html = letter.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = letter.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return html, text


def events(db: HubDB, kind: str | None = None) -> list[Any]:
    e = MessageEvent.__table__
    with db.engine.connect() as conn:
        q = select(e).order_by(e.c.id)
        return list(conn.execute(q.where(e.c.kind == kind) if kind else q))


def test_a_received_letters_links_lead_through_hub_to_where_they_pointed(shop: HubDB, site: Any, mailbox,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    box, _ = mailbox
    anna = person(shop, email_="anna@example.ru", granted=("email/marketing",))
    message_id, letter = mail(shop, box, anna, "sale:anna")
    html, text = parts(letter)
    in_html, in_text = CLICK.findall(html), CLICK.findall(text)
    assert len(in_html) == 2 and in_text == in_html  # the same two links, the same tokens in both parts
    assert "https://fonts.example.ru/a.css" in html and "mailto:shop@shop.example.ru" in html
    assert "shop.example.ru/sale" not in html + text
    assert letter["List-Unsubscribe"].split(",")[0].strip(" <>").startswith(f"{PUBLIC}/u/")  # untouched
    assert not PIXEL.search(html)  # opens are off unless asked for

    client = site.test_client()
    caplog.set_level(logging.DEBUG)
    sale = client.get(in_html[0])
    assert sale.status_code == 302 and sale.headers["Location"] == "https://shop.example.ru/sale?from=email&id=7"
    russian = client.get(in_html[1])
    assert russian.status_code == 302 and russian.headers["Location"] == (
        "https://xn--80aairftm.xn--p1ai/%D0%B0%D0%BA%D1%86%D0%B8%D1%8F")
    assert client.head(in_html[0]).status_code == 302  # a link checker: answered, not counted
    assert client.get(in_html[0]).status_code == 302  # the same link again at once: still redirected, one click
    clicks = events(shop, "click")
    assert [(e.message_id, e.url) for e in clicks] == [
        (message_id, "https://shop.example.ru/sale?from=email&id=7"), (message_id, "https://магазин.рф/акция")]
    assert "anna@example.ru" not in caplog.text and "shop.example.ru/sale" not in caplog.text


def test_the_open_pixel_counts_gets_not_heads_and_is_never_cached(shop: HubDB, site: Any, mailbox,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    box, _ = mailbox
    shop.settings.extra["mail_tracking"] = "clicks,opens"  # type: ignore[index]
    anna = person(shop, email_="anna@example.ru", granted=("email/marketing",))
    message_id, letter = mail(shop, box, anna, "sale:anna")
    html, _ = parts(letter)
    pixel = PIXEL.search(html)
    assert pixel is not None and html.index(pixel[0]) < html.index("</body>")
    client = site.test_client()
    assert client.head(pixel[1]).status_code == 200 and events(shop, "open") == []
    got = client.get(pixel[1])
    assert got.status_code == 200 and got.mimetype == "image/gif" and got.data.startswith(b"GIF89a")
    assert "no-store" in got.headers["Cache-Control"]
    assert [e.message_id for e in events(shop, "open")] == [message_id]
    forged = client.get(pixel[1].replace(".gif", "x.gif"))
    assert forged.status_code == 404 and forged.mimetype == "image/gif"
    assert client.get(pixel[1][:-4]).status_code == 404  # without .gif
    assert len(events(shop, "open")) == 1


def test_transactional_letters_and_tracking_off_keep_their_links(shop: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    anna = person(shop, email_="anna@example.ru", granted=("email/marketing",))
    _, receipt = mail(shop, box, anna, "receipt:anna", purpose="transactional")
    assert not CLICK.search("".join(parts(receipt))) and "https://shop.example.ru/sale" in parts(receipt)[1]
    shop.settings.extra["mail_tracking"] = "off"  # type: ignore[index]
    _, plain = mail(shop, box, anna, "sale:anna")
    assert not CLICK.search("".join(parts(plain))) and "https://shop.example.ru/sale" in parts(plain)[1]


@pytest.mark.both_databases
@pytest.mark.parametrize("path", [
    "/c/", "/c/1", "/c/1-0-AAAAAAAAAAAAAAAA", "/c/" + "9" * 300, "/c/ссылка", "/c/1-0-%00%00", "/c/..%2F..%2Fetc",
    "/c/1-0-<script>alert(1)</script>", "/c/99999999999999999999-0-AAAAAAAAAAAAAAAA", "big", "big-open"])
def test_forged_truncated_and_hostile_tokens_get_a_russian_page(shop: HubDB, site: Any, path: str) -> None:
    key = shop.settings.require_secret_key().encode()
    if path == "big":  # signed, but no message can have such an id (PostgreSQL's integer ends at 2**31 - 1)
        path = f"/c/{tracking.click_token(key, 2**31, 0)}"
    if path == "big-open":
        path = f"/o/{tracking.open_token(key, 2**40)}.gif"
    page = site.test_client().get(path)
    assert page.status_code == 404
    if path.startswith("/c/") and path != "/c/":
        body = page.get_data(as_text=True)
        assert "Ссылка не работает" in body and "<script>" not in body and "Traceback" not in body
    assert events(shop) == []


def test_a_token_for_a_link_the_letter_does_not_have_or_a_deleted_letter(shop: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    anna = person(shop, email_="anna@example.ru", granted=("email/marketing",))
    message_id, _ = mail(shop, box, anna, "sale:anna")
    key = shop.settings.require_secret_key().encode()
    client = site.test_client()
    beyond = client.get(f"/c/{tracking.click_token(key, message_id, 7)}")
    assert beyond.status_code == 404 and "Ссылка не работает" in beyond.get_data(as_text=True)
    missing = client.get(f"/c/{tracking.click_token(key, message_id + 1000, 0)}")
    assert missing.status_code == 410 and "Ссылка больше не действует" in missing.get_data(as_text=True)
    with shop.engine.begin() as conn:
        conn.execute(update(Message.__table__).where(Message.__table__.c.id == message_id)
                     .values(body_html=None, body_text="<b>Новый текст без ссылок</b>"))
    assert client.get(f"/c/{tracking.click_token(key, message_id, 0)}").status_code == 404
    assert events(shop) == []


def test_an_erased_readers_link_no_longer_works_and_records_nothing(shop: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    anna = person(shop, email_="anna@example.ru", granted=("email/marketing",))
    _, letter = mail(shop, box, anna, "sale:anna")
    link = CLICK.findall(parts(letter)[0])[0]
    erasure.erase(shop.engine, shop.settings, anna)
    page = site.test_client().get(link)
    assert page.status_code == 410 and "Ссылка больше не действует" in page.get_data(as_text=True)
    assert events(shop, "click") == []
    english = site.test_client().get(link, headers={"Accept-Language": "en"})
    assert english.status_code == 410


def test_an_erased_readers_open_pixel_records_nothing(shop: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    shop.settings.extra["mail_tracking"] = "clicks,opens"  # type: ignore[index]
    anna = person(shop, email_="anna@example.ru", granted=("email/marketing",))
    _, letter = mail(shop, box, anna, "sale:anna")
    pixel = PIXEL.search(parts(letter)[0])
    assert pixel is not None
    erasure.erase(shop.engine, shop.settings, anna)
    got = site.test_client().get(pixel[1])
    assert got.status_code == 200 and got.mimetype == "image/gif"  # the picture, so the letter still shows
    assert events(shop, "open") == []


def merged_after_the_letter(shop: HubDB, box: Any) -> tuple[int, Any, int]:
    """A letter to Анна's work address, then her two contacts merged: (message id, letter, survivor)."""
    twin = person(shop, email_="anna.work@example.ru", name="Анна", granted=("email/marketing",))
    message_id, letter = mail(shop, box, twin, "sale:twin")
    with shop.engine.begin() as conn:
        anna = sync.write_contacts(conn, [ContactRecord(source="shop", first_name="Анна",
                                                        emails=["anna@example.ru"])],
                                   shop.settings, sync.Counts()).contact_ids[0]
        assert anna is not None
        identity.merge_contacts(conn, anna, twin, reason={"rule": "merged by hand"}, settings=shop.settings)
    return message_id, letter, anna


def owner_of(shop: HubDB, message_id: int) -> int | None:
    with shop.engine.connect() as conn:
        return conn.execute(select(Message.contact_id).where(Message.id == message_id)).scalar()


def test_an_open_after_a_merge_counts_for_the_survivor(shop: HubDB, site: Any, mailbox) -> None:
    shop.settings.extra["mail_tracking"] = "clicks,opens"  # type: ignore[index]
    message_id, letter, anna = merged_after_the_letter(shop, mailbox[0])
    pixel = PIXEL.search(parts(letter)[0])
    assert pixel is not None and site.test_client().get(pixel[1]).status_code == 200
    assert owner_of(shop, message_id) == anna and [e.message_id for e in events(shop, "open")] == [message_id]


def test_a_text_only_letters_links_lead_through_hub(shop: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    plain = message_templates.Template(name="plain_links_email", channel="email", subject="Новинки",
                                       text="{{ contact.first_name }}, новинки: https://shop.example.ru/new.\n"
                                            "Отписаться: {{ unsubscribe_url }}")
    with shop.engine.begin() as conn:
        message_templates.save(conn, shop.settings, plain)
    anna = person(shop, email_="anna@example.ru", granted=("email/marketing",))
    before = len(box.received)
    row = messaging.send(shop.engine, shop.settings, contact_id=anna, channel="email", template=plain.name,
                         key="plain:anna", purpose="marketing")
    assert row["status"] == "sent", row["error"]
    (got,) = box.received[before:]
    text = email.message_from_bytes(got.data, policy=email.policy.default).get_body(
        ("plain",)).get_content()  # type: ignore[union-attr]
    (link,) = CLICK.findall(text)
    assert "shop.example.ru/new" not in text and f"{PUBLIC}/u/" in text  # the unsubscribe link as it was
    answer = site.test_client().get(link)
    assert answer.status_code == 302 and answer.headers["Location"] == "https://shop.example.ru/new"
    assert [(e.message_id, e.url) for e in events(shop, "click")] == [(int(row["id"]), "https://shop.example.ru/new")]


def test_the_page_speaks_english_when_the_shop_does(shop: HubDB, site: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from hub.admin import create_app

    english = create_app(replace(shop.settings, language="en"))
    page = english.test_client().get("/c/1-0-AAAAAAAAAAAAAAAA")
    assert page.status_code == 404 and "The link does not work" in page.get_data(as_text=True)


def test_a_click_after_a_merge_counts_for_the_survivor(shop: HubDB, site: Any, mailbox) -> None:
    message_id, letter, anna = merged_after_the_letter(shop, mailbox[0])
    assert site.test_client().get(CLICK.findall(parts(letter)[0])[0]).status_code == 302
    assert owner_of(shop, message_id) == anna and [e.message_id for e in events(shop, "click")] == [message_id]


def test_the_production_server_redirects_and_records(hub_db: HubDB, tmp_path: Any, mailbox) -> None:
    """`hub admin` as it runs in production: its own process, the waitress server, the installed plugins."""
    box, port = mailbox
    with serving_admin(hub_db.url, tmp_path / "server") as server:
        shop_settings = {"public_url": server.url}
        settings = hub_db.settings
        from dataclasses import replace

        settings = replace(settings, extra={**settings.extra, **shop_settings, "smtp_url": f"smtp://127.0.0.1:{port}",
                                            "mail_from": "Лавка <shop@example.ru>"})
        import plugins.mailing
        from hub import plugins as hub_plugins

        hub_plugins.get_pm().register(plugins.mailing, name="mailing")
        db = replace(hub_db, settings=settings)
        with db.engine.begin() as conn:
            message_templates.save(conn, settings, SALE)
        anna = person(db, email_="anna@example.ru", granted=("email/marketing",))
        message_id, letter = mail(db, box, anna, "sale:anna")
        link = re.search(rf"{re.escape(server.url)}/c/[A-Za-z0-9_-]+", parts(letter)[0])
        assert link is not None
        answer = requests.get(link[0], allow_redirects=False, timeout=30)
        assert answer.status_code == 302 and answer.headers["Location"] == "https://shop.example.ru/sale?from=email&id=7"
        bad = requests.get(f"{server.url}/c/{'ы' * 250}", timeout=30)
        assert bad.status_code == 404 and "Ссылка не работает" in bad.text
        log = server.stop()
    assert [(e.message_id, e.url) for e in events(hub_db, "click")] == [
        (message_id, "https://shop.example.ru/sale?from=email&id=7")]
    assert "anna@example.ru" not in log and "Traceback" not in log


def test_a_bad_setting_holds_the_letters_instead_of_sending_them_untracked(shop: HubDB, site: Any, mailbox) -> None:
    box, _ = mailbox
    anna = person(shop, email_="anna@example.ru", granted=("email/marketing",))
    shop.settings.extra["mail_tracking"] = "yes please"  # type: ignore[index]
    row = messaging.send(shop.engine, shop.settings, contact_id=anna, channel="email", template=SALE.name,
                         key="sale:anna", purpose="marketing")
    assert row["status"] in ("queued", "deferred") and box.received == []
    shop.settings.extra["mail_tracking"] = "clicks"  # type: ignore[index]
    messaging.dispatch(shop.engine, shop.settings, now=utcnow() + dt.timedelta(minutes=5))  # after the pause
    (got,) = box.received
    assert CLICK.search(got.data.decode("utf-8", "replace"))


def test_the_file_channel_writes_letters_with_the_same_links(hub_db: HubDB, tmp_path: Any) -> None:
    """The demo's letters (no SMTP server: the file channel) carry the links a real send would."""
    from dataclasses import replace

    from hub.api import Outgoing
    from plugins.mailing.file import FileChannel

    settings = replace(hub_db.settings, extra={**hub_db.settings.extra, "public_url": PUBLIC,
                                               "outbox_dir": str(tmp_path / "outbox")})
    channel = FileChannel(settings, "email")
    channel.open()
    sent = channel.send(Outgoing(id=77, channel="email", contact_id=None, address="anna@example.ru",
                                 purpose="marketing", template=None, subject="Весна", text="https://shop.example.ru/",
                                 html='<a href="https://shop.example.ru/">Магазин</a>', key="k"))
    assert sent.status == "sent" and sent.provider_id is not None
    letter = email.message_from_bytes(open(sent.provider_id[5:], "rb").read(), policy=email.policy.default)
    html = letter.get_body(("html",)).get_content()  # type: ignore[union-attr]
    (token,) = CLICK.findall(html)
    assert tracking.read_click(settings, token[3:]) == (77, 0)


def test_an_address_typed_as_a_name_never_becomes_a_redirect_of_the_shop() -> None:
    """A person who signs up as «https://evil.example/phish» gets that text in the letter, not a signed redirect."""
    from tests.test_tracking import letter, settings

    from dataclasses import replace

    s = settings()
    original = replace(letter('<p>Здравствуйте, https://evil.example/phish! <a href="https://shop.ru/sale">Скидки</a>'
                              '</p>', "Здравствуйте, https://evil.example/phish! Скидки: https://shop.ru/sale"),
                       meta={"to_name": "https://evil.example/phish"})
    sent = tracking.track(s, original)
    assert "Здравствуйте, https://evil.example/phish!" in sent.text and "https://evil.example" in (sent.html or "")
    assert sent.text.count("/c/") == 1 and (sent.html or "").count("/c/") == 1
    links = tracking.targets(original.html, original.text)
    signed = [tracking.read_click(s, t) for t in re.findall(r"/c/([A-Za-z0-9_-]+)", sent.text + (sent.html or ""))]
    assert {links[i[1]] for i in signed if i is not None} == {"https://shop.ru/sale"}  # no token leads elsewhere
