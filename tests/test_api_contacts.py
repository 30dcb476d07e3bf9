"""POST and GET /api/v1/contacts: messy input through the identity rules, merges, erasure, limits, scopes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

import plugins.gdpr
from hub import identity, sync
from hub.admin.app import create_app
from hub.models import Contact, ContactIdentity, ExternalRef
from hub.records import ContactRecord
from tests.conftest import HubDB
from tests.test_api_gate import auth, is_problem, make_key

pytestmark = pytest.mark.both_databases  # the identity path, upserts and paging by id


@pytest.fixture
def client(hub_db: HubDB) -> Any:
    return create_app(hub_db.settings).test_client()


@pytest.fixture
def writer(hub_db: HubDB) -> dict[str, str]:
    return auth(make_key(hub_db, "contacts:write", "contacts:read"), **{"Accept-Language": "en"})


def post(client: Any, headers: dict[str, str], body: Any) -> list[dict[str, Any]]:
    response = client.post("/api/v1/contacts", json=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return list(response.get_json()["items"])


def count(db: HubDB, table: Any = Contact) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_three_ways_of_writing_one_phone_are_one_contact(hub_db: HubDB, client: Any,
                                                         writer: dict[str, str]) -> None:
    items = post(client, writer, {"contacts": [
        {"name": "Иванова Мария", "phones": ["8 (916) 123-45-67"]},
        {"first_name": "МАРИЯ", "last_name": "иванова", "phones": ["+7 916 1234567"], "emails": ["Masha@Mail.RU"]},
        {"name": "Мария Иванова", "phones": ["9161234567"], "tags": ["vip", "vip"], "city": "Тверь"},
    ]})
    assert [i["index"] for i in items] == [0, 1, 2]
    assert [i["status"] for i in items] == ["created", "updated", "updated"]
    assert len({i["contact_id"] for i in items}) == 1 and all(i["problems"] == [] for i in items)
    cid = items[0]["contact_id"]
    found = client.get(f"/api/v1/contacts/{cid}", headers=writer).get_json()
    assert (found["first_name"], found["last_name"]) == ("Мария", "Иванова")
    assert found["phones"] == ["+79161234567"] and found["emails"] == ["masha@mail.ru"]
    assert found["tags"] == ["vip"] and found["city"] == "Тверь" and found["lifecycle"]
    assert count(hub_db) == 1
    # the same person sent again, on its own: found, not created
    again = post(client, writer, {"name": "Иванова Мария", "phones": ["8-916-123-45-67"]})
    assert again == [{"index": 0, "contact_id": cid, "status": "updated", "problems": []}]


def test_an_unreadable_phone_is_kept_and_flagged(hub_db: HubDB, client: Any, writer: dict[str, str]) -> None:
    (item,) = post(client, writer, {"first_name": "Олег", "phones": ["+7 916 765-43-21", "позвонить вечером"],
                                    "emails": ["oleg@@example"]})
    assert item["status"] == "created"
    assert [p["field"] for p in item["problems"]] == ["/phones/1", "/emails/0"]
    found = client.get(f"/api/v1/contacts/{item['contact_id']}", headers=writer).get_json()
    assert found["phones"] == ["+79167654321"] and found["invalid_phones"] == ["позвонить вечером"]
    assert found["invalid_emails"] == ["oleg@@example"]


def test_a_reference_updates_the_same_record_and_custom_fields_are_kept(hub_db: HubDB, client: Any,
                                                                        writer: dict[str, str]) -> None:
    (first,) = post(client, writer, {"source": "tilda", "external_id": "lead-1", "first_name": "Анна",
                                     "fields": {"utm_source": "vk", "visits": 3, "subscribed": True},
                                     "birthday": "1990-05-17"})
    (second,) = post(client, writer, {"source": "tilda", "external_id": "lead-1", "phones": ["89035551122"],
                                      "fields": {"visits": 4}})
    assert first["status"] == "created" and second == {**second, "status": "updated",
                                                        "contact_id": first["contact_id"]}
    with hub_db.engine.connect() as conn:
        attributes = conn.execute(select(Contact.attributes).where(Contact.id == first["contact_id"])).scalar()
    assert attributes == {"utm_source": "vk", "visits": 4, "subscribed": True}
    found = client.get("/api/v1/contacts?source=tilda&external_id=lead-1", headers=writer).get_json()
    assert [c["id"] for c in found["items"]] == [first["contact_id"]] and found["next_cursor"] is None
    assert found["items"][0]["birthday"] == "1990-05-17"
    assert found["items"][0]["external_refs"] == [{"source": "tilda", "id": "lead-1"}]
    (bad_date,) = post(client, writer, {"source": "tilda", "external_id": "lead-2", "first_name": "Ян",
                                        "birthday": "1990-02-30"})
    assert bad_date["status"] == "created" and bad_date["problems"][0]["field"] == "/birthday"


def test_nothing_to_keep_is_refused_by_item(hub_db: HubDB, client: Any, writer: dict[str, str]) -> None:
    items = post(client, writer, {"contacts": [{"city": "Тверь"}, {"first_name": "Ян"}]})
    assert items[0]["status"] == "refused" and items[0]["contact_id"] is None
    assert items[0]["problems"][0]["field"] == "/contacts/0"
    assert items[1]["status"] == "created"


def test_finding_by_phone_email_and_paging(hub_db: HubDB, client: Any, writer: dict[str, str]) -> None:
    made = post(client, writer, {"contacts": [{"first_name": f"Имя{i}", "phones": [f"+7 916 000-00-{i:02d}"],
                                               "emails": [f"p{i}@example.ru"]} for i in range(5)]})
    ids = [i["contact_id"] for i in made]
    found = client.get("/api/v1/contacts?phone=8%20(916)%20000-00-03", headers=writer).get_json()
    assert [c["id"] for c in found["items"]] == [ids[3]]
    found = client.get("/api/v1/contacts?email=P4@EXAMPLE.RU", headers=writer).get_json()
    assert [c["id"] for c in found["items"]] == [ids[4]]
    assert client.get("/api/v1/contacts?phone=%2B79160000099", headers=writer).get_json()["items"] == []
    seen: list[int] = []
    cursor = ""
    while True:
        page = client.get(f"/api/v1/contacts?limit=2&cursor={cursor}", headers=writer).get_json()
        seen += [c["id"] for c in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert seen == sorted(ids)
    doc = is_problem(client.get("/api/v1/contacts?phone=abc", headers=writer), 400)
    assert doc["errors"][0]["field"] == "phone" and "phone" in doc["detail"]
    doc = is_problem(client.get("/api/v1/contacts?email=nope", headers=writer), 400)
    assert doc["errors"][0]["field"] == "email"
    doc = is_problem(client.get("/api/v1/contacts?external_id=1", headers=writer), 400)
    assert doc["errors"][0]["field"] == "external_id"
    doc = is_problem(client.get("/api/v1/contacts?segment=no_such", headers=writer), 404)
    assert doc["errors"][0]["field"] == "segment" and "no_such" in doc["detail"]


def test_the_segment_filter_uses_live_membership(hub_db: HubDB, client: Any) -> None:
    key = auth(make_key(hub_db, "contacts:write", "contacts:read", "orders:write"))
    made = post(client, key, {"contacts": [{"first_name": "Анна", "phones": ["+79160000001"]},
                                           {"first_name": "Борис", "phones": ["+79160000002"]}]})
    a, b = (i["contact_id"] for i in made)
    found = client.get("/api/v1/contacts?segment=potential", headers=key).get_json()
    assert [c["id"] for c in found["items"]] == [a, b]  # never bought
    bought = client.post("/api/v1/orders", json={"external_id": "1", "contact_id": a, "amount": 500,
                                                 "status": "won"}, headers=key)
    assert bought.get_json()["items"][0]["status"] == "created"
    found = client.get("/api/v1/contacts?segment=potential&phone=%2B79160000002", headers=key).get_json()
    assert [c["id"] for c in found["items"]] == [b]
    assert [c["id"] for c in client.get("/api/v1/contacts?segment=potential", headers=key).get_json()["items"]] \
        == [b]  # now, not as of the last refresh


def test_two_contacts_merged_between_calls_answer_as_the_survivor(hub_db: HubDB, client: Any,
                                                                  writer: dict[str, str]) -> None:
    (a,) = post(client, writer, {"first_name": "Пётр", "last_name": "Смирнов", "phones": ["+79165550001"]})
    (b,) = post(client, writer, {"first_name": "Пётр", "last_name": "Смирнов", "emails": ["petr@example.ru"]})
    assert a["contact_id"] != b["contact_id"]
    (both,) = post(client, writer, {"name": "Смирнов Пётр", "phones": ["89165550001"],
                                    "emails": ["petr@example.ru"]})
    survivor, gone = sorted([a["contact_id"], b["contact_id"]])
    assert both == {**both, "status": "merged", "contact_id": survivor, "merged_ids": [gone]}
    moved = client.get(f"/api/v1/contacts/{gone}", headers=writer)
    assert moved.status_code == 200 and moved.get_json()["id"] == survivor
    assert moved.get_json()["emails"] == ["petr@example.ru"]
    doc = is_problem(client.get("/api/v1/contacts/999999", headers=writer), 404)
    assert "999999" in doc["detail"]


def test_an_erased_person_sent_again_is_refused_and_nothing_is_recreated(
        hub_db: HubDB, client: Any, writer: dict[str, str], plugin_manager: Any) -> None:
    from plugins.gdpr import erasure

    plugin_manager.register(plugins.gdpr, name="gdpr")
    (item,) = post(client, writer, {"source": "shop", "external_id": "c-7", "name": "Анна Кузнецова",
                                    "phones": ["+7 903 111-22-33"], "emails": ["anna.k@example.ru"]})
    cid = item["contact_id"]
    erasure.erase(hub_db.engine, hub_db.settings, cid)
    gone = is_problem(client.get(f"/api/v1/contacts/{cid}", headers=writer), 404)
    assert "Анна" not in str(gone) and "anna" not in str(gone)
    before = count(hub_db, ContactIdentity), count(hub_db, ExternalRef)
    items = post(client, writer, {"contacts": [
        {"name": "Анна Кузнецова", "phones": ["8 903 111 22 33"]},
        {"emails": ["ANNA.K@example.ru"]},
        {"source": "shop", "external_id": "c-7", "first_name": "Анна"},
        {"first_name": "Борис", "phones": ["+79035550000"]},
    ]})
    assert [i["status"] for i in items] == ["refused", "refused", "refused", "created"]
    assert all(i["contact_id"] is None and "erased" in i["problems"][0]["detail"] for i in items[:3])
    assert (count(hub_db, ContactIdentity), count(hub_db, ExternalRef)) == (before[0] + 1, before[1])
    assert client.get("/api/v1/contacts?phone=%2B79031112233", headers=writer).get_json()["items"] == []


def test_a_deleted_contact_is_not_found(hub_db: HubDB, client: Any, writer: dict[str, str]) -> None:
    (item,) = post(client, writer, {"source": "crm", "external_id": "9", "first_name": "Вера"})
    with hub_db.engine.begin() as conn:
        sync.write_deletions(conn, [sync.Deletion("crm", "contact", "9")], sync.Counts())
    is_problem(client.get(f"/api/v1/contacts/{item['contact_id']}", headers=writer), 404)
    assert client.get("/api/v1/contacts?source=crm", headers=writer).get_json()["items"] == []


def test_a_contact_from_a_crm_is_found_by_its_reference(hub_db: HubDB, client: Any,
                                                       writer: dict[str, str]) -> None:
    with hub_db.engine.begin() as conn:
        result = sync.write_contacts(conn, [ContactRecord("bitrix24", "501", first_name="Лев",
                                                          phones=["+79167770011"])], hub_db.settings, sync.Counts())
    (item,) = post(client, writer, {"first_name": "Лев", "phones": ["8 916 777 00 11"], "city": "Казань"})
    assert item == {"index": 0, "contact_id": result.contact_ids[0], "status": "updated", "problems": []}
    with hub_db.engine.connect() as conn:
        assert identity.current_contact_id(conn, item["contact_id"]) == result.contact_ids[0]


def test_batch_limit_wrong_types_and_unknown_fields_are_422_by_index(hub_db: HubDB, client: Any,
                                                                     writer: dict[str, str]) -> None:
    doc = is_problem(client.post("/api/v1/contacts", json={"contacts": [{"first_name": "А"}] * 1001},
                                 headers=writer), 422)
    assert "1000" in doc["detail"] and doc["errors"][0]["field"] == "/contacts"
    doc = is_problem(client.post("/api/v1/contacts", json={"contacts": [
        {"first_name": "А"}, {"phones": "89161234567"}, {"first_name": 5, "colour": "red"},
        {"fields": {"nested": {"a": 1}}}]}, headers=writer), 422)
    fields = [(e.get("index"), e["field"]) for e in doc["errors"]]
    assert (1, "/contacts/1/phones") in fields and (2, "/contacts/2/first_name") in fields
    assert (3, "/contacts/3/fields/nested") in fields and any(i == 2 and f == "/contacts/2" for i, f in fields)
    doc = is_problem(client.post("/api/v1/contacts", json={"contacts": [], "x": 1}, headers=writer), 422)
    doc = is_problem(client.post("/api/v1/contacts", json=[{"first_name": "А"}], headers=writer), 422)
    doc = is_problem(client.post("/api/v1/contacts", json={"phones": ["1"] * 21}, headers=writer), 422)
    assert doc["errors"][0]["field"] == "/phones"
    assert count(hub_db) == 0


def test_hostile_strings_are_stored_as_text_or_refused_clearly(hub_db: HubDB, client: Any,
                                                               writer: dict[str, str]) -> None:
    sqlish = "Robert'); DROP TABLE contacts;--"
    html = "<script>Alert('x')</script>"
    (item,) = post(client, writer, {"first_name": sqlish, "last_name": html, "city": "\"; --",
                                    "tags": ["<b>"], "fields": {"note": "строка\nдве"},
                                    "source": "site", "external_id": "x' OR 1=1 --"})
    found = client.get(f"/api/v1/contacts/{item['contact_id']}", headers=writer).get_json()
    assert (found["first_name"], found["last_name"], found["tags"]) == (sqlish, html, ["<b>"])
    for bad, field in (({"first_name": "Ив\x00ан"}, "/first_name"), ({"last_name": "a\x1fb"}, "/last_name"),
                       ({"first_name": "я" * 201}, "/first_name"), ({"external_id": "x" * 201}, "/external_id"),
                       ({"source": "bad source"}, "/source"), ({"first_name": "\ud800"}, "/first_name"),
                       ({"fields": {"k": "x" * 2001}}, "/fields/k")):
        doc = is_problem(client.post("/api/v1/contacts", json=bad, headers=writer), 422)
        assert doc["errors"][0]["field"] == field, (bad, doc)
    raw = b'{"first_name": "\\ud83d", "phones": ["+79160000000"]}'
    post(client, writer, {"first_name": "Ян", "fields": {"ok": 1.5}})
    odd = client.post("/api/v1/contacts", data=b'{"first_name": "Jan", "fields": {"x": Infinity, "y": NaN}}',
                      headers=writer, content_type="application/json").get_json()["items"][0]
    assert [p["field"] for p in odd["problems"]] == ["/fields/x", "/fields/y"]
    is_problem(client.post("/api/v1/contacts", data=raw, headers=writer, content_type="application/json"), 422)
    assert count(hub_db) == 3


def test_a_repeat_with_the_same_idempotency_key_changes_nothing(hub_db: HubDB, client: Any,
                                                                writer: dict[str, str]) -> None:
    headers = {**writer, "Idempotency-Key": "form-42"}
    body = {"first_name": "Ира", "phones": ["+79161110000"], "tags": ["lead"]}
    first = client.post("/api/v1/contacts", json=body, headers=headers)
    again = client.post("/api/v1/contacts", json=body, headers=headers)
    assert first.get_json() == again.get_json() and first.get_json()["items"][0]["status"] == "created"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(hub_db) == 1 and count(hub_db, ContactIdentity) == 1


def test_scopes(hub_db: HubDB, client: Any) -> None:
    reader = auth(make_key(hub_db, "contacts:read"), **{"Accept-Language": "en"})
    doc = is_problem(client.post("/api/v1/contacts", json={"first_name": "А"}, headers=reader), 403)
    assert "contacts:write" in doc["detail"]
    only_write = auth(make_key(hub_db, "contacts:write"))
    is_problem(client.get("/api/v1/contacts", headers=only_write), 403)
    is_problem(client.get("/api/v1/contacts/1", headers=only_write), 403)
    is_problem(client.post("/api/v1/contacts", json={"first_name": "А"}), 401)
    assert count(hub_db) == 0


def test_problems_speak_russian_by_default(hub_db: HubDB, client: Any) -> None:
    key = auth(make_key(hub_db, "contacts:write", "contacts:read"))
    (item,) = post(client, key, {"first_name": "Олег", "phones": ["не помню"]})
    assert any("а" <= ch <= "я" for ch in item["problems"][0]["detail"])
    doc = is_problem(client.get("/api/v1/contacts?phone=abc", headers=key), 400)
    assert any("а" <= ch <= "я" for ch in doc["detail"])


@pytest.mark.parametrize("source", ["bitrix24", "amocrm", "import:clients.csv", "import", "Bitrix24"])
def test_a_key_cannot_write_as_a_system_hub_reads_itself(hub_db: HubDB, client: Any, writer: dict[str, str],
                                                         plugin_manager: Any, source: str) -> None:
    """A CRM's references merge people, an import's rows are its own: a key speaking for them is refused."""
    crms(plugin_manager)
    (item,) = post(client, writer, {"contacts": [{"source": source, "external_id": "1", "first_name": "Лев",
                                                  "phones": ["+79167770099"]}]})
    assert item["status"] == "refused" and item["contact_id"] is None
    assert [p["field"] for p in item["problems"]] == ["/contacts/0/source"]
    assert source in item["problems"][0]["detail"]
    assert count(hub_db) == 0
    (ok,) = post(client, writer, {"source": "shop", "external_id": "1", "first_name": "Лев"})
    assert ok["status"] == "created"


def crms(plugin_manager: Any) -> None:
    """The CRM plugins as an installed Hub has them: their sources are registered names."""
    import plugins.amocrm
    import plugins.bitrix24

    for plugin in (plugins.amocrm, plugins.bitrix24):
        if not plugin_manager.is_registered(plugin):
            plugin_manager.register(plugin)


def test_control_characters_follow_one_rule_and_a_bad_key_is_named_at_its_own_pointer(
        hub_db: HubDB, client: Any, writer: dict[str, str]) -> None:
    """One-line fields refuse every control character; free text (`fields` values) takes tabs and line breaks."""
    for bad, field in (({"fields": {"k": "a\u0000b"}}, "/contacts/0/fields/k"),
                       ({"fields": {"k": "a\u001bb"}}, "/contacts/0/fields/k"),
                       ({"fields": {"a\u0000b": "x"}}, "/contacts/0/fields/a\u0000b"),
                       ({"fields": {"two\nlines": "x"}}, "/contacts/0/fields/two\nlines"),
                       ({"fields": {"": "x"}}, "/contacts/0/fields/"),
                       ({"fields": {"k" * 65: "x"}}, "/contacts/0/fields/" + "k" * 65),
                       ({"tags": ["a\u0000b"]}, "/contacts/0/tags/0"), ({"name": "Иван\tИванов"}, "/contacts/0/name"),
                       ({"city": "Тверь\n"}, "/contacts/0/city"), ({"phones": ["+7916\u00001234567"]},
                                                                     "/contacts/0/phones/0"),
                       ({"emails": ["a\u0000@b.ru"]}, "/contacts/0/emails/0"),
                       ({"external_id": "a\u0000", "source": "site"}, "/contacts/0/external_id")):
        doc = is_problem(client.post("/api/v1/contacts", json={"contacts": [{"first_name": "Ян", **bad}]},
                                     headers=writer), 422)
        assert [(e["field"], e.get("index")) for e in doc["errors"]] == [(field, 0)], (bad, doc)
    assert count(hub_db) == 0
    (item,) = post(client, writer, {"first_name": "Ян", "fields": {"адрес": "Тверь,\tд. 1\r\nкв. 2"}})
    found = client.get(f"/api/v1/contacts/{item['contact_id']}", headers=writer)
    assert found.status_code == 200 and item["status"] == "created"


def test_a_batch_that_joins_its_own_earlier_items_answers_merged_and_the_survivor(
        hub_db: HubDB, client: Any, writer: dict[str, str]) -> None:
    items = post(client, writer, {"contacts": [
        {"name": "Смирнов Пётр", "phones": ["+79165550001"], "source": "shop"},
        {"name": "Смирнов Пётр", "emails": ["petr@example.ru"], "source": "site"},
        {"name": "Смирнов Пётр", "phones": ["89165550001"], "emails": ["petr@example.ru"], "source": "app"},
    ]})
    survivor = items[2]["contact_id"]
    assert [i["contact_id"] for i in items] == [survivor] * 3
    assert [i["status"] for i in items] == ["created", "updated", "merged"]
    with hub_db.engine.connect() as conn:
        folded = list(conn.execute(select(identity.merges_t.c.merged_id)).scalars())
    assert items[2]["merged_ids"] == folded and survivor not in folded and len(folded) == 1
    assert "merged_ids" not in items[0] and "merged_ids" not in items[1]
    gone = client.get(f"/api/v1/contacts/{folded[0]}", headers=writer).get_json()
    assert gone["id"] == survivor


@pytest.mark.parametrize("query, name", [
    ("phone=", "phone"), ("email=", "email"), ("source=", "source"), ("segment=", "segment"),
    ("source=shop&external_id=", "external_id"), ("phone=%2B79160000001&phone=%2B79160000002", "phone"),
    ("email=a%40b.ru&email=c%40d.ru", "email"), ("source=shop&source=site", "source"),
    ("limit=1&limit=2", "limit"), ("source=a%00b", "source")])
def test_an_empty_or_repeated_filter_is_a_400_naming_it(hub_db: HubDB, client: Any, writer: dict[str, str],
                                                         query: str, name: str) -> None:
    post(client, writer, {"first_name": "Ян", "phones": ["+79160000001"]})
    doc = is_problem(client.get(f"/api/v1/contacts?{query}", headers=writer), 400)
    assert doc["errors"][0]["field"] == name and name in doc["detail"], doc


def test_a_bad_birthday_shows_an_example(hub_db: HubDB, client: Any, writer: dict[str, str]) -> None:
    doc = is_problem(client.post("/api/v1/contacts", json={"first_name": "Ян", "birthday": "17.05.1990"},
                                 headers=writer), 422)
    assert doc["errors"][0]["field"] == "/birthday" and "1990-05-17" in doc["errors"][0]["detail"]
