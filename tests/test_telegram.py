"""The built-in Telegram plugin against a local Bot API emulator (plugins/telegram/sandbox.py).

People link their chat by pressing Start on a signed deep link (read by
polling getUpdates, on RQ with a real Redis, or delivered to the webhook
route by the emulator over HTTP); the `telegram` channel sends to the linked
chat within Telegram's limits and acts on its errors. Tables matter here
(links, consent, merges, erasure), so most tests run on both databases.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass, replace
from typing import Any, Iterator

import pytest
from redis import Redis
from sqlalchemy import select
from werkzeug.serving import make_server

from hub import consent, messaging, plugins, queue
from hub.config import Settings, load_settings
from hub.db import utcnow
from hub.i18n import use_language
from hub.identity import merge_contacts
from hub.message_templates import Template
from hub.models import Message
from hub.schedule import ScheduledRun
from hub.send_reasons import reason_text
from plugins.telegram import linking, payload, updates
from plugins.telegram.config import load
from plugins.telegram.models import TelegramChat
from plugins.telegram.sandbox import TOKEN, BotApi, Sandbox
from tests.conftest import HubDB
from tests.support.shop import SHOP, make_shop

TEXT = Template(name="tg-promo", channel="sms", text="{{ contact.first_name }}, скидка 10% по промокоду SALE10")
BLOCKED = "Forbidden: bot was blocked by the user"


@dataclass
class Bot:
    db: HubDB
    settings: Settings
    api: BotApi
    url: str
    ids: dict[str, int]

    @property
    def engine(self) -> Any:
        return self.db.engine

    def press_start(self, contact_id: int, chat_id: int, *, username: str | None = "anna_t") -> dict[str, Any]:
        self.api.press_start(chat_id, payload.make(self.settings, contact_id), username)
        return updates.poll(self.engine, self.settings)

    def chats(self) -> dict[int, int]:
        """contact id → chat id."""
        with self.engine.connect() as conn:
            return dict(conn.execute(select(TelegramChat.contact_id, TelegramChat.chat_id)).all())

    def send(self, contact_id: int, key: str, purpose: str = "marketing") -> int:
        with self.engine.begin() as conn:
            return messaging.create(conn, self.settings, contact_id=contact_id, channel="telegram", template=TEXT,
                                    key=key, purpose=purpose).id

    def dispatch(self) -> Any:
        return messaging.dispatch(self.engine, self.settings, channels=["telegram"])

    def message(self, message_id: int) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(select(Message).where(Message.id == message_id)).one()


def _settings(monkeypatch: pytest.MonkeyPatch, url: str, **env: str) -> Settings:
    values = {"HUB_TELEGRAM_BOT_TOKEN": TOKEN, "HUB_TELEGRAM_API_URL": url, "HUB_TELEGRAM_BOT_NAME": "hub_shop_bot",
              "HUB_PLUGINS": "telegram", **env}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    plugins.use(plugins.build(settings))
    return settings


@pytest.fixture
def bot(hub_db: HubDB, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bot]:
    with Sandbox() as sandbox:
        settings = _settings(monkeypatch, sandbox.url)
        ids = make_shop(hub_db, SHOP[:4], now=utcnow())
        yield Bot(hub_db, settings, sandbox.api, sandbox.url, ids)


def _telegram_consent(bot: Bot, contact_id: int) -> dict[str, Any]:
    with bot.engine.connect() as conn:
        events = [e for e in consent.history(conn, contact_id) if e["channel"] == "telegram"]
    return events[-1] if events else {}


# --- linking --------------------------------------------------------------------------------

@pytest.mark.both_databases
def test_pressing_start_links_the_chat_and_records_consent_with_evidence(bot: Bot) -> None:
    anna = bot.ids["anna"]
    counts = bot.press_start(anna, 1001)
    assert counts == {"updates": 1, "linked": 1}
    assert bot.chats() == {anna: 1001}
    event = _telegram_consent(bot, anna)
    assert (event["purpose"], event["status"], event["source"]) == ("marketing", "granted", "telegram")
    evidence = event["evidence"]
    assert evidence["chat_id"] == 1001 and evidence["telegram_user_id"] == 1001
    assert evidence["username"] == "anna_t" and evidence["how"] == "deep link"
    assert isinstance(evidence["update_id"], int) and evidence["at"]
    assert bot.api.texts_to(1001) == ["Готово! Теперь мы будем писать вам сюда. Отписаться: /stop"]
    # The offset moved on: the same update is not read twice.
    assert updates.poll(bot.engine, bot.settings) == {"updates": 0}
    assert bot.api.pending == []


@pytest.mark.both_databases
def test_forged_old_and_erased_links_link_nothing_and_get_a_polite_answer(bot: Bot) -> None:
    from plugins.gdpr import erasure

    anna, boris = bot.ids["anna"], bot.ids["boris"]
    made = payload.make(bot.settings, anna)
    old = payload.make(bot.settings, anna, now=utcnow() - dt.timedelta(days=400))
    for chat, text in ((2001, f"/start {made[:-1]}{'A' if made[-1] != 'A' else 'B'}"), (2002, f"/start {old}"),
                       (2003, "/start <script>alert(1)</script>"), (2004, "/start " + "я" * 300)):
        bot.api.write(chat, text)
    erasure.erase(bot.engine, bot.settings, boris)
    bot.api.press_start(2005, payload.make(bot.settings, boris))
    counts = updates.poll(bot.engine, bot.settings)
    assert counts == {"updates": 5, "refused": 5}
    assert bot.chats() == {}
    assert _telegram_consent(bot, anna) == {}
    for chat in (2001, 2002, 2003, 2004, 2005):
        assert bot.api.texts_to(chat) == ["Извините, эта ссылка больше не действует. Откройте ссылку на Telegram "
                                          "из нашего последнего письма или SMS или со страницы настроек подписки."]


@pytest.mark.both_databases
def test_the_latest_link_wins_for_a_chat_and_for_a_contact(bot: Bot) -> None:
    anna, vera = bot.ids["anna"], bot.ids["vera"]
    bot.press_start(anna, 1001)
    bot.press_start(vera, 1001)  # the same phone, another person's link: the chat is Vera's now
    assert bot.chats() == {vera: 1001}
    bot.press_start(anna, 1002)
    # A new Telegram account, with a link made after the first chat was linked (the next day's, from the
    # preference centre): the earlier chat is let go.
    bot.api.press_start(1003, payload.make(bot.settings, anna, now=utcnow() + dt.timedelta(days=1)), "anna_new")
    assert updates.poll(bot.engine, bot.settings) == {"updates": 1, "linked": 1}
    assert bot.chats() == {vera: 1001, anna: 1003}


@pytest.mark.both_databases
def test_a_forwarded_link_does_not_take_a_linked_contact_over_from_another_account(bot: Bot) -> None:
    anna = bot.ids["anna"]
    letter = payload.make(bot.settings, anna)  # the link in the SMS Анна got today
    older = payload.make(bot.settings, anna, now=utcnow() - dt.timedelta(days=3))  # one from an older letter
    bot.api.press_start(1001, letter, "anna_t")
    updates.poll(bot.engine, bot.settings)
    granted = _telegram_consent(bot, anna)
    # She forwards the SMS, or someone sees the link: another account presses Start with it, and with
    # the older one; Анна's own chat presses it again (a second tap is fine).
    bot.api.press_start(1666, letter, "stranger")
    bot.api.press_start(1667, older, "stranger2")
    bot.api.press_start(1001, letter, "anna_t")
    assert updates.poll(bot.engine, bot.settings) == {"updates": 3, "refused": 2, "linked": 1}
    assert bot.chats() == {anna: 1001}
    assert _telegram_consent(bot, anna)["evidence"]["chat_id"] == 1001 and granted["evidence"]["chat_id"] == 1001
    for chat in (1666, 1667):
        assert bot.api.texts_to(chat) == [
            "Эта ссылка уже подключена к другому аккаунту Telegram. Если вы хотите получать наши сообщения "
            "здесь, откройте ссылку на Telegram со страницы настроек подписки (она есть в каждом нашем письме) "
            "завтра."]
    assert bot.api.texts_to(1001)[-1] == "Готово! Теперь мы будем писать вам сюда. Отписаться: /stop"


@pytest.mark.both_databases
def test_stop_unlinks_and_withdraws(bot: Bot) -> None:
    anna = bot.ids["anna"]
    bot.press_start(anna, 1001)
    bot.api.write(1001, "/stop")
    bot.api.write(1001, "привет")
    assert updates.poll(bot.engine, bot.settings) == {"updates": 2, "stopped": 1, "hint": 1}
    assert bot.chats() == {}
    event = _telegram_consent(bot, anna)
    assert event["status"] == "withdrawn" and event["evidence"]["reason"] == "/stop"
    replies = bot.api.texts_to(1001)
    assert replies[1].startswith("Готово: больше не будем писать вам сюда.")
    assert "/stop" in replies[2]


def test_polling_with_a_webhook_set_says_so(bot: Bot) -> None:
    bot.api.webhook_url = "https://shop.example/hooks/telegram"
    from plugins.telegram.bot import BotError

    with pytest.raises(BotError) as caught:
        updates.poll(bot.engine, bot.settings)
    assert caught.value.code == 409 and TOKEN not in str(caught.value)


@pytest.mark.both_databases
def test_the_schedule_polls_on_an_rq_worker(bot: Bot, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    settings = load_settings()
    Redis.from_url(redis_url).flushdb()
    anna = bot.ids["anna"]
    bot.api.press_start(1001, payload.make(settings, anna))
    found = plugins.registry("register_schedules", settings=settings)
    assert "telegram-updates" in found
    result = found["telegram-updates"].job(ScheduledRun(settings=settings, engine=bot.engine, now=utcnow()))
    assert result == {"telegram": "enqueued"}
    assert bot.chats() == {}  # not yet: the worker reads
    queue.work(settings, ("low",), burst=True, simple=True)
    assert bot.chats() == {anna: 1001}


def test_no_schedule_without_a_token_or_with_a_webhook(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_TELEGRAM_WEBHOOK_SECRET", "s3cret")
    assert "telegram-updates" not in plugins.registry("register_schedules", settings=load_settings())
    monkeypatch.delenv("HUB_TELEGRAM_WEBHOOK_SECRET")
    monkeypatch.delenv("HUB_TELEGRAM_BOT_TOKEN")
    assert "telegram-updates" not in plugins.registry("register_schedules", settings=load_settings())


# --- the webhook ------------------------------------------------------------------------------

@pytest.fixture
def hooked(bot: Bot, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Bot, Any]]:
    from hub.admin.app import create_app

    monkeypatch.setenv("HUB_TELEGRAM_WEBHOOK_SECRET", "hook-secret_1")
    settings = load_settings()
    plugins.use(plugins.build(settings))
    yield replace(bot, settings=settings), create_app(settings)


def test_the_webhook_refuses_a_wrong_secret_and_bad_bodies_without_a_traceback(hooked: tuple[Bot, Any]) -> None:
    bot, app = hooked
    client = app.test_client()
    update = {"update_id": 1, "message": {"message_id": 1, "chat": {"id": 5, "type": "private"}, "text": "/stop"}}
    for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"},
                    {"X-Telegram-Bot-Api-Secret-Token": "hook-secret_1x"}):
        answer = client.post("/hooks/telegram", json=update, headers=headers)
        assert answer.status_code == 403 and answer.get_json() == {"error": "secret token does not match"}
    good = {"X-Telegram-Bot-Api-Secret-Token": "hook-secret_1"}
    for body, status in ((b"{not json", 400), (b"\xff\xfe", 400), (b"[1, 2]", 400), (b'{"update_id": "x"}', 400),
                         (b"x" * (updates.MAX_BODY + 1), 413)):
        answer = client.post("/hooks/telegram", data=body, headers={**good, "Content-Type": "application/json"})
        assert answer.status_code == status, body[:20]
        assert "Traceback" not in answer.get_data(as_text=True)
    answer = client.post("/hooks/telegram", json={"update_id": 7, "edited_message": {}}, headers=good)
    assert answer.status_code == 200 and answer.get_json() == {}


@pytest.mark.both_databases
def test_the_emulator_delivers_start_to_the_webhook_and_the_reply_rides_on_the_answer(
        hooked: tuple[Bot, Any]) -> None:
    bot, app = hooked
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        from plugins.telegram.bot import Bot as Client
        from plugins.telegram.config import load

        with Client(load(bot.settings)) as client:
            client.call("setWebhook", url=f"http://127.0.0.1:{server.server_port}/hooks/telegram",
                        secret_token="hook-secret_1")
        anna = bot.ids["anna"]
        update = bot.api.press_start(1001, payload.make(bot.settings, anna), "anna_t")
        assert bot.api.webhook_answers == [200]
        assert bot.chats() == {anna: 1001}
        assert _telegram_consent(bot, anna)["evidence"]["update_id"] == update["update_id"]
        assert bot.api.texts_to(1001) == ["Готово! Теперь мы будем писать вам сюда. Отписаться: /stop"]
        # Telegram delivers an update again when it had no answer: recorded once.
        bot.api._deliver(bot.api.webhook_url, bot.api.webhook_secret, update)
        with bot.engine.connect() as conn:
            assert len([e for e in consent.history(conn, anna) if e["channel"] == "telegram"]) == 1
    finally:
        server.shutdown()
        thread.join(5)


# --- the channel ------------------------------------------------------------------------------

@pytest.mark.both_databases
def test_a_campaign_reaches_linked_chats_and_skips_the_others_with_a_russian_reason(bot: Bot) -> None:
    anna, vera, gleb = bot.ids["anna"], bot.ids["vera"], bot.ids["gleb"]
    bot.press_start(anna, 1001)
    bot.press_start(vera, 1003)
    bot.api.sent.clear()
    report = messaging.create_many(bot.engine, bot.settings, [anna, vera, gleb], channel="telegram", template=TEXT,
                                   key_prefix="promo-tg")
    assert report.created == 3
    bot.dispatch()
    assert sorted((s.chat_id, s.text) for s in bot.api.sent) == [
        (1001, "Анна, скидка 10% по промокоду SALE10"), (1003, "Вера, скидка 10% по промокоду SALE10")]
    with bot.engine.connect() as conn:
        rows = {r.contact_id: r for r in conn.execute(select(Message).where(Message.channel == "telegram"))}
    assert rows[anna].status == "sent" and rows[anna].provider_id.isdigit()
    assert rows[gleb].status == "suppressed" and "no linked Telegram chat" in rows[gleb].error
    with use_language("ru"):
        assert "нет подключённого чата Telegram" in reason_text(rows[gleb].error)


WORKFLOW = """name: telegram_back
title: Come back, by Telegram
trigger: {segment: dormant_90d}
holdout: 0%
steps:
  - send: {channel: telegram, template: tg-promo, purpose: marketing}
