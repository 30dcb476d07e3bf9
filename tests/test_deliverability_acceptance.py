"""A shop sends a real campaign and hears everything that comes back: issue 22 checked as a shop would.

The flower shop's eight customers get a winter sale letter through a real
SMTP server, its promo link tracked and its envelope sender a signed VERP
address. What the mail servers send back (a Postfix hard bounce, a Mail.ru
Russian bounce, two Yandex "mailbox full" warnings, complaints from the
Mail.ru and Yandex feedback loops, an out-of-office reply and junk) lands in
a real dovecot mailbox and is read by `hub mail bounces`. Анна clicks the
promo link; Ирина links her Telegram chat through her deep link and gets a
message from the Bot API emulator; an SMS goes out through each provider
preset against the providers' emulator. Then the next campaign goes to
everyone, and only those who may still get it do.

Nothing of Hub's own is mocked; the story reads top to bottom, its helpers are
at the bottom.
"""

from __future__ import annotations

import email
import email.message
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import select

from hub import consent, message_templates, messaging, plugins, queue, sync
from hub.config import Settings, load_settings
from hub.db import utcnow
from hub.models import Message, MessageEvent
from hub.records import ContactRecord
from hub.segments import fields
from hub.segments import store as segment_store
from plugins.mailing import sms_reports, sms_sandbox, verp
from plugins.telegram.sandbox import TOKEN, BotApi, Sandbox
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.imap import BounceMailboxHelper
from tests.support.server import serving_admin
from tests.support.shop import Person, make_shop
from tests.support.smtp import Mailbox, Received
from tests.test_bounce_processing import CORPUS, CORPUS_ORIGINAL, CORPUS_VERP, Sent, report_for
from workflows import campaigns, ticks
from workflows.campaigns import Draft

pytestmark = pytest.mark.both_databases

PLUGINS = "mailing,gdpr,workflows,telegram"
PROMO_URL = "https://shop.example.ru/sale?utm_source=hub&utm_campaign=winter"
OWN_REPORTS = Path(__file__).parent / "data" / "deliverability"
PEOPLE = [
    Person("anna", "Анна", "+79161110001", "anna@example.ru"),
    Person("boris", "Борис", "+79000000002", "boris.k@mail.ru"),  # the SMS emulator knows no such number
    Person("vera", "Вера", "+79161110003", "vera.s@mail.ru"),
    Person("galina", "Галина", "+79161110004", "galina.m@yandex.ru"),
    Person("dmitry", "Дмитрий", "+79161110005", "dmitry.p@mail.ru"),
    Person("elena", "Елена", "+79161110006", "elena.v@yandex.ru"),
    Person("zhanna", "Жанна", "+79161110007", "zhanna@client-firm.ru"),
    Person("irina", "Ирина", "+79161110008", "irina@example.ru"),
]
WINTER = message_templates.Template(
    name="winter_sale_email", channel="email", subject="{{ contact.first_name }}, зимняя распродажа",
    text=f"{{{{ contact.first_name }}}}, всё со скидкой 20%: {PROMO_URL}",
    html=f'<html><body><p>{{{{ contact.first_name }}}}, <a href="{PROMO_URL}">всё со скидкой 20%</a></p>'
         "</body></html>")
ORDER = message_templates.Template(
    name="order_ready_email", channel="email", subject="Заказ готов",
    text=f"{{{{ contact.first_name }}}}, ваш заказ готов. Статус заказа: {PROMO_URL}")
SMS = message_templates.Template(name="winter_sale_sms", channel="sms",
                                 text="{{ contact.first_name }}, зимняя распродажа: скидка 20% до воскресенья")
TELEGRAM = message_templates.Template(name="winter_sale_telegram", channel="sms",
                                      text="{{ contact.first_name }}, для вас скидка 20% по промокоду ЗИМА20")
BOT_NAME = "lavka_shop_bot"
IRINA_CHAT = 700123
FRESH_INBOX = {"read": 8, "bounces": 2, "soft_bounces": 2, "complaints": 2, "auto_replies": 1, "delivery_notices": 0,
               "unmatched": 0, "refused": 0, "unreadable": 1, "duplicates": 0, "left_for_person": 1}


