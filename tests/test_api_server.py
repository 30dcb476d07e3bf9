"""/api/v1 the way users run it: `hub admin` (waitress) in a process of its own, driven over real HTTP.

The Flask test client skips what a production server adds: reading the body
off a socket, a body too large for the app, headers as they arrive on the
wire, several threads at once, and the rate limit shared through Redis by
several server processes. A plugin from HUB_PLUGINS_DIR adds a batch
endpoint, the way a stranger's plugin would, so a batch that writes rows
can be repeated and counted.
"""

from __future__ import annotations

import textwrap
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import requests
from sqlalchemy import func, select

from hub.models import AuditEntry
from hub.webapi import keys
from tests.conftest import HubDB
from tests.support.server import serving_admin

pytestmark = pytest.mark.both_databases

TIMEOUT = 60  # seconds for one request: a guard against a hung server, not an assertion about speed

PLUGIN = textwrap.dedent('''
    """A stranger's plugin: a batch endpoint writing one audit row per item."""
    from hub.api import ApiEndpoint, ApiError, hookimpl
    from hub.models import AuditEntry

    def tally(call):
        for index, item in enumerate(call.body["items"]):
            if item["n"] < 0:
                raise ApiError(422, "Invalid", "negative", errors=[{"field": f"/items/{index}/n", "detail": "<0",
                                                                     "index": index}])
        call.conn.execute(AuditEntry.__table__.insert(), [
            {"actor": "api", "action": "tally", "details": item} for item in call.body["items"]])
        return {"written": len(call.body["items"])}

    @hookimpl
    def register_api_endpoints(register):
        register(ApiEndpoint("POST", "/tally", tally, "events:write", "Tally", "test", body={
            "type": "object", "required": ["items"], "additionalProperties": False,
            "properties": {"items": {"type": "array", "maxItems": 1000, "items": {
                "type": "object", "required": ["n"], "additionalProperties": False,
                "properties": {"n": {"type": "integer"}, "pad": {"type": "string"}}}}}},
            answer={"type": "object", "required": ["written"], "properties": {"written": {"type": "integer"}}}))
''')


@contextmanager
def hub_admin(hub_db: HubDB, workdir: Path, *, redis_url: str | None = None) -> Iterator[str]:
    """`hub admin` serving the test database with the tally plugin; its URL. Stopped whatever the test did."""
    plugins = workdir / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "tally.py").write_text(PLUGIN)
    settings = {"HUB_PLUGINS_DIR": str(plugins), "HUB_PLUGINS": ""}
    if redis_url:
        settings["HUB_REDIS_URL"] = redis_url
    with serving_admin(hub_db.url, workdir, **settings) as server:
        yield server.url


def make_key(hub_db: HubDB, name: str, *scopes: str, rate: int = 1000) -> str:
    with hub_db.engine.begin() as conn:
        return keys.create(conn, name, list(scopes), actor="tests", rate=rate).key


def auth(key: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **more}


def problem(response: requests.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json"), response.headers
    doc = response.json()
    assert doc["status"] == status and doc["title"] and doc["detail"]
    return dict(doc)


def tallied(hub_db: HubDB) -> int:
    with hub_db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(AuditEntry.__table__)
                                .where(AuditEntry.__table__.c.action == "tally")).scalar_one())


