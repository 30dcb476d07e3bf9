"""The `shop_telegram` channel: the chat the shop knows, Telegram's answers as delivery statuses, no token leaks."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import responses
import urllib3.exceptions

from hub.api import ChannelUnavailable, Outgoing, SettingsError
from hub_shop.emulator import ShopEmulator

TOKEN = "123456789:AAHtest_token-abcdefghijklmnopqrstuv"
API = f"https://api.telegram.org/bot{TOKEN}/sendMessage"


def factory(hub_plugins: Any) -> Any:
    found: dict[str, Any] = {}
    hub_plugins.hook.register_channels(register=found.__setitem__)
    return found["shop_telegram"]


def with_chat(shop: ShopEmulator, chat: bool = True) -> int:
    return next(cid for cid, c in shop.customers.items() if bool(c["telegram_chat_id"]) == chat)


def message(contact_id: int | None, text: str = "Привет!") -> Outgoing:
    return Outgoing(id=1, channel="shop_telegram", contact_id=contact_id, address="+79161234567", purpose="marketing",
                    template="hello", subject=None, text=text, html=None, key="campaign:hello:telegram:1")


@pytest.fixture
def channel(connected: ShopEmulator, hub_cli: Any, hub_settings: Any, hub_plugins: Any) -> Iterator[Any]:
    hub_cli.json("sync", "shop")
    opened = factory(hub_plugins)(dataclasses.replace(hub_settings, extra={**hub_settings.extra,
                                                                           "telegram_token": TOKEN}))
    opened.open()
    try:
        yield opened
    finally:
        opened.close()


@pytest.mark.parametrize("status, body, expected", [
    (200, {"ok": True, "result": {"message_id": 42, "chat": {"id": 1}}}, ("sent", None)),
    (403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
     ("failed", "Telegram: Forbidden: bot was blocked by the user (the person blocked the bot or left the chat)")),
    (429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
           "parameters": {"retry_after": 7}}, ("deferred", "Telegram: too many requests (retry after 7 s)")),
    (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
     ("failed", "Telegram: Bad Request: chat not found")),
    (502, "<html>Bad Gateway</html>", ("deferred", "Telegram answered HTTP 502")),
    (200, "<html>captive portal</html>", ("unknown", ("Telegram answered HTTP 200 without a JSON body; "
                                                      "whether the message went out is not known"))),
])
def test_telegram_answers_become_delivery_statuses(channel: Any, connected: ShopEmulator, contact_of: Any,
                                                   status: int, body: Any, expected: tuple[str, str | None]) -> None:
    customer = with_chat(connected)
    with responses.RequestsMock() as api:
        api.post(API, status=status, **({"json": body} if isinstance(body, dict) else {"body": body}))
        delivery = channel.send(message(contact_of(customer)))
        sent = json.loads(api.calls[0].request.body)
    assert sent == {"chat_id": str(connected.customers[customer]["telegram_chat_id"]), "text": "Привет!"}
    assert (delivery.status, delivery.error) == expected
    assert delivery.provider_id == ("42" if delivery.status == "sent" else None)


@pytest.mark.parametrize("failure, status", [
    (requests.ConnectTimeout("connect timed out"), "deferred"),
    (requests.ConnectionError(urllib3.exceptions.MaxRetryError(
        None, "/", urllib3.exceptions.NewConnectionError(None, "Name or service not known"))), "deferred"),
    (requests.ReadTimeout("read timed out"), "unknown"),
    (requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.")), "unknown"),
])
def test_a_request_that_never_left_is_deferred_one_that_may_have_is_unknown(channel: Any, connected: ShopEmulator,
                                                                              contact_of: Any, failure: Exception,
                                                                              status: str) -> None:
    with responses.RequestsMock() as api:
        api.post(API, body=failure)
        delivery = channel.send(message(contact_of(with_chat(connected))))
    assert delivery.status == status
    assert TOKEN not in (delivery.error or "")


def test_a_refused_token_stops_the_channel_without_showing_it(channel: Any, connected: ShopEmulator,
                                                              contact_of: Any) -> None:
    with responses.RequestsMock() as api:
        api.post(API, status=401, json={"ok": False, "error_code": 401, "description": "Unauthorized"})
        with pytest.raises(ChannelUnavailable) as raised:
            channel.send(message(contact_of(with_chat(connected))))
    assert str(raised.value) == "Telegram refused the bot token (HUB_TELEGRAM_TOKEN): Unauthorized"
    assert TOKEN not in repr(channel)


def test_what_cannot_go_is_not_sent(channel: Any, connected: ShopEmulator, contact_of: Any) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as api:
        api.post(API, json={"ok": True, "result": {"message_id": 1}})
        long = channel.send(message(contact_of(with_chat(connected)), text="а" * 4097))
        no_chat = channel.send(message(contact_of(with_chat(connected, chat=False))))
        assert len(api.calls) == 0
    assert (long.status, long.error) == ("failed", "the text has 4097 characters; Telegram takes at most 4096")
    assert no_chat.status == "failed" and "telegram_chat_id is empty" in (no_chat.error or "")


def test_the_token_is_a_setting_checked_when_the_channel_starts(hub_plugins: Any, hub_settings: Any) -> None:
    make = factory(hub_plugins)
    with pytest.raises(SettingsError, match="HUB_TELEGRAM_TOKEN: not set"):
        make(hub_settings)
    with pytest.raises(SettingsError, match="does not look like a bot token") as raised:
        make(dataclasses.replace(hub_settings, extra={"telegram_token": "oops-secret"}))
    assert "oops-secret" not in str(raised.value)


def test_debug_logs_of_the_http_library_do_not_show_the_token(channel: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        logging.getLogger("urllib3.connectionpool").debug('%s "POST /bot%s/sendMessage HTTP/1.1" 200 0',
                                                          "https://api.telegram.org:443", TOKEN)
    assert "/bot<token>/sendMessage" in caplog.text and TOKEN not in caplog.text


@pytest.mark.hub_plugins("shop", "mailing")
def test_a_campaign_goes_to_the_chats_the_shop_knows(connected: ShopEmulator, hub_cli: Any, contact_of: Any,
                                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUB_CONSENT_CHANNELS", "email,sms,phone,shop_telegram")
    monkeypatch.setenv("HUB_TELEGRAM_TOKEN", TOKEN)
    hub_cli.json("sync", "shop")
    chat, no_chat = contact_of(with_chat(connected)), contact_of(with_chat(connected, chat=False))
    for contact in (chat, no_chat):
        hub_cli("consent", "set", str(contact), "shop_telegram", "marketing", "granted")
    text = tmp_path / "hello.txt"
    text.write_text("Здравствуйте, {{ contact.first_name }}! Для вас скидка в магазине.", encoding="utf-8")
    hub_cli("templates", "add", "hello", "--text", str(text), "--channel", "shop_telegram")

    with responses.RequestsMock() as api:
        api.post(API, json={"ok": True, "result": {"message_id": 4242}})
        result = hub_cli("messages", "send", "hello", "--contact", str(chat), "--contact", str(no_chat),
                         "--channel", "shop_telegram", "--json")
        sent = [json.loads(c.request.body) for c in api.calls]
    report = json.loads(result.stdout)
    assert report["dispatch"]["sent"] == 1 and report["dispatch"]["suppressed"] == 1
    first_name = connected.customers[with_chat(connected)]["name"].split()[0]
    assert sent == [{"chat_id": str(connected.customers[with_chat(connected)]["telegram_chat_id"]),
                     "text": f"Здравствуйте, {first_name}! Для вас скидка в магазине."}]
    outbox = {m["contact_id"]: m for m in hub_cli.json("messages", "list")}
    assert (outbox[chat]["status"], outbox[chat]["provider_id"]) == ("sent", "4242")
    assert re.fullmatch(r"\+\d{11,15}", outbox[chat]["address"])  # consent and suppressions stay keyed by the phone
    assert outbox[no_chat]["status"] == "suppressed"
    assert "no Telegram chat with the shop's bot" in outbox[no_chat]["error"]
    assert TOKEN not in result.output
