"""Mail feedback as a shop meets it: report shapes from more servers, read from a real mailbox, acted on.

Each test sends real letters through the SMTP channel (fixture `mailbox`),
writes the envelope sender (the signed VERP address) and the Message-ID the
server received into a real-shaped report from tests/data/feedback_acceptance
(Microsoft 365, Outlook.com, Gmail, Yandex, Mail.ru, Exim, Postfix, a
forwarder's SRS rewrite, feedback loops, out-of-office replies), drops it
into a real dovecot mailbox (fixture `bounce_mailbox`) and runs the pass.
Then it checks what a shop relies on: the suppression, the consent ledger,
the message events, and that the next letter to that address is not sent.

Then the rest of the loop a shop sees: refusals during the SMTP talk, clicks
on the promo link after a merge or with a tampered token, a Telegram chat
that blocked the bot (Bot API emulator), and a two-part SMS through each
provider preset (the providers' emulator).
"""

from __future__ import annotations

import base64
import email
import email.policy
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import plugins.gdpr
import plugins.mailing
from hub import consent, identity, message_templates, messaging
from hub.db import utcnow
from hub.messaging.sms_parts import text_parts
from hub.models import Message, MessageEvent
from hub.segments import fields
from hub.segments import store as segment_store
from hub.segments.evaluate import Segments
from plugins.mailing import sms_reports, sms_sandbox, verp
from plugins.mailing.bounces import dsn
from plugins.mailing.bounces.commands import summary_text
from plugins.telegram.sandbox import Sandbox
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.imap import BounceMailboxHelper
from tests.support.public import PUBLIC, person
from tests.support.shop import SHOP, make_shop
from tests.support.smtp import Mailbox
from tests.test_bounce_processing import Sent, Shop
from tests.test_telegram import BLOCKED
from tests.test_telegram import Bot as TelegramBot
from tests.test_telegram import _settings as telegram_settings

DATA = Path(__file__).parent / "data" / "feedback_acceptance"
VERP_LOCAL = b"bounces+1234-0123456789"  # the fixtures' return path, inside SRS addresses too
ORIGINAL = b"<176483250012.4242.1111111111111111111.hub1234@shop.example.ru>"

pytestmark = pytest.mark.both_databases

# (fixture, the address it is about), grouped by what Hub must do with it
HARD = [("m365_ndr_headers_only.eml", "ivan.sidorov@contoso-client.ru"),
        ("outlookcom_550_no_original.eml", "sveta.k@outlook.com"),
        ("yandex_550_base64.eml", "kirill.nonexist@yandex.ru"),
        ("mailru_koi8_base64.eml", "svetlana.gone@mail.ru"),
        ("exim_550_unrouteable.eml", "olga@no-such-shop-domain.ru"),
        ("srs_forwarder_bounce.eml", "denis.fwd@fwd.example.net")]
SOFT = [("postfix_552_full.eml", "marina.full@rambler.ru"),
        ("gmail_552_out_of_storage.eml", "anton.full@gmail.com"),
        ("exim_452_quota.eml", "petr.quota@hosting-client.ru")]
COMPLAINTS = [("mailru_fbl_arf_no_rcpt.eml", "ksenia.spam@mail.ru"),
              ("yandex_fbl_arf_base64.eml", "roman.fbl@yandex.ru")]
REFUSED_LETTERS = [("mailru_spam_rejected.eml", "alla.ok@mail.ru"),
                   ("gmail_5726_unauthenticated.eml", "egor.ok@gmail.com")]
AUTO_REPLIES = [("autoreply_exchange_vacation.eml", "maria.orlova@client-corp.ru"),
                ("autoreply_yandex_plain.eml", "nina.otpusk@yandex.ru")]


