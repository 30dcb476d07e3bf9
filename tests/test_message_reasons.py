"""Why a message was held or skipped: stored in English, read in the reader's words (hub.send_reasons).

The reasons are the dispatcher's own: real messages go through the real
send rules (the consent ledger, the block list, quiet hours, the frequency
cap), and the stored text is then read on the message log, one message's
page, the contact's card and `hub messages`, in Russian and in English.
An SMTP server's answer and a plugin's own words are shown as they are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import re
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub import consent, messaging, send_reasons
from hub.cli import cli
from hub.i18n import N_, use_language
from hub.models import Message
from hub.plugins import get_pm
from tests.support.admin import AdminEnv, client_as, plain, post, text
from tests.test_message_log import add_message
from workflows import campaigns  # noqa: F401 - declares the paused campaign's reason shape, as loading Hub does

pytestmark = pytest.mark.both_databases  # the reasons are written by the dispatcher's statements

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, 19, 0, tzinfo=UTC)  # 22:00 in Moscow: inside quiet hours 21:00-09:00
EARLIER = NOW - dt.timedelta(hours=1)

STORED = {
    "no_consent": "no granted consent for sms/marketing (current: none)",
    "no_email": "no valid email for this contact",
    "suppressed": "email is suppressed",
    "gone": "the contact no longer exists",
    "held": "held: quiet hours 21:00-09:00 in Europe/Moscow; frequency cap 1/7d reached",
}
RUSSIAN = {
    "no_consent": "нет согласия на канал «SMS» для цели «Акции и специальные предложения» (сейчас: не дано)",
    "no_email": "у контакта нет действующего email",
    "suppressed": "адрес в списке блокировки",
    "gone": "контакта больше нет",
    "held": "отложено: тихие часы с 21:00 до 09:00 (МСК); лимит частоты: не больше 1 сообщения за 7 дней",
}
ENGLISH = {
    "no_consent": "no consent to SMS for “Offers and special deals” (now: not given)",
    "no_email": "the contact has no valid email",
    "suppressed": "the address is on the block list",
    "gone": "the contact no longer exists",
    "held": "held: quiet hours from 21:00 to 09:00 (UTC+03:00); frequency cap reached: at most 1 message per 7 days",
}
SERVER = "550 5.1.1 <gone@example.ru>: Recipient address rejected; see https://example.ru/help"
SMTP_ANSWER = f"bounced: {SERVER}"  # as the dispatcher stores a permanent refusal


def queued(env: AdminEnv, name: str, **fields: Any) -> int:
    return add_message(env, status="queued", created=EARLIER, key=f"reasons:{name}", **fields)


@pytest.fixture
def refused(admin_env: AdminEnv) -> dict[str, int]:
    """One message for each of the core's verdicts, refused or held by a real dispatch; and an SMTP answer."""
    env = admin_env
    with env.engine.begin() as conn:
        consent.suppress(conn, "email", "hacker@example.ru", reason="complaint", source="test",
                         secret=env.settings.require_secret_key())
    add_message(env, status="sent", created=NOW - dt.timedelta(days=1), key="reasons:earlier")  # Anna's cap: 1/7d
    ids = {
        "no_consent": queued(env, "no_consent", contact="petrov_1", channel="sms", address="+74951110000"),
        "suppressed": queued(env, "suppressed", contact="markup", address="hacker@example.ru"),
        "gone": queued(env, "gone", contact=None),
        "held": queued(env, "held"),
    }
    ids["no_email"] = queued(env, "no_email", contact="petrov_2")
    with env.engine.begin() as conn:  # a contact with no email: the ledger finds no address to send to
        conn.execute(Message.__table__.update().where(Message.__table__.c.id == ids["no_email"]).values(address=None))
    settings = dataclasses.replace(env.settings, extra={**env.settings.extra, "quiet_hours_email": "21:00-09:00",
                                                        "frequency_cap": "1/7d"})
    messaging.dispatch(env.engine, settings, now=NOW)
    ids["smtp"] = add_message(env, status="failed", error=SMTP_ANSWER, key="reasons:smtp")
    return ids


def stored(env: AdminEnv, message_id: int) -> str:
    with env.engine.connect() as conn:
        return str(conn.execute(select(Message.__table__.c.error).where(Message.__table__.c.id == message_id))
                   .scalar_one())


