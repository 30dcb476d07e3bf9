"""Sender settings: From, Reply-To, the per-message return path and the footer, read back from a real SMTP server."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import plugins.mailing
from hub import consent, messaging, sync
from hub.config import SettingsError
from hub.i18n import use_language
from hub.message_templates import Template
from hub.models import Message
from hub.records import ContactRecord
from plugins.mailing import verp
from plugins.mailing.email import EmailChannel, Sender
from tests.conftest import HubDB

LEGAL = {"company_name": "Цветочная лавка", "company_legal_name": "ООО «Цветочная лавка»",
         "company_inn": "7701234567", "company_ogrn": "1027700132195", "company_address": "Москва, ул. Садовая, 1"}
LEGAL_LINE = "ООО «Цветочная лавка», ИНН 7701234567, ОГРН 1027700132195, Москва, ул. Садовая, 1"
PROMO = {"promo": {"code": "LAVKA-15", "discount": 15, "expires_at": "2026-12-31"}}


@pytest.fixture
def mailing(plugin_manager):
    plugin_manager.register(plugins.mailing, name="mailing")
    return plugin_manager


def settings_for(db: HubDB, **extra: Any):
    return replace(db.settings, extra={**db.settings.extra, "mail_from": "Цветочная лавка <shop@example.ru>",
                                       "public_url": "https://hub.example.ru", **LEGAL, **extra})


def person(db: HubDB, first: str, address: str) -> int:
    with db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="t", first_name=first, last_name="Иванова",
                                                       emails=[address])], db.settings, sync.Counts()).contact_ids[0]
        consent.record(conn, cid, "email", "marketing", "granted", source="form")
        consent.record(conn, cid, "email", "surveys", "granted", source="form")
    return cid


def message_id(db: HubDB, address: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(Message.id).where(Message.address == address)).scalar_one()


# --- headers and envelope -----------------------------------------------------------------

@pytest.mark.both_databases
def test_the_envelope_names_the_message_and_replies_go_where_the_shop_says(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = settings_for(hub_db, smtp_url=f"smtp://127.0.0.1:{port}", mail_return_path="bounces@example.ru",
                            mail_reply_to="Служба заботы <care@example.ru>")
    cid = person(hub_db, "Анна", "anna@example.ru")
    messaging.create_many(hub_db.engine, settings, [cid], channel="email", template="reactivation_email",
                          key_prefix="r", context=PROMO)
    assert messaging.dispatch(hub_db.engine, settings).sent == 1

    got = box.received[0]
    mid = message_id(hub_db, "anna@example.ru")
    assert got.mail_from == verp.return_path(settings, mid)
    assert got.mail_from.startswith(f"bounces+{mid}-") and got.mail_from.endswith("@example.ru")
    assert verp.message_id_of(settings, got.mail_from) == mid  # a bounce to it names this message
    msg = got.message
    assert msg["Reply-To"].addresses[0].addr_spec == "care@example.ru"
    assert msg["Reply-To"].addresses[0].display_name == "Служба заботы"
    assert msg["From"].addresses[0].addr_spec == "shop@example.ru"  # the From stays the shop's
    assert "Return-Path" not in msg  # the receiving server writes it from MAIL FROM


def test_without_a_bounce_mailbox_the_envelope_is_the_from_address(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = settings_for(hub_db, smtp_url=f"smtp://127.0.0.1:{port}")
    cid = person(hub_db, "Анна", "anna@example.ru")
    messaging.create_many(hub_db.engine, settings, [cid], channel="email", template="welcome_email", key_prefix="w")
    assert messaging.dispatch(hub_db.engine, settings).sent == 1
    assert box.received[0].mail_from == "shop@example.ru"
    assert "Reply-To" not in box.received[0].message


def test_the_file_channel_writes_the_same_headers(hub_db: HubDB, mailing, tmp_path: Path) -> None:
    settings = settings_for(hub_db, outbox_dir=str(tmp_path / "out"), mail_return_path="bounces@example.ru",
                            mail_reply_to="care@example.ru")
    cid = person(hub_db, "Анна", "anna@example.ru")
    messaging.create_many(hub_db.engine, settings, [cid], channel="email", template="reactivation_email",
                          key_prefix="r", context=PROMO)
    assert messaging.dispatch(hub_db.engine, settings).sent == 1
    [path] = (tmp_path / "out").iterdir()
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    mid = message_id(hub_db, "anna@example.ru")
    assert msg["Return-Path"] == f"<{verp.return_path(settings, mid)}>"
    assert msg["Reply-To"] == "care@example.ru"
    text = msg.get_body(("plain",)).get_content()
    assert LEGAL_LINE in text and "Вы получили это письмо, потому что подписались" in text


# --- the footer ---------------------------------------------------------------------------

def test_marketing_letters_end_with_the_reason_the_legal_details_and_one_unsubscribe_link(
        hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = settings_for(hub_db, smtp_url=f"smtp://127.0.0.1:{port}")
    cid = person(hub_db, "Анна", "anna@example.ru")
    messaging.create_many(hub_db.engine, settings, [cid], channel="email", template="reactivation_email",
                          key_prefix="r", context=PROMO)
    assert messaging.dispatch(hub_db.engine, settings).sent == 1
    msg = box.received[0].message
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = msg.get_body(("html",)).get_content()
    reason = "Вы получили это письмо, потому что подписались на новости магазина «Цветочная лавка»."
    assert reason in text and LEGAL_LINE in text
    assert reason in html and LEGAL_LINE.replace("«", "&laquo;") in html or LEGAL_LINE in html
    unsubscribe = msg["List-Unsubscribe"].split(",")[0].strip(" <>")
    assert text.count(unsubscribe) == 1 and html.count(unsubscribe) == 1  # the template's own link is enough
    assert html.index(reason) < html.index("</body>")  # inside the page, not after it
    with hub_db.engine.connect() as conn:
        stored = conn.execute(select(Message.body_text)).scalar_one()
    assert text.startswith(stored.rstrip())  # the rendered letter, then the footer


def test_a_template_a_marketer_wrote_without_a_footer_gets_one(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = settings_for(hub_db, smtp_url=f"smtp://127.0.0.1:{port}",
                            mail_reason="Вы подписались на «Клуб садовода» на сайте <лавка.рф>.")
    cid = person(hub_db, "Анна", "anna@example.ru")
    bare = Template(name="sale", channel="email", subject="Распродажа", text="Всё по 100 ₽.\n",
                    html="<html><body><p>Всё по 100 ₽.</p></body></html>")
    with hub_db.engine.begin() as conn:
        messaging.create(conn, settings, contact_id=cid, channel="email", template=bare, key="sale")
    assert messaging.dispatch(hub_db.engine, settings).sent == 1
    msg = box.received[0].message
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = msg.get_body(("html",)).get_content()
    unsubscribe = msg["List-Unsubscribe"].split(",")[0].strip(" <>")
    assert f"Отписаться от рассылки: {unsubscribe}" in text
    assert f'href="{unsubscribe}"' in html and "Отписаться от рассылки</a>" in html
    assert "Вы подписались на «Клуб садовода» на сайте <лавка.рф>." in text
    assert "на сайте &lt;лавка.рф&gt;." in html and "<лавка.рф>" not in html  # the setting is text, not markup
    assert html.rstrip().endswith("</body></html>")


def test_survey_letters_give_their_own_reason(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = settings_for(hub_db, smtp_url=f"smtp://127.0.0.1:{port}")
    cid = person(hub_db, "Анна", "anna@example.ru")
    bare = Template(name="poll", channel="email", subject="Опрос", text="Оцените нас.\n")
    with hub_db.engine.begin() as conn:
        messaging.create(conn, settings, contact_id=cid, channel="email", template=bare, key="poll", purpose="surveys")
    messaging.dispatch(hub_db.engine, settings)
    text = box.received[0].message.get_body(("plain",)).get_content()
    assert "потому что согласились участвовать в наших опросах" in text and "подписались на новости" not in text


def test_transactional_mail_names_the_company_but_gives_no_marketing_reason(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = settings_for(hub_db, smtp_url=f"smtp://127.0.0.1:{port}")
    cid = person(hub_db, "Анна", "anna@example.ru")
    receipt = Template(name="receipt", channel="email", subject="Заказ принят", text="Заказ №15 принят.\n",
                       html="<p>Заказ №15 принят.</p>")
    with hub_db.engine.begin() as conn:
        messaging.create(conn, settings, contact_id=cid, channel="email", template=receipt, key="receipt:15",
                         purpose="transactional")
    messaging.dispatch(hub_db.engine, settings)
    msg = box.received[0].message
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert LEGAL_LINE in text and "Вы получили это письмо" not in text and "Отписаться" not in text
    assert "ИНН 7701234567" in html and "Отписаться" not in html


def test_the_footer_speaks_the_shops_language_and_knows_a_sole_trader(hub_db: HubDB, mailing) -> None:
    settings = settings_for(hub_db, company_legal_name="ИП Петров Пётр Петрович", company_ogrn="304770000123456")
    with use_language("en"):
        sender = Sender.from_settings(settings, required=True)
    assert sender.footer is not None
    assert sender.footer.legal == ("ИП Петров Пётр Петрович, INN 7701234567, OGRNIP 304770000123456, "
                                   "Москва, ул. Садовая, 1")
    assert sender.footer.reasons[""].startswith("You received this letter because you subscribed")
    nothing = replace(hub_db.settings, extra={**hub_db.settings.extra, "mail_from": "shop@example.ru"})
    footer = Sender.from_settings(nothing, required=True).footer
    assert footer is not None and footer.legal == ""
    assert footer.reasons[""] == "Вы получили это письмо, потому что подписались на наши новости."


# --- hostile settings ---------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "words"), [
    ("mail_from", "Shop <shop@example.ru>\nBcc: everyone@example.ru", "HUB_MAIL_FROM: в значении перевод строки"),
    ("mail_from", "Лавка <shop@example.ru>, Другая <x@example.ru>", "HUB_MAIL_FROM: "),
    ("mail_from", "просто текст", "не один адрес электронной почты"),
    ("mail_reply_to", "care@example.ru\r\nSubject: взлом", "HUB_MAIL_REPLY_TO: в значении перевод строки"),
    ("mail_reply_to", "care at example.ru", "HUB_MAIL_REPLY_TO: 'care at example.ru' — не один адрес"),
    ("mail_reply_to", "care@", "HUB_MAIL_REPLY_TO"),
    ("mail_return_path", "bounces+x@example.ru", "HUB_MAIL_RETURN_PATH"),
    ("mail_reason", "Причина\x1b[31m", "HUB_MAIL_REASON: в тексте управляющие символы"),
    ("mail_reason", "слово " * 200, "HUB_MAIL_REASON: символов — 1199; сократите текст до 500"),
    ("mail_reason_surveys", "Опрос\x00", "HUB_MAIL_REASON_SURVEYS: в тексте управляющие символы"),
])
def test_hostile_sender_settings_are_refused_in_russian(hub_db: HubDB, mailing, key: str, value: str,
                                                       words: str) -> None:
    settings = settings_for(hub_db, smtp_url="smtp://127.0.0.1:25", **{key: value})
    with pytest.raises(SettingsError) as caught:
        EmailChannel(settings)
    assert words in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_a_cyrillic_reply_to_name_travels_encoded(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = settings_for(hub_db, smtp_url=f"smtp://127.0.0.1:{port}", mail_reply_to="Отдел заботы <care@example.ru>")
    cid = person(hub_db, "Анна", "anna@example.ru")
    messaging.create_many(hub_db.engine, settings, [cid], channel="email", template="welcome_email", key_prefix="w")
    messaging.dispatch(hub_db.engine, settings)
    raw = box.received[0].data
    assert b"\r\nReply-To: =?utf-8?b?" in raw  # headers stay 7-bit
    assert all(line.isascii() for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"))