def test_a_shop_sends_a_campaign_and_hears_everything_that_comes_back(shop: Shop) -> None:
    # 1. The winter sale to every buyer, over SMTP, each letter with its own signed return path.
    first = shop.send_campaign("Зимняя распродажа")
    assert set(first) == {p.email for p in PEOPLE}
    for person, got in first.items():
        sent = shop.sent(got)
        assert sent.address == person
        assert verp.message_id_of(shop.settings, sent.return_path) == sent.message_id  # VERP names the letter
        assert PROMO_URL not in got.data.decode("ascii", "replace")  # the promo link goes through Hub

    # 2. The mail servers answer into the bounce mailbox; `hub mail bounces` reads it.
    letter = {p.key: shop.sent(first[str(p.email)]) for p in PEOPLE}
    shop.bounces.append(report_for("postfix_hard.eml", letter["boris"]))
    shop.bounces.append(report_for("mailru_text.eml", letter["vera"]))
    for n in (1, 2):
        shop.bounces.append(mailbox_full(letter["galina"], report_id=f"full-{n}@relay.shop.example.ru"))
    shop.bounces.append(report_for("mailru_fbl.eml", letter["dmitry"]))
    shop.bounces.append(report_for("yandex_fbl.eml", letter["elena"]))
    shop.bounces.append(report_for("autoreply_ru.eml", letter["zhanna"]))
    shop.bounces.append((CORPUS / "garbage.eml").read_bytes())

    assert shop.hub("mail", "bounces", "--json") == FRESH_INBOX
    assert len(shop.bounces.list("Hub-Processed")) == 7  # moved, never deleted
    (junk,) = shop.bounces.flags().values()  # left in the inbox, flagged for a person
    assert {"\\Flagged", "HubReview"} <= junk
    assert shop.hub("mail", "bounces", "--json")["read"] == 0  # the next pass reads nothing twice

    assert shop.suppressed("boris.k@mail.ru") and shop.suppressed("vera.s@mail.ru")
    assert not shop.suppressed("galina.m@yandex.ru")  # two soft bounces: below the limit of three
    for key in ("dmitry", "elena"):
        last = shop.ledger(key, "email")[-1]
        assert (last["purpose"], last["status"], last["source"]) == ("marketing", "withdrawn", "complaint")
        assert last["evidence"]["message_id"] == letter[key].message_id
        assert last["evidence"]["feedback_type"] == "abuse"
        assert shop.ledger(key, "sms")[-1]["status"] == "granted"  # a complaint about a letter is about email
    for key in ("boris", "vera"):
        last = shop.ledger(key, "email")[-1]
        assert (last["status"], last["source"]) == ("withdrawn", "bounce")
        assert last["evidence"]["message_id"] == letter[key].message_id
    assert shop.ledger("zhanna", "email")[-1]["status"] == "granted"  # an out-of-office reply changes nothing

    # 3. Анна clicks the promo link in the letter she received: Hub's web server sends her to the sale.
    (tracked,) = set(re.findall(rf"{re.escape(shop.public)}/c/[A-Za-z0-9_-]+", html_of(first["anna@example.ru"])))
    landed = requests.get(tracked, allow_redirects=False, timeout=30)
    assert landed.status_code == 302 and landed.headers["Location"] == PROMO_URL
    assert shop.segment_members("clicked_7d") == [shop.ids["anna"]]
    clicks = shop.hub("campaigns", "show", shop.campaign_named("Зимняя распродажа"), "--json")["engagement"]
    assert (clicks["emails"], clicks["clicks"]) == (8, 1)

    # 4. Ирина opens her Telegram link and presses Start; Telegram delivers it to Hub's webhook.
    # (Letter templates have no variable for the link yet: the shop gives it with `hub telegram link`.)
    shop.hub_says("telegram", "webhook", "set")
    link = shop.hub("telegram", "link", str(shop.ids["irina"]), "--json")["url"]
    assert link.startswith(f"https://t.me/{BOT_NAME}?start=")
    start = parse_qs(urlsplit(link).query)["start"][0]
    shop.bot.press_start(IRINA_CHAT, start, "irina_v")
    assert shop.bot.webhook_answers == [200]
    linked = shop.ledger("irina", "telegram")[-1]
    assert (linked["purpose"], linked["status"], linked["source"]) == ("marketing", "granted", "telegram")
    assert linked["evidence"]["chat_id"] == IRINA_CHAT and linked["evidence"]["how"] == "deep link"
    # The bot answered her Start a moment ago; Telegram takes one message a second in a chat, and Hub keeps to it.
    assert shop.send_telegram("irina") == "sent"
    assert shop.bot.texts_to(IRINA_CHAT) == ["Готово! Теперь мы будем писать вам сюда. Отписаться: /stop",
                                             "Ирина, для вас скидка 20% по промокоду ЗИМА20"]

    # 5. The SMS through each preset against the providers' emulator, charged and reported.
    for provider in ("smsru", "smsc", "smsaero"):
        settings = shop.sms_settings(provider)
        ids = shop.send_sms(settings, provider, ["anna", "galina", "boris"])
        assert shop.statuses(ids) == {"anna": "sent", "galina": "sent",
                                      "boris": "failed" if provider == "smsru" else "suppressed"}
        if provider != "smsru":  # SMSC.ru and SMS Aero name the price in their answer to the send
            assert shop.message(ids["anna"]).cost == sms_sandbox.PRICE, provider
        sms_reports.poll(shop.db.engine, settings)  # on their way
        sms_reports.poll(shop.db.engine, settings)  # their final word
        for key in ("anna", "galina"):
            assert shop.kinds(ids[key]) == ["delivered"], provider
            assert shop.message(ids[key]).cost == sms_sandbox.PRICE, provider
    assert shop.suppressed("+79000000002", kind="phone")
    asked = [form for _, form in shop.sms.requests if any("79000000002" in v for v in form.values())]
    assert len(asked) == 1  # the provider was asked about Борис's number once, never again

    # 6. The next campaign to everyone: only those who may still get it do.
    second = shop.send_campaign("Последние дни распродажи")
    assert set(second) == {"anna@example.ru", "galina.m@yandex.ru", "zhanna@client-firm.ru", "irina@example.ru"}
    report = shop.hub("campaigns", "show", shop.campaign_named("Последние дни распродажи"), "--json")
    assert report["counts"]["held_back"] == {"no_consent": 4}  # Борис, Вера (bounced), Дмитрий, Елена (complained)
    assert report["counts"]["messages"] == {"sent": 4}

    # A complainer still gets what is not marketing: his order is ready.
    receipt = shop.send_transactional("dmitry")
    assert receipt["To"].addresses[0].addr_spec == "dmitry.p@mail.ru"
    assert PROMO_URL in text_of(receipt)  # and no tracked link: transactional mail is not tracked

    # What came back, letter by letter.
    assert shop.events_of(letter) == {
        "anna": ["click"], "boris": ["bounce"], "vera": ["bounce"], "galina": ["soft_bounce", "soft_bounce"],
        "dmitry": ["complaint"], "elena": ["complaint"], "zhanna": [], "irina": []}
    assert shop.detail(letter["boris"].message_id)["status"] == "5.1.1"  # the report's own words, kept
    assert shop.detail(letter["galina"].message_id)["status"] == "4.2.2"
    # The message log (`hub messages list --json`): one letter and one SMS attempt to Борис, nothing after.
    log = [(m["address"], m["template"], m["status"]) for m in shop.hub("messages", "list", "--json", "--limit", "200")]
    assert [status for address, _, status in log if address == "boris.k@mail.ru"] == ["sent"]
    assert sorted(status for address, _, status in log if address == "+79000000002") == [
        "failed", "suppressed", "suppressed"]
    assert ("dmitry.p@mail.ru", ORDER.name, "sent") in log


