"""The local Bitrix24 portal speaks the documented protocol: shapes, errors, limits, OAuth, events, batch.

Everything goes through real HTTP with `requests` (and once through the
third-party fast_bitrix24 client), because the point of the emulator is that a
client cannot tell it from a portal. Limits are driven by a fake clock, so no
test sleeps to let a bucket drain or a token expire.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
import requests

from hub import sampledata
from plugins.bitrix24.sandbox import Portal, SandboxServer
from tests.support.clock import ManualClock

TODAY = dt.date(2025, 6, 1)
MOSCOW_OFFSET = "+03:00"
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+03:00$")


@pytest.fixture(scope="module")
def shared() -> Iterator[SandboxServer]:
    """A read-only portal for the tests that only look (no limits in the way)."""
    portal = Portal(contacts=230, seed=7, today=TODAY, rate=1e6, burst=10**6)
    with SandboxServer(portal) as server:
        yield server


def make_server(**options: Any) -> SandboxServer:
    options.setdefault("today", TODAY)
    return SandboxServer(Portal(**options)).start()


@pytest.fixture
def servers() -> Iterator[list[SandboxServer]]:
    started: list[SandboxServer] = []
    yield started
    for server in started:
        server.stop()


def call(server: SandboxServer, method: str, **params: Any) -> requests.Response:
    return requests.post(server.webhook_url + method, json=params, timeout=30)


# --------------------------------------------------------------------------- shapes


def test_list_answers_fifty_per_page_with_total_next_and_portal_types(shared: SandboxServer) -> None:
    answer = call(shared, "crm.contact.list").json()
    assert len(answer["result"]) == 50
    assert answer["total"] == 230
    assert answer["next"] == 50
    first = answer["result"][0]
    assert first["ID"] == "1" and isinstance(first["ASSIGNED_BY_ID"], str)
    assert ISO_WITH_OFFSET.match(first["DATE_CREATE"]) and ISO_WITH_OFFSET.match(first["DATE_MODIFY"])
    assert set(answer["time"]) >= {"start", "finish", "duration", "processing", "date_start", "date_finish",
                                   "operating_reset_at", "operating"}
    last = call(shared, "crm.contact.list", start=200).json()
    assert len(last["result"]) == 30 and "next" not in last and last["total"] == 230


def test_birthdate_is_a_date_carrying_midnight_utc_in_the_portal_zone(shared: SandboxServer) -> None:
    rows = call(shared, "crm.contact.list", select=["ID", "BIRTHDATE"], start=-1).json()["result"]
    dated = [row["BIRTHDATE"] for row in rows if row["BIRTHDATE"]]
    assert dated and all(value.endswith("T03:00:00" + MOSCOW_OFFSET) for value in dated)
    assert any(row["BIRTHDATE"] == "" for row in rows)  # an unknown birthday is an empty string


def test_start_is_floored_to_a_page_and_next_walks_the_list(shared: SandboxServer) -> None:
    seen, start = [], 0
    while start is not None:
        answer = call(shared, "crm.contact.list", select=["ID"], start=start).json()
        seen += [int(row["ID"]) for row in answer["result"]]
        start = answer.get("next")
    assert seen == shared.portal.contact_ids()
    odd = call(shared, "crm.contact.list", select=["ID"], start=70).json()
    assert odd["result"][0]["ID"] == "51" and odd["next"] == 100


def test_start_minus_one_skips_the_count(shared: SandboxServer) -> None:
    counted = call(shared, "crm.contact.list", select=["ID"], filter={">ID": 10}).json()
    uncounted = call(shared, "crm.contact.list", select=["ID"], filter={">ID": 10}, start=-1).json()
    assert uncounted["result"] == counted["result"]
    assert uncounted["total"] == 0 and "next" not in uncounted
    assert counted["total"] == 220


def test_query_string_form_body_and_json_body_are_read_alike(shared: SandboxServer) -> None:
    url = shared.webhook_url + "crm.contact.list.json"
    form = {"filter[>ID]": "100", "filter[<=ID]": "140", "order[ID]": "DESC", "select[]": ["ID", "NAME", "PHONE"]}
    by_query = requests.get(url, params=form, timeout=30).json()
    by_form = requests.post(url, data=form, timeout=30).json()
    by_json = requests.post(url, json={"filter": {">ID": 100, "<=ID": 140}, "order": {"ID": "DESC"},
                                       "select": ["ID", "NAME", "PHONE"]}, timeout=30).json()
    assert by_query["result"] == by_form["result"] == by_json["result"]
    assert [row["ID"] for row in by_json["result"]][:2] == ["140", "139"] and by_json["total"] == 40
    assert set(by_json["result"][0]) == {"ID", "NAME", "PHONE"}


def test_star_selects_no_multifields_and_named_multifields_come_as_lists(servers: list[SandboxServer]) -> None:
    server = make_server(contacts=20, seed=3)
    servers.append(server)
    bare = server.portal.add_contact({"NAME": "Без телефона"})
    star = call(server, "crm.contact.list", select=["*", "UF_*"]).json()["result"]
    assert all("PHONE" not in row and "EMAIL" not in row for row in star)
    named = call(server, "crm.contact.list", select=["*", "PHONE", "EMAIL"]).json()["result"]
    with_phone = [row for row in named if row["ID"] != str(bare)]
    assert all(row["PHONE"] for row in with_phone)
    phone = with_phone[0]["PHONE"][0]
    assert set(phone) == {"ID", "VALUE_TYPE", "VALUE", "TYPE_ID"} and phone["TYPE_ID"] == "PHONE"
    assert phone["VALUE_TYPE"] in {"WORK", "MOBILE", "HOME"}
    without = next(row for row in named if row["ID"] == str(bare))
    assert "PHONE" not in without and "EMAIL" not in without and without["HAS_PHONE"] == "N"


def test_filters_with_prefixes_select_what_a_sync_asks_for(shared: SandboxServer) -> None:
    portal = shared.portal
    everyone = [portal.contact(contact_id) for contact_id in portal.contact_ids()]
    cutoff = sorted(row["DATE_MODIFY"] for row in everyone)[150]
    moment = dt.datetime.fromisoformat(cutoff)

    def ids(**params: Any) -> list[str]:
        rows, start = [], 0
        while start is not None:
            answer = call(shared, "crm.contact.list", select=["ID"], start=start, **params).json()
            rows += [row["ID"] for row in answer["result"]]
            start = answer.get("next")
        return rows

    newer = ids(filter={">=DATE_MODIFY": cutoff})
    assert newer == [row["ID"] for row in everyone if dt.datetime.fromisoformat(row["DATE_MODIFY"]) >= moment]
    in_utc = moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    older = ids(filter={"<DATE_MODIFY": in_utc})
    assert sorted(newer + older, key=int) == [row["ID"] for row in everyone]
    assert ids(filter={"@ID": [3, 5, 8]}) == ["3", "5", "8"]
    assert "5" not in ids(filter={"!ID": 5}) and len(ids(filter={"!ID": 5})) == 229
    phone = everyone[4]["PHONE"][0]["VALUE"]
    assert ids(filter={"PHONE": phone}) == [everyone[4]["ID"]]
    name = everyone[9]["LAST_NAME"]
    assert everyone[9]["ID"] in ids(filter={"%LAST_NAME": name[1:5]})
    assert ids(filter={">ID": 220, "<=ID": 223}) == ["221", "222", "223"]


def test_deals_sit_in_funnels_with_consistent_stage_semantics(shared: SandboxServer) -> None:
    rows, start = [], 0
    while start is not None:
        answer = call(shared, "crm.deal.list", start=start).json()
        rows += answer["result"]
        start = answer.get("next")
    assert len(rows) == shared.portal.deal_count
    categories = {row["CATEGORY_ID"] for row in rows}
    assert {"0", "1"} <= categories
    for row in rows:
        prefix = "" if row["CATEGORY_ID"] == "0" else f"C{row['CATEGORY_ID']}:"
        assert row["STAGE_ID"].startswith(prefix)
        code = row["STAGE_ID"][len(prefix):]
        expected = "S" if code == "WON" else "F" if code in ("LOSE", "APOLOGY") else "P"
        assert row["STAGE_SEMANTIC_ID"] == expected
        assert row["CLOSED"] == ("N" if expected == "P" else "Y")
        assert re.fullmatch(r"\d+\.\d{2}", row["OPPORTUNITY"]) and row["CURRENCY_ID"] == "RUB"
        assert int(row["CONTACT_ID"]) in shared.portal.contact_person
    assert any(row["STAGE_ID"] == "C1:WON" for row in rows) and any(row["STAGE_ID"] == "WON" for row in rows)


def test_fields_methods_describe_multifields_and_custom_fields(shared: SandboxServer) -> None:
    contact = call(shared, "crm.contact.fields").json()["result"]
    assert contact["PHONE"]["type"] == "crm_multifield" and contact["PHONE"]["isMultiple"] is True
    assert contact["DATE_MODIFY"]["type"] == "datetime" and contact["DATE_MODIFY"]["isReadOnly"] is True
    deal = call(shared, "crm.deal.fields").json()["result"]
    assert deal["UF_CRM_PROMO_CODE"]["listLabel"] == "Промокод"
    assert deal["STAGE_ID"]["statusType"] == "DEAL_STAGE"


# --------------------------------------------------------------------------- errors


def test_errors_come_in_the_portals_shapes_and_statuses(servers: list[SandboxServer]) -> None:
    server = make_server(contacts=5)
    servers.append(server)
    wrong = requests.get(f"{server.base_url}/rest/1/notthecode/profile", timeout=30)
    assert wrong.status_code == 401 and wrong.json()["error"] == "INVALID_CREDENTIALS"
    unknown = call(server, "crm.nothing.here")
    assert unknown.status_code == 404 and unknown.json() == {
        "error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
    narrow = server.portal.add_webhook(2, scopes=["user"])
    denied = requests.post(server.webhook_url_for(narrow) + "crm.contact.list", json={}, timeout=30)
    assert denied.status_code == 401 and denied.json()["error"] == "insufficient_scope"
    assert requests.get(server.webhook_url_for(narrow) + "profile", timeout=30).json()["result"]["ID"] == "2"
    missing = call(server, "crm.contact.get", id=999)
    assert missing.status_code == 400 and missing.json() == {"error": "", "error_description": "Not found"}
    no_auth = requests.get(f"{server.base_url}/rest/profile", timeout=30)
    assert no_auth.status_code == 401 and no_auth.json()["error"] == "NO_AUTH_FOUND"
    bad_token = requests.get(f"{server.base_url}/rest/profile", params={"auth": "x" * 32}, timeout=30)
    assert bad_token.status_code == 401 and bad_token.json()["error"] == "invalid_token"
    hooked = call(server, "event.bind", event="ONCRMCONTACTADD", handler="http://127.0.0.1:9/")
    assert hooked.status_code == 403 and hooked.json()["error"] == "WRONG_AUTH_TYPE"


def test_legacy_portals_answer_a_wrong_webhook_with_no_auth_found(servers: list[SandboxServer]) -> None:
    server = make_server(contacts=3, legacy_auth_errors=True)
    servers.append(server)
    wrong = requests.get(f"{server.base_url}/rest/1/notthecode/profile", timeout=30)
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}


# --------------------------------------------------------------------------- batch


def test_batch_substitutes_earlier_results_and_writes_empty_maps_as_php_arrays(shared: SandboxServer) -> None:
    answer = call(shared, "batch", halt=0, cmd={
        "first": "crm.contact.list?" + urlencode({"select[]": "ID", "order[ID]": "ASC", "start": -1}),
        "one": "crm.contact.get?id=$result[first][0][ID]",
        "after": "crm.contact.list?" + urlencode({"filter[>ID]": "$result[first][49][ID]", "select[]": "ID",
                                                    "start": -1}),
        "deals": "crm.deal.list?" + urlencode({"filter[CONTACT_ID]": "$result[one][ID]", "select[]": "ID"}),
    }).json()
    inner = answer["result"]
    assert inner["result_error"] == [] and inner["result_next"] == []
    assert inner["result"]["one"]["ID"] == "1"
    assert inner["result"]["after"][0]["ID"] == "51"
    owned = [int(row["ID"]) for row in inner["result"]["deals"]]
    assert owned and all(shared.portal.deal(deal_id)["CONTACT_ID"] == "1" for deal_id in owned)
    assert inner["result_total"] == {"first": 0, "after": 0, "deals": len(owned)}
    assert set(inner["result_time"]) == {"first", "one", "after", "deals"}
    assert "operating" in answer["time"]


def test_batch_with_list_commands_answers_lists_and_reports_errors_per_command(shared: SandboxServer) -> None:
    answer = call(shared, "batch", cmd=["profile", "crm.contact.get?id=0", "crm.contact.get?id=2"]).json()["result"]
    assert isinstance(answer["result"], dict) and set(answer["result"]) == {"0", "2"}
    assert answer["result_error"] == {"1": {"error": "", "error_description": "ID is not defined or invalid."}}
    halted = call(shared, "batch", halt=1, cmd={"bad": "crm.contact.get?id=0", "never": "profile"}).json()["result"]
    assert halted["result"] == [] and list(halted["result_error"]) == ["bad"]
    nested = call(shared, "batch", cmd={"inner": "batch?cmd[x]=profile"}).json()["result"]
    assert nested["result_error"]["inner"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    many = call(shared, "batch", cmd={f"c{index}": "profile" for index in range(52)}).json()["result"]
    assert len(many["result"]) == 50
    assert many["result_error"] == {key: {"error": "ERROR_BATCH_LENGTH_EXCEEDED",
                                          "error_description": "Max batch length exceeded"} for key in ("c50", "c51")}


# --------------------------------------------------------------------------- limits


def test_bursting_past_fifty_gets_503_and_the_bucket_drains_two_per_second(servers: list[SandboxServer]) -> None:
    clock = ManualClock()
    server = make_server(contacts=5, clock=clock)
    servers.append(server)
    answers = [call(server, "profile") for _ in range(50)]
    assert all(answer.status_code == 200 for answer in answers)
    over = call(server, "profile")
    assert over.status_code == 503 and over.json() == {"error": "QUERY_LIMIT_EXCEEDED",
                                                       "error_description": "Too many requests"}
    clock.advance(1.0)
    assert [call(server, "profile").status_code for _ in range(3)] == [200, 200, 503]
    clock.advance(0.5)
    batch = call(server, "batch", cmd={f"c{index}": "profile" for index in range(50)})
    assert batch.status_code == 200 and len(batch.json()["result"]["result"]) == 50  # one unit for 50 calls
    assert call(server, "profile").status_code == 503
    stats = requests.get(server.stats_url, timeout=30).json()
    assert stats["status_503"] == 3 and stats["batch_commands"] == 50 and stats["methods"]["profile"] == 52


def test_enterprise_plan_allows_a_burst_of_250(servers: list[SandboxServer]) -> None:
    server = make_server(contacts=3, plan="enterprise", clock=ManualClock())
    servers.append(server)
    codes = [call(server, "profile").status_code for _ in range(251)]
    assert codes[:250] == [200] * 250 and codes[250] == 503


def test_counted_lists_spend_server_time_until_the_method_is_blocked(servers: list[SandboxServer]) -> None:
    clock = ManualClock()
    server = make_server(contacts=20_000, seed=2, clock=clock)
    servers.append(server)
    counted = {f"c{index}": "crm.contact.list?select[]=ID" for index in range(50)}
    first = call(server, "batch", cmd=counted).json()
    per_call = first["result"]["result_time"]["c0"]["processing"]
    assert per_call == pytest.approx(20_000 * 49.9 / 2_387_743, rel=0.2)  # accounted, not slept
    reset_at = first["time"]["operating_reset_at"]
    assert reset_at == int(clock.now + 600)
    statuses = [200]
    while statuses[-1] == 200 and len(statuses) < 40:
        clock.advance(1.0)
        statuses.append(call(server, "batch", cmd=counted).status_code)
    blocked = call(server, "crm.contact.list", select=["ID"], start=-1)
    assert statuses[-1] == 429 and 20 <= len(statuses) < 40
    assert blocked.status_code == 429 and blocked.json() == {
        "error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit."}
    assert call(server, "profile").status_code == 200  # other methods keep working
    clock.advance(600)
    assert call(server, "crm.contact.list", select=["ID"], start=-1).status_code == 200
    assert requests.get(server.stats_url, timeout=30).json()["status_429"] >= 2


# --------------------------------------------------------------------------- OAuth


def test_oauth_code_exchange_refresh_rotation_and_expiry(servers: list[SandboxServer]) -> None:
    clock = ManualClock()
    server = make_server(contacts=5, clock=clock, token_lifetime=120)
    servers.append(server)
    app = server.oauth_app
    code = server.portal.authorization_code(user_id=1)
    grant = {"client_id": app.client_id, "client_secret": app.client_secret}
    tokens = requests.post(app.token_url, data={"grant_type": "authorization_code", "code": code, **grant},
                           timeout=30).json()
    assert tokens["expires_in"] == 120 and tokens["expires"] == int(clock.now + 120)
    assert tokens["member_id"] == app.member_id and tokens["user_id"] == 1 and tokens["status"] == "L"
    assert tokens["client_endpoint"] == f"{server.base_url}/rest/" and "crm" in tokens["scope"].split(",")
    reused = requests.get(app.token_url, params={"grant_type": "authorization_code", "code": code, **grant}, timeout=30)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    rest = tokens["client_endpoint"]
    assert requests.get(rest + "profile", params={"auth": tokens["access_token"]}, timeout=30).status_code == 200
    renewed = requests.get(app.token_url, params={"grant_type": "refresh_token",
                                                  "refresh_token": tokens["refresh_token"], **grant}, timeout=30).json()
    assert renewed["refresh_token"] != tokens["refresh_token"]
    again = requests.get(app.token_url, params={"grant_type": "refresh_token",
                                                "refresh_token": tokens["refresh_token"], **grant}, timeout=30)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    wrong = requests.post(app.token_url, data={"grant_type": "refresh_token", "refresh_token": renewed["refresh_token"],
                                               "client_id": app.client_id, "client_secret": "nope"}, timeout=30)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_client"
    clock.advance(121)
    expired = requests.post(rest + "crm.contact.list", json={"auth": renewed["access_token"]}, timeout=30)
    assert expired.status_code == 401 and expired.json() == {
        "error": "expired_token", "error_description": "The access token provided has expired."}
    clock.advance(-121 + 31)
    late = requests.get(app.token_url, params={"grant_type": "authorization_code",
                                               "code": server.portal.authorization_code(), **grant}, timeout=30)
    assert late.status_code == 200
    stale = server.portal.authorization_code()
    clock.advance(31)
    refused = requests.get(app.token_url, params={"grant_type": "authorization_code", "code": stale, **grant},
                           timeout=30)
    assert refused.json()["error"] == "invalid_grant"


def test_authorize_redirects_back_with_a_code(servers: list[SandboxServer]) -> None:
    server = make_server(contacts=3)
    servers.append(server)
    app = server.oauth_app
    answer = requests.get(app.authorize_url, params={"client_id": app.client_id, "state": "s1",
                                                     "redirect_uri": "http://app.example/cb"},
                          allow_redirects=False, timeout=30)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith("http://app.example/cb?")
    query = dict(parse_qsl(location.split("?", 1)[1]))
    assert query["state"] == "s1" and query["member_id"] == app.member_id
    tokens = requests.post(app.token_url, data={"grant_type": "authorization_code", "code": query["code"],
                                                "client_id": app.client_id, "client_secret": app.client_secret},
                           timeout=30)
    assert tokens.status_code == 200


# --------------------------------------------------------------------------- events


class Receiver:
    """A local event handler that records every POST and answers with `status`."""

    def __init__(self, status: int = 200) -> None:
        received: list[tuple[str, dict[str, str]]] = []
        answer_status = status

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                received.append((self.path, dict(parse_qsl(body))))
                self.send_response(answer_status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver()
    yield box
    box.close()


def oauth_tokens(server: SandboxServer) -> dict[str, Any]:
    app = server.oauth_app
    return requests.post(app.token_url, data={"grant_type": "authorization_code",
                                              "code": server.portal.authorization_code(),
                                              "client_id": app.client_id, "client_secret": app.client_secret},
                         timeout=30).json()


def test_bound_handlers_receive_form_encoded_events(servers: list[SandboxServer], receiver: Receiver) -> None:
    server = make_server(contacts=10)
    servers.append(server)
    tokens = oauth_tokens(server)
    rest = tokens["client_endpoint"]
    for event, path in (("ONCRMCONTACTUPDATE", "/contacts"), ("OnCrmDealAdd", "/deals")):
        bound = requests.post(rest + "event.bind", json={"auth": tokens["access_token"], "event": event,
                                                         "handler": receiver.url + path}, timeout=30)
        assert bound.json()["result"] is True
    listed = requests.get(rest + "event.get", params={"auth": tokens["access_token"]}, timeout=30).json()["result"]
    assert {item["event"] for item in listed} == {"ONCRMCONTACTUPDATE", "ONCRMDEALADD"}
    assert call(server, "crm.contact.update", id=4, fields={"POST": "Директор"}).json()["result"] is True
    deal_id = server.portal.add_deal({"TITLE": "Из кода", "CONTACT_ID": 4})
    assert server.portal.drain_events(10)
    by_path = dict(receiver.received)
    update, added = by_path["/contacts"], by_path["/deals"]
    assert update["event"] == "ONCRMCONTACTUPDATE" and update["data[FIELDS][ID]"] == "4"
    assert update["auth[application_token]"] == server.oauth_app.application_token
    assert update["auth[member_id]"] == server.oauth_app.member_id
    assert update["auth[client_endpoint]"] == rest and update["auth[server_endpoint]"]
    assert update["auth[domain]"] == f"127.0.0.1:{server.port}"
    assert update["event_handler_id"] and update["ts"].isdigit()
    profile = requests.get(rest + "profile", params={"auth": update["auth[access_token]"]}, timeout=30)
    assert profile.status_code == 200  # a change made by a user carries that user's token
    assert added["event"] == "ONCRMDEALADD" and added["data[FIELDS][ID]"] == str(deal_id)
    assert "auth[access_token]" not in added  # a change made by no user carries no token


def test_events_are_never_retried(servers: list[SandboxServer]) -> None:
    failing = Receiver(status=500)
    try:
        server = make_server(contacts=5)
        servers.append(server)
        tokens = oauth_tokens(server)
        for handler in (failing.url + "/x", "http://127.0.0.1:9/closed"):
            requests.post(tokens["client_endpoint"] + "event.bind", json={
                "auth": tokens["access_token"], "event": "ONCRMCONTACTDELETE", "handler": handler}, timeout=30)
        server.portal.delete_contact(2)
        assert server.portal.drain_events(10)
        assert len(failing.received) == 1
        outcomes = sorted((item.status or 0, item.error is not None) for item in server.portal.event_deliveries)
        assert outcomes == [(0, True), (500, True)]
    finally:
        failing.close()


def test_outgoing_webhooks_carry_only_the_documented_auth_keys(servers: list[SandboxServer],
                                                               receiver: Receiver) -> None:
    server = make_server(contacts=5)
    servers.append(server)
    token = server.portal.add_outgoing_webhook(receiver.url + "/hook", ["ONCRMCONTACTADD"])
    created = call(server, "crm.contact.add", fields={"NAME": "Новый", "PHONE": [{"VALUE": "+79161234567"}]}).json()
    assert server.portal.drain_events(10)
    (path, payload), = receiver.received
    assert payload == {"event": "ONCRMCONTACTADD", "data[FIELDS][ID]": str(created["result"]), "ts": payload["ts"],
                       "auth[domain]": f"127.0.0.1:{server.port}", "auth[member_id]": server.oauth_app.member_id,
                       "auth[application_token]": token}


# --------------------------------------------------------------------------- writes


def test_changes_bump_date_modify_and_show_up_in_incremental_lists(servers: list[SandboxServer]) -> None:
    clock = ManualClock(dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.timezone.utc).timestamp())
    server = make_server(contacts=30, clock=clock)
    servers.append(server)
    since = "2026-01-10T15:00:00+03:00"
    assert call(server, "crm.contact.list", filter={">=DATE_MODIFY": since}).json()["total"] == 0
    server.portal.update_contact(7, {"LAST_NAME": "Новикова", "PHONE": [{"VALUE": "8 916 000 00 01"}]})
    clock.advance(60)
    phone_id = server.portal.contact(9)["PHONE"][0]["ID"]
    call(server, "crm.contact.update", id=9, fields={"PHONE": [{"ID": phone_id, "DELETE": "Y"}]})
    changed = call(server, "crm.contact.list", filter={">=DATE_MODIFY": since}, select=["ID", "DATE_MODIFY", "PHONE"],
                   order={"DATE_MODIFY": "ASC"}).json()["result"]
    assert [row["ID"] for row in changed] == ["7", "9"]
    assert changed[0]["DATE_MODIFY"] == "2026-01-10T15:00:00+03:00"
    assert changed[0]["PHONE"][-1]["VALUE"] == "8 916 000 00 01"
    assert all(item["ID"] != phone_id for item in changed[1].get("PHONE", []))
    server.portal.delete_contact(7)
    assert call(server, "crm.contact.get", id=7).status_code == 400


def test_deal_stage_moves_keep_semantics_and_funnel(servers: list[SandboxServer]) -> None:
    server = make_server(contacts=5)
    servers.append(server)
    deal_id = call(server, "crm.deal.add", fields={"TITLE": "Опт", "CATEGORY_ID": 1, "CONTACT_ID": 1,
                                                    "OPPORTUNITY": "1500.5"}).json()["result"]
    deal = call(server, "crm.deal.get", id=deal_id).json()["result"]
    assert (deal["STAGE_ID"], deal["STAGE_SEMANTIC_ID"], deal["CLOSED"]) == ("C1:NEW", "P", "N")
    assert deal["OPPORTUNITY"] == "1500.50"
    call(server, "crm.deal.update", id=deal_id, fields={"STAGE_ID": "WON"})  # another funnel's stage: ignored
    assert server.portal.deal(deal_id)["STAGE_ID"] == "C1:NEW"
    call(server, "crm.deal.update", id=deal_id, fields={"STAGE_ID": "C1:WON"})
    won = server.portal.deal(deal_id)
    assert (won["STAGE_ID"], won["STAGE_SEMANTIC_ID"], won["CLOSED"], won["CATEGORY_ID"]) == ("C1:WON", "S", "Y", "1")


def test_timeline_comments_and_todos_are_kept_for_inspection(servers: list[SandboxServer]) -> None:
    server = make_server(contacts=5)
    servers.append(server)
    upper = call(server, "crm.timeline.comment.add", FIELDS={"ENTITY_TYPE": "contact", "ENTITY_ID": 3, "COMMENT": "x"})
    assert upper.status_code == 400  # only the lowercase `fields` key is accepted
    added = call(server, "crm.timeline.comment.add",
                 fields={"ENTITY_TYPE": "contact", "ENTITY_ID": 3, "COMMENT": "Промокод SALE15 до 1 июля"})
    assert isinstance(added.json()["result"], int)
    assert call(server, "crm.timeline.comment.add",
                fields={"ENTITY_TYPE": "contact", "ENTITY_ID": 999, "COMMENT": "x"}).status_code == 400
    todo = call(server, "crm.activity.todo.add", ownerTypeId=3, ownerId=3, deadline="2026-02-03T15:00:00+03:00",
                title="Позвонить", description="Клиент давно не покупал", responsibleId=2)
    assert set(todo.json()["result"]) == {"id"}
    assert call(server, "crm.activity.todo.add", ownerTypeId=3, ownerId=3).status_code == 400
    (comment,) = server.portal.timeline_comments("contact", 3)
    assert comment["COMMENT"] == "Промокод SALE15 до 1 июля"
    (activity,) = server.portal.activities(owner_type_id=3, owner_id=3)
    assert (activity["title"], activity["responsibleId"], activity["deadline"]) == (
        "Позвонить", 2, "2026-02-03T15:00:00+03:00")


# --------------------------------------------------------------------------- seeding


def test_overlapping_portals_hold_the_same_people_with_the_same_contact_points() -> None:
    low = Portal(contacts=40, seed=4, today=TODAY)
    high = Portal(contacts=40, seed=4, first_person=25, today=TODAY)
    low_people = {person: contact for contact, person in low.contact_person.items()}
    high_people = {person: contact for contact, person in high.contact_person.items()}
    shared_people = set(low_people) & set(high_people)
    assert shared_people == set(range(26, 41))
    truth = {person.person_id: person for person in sampledata.people(65, 4, today=TODAY)}
    for person_id in shared_people:
        a, b = low.contact(low_people[person_id]), high.contact(high_people[person_id])
        for kind in ("PHONE", "EMAIL"):  # multifield IDs are each portal's own; the values are the person's
            assert [(item["VALUE"], item["VALUE_TYPE"]) for item in a.get(kind, [])] == [
                (item["VALUE"], item["VALUE_TYPE"]) for item in b.get(kind, [])]
        digits = re.sub(r"\D", "", " ".join(item["VALUE"] for item in a["PHONE"]))
        assert all(phone[-9:] in digits for phone in truth[person_id].phones)
    low.close()
    high.close()


# --------------------------------------------------------------------------- a real client


def test_fast_bitrix24_reads_every_contact_with_phones(servers: list[SandboxServer]) -> None:
    from fast_bitrix24 import Bitrix

    server = make_server(contacts=700, seed=11)
    servers.append(server)
    client = Bitrix(server.webhook_url, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns that selecting '*' without a filter is slow
        contacts = client.get_all("crm.contact.list", params={"select": ["*", "PHONE", "EMAIL"]})
    portal = server.portal
    assert sorted(int(row["ID"]) for row in contacts) == portal.contact_ids()
    for row in contacts:
        expected = portal.contact(int(row["ID"]))
        assert [item["VALUE"] for item in row.get("PHONE", [])] == [item["VALUE"] for item in expected["PHONE"]]
    stats = portal.stats()
    assert stats["methods"].get("batch", 0) >= 1 and stats["batch_commands"] == 13