@pytest.fixture
def shop(hub_db: HubDB, plugin_manager: Any, mailbox: Any, bounce_mailbox: BounceMailboxHelper) -> Shop:
    plugin_manager.register(plugins.mailing, name="mailing")
    plugin_manager.register(plugins.gdpr, name="gdpr")
    plugin_manager.hook.register_commands(cli=cli)
    box, port = mailbox
    settings = replace(hub_db.settings, extra={
        **hub_db.settings.extra, "smtp_url": f"smtp://127.0.0.1:{port}",
        "mail_from": "Цветочная лавка <shop@shop.example.ru>", "public_url": "https://hub.example.ru",
        "mail_return_path": "bounces@shop.example.ru", "frequency_cap": "10/7d", **bounce_mailbox.settings_extra})
    return Shop(hub_db, settings, box, bounce_mailbox)


def report(name: str, sent: Sent, *, return_path: str | None = None) -> bytes:
    """The fixture rewritten to be about `sent`: its VERP address (also inside an SRS address) and Message-ID."""
    raw = (DATA / name).read_bytes()
    local = (return_path or sent.return_path).rpartition("@")[0]

    def rewrite(data: bytes) -> bytes:
        return data.replace(VERP_LOCAL, local.encode()).replace(ORIGINAL, sent.provider_id.encode())

    def encoded(found: re.Match[bytes]) -> bytes:  # a base64 part (an attached original) rewritten too
        data = base64.b64decode(found[2])
        text = base64.encodebytes(rewrite(data)).replace(b"\n", b"\r\n")
        return found[1] + text.rstrip(b"\r\n") + found[3]

    return _BASE64_PART.sub(encoded, rewrite(raw))


_BASE64_PART = re.compile(rb"(Content-Transfer-Encoding: base64\r\n\r\n)([A-Za-z0-9+/=\r\n]+?)(\r\n\r\n|\r\n--)")


def suppressed(shop: Shop, address: str) -> bool:
    with shop.db.engine.connect() as conn:
        return consent.is_suppressed(conn, "email", address, shop.settings.require_secret_key())


def ledger(shop: Shop, contact_id: int) -> list[dict[str, Any]]:
    with shop.db.engine.connect() as conn:
        return [e for e in consent.history(conn, contact_id) if e["channel"] == "email"]


def events(shop: Shop, message_id: int) -> list[Any]:
    e = MessageEvent.__table__.c
    with shop.db.engine.connect() as conn:
        return list(conn.execute(select(e.kind, e.detail).where(e.message_id == message_id).order_by(e.id)))


@pytest.mark.parametrize(("name", "address"), HARD, ids=[n for n, _ in HARD])
def test_a_hard_bounce_in_each_new_shape_suppresses_the_address(shop: Shop, name: str, address: str) -> None:
    person = shop.person("Покупатель", address)
    sent = shop.send(person)
    shop.bounces.append(report(name, sent))

    summary = shop.run()

    assert (summary.bounces, summary.unmatched, summary.unreadable, summary.left_for_person) == (1, 0, 0, 0)
    assert shop.bounces.list() == [] and len(shop.bounces.list("Hub-Processed")) == 1
    [(kind, detail)] = events(shop, sent.message_id)
    assert kind == "bounce" and detail["reason"] and address not in str(detail)
    assert suppressed(shop, address)
    last = ledger(shop, person)[-1]
    assert (last["status"], last["source"], last["evidence"]["message_id"]) == ("withdrawn", "bounce",
                                                                               sent.message_id)
    assert shop.status_of_next_send(person) == "suppressed"


def test_a_report_naming_the_recipient_in_other_letter_case_is_still_about_the_letter(shop: Shop) -> None:
    """Exchange answers with the directory's spelling of the address; Hub keeps addresses lowercased."""
    person = shop.person("Иван", "Ivan.Sidorov@Contoso-Client.ru")
    sent = shop.send(person)
    assert sent.address == "ivan.sidorov@contoso-client.ru"
    shop.bounces.append(report("m365_ndr_headers_only.eml", sent).replace(
        b"rfc822;ivan.sidorov@contoso-client.ru", b"rfc822;Ivan.Sidorov@contoso-client.ru"))

    summary = shop.run()

    assert (summary.bounces, summary.unmatched, summary.left_for_person) == (1, 0, 0)
    assert suppressed(shop, "ivan.sidorov@contoso-client.ru")