"""


@pytest.mark.both_databases
def test_a_workflow_step_on_channel_telegram_is_delivered(bot: Bot, monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Any) -> None:
    from click.testing import CliRunner

    import workflows
    from hub import message_templates
    from tests.support.cli import cli
    from tests.support.shop import start, write

    settings = _settings(monkeypatch, bot.url, HUB_PLUGINS="telegram,mailing,workflows")
    workflows.register_commands(cli)
    anna, vera = bot.ids["anna"], bot.ids["vera"]
    bot.press_start(anna, 1001)
    bot.api.sent.clear()
    with bot.engine.begin() as conn:
        message_templates.save(conn, settings, TEXT)
    added = CliRunner().invoke(cli, ["workflows", "add", write(tmp_path, "tg.yaml", WORKFLOW)])
    assert added.exit_code == 0, added.output
    start(replace(bot.db, settings=settings), "telegram_back", utcnow())
    messaging.dispatch(bot.engine, settings, channels=["telegram"])
    assert [(s.chat_id, s.text) for s in bot.api.sent] == [(1001, "Анна, скидка 10% по промокоду SALE10")]
    with bot.engine.connect() as conn:
        statuses = dict(conn.execute(select(Message.contact_id, Message.status)
                                     .where(Message.channel == "telegram")).all())
    assert statuses[anna] == "sent" and statuses.get(vera) in (None, "suppressed")


def test_limits_hold_overall_and_per_chat(bot: Bot) -> None:
    """40 chats at once and three messages to one chat: no 429, at most 30 a second, one a second per chat."""
    with bot.engine.begin() as conn:
        ids = make_more(bot, conn, 40)
    bot.api.sent.clear()
    messaging.create_many(bot.engine, bot.settings, ids, channel="telegram", template=TEXT, key_prefix="burst")
    anna = ids[0]
    for n in range(2):  # order news: no frequency cap holds them
        bot.send(anna, f"again-{n}", purpose="transactional")
    bot.dispatch()
    assert bot.api.refused == []
    arrivals = sorted(s.at for s in bot.api.sent)
    assert len(arrivals) == 42
    assert max(sum(1 for b in arrivals if a <= b < a + 1.0) for a in arrivals) <= 30
    to_anna = [s.at for s in bot.api.sent if s.chat_id == 9000]
    assert len(to_anna) == 3 and all(b - a >= 1.0 for a, b in zip(to_anna, to_anna[1:], strict=False))


def make_more(bot: Bot, conn: Any, count: int) -> list[int]:
    """`count` contacts with a phone, each with a linked chat (9000, 9001, …) and telegram consent."""
    from hub import sync
    from hub.models import ExternalRef
    from hub.records import ContactRecord

    records = [ContactRecord(source="bulk", external_id=f"p{n}", first_name="Мария",
                             phones=[f"+7495222{n:04d}"]) for n in range(count)]
    sync.write_contacts(conn, records, bot.settings, sync.Counts())
    found = dict(conn.execute(select(ExternalRef.external_id, ExternalRef.contact_id)
                              .where(ExternalRef.source == "bulk")).all())
    ids = [found[f"p{n}"] for n in range(count)]
    for n, contact_id in enumerate(ids):
        linking.link_chat(conn, contact_id, 9000 + n, user_id=9000 + n, username=None, update_id=None, now=utcnow())
        consent.record(conn, contact_id, "telegram", "marketing", "granted", source="test")
        bot.api.started.add(9000 + n)
    return ids


@pytest.mark.both_databases
def test_429_defers_for_at_least_retry_after(bot: Bot) -> None:
    anna = bot.ids["anna"]
    bot.press_start(anna, 1001)
    bot.api.throttle_next = [37]
    message_id = bot.send(anna, "throttled")
    before = utcnow()
    bot.dispatch()
    row = bot.message(message_id)
    assert row.status == "deferred" and "429" in row.error and "retry after 37" in row.error
    due = row.due_at if row.due_at.tzinfo else row.due_at.replace(tzinfo=dt.timezone.utc)
    assert due >= before + dt.timedelta(seconds=37)
    assert bot.chats() == {anna: 1001}  # a 429 is no reason to let the chat go


@pytest.mark.both_databases
def test_a_blocked_bot_withdraws_consent_and_nothing_is_sent_afterwards(bot: Bot) -> None:
    anna = bot.ids["anna"]
    bot.press_start(anna, 1001)
    bot.api.sent.clear()
    bot.api.block(1001)
    first = bot.send(anna, "one")
    bot.dispatch()
    row = bot.message(first)
    assert row.status == "failed" and BLOCKED in row.error
    event = _telegram_consent(bot, anna)
    assert event["status"] == "withdrawn" and event["evidence"]["description"] == BLOCKED
    assert event["evidence"]["chat_id"] == 1001 and event["evidence"]["message_id"] == first
    assert bot.chats() == {}
    second = bot.send(anna, "two")
    bot.dispatch()
    assert bot.message(second).status == "suppressed"
    assert bot.api.sent == [] and [r[1] for r in bot.api.refused] == [403]


@pytest.mark.both_databases
def test_chat_not_found_fails_and_unlinks(bot: Bot) -> None:
    anna = bot.ids["anna"]
    with bot.engine.begin() as conn:
        linking.link_chat(conn, anna, 4242, user_id=4242, username=None, update_id=None, now=utcnow())
        consent.record(conn, anna, "telegram", "marketing", "granted", source="test")
    message_id = bot.send(anna, "lost")
    bot.dispatch()
    row = bot.message(message_id)
    assert row.status == "failed" and "chat not found" in row.error
    assert bot.chats() == {}


def test_a_wrong_token_stops_the_channel_and_never_shows_the_token(bot: Bot, monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    anna = bot.ids["anna"]
    bot.press_start(anna, 1001)
    wrong = "987654321:" + "Z" * 35
    settings = _settings(monkeypatch, bot.url, HUB_TELEGRAM_BOT_TOKEN=wrong)
    message_id = bot.send(anna, "nope")
    caplog.set_level("DEBUG")
    messaging.dispatch(bot.engine, settings, channels=["telegram"])
    row = bot.message(message_id)
    assert row.status == "queued"  # nothing was handed over: it waits for a good token
    from plugins.telegram.channel import TelegramChannel

    for text in (caplog.text, row.error or "", repr(TelegramChannel(settings)), repr(load(settings))):
        assert wrong not in text and TOKEN not in text


@pytest.mark.both_databases
def test_a_merge_between_link_and_send_delivers_to_the_survivors_chat(bot: Bot) -> None:
    anna, vera, gleb = bot.ids["anna"], bot.ids["vera"], bot.ids["gleb"]
    bot.press_start(anna, 1001)
    with bot.engine.begin() as conn:
        merge_contacts(conn, vera, anna, reason={"rule": "test"}, settings=bot.settings)
    assert bot.chats() == {vera: 1001}
    bot.api.sent.clear()
    bot.send(vera, "after-merge")
    bot.dispatch()
    assert [s.chat_id for s in bot.api.sent] == [1001]
    # Both linked: the chat linked later stays.
    bot.press_start(gleb, 1004)
    with bot.engine.begin() as conn:
        merge_contacts(conn, vera, gleb, reason={"rule": "test"}, settings=bot.settings)
    assert bot.chats() == {vera: 1004}
    # A link that names the merged contact, opened after the merge, links the survivor (a new account,
    # with a link made after the survivor's chat was linked: see the forwarded-link test).
    bot.api.press_start(1005, payload.make(bot.settings, anna, now=utcnow() + dt.timedelta(days=1)), "anna_new")
    updates.poll(bot.engine, bot.settings)
    assert bot.chats() == {vera: 1005}


@pytest.mark.both_databases
def test_an_unmerge_gives_the_chat_back(bot: Bot) -> None:
    from hub.unmerge import unmerge

    anna, vera = bot.ids["anna"], bot.ids["vera"]
    bot.press_start(anna, 1001)
    with bot.engine.begin() as conn:
        merge_id = merge_contacts(conn, vera, anna, reason={"rule": "test"}, settings=bot.settings)
    assert bot.chats() == {vera: 1001}
    unmerge(bot.engine, bot.settings, merge_id, actor="test")
    assert bot.chats() == {anna: 1001}


@pytest.mark.both_databases
def test_erasure_forgets_the_chat(bot: Bot) -> None:
    from plugins.gdpr import erasure

    anna = bot.ids["anna"]
    bot.press_start(anna, 1001)
    erasure.erase(bot.engine, bot.settings, anna)
    assert bot.chats() == {}
    bot.api.write(1001, "/stop")  # the person writes again: nothing is known of them
    assert updates.poll(bot.engine, bot.settings)["stopped"] == 1
    assert bot.api.texts_to(1001)[-1] == "Этот чат ни на что не подписан."


# --- the command line and the admin -----------------------------------------------------------

def test_the_commands(bot: Bot) -> None:
    from click.testing import CliRunner

    from plugins.telegram.commands import telegram_group

    runner = CliRunner()
    anna = bot.ids["anna"]
    done = runner.invoke(telegram_group, ["link", str(anna)])
    assert done.exit_code == 0, done.output
    url = done.output.strip()
    assert url.startswith("https://t.me/hub_shop_bot?start=")
    assert payload.read(bot.settings, url.rsplit("=", 1)[1], max_days=1) == anna
    done = runner.invoke(telegram_group, ["status", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == {"configured": True, "connected": True, "bot_name": "hub_shop_bot",
                                       "problem": None, "linked_chats": 0, "webhook_url": None, "mode": "polling"}
    done = runner.invoke(telegram_group, ["link", "999999"])
    assert done.exit_code == 1 and "999999" in done.output and "Traceback" not in done.output
    for args in (["--help"], ["status", "--help"], ["link", "--help"], ["poll", "--help"],
                 ["webhook", "set", "--help"]):
        assert runner.invoke(telegram_group, args).exit_code == 0
    done = runner.invoke(telegram_group, ["poll", "--json"])
    assert done.exit_code == 0 and json.loads(done.output) == {"updates": 0}


def test_the_schedule_without_redis_reads_here_and_says_so_in_russian(bot: Bot) -> None:
    from hub.schedule import result_text

    bot.api.press_start(1001, payload.make(bot.settings, bot.ids["anna"]))
    found = plugins.registry("register_schedules", settings=bot.settings)["telegram-updates"]
    result = found.job(ScheduledRun(settings=bot.settings, engine=bot.engine, now=utcnow()))
    assert result == {"messages read": 1, "chats linked": 1, "chats unsubscribed": 0, "links refused": 0}
    with use_language("ru"):
        assert result_text(result, "telegram-updates") == "прочитано сообщений: 1, подключено чатов: 1"