def english(client: Any) -> Any:
    answer = post(client, "/language", {"language": "en", "next": "/messages/"}, token_from="/messages/")
    assert answer.status_code == 302
    return client


def test_the_dispatcher_stores_the_core_verdicts_in_english(admin_env: AdminEnv, refused: dict[str, int]) -> None:
    for name, text_ in STORED.items():
        assert stored(admin_env, refused[name]) == text_, name


def test_the_message_log_reads_them_in_russian_and_english(admin_env: AdminEnv, refused: dict[str, int]) -> None:
    client = client_as(admin_env, "viewer")
    page = plain_text(text(client.get("/messages/")))
    for name, words in RUSSIAN.items():
        assert words in page, name
        assert STORED[name] not in page, name
    assert f"возврат, адрес заблокирован: {SERVER}" in page  # the server's own words, as it said them
    page_en = plain_text(text(english(client_as(admin_env, "marketer")).get("/messages/")))
    for name, words in ENGLISH.items():
        assert words in page_en, name
    assert f"bounced, the address is blocked: {SERVER}" in page_en


def test_one_message_page_reads_its_reason(admin_env: AdminEnv, refused: dict[str, int]) -> None:
    client = client_as(admin_env, "viewer")
    for name, words in RUSSIAN.items():
        page = client.get(f"/messages/{refused[name]}")
        assert page.status_code == 200
        answer = re.search(r'<td id="answer">(.*?)</td>', text(page), re.DOTALL)
        assert answer and words in plain_text(answer.group(1)), name
        assert f'data-stored="{STORED[name]}"' in answer.group(1)  # the stored English is kept at hand
    shown = client.get(f"/messages/{refused['smtp']}")
    assert f"возврат, адрес заблокирован: {SERVER}" in plain_text(text(shown))
    marketer = english(client_as(admin_env, "marketer"))
    for name, words in ENGLISH.items():
        assert words in plain(marketer.get(f"/messages/{refused[name]}")), name


def test_the_contact_card_reads_its_messages_reasons(admin_env: AdminEnv, refused: dict[str, int]) -> None:
    client = client_as(admin_env, "viewer")
    for contact, name in (("petrov_1", "no_consent"), ("petrov_2", "no_email"), ("markup", "suppressed"),
                          ("anna", "held")):
        card = client.get(f"/contacts/{admin_env.ids[contact]}")
        messages = re.search(r'<table id="messages">(.*?)</table>', text(card), re.DOTALL)
        assert messages, contact
        assert RUSSIAN[name] in plain_text(messages.group(1)), name
    assert SERVER in plain_text(text(client.get(f"/contacts/{admin_env.ids['anna']}")))
    card_en = english(client_as(admin_env, "marketer")).get(f"/contacts/{admin_env.ids['petrov_1']}")
    assert ENGLISH["no_consent"] in plain(card_en)


def test_hub_messages_reads_them_and_json_keeps_the_english(admin_env: AdminEnv, refused: dict[str, int]) -> None:
    get_pm().hook.register_commands(cli=cli)
    runner = CliRunner()
    listed = json.loads(runner.invoke(cli, ["messages", "list", "--json", "--limit", "20"]).output)
    assert {m["id"]: m["error"] for m in listed if m["id"] in refused.values()} == {
        **{refused[n]: s for n, s in STORED.items()}, refused["smtp"]: SMTP_ANSWER}
    shown = runner.invoke(cli, ["messages", "show", str(refused["no_consent"])])
    assert shown.exit_code == 0, shown.output
    assert f"Ошибка: {RUSSIAN['no_consent']}" in shown.output
    shown_en = runner.invoke(cli, ["messages", "show", str(refused["no_consent"])], env={"HUB_LANGUAGE": "en"})
    assert f"Error: {ENGLISH['no_consent']}" in shown_en.output
    as_json = json.loads(runner.invoke(cli, ["messages", "show", str(refused["held"]), "--json"]).output)
    assert as_json["error"] == STORED["held"]
    table = runner.invoke(cli, ["messages", "list", "--limit", "20"], env={"COLUMNS": "400"}).output
    assert RUSSIAN["gone"] in table and STORED["gone"] not in table
    smtp = runner.invoke(cli, ["messages", "show", str(refused["smtp"])]).output
    assert f"Ошибка: возврат, адрес заблокирован: {SERVER}" in smtp