def test_a_report_naming_a_cyrillic_domain_in_punycode_is_still_about_the_letter(shop: Shop) -> None:
    """Hub keeps «почта-магазина.рф» as people write it; the letter and its bounce carry xn--…"""
    person = shop.person("Иван", "ivan@почта-магазина.рф")
    sent = shop.send(person)
    ascii_domain = "почта-магазина.рф".encode("idna").decode()
    assert shop.smtp.received[-1].rcpt_tos == [f"ivan@{ascii_domain}"]  # the form the report will name
    shop.bounces.append(report("postfix_552_full.eml", sent).replace(
        b"marina.full@rambler.ru", f"ivan@{ascii_domain}".encode()).replace(b"Status: 5.2.2", b"Status: 5.1.1")
        .replace(b"Mailbox full", b"User unknown"))

    summary = shop.run()

    assert (summary.bounces, summary.unmatched, summary.left_for_person) == (1, 0, 0)
    assert suppressed(shop, "ivan@почта-магазина.рф")


def test_the_reason_kept_for_an_exim_bounce_is_the_reason_not_the_boilerplate(shop: Shop) -> None:
    sent = shop.send(shop.person("Ольга", "olga@no-such-shop-domain.ru"))
    shop.bounces.append(report("exim_550_unrouteable.eml", sent))
    shop.run()
    [(_kind, detail)] = events(shop, sent.message_id)
    assert detail["reason"] == "Unrouteable address"


def test_a_bounce_through_a_forwarders_srs_address_is_matched_by_the_signed_return_path_inside(shop: Shop) -> None:
    sent = shop.send(shop.person("Денис", "denis.fwd@fwd.example.net"))
    local, _, domain = sent.return_path.rpartition("@")
    srs = f"SRS0=g+4/=TQ={domain}={local}@fwd.example.net"
    assert verp.message_id_of(shop.settings, srs) == sent.message_id
    twice = f"SRS1=Zq+e=fwd.example.net==x/9+=TQ={domain}={local}@second-fwd.example.org"
    assert verp.message_id_of(shop.settings, twice) == sent.message_id
    forged = f"SRS0=g+4/=TQ={domain}={local.rsplit('-', 1)[0]}-0000000000@fwd.example.net"
    assert verp.message_id_of(shop.settings, forged) is None

    parsed = dsn.parse(report("srs_forwarder_bounce.eml", sent))
    assert parsed.original_message_id is None and srs in parsed.return_paths  # only the SRS address names it


@pytest.mark.parametrize(("name", "address"), SOFT, ids=[n for n, _ in SOFT])
def test_a_full_mailbox_is_a_soft_bounce_in_each_new_shape(shop: Shop, name: str, address: str) -> None:
    person = shop.person("Покупатель", address)
    sent = shop.send(person)
    shop.bounces.append(report(name, sent))

    summary = shop.run()

    assert (summary.soft_bounces, summary.bounces, summary.left_for_person) == (1, 0, 0)
    assert [kind for kind, _ in events(shop, sent.message_id)] == ["soft_bounce"]
    assert not suppressed(shop, address)
    assert ledger(shop, person)[-1]["status"] == "granted"
    assert shop.status_of_next_send(person) == "sent"


def test_three_full_mailbox_reports_from_three_servers_suppress_at_the_limit(shop: Shop) -> None:
    marina = shop.person("Марина", "marina@example.ru")
    for n, (name, address) in enumerate(SOFT, start=1):
        sent = shop.send(marina)
        shop.bounces.append(report(name, sent).replace(address.encode(), sent.address.encode()))
        assert shop.run().soft_bounces == 1
        assert suppressed(shop, "marina@example.ru") == (n == 3)  # HUB_SOFT_BOUNCE_LIMIT, 3 by default
    assert shop.status_of_next_send(marina) == "suppressed"


