"""The Bitrix24 client against answers in the documented shapes (HTTP mocked with `responses`)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses

from hub.ratelimit import LocalBucket
from plugins.bitrix24 import mapping
from plugins.bitrix24.client import (Bitrix24Error, Client, NeedsUserAction, OutcomeUnknown, TokenAuth, Unavailable,
                                     WebhookAuth, check_webhook_url, command, encode)

HOOK = "https://shop.bitrix24.ru/rest/1/s3cr3tc0de/"
TIME = {"start": 1724916859.4, "finish": 1724916859.5, "duration": 0.1, "processing": 0.05,
        "date_start": "2024-08-29T10:34:19+03:00", "date_finish": "2024-08-29T10:34:19+03:00"}


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(auth: Any = None, **kwargs: Any) -> tuple[Client, Sleeps]:
    sleeps = Sleeps()
    client = Client(auth or WebhookAuth(HOOK), LocalBucket(1000, 1000), sleep=sleeps, **kwargs)
    return client, sleeps


def contact_row(i: int) -> dict[str, Any]:
    return {"ID": str(i), "NAME": "Ольга", "DATE_MODIFY": "2024-08-15T10:38:21+03:00"}


def batch_answer(pages: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    non_empty = {k: v for k, v in pages.items()}
    return {"result": {"result": non_empty or [], "result_error": [], "result_total": [], "result_next": [],
                       "result_time": []}, "time": TIME}


def sent_commands(call: Any) -> dict[str, str]:
    return json.loads(call.request.body)["cmd"]


def test_webhook_urls_are_checked_without_echoing_the_code() -> None:
    assert check_webhook_url("https://shop.bitrix24.ru/rest/1/abc/") == "https://shop.bitrix24.ru/rest/1/abc/"
    assert check_webhook_url(" https://shop.bitrix24.ru/rest/1/abc/profile.json") == "https://shop.bitrix24.ru/rest/1/abc/"
    with pytest.raises(ValueError) as err:
        check_webhook_url("https://shop.bitrix24.ru/crm/abc")
    assert "rest/ID_ПОЛЬЗОВАТЕЛЯ/КОД" in str(err.value)
    with pytest.raises(ValueError, match="https://ПОРТАЛ"):
        check_webhook_url("shop.bitrix24.ru/rest/1/abc/")


def test_params_are_encoded_the_way_php_reads_them() -> None:
    pairs = encode({"order": {"ID": "ASC"}, "filter": {">ID": 5, "ID": ["1", "2"]}, "select": ["ID", "PHONE"],
                    "start": -1})
    assert pairs == [("order[ID]", "ASC"), ("filter[>ID]", "5"), ("filter[ID][]", "1"), ("filter[ID][]", "2"),
                     ("select[]", "ID"), ("select[]", "PHONE"), ("start", "-1")]
    cmd = command("crm.contact.list", {"filter": {">=DATE_MODIFY": "2024-08-15T10:38:21+03:00"}},
                  raw={"filter[>ID]": "$result[p0][49][ID]"})
    assert cmd == ("crm.contact.list?filter%5B%3E%3DDATE_MODIFY%5D=2024-08-15T10%3A38%3A21%2B03%3A00"
                   "&filter%5B%3EID%5D=$result[p0][49][ID]")


@responses.activate
def test_fast_paging_chains_fifty_list_calls_per_request_and_stops_on_a_short_page() -> None:
    first = {f"p{i}": [contact_row(i * 50 + j + 1) for j in range(50)] for i in range(50)}
    second = {"p0": [contact_row(2501 + j) for j in range(50)], "p1": [contact_row(2551 + j) for j in range(7)],
              # what the portal returns for a command whose $result reference points nowhere: discarded
              "p2": [contact_row(1)]}
    responses.post(HOOK + "batch", json=batch_answer(first))
    responses.post(HOOK + "batch", json=batch_answer(second))
    client, _ = make_client()
    pages = list(client.pages("crm.contact.list", select=["ID", "NAME", "PHONE"]))
    assert [len(p) for p in pages] == [2500, 57]
    assert [r["ID"] for r in pages[1]][-1] == "2557"
    assert client.stats.requests == 2
    commands = sent_commands(responses.calls[0])
    assert len(commands) == 50
    assert commands["p0"].endswith("filter%5B%3EID%5D=0") and "start=-1" in commands["p0"]
    assert "order%5BID%5D=ASC" in commands["p0"] and "select%5B%5D=PHONE" in commands["p0"]
    assert commands["p1"].endswith("filter%5B%3EID%5D=$result[p0][49][ID]")
    assert sent_commands(responses.calls[1])["p0"].endswith("filter%5B%3EID%5D=2500")


@responses.activate
def test_an_empty_batch_result_serialised_as_a_list_ends_the_data() -> None:
    responses.post(HOOK + "batch", json={"result": {"result": [], "result_error": [], "result_total": [],
                                                    "result_next": [], "result_time": []}, "time": TIME})
    client, _ = make_client()
    assert list(client.pages("crm.deal.list", select=["ID"], chain=4)) == []


@responses.activate
def test_a_command_error_inside_a_batch_is_raised_with_its_code() -> None:
    responses.post(HOOK + "batch", json={"result": {"result": [], "result_error": {
        "p0": {"error": "ERROR_CORE", "error_description": "bad filter"}}, "result_total": [], "result_next": [],
        "result_time": []}, "time": TIME})
    client, _ = make_client()
    with pytest.raises(Bitrix24Error, match="ERROR_CORE: bad filter"):
        list(client.pages("crm.deal.list", select=["ID"]))


@responses.activate
def test_query_limit_exceeded_is_backed_off_and_counted() -> None:
    responses.post(HOOK + "profile", status=503, json={"error": "QUERY_LIMIT_EXCEEDED",
                                                       "error_description": "Too many requests"})
    responses.post(HOOK + "profile", json={"result": {"ID": "1"}, "time": TIME})
    client, sleeps = make_client()
    assert client.call("profile")["result"] == {"ID": "1"}
    assert client.stats.rate_limited == 1 and client.stats.requests == 2
    assert len(sleeps) == 1 and sleeps[0] > 0


@responses.activate
def test_html_pages_and_5xx_are_retried_then_fail_without_the_webhook_code() -> None:
    for _ in range(3):
        responses.post(HOOK + "profile", status=502, body="<html><body>Bad Gateway</body></html>")
    client, sleeps = make_client(max_retries=2)
    with pytest.raises(Unavailable) as err:
        client.call("profile")
    assert "not JSON" in str(err.value) and "прекращено после 3 попыток" in str(err.value)
    assert "s3cr3tc0de" not in str(err.value)
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.5  # growing back-off, with jitter


@responses.activate
def test_connection_errors_do_not_leak_the_webhook_code() -> None:
    import requests

    responses.post(HOOK + "profile", body=requests.ConnectionError(f"Max retries exceeded with url: {HOOK}profile"))
    client, _ = make_client(max_retries=0)
    with pytest.raises(Unavailable) as err:
        client.call("profile")
    assert "s3cr3tc0de" not in str(err.value) and "shop.bitrix24.ru" in str(err.value)


def cut_off(answer: Any) -> dict[str, Any]:
    """An answer whose connection broke mid-body: the headers promise more bytes than ever arrive."""
    text = json.dumps(answer)
    return {"body": text[: len(text) // 2], "headers": {"Content-Length": str(len(text))},
            "content_type": "application/json"}


@responses.activate
@pytest.mark.parametrize("broken", [
    pytest.param(lambda whole: cut_off(whole), id="connection-dropped-mid-body"),
    pytest.param(lambda whole: {"body": json.dumps(whole)[:40], "content_type": "application/json"},
                 id="truncated-json"),
    pytest.param(lambda whole: {"body": __import__("requests").exceptions.ChunkedEncodingError(
        "Connection broken: IncompleteRead(1200 bytes read, 3000 more expected)")}, id="chunked-encoding-error"),
])
def test_an_answer_cut_off_mid_body_is_asked_again_with_back_off(broken: Any) -> None:
    whole = batch_answer({"p0": [contact_row(i) for i in range(1, 8)]})
    responses.post(HOOK + "batch", **broken(whole))
    responses.post(HOOK + "batch", **broken(whole))
    responses.post(HOOK + "batch", json=whole)
    client, sleeps = make_client()
    pages = list(client.pages("crm.contact.list", select=["ID"], chain=1))
    assert [len(p) for p in pages] == [7]
    assert client.stats.retries == 2 and client.stats.requests == 3
    assert len(sleeps) == 2 and all(s > 0 for s in sleeps)


@responses.activate
def test_answers_cut_off_every_time_end_in_one_clear_error() -> None:
    for _ in range(3):
        responses.post(HOOK + "profile", **cut_off({"result": {"ID": "1"}, "time": TIME}))
    client, sleeps = make_client(max_retries=2)
    with pytest.raises(Unavailable, match="cut off mid-body.*прекращено после 3 попыток") as err:
        client.call("profile")
    assert "s3cr3tc0de" not in str(err.value) and len(sleeps) == 2


@responses.activate
def test_an_add_whose_answer_was_cut_off_is_not_sent_again() -> None:
    responses.post(HOOK + "crm.timeline.comment.add", **cut_off({"result": 77, "time": TIME}))
    responses.post(HOOK + "crm.timeline.comment.add", json={"result": 78, "time": TIME})
    client, _ = make_client()
    with pytest.raises(OutcomeUnknown, match="not repeated"):
        client.call("crm.timeline.comment.add", {"fields": {"COMMENT": "Промокод"}})
    assert client.stats.requests == 1  # a second comment would be a duplicate


@responses.activate
def test_an_add_that_timed_out_waiting_for_its_answer_is_not_sent_again() -> None:
    responses.post(HOOK + "crm.timeline.comment.add", body=requests.ReadTimeout("read timed out"))
    responses.post(HOOK + "crm.timeline.comment.add", json={"result": 78, "time": TIME})
    client, _ = make_client()
    with pytest.raises(OutcomeUnknown, match="not repeated"):
        client.call("crm.timeline.comment.add", {"fields": {"COMMENT": "Промокод"}})
    assert client.stats.requests == 1


@responses.activate
def test_an_add_that_could_not_connect_is_sent_again() -> None:
    responses.post(HOOK + "crm.timeline.comment.add", body=requests.ConnectTimeout("connect timed out"))
    responses.post(HOOK + "crm.timeline.comment.add", json={"result": 78, "time": TIME})
    client, _ = make_client()
    assert client.call("crm.timeline.comment.add", {"fields": {"COMMENT": "Промокод"}})["result"] == 78
    assert client.stats.requests == 2


@pytest.mark.parametrize("status,code,hint", [
    (401, "NO_AUTH_FOUND", "создайте новый входящий вебхук"),
    (401, "INVALID_CREDENTIALS", "снова выполните `hub connect bitrix24`"),
    (401, "insufficient_scope", "добавьте «CRM» (crm)"),
    (403, "insufficient_scope", "добавьте «CRM» (crm)"),
    (401, "invalid_token", "подключите приложение заново"),
])
@responses.activate
def test_errors_only_the_user_can_fix_stop_at_once(status: int, code: str, hint: str) -> None:
    responses.post(HOOK + "crm.contact.list", status=status, json={"error": code, "error_description": "x"})
    client, sleeps = make_client()
    with pytest.raises(NeedsUserAction) as err:
        client.call("crm.contact.list")
    assert hint in str(err.value) and err.value.code == code
    assert client.stats.requests == 1 and sleeps == []


@responses.activate
def test_an_expired_token_is_refreshed_once_and_the_call_repeated() -> None:
    endpoint = "https://shop.bitrix24.ru/rest/"
    responses.post(endpoint + "profile", status=401, json={"error": "expired_token",
                                                           "error_description":
                                                               "The access token provided has expired."})
    responses.post(endpoint + "profile", json={"result": {"ID": "1"}, "time": TIME})
    renewals: list[int] = []

    def renew() -> tuple[str, str]:
        renewals.append(1)
        return "new-token", endpoint

    client, _ = make_client(TokenAuth(endpoint, "old-token", renew))
    assert client.call("profile")["result"]["ID"] == "1"
    assert renewals == [1]
    assert json.loads(responses.calls[0].request.body)["auth"] == "old-token"
    assert json.loads(responses.calls[1].request.body)["auth"] == "new-token"


@responses.activate
def test_operation_time_limit_waits_until_the_reset() -> None:
    now = 1_700_000_000.0
    responses.post(HOOK + "crm.contact.list", status=429, json={
        "error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit.",
        "time": {**TIME, "operating_reset_at": now + 120, "operating": 481.0}})
    responses.post(HOOK + "crm.contact.list", json={"result": [], "time": TIME})
    client, sleeps = make_client(clock=lambda: now)
    client.call("crm.contact.list")
    assert sleeps == [120.0]
    assert client.stats.rate_limited == 1


@responses.activate
def test_a_method_near_its_operating_limit_waits_before_the_next_call() -> None:
    now = 1_700_000_000.0
    responses.post(HOOK + "crm.contact.list", json={"result": [], "time": {**TIME, "operating": 400.0,
                                                                           "operating_reset_at": now + 30}})
    responses.post(HOOK + "crm.contact.list", json={"result": [], "time": TIME})
    client, sleeps = make_client(clock=lambda: now)
    client.call("crm.contact.list")
    assert sleeps == []
    client.call("crm.contact.list")
    assert sleeps == [30.0] and client.stats.operating_waits == 1


def test_contacts_map_multifields_names_and_dates_with_offsets() -> None:
    raw = {"ID": "17", "NAME": " Ольга ", "LAST_NAME": "Смирнова", "SECOND_NAME": "",
           "BIRTHDATE": "1985-03-01T03:00:00+03:00",
           "ADDRESS_CITY": "Москва", "SOURCE_ID": "WEB", "ASSIGNED_BY_ID": "5",
           "DATE_CREATE": "2024-08-15T10:38:21+03:00", "DATE_MODIFY": "2024-08-16T00:10:00+03:00",
           "PHONE": [{"ID": "1", "VALUE_TYPE": "WORK", "VALUE": "8 (916) 123-45-67", "TYPE_ID": "PHONE"},
                     {"ID": "2", "VALUE_TYPE": "MOBILE", "VALUE": " ", "TYPE_ID": "PHONE"}],
           "EMAIL": [{"ID": "3", "VALUE_TYPE": "WORK", "VALUE": "Olga@Example.ru", "TYPE_ID": "EMAIL"}],
           "UF_CRM_CHILDREN": "2"}
    record = mapping.contact(raw, {"UF_CRM_CHILDREN": "children"})
    assert (record.external_id, record.first_name, record.last_name, record.middle_name) == (
        "17", "Ольга", "Смирнова", None)
    assert record.phones == ["8 (916) 123-45-67"] and record.emails == ["Olga@Example.ru"]
    assert record.birthday == dt.date(1985, 3, 1)  # the date as written, not shifted to UTC
    assert record.created_at == dt.datetime(2024, 8, 15, 7, 38, 21, tzinfo=dt.timezone.utc)
    assert record.updated_at == dt.datetime(2024, 8, 15, 21, 10, tzinfo=dt.timezone.utc)
    assert record.attributes == {"lead_source": "WEB", "responsible_id": "5", "children": "2"}
    assert mapping.parse_date("2001-11-10T19:00:00-05:00") == dt.date(2001, 11, 11)  # UTC midnight, west
    assert mapping.parse_date("2001-11-11") == dt.date(2001, 11, 11)
    assert mapping.parse_date("") is None and mapping.parse_date("11.11.2001") is None
    bare = mapping.contact({"ID": "18", "NAME": "Иван"})  # PHONE and EMAIL absent when empty
    assert bare.phones == [] and bare.emails == [] and bare.birthday is None


@pytest.mark.parametrize("stage,semantic,status", [("WON", "S", "won"), ("C1:WON", "S", "won"), ("C2:PAID", "S", "won"),
                                                    ("LOSE", "F", "lost"), ("C1:NEW", "P", "open")])
def test_deals_map_by_stage_semantics_in_every_funnel(stage: str, semantic: str, status: str) -> None:
    raw = {"ID": "9", "TITLE": "Заказ", "CONTACT_ID": "17", "CATEGORY_ID": stage.split(":")[0][1:] or "0",
           "STAGE_ID": stage, "STAGE_SEMANTIC_ID": semantic, "OPPORTUNITY": "15400.50", "CURRENCY_ID": "RUB",
           "CLOSEDATE": "2024-09-01T03:00:00+03:00", "DATE_CREATE": "2024-08-20T12:00:00+03:00",
           "UF_CRM_PROMO": "BACK-7F3K"}
    order = mapping.deal(raw, "UF_CRM_PROMO")
    assert order.status == status and order.amount == Decimal("15400.50") and order.contact_external_id == "17"
    assert order.promo_code == "BACK-7F3K"
    assert (order.closed_at is None) == (status == "open")


def test_a_deal_without_a_contact_has_no_contact_link() -> None:
    assert mapping.deal({"ID": "1", "CONTACT_ID": "0", "STAGE_SEMANTIC_ID": "S"}).contact_external_id is None
    assert mapping.deal({"ID": "2", "CONTACT_ID": None}).contact_external_id is None


@responses.activate
def test_the_next_batch_is_requested_while_the_caller_works_on_this_one() -> None:
    import threading

    first = {f"p{i}": [contact_row(i * 50 + j + 1) for j in range(50)] for i in range(50)}
    second = {"p0": [contact_row(2501)]}
    asked = threading.Event()
    served = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        served.append(1)
        if len(served) == 1:
            return 200, {}, json.dumps(batch_answer(first))
        asked.set()
        return 200, {}, json.dumps(batch_answer(second))

    responses.add_callback(responses.POST, HOOK + "batch", callback=answer)
    client, _ = make_client()
    pages = client.pages("crm.contact.list", select=["ID"])
    assert len(next(pages)) == 2500
    assert asked.wait(timeout=10)  # requested before the caller asked for the next page
    assert [r["ID"] for r in next(pages)] == ["2501"]
    assert list(pages) == []