def test_the_api_behind_waitress_answers_keys_batches_repeats_and_bad_bodies(hub_db: HubDB, tmp_path: Path) -> None:
    key = make_key(hub_db, "shop", "events:write", "segments:read")
    with hub_admin(hub_db, tmp_path / "admin") as url:
        api = url + "/api/v1"
        doc = requests.get(api + "/openapi.json", timeout=TIMEOUT)
        assert doc.status_code == 200 and doc.headers["Server"] == "hub"  # waitress, as `hub admin` serves it
        assert "/api/v1/tally" in doc.json()["paths"]

        ru = problem(requests.get(api + "/segments", timeout=TIMEOUT), 401)
        assert any("а" <= ch <= "я" for ch in str(ru["detail"]).lower())  # Russian unless asked otherwise
        assert problem(requests.get(api + "/segments", headers=auth("hub_wrong"), timeout=TIMEOUT), 401)
        en = problem(requests.get(api + "/segments", headers={"Accept-Language": "en"}, timeout=TIMEOUT), 401)
        assert "Bearer" in str(en["detail"])
        assert requests.get(api + "/segments", headers=auth(key), timeout=TIMEOUT).status_code == 200

        batch = {"items": [{"n": i} for i in range(500)]}
        first = requests.post(api + "/tally", json=batch, headers=auth(key, **{"Idempotency-Key": "b-1"}),
                              timeout=TIMEOUT)
        assert first.status_code == 200 and first.json() == {"written": 500}, first.text
        again = requests.post(api + "/tally", json=batch, headers=auth(key, **{"Idempotency-Key": "b-1"}),
                              timeout=TIMEOUT)
        assert again.status_code == 200 and again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert tallied(hub_db) == 500  # the repeat changed nothing

        h = auth(key, **{"Accept-Language": "en"})
        bad = problem(requests.post(api + "/tally", data=b'{"items": [', headers={**h, "Content-Type":
                                                                                  "application/json"},
                                    timeout=TIMEOUT), 400)
        assert "JSON" in str(bad["detail"])
        problem(requests.post(api + "/tally", data=b"n=1", headers={**h, "Content-Type": "text/plain"},
                              timeout=TIMEOUT), 415)
        wrong = problem(requests.post(api + "/tally", json={"items": [{"n": 1}, {"n": "two"}]}, headers=h,
                                      timeout=TIMEOUT), 422)
        assert wrong["errors"] == [{"field": "/items/1/n", "detail": "must be a whole number", "index": 1}]
        refused = problem(requests.post(api + "/tally", json={"items": [{"n": 1}, {"n": -1}]}, headers=h,
                                        timeout=TIMEOUT), 422)
        assert refused["errors"][0]["index"] == 1  # type: ignore[index]
        big = {"items": [{"n": 1, "pad": "x" * (5 * 1024 * 1024)}]}
        too_big = problem(requests.post(api + "/tally", json=big, headers=h, timeout=TIMEOUT), 413)
        assert "MB" in str(too_big["detail"])
        assert tallied(hub_db) == 500  # nothing refused was written

        slow = make_key(hub_db, "slow", "segments:read", rate=1)
        answers = [requests.get(api + "/segments", headers=auth(slow), timeout=TIMEOUT) for _ in range(6)]
        assert answers[0].status_code == 200
        limited = [a for a in answers if a.status_code == 429]
        assert limited, [a.status_code for a in answers]
        problem(limited[0], 429)
        assert int(limited[0].headers["Retry-After"]) >= 1


def test_with_redis_the_rate_limit_holds_across_two_servers(hub_db: HubDB, tmp_path: Path, redis_url: str) -> None:
    key = make_key(hub_db, "busy", "segments:read", rate=1)
    with ExitStack() as servers:
        one = servers.enter_context(hub_admin(hub_db, tmp_path / "one", redis_url=redis_url))
        two = servers.enter_context(hub_admin(hub_db, tmp_path / "two", redis_url=redis_url))
        for server in (one, two):  # warm both (imports, first connections) so no request below is slow
            assert requests.get(server + "/api/v1/openapi.json", timeout=TIMEOUT).status_code == 200
        # Spend the key's burst on the first server until it refuses...
        for _ in range(10):
            if requests.get(one + "/api/v1/segments", headers=auth(key), timeout=TIMEOUT).status_code == 429:
                break
        else:
            pytest.fail("the first server never refused the key")
        # ...then the second refuses it too: the bucket lives in Redis, not in either process.
        refused = requests.get(two + "/api/v1/segments", headers=auth(key), timeout=TIMEOUT)
        problem(refused, 429)
        assert int(refused.headers["Retry-After"]) >= 1


def test_with_redis_away_the_api_answers_503_and_writes_nothing(hub_db: HubDB, tmp_path: Path) -> None:
    # Nothing listens on port 1: Redis is down, as in an outage (docs/deploy.md, "Redis is down").
    key = make_key(hub_db, "shop", "events:write", "segments:read")
    with hub_admin(hub_db, tmp_path / "admin", redis_url="redis://127.0.0.1:1/0") as url:
        api = url + "/api/v1"
        away = problem(requests.get(api + "/segments", headers=auth(key), timeout=TIMEOUT), 503)
        assert away["title"] == "Сервис недоступен" and "Redis" in str(away["detail"])
        posted = requests.post(api + "/tally", json={"items": [{"n": 1}]},
                               headers=auth(key, **{"Accept-Language": "en"}), timeout=TIMEOUT)
        refused = problem(posted, 503)
        assert posted.headers["Retry-After"] == "30"
        assert str(refused["detail"]) == ("Hub cannot reach its queue and rate limits (Redis) right now; nothing was "
                                          "changed. Try again in a minute.")
        assert tallied(hub_db) == 0
        # A request without a key is still told how to send one: that answer needs no Redis.
        problem(requests.get(api + "/segments", timeout=TIMEOUT), 401)
