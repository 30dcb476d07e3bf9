"""`hub admin` behind a production WSGI server, the WSGI app for other servers, and a clean access log.

The access log is read from a real `hub admin` process: it must name each
request's route, status and duration, and never hold a query string, a
searched phone or email, or a token from a link.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import requests

from hub import links, users
from hub.wsgi import AccessLog, loggable_rule, redacted_path
from tests.conftest import HubDB
from tests.support.admin import seed_people
from tests.support.server import RunningAdmin

PHONE, EMAIL = "+79161234567", "anna.secret@example.ru"


def test_hub_admin_serves_with_waitress_and_logs_no_personal_data(running_admin: RunningAdmin, hub_db: HubDB) -> None:
    with hub_db.engine.begin() as conn:
        users.add(conn, "admin@shop.example", "admin", "correct horse battery staple")
    contact_id = seed_people(hub_db.engine, hub_db.settings)["anna"]
    session = requests.Session()
    health = session.get(running_admin.url + "/healthz", timeout=30)
    assert health.status_code == 200 and health.headers["Server"] == "hub"  # waitress, not werkzeug's dev server
    searches = [session.get(f"{running_admin.url}/contacts/", params={"q": q}, timeout=30) for q in (PHONE, EMAIL)]
    assert all(s.status_code in (200, 302) for s in searches)
    token_url = links.unsubscribe_url(hub_db.settings, contact_id)
    token = token_url.rsplit("/", 1)[1]
    session.get(f"{running_admin.url}/u/{token}?utm_source={EMAIL}", timeout=30)
    session.get(f"{running_admin.url}/no-such-page/{EMAIL}/{PHONE}", timeout=30)
    session.get(f"{running_admin.url}/static/hub.css?v={PHONE}", timeout=30)
    session.post(running_admin.url + "/login", data={"email": "admin@shop.example", "password": "a guess"},
                 timeout=30)

    log = running_admin.stop()
    assert running_admin.proc.returncode == 0, log  # SIGTERM ends it cleanly, like Ctrl+C
    access = [line for line in log.splitlines() if "hub.access" in line]
    assert any("GET /healthz 200" in line for line in access), log
    assert sum("GET /contacts/ " in line for line in access) == 2, log
    assert any("GET /u/<token> " in line for line in access), log
    assert any("GET /no-such-page/…/… 404" in line for line in access), log
    assert any("POST /login " in line for line in access), log
    assert any("GET /static/hub.css 200" in line for line in access), log
    for secret in (PHONE, PHONE[1:], EMAIL, "anna.secret", token, "?", "utm_source", "admin@shop.example"):
        assert secret not in log, secret


def test_the_wsgi_module_serves_the_app_for_any_server(hub_db: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    import hub.wsgi

    monkeypatch.setattr(hub.wsgi, "_app", None)
    app = hub.wsgi.app
    assert isinstance(app, AccessLog) and hub.wsgi.application is app
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http", "wsgi.input": None, "QUERY_STRING": ""}
    statuses: list[str] = []
    body = app(environ, lambda status, headers, *exc: statuses.append(status))
    b"".join(body)
    body.close()  # type: ignore[attr-defined]
    assert statuses and statuses[0].startswith("200")


def test_the_access_log_names_the_route_status_and_time_only(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"].startswith("/u/"):
            environ["hub.route"] = "/u/<token>"
        start_response("204 No Content", [])
        return [b""]

    logged = AccessLog(app)
    with caplog.at_level(logging.INFO, logger="hub.access"):
        for path, query in (("/u/abc.def-ghi", ""), (f"/search/{EMAIL}", f"q={PHONE}"), ("/x/79161234567", "")):
            body = logged({"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": query}, lambda *a: None)
            body.close()  # type: ignore[attr-defined]
    lines = [r.getMessage() for r in caplog.records]
    assert [line.rsplit(" ", 1)[0] for line in lines] == ["POST /u/<token> 204", "POST /search/… 204",
                                                        "POST /x/… 204"]
    assert all(line.endswith("ms") for line in lines)


def test_a_route_is_logged_with_ids_but_without_other_values() -> None:
    assert loggable_rule("/contacts/<int:contact_id>", {"contact_id": 17}) == "/contacts/17"
    assert loggable_rule("/u/<token>", {"token": "abc"}) == "/u/<token>"
    assert loggable_rule("/hooks/amocrm/<secret>", {"secret": "s"}) == "/hooks/amocrm/<secret>"
    assert redacted_path("/segments/dormant_90d") == "/segments/dormant_90d"
    assert redacted_path("/x/ivan%40mail.ru/" + "a" * 40) == "/x/…/…"


def test_an_unexpected_error_is_logged_by_route_not_by_token(hub_db: HubDB, caplog: pytest.LogCaptureFixture) -> None:
    from hub.admin import create_app

    app = create_app(hub_db.settings)

    @app.get("/boom/<token>")
    def boom(token: str) -> Any:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR):
        assert app.test_client().get("/boom/SECRET-TOKEN-123").status_code == 500
    assert "Exception on /boom/<token> [GET]" in caplog.text and "SECRET-TOKEN-123" not in caplog.text

