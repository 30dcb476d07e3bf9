"""The amoCRM emulator keeps the real API's protocol, limits and quirks.

The plugin is proven against this emulator, so each documented quirk a client
must survive is checked here through plain HTTP: 204 with an empty body (also
after a full last page), the page-size cap, null custom fields, rotating
refresh tokens, HTML 429s without Retry-After, validation errors that name the
path, 402 for customers, events and form-encoded webhooks. Time is a
`ManualClock`, so expiry and rate windows are exercised without sleeping. The
last test reads the account with an independent third-party client.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl

import pytest
import requests

from hub.sampledata import people
from plugins.amocrm.sandbox import Account, SandboxServer
from plugins.amocrm.sandbox import server as sandbox_server
from plugins.amocrm.sandbox.data import (
    BIRTHDAY,
    INTERESTS,
    LEAD_SOURCE,
    LOST_STATUS_ID,
    PIPELINES,
    POSITION,
    WON_STATUS_ID,
    contact_id_for,
)
from tests.support.clock import ManualClock

TODAY = date(2025, 6, 1)
SEED = 7
START = 1_750_000_000.0  # after every seeded timestamp
OAUTH_PROBLEM = "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def account(clock: ManualClock) -> Iterator[Account]:
    """60 seeded contacts, no rate limit: for tests about shapes, filters and writes."""
    account = Account(contacts=60, seed=SEED, today=TODAY, clock=clock, rate_limit=None)
    yield account
    account.close()


@pytest.fixture
def server(account: Account) -> Iterator[SandboxServer]:
    with SandboxServer(account) as server:
        yield server


@pytest.fixture
def api(server: SandboxServer, account: Account) -> Iterator[requests.Session]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {account.issue_long_lived_token()}"
    yield session
    session.close()


def get(api: requests.Session, server: SandboxServer, path: str, **params: Any) -> requests.Response:
    return api.get(server.base_url + path, params=params)


def walk(api: requests.Session, first_url: str) -> tuple[list[int], list[requests.Response]]:
    """Follow _links.next from the first page, as the PHP SDK does."""
    ids: list[int] = []
    answers = []
    url: str | None = first_url
    while url:
        answer = api.get(url)
        answers.append(answer)
        if answer.status_code == 204:
            break
        body = answer.json()
        ids += [item["id"] for item in body["_embedded"]["contacts"]]
        url = body["_links"].get("next", {}).get("href")
    return ids, answers


# ---------------------------------------------------------------------------
# Reading.
# ---------------------------------------------------------------------------


def test_contact_list_has_the_documented_hal_shape(api: requests.Session, server: SandboxServer) -> None:
    answer = get(api, server, "/api/v4/contacts", limit=5)

    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/hal+json"
    body = answer.json()
    assert set(body) == {"_page", "_links", "_embedded"}  # no total count, ever
    assert body["_page"] == 1
    assert body["_links"]["self"]["href"].startswith(server.base_url + "/api/v4/contacts?")
    assert "page=2" in body["_links"]["next"]["href"]
    contacts = body["_embedded"]["contacts"]
    assert len(contacts) == 5
    for contact in contacts:
        assert {"id", "name", "first_name", "last_name", "responsible_user_id", "created_at", "updated_at",
                "custom_fields_values", "_embedded"} <= set(contact)
        assert isinstance(contact["created_at"], int) and isinstance(contact["updated_at"], int)
        assert isinstance(contact["_embedded"]["tags"], list)
        for entry in contact["custom_fields_values"] or []:
            assert {"field_id", "field_name", "field_code", "field_type", "values"} <= set(entry)
            if entry["field_code"] == "PHONE":
                codes = {value["enum_code"] for value in entry["values"]}
                assert codes <= {"WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER"}
            if entry["field_code"] == "EMAIL":
                assert {value["enum_code"] for value in entry["values"]} <= {"WORK", "PRIV", "OTHER"}


def test_seeded_contacts_hold_fields_of_the_accounts_own_in_the_documented_shapes(
    api: requests.Session, server: SandboxServer
) -> None:
    contacts = get(api, server, "/api/v4/contacts", limit=60).json()["_embedded"]["contacts"]
    found: dict[int, list[dict[str, Any]]] = {}
    for contact in contacts:
        for entry in contact["custom_fields_values"] or []:
            found.setdefault(entry["field_id"], []).append(entry)

    assert {BIRTHDAY.id, LEAD_SOURCE.id, POSITION.id, INTERESTS.id} <= set(found)
    for entry in found[BIRTHDAY.id]:  # unix seconds of midnight in Moscow
        assert (entry["field_type"], entry["field_code"]) == ("birthday", None)
        [value] = entry["values"]
        assert set(value) == {"value"} and isinstance(value["value"], int) and (value["value"] + 3 * 3600) % 86_400 == 0
    options = dict(LEAD_SOURCE.enums)
    for entry in found[LEAD_SOURCE.id]:  # a list field: the option's text and its enum_id
        [value] = entry["values"]
        assert entry["field_type"] == "select" and options[value["enum_id"]] == value["value"]
    assert all(e["field_code"] == "POSITION" and e["field_type"] == "text" for e in found[POSITION.id])
    assert any(len(e["values"]) == 2 for e in found[INTERESTS.id])
    definitions = get(api, server, "/api/v4/contacts/custom_fields").json()["_embedded"]["custom_fields"]
    by_id = {d["id"]: d for d in definitions}
    assert by_id[LEAD_SOURCE.id]["type"] == "select"
    assert [e["value"] for e in by_id[LEAD_SOURCE.id]["enums"]] == list(options.values())


def test_list_and_birthday_fields_are_written_as_the_api_takes_them(
    api: requests.Session, server: SandboxServer, account: Account
) -> None:
    contact_id = account.contact_ids()[0]
    body = [{"id": contact_id, "custom_fields_values": [
        {"field_id": BIRTHDAY.id, "values": [{"value": "1990-05-12"}]},
        {"field_id": LEAD_SOURCE.id, "values": [{"value": "Авито"}]},
        {"field_id": INTERESTS.id, "values": [{"enum_id": 2_000_203}]},
    ]}]
    assert api.patch(f"{server.base_url}/api/v4/contacts", json=body).status_code == 200
    fields = {f["field_id"]: f["values"] for f in account.contact(contact_id)["custom_fields_values"]}
    assert fields[BIRTHDAY.id] == [{"value": 642459600}]
    assert fields[LEAD_SOURCE.id] == [{"value": "Авито", "enum_id": dict(map(reversed, LEAD_SOURCE.enums))["Авито"]}]
    assert fields[INTERESTS.id] == [{"value": "Подарки", "enum_id": 2_000_203}]

    wrong = [{"id": contact_id, "custom_fields_values": [
        {"field_id": LEAD_SOURCE.id, "values": [{"value": "Голубиная почта"}]},
        {"field_id": BIRTHDAY.id, "values": [{"value": "весной"}]}]}]
    answer = api.patch(f"{server.base_url}/api/v4/contacts", json=wrong)
    assert answer.status_code == 400
    assert [(e["code"], e["path"]) for e in answer.json()["validation-errors"][0]["errors"]] == [
        ("NotSupportedChoice", "custom_fields_values.0.values.0.value"),
        ("InvalidType", "custom_fields_values.1.values.0.value")]


def test_a_page_is_encoded_exactly_as_one_json_dumps_would(api: requests.Session, server: SandboxServer) -> None:
    # Pages are encoded item by item so that the emulator does not hold the GIL for a whole page.
    body = get(api, server, "/api/v4/contacts", limit=50, **{"with": "leads"}).content
    assert body == json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode()


def test_custom_fields_values_is_null_when_nothing_is_filled(
    api: requests.Session, server: SandboxServer, account: Account
) -> None:
    contact_id = account.add_contact(name="Без телефона")

    answer = get(api, server, f"/api/v4/contacts/{contact_id}")

    assert answer.status_code == 200
    assert '"custom_fields_values":null' in answer.text
    assert answer.json()["custom_fields_values"] is None


def test_empty_results_are_204_with_an_empty_body(api: requests.Session, server: SandboxServer) -> None:
    missing = get(api, server, "/api/v4/contacts/1")
    nothing = get(api, server, "/api/v4/contacts", **{"filter[id][]": "1"})

    for answer in (missing, nothing):
        assert answer.status_code == 204
        assert answer.content == b""


def test_page_after_a_full_last_page_is_204(api: requests.Session, server: SandboxServer, account: Account) -> None:
    ids, answers = walk(api, f"{server.base_url}/api/v4/contacts?limit=20")

    assert [a.status_code for a in answers] == [200, 200, 200]  # 60 = 3 full pages; the last has no next
    assert "next" not in answers[-1].json()["_links"]
    assert ids == account.contact_ids()
    after = get(api, server, "/api/v4/contacts", limit=20, page=4)
    assert after.status_code == 204
    assert after.content == b""


def test_a_full_last_page_can_also_link_a_next_page_that_is_empty(clock: ManualClock) -> None:
    account = Account(contacts=40, seed=SEED, today=TODAY, clock=clock, rate_limit=None, next_on_full_last_page=True)
    token = account.issue_long_lived_token()
    with SandboxServer(account) as server, requests.Session() as api:
        api.headers["Authorization"] = f"Bearer {token}"
        ids, answers = walk(api, f"{server.base_url}/api/v4/contacts?limit=20")

    assert [a.status_code for a in answers] == [200, 200, 204]
    assert answers[-1].content == b""
    assert ids == account.contact_ids()


def test_page_size_is_capped_at_250_and_an_oversized_limit_falls_back_to_50(clock: ManualClock) -> None:
    account = Account(contacts=300, seed=SEED, today=TODAY, clock=clock, rate_limit=None)
    token = account.issue_long_lived_token()
    with SandboxServer(account) as server, requests.Session() as api:
        api.headers["Authorization"] = f"Bearer {token}"
        full = get(api, server, "/api/v4/contacts", limit=250).json()
        oversized = get(api, server, "/api/v4/contacts", limit=500).json()

    assert len(full["_embedded"]["contacts"]) == 250
    assert len(oversized["_embedded"]["contacts"]) == 50
    assert "limit=50" in oversized["_links"]["next"]["href"]

    clamping = Account(contacts=300, seed=SEED, today=TODAY, clock=clock, rate_limit=None, oversize_limit="clamp")
    answer = clamping.handle("GET", "/api/v4/contacts?limit=500",
                             headers={"Authorization": f"Bearer {clamping.issue_long_lived_token()}"})
    assert len(answer.json()["_embedded"]["contacts"]) == 250


def test_with_leads_and_with_contacts_embed_the_links(
    api: requests.Session, server: SandboxServer, account: Account
) -> None:
    contact = next(c for c in (account.contact(i, with_leads=True) for i in account.contact_ids())
                   if c["_embedded"]["leads"])
    lead_ids = [lead["id"] for lead in contact["_embedded"]["leads"]]

    listed = get(api, server, "/api/v4/contacts", **{"with": "leads", "filter[id]": contact["id"]})
    lead = get(api, server, f"/api/v4/leads/{lead_ids[0]}", **{"with": "contacts"}).json()
    plain = get(api, server, f"/api/v4/contacts/{contact['id']}").json()

    assert [item["id"] for item in listed.json()["_embedded"]["contacts"][0]["_embedded"]["leads"]] == lead_ids
    assert lead["_embedded"]["contacts"] == [{
        "id": contact["id"], "is_main": True,
        "_links": {"self": {"href": f"{server.base_url}/api/v4/contacts/{contact['id']}"}},
    }]
    assert "leads" not in plain["_embedded"]


def test_id_filters_accept_every_php_array_spelling(
    api: requests.Session, server: SandboxServer, account: Account
) -> None:
    first, second, third = account.contact_ids()[:3]

    def listed(query: str) -> list[int]:
        answer = api.get(f"{server.base_url}/api/v4/contacts?{query}")
        return [item["id"] for item in answer.json()["_embedded"]["contacts"]]

    assert listed(f"filter[id][]={first}&filter[id][]={third}") == [first, third]
    assert listed(f"filter[id][0]={second}&filter[id][1]={third}") == [second, third]
    assert listed(f"filter[id]={second}") == [second]


def test_updated_at_range_and_order(api: requests.Session, server: SandboxServer, account: Account) -> None:
    stamps = sorted(account.contact(i)["updated_at"] for i in account.contact_ids())
    low, high = stamps[10], stamps[40]
    expected = sorted((c["updated_at"], c["id"]) for c in map(account.contact, account.contact_ids())
                      if low <= c["updated_at"] <= high)

    answer = get(api, server, "/api/v4/contacts", limit=250, **{
        "filter[updated_at][from]": low, "filter[updated_at][to]": high, "order[updated_at]": "asc"})
    descending = get(api, server, "/api/v4/contacts", limit=250, **{"order[id]": "desc"})

    assert [(c["updated_at"], c["id"]) for c in answer.json()["_embedded"]["contacts"]] == expected
    assert [c["id"] for c in descending.json()["_embedded"]["contacts"]] == account.contact_ids()[::-1]


def test_query_finds_a_contact_by_email(api: requests.Session, server: SandboxServer, account: Account) -> None:
    contact_id = account.add_contact(name="Искомый", emails=["needle.unique@example.ru"])

    answer = get(api, server, "/api/v4/contacts", query="needle.unique")

    assert [c["id"] for c in answer.json()["_embedded"]["contacts"]] == [contact_id]


def test_orders_become_leads_in_two_pipelines_with_closing_statuses(account: Account) -> None:
    population = list(people(60, SEED, today=TODAY))
    working = {status for pipeline in PIPELINES for status in pipeline.working_status_ids}
    checked = 0
    for person in population:
        contact = account.contact(contact_id_for(person.person_id), with_leads=True)
        leads = [account.lead(link["id"], with_contacts=True) for link in contact["_embedded"]["leads"]]
        assert len(leads) == len(person.orders)
        for index, (order, lead) in enumerate(zip(person.orders, leads, strict=True)):
            assert lead["price"] == int(order.amount)
            assert lead["created_at"] == int(order.created_at.timestamp())
            assert lead["pipeline_id"] == PIPELINES[0 if index == 0 else 1].id
            assert lead["_embedded"]["contacts"][0] == {**lead["_embedded"]["contacts"][0], "id": contact["id"],
                                                        "is_main": True}
            if order.status == "won":
                assert (lead["status_id"], lead["closed_at"]) == (WON_STATUS_ID, int(order.closed_at.timestamp()))
            elif order.status == "lost":
                assert (lead["status_id"], lead["closed_at"]) == (LOST_STATUS_ID, int(order.closed_at.timestamp()))
            else:
                assert lead["status_id"] in working and lead["closed_at"] is None
            checked += 1
    assert checked > 60


def test_overlapping_accounts_hold_the_same_people(clock: ManualClock) -> None:
    """Skipping first_person lets two emulators share people, each rendering phones its own way."""
    later = Account(contacts=10, seed=SEED, first_person=25, today=TODAY, clock=clock)
    truth = {person.person_id: person for person in people(35, SEED, today=TODAY)}

    assert [later.person_id(i) for i in later.contact_ids()] == list(range(26, 36))
    for contact_id in later.contact_ids():
        person = truth[later.person_id(contact_id)]
        contact = later.contact(contact_id)
        phones = next(f for f in contact["custom_fields_values"] if f["field_code"] == "PHONE")["values"]
        digits = "".join(re.sub(r"\D", "", value["value"]) for value in phones)
        assert all(phone[-10:] in digits for phone in person.phones)


# ---------------------------------------------------------------------------
# OAuth.
# ---------------------------------------------------------------------------


def oauth(server: SandboxServer, **params: Any) -> requests.Response:
    body = {"client_id": server.client_id, "client_secret": server.client_secret,
            "redirect_uri": server.redirect_uri, **params}
    return requests.post(f"{server.base_url}/oauth2/access_token", json=body)


def test_authorization_code_works_once(server: SandboxServer, account: Account) -> None:
    code = account.issue_authorization_code()

    first = oauth(server, grant_type="authorization_code", code=code)
    again = oauth(server, grant_type="authorization_code", code=code)

    assert first.status_code == 200
    assert set(first.json()) == {"token_type", "expires_in", "access_token", "refresh_token"}
    assert first.json()["token_type"] == "Bearer" and first.json()["expires_in"] == 86_400
    assert again.status_code == 400
    assert again.json()["hint"] == "Authorization code has been revoked"
    assert again.json()["type"] == OAUTH_PROBLEM


def test_authorization_code_expires_after_20_minutes(
    server: SandboxServer, account: Account, clock: ManualClock
) -> None:
    code = account.issue_authorization_code()
    clock.advance(20 * 60)

    answer = oauth(server, grant_type="authorization_code", code=code)

    assert answer.status_code == 400
    assert answer.json()["hint"] == "Authorization code has expired"


def test_wrong_client_secret_is_refused(server: SandboxServer, account: Account) -> None:
    answer = oauth(server, grant_type="authorization_code", code=account.issue_authorization_code(),
                   client_secret="not-the-secret")

    assert answer.status_code == 401
    assert answer.json()["title"] == "Некорректный клиент"


def test_consent_redirect_carries_a_working_code(server: SandboxServer) -> None:
    answer = requests.get(f"{server.base_url}/oauth", params={"client_id": server.client_id, "state": "xyz"},
                          allow_redirects=False)

    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(server.redirect_uri + "?")
    query = dict(parse_qsl(location.split("?", 1)[1]))
    assert query["state"] == "xyz"
    assert oauth(server, grant_type="authorization_code", code=query["code"]).status_code == 200


def test_refresh_rotates_the_pair_and_revokes_the_old_one(server: SandboxServer, account: Account) -> None:
    first = account.issue_tokens()

    renewed = oauth(server, grant_type="refresh_token", refresh_token=first["refresh_token"])
    reused = oauth(server, grant_type="refresh_token", refresh_token=first["refresh_token"])

    assert renewed.status_code == 200
    second = renewed.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert reused.status_code == 401
    assert reused.json()["hint"] == "Token has been revoked"
    assert reused.json()["type"] == OAUTH_PROBLEM
    old_access = requests.get(f"{server.base_url}/api/v4/contacts",
                              headers={"Authorization": f"Bearer {first['access_token']}"})
    new_access = requests.get(f"{server.base_url}/api/v4/contacts",
                              headers={"Authorization": f"Bearer {second['access_token']}"})
    assert old_access.status_code == 401
    assert new_access.status_code == 200
    assert account.stats()["refreshes"] == 1


def test_concurrent_refreshes_with_one_token_succeed_once(server: SandboxServer, account: Account) -> None:
    refresh_token = account.issue_tokens()["refresh_token"]
    barrier = threading.Barrier(4)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        status = oauth(server, grant_type="refresh_token", refresh_token=refresh_token).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200, 401, 401, 401]
    assert account.stats()["refreshes"] == 1
    assert account.stats()["refresh_attempts"] == 4


def test_access_tokens_expire_with_the_documented_401(clock: ManualClock) -> None:
    account = Account(contacts=3, seed=SEED, today=TODAY, clock=clock, access_token_ttl=30)
    with SandboxServer(account) as server:
        tokens = oauth(server, grant_type="authorization_code", code=account.issue_authorization_code()).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        fresh = requests.get(f"{server.base_url}/api/v4/contacts", headers=headers)
        clock.advance(30)
        stale = requests.get(f"{server.base_url}/api/v4/contacts", headers=headers)
        anonymous = requests.get(f"{server.base_url}/api/v4/contacts")

    assert tokens["expires_in"] == 30
    assert fresh.status_code == 200
    for answer in (stale, anonymous):
        assert answer.status_code == 401
        assert answer.headers["Content-Type"] == "application/problem+json"
        assert answer.json() == {"title": "Unauthorized", "type": "https://httpstatus.es/401", "status": 401,
                                 "detail": "Неверный логин или пароль"}


def test_refresh_tokens_expire_after_three_months(
    server: SandboxServer, account: Account, clock: ManualClock
) -> None:
    tokens = account.issue_tokens()
    clock.advance(90 * 86_400)

    answer = oauth(server, grant_type="refresh_token", refresh_token=tokens["refresh_token"])

    assert answer.status_code == 401
    assert answer.json()["hint"] == "Token has expired"


def test_long_lived_token_outlives_oauth_expiry(api: requests.Session, server: SandboxServer,
                                                account: Account, clock: ManualClock) -> None:
    clock.advance(2 * 86_400)
    account.expire_access_tokens()

    assert get(api, server, "/api/v4/account").json()["subdomain"] == account.subdomain


# ---------------------------------------------------------------------------
# Limits.
# ---------------------------------------------------------------------------


def limited_account(clock: ManualClock, **options: Any) -> Account:
    return Account(contacts=3, seed=SEED, today=TODAY, clock=clock, **options)


def test_eighth_request_in_a_second_gets_html_429_without_retry_after(clock: ManualClock) -> None:
    account = limited_account(clock)
    token = account.issue_long_lived_token()
    with SandboxServer(account) as server, requests.Session() as api:
        api.headers["Authorization"] = f"Bearer {token}"
        answers = [api.get(f"{server.base_url}/api/v4/contacts") for _ in range(8)]
        clock.advance(1.0)
        later = api.get(f"{server.base_url}/api/v4/contacts")

    assert [a.status_code for a in answers] == [200] * 7 + [429]
    rejected = answers[-1]
    assert rejected.headers["Content-Type"].startswith("text/html")
    assert "429 Too Many Requests" in rejected.text
    assert "Retry-After" not in rejected.headers
    assert later.status_code == 200
    assert account.stats()["too_many_requests"] == 1


def test_concurrent_clients_reach_the_limit(clock: ManualClock) -> None:
    account = limited_account(clock, latency=0.2, abuse_threshold=None)
    token = account.issue_long_lived_token()
    statuses: list[int] = []
    lock = threading.Lock()
    with SandboxServer(account) as server:
        def worker() -> None:
            status = requests.get(f"{server.base_url}/api/v4/contacts",
                                  headers={"Authorization": f"Bearer {token}"}).status_code
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=worker) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(statuses) == [200] * 7 + [429] * 5
    assert account.stats()["max_in_flight"] > 1


def test_a_request_taken_out_of_arrival_order_still_cannot_make_eight_in_a_second(clock: ManualClock) -> None:
    account = limited_account(clock, abuse_threshold=None)
    headers = {"Authorization": f"Bearer {account.issue_long_lived_token()}"}
    clock.advance(1.0)
    # Seven requests that arrived 0.3 .. 0.9 s after START were admitted; then a thread gets round to
    # one that arrived at START + 0.0, before all of them. Admitting it would put eight within
    # (START - 0.1, START + 0.9].
    late = [account.handle("GET", "/api/v4/contacts", headers=headers, arrived=START + 0.3 + i / 10).status
            for i in range(7)]
    earlier = account.handle("GET", "/api/v4/contacts", headers=headers, arrived=START)
    after_a_second = account.handle("GET", "/api/v4/contacts", headers=headers, arrived=START + 1.31)

    assert late == [200] * 7
    assert earlier.status == 429
    assert after_a_second.status == 200


def wait_for_arrival_stamps(stamping: socket.socket) -> None:
    """Wait until the kernel stamps packets when they arrive (it turns stamping on in deferred work).

    Until then a packet is stamped when it is read, which on a loaded machine is long after it came. A
    datagram sent to ourselves tells which: stamped before we looked, stamping is on.
    """
    stamping.bind(("127.0.0.1", 0))
    deadline = time.monotonic() + 60  # how long to wait for the kernel, not an assertion about speed
    while True:
        stamping.sendto(b"?", stamping.getsockname())
        time.sleep(0.01)
        looked = time.time()
        _, ancillary, _, _ = stamping.recvmsg(16, 64)
        stamps = [struct.unpack("qq", data[:16]) for _, _, data in ancillary if len(data) >= 16]
        if stamps and stamps[0][0] + stamps[0][1] / 1e9 < looked:
            return
        assert time.monotonic() < deadline, "the kernel never turned arrival stamps on"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernel receive times are read on Linux")
def test_a_request_is_counted_when_it_arrived_not_when_a_busy_emulator_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requests sent while the emulator cannot read them reach the rate limit stamped when they were sent.

    The emulator is held, as a garbage collection, a large page being serialized or another process on the
    same cores holds it, until every request has been sent. Stamped when read, each would carry a time after
    the emulator was let go; the rate limit's windows (tested above with `arrived`) would then count a burst
    the client never sent.
    """
    account = Account(contacts=3, seed=SEED, today=TODAY, abuse_threshold=None)
    token = account.issue_long_lived_token()
    arrivals: list[float] = []
    handle = account.handle

    def recording(method: str, path: str, **kwargs: Any) -> Any:
        if not path.startswith("/_sandbox/"):
            arrivals.append(kwargs["arrived"])
        return handle(method, path, **kwargs)

    holding, released = threading.Event(), threading.Event()
    setup = sandbox_server._Handler.setup

    def held_setup(self: Any) -> None:
        if holding.is_set():
            assert released.wait(60), "the test never let the emulator go"
        setup(self)

    monkeypatch.setattr(account, "handle", recording)
    monkeypatch.setattr(sandbox_server._Handler, "setup", held_setup)
    # Linux stamps incoming packets only while some socket asks for stamps; the emulator's own sockets
    # ask only once their handler runs. One socket asking for the whole test keeps stamping on, so
    # the requests held below are stamped when they arrive, however long the machine takes meanwhile.
    with SandboxServer(account) as server, requests.Session() as warm, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stamping:
        stamping.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_TIMESTAMPNS", 35), 1)
        wait_for_arrival_stamps(stamping)
        host, port = server.base_url.removeprefix("http://").split(":")
        request = (f"GET /api/v4/contacts HTTP/1.1\r\nHost: {host}\r\n"
                   f"Authorization: Bearer {token}\r\n\r\n").encode()
        assert warm.get(server.base_url + "/_sandbox/stats").status_code == 200
        holding.set()
        sent: list[tuple[float, float]] = []  # (just before, just after) each request left
        sockets = [socket.create_connection((host, int(port))) for _ in range(3)]
        for sock in sockets:
            before = time.time()
            sock.sendall(request)
            sent.append((before, time.time()))
        let_go = time.time()
        released.set()
        statuses = []
        for sock in sockets:
            sock.settimeout(60)
            statuses.append(int(sock.recv(64).split()[1]))
            sock.close()

    assert statuses == [200] * 3
    assert len(arrivals) == 3 and all(arrived < let_go for arrived in arrivals)
    rounding = 1e-6  # kernel nanoseconds and time.time() as floats
    for arrived, (before, after) in zip(sorted(arrivals), sent, strict=True):
        assert before - rounding <= arrived <= after + rounding