@pytest.mark.parametrize(("name", "address"), COMPLAINTS, ids=[n for n, _ in COMPLAINTS])
def test_a_complaint_in_each_new_shape_withdraws_marketing_consent(shop: Shop, name: str, address: str) -> None:
    person = shop.person("Покупатель", address)
    sent = shop.send(person)
    shop.bounces.append(report(name, sent))

    summary = shop.run()

    assert (summary.complaints, summary.left_for_person) == (1, 0)
    assert [kind for kind, _ in events(shop, sent.message_id)] == ["complaint"]
    last = ledger(shop, person)[-1]
    assert (last["purpose"], last["status"], last["source"]) == ("marketing", "withdrawn", "complaint")
    assert last["evidence"]["message_id"] == sent.message_id and last["evidence"]["feedback_type"] == "abuse"
    assert shop.status_of_next_send(person) == "suppressed"


def test_a_feedback_loop_report_with_a_base64_original_is_matched_by_its_message_id(shop: Shop) -> None:
    """Without a usable return path only the complained letter's Message-ID, inside base64, names it."""
    person = shop.person("Роман", "roman.fbl@yandex.ru")
    sent = shop.send(person)
    raw = report("yandex_fbl_arf_base64.eml", sent, return_path="bounces@shop.example.ru")
    assert dsn.parse(raw).original_message_id == sent.provider_id
    shop.bounces.append(raw)

    assert shop.run().complaints == 1
    assert ledger(shop, person)[-1]["source"] == "complaint"


def test_a_complaint_after_a_merge_withdraws_the_survivors_consent_and_nothing_more_goes(shop: Shop) -> None:
    work = shop.person("Ксения", "ksenia.spam@mail.ru")
    sent = shop.send(work)
    home = shop.person("Ксения", "ksenia@example.ru")
    with shop.db.engine.begin() as conn:  # one woman, found after the letter went out
        identity.merge_contacts(conn, home, work, reason={"rule": "merged by hand"}, settings=shop.settings)
    shop.bounces.append(report("mailru_fbl_arf_no_rcpt.eml", sent))

    assert shop.run().complaints == 1

    last = ledger(shop, home)[-1]
    assert (last["status"], last["source"], last["evidence"]["message_id"]) == ("withdrawn", "complaint",
                                                                               sent.message_id)
    assert shop.status_of_next_send(home) == "suppressed"


@pytest.mark.parametrize(("name", "address"), AUTO_REPLIES, ids=[n for n, _ in AUTO_REPLIES])
def test_an_out_of_office_reply_is_filed_away_and_changes_nothing(shop: Shop, name: str, address: str) -> None:
    person = shop.person("Мария", address)
    sent = shop.send(person)
    shop.bounces.append(report(name, sent))

    summary = shop.run()

    assert (summary.auto_replies, summary.bounces, summary.soft_bounces, summary.left_for_person) == (1, 0, 0, 0)
    assert len(shop.bounces.list("Hub-Processed")) == 1
    assert events(shop, sent.message_id) == []
    assert not suppressed(shop, address) and ledger(shop, person)[-1]["status"] == "granted"
    assert shop.status_of_next_send(person) == "sent"


@pytest.mark.parametrize(("name", "address"), REFUSED_LETTERS, ids=[n for n, _ in REFUSED_LETTERS])
def test_a_letter_refused_as_spam_or_unauthenticated_is_left_for_a_person_and_the_address_kept(
        shop: Shop, name: str, address: str) -> None:
    """The provider refused the letter, not the address: the shop must hear it, the customer must not be lost."""
    person = shop.person("Алла", address)
    sent = shop.send(person)
    shop.bounces.append(report(name, sent))

    summary = shop.run()

    assert (summary.bounces, summary.soft_bounces, summary.refused, summary.unreadable, summary.left_for_person) \
        == (0, 0, 1, 0, 1)
    # Counted as what it is, not as "not understood": the shop's sending needs looking at.
    assert "1 письмо отклонено сервером получателя (спам-фильтр или проверка отправителя)" in summary_text(summary)
    assert "не распознано" not in summary_text(summary)
    ((flags),) = shop.bounces.flags().values()
    assert {"\\Flagged", "HubReview"} <= flags
    assert events(shop, sent.message_id) == []
    assert not suppressed(shop, address) and ledger(shop, person)[-1]["status"] == "granted"
    assert shop.status_of_next_send(person) == "sent"


