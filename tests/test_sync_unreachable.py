"""A sync against a CRM that does not answer fails in bounded time, with one line saying what to check.

Two kinds of silence, both real sockets: a port nothing listens on (the
connection is refused) and a server that accepts connections and never says
a word. The clients' retries are bounded by a time budget as well as a count;
a manual clock shows that the budget, not the count, is what ended them.
And what a sync that did finish says, in both languages.
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

import plugins.amocrm as amocrm_plugin
import plugins.bitrix24 as bitrix24_plugin
from hub import i18n, sync
from hub.ratelimit import LocalBucket
from plugins.amocrm import client as amo_client
from plugins.amocrm import tokens
from plugins.amocrm.client import AmoClient, AmoUnreachable, StaticAuth
from plugins.amocrm.sandbox import Account
from plugins.bitrix24 import client as b24_client
from plugins.bitrix24 import connection
from plugins.bitrix24.client import Client, Unreachable, WebhookAuth
from tests.conftest import HubDB
from tests.support.cli import cli
from tests.support.clock import ManualClock

MANY = 1000  # retries a count alone would allow: far more than any budget lets happen


class SilentServer:
    """Accepts every connection and never answers (a portal hung behind its load balancer)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def refused_port() -> int:
    """A port that was free a moment ago and that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bitrix24_client(port: int, clock: ManualClock) -> Client:
    return Client(WebhookAuth(f"http://127.0.0.1:{port}/rest/1/s3cr3tc0de/"), LocalBucket(1000, 1000),
                  timeout=(1.0, 0.2), max_retries=MANY, sleep=clock.sleep, clock=clock)


def amocrm_client(port: int, clock: ManualClock) -> AmoClient:
    return AmoClient(f"http://127.0.0.1:{port}", StaticAuth("tok"), LocalBucket(1000, 1000), timeout=(1.0, 0.2),
                     max_retries=MANY, sleep=clock.sleep, clock=clock)


@pytest.mark.parametrize("kind", ["silent", "refused"])
def test_bitrix24_gives_up_once_its_retry_budget_is_spent(kind: str, request: pytest.FixtureRequest) -> None:
    port = request.getfixturevalue("silent").port if kind == "silent" else request.getfixturevalue("refused_port")
    clock = ManualClock()
    client = bitrix24_client(port, clock)
    with pytest.raises(Unreachable) as failed:
        client.call("profile")
    message = str(failed.value)
    assert message.startswith(f"Битрикс24 по адресу 127.0.0.1:{port} не отвечает (")
    assert ("нет ответа вовремя" if kind == "silent" else "не удалось подключиться") in message
    assert "Проверьте адрес, что портал работает" in message and "hub connect bitrix24" in message
    assert "\n" not in message and "s3cr3tc0de" not in message
    # Several tries, far fewer than the count allows, and no wait went past the budget.
    assert 3 <= client.stats.requests < 20
    assert clock() - ManualClock().now <= b24_client.FIRST_CONTACT_BUDGET_S
    if kind == "silent":
        assert len(request.getfixturevalue("silent").accepted) == client.stats.requests


@pytest.mark.parametrize("kind", ["silent", "refused"])
def test_amocrm_gives_up_once_its_retry_budget_is_spent(kind: str, request: pytest.FixtureRequest) -> None:
    port = request.getfixturevalue("silent").port if kind == "silent" else request.getfixturevalue("refused_port")
    clock = ManualClock()
    client = amocrm_client(port, clock)
    with pytest.raises(AmoUnreachable) as failed:
        client.get("/api/v4/account")
    message = str(failed.value)
    assert message.startswith(f"amoCRM по адресу 127.0.0.1:{port} не отвечает (")
    assert ("нет ответа вовремя" if kind == "silent" else "не удалось подключиться") in message
    assert "Проверьте адрес, что аккаунт работает" in message and "hub connect amocrm" in message
    assert "\n" not in message and "tok" not in message
    assert 3 <= client.stats.requests < 20
    assert clock() - ManualClock().now <= amo_client.FIRST_CONTACT_BUDGET_S


def test_the_message_is_in_english_when_chosen(refused_port: int) -> None:
    with i18n.use_language("en"), pytest.raises(Unreachable) as failed:
        bitrix24_client(refused_port, ManualClock()).call("profile")
    assert str(failed.value).startswith(f"Bitrix24 at 127.0.0.1:{refused_port} does not answer (could not connect; ")
    assert "Check the address, that the portal is up, and the webhook" in str(failed.value)


def test_a_portal_that_answered_once_gets_the_longer_budget(refused_port: int) -> None:
    clock = ManualClock()
    client = bitrix24_client(refused_port, clock)
    client.answered = True  # as after the first page of a long sync
    with pytest.raises(Unreachable):
        client.call("crm.contact.list")
    spent = clock() - ManualClock().now
    assert b24_client.FIRST_CONTACT_BUDGET_S < spent <= b24_client.RETRY_BUDGET_S


# --- as a user meets it: `hub sync` --------------------------------------------------------------

@pytest.fixture
def hub(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    for plugin, name in ((bitrix24_plugin, "bitrix24"), (amocrm_plugin, "amocrm")):
        plugin_manager.register(plugin, name=name)
    bitrix24_plugin.register_commands(cli)
    amocrm_plugin.register_commands(cli)
    # A short budget, so the test waits a second or two rather than the half minute a user would.
    for module in (b24_client, amo_client):
        monkeypatch.setattr(module, "FIRST_CONTACT_BUDGET_S", 1.5)
        monkeypatch.setattr(module, "READ_TIMEOUT_S", 0.5)
    return hub_db


def connect_bitrix24(hub: HubDB, port: int) -> None:
    connection.save(hub.engine, hub.settings, {"kind": "webhook", "url": f"http://127.0.0.1:{port}/rest/1/abc123/"})


def connect_amocrm(hub: HubDB, port: int) -> None:
    token = Account(contacts=0).issue_long_lived_token()
    tokens.save(hub.engine, hub.settings, tokens.long_lived_connection(f"http://127.0.0.1:{port}", token))


@pytest.mark.parametrize("source", ["bitrix24", "amocrm"])
def test_hub_sync_fails_with_one_line_saying_what_to_check(hub: HubDB, silent: SilentServer, source: str) -> None:
    (connect_bitrix24 if source == "bitrix24" else connect_amocrm)(hub, silent.port)
    result = CliRunner().invoke(cli, ["sync", source])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"Ошибка: синхронизация {source} не удалась: ")
    assert f"127.0.0.1:{silent.port} не отвечает (нет ответа вовремя; попыток: " in lines[0]
    assert "Проверьте адрес" in lines[0] and f"hub connect {source}" in lines[0]
    assert "Traceback" not in result.output and silent.accepted


def test_progress_shows_the_sync_waiting_before_it_fails(hub: HubDB, refused_port: int) -> None:
    connect_bitrix24(hub, refused_port)
    seen: list[tuple[str, int]] = []
    with pytest.raises(sync.SyncError, match="не отвечает"):
        sync.run(hub.engine, hub.settings, "bitrix24", progress=lambda entity, n: seen.append((entity, n)))
    assert seen == [("fields", 0)]  # the progress line was up while the portal was tried (its first entity)


def test_hub_sync_in_english(hub: HubDB, refused_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    connect_amocrm(hub, refused_port)
    result = CliRunner().invoke(cli, ["sync", "amocrm"])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: sync amocrm failed: amoCRM at 127.0.0.1:{refused_port} does not answer "
                                    "(could not connect; attempts: ")
    assert "Check the address, that the account is up, and its token" in result.output


# --- what a finished sync says ---------------------------------------------------------------------

def test_the_summary_is_in_russian_with_plural_forms_and_in_english_when_chosen() -> None:
    from hub.commands.sync import summary

    data = {"kind": "full", "contacts": {"created": 1234, "updated": 2, "deleted": 0, "merged": 1, "refused": 1},
            "orders": {"created": 21, "updated": 0, "deleted": 5, "refused": 0}, "errors": 1, "requests": 22,
            "rate_limited": 3, "duration_s": 12.5}
    with i18n.use_language("ru"):
        assert summary("bitrix24", data) == (
            "bitrix24 (полная синхронизация): контакты: новых 1\u00a0234, обновлено 2, удалено 0, объединено 1; "
            "заказы: новых 21, обновлено 0, удалено 5; 1 ошибка; 22 запроса (упёрлись в лимит: 3); "
            "не принята 1 запись людей, удалённых по их просьбе; 12,5 с.")
    with i18n.use_language("en"):
        assert summary("bitrix24", {**data, "kind": "incremental"}) == (
            "bitrix24 (incremental): contacts 1,234 new, 2 updated, 0 deleted, 1 merged; orders 21 new, 0 updated, "
            "5 deleted; 1 error; 22 requests (3 rate-limited); 1 record of a person erased on request kept out; "
            "12.5 s.")


def test_the_summary_counts_values_found_shared() -> None:
    from hub.commands.sync import summary

    data = {"kind": "full", "contacts": {"created": 4, "updated": 0, "deleted": 0, "merged": 0, "refused": 0},
            "orders": {"created": 0, "updated": 0, "deleted": 0, "refused": 0}, "errors": 0, "duration_s": 1,
            "shared_values": 3}
    with i18n.use_language("ru"):
        said = summary("bitrix24", data)
        assert "3 телефона или e-mail оказались общими для нескольких людей (объединяют, только если совпадают имена)" \
            in said
    with i18n.use_language("en"):
        assert "1 phone or email found to be several people's (it joins people only when names agree)" in summary(
            "bitrix24", {**data, "shared_values": 1})
        assert "several people's" not in summary("bitrix24", {**data, "shared_values": 0})
