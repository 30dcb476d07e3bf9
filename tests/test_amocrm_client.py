"""The amoCRM HTTP client against recorded answers in amoCRM's documented shapes (responses); its send window
also against the emulator, where requests really go over sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from hub.ratelimit import LocalBucket
from plugins.amocrm.client import (
    AmoAuthError, AmoBlocked, AmoClient, AmoOutcomeUnknown, AmoValidationError, SendWindow, StaticAuth,
    check_base_url,
)
from plugins.amocrm.sandbox import Account, SandboxServer
from tests.support.clock import ManualClock

BASE = "https://shop.amocrm.ru"
BLOCK_PAGE = "<!DOCTYPE html><html><head><title>403 Forbidden</title></head><body>Access denied</body></html>"
TOO_MANY = "<html><head><title>429 Too Many Requests</title></head><body><center>nginx</center></body></html>"


class Refreshing:
    """An Auth whose token can be refreshed; counts refreshes."""

    def __init__(self) -> None:
        self.current = "old-access"
        self.refreshes = 0

    def token(self) -> str:
        return self.current

    def refresh(self, stale: str) -> str:
        self.refreshes += 1
        self.current = "new-access"
        return self.current


def make_client(auth: Any = None, concurrency: int = 1) -> tuple[AmoClient, list[float]]:
    slept: list[float] = []
    client = AmoClient(BASE, auth or StaticAuth("tok"), LocalBucket(10_000, 10_000), concurrency=concurrency,
                       sleep=slept.append, pause_429=1.5)
    return client, slept


def contacts_page(ids: list[int], page: int, more: bool) -> dict[str, Any]:
    links = {"self": {"href": f"{BASE}/api/v4/contacts?page={page}&limit=250"}}
    if more:
        links["next"] = {"href": f"{BASE}/api/v4/contacts?page={page + 1}&limit=250"}
    return {"_page": page, "_links": links,
            "_embedded": {"contacts": [{"id": i, "name": f"C{i}", "custom_fields_values": None} for i in ids]}}


@responses.activate
def test_a_204_after_a_full_last_page_ends_the_list() -> None:
    client, _ = make_client()
    responses.get(f"{BASE}/api/v4/contacts", json=contacts_page(list(range(1, 251)), 1, True),
                  match=[matchers.query_param_matcher({"page": "1", "limit": "250"}, strict_match=False)])
    responses.get(f"{BASE}/api/v4/contacts", status=204, body="",
                  match=[matchers.query_param_matcher({"page": "2", "limit": "250"}, strict_match=False)])
    pages = list(client.pages("/api/v4/contacts", [], "contacts"))
    assert [(n, len(items)) for n, items in pages] == [(1, 250)]
    assert client.stats.requests == 2
    assert responses.calls[0].request.headers["Authorization"] == "Bearer tok"


@responses.activate
def test_concurrent_pages_come_in_order_and_stop_at_the_end() -> None:
    client, _ = make_client(concurrency=3)
    for page in range(1, 8):
        ids = list(range(page * 1000, page * 1000 + (250 if page < 7 else 10)))
        responses.get(f"{BASE}/api/v4/contacts", json=contacts_page(ids, page, page < 7),
                      match=[matchers.query_param_matcher({"page": str(page)}, strict_match=False)])
    for page in range(8, 20):
        responses.get(f"{BASE}/api/v4/contacts", status=204, body="",
                      match=[matchers.query_param_matcher({"page": str(page)}, strict_match=False)])
    pages = list(client.pages("/api/v4/contacts", [("order[id]", "asc")], "contacts"))
    assert [n for n, _ in pages] == list(range(1, 8))
    assert sum(len(items) for _, items in pages) == 6 * 250 + 10
    # Never more than the window past the end, and every page asked exactly once.
    asked = [int(c.request.params["page"]) for c in responses.calls]
    assert len(asked) == len(set(asked)) and max(asked) <= 7 + 2 * 3
    assert all(c.request.params["order[id]"] == "asc" for c in responses.calls)


@responses.activate
def test_html_429_waits_a_fixed_pause_and_retries() -> None:
    client, slept = make_client()
    responses.get(f"{BASE}/api/v4/account", status=429, body=TOO_MANY, content_type="text/html")
    responses.get(f"{BASE}/api/v4/account", json={"id": 1, "subdomain": "shop"})
    assert client.get("/api/v4/account") == {"id": 1, "subdomain": "shop"}
    assert slept == [1.5]
    assert client.stats.rate_limited == 1 and client.stats.requests == 2


@responses.activate
def test_html_403_stops_at_once_and_sends_nothing_more() -> None:
    client, slept = make_client()
    responses.get(f"{BASE}/api/v4/contacts", status=403, body=BLOCK_PAGE, content_type="text/html")
    with pytest.raises(AmoBlocked, match="заблокировал доступ к API для shop.amocrm.ru"):
        client.get("/api/v4/contacts")
    with pytest.raises(AmoBlocked):
        client.get("/api/v4/leads")
    assert len(responses.calls) == 1 and slept == []


@responses.activate
def test_401_refreshes_once_and_repeats_the_call() -> None:
    auth = Refreshing()
    client, _ = make_client(auth)
    responses.get(f"{BASE}/api/v4/account", status=401,
                  json={"title": "Unauthorized", "status": 401, "detail": "Unauthorized"},
                  match=[matchers.header_matcher({"Authorization": "Bearer old-access"})])
    responses.get(f"{BASE}/api/v4/account", json={"id": 7},
                  match=[matchers.header_matcher({"Authorization": "Bearer new-access"})])
    assert client.get("/api/v4/account") == {"id": 7}
    assert auth.refreshes == 1


@responses.activate
def test_a_second_401_after_refreshing_asks_to_connect_again() -> None:
    auth = Refreshing()
    client, _ = make_client(auth)
    responses.get(f"{BASE}/api/v4/account", status=401, json={"title": "Unauthorized", "status": 401})
    with pytest.raises(AmoAuthError, match="подключитесь заново") as info:
        client.get("/api/v4/account")
    assert auth.refreshes == 1 and len(responses.calls) == 2
    assert "new-access" not in str(info.value) and "old-access" not in str(info.value)


@responses.activate
def test_a_long_lived_token_refused_says_what_to_do() -> None:
    client, _ = make_client(StaticAuth("secret-long-lived"))
    responses.get(f"{BASE}/api/v4/account", status=401, json={"title": "Unauthorized", "status": 401})
    with pytest.raises(AmoAuthError, match="создайте новый долгосрочный токен") as info:
        client.get("/api/v4/account")
    assert "secret-long-lived" not in str(info.value)


@responses.activate
def test_reads_retry_5xx_and_timeouts_with_backoff() -> None:
    client, slept = make_client()
    responses.get(f"{BASE}/api/v4/leads", status=502, body="<html>Bad Gateway</html>")
    responses.get(f"{BASE}/api/v4/leads", body=requests.ReadTimeout("read timed out"))
    responses.get(f"{BASE}/api/v4/leads", json={"_embedded": {"leads": []}})
    assert client.get("/api/v4/leads") == {"_embedded": {"leads": []}}
    assert client.stats.retries == 2 and len(slept) == 2 and slept[1] > 0


def cut_off(answer: Any) -> dict[str, Any]:
    """An answer whose connection broke mid-body: the headers promise more bytes than ever arrive."""
    text = json.dumps(answer)
    return {"body": text[: len(text) // 2], "headers": {"Content-Length": str(len(text))},
            "content_type": "application/hal+json"}


@responses.activate
@pytest.mark.parametrize("broken", [
    pytest.param(cut_off, id="connection-dropped-mid-body"),
    pytest.param(lambda whole: {"body": json.dumps(whole)[:30], "content_type": "application/hal+json"},
                 id="truncated-json"),
    pytest.param(lambda whole: {"body": requests.exceptions.ChunkedEncodingError("Connection broken")},
                 id="chunked-encoding-error"),
])
def test_a_read_whose_answer_is_cut_off_mid_body_is_asked_again(broken: Any) -> None:
    client, slept = make_client()
    whole = contacts_page([1, 2, 3], 1, more=False)
    responses.get(f"{BASE}/api/v4/contacts", **broken(whole))
    responses.get(f"{BASE}/api/v4/contacts", **broken(whole))
    responses.get(f"{BASE}/api/v4/contacts", json=whole)
    pages = list(client.pages("/api/v4/contacts", [], "contacts"))
    assert [[c["id"] for c in items] for _, items in pages] == [[1, 2, 3]]
    assert client.stats.retries == 2 and len(slept) == 2 and all(s > 0 for s in slept)


@responses.activate
def test_a_post_whose_answer_is_cut_off_is_not_sent_again() -> None:
    client, _ = make_client()
    responses.post(f"{BASE}/api/v4/tasks", **cut_off({"_embedded": {"tasks": [{"id": 1}]}}))
    with pytest.raises(AmoOutcomeUnknown, match="not repeated"):
        client.request("POST", "/api/v4/tasks", json=[{"text": "Позвонить"}])
    assert len(responses.calls) == 1


@responses.activate
def test_a_post_whose_answer_is_lost_is_not_sent_again() -> None:
    client, _ = make_client()
    responses.post(f"{BASE}/api/v4/tasks", body=requests.ReadTimeout("read timed out"))
    with pytest.raises(AmoOutcomeUnknown, match="may or may not have been carried out"):
        client.request("POST", "/api/v4/tasks", json=[{"text": "Call"}])
    responses.post(f"{BASE}/api/v4/contacts/5/notes", status=504, body="<html>Gateway Timeout</html>")
    with pytest.raises(AmoOutcomeUnknown):
        client.request("POST", "/api/v4/contacts/5/notes", json=[{"note_type": "common"}])
    assert len(responses.calls) == 2


@responses.activate
def test_validation_errors_name_the_path_amocrm_refused() -> None:
    client, _ = make_client()
    responses.patch(f"{BASE}/api/v4/contacts", status=400, json={
        "validation-errors": [{"request_id": "0", "errors": [
            {"code": "NotSupportedChoice", "path": "custom_fields_values.0.field_id",
             "detail": "The value you selected is not a valid choice."}]}],
        "title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400,
        "detail": "Request validation failed"})
    with pytest.raises(AmoValidationError) as info:
        client.request("PATCH", "/api/v4/contacts", json=[{"id": 1}])
    assert "request 0: custom_fields_values.0.field_id: NotSupportedChoice" in str(info.value)
    assert info.value.errors[0]["errors"][0]["path"] == "custom_fields_values.0.field_id"


def test_the_base_url_must_be_an_account_address() -> None:
    assert check_base_url("https://shop.amocrm.ru/leads/pipeline/") == "https://shop.amocrm.ru"
    assert check_base_url("http://127.0.0.1:8025") == "http://127.0.0.1:8025"
    with pytest.raises(ValueError, match="должен выглядеть так: https://ПОДДОМЕН.amocrm.ru"):
        check_base_url("shop.amocrm.ru")


@responses.activate
def test_filters_are_sent_as_documented() -> None:
    client, _ = make_client()
    responses.get(f"{BASE}/api/v4/contacts", status=204, body="")
    client.list_page("/api/v4/contacts", [("with", "leads"), ("filter[updated_at][from]", 100),
                                          ("filter[updated_at][to]", 200), ("filter[id][]", 5),
                                          ("filter[id][]", 6)], "contacts", 1)
    query = responses.calls[0].request.url.split("?", 1)[1]
    assert "filter%5Bupdated_at%5D%5Bfrom%5D=100" in query and "filter%5Bupdated_at%5D%5Bto%5D=200" in query
    assert query.count("filter%5Bid%5D%5B%5D=") == 2 and "limit=250" in query
    assert json.loads(json.dumps(dict(responses.calls[0].request.params)))["with"] == "leads"


# ---------------------------------------------------------------------------
# The send window: at most `limit` requests written within any `window` seconds.
# ---------------------------------------------------------------------------


def test_four_threads_paging_never_put_more_than_the_limit_on_the_wire_in_any_window() -> None:
    account = Account(contacts=60, seed=3, latency=0.03, rate_limit=None)
    clock = ManualClock()  # waiting for a place moves it: the spacing below is the window's, not the machine's
    written: list[float] = []

    class Recording(SendWindow):
        def _settle(self, sent: bool) -> None:
            if sent:
                written.append(clock())
            super()._settle(sent)

    with SandboxServer(account) as server:
        client = AmoClient(server.base_url, StaticAuth(account.issue_long_lived_token()), LocalBucket(10_000, 10_000),
                           window=Recording(3, 0.2, clock=clock, sleep=clock.sleep), concurrency=4)
        pages = list(client.pages("/api/v4/contacts", [("order[id]", "asc")], "contacts", limit=5))
    account.close()

    assert [n for n, _ in pages] == list(range(1, 13))
    assert len(written) == client.stats.requests
    rounding = 1e-6
    assert all(later - earlier > 0.2 - rounding for earlier, later in zip(written, written[3:], strict=False))
    # Each place was released once its request was written, not when the answer came back: requests overlapped.
    assert account.stats()["max_in_flight"] > 1
