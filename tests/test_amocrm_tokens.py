"""amoCRM tokens: stored encrypted, refreshed in one place, never reused."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest
import responses

from hub import credentials, schedule
from plugins.amocrm import tokens
from plugins.amocrm.client import AmoAuthError
from plugins.amocrm.sandbox import Account, SandboxServer
from plugins.amocrm.source import client_for
from tests.conftest import SECRET, HubDB

pytestmark = pytest.mark.both_databases  # token refresh under row locks

BASE = "https://shop.amocrm.ru"


def store_pair(db: HubDB, base_url: str = BASE, access: str = "access-1", refresh: str = "def502-refresh-1",
               client_id: str = "cid", client_secret: str = "client-secret-xyz",
               redirect_uri: str = "https://hub.example/amocrm") -> None:
    tokens.save(db.engine, db.settings, tokens.oauth_connection(
        base_url, client_id, client_secret, redirect_uri, access_token=access, refresh_token=refresh))


@responses.activate
def test_a_refused_token_is_refreshed_once_and_the_new_pair_stored(hub_db: HubDB) -> None:
    store_pair(hub_db)
    responses.get(f"{BASE}/api/v4/account", status=401, json={"title": "Unauthorized", "status": 401},
                  match=[responses.matchers.header_matcher({"Authorization": "Bearer access-1"})])
    responses.post(f"{BASE}/oauth2/access_token", json={
        "token_type": "Bearer", "expires_in": 86400, "access_token": "access-2", "refresh_token": "def502-refresh-2"},
        match=[responses.matchers.json_params_matcher({
            "client_id": "cid", "client_secret": "client-secret-xyz", "grant_type": "refresh_token",
            "refresh_token": "def502-refresh-1", "redirect_uri": "https://hub.example/amocrm"})])
    responses.get(f"{BASE}/api/v4/account", json={"id": 1, "subdomain": "shop"},
                  match=[responses.matchers.header_matcher({"Authorization": "Bearer access-2"})])
    client = client_for(hub_db.settings)
    assert client.get("/api/v4/account") == {"id": 1, "subdomain": "shop"}
    data, version = tokens.load(hub_db.engine, hub_db.settings)
    assert (data["access_token"], data["refresh_token"], version) == ("access-2", "def502-refresh-2", 2)
    assert client.auth.refreshes == 1  # type: ignore[attr-defined]
    with hub_db.engine.connect() as conn:
        raw = conn.execute(credentials.credentials_t.select()).first().secret
    assert b"def502-refresh-2" not in raw and b"client-secret-xyz" not in raw


@responses.activate
def test_a_worker_that_lost_the_race_uses_the_stored_token_without_refreshing(hub_db: HubDB) -> None:
    store_pair(hub_db)
    seen = tokens.load(hub_db.engine, hub_db.settings)[0]
    # Another worker refreshed meanwhile:
    tokens.update(hub_db.engine, hub_db.settings, access_token="access-9", refresh_token="def502-refresh-9")
    data, _, refreshed = tokens.refresh_stored(hub_db.engine, hub_db.settings, seen["access_token"])
    assert not refreshed and data["access_token"] == "access-9"
    assert len(responses.calls) == 0


@responses.activate
def test_a_revoked_refresh_token_asks_to_connect_again_without_leaking_it(hub_db: HubDB) -> None:
    store_pair(hub_db)
    responses.post(f"{BASE}/oauth2/access_token", status=401, json={
        "title": "Некорректный запрос", "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
        "status": 401, "detail": "В запросе отсутствует ряд параметров или параметры невалидны",
        "hint": "Token has been revoked"})
    with pytest.raises(AmoAuthError) as info:
        tokens.refresh_stored(hub_db.engine, hub_db.settings, "access-1")
    text = str(info.value)
    assert "Token has been revoked" in text and "hub connect amocrm" in text
    assert "def502-refresh-1" not in text and "client-secret-xyz" not in text
    assert tokens.load(hub_db.engine, hub_db.settings)[0]["refresh_token"] == "def502-refresh-1"


@responses.activate
def test_keep_alive_refreshes_only_an_old_pair(hub_db: HubDB) -> None:
    store_pair(hub_db)
    assert tokens.keep_alive(hub_db.engine, hub_db.settings) is False
    tokens.update(hub_db.engine, hub_db.settings, refreshed_at="2020-01-01T00:00:00+00:00")
    responses.post(f"{BASE}/oauth2/access_token", json={
        "token_type": "Bearer", "expires_in": 86400, "access_token": "access-2", "refresh_token": "def502-refresh-2"})
    assert tokens.keep_alive(hub_db.engine, hub_db.settings) is True
    data, _ = tokens.load(hub_db.engine, hub_db.settings)
    assert data["refresh_token"] == "def502-refresh-2" and not data["refreshed_at"].startswith("2020")


@responses.activate
def test_the_scheduler_keeps_an_idle_connection_alive_every_day(hub_db: HubDB, plugin_manager: Any) -> None:
    import plugins.amocrm

    plugin_manager.register(plugins.amocrm, name="amocrm")
    assert schedule.schedules(hub_db.settings)["amocrm-keep-alive"].every.days == 1
    run = schedule.run_due(hub_db.engine, hub_db.settings, only=["amocrm-keep-alive"])
    assert run.ran["amocrm-keep-alive"] == {"connected": False}  # nothing to keep alive yet
    store_pair(hub_db)
    tokens.update(hub_db.engine, hub_db.settings, refreshed_at="2020-01-01T00:00:00+00:00")
    responses.post(f"{BASE}/oauth2/access_token", json={
        "token_type": "Bearer", "expires_in": 86400, "access_token": "access-2", "refresh_token": "def502-refresh-2"})
    run = schedule.run_due(hub_db.engine, hub_db.settings, only=["amocrm-keep-alive"])
    assert run.ran["amocrm-keep-alive"] == {"refreshed": True}
    assert tokens.load(hub_db.engine, hub_db.settings)[0]["refresh_token"] == "def502-refresh-2"


def test_the_expiry_of_a_jwt_access_token_is_read() -> None:
    account = Account(contacts=0)
    pair = account.issue_tokens()
    expires = tokens.jwt_expiry(pair["access_token"])
    assert expires is not None and expires.tzinfo is not None
    assert tokens.jwt_expiry("not-a-jwt") is None


# --- four worker processes, one expired token -------------------------------------------------

def _worker(env: dict[str, str], start: Any, results: Any) -> None:
    os.environ.update(env)
    from hub.config import load_settings
    from plugins.amocrm.source import client_for

    settings = load_settings()
    client = client_for(settings)
    start.wait(30)
    try:
        body = client.get("/api/v4/account")
        results.put(("ok", body.get("subdomain"), client.auth.refreshes))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which asserts on it
        results.put(("error", f"{type(exc).__name__}: {exc}", 0))


@pytest.mark.parametrize("shared_redis", [False, True], ids=["database-lock", "with-redis"])
def test_four_processes_with_an_expired_token_cause_exactly_one_refresh(hub_db: HubDB, shared_redis: bool,
                                                                         request: pytest.FixtureRequest) -> None:
    account = Account(contacts=0, abuse_threshold=None)
    with SandboxServer(account) as server:
        pair = account.issue_tokens()
        store_pair(hub_db, server.base_url, pair["access_token"], pair["refresh_token"], server.client_id,
                   server.client_secret, server.redirect_uri)
        account.expire_access_tokens()
        account.reset_stats()
        env = {"HUB_DATABASE_URL": hub_db.url, "HUB_SECRET_KEY": SECRET, "HUB_PLUGINS": ""}
        if shared_redis:
            env["HUB_REDIS_URL"] = request.getfixturevalue("redis_url")
        ctx = multiprocessing.get_context("spawn")
        start, results = ctx.Event(), ctx.Queue()
        workers = [ctx.Process(target=_worker, args=(env, start, results)) for _ in range(4)]
        for w in workers:
            w.start()
        start.set()
        outcomes = [results.get(timeout=120) for _ in workers]
        for w in workers:
            w.join(30)
        stats = account.stats()
    assert [o[0] for o in outcomes] == ["ok"] * 4, outcomes
    assert {o[1] for o in outcomes} == {"hubsandbox"}
    assert sum(o[2] for o in outcomes) == 1  # one worker refreshed; three used its token
    assert stats["refresh_attempts"] == 1 and stats["refreshes"] == 1
    data, _ = tokens.load(hub_db.engine, hub_db.settings)
    assert data["refresh_token"] != pair["refresh_token"]


def test_refreshing_by_hand_says_until_when_in_local_time(hub_db: HubDB, plugin_manager: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from click.testing import CliRunner

    import plugins.amocrm as amocrm_plugin
    from hub import formats, i18n
    from tests.support.cli import cli

    plugin_manager.register(amocrm_plugin, name="amocrm")
    amocrm_plugin.register_commands(cli)
    account = Account(contacts=0)
    with SandboxServer(account) as server:
        pair = account.issue_tokens()
        store_pair(hub_db, server.base_url, pair["access_token"], pair["refresh_token"], server.client_id,
                   server.client_secret, server.redirect_uri)
        monkeypatch.setenv("HUB_TIMEZONE", "Asia/Omsk")
        done = CliRunner().invoke(cli, ["connect", "amocrm", "--refresh"], catch_exceptions=False)
        base_url = server.base_url
    assert done.exit_code == 0, done.output
    with i18n.use_language("ru"):
        zone = formats.zone_name("Asia/Omsk")
    # Three months on, in the company's time zone and saying which it is.
    assert re.fullmatch(rf"Токены amoCRM для {re.escape(base_url)} обновлены; токен обновления действует до "
                        rf"\d\d\.\d\d\.\d{{4}} \d\d:\d\d {re.escape(zone)}\.\n", done.output), done.output
    data, _version = tokens.load(hub_db.engine, hub_db.settings)
    assert data["refresh_token"] != pair["refresh_token"]