def test_a_refusal_that_also_says_the_address_is_gone_stays_a_hard_bounce() -> None:
    raw = (DATA / "gmail_5726_unauthenticated.eml").read_bytes()
    for status, diagnostic in ((b"5.7.1", b"550 5.7.1 No such user!"),  # Yandex's answer for an unknown user
                               (b"5.7.1", b"550 5.7.1 Recipient address rejected: user unknown")):
        found = dsn.parse(raw.replace(b"Status: 5.7.26", b"Status: " + status).replace(
            b"550-5.7.26 This mail has been blocked because the sender", diagnostic))
        assert (found.kind, found.status) == ("bounce", "5.7.1")


@pytest.mark.parametrize(("stage", "answer"), [
    ("data", "550 spam message rejected. Please visit http://help.mail.ru/notspam-support/id?c=Bk3aZ0Qx"),
    ("data", "554 5.7.1 Message rejected under suspicion of SPAM; https://ya.cc/1IrBc 1733404929-AbCdEf12"),
    ("rcpt", "550 5.7.1 Service unavailable; Client host [203.0.113.25] blocked using Spamhaus"),
    ("rcpt", "550 5.7.26 This mail has been blocked because the sender is unauthenticated")])
def test_a_refusal_of_the_letter_during_the_smtp_talk_fails_it_and_keeps_the_address(
        shop: Shop, stage: str, answer: str) -> None:
    person = shop.person("Алла", "alla.ok@mail.ru")
    replies = shop.smtp.data_replies if stage == "data" else shop.smtp.rcpt_replies
    replies["alla.ok@mail.ru"] = answer

    assert shop.status_of_next_send(person) == "failed"
    assert not suppressed(shop, "alla.ok@mail.ru") and ledger(shop, person)[-1]["status"] == "granted"
    del replies["alla.ok@mail.ru"]  # the shop fixed its DNS, or the provider took it off the list
    assert shop.status_of_next_send(person) == "sent"


@pytest.mark.parametrize(("stage", "answer"), [("data", "550 5.1.1 <alla.gone@mail.ru>: user unknown"),
                                               ("rcpt", "550 5.7.1 No such user!")])
def test_a_dead_address_during_the_smtp_talk_is_still_suppressed(shop: Shop, stage: str, answer: str) -> None:
    person = shop.person("Алла", "alla.gone@mail.ru")
    (shop.smtp.data_replies if stage == "data" else shop.smtp.rcpt_replies)["alla.gone@mail.ru"] = answer
    shop.status_of_next_send(person)
    assert suppressed(shop, "alla.gone@mail.ru")


# --- clicks on the promo link ------------------------------------------------------------------

PROMO = message_templates.Template(
    name="promo_links_email", channel="email", subject="{{ contact.first_name }}, скидка 15%",
    text="{{ contact.first_name }}, промокод LAVKA-15: https://shop.example.ru/promo?code=LAVKA-15",
    html='<p>{{ contact.first_name }}, <a href="https://shop.example.ru/promo?code=LAVKA-15">промокод</a></p>')
CLICK = re.compile(rf"{re.escape(PUBLIC)}(/c/[A-Za-z0-9_-]+)")
CLICKED_7D = {"name": "clicked_7d", "title": "Кликнули за неделю",
              "rule": {"field": "email.last_click_at", "op": "within_last", "value": "7d"}}


