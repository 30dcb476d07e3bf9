"""The Bitrix24 plugin's stored connection, token refresh and event receiver."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import responses
from sqlalchemy import select

import plugins.bitrix24 as bitrix24_plugin
from hub import credentials, queue
from hub.admin import create_app
from plugins.bitrix24 import connection
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases  # token refresh under row locks

TOKEN_URL = "https://oauth.example.test/oauth/token/"


def oauth_data(**extra: Any) -> dict[str, Any]:
    return {"kind": "oauth", "client_id": "app.1", "client_secret": "app-secret", "oauth_url": TOKEN_URL,
            "access_token": "expired-access", "refresh_token": "refresh-1",
            "client_endpoint": "https://shop.bitrix24.ru/rest/", **extra}


@responses.activate
def test_four_workers_with_an_expired_token_cause_one_refresh(hub_db: HubDB) -> None:
    connection.save(hub_db.engine, hub_db.settings, oauth_data())
    _, version = connection.load(hub_db.engine, hub_db.settings)
    issued = iter(range(100))

    def token_endpoint(request: Any) -> tuple[int, dict[str, str], str]:
        n = next(issued)
        import json

        assert request.params["refresh_token"] == "refresh-1"  # an old refresh token is never reused
        return 200, {}, json.dumps({"access_token": f"access-{n}", "refresh_token": f"refresh-{n + 2}",
                                    "expires_in": 3600, "client_endpoint": "https://shop.bitrix24.ru/rest/",
                                    "domain": "shop.bitrix24.ru", "status": "L"})

    responses.add_callback(responses.GET, TOKEN_URL, callback=token_endpoint)
    barrier = threading.Barrier(4)
    tokens: list[str] = []

    def worker() -> None:
        barrier.wait()
        token, _, _ = connection.refresh(hub_db.engine, hub_db.settings, version)
        tokens.append(token)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(responses.calls) == 1
    assert tokens == ["access-0"] * 4
    data, new_version = connection.load(hub_db.engine, hub_db.settings)
    assert data["refresh_token"] == "refresh-2" and new_version == version + 1


@responses.activate
def test_a_refused_refresh_tells_the_user_to_connect_again(hub_db: HubDB) -> None:
    connection.save(hub_db.engine, hub_db.settings, oauth_data())
    responses.get(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "Invalid refresh token"})
    with pytest.raises(connection.NeedsUserAction, match="connect the app again") as err:
        connection.refresh(hub_db.engine, hub_db.settings, 1)
    assert "refresh-1" not in str(err.value) and "app-secret" not in str(err.value)


def test_credentials_are_stored_encrypted(hub_db: HubDB) -> None:
    connection.save(hub_db.engine, hub_db.settings, {"kind": "webhook", "url": "https://shop.bitrix24.ru/rest/1/c0de/"})
    with hub_db.engine.connect() as conn:
        raw = conn.execute(select(credentials.credentials_t.c.secret)).scalar_one()
    assert b"c0de" not in bytes(raw)


@pytest.fixture
def receiver(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    # hook:register_routes
    plugin_manager.register(bitrix24_plugin, name="bitrix24")
    connection.save(hub_db.engine, hub_db.settings, {"kind": "webhook", "url": "https://shop.bitrix24.ru/rest/1/c0de/",
                                                     "application_token": "app-token-42"})
    fetched: list[tuple[str, str, list[str]]] = []
    monkeypatch.setattr("hub.jobs.fetch_records", lambda source, entity, ids: fetched.append((source, entity, ids)))
    app = create_app(hub_db.settings)
    return app.test_client(), fetched


def event(name: str, record_id: str, token: str) -> dict[str, str]:
    return {"event": name, "event_handler_id": "7", "data[FIELDS][ID]": record_id, "ts": "1724916859",
            "auth[domain]": "shop.bitrix24.ru", "auth[client_endpoint]": "https://shop.bitrix24.ru/rest/",
            "auth[server_endpoint]": "https://oauth.bitrix.info/rest/", "auth[member_id]": "abc",
            "auth[application_token]": token}


def test_an_event_is_answered_at_once_and_its_record_fetched_in_the_background(receiver: Any) -> None:
    client, fetched = receiver
    answer = client.post("/hooks/bitrix24", data=event("ONCRMCONTACTUPDATE", "17", "app-token-42"))
    assert answer.status_code == 200
    queue.drain(timeout=10)
    assert fetched == [("bitrix24", "contacts", ["17"])]
    client.post("/hooks/bitrix24", data=event("ONCRMDEALDELETE", "9", "app-token-42"))
    queue.drain(timeout=10)
    assert fetched[-1] == ("bitrix24", "orders", ["9"])


def test_an_event_with_the_wrong_application_token_is_refused(receiver: Any, caplog: pytest.LogCaptureFixture) -> None:
    client, fetched = receiver
    answer = client.post("/hooks/bitrix24", data=event("ONCRMCONTACTADD", "17", "forged"))
    assert answer.status_code == 401
    queue.drain(timeout=10)
    assert fetched == []
    assert "refused" in caplog.text and "forged" not in caplog.text and "app-token-42" not in caplog.text


def test_unrelated_events_are_acknowledged_and_ignored(receiver: Any) -> None:
    client, fetched = receiver
    answer = client.post("/hooks/bitrix24", data=event("ONCRMLEADADD", "3", "app-token-42"))
    assert answer.status_code == 200 and answer.get_json() == {"ignored": "ONCRMLEADADD"}
    queue.drain(timeout=10)
    assert fetched == []


def test_healthz_reports_the_database(hub_db: HubDB) -> None:
    answer = create_app(hub_db.settings).test_client().get("/healthz")
    assert answer.status_code == 200 and answer.get_json() == {"status": "ok", "checks": {"database": "ok"}}