def test_hammering_through_429s_blocks_the_account_with_html_403(clock: ManualClock) -> None:
    account = limited_account(clock, abuse_threshold=3, block_seconds=60)
    token = account.issue_long_lived_token()
    with SandboxServer(account) as server, requests.Session() as api:
        api.headers["Authorization"] = f"Bearer {token}"
        answers = [api.get(f"{server.base_url}/api/v4/contacts") for _ in range(11)]
        clock.advance(59)
        still_blocked = api.get(f"{server.base_url}/api/v4/contacts")
        clock.advance(2)
        released = api.get(f"{server.base_url}/api/v4/contacts")

    assert [a.status_code for a in answers] == [200] * 7 + [429] * 3 + [403]
    assert answers[-1].headers["Content-Type"].startswith("text/html")
    assert "Account blocked" in answers[-1].text
    assert still_blocked.status_code == 403
    assert released.status_code == 200
    assert account.stats()["blocked"] == 2


# ---------------------------------------------------------------------------
# Events.
# ---------------------------------------------------------------------------


def test_deletions_leave_events_paged_newest_first(
    api: requests.Session, server: SandboxServer, account: Account, clock: ManualClock
) -> None:
    contacts = account.contact_ids()
    leads = account.lead_ids()
    account.delete_contact(contacts[0])
    clock.advance(10)
    since = int(clock())
    account.delete_lead(leads[0])
    account.delete_contact(contacts[1])
    account.update_contact(contacts[2], name="Переименован")

    first = get(api, server, "/api/v4/events", limit=2,
                **{"filter[type][]": ["contact_deleted", "lead_deleted"]})
    second = api.get(first.json()["_links"]["next"]["href"])
    comma = get(api, server, "/api/v4/events", **{"filter[type]": "contact_deleted,lead_deleted",
                                                   "filter[created_at][from]": since})
    empty = get(api, server, "/api/v4/events", page=2, limit=2,
                **{"filter[type]": "contact_deleted,lead_deleted", "filter[created_at][from]": since})

    page_one = first.json()["_embedded"]["events"]
    assert [(e["type"], e["entity_id"]) for e in page_one] == [("contact_deleted", contacts[1]),
                                                               ("lead_deleted", leads[0])]
    assert [(e["type"], e["entity_id"]) for e in second.json()["_embedded"]["events"]] == [
        ("contact_deleted", contacts[0])]
    assert "next" not in second.json()["_links"]
    assert [e["entity_id"] for e in comma.json()["_embedded"]["events"]] == [contacts[1], leads[0]]
    assert empty.status_code == 204 and empty.content == b""
    event = page_one[0]
    assert isinstance(event["id"], str) and len(event["id"]) == 26
    assert event["entity_type"] == "contact"
    assert event["created_at"] == since
    assert event["_embedded"]["entity"]["id"] == contacts[1]