def promo_letter(db: HubDB, box: Mailbox, contact_id: int, key: str) -> tuple[int, str]:
    """The promo letter really sent to `contact_id`: its message id and the tracked link it carried."""
    before = len(box.received)
    row = messaging.send(db.engine, db.settings, contact_id=contact_id, channel="email", template=PROMO.name,
                         key=key, purpose="marketing")
    assert row["status"] == "sent", row["error"]
    (got,) = box.received[before:]
    html = email.message_from_bytes(got.data, policy=email.policy.default).get_body(("html",))
    assert html is not None
    (link,) = CLICK.findall(str(html.get_content()))
    return int(row["id"]), link


def clicks(db: HubDB) -> list[tuple[int, int | None]]:
    """(message id, the contact its message belongs to now) of every click recorded."""
    e, m = MessageEvent.__table__.c, Message.__table__.c
    with db.engine.connect() as conn:
        return [(r.message_id, r.contact_id) for r in conn.execute(
            select(e.message_id, m.contact_id).join(Message.__table__, m.id == e.message_id)
            .where(e.kind == "click").order_by(e.id))]


def members(db: HubDB) -> list[int]:
    """Who is in "clicked in the last 7 days" now."""
    with db.engine.begin() as conn:
        segment_store.add(conn, fields.build(db.settings), CLICKED_7D)
    with db.engine.connect() as conn:
        return Segments(conn, db.settings).member_ids("clicked_7d")


def test_a_click_after_a_merge_lands_on_the_surviving_contact_and_in_its_segment(hub_db: HubDB, site: Any,
                                                                                mailbox: Any) -> None:
    box, _ = mailbox
    with hub_db.engine.begin() as conn:
        message_templates.save(conn, hub_db.settings, PROMO)
    work = person(hub_db, email_="boris.work@example.ru", name="Борис", granted=("email/marketing",))
    message_id, link = promo_letter(hub_db, box, work, "promo:work")
    home = person(hub_db, email_="boris@example.ru", name="Борис", granted=("email/marketing",))
    with hub_db.engine.begin() as conn:  # the shop finds they are one man after the letter went out
        identity.merge_contacts(conn, home, work, reason={"rule": "merged by hand"}, settings=hub_db.settings)

    landed = site.test_client().get(link)

    assert landed.status_code == 302 and landed.headers["Location"] == "https://shop.example.ru/promo?code=LAVKA-15"
    assert clicks(hub_db) == [(message_id, home)]
    assert members(hub_db) == [home]


def test_tampered_click_tokens_lead_nowhere_and_record_nothing(hub_db: HubDB, site: Any, mailbox: Any) -> None:
    box, _ = mailbox
    with hub_db.engine.begin() as conn:
        message_templates.save(conn, hub_db.settings, PROMO)
    anna = person(hub_db, email_="anna@example.ru", granted=("email/marketing",))
    message_id, link = promo_letter(hub_db, box, anna, "promo:anna")
    other, _ = promo_letter(hub_db, box, person(hub_db, email_="vera@example.ru", name="Вера",
                                                granted=("email/marketing",)), "promo:vera")
    token = link.rsplit("/", 1)[1]
    mid, index, signature = token.split("-", 2)
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    client = site.test_client()
    for forged in (f"{mid}-{index}-{flipped}",  # one character of the signature changed
                   f"{other}-{index}-{signature}",  # another letter's id with this signature
                   f"{mid}-{int(index) + 1}-{signature}",  # another link of the letter
                   f"{mid}-{index}-{signature}x",  # something appended
                   f"{mid}-{index}-{signature}/..%2Fadmin",
                   f"{mid}-{index}-{signature.lower() if signature != signature.lower() else signature.upper()}",
                   f"{mid}-{index}"):
        answer = client.get(f"/c/{forged}")
        assert answer.status_code == 404, forged
        assert "Location" not in answer.headers
    assert clicks(hub_db) == []
    assert client.get(link).status_code == 302 and clicks(hub_db) == [(message_id, anna)]


# --- a Telegram chat that blocked the bot ------------------------------------------------------

@pytest.fixture
def telegram(hub_db: HubDB, monkeypatch: pytest.MonkeyPatch) -> Iterator[TelegramBot]:
    with Sandbox() as sandbox:
        settings = telegram_settings(monkeypatch, sandbox.url)
        yield TelegramBot(hub_db, settings, sandbox.api, sandbox.url, make_shop(hub_db, SHOP[:4], now=utcnow()))