def test_a_telegram_chat_does_not_need_a_phone_that_works(shop: Shop) -> None:
    """A chat is linked by the person, not found through a phone: Telegram goes to it whatever the phone does."""
    zoya = shop.add_person("Зоя", email="zoya@example.ru")  # left only her email; reads Telegram
    shop.send_sms(shop.sms_settings("smsru"), "smsru", ["boris"])  # no such number: his phone is suppressed
    assert shop.suppressed("+79000000002", kind="phone")
    for contact_id, chat in ((zoya, 700201), (shop.ids["boris"], 700202)):
        link = shop.hub("telegram", "link", str(contact_id), "--json")["url"]
        shop.bot.press_start(chat, parse_qs(urlsplit(link).query)["start"][0])
    assert shop.hub("telegram", "poll", "--json") == {"updates": 2, "linked": 2}
    shop.ids["zoya"] = zoya

    assert {key: shop.send_telegram(key) for key in ("zoya", "boris")} == {"zoya": "sent", "boris": "sent"}


# --- the shop ----------------------------------------------------------------------------------

@pytest.fixture
def shop(hub_db: HubDB, mailbox: tuple[Mailbox, int], bounce_mailbox: BounceMailboxHelper, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    box, port = mailbox
    with Sandbox() as bot, sms_emulator() as sms:
        # The same Telegram bot for Hub's web server (the webhook) and for this process (the sending).
        telegram = {"HUB_TELEGRAM_BOT_TOKEN": TOKEN, "HUB_TELEGRAM_API_URL": bot.url,
                    "HUB_TELEGRAM_BOT_NAME": BOT_NAME, "HUB_TELEGRAM_WEBHOOK_SECRET": "lavka-webhook-7f3a"}
        with serving_admin(hub_db.url, tmp_path / "web", HUB_PLUGINS=PLUGINS, **telegram) as web:
            for name, value in {
                    "HUB_PLUGINS": PLUGINS, "HUB_PUBLIC_URL": web.url, **telegram,
                    "HUB_SMTP_URL": f"smtp://127.0.0.1:{port}",
                    "HUB_MAIL_FROM": "Цветочная лавка <shop@shop.example.ru>",
                    "HUB_MAIL_RETURN_PATH": "bounces@shop.example.ru", "HUB_COMPANY_NAME": "Цветочная лавка",
                    "HUB_FREQUENCY_CAP": "10/7d",  # this shop writes a little more often than the default 2 a week
                    **{f"HUB_{k.upper()}": v for k, v in bounce_mailbox.settings_extra.items()}}.items():
                monkeypatch.setenv(name, value)
            settings = load_settings()
            plugins.use(plugins.build(settings))
            plugins.get_pm().hook.register_commands(cli=cli)
            db = replace(hub_db, settings=settings)
            ids = make_shop(db, PEOPLE, now=utcnow())
            with db.engine.begin() as conn:
                registry = fields.build(settings)
                segment_store.add(conn, registry, {"name": "buyers", "title": "Покупатели",
                                                   "rule": {"field": "orders.count", "op": "gte", "value": 1}})
                segment_store.add(conn, registry, {"name": "clicked_7d", "title": "Кликнули за неделю",
                                                   "rule": {"field": "email.last_click_at", "op": "within_last",
                                                            "value": "7d"}})
                for template in (WINTER, ORDER, SMS, TELEGRAM):
                    message_templates.save(conn, settings, template)
            yield Shop(db, settings, web.url, ids, box, bounce_mailbox, bot.api, sms)
            log = web.stop()
        assert "Traceback" not in log and "anna@example.ru" not in log


@dataclass
class Shop:
    db: HubDB
    settings: Settings
    public: str  # Hub's web server, serving the links in the letters and the Telegram webhook
    ids: dict[str, int]
    smtp: Mailbox
    bounces: BounceMailboxHelper
    bot: BotApi
    sms_server: Any

    @property
    def sms(self) -> Any:
        return self.sms_server.httpd.emulator

    def send_campaign(self, title: str) -> dict[str, Received]:
        """A campaign to the buyers, sent now: what the SMTP server received, by recipient."""
        before = len(self.smtp.received)
        made = campaigns.create(self.db.engine, self.settings, Draft(title=title, segment="buyers", channel="email",
                                                                     template=WINTER.name), actor="marketer")
        campaigns.send_now(self.db.engine, self.settings, made["name"], actor="marketer")
        ticks.advance_due(self.db.engine, self.settings, now=utcnow())
        queue.drain(timeout=60)
        return {r.rcpt_tos[0]: r for r in self.smtp.received[before:]}

    def campaign_named(self, title: str) -> str:
        with self.db.engine.connect() as conn:
            (made,) = [c for c in campaigns.listing(conn) if c["title"] == title]
        return str(made["name"])

    def sent(self, got: Received) -> Sent:
        """The message row behind a received letter, named by its Message-ID."""
        with self.db.engine.connect() as conn:
            row = conn.execute(select(Message.id, Message.contact_id, Message.address)
                               .where(Message.provider_id == got.message["Message-ID"])).one()
        return Sent(row.id, row.contact_id, row.address, got.mail_from, str(got.message["Message-ID"]))

    def hub(self, *args: str) -> Any:
        """`hub ARGS --json` as the shop's owner runs it: its one JSON document."""
        return json.loads(self.hub_says(*args))

    def hub_says(self, *args: str) -> str:
        result = CliRunner().invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    def suppressed(self, address: str, kind: str = "email") -> bool:
        with self.db.engine.connect() as conn:
            return consent.is_suppressed(conn, kind, address, self.settings.require_secret_key())

    def ledger(self, key: str, channel: str) -> list[dict[str, Any]]:
        with self.db.engine.connect() as conn:
            return [e for e in consent.history(conn, self.ids[key]) if e["channel"] == channel]

    def segment_members(self, name: str) -> list[int]:
        self.hub("segments", "refresh", name, "--json")
        return sorted(m["id"] for m in self.hub("segments", "members", name, "--json"))

    def add_person(self, first: str, *, email: str) -> int:
        """A customer from the shop's site with marketing consent on email; her contact id."""
        with self.db.engine.begin() as conn:
            cid = sync.write_contacts(conn, [ContactRecord(source="site", first_name=first, emails=[email])],
                                      self.settings, sync.Counts()).contact_ids[0]
            assert cid is not None
            consent.record(conn, cid, "email", "marketing", "granted", source="form")
        return cid

    def send_telegram(self, key: str) -> str:
        """One message to the person's linked chat, dispatched once: its status, with the reason when not sent."""
        with self.db.engine.begin() as conn:
            mid = messaging.create(conn, self.settings, contact_id=self.ids[key], channel="telegram",
                                   template=TELEGRAM.name, key=f"winter-telegram:{key}").id
        messaging.dispatch(self.db.engine, self.settings, channels=["telegram"])
        row = self.message(mid)
        return str(row.status) if row.status == "sent" else f"{row.status}: {row.error}"

    def sms_settings(self, provider: str) -> Settings:
        return replace(self.settings, extra={**self.settings.extra,
                                             **sms_sandbox.settings_for(self.sms_server.base_url, provider)})

    def send_sms(self, settings: Settings, provider: str, keys: list[str]) -> dict[str, int]:
        messaging.create_many(self.db.engine, settings, [self.ids[k] for k in keys], channel="sms",
                              template=SMS.name, key_prefix=f"winter-sms-{provider}")
        messaging.dispatch(self.db.engine, settings, channels=["sms"])
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(Message.id, Message.contact_id)
                                .where(Message.idempotency_key.like(f"winter-sms-{provider}:%")))
            by_contact = {cid: mid for mid, cid in rows}
        return {k: by_contact[self.ids[k]] for k in keys}

    def send_transactional(self, key: str) -> email.message.EmailMessage:
        before = len(self.smtp.received)
        row = messaging.send(self.db.engine, self.settings, contact_id=self.ids[key], channel="email",
                             template=ORDER.name, key=f"order-ready:{key}", purpose="transactional")
        assert row["status"] == "sent", row["error"]
        (got,) = self.smtp.received[before:]
        return got.message

    def message(self, message_id: int) -> Any:
        with self.db.engine.connect() as conn:
            return conn.execute(select(Message.__table__).where(Message.id == message_id)).one()

    def statuses(self, ids: dict[str, int]) -> dict[str, str]:
        return {k: self.message(mid).status for k, mid in ids.items()}

    def kinds(self, message_id: int) -> list[str]:
        e = MessageEvent.__table__.c
        with self.db.engine.connect() as conn:
            return list(conn.execute(select(e.kind).where(e.message_id == message_id).order_by(e.id)).scalars())

    def detail(self, message_id: int) -> dict[str, Any]:
        e = MessageEvent.__table__.c
        with self.db.engine.connect() as conn:
            return dict(conn.execute(select(e.detail).where(e.message_id == message_id).order_by(e.id)).scalar() or {})

    def events_of(self, letters: dict[str, Sent]) -> dict[str, list[str]]:
        return {key: self.kinds(sent.message_id) for key, sent in letters.items()}


# --- reports and letters -----------------------------------------------------------------------

def mailbox_full(sent: Sent, *, report_id: str) -> bytes:
    """A relay's "still retrying" warning (4.2.2, mailbox full at Yandex) about `sent`."""
    raw = (OWN_REPORTS / "postfix_mailbox_full.eml").read_bytes()
    raw = raw.replace(CORPUS_VERP, sent.return_path.encode()).replace(b"olga.petrova@yandex.ru",
                                                                       sent.address.encode())
    raw = CORPUS_ORIGINAL.sub(sent.provider_id.encode(), raw)
    return re.sub(rb"(?im)^message-id: *<[^>]+>", f"Message-ID: <{report_id}>".encode(), raw, count=1)


def html_of(got: Received) -> str:
    body = got.message.get_body(("html",))
    assert body is not None
    return str(body.get_content())


def text_of(letter: email.message.EmailMessage) -> str:
    body = letter.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


@contextmanager
def sms_emulator() -> Iterator[Any]:
    """The SMS providers' emulator on a background thread, stopped whatever the test did."""
    server = sms_sandbox.start()
    try:
        yield server
    finally:
        server.stop()