def test_events_are_capped_at_100_a_page(api: requests.Session, server: SandboxServer, account: Account) -> None:
    for number in range(120):
        account.add_contact(name=f"Новый {number}")

    hundred = get(api, server, "/api/v4/events", limit=100, **{"filter[type]": "contact_added"})
    oversized = get(api, server, "/api/v4/events", limit=250, **{"filter[type]": "contact_added"})

    assert len(hundred.json()["_embedded"]["events"]) == 100
    assert len(oversized.json()["_embedded"]["events"]) == 50


# ---------------------------------------------------------------------------
# Writes.
# ---------------------------------------------------------------------------


def test_patch_updates_contacts_and_bumps_updated_at(
    api: requests.Session, server: SandboxServer, account: Account, clock: ManualClock
) -> None:
    contact_id = account.contact_ids()[0]
    clock.advance(100)
    body = [{
        "id": contact_id,
        "first_name": "Мария",
        "custom_fields_values": [{"field_code": "EMAIL",
                                  "values": [{"value": "maria@example.ru", "enum_code": "WORK"}]}],
        "tags_to_add": [{"name": "промо-2025"}],
    }]

    answer = api.patch(f"{server.base_url}/api/v4/contacts", json=body)

    assert answer.status_code == 200
    assert [item["id"] for item in answer.json()["_embedded"]["contacts"]] == [contact_id]
    contact = account.contact(contact_id)
    assert contact["first_name"] == "Мария"
    assert contact["updated_at"] == int(clock())
    emails = next(f for f in contact["custom_fields_values"] if f["field_code"] == "EMAIL")["values"]
    assert emails == [{"value": "maria@example.ru", "enum_id": emails[0]["enum_id"], "enum_code": "WORK"}]
    assert "промо-2025" in [tag["name"] for tag in contact["_embedded"]["tags"]]
    assert account.patches[-1]["body"] == body
    assert get(api, server, "/api/v4/contacts", **{"filter[updated_at][from]": int(clock())}).json()[
        "_embedded"]["contacts"][0]["id"] == contact_id


