"""A test letter through a real SMTP server: it arrives once, marked, and leaves no trace in the outbox."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import plugins.mailing
from hub import message_templates, sync
from hub.i18n import use_language
from hub.messaging import MessagingError
from hub.messaging import test_send as test_send_module
from hub.messaging.test_send import check_address, send_test
from hub.models import AuditEntry, ConsentEvent, Message, Suppression
from hub.records import ContactRecord
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases


@pytest.fixture
def mailing(plugin_manager):
    plugin_manager.register(plugins.mailing, name="mailing")
    return plugin_manager


def smtp_settings(db: HubDB, port: int, **extra: Any):
    return replace(db.settings, extra={**db.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
                                       "mail_from": "Цветочная лавка <shop@example.ru>",
                                       "public_url": "https://hub.example.ru", **extra})


LETTER = message_templates.Template(
    name="spring", channel="email", subject="{{ contact.first_name }}, весна: скидка {{ promo.discount }}%",
    text="Код {{ promo.code }}. Отписаться: {{ unsubscribe_url }}",
    html='<p>Код <b>{{ promo.code }}</b></p><a href="{{ unsubscribe_url }}">Отписаться</a>')


def count(db: HubDB, table: Any) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_the_test_letter_arrives_once_marked_and_nowhere_else(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    with hub_db.engine.begin() as conn:
        cid = sync.write_contacts(conn, [ContactRecord(source="t", first_name="Борис", last_name="Петров",
                                                       emails=["boris@example.ru"])],
                                  settings, sync.Counts()).contact_ids[0]
    events = count(hub_db, ConsentEvent.__table__)
    with use_language("ru"):
        sent = send_test(hub_db.engine, settings, template=LETTER, channel="email", to=" Marketer@Shop.example ",
                         contact_id=cid, context={"promo": {"code": "SPRING-5", "discount": 5,
                                                            "expires_at": None}})
    assert sent["address"] == "Marketer@shop.example"
    assert sent["subject"] == "[Тест] Борис, весна: скидка 5%"
    assert len(box.received) == 1
    got = box.received[0]
    assert got.rcpt_tos == ["Marketer@shop.example"]  # the staff member's address, never the contact's
    msg = got.message
    assert msg["Subject"] == "[Тест] Борис, весна: скидка 5%" and msg["Message-ID"] == sent["provider_id"]
    assert "List-Unsubscribe" not in msg
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "SPRING-5" in text and "<b>SPRING-5</b>" in html
    preview_link = f"https://hub.example.ru/u/{message_templates.PREVIEW_TOKEN}"
    assert preview_link in text and preview_link in html  # links render, but none is a signed one
    # Nothing in the outbox, the consent ledger or the suppressions.
    assert count(hub_db, Message.__table__) == 0
    assert count(hub_db, ConsentEvent.__table__) == events
    assert count(hub_db, Suppression.__table__) == 0
    # The messaging layer writes no audit: its callers (the template editor, a campaign) write their own.
    assert count(hub_db, AuditEntry.__table__) == 0


def test_without_a_mail_server_each_test_is_its_own_file_and_the_answer_says_where(hub_db: HubDB, mailing,
                                                                                   tmp_path: Path) -> None:
    """The file channel (no HUB_SMTP_URL) names each test letter apart and send_test says which file it is."""
    outbox = tmp_path / "outbox"
    extra = {k: v for k, v in hub_db.settings.extra.items() if k != "smtp_url"}
    settings = replace(hub_db.settings, extra={**extra, "outbox_dir": str(outbox),
                                               "mail_from": "Лавка <shop@example.ru>"})
    with use_language("ru"):
        first = send_test(hub_db.engine, settings, template=LETTER, channel="email", to="marketer@shop.example",
                          contact_id=None)
        second = send_test(hub_db.engine, settings, template=LETTER, channel="email", to="marketer@shop.example",
                           contact_id=None)
        told = test_send_module.sent_text(first)
    files = sorted(outbox.iterdir())
    assert len(files) == 2 and first["file"] != second["file"]  # the second test did not overwrite the first
    assert {Path(first["file"]), Path(second["file"])} == set(files)
    assert all(f.name.startswith("test-") and f.name.endswith("-email.eml") for f in files)
    assert "marketer@shop.example" in Path(first["file"]).read_text(encoding="utf-8")
    assert told == f"Почтовый сервер не настроен: письмо записано в файл {first['file']}."
    assert count(hub_db, Message.__table__) == 0
    with use_language("ru"):
        told_sent = test_send_module.sent_text({"address": "a@b.ru", "file": None})
    assert told_sent == "Тестовое письмо отправлено на a@b.ru."


def test_the_sample_contact_and_a_shipped_template_by_name(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    with use_language("en"):
        sent = send_test(hub_db.engine, settings, template="reactivation_email", channel="email",
                         to="me@shop.example", contact_id=None)
    assert sent["subject"].startswith("[Test] ")
    assert len(box.received) == 1 and "Анна" in box.received[0].message["Subject"]


def test_html_only_letters_get_a_text_part_written_from_the_html(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port)
    letter = replace(LETTER, text="", html="<h1>Весна</h1><p>Код <a href='https://shop.example/s'>здесь</a></p>")
    send_test(hub_db.engine, settings, template=letter, channel="email", to="me@shop.example", contact_id=None)
    text = box.received[0].message.get_body(("plain",)).get_content()
    assert "Весна" in text and "здесь (https://shop.example/s)" in text and "<" not in text


@pytest.mark.parametrize(("channel", "to", "error"), [
    ("email", "anna@", "anna@ — это не адрес электронной почты."),
    ("email", "", "Укажите адрес, на который отправить тест."),
    ("email", "a" * 400 + "@x.ru", "Адрес слишком длинный (не больше 320 символов)."),
    ("email", "<script>@x.ru", "<script>@x.ru — это не адрес электронной почты."),
    ("sms", "12345", "12345 — это не номер телефона."),
    ("sms", "телефон", "телефон — это не номер телефона."),
])
def test_a_bad_address_is_named_in_russian(hub_db: HubDB, mailing, mailbox, channel: str, to: str,
                                           error: str) -> None:
    box, port = mailbox
    with use_language("ru"), pytest.raises(MessagingError) as caught:
        send_test(hub_db.engine, smtp_settings(hub_db, port), template=LETTER, channel=channel, to=to,
                  contact_id=None)
    assert str(caught.value) == error
    assert box.received == [] and count(hub_db, AuditEntry.__table__) == 0


def test_unknown_channel_template_error_and_missing_contact(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    settings = smtp_settings(hub_db, port)

    def attempt(**changes: Any) -> str:
        args: dict[str, Any] = {"template": LETTER, "channel": "email", "to": "me@shop.example", "contact_id": None,
                                **changes}
        with use_language("ru"), pytest.raises(MessagingError) as caught:
            send_test(hub_db.engine, settings, **args)
        return str(caught.value)

    assert attempt(channel="pigeon").startswith("нет канала 'pigeon'")
    assert "неизвестная переменная «coupon»" in attempt(template=replace(LETTER, text="{{ coupon }}"))
    assert "{{ ''.__class__ }}" not in attempt(template=replace(LETTER, text="{{ ''.__class__.__mro__ }}"))
    assert attempt(contact_id=999999) == "нет контакта с id 999999"
    assert "нет шаблона 'nope'" in attempt(template="nope")
    assert "шаблон 'spring'" in attempt(channel="sms", to="+79161234567")
    assert box.received == []


def test_a_server_that_refuses_is_an_error_not_a_crash(hub_db: HubDB, mailing, mailbox) -> None:
    box, port = mailbox
    box.rcpt_replies["me@shop.example"] = "550 5.1.1 No such user"
    with use_language("ru"), pytest.raises(MessagingError) as caught:
        send_test(hub_db.engine, smtp_settings(hub_db, port), template=LETTER, channel="email",
                  to="me@shop.example", contact_id=None)
    assert str(caught.value).startswith("Тест не отправлен: ") and "550" in str(caught.value)
    assert count(hub_db, Suppression.__table__) == 0 and count(hub_db, AuditEntry.__table__) == 0


def test_addresses_are_normalized() -> None:
    assert check_address("sms", "8 (916) 123-45-67") == "+79161234567"
    assert check_address("email", " Anna@Example.RU ") == "Anna@example.ru"


def test_the_messaging_layer_does_not_depend_on_the_admin() -> None:
    source = Path(test_send_module.__file__).read_text(encoding="utf-8")
    assert "hub.admin" not in source
