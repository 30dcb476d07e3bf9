"""API keys for people: `hub api-keys` and the admin page, each shown once and then only by its prefix."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub.admin.app import create_app
from hub.hookspecs import hookimpl
from hub.models import AuditEntry
from hub.webapi import keys
from hub.webapi.endpoints import Endpoint
from tests.conftest import HubDB
from tests.support.admin import AdminEnv, client_as, csrf_token, text
from tests.support.cli import cli


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def audit_actions(db: HubDB) -> list[tuple[str, dict[str, Any]]]:
    with db.engine.connect() as conn:
        return [(r.action, dict(r.details or {})) for r in conn.execute(select(AuditEntry).order_by(AuditEntry.id))]


class ShopPlugin:
    """A plugin with an endpoint of its own scope: a key may hold that scope too."""

    @hookimpl
    def register_api_endpoints(self, register: Any) -> None:
        register(Endpoint("GET", "/shop/ping", lambda call: {"ok": True}, "shop:read", "Ping", "shop",
                          answer={"type": "object"}))


def test_create_prints_the_key_once_and_it_works(hub_db: HubDB) -> None:
    made = run("api-keys", "create", "Сайт", "--scopes", "segments:read,contacts:write", "--rate", "50")
    assert made.exit_code == 0, made.output
    key = re.search(r"hub_\S+", made.output).group(0)  # type: ignore[union-attr]
    assert "больше не будет показан" in made.output and "Authorization: Bearer" in made.output
    client = create_app(hub_db.settings).test_client()
    assert client.get("/api/v1/segments", headers={"Authorization": f"Bearer {key}"}).status_code == 200

    listed = run("api-keys", "list")
    assert listed.exit_code == 0 and "Сайт" in listed.output and key not in listed.output
    assert key[:12] in listed.output and "segments:read, contacts:write" in listed.output
    assert re.search(r"\d\d\.\d\d\.\d{4} \d\d:\d\d", listed.output)  # a Russian date and time
    assert "cli:" in listed.output
    rows = json.loads(run("api-keys", "list", "--json").output)
    assert rows[0]["name"] == "Сайт" and rows[0]["rate"] == 50 and rows[0]["scopes"] == ["segments:read",
                                                                                          "contacts:write"]
    assert rows[0]["created_at"].startswith("20") and "T" in rows[0]["created_at"]
    assert rows[0]["last_used_at"] is not None and "key" not in rows[0]
    assert [a for a, _ in audit_actions(hub_db)] == ["api_key_created"]
    assert key not in json.dumps(audit_actions(hub_db), ensure_ascii=False)


def test_create_json_gives_the_key_to_a_script(hub_db: HubDB) -> None:
    out = json.loads(run("api-keys", "create", "1С", "--scopes", "orders:write", "--json").output)
    assert out["key"].startswith("hub_") and out["scopes"] == ["orders:write"] and out["rate"] == keys.DEFAULT_RATE


def test_an_unknown_scope_is_named_with_the_valid_ones(hub_db: HubDB, plugin_manager: Any) -> None:
    bad = run("api-keys", "create", "x", "--scopes", "contacts:write,contacts:delete")
    assert bad.exit_code != 0
    assert "contacts:delete" in bad.output and "contacts:read" in bad.output and "consent:write" in bad.output
    assert "неизвестное право" in bad.output
    assert "shop:read" not in bad.output
    plugin_manager.register(ShopPlugin(), name="shop")
    assert "shop:read" in run("api-keys", "create", "x", "--scopes", "nope").output
    ok = run("api-keys", "create", "shop", "--scopes", "shop:read")
    assert ok.exit_code == 0, ok.output
    assert run("api-keys", "create", "shop", "--scopes", "shop:read").exit_code != 0  # the name is taken
    assert run("api-keys", "create", "y", "--scopes", "orders:write", "--rate", "0").exit_code != 0


def test_revoke_by_name_or_id_and_list_all(hub_db: HubDB) -> None:
    key = json.loads(run("api-keys", "create", "old", "--scopes", "segments:read", "--json").output)
    run("api-keys", "create", "new", "--scopes", "segments:read")
    gone = run("api-keys", "revoke", "old")
    assert gone.exit_code == 0 and "отозван" in gone.output
    again = run("api-keys", "revoke", str(key["id"]))
    assert again.exit_code != 0 and "уже" in again.output
    assert run("api-keys", "revoke", "nobody").exit_code != 0
    assert [r["name"] for r in json.loads(run("api-keys", "list", "--json").output)] == ["new"]
    every = json.loads(run("api-keys", "list", "--all", "--json").output)
    assert [r["name"] for r in every] == ["old", "new"] and every[0]["revoked_at"]
    assert "отозван" in run("api-keys", "list", "--all").output
    client = create_app(hub_db.settings).test_client()
    assert client.get("/api/v1/segments", headers={"Authorization": f"Bearer {key['key']}"}).status_code == 401
    assert [a for a, _ in audit_actions(hub_db)] == ["api_key_created", "api_key_created", "api_key_revoked"]


@pytest.mark.parametrize("args", [["api-keys"], ["api-keys", "create"], ["api-keys", "list"], ["api-keys", "revoke"]])
def test_every_command_explains_itself_in_russian(hub_db: HubDB, args: list[str]) -> None:
    out = run(*args, "--help").output
    assert "Использование" in out and re.search("[а-я]{4}", out.split("\n", 2)[2])
    assert "Create a key" not in out and "Keys for the HTTP API" not in out


# --- the admin page ---------------------------------------------------------------------------

def test_only_admins_see_and_use_the_page(admin_env: AdminEnv) -> None:
    for role in ("viewer", "marketer"):
        client = client_as(admin_env, role)
        assert client.get("/api-keys/").status_code == 403
        assert "/api-keys/" not in text(client.get("/"))
        token = csrf_token(client, "/")
        assert client.post("/api-keys/", data={"csrf_token": token, "name": "x", "scopes": ["segments:read"],
                                               "rate": "5"}).status_code == 403
    admin = client_as(admin_env, "admin")
    assert "/api-keys/" in text(admin.get("/"))
    with admin_env.engine.connect() as conn:
        assert keys.listing(conn) == []


def test_an_admin_creates_sees_the_key_once_and_revokes_it(admin_env: AdminEnv) -> None:
    admin = client_as(admin_env, "admin")
    page = text(admin.get("/api-keys/"))
    assert "API-ключи" in page and 'value="consent:write"' in page and 'value="workflows:write"' in page
    made = admin.post("/api-keys/", data={"csrf_token": csrf_token(admin, "/api-keys/"), "name": "Тильда",
                                          "scopes": ["consent:write", "segments:read"], "rate": "30"})
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    key = re.search(r'id="new-key" value="(hub_[^"]+)"', text(made)).group(1)  # type: ignore[union-attr]
    assert "показан только один раз" in text(made) and "Authorization: Bearer" in text(made)
    listing = text(admin.get("/api-keys/"))
    assert "Тильда" in listing and key not in listing and key[:12] in listing
    api = create_app(admin_env.settings).test_client()
    assert api.get("/api/v1/segments", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    with admin_env.engine.connect() as conn:
        row = keys.find(conn, "Тильда")
    assert list(row.scopes) == ["consent:write", "segments:read"] and row.rate == 30
    assert row.created_by == "admin:admin@shop.example"
    assert f'name="key_id" value="{row.id}"' in listing
    revoked = admin.post("/api-keys/revoke", data={"csrf_token": csrf_token(admin, "/api-keys/"),
                                                   "key_id": str(row.id)}, follow_redirects=True)
    assert "отозван" in text(revoked)
    assert api.get("/api/v1/segments", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    twice = admin.post("/api-keys/revoke", data={"csrf_token": csrf_token(admin, "/api-keys/"),
                                                 "key_id": str(row.id)}, follow_redirects=True)
    assert "уже отозван" in text(twice)
    forged = admin.post("/api-keys/revoke", data={"csrf_token": csrf_token(admin, "/api-keys/"),
                                                  "key_id": "1 or 1=1"}, follow_redirects=True)
    assert "Такого API-ключа нет" in text(forged)
    actions = audit_actions(admin_env.db)
    assert [a for a, _ in actions if a.startswith("api_key")] == ["api_key_created", "api_key_revoked"]
    assert key not in json.dumps(actions, ensure_ascii=False)
    log = text(admin.get("/users/audit"))
    assert "API-ключ создан" in log and key not in log


def test_the_form_names_its_mistakes_and_needs_its_token(admin_env: AdminEnv) -> None:
    admin = client_as(admin_env, "admin")
    token = csrf_token(admin, "/api-keys/")
    none = admin.post("/api-keys/", data={"csrf_token": token, "name": "Сайт", "rate": "5"})
    assert none.status_code == 400 and "хотя бы одно право" in text(none)
    forged = admin.post("/api-keys/", data={"csrf_token": token, "name": "Сайт", "rate": "5",
                                            "scopes": ["segments:read", "admin:all"]})
    assert forged.status_code == 400 and "admin:all" in text(forged)
    nameless = admin.post("/api-keys/", data={"csrf_token": token, "name": "", "rate": "5",
                                              "scopes": ["segments:read"]})
    assert nameless.status_code == 400
    no_token = admin.post("/api-keys/", data={"name": "Сайт", "rate": "5", "scopes": ["segments:read"]})
    assert no_token.status_code == 400
    with admin_env.engine.connect() as conn:
        assert keys.listing(conn) == []


def test_the_pages_speak_the_readers_language(admin_env: AdminEnv) -> None:
    from dataclasses import replace

    from tests.support.admin import sign_in
    from tests.test_admin_russian import cyrillic_words, data_words, english_runs

    data = data_words(admin_env) | {"Сайт"}
    for app, check in ((admin_env.app, lambda html: english_runs(html, data)),
                       (create_app(replace(admin_env.settings, language="en")),
                        lambda html: cyrillic_words(html, data))):
        admin = sign_in(app.test_client(), admin_env.users["admin"])
        listing = admin.get("/api-keys/")
        made = admin.post("/api-keys/", data={"csrf_token": csrf_token(admin, "/api-keys/"), "name": "Сайт",
                                              "scopes": ["contacts:write"], "rate": "10"})
        pages = [listing, made, admin.get("/api-keys/")]
        assert [p.status_code for p in pages] == [200, 200, 200]
        assert [check(text(p)) for p in pages] == [[], [], []]
        with admin_env.engine.begin() as conn:
            keys.revoke(conn, keys.find(conn, "Сайт").id)
            conn.execute(keys.keys_t.delete())