def test_patch_validation_errors_name_the_path_and_change_nothing(
    api: requests.Session, server: SandboxServer, account: Account
) -> None:
    first, second = account.contact_ids()[:2]
    before = account.contact(first)
    body = [
        {"id": first, "name": "Годный"},
        {"id": second, "nickname": "лишнее"},
        {"id": second, "custom_fields_values": [{"field_id": 1_000_003,
                                                 "values": [{"value": "Москва", "enum_code": "WORK"}]}]},
        {"id": second, "custom_fields_values": [{"field_id": 42, "values": [{"value": "x"}]}]},
        {"name": "без id"},
    ]

    answer = api.patch(f"{server.base_url}/api/v4/contacts", json=body)

    assert answer.status_code == 400
    assert answer.headers["Content-Type"] == "application/problem+json"
    problem = answer.json()
    assert (problem["title"], problem["status"], problem["detail"]) == ("Bad Request", 400, "Request validation failed")
    errors = {entry["request_id"]: [(e["code"], e["path"]) for e in entry["errors"]]
              for entry in problem["validation-errors"]}
    assert errors == {
        "1": [("FieldNotExpected", "nickname")],
        "2": [("FieldNotExpected", "custom_fields_values.0.values.0.enum_code")],
        "3": [("NotSupportedChoice", "custom_fields_values.0.field_id")],
        "4": [("FieldMissing", "id")],
    }
    assert account.contact(first) == before
    assert account.patches == []