def plain_text(page: str) -> str:
    """What a reader sees: the text without tags or attributes (the stored English rides in data-stored)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


# --- the reading itself: every shape, joined reasons, and texts Hub did not word ----------------

@pytest.mark.parametrize("stored_text, russian", [
    ("no valid phone for this contact", "у контакта нет действующего номера телефона"),
    ("phone is suppressed", "номер телефона в списке блокировки"),
    ("no granted consent for email/news (current: withdrawn)",
     "нет согласия на канал «Email» для цели «Новости» (сейчас: отозвано)"),
    ("no granted consent for telegram/promo (current: pending)",
     "нет согласия на канал «telegram» для цели «promo» (сейчас: ждёт подтверждения)"),
    ("frequency cap 2/7d reached", "лимит частоты: не больше 2 сообщений за 7 дней"),
    ("frequency cap 21/1d reached", "лимит частоты: не больше 21 сообщения за 1 день"),
    ("quiet hours 22:00-08:00 in Asia/Yekaterinburg", "тихие часы с 22:00 до 08:00 (UTC+05:00)"),
    ("gave up after 6 attempts: 451 4.3.0 try later; bye", "не отправлено после 6 попыток: 451 4.3.0 try later; bye"),
    ("smtp channel error: RuntimeError: boom", "ошибка канала smtp: RuntimeError: boom"),
    ("not sent yet: the SMTP server did not answer", "пока не отправлено: the SMTP server did not answer"),
    ("the channel could not tell whether it was sent", "канал не сообщил, ушло ли сообщение"),
    ("worker-7 stopped while sending; the message may or may not have gone out",
     "обработчик worker-7 остановился во время отправки; неизвестно, ушло ли сообщение"),
    ("marked sent by admin@shop.example", "отмечено как отправленное: admin@shop.example"),
    ("requeued by marketer@shop.example", "снова поставлено в очередь: marketer@shop.example"),
    ("no granted consent for sms/marketing (current: none); on the do-not-market list",
     "нет согласия на канал «SMS» для цели «Акции и специальные предложения» (сейчас: не дано); "
     "on the do-not-market list"),
    ("held: campaign paused", "отложено: рассылка приостановлена"),  # the workflows plugin's own shape
    ("quiet hours 21:00-09:00 in Bogus/Zone", "тихие часы с 21:00 до 09:00 (Bogus/Zone)"),
    ("frequency cap x/7d reached", "frequency cap x/7d reached"),
    ("no granted consent for <b>/x (current: weird)", "нет согласия на канал «<b>» для цели «x» (сейчас: weird)"),
    ("421 4.7.0 Try again later", "421 4.7.0 Try again later"),
    ("<b>held</b>: x", "<b>held</b>: x"),
    ("", ""),
])
def test_every_shape_reads_in_russian(stored_text: str, russian: str) -> None:
    assert send_reasons.reason_text(stored_text) == russian


def test_the_builders_write_what_the_readers_read() -> None:
    made = [send_reasons.no_address("email"), send_reasons.no_address("phone"), send_reasons.suppressed("email"),
            send_reasons.no_consent("sms", "marketing", None), send_reasons.quiet_hours("21:00-09:00", "Europe/Moscow"),
            send_reasons.frequency_cap("2/7d"), send_reasons.held("campaign paused")]
    assert made == ["no valid email for this contact", "no valid phone for this contact", "email is suppressed",
                    "no granted consent for sms/marketing (current: none)", "quiet hours 21:00-09:00 in Europe/Moscow",
                    "frequency cap 2/7d reached", "held: campaign paused"]
    with use_language("ru"):
        assert all(send_reasons.reason_text(m) != m for m in made[:-1])


def test_a_plugins_shape_reads_from_its_catalog_and_an_unknown_text_stays() -> None:
    shape = send_reasons.ReasonShape("not on %(day)s", N_("not on %(day)s"), day=str.upper)
    try:
        assert shape(day="sunday") == "not on sunday"
        with use_language("en"):
            assert send_reasons.reason_text("not on sunday") == "not on SUNDAY"
            assert send_reasons.reason_text("held: not on sunday; frequency cap 2/7d reached") == \
                "held: not on SUNDAY; frequency cap reached: at most 2 messages per 7 days"
    finally:
        send_reasons._SHAPES.remove(shape)  # declared for this test only
    hostile = "x" * 5000 + "; frequency cap 2/7d reached"
    assert send_reasons.reason_text(hostile) == hostile  # too long to be Hub's own: shown as it is