def telegram_status(bot: TelegramBot, contact_id: int) -> tuple[str, str]:
    with bot.engine.connect() as conn:
        last = [e for e in consent.history(conn, contact_id) if e["channel"] == "telegram"][-1]
    return last["status"], last["evidence"].get("how", "")


def test_two_letters_queued_for_a_chat_that_blocked_the_bot_ask_telegram_once(telegram: TelegramBot) -> None:
    anna = telegram.ids["anna"]
    telegram.press_start(anna, 1001)
    telegram.api.sent.clear()
    telegram.api.block(1001)
    first, second = telegram.send(anna, "sale-1"), telegram.send(anna, "sale-2")  # a campaign and a reminder

    telegram.dispatch()

    assert telegram.message(first).status == "failed" and BLOCKED in telegram.message(first).error
    assert telegram.message(second).status == "suppressed"
    assert [code for _chat, code, _ in telegram.api.refused] == [403]  # the second was never handed to Telegram
    assert telegram_status(telegram, anna) == ("withdrawn", "Bot API answer")


def test_unblocking_and_pressing_start_again_links_the_chat_and_letters_flow_again(telegram: TelegramBot) -> None:
    anna = telegram.ids["anna"]
    telegram.press_start(anna, 1001)
    telegram.api.block(1001)
    telegram.send(anna, "sale-1")
    telegram.dispatch()
    assert telegram.chats() == {}

    telegram.api.blocked.discard(1001)  # she unblocks the bot and opens the shop's link again
    time.sleep(1.1)  # Telegram's one message a second in a chat: the bot's last answer was just now
    telegram.press_start(anna, 1001)

    assert telegram.chats() == {anna: 1001} and telegram_status(telegram, anna)[0] == "granted"
    later = telegram.send(anna, "sale-2")
    telegram.dispatch()
    assert telegram.message(later).status == "sent"
    assert telegram.api.sent[-1].text.endswith("SALE10")


# --- SMS of more than one part, through each preset --------------------------------------------

LONG_SMS = message_templates.Template(
    name="long_sms", channel="sms",
    text="{{ contact.first_name }}, зимняя распродажа в Цветочной лавке: скидка 20% на букеты и горшечные "
         "растения до воскресенья 🌷")  # Cyrillic and an emoji: UCS-2, two parts


@pytest.mark.parametrize("provider", ["smsru", "smsc", "smsaero"])
def test_a_two_part_sms_is_counted_charged_and_reported_by_every_preset(hub_db: HubDB, plugin_manager: Any,
                                                                        provider: str) -> None:
    plugin_manager.register(plugins.mailing, name="mailing")
    server = sms_sandbox.start()
    try:
        settings = replace(hub_db.settings, extra={**hub_db.settings.extra,
                                                   **sms_sandbox.settings_for(server.base_url, provider)})
        anna = make_shop(hub_db, [SHOP[0]], now=utcnow())["anna"]
        with hub_db.engine.begin() as conn:
            message_templates.save(conn, settings, LONG_SMS)
        messaging.create_many(hub_db.engine, settings, [anna], channel="sms", template=LONG_SMS.name,
                              key_prefix=f"long-{provider}")
        messaging.dispatch(hub_db.engine, settings, channels=["sms"])
        sms_reports.poll(hub_db.engine, settings)  # on its way
        sms_reports.poll(hub_db.engine, settings)  # its final word
    finally:
        server.stop()
    with hub_db.engine.connect() as conn:
        row = conn.execute(select(Message.__table__).where(Message.contact_id == anna)).one()
        kinds = list(conn.execute(select(MessageEvent.kind).where(MessageEvent.message_id == row.id)).scalars())
    assert row.status == "sent", row.error
    assert row.parts == text_parts(row.body_text) == 2
    assert row.cost == 2 * sms_sandbox.PRICE
    assert kinds == ["delivered"]