def test_more_than_50_entities_in_one_request_is_refused(
    api: requests.Session, server: SandboxServer, account: Account
) -> None:
    body = [{"id": contact_id, "name": "Пакет"} for contact_id in account.contact_ids()[:51]]

    refused = api.patch(f"{server.base_url}/api/v4/contacts", json=body)
    accepted = api.patch(f"{server.base_url}/api/v4/contacts", json=body[:50])

    assert refused.status_code == 400
    assert refused.json()["validation-errors"][0]["errors"][0]["code"] == "TooManyElements"
    assert accepted.status_code == 200
    assert len(account.patches) == 1


def test_notes_and_tasks_are_kept_for_inspection(
    api: requests.Session, server: SandboxServer, account: Account
) -> None:
    contact_id = account.contact_ids()[5]

    note = api.post(f"{server.base_url}/api/v4/contacts/{contact_id}/notes",
                    json=[{"note_type": "common", "params": {"text": "Промокод BACK10 до 30 июня"}}])
    task = api.post(f"{server.base_url}/api/v4/tasks", json=[{
        "entity_id": contact_id, "entity_type": "contacts", "text": "Позвонить клиенту",
        "complete_till": int(START) + 86_400, "responsible_user_id": 6_100_002, "task_type_id": 1}])
    bad_note = api.post(f"{server.base_url}/api/v4/contacts/{contact_id}/notes",
                        json=[{"note_type": "common", "params": {}}])
    bad_task = api.post(f"{server.base_url}/api/v4/tasks", json=[{"text": "Без срока"}])

    assert note.status_code == 200
    assert note.json()["_embedded"]["notes"][0]["entity_id"] == contact_id
    assert task.status_code == 200
    assert [(n["entity_id"], n["note_type"], n["params"]["text"]) for n in account.notes] == [
        (contact_id, "common", "Промокод BACK10 до 30 июня")]
    assert [(t["entity_id"], t["entity_type"], t["text"], t["responsible_user_id"]) for t in account.tasks] == [
        (contact_id, "contacts", "Позвонить клиенту", 6_100_002)]
    assert bad_note.status_code == 400
    assert bad_note.json()["validation-errors"][0]["errors"][0]["path"] == "params.text"
    assert bad_task.status_code == 400
    assert bad_task.json()["validation-errors"][0]["errors"][0]["path"] == "complete_till"


def test_customers_answer_402_unless_the_plan_has_them(
    api: requests.Session, server: SandboxServer, clock: ManualClock
) -> None:
    customers = get(api, server, "/api/v4/customers")
    transactions = get(api, server, "/api/v4/customers/transactions")

    for answer in (customers, transactions):
        assert answer.status_code == 402
        assert answer.headers["Content-Type"] == "application/problem+json"
        assert answer.json()["status"] == 402
    paid = Account(contacts=1, seed=SEED, today=TODAY, clock=clock, customers_enabled=True)
    answer = paid.handle("GET", "/api/v4/customers/transactions",
                         headers={"Authorization": f"Bearer {paid.issue_long_lived_token()}"})
    assert answer.status == 204


# ---------------------------------------------------------------------------
# Webhooks.
# ---------------------------------------------------------------------------


class _Receiver:
    """A local endpoint that records form posts, as Hub's webhook route would receive them."""

    def __init__(self) -> None:
        self.posts: list[dict[str, str]] = []
        lock = threading.Lock()
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                with lock:
                    posts.append({"content_type": self.headers["Content-Type"], **dict(parse_qsl(body))})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/amocrm/webhook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_changes_are_posted_as_documented_form_webhooks(
    api: requests.Session, server: SandboxServer, account: Account
) -> None:
    with _Receiver() as receiver:
        account.register_webhook(receiver.url)
        contact_id = account.add_contact(first_name="Анна", last_name="Котова", phones=[("8 (916) 123-45-67", "MOB")])
        lead_id = account.add_lead(name="Заказ", price=1500, contact_id=contact_id)
        account.update_lead(lead_id, status_id=WON_STATUS_ID)
        api.patch(f"{server.base_url}/api/v4/contacts", json=[{"id": contact_id, "last_name": "Котова-Лис"}])
        account.add_company(name="ООО Ромашка")
        account.delete_contact(contact_id)
        assert account.wait_for_webhooks()

    posts = receiver.posts
    assert all(post["content_type"] == "application/x-www-form-urlencoded" for post in posts)
    assert all(post["account[subdomain]"] == account.subdomain and post["account[id]"] for post in posts)
    added = posts[0]
    assert added["contacts[add][0][id]"] == str(contact_id)
    assert added["contacts[add][0][type]"] == "contact"
    assert added["contacts[add][0][custom_fields][0][code]"] == "PHONE"
    assert added["contacts[add][0][custom_fields][0][values][0][value]"] == "8 (916) 123-45-67"
    assert posts[1]["leads[add][0][id]"] == str(lead_id)
    status = posts[2]
    assert status["leads[status][0][id]"] == str(lead_id)
    assert status["leads[status][0][status_id]"] == str(WON_STATUS_ID)
    assert status["leads[status][0][old_status_id]"] == str(PIPELINES[0].working_status_ids[0])
    assert status["leads[update][0][id]"] == str(lead_id)
    assert posts[3]["contacts[update][0][name]"] == "Анна Котова-Лис"
    assert posts[4]["contacts[add][0][type]"] == "company"
    assert posts[5]["contacts[delete][0][id]"] == str(contact_id)
    assert len(posts) == 6


def test_webhook_delivery_can_duplicate_or_drop_on_purpose(clock: ManualClock) -> None:
    doubling = Account(contacts=0, clock=clock, webhook_duplicate_rate=1.0)
    dropping = Account(contacts=0, clock=clock, webhook_drop_rate=1.0)
    with _Receiver() as receiver:
        for account in (doubling, dropping):
            account.register_webhook(receiver.url)
            account.add_contact(name="Дубль")
            assert account.wait_for_webhooks()
    doubling.close()
    dropping.close()

    assert len(receiver.posts) == 2
    assert receiver.posts[0] == receiver.posts[1]
    assert [d["duplicate"] for d in doubling.webhook_deliveries] == [False, True]
    assert [d["dropped"] for d in dropping.webhook_deliveries] == [True]
    assert dropping.stats()["webhooks_dropped"] == 1


# ---------------------------------------------------------------------------
# Stats and a third-party client.
# ---------------------------------------------------------------------------


def test_stats_route_counts_requests_per_path(api: requests.Session, server: SandboxServer) -> None:
    get(api, server, "/api/v4/contacts")
    get(api, server, "/api/v4/contacts/1")
    get(api, server, "/api/v4/customers")

    stats = requests.get(f"{server.base_url}/_sandbox/stats").json()

    assert stats["requests"] == 3
    assert stats["by_path"] == {"GET /api/v4/contacts": 1, "GET /api/v4/contacts/{id}": 1, "GET /api/v4/customers": 1}
    assert stats["by_status"] == {"200": 1, "204": 1, "402": 1}


def test_third_party_client_reads_every_contact() -> None:
    """aioamocrm, written from the public docs, walks the account through OAuth and a forced refresh."""
    from aioamocrm import AmoCRMClient, OAuth2

    account = Account(contacts=600, seed=SEED, today=TODAY)

    async def read_all(server: SandboxServer) -> list[int]:
        auth = OAuth2(server.client_id, server.client_secret, server.redirect_uri)
        async with AmoCRMClient(auth=auth, base_url=server.base_url) as amo:
            await amo.exchange_code(account.issue_authorization_code())
            ids = []
            async for contact in amo.contacts.iterate(with_="leads"):
                ids.append(contact.id)
                if len(ids) == 250:
                    account.expire_access_tokens()
            return ids

    with SandboxServer(account) as server:
        ids = asyncio.run(read_all(server))

    assert ids == account.contact_ids()
    stats = account.stats()
    assert stats["refreshes"] == 1
    assert stats["by_status"].get("429", 0) == 0
