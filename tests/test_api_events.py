"""POST /api/v1/events: stored set-wise, idempotent by the sender's id, following people through merges and erasure."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from hub import events, identity
from hub.admin.app import create_app
from hub.models import Contact, Event
from hub.records import ContactRecord
from hub.sync import Counts, write_contacts
from hub.unmerge import unmerge
from tests.conftest import HubDB
from tests.test_api_gate import auth, is_problem, make_key

pytestmark = pytest.mark.both_databases  # ON CONFLICT, JSON and id lookups differ between the two

events_t = Event.__table__
contacts_t = Contact.__table__
EN = {"Accept-Language": "en"}


@pytest.fixture
def client(hub_db: HubDB) -> Any:
    return create_app(hub_db.settings).test_client()


@pytest.fixture
def key(hub_db: HubDB) -> str:
    return make_key(hub_db, "events:write")


def add_contact(db: HubDB, *, email: str | None = None, phone: str | None = None, first_name: str = "Иван",
                external_id: str | None = None) -> int:
    with db.engine.begin() as conn:
        result = write_contacts(conn, [ContactRecord(source="shop", external_id=external_id, first_name=first_name,
                                                     emails=[email] if email else [],
                                                     phones=[phone] if phone else [])], db.settings, Counts())
    cid = result.contact_ids[0]
    assert cid is not None
    return cid


def post(client: Any, key: str, body: Any, **headers: str) -> Any:
    return client.post("/api/v1/events", json=body, headers=auth(key, **EN, **headers))


def rows(db: HubDB) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(events_t).order_by(events_t.c.id)))


def test_one_event_by_contact_id_is_stored_with_its_properties_and_time(hub_db: HubDB, client: Any,
                                                                         key: str) -> None:
    cid = add_contact(hub_db, email="ivan@mail.ru")
    r = post(client, key, {"id": "shop-1", "name": "cart_abandoned", "contact_id": cid,
                           "properties": {"total": 5400, "items": ["sku-1", "sku-2"], "coupon": None},
                           "occurred_at": "2026-12-01T10:00:00+03:00"})
    assert r.status_code == 200, r.get_data(as_text=True)
    doc = r.get_json()
    assert doc["stored"] == 1 and doc["duplicates"] == 0 and doc["refused"] == 0
    [item] = doc["items"]
    assert item["index"] == 0 and item["status"] == "stored" and item["problems"] == []
    [row] = rows(hub_db)
    assert row.id == item["event_id"] and row.contact_id == cid and row.name == "cart_abandoned"
    assert row.properties == {"total": 5400, "items": ["sku-1", "sku-2"], "coupon": None}
    assert row.occurred_at == dt.datetime(2026, 12, 1, 7, 0, tzinfo=dt.timezone.utc)
    assert row.uid == "shop-1" and row.api_key is not None


def test_the_same_id_again_changes_nothing_and_is_answered_as_duplicate(hub_db: HubDB, client: Any,
                                                                         key: str) -> None:
    cid = add_contact(hub_db, email="ivan@mail.ru")
    first = post(client, key, {"id": "e-1", "name": "page_viewed", "contact_id": cid}).get_json()
    again = post(client, key, {"events": [{"id": "e-1", "name": "page_viewed", "contact_id": cid,
                                           "properties": {"url": "/other"}},
                                          {"id": "e-2", "name": "page_viewed", "contact_id": cid},
                                          {"id": "e-2", "name": "page_viewed", "contact_id": cid}]}).get_json()
    assert [i["status"] for i in again["items"]] == ["duplicate", "stored", "duplicate"]
    assert again["items"][0]["event_id"] == first["items"][0]["event_id"]
    assert again["items"][2]["event_id"] == again["items"][1]["event_id"]
    assert len(rows(hub_db)) == 2 and rows(hub_db)[0].properties == {}


def test_events_find_their_contact_by_email_phone_or_reference(hub_db: HubDB, client: Any, key: str) -> None:
    cid = add_contact(hub_db, email="ivan@mail.ru", phone="+7 912 345-67-89", external_id="c-7")
    doc = post(client, key, {"events": [
        {"name": "page_viewed", "email": " Ivan@Mail.RU "},
        {"name": "page_viewed", "phone": "8 (912) 345-67-89"},
        {"name": "page_viewed", "reference": {"source": "shop", "external_id": "c-7"}},
    ]}).get_json()
    assert [i["status"] for i in doc["items"]] == ["stored"] * 3
    assert {r.contact_id for r in rows(hub_db)} == {cid}


def test_an_unknown_person_is_created_through_the_identity_path_once_per_batch(hub_db: HubDB, client: Any,
                                                                                key: str) -> None:
    doc = post(client, key, {"events": [
        {"name": "cart_abandoned", "email": "new.buyer@yandex.ru"},
        {"name": "cart_abandoned", "email": "NEW.BUYER@yandex.ru"},
        {"name": "page_viewed", "phone": "+7 916 700-00-01"},
    ]}).get_json()
    assert [i["status"] for i in doc["items"]] == ["stored"] * 3
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(contacts_t.c.id)).scalars().all().__len__() == 2
    by_name = {r.name: r.contact_id for r in rows(hub_db)}
    assert rows(hub_db)[0].contact_id == rows(hub_db)[1].contact_id != by_name["page_viewed"]
    assert [i["contact_id"] for i in doc["items"]] == [r.contact_id for r in rows(hub_db)]
    again = post(client, key, {"name": "page_viewed", "email": "new.buyer@yandex.ru"}).get_json()
    assert again["items"][0]["status"] == "stored"
    assert rows(hub_db)[-1].contact_id == rows(hub_db)[0].contact_id


def test_refused_items_name_their_field_and_the_rest_is_stored(hub_db: HubDB, client: Any, key: str) -> None:
    cid = add_contact(hub_db, email="ivan@mail.ru")
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).isoformat()
    doc = post(client, key, {"events": [
        {"name": "ok", "contact_id": cid},
        {"name": "no_contact"},
        {"name": "ghost", "contact_id": 999999},
        {"name": "late", "contact_id": cid, "occurred_at": future},
        {"name": "naive", "contact_id": cid, "occurred_at": "2026-13-01T10:00:00+03:00"},
        {"name": "junk", "phone": "не знаю"},
        {"name": "ancient", "contact_id": cid, "occurred_at": "0001-01-01T00:00:00+05:00"},
    ]}).get_json()
    assert [i["status"] for i in doc["items"]] == ["stored"] + ["refused"] * 6
    fields = [[p["field"] for p in i["problems"]] for i in doc["items"]]
    assert fields == [[], ["/events/1/contact_id"], ["/events/2/contact_id"], ["/events/3/occurred_at"],
                      ["/events/4/occurred_at"], ["/events/5/phone"], ["/events/6/occurred_at"]]
    assert doc["refused"] == 6 and len(rows(hub_db)) == 1
    with hub_db.engine.connect() as conn:  # no contact was made of an unreadable phone
        assert len(conn.execute(select(contacts_t.c.id)).all()) == 1


@pytest.mark.parametrize("body, pointer", [
    ({"name": "Cart Abandoned", "contact_id": 1}, "/name"),
    ({"name": "x", "contact_id": 1, "properties": {f"k{i}": i for i in range(51)}}, "/properties"),
    ({"name": "x", "contact_id": 1, "properties": {"deep": {"a": 1}}}, "/properties/deep"),
    ({"name": "x", "contact_id": 1, "properties": {"bad key": 1}}, "/properties"),
    ({"name": "x", "contact_id": 1, "properties": {"t": "я" * 1001}}, "/properties/t"),
    ({"name": "x", "contact_id": 1, "properties": {"n": 1e16}}, "/properties/n"),
    ({"name": "x", "contact_id": 1, "occurred_at": "yesterday"}, "/occurred_at"),
    ({"name": "x", "contact_id": 1, "id": ""}, "/id"),
    ({"name": "x", "contact_id": 1, "colour": "red"}, ""),
    ({"events": [{"name": "x", "contact_id": 1}] * 1001}, "/events"),
    ({"events": []}, "/events"),
])
def test_malformed_events_are_422_naming_the_field(hub_db: HubDB, client: Any, key: str, body: Any,
                                                   pointer: str) -> None:
    doc = is_problem(post(client, key, body), 422)
    assert any(e["field"].startswith(pointer) for e in doc["errors"]), doc


def test_a_non_finite_number_is_refused_not_a_500(hub_db: HubDB, client: Any, key: str) -> None:
    cid = add_contact(hub_db, email="ivan@mail.ru")
    r = client.post("/api/v1/events", data='{"name": "x", "contact_id": %d, "properties": {"n": NaN}}' % cid,
                    headers=auth(key, **EN), content_type="application/json")
    assert r.status_code in (200, 400, 422), r.get_data(as_text=True)
    if r.status_code == 200:
        assert r.get_json()["items"][0]["status"] == "refused"
    assert rows(hub_db) == []


def test_a_whole_number_written_with_a_point_names_the_contact(hub_db: HubDB, client: Any, key: str) -> None:
    cid = add_contact(hub_db, email="ivan@mail.ru")
    r = client.post("/api/v1/events", data='{"name": "x", "contact_id": %d.0}' % cid, headers=auth(key, **EN),
                    content_type="application/json")
    assert r.get_json()["items"][0]["status"] == "stored" and rows(hub_db)[0].contact_id == cid


def test_the_scope_is_events_write(hub_db: HubDB, client: Any) -> None:
    other = make_key(hub_db, "contacts:write")
    is_problem(post(client, other, {"name": "x", "contact_id": 1}), 403)


def test_problems_are_in_russian_by_default(hub_db: HubDB, client: Any, key: str) -> None:
    r = client.post("/api/v1/events", json={"name": "x"}, headers=auth(key))
    [problem] = r.get_json()["items"][0]["problems"]
    assert any("а" <= ch <= "я" for ch in problem["detail"].lower()), problem


# --- events follow people ---------------------------------------------------------------------

def test_a_merge_moves_events_to_the_survivor_and_an_unmerge_gives_them_back(hub_db: HubDB, client: Any,
                                                                              key: str) -> None:
    a = add_contact(hub_db, email="anna@mail.ru", first_name="Анна")
    b = add_contact(hub_db, phone="+79123456789", first_name="Анна")
    post(client, key, {"events": [{"name": "page_viewed", "contact_id": a}, {"name": "cart_abandoned",
                                                                             "contact_id": b}]})
    with hub_db.engine.begin() as conn:
        write_contacts(conn, [ContactRecord(source="shop", first_name="Анна", emails=["anna@mail.ru"],
                                            phones=["+79123456789"])], hub_db.settings, Counts())
        merge = conn.execute(select(identity.merges_t).order_by(identity.merges_t.c.id.desc())).first()
    assert merge is not None
    survivor, merged = merge.survivor_id, merge.merged_id
    assert {r.contact_id for r in rows(hub_db)} == {survivor}
    # after the merge, the survivor gains an event of its own: it stays with the survivor
    post(client, key, {"name": "order_paid", "contact_id": merged})  # a merged-away id names the survivor
    assert rows(hub_db)[-1].contact_id == survivor
    unmerge(hub_db.engine, hub_db.settings, merge.id, actor="tests")
    owner = {r.name: r.contact_id for r in rows(hub_db)}
    assert owner["page_viewed"] == a and owner["cart_abandoned"] == b and owner["order_paid"] == survivor
    assert all(r.origin_contact_id is None for r in rows(hub_db) if r.contact_id == merged)


def test_erasure_deletes_the_events_and_a_later_post_cannot_bring_the_person_back(
        hub_db: HubDB, client: Any, key: str, plugin_manager: Any) -> None:
    import plugins.gdpr
    from plugins.gdpr.erasure import erase

    plugin_manager.register(plugins.gdpr, name="gdpr")
    first = post(client, key, {"id": "a-1", "name": "cart_abandoned", "email": "gone@mail.ru"}).get_json()
    assert first["items"][0]["status"] == "stored"
    cid = rows(hub_db)[0].contact_id
    erase(hub_db.engine, hub_db.settings, cid, actor="tests")
    assert rows(hub_db) == []
    doc = post(client, key, {"events": [{"id": "a-2", "name": "cart_abandoned", "email": "gone@mail.ru"},
                                        {"id": "a-3", "name": "cart_abandoned", "contact_id": cid}]}).get_json()
    assert [i["status"] for i in doc["items"]] == ["refused", "refused"]
    assert rows(hub_db) == []
    with hub_db.engine.connect() as conn:
        assert events.count(conn) == 0


def test_events_come_back_through_a_chain_of_merges_undone_one_by_one(hub_db: HubDB, client: Any,
                                                                      key: str) -> None:
    a = add_contact(hub_db, email="olga@mail.ru", first_name="Ольга")
    b = add_contact(hub_db, phone="+79123450001", first_name="Ольга")
    c = add_contact(hub_db, email="olga.work@mail.ru", first_name="Ольга")
    post(client, key, {"events": [{"name": "seen_a", "contact_id": a}, {"name": "seen_b", "contact_id": b},
                                  {"name": "seen_c", "contact_id": c}]})
    merges = []
    for emails, phones in ((["olga@mail.ru"], ["+79123450001"]), (["olga@mail.ru", "olga.work@mail.ru"], [])):
        with hub_db.engine.begin() as conn:
            write_contacts(conn, [ContactRecord(source="shop", first_name="Ольга", emails=emails, phones=phones)],
                           hub_db.settings, Counts())
            merges.append(conn.execute(select(identity.merges_t).order_by(identity.merges_t.c.id.desc())).first())
    assert len({r.contact_id for r in rows(hub_db)}) == 1
    for merge in reversed(merges):
        assert merge is not None
        unmerge(hub_db.engine, hub_db.settings, merge.id, actor="tests")
    owner = {r.name: r.contact_id for r in rows(hub_db)}
    assert owner == {"seen_a": a, "seen_b": b, "seen_c": c}
    assert all(r.origin_contact_id is None for r in rows(hub_db))


def test_the_document_describes_the_endpoint_and_its_limits(hub_db: HubDB, client: Any) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    op = doc["paths"]["/api/v1/events"]["post"]
    assert op["x-scope"] == "events:write"
    text = str(op["requestBody"])
    assert "maxItems': 1000" in text and "maxProperties': 50" in text and events.NAME_PATTERN in text


def test_a_contact_deleted_in_every_source_is_refused_by_id_phone_and_reference(hub_db: HubDB, client: Any,
                                                                                 key: str) -> None:
    """As POST /orders refuses them; nothing is created in their place either."""
    from hub.records import Deletion
    from hub.sync import write_deletions

    cid = add_contact(hub_db, phone="+7 916 555-11-22", email="anna@mail.ru", external_id="77", first_name="Анна")
    with hub_db.engine.begin() as conn:
        write_deletions(conn, [Deletion("shop", "contact", "77")], Counts())
    doc = post(client, key, {"events": [
        {"name": "cart_abandoned", "contact_id": cid},
        {"name": "cart_abandoned", "phone": "89165551122"},
        {"name": "cart_abandoned", "email": "anna@mail.ru"},
        {"name": "cart_abandoned", "reference": {"source": "shop", "external_id": "77"}}]}).get_json()
    assert doc["refused"] == 4 and doc["stored"] == 0
    assert [p["field"] for item in doc["items"] for p in item["problems"]] == [
        "/events/0/contact_id", "/events/1/phone", "/events/2/email", "/events/3/reference"]
    assert rows(hub_db) == []
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(contacts_t.c.id)).scalars().all() == [cid]


def test_find_contacts_answers_every_kind_of_key_set_wise(hub_db: HubDB) -> None:
    """One definition of a live contact: merges followed; deleted, erased, placeholders, shared values: nobody."""
    from sqlalchemy import update

    from hub.db import MAX_ROW_ID
    from hub.models import ContactIdentity, Erasure

    anna = add_contact(hub_db, phone="+79165550001", email="anna@mail.ru", external_id="a1", first_name="Анна")
    boris = add_contact(hub_db, phone="+79165550002", external_id="b1", first_name="Борис")
    gone = add_contact(hub_db, phone="+79165550003", external_id="g1", first_name="Глеб")
    erased = add_contact(hub_db, phone="+79165550004", first_name="Ева")
    shared = add_contact(hub_db, phone="+79165550005", first_name="Дина")
    with hub_db.engine.begin() as conn:
        identity.merge_contacts(conn, anna, boris, reason={"rule": "test"}, settings=hub_db.settings)
        conn.execute(update(contacts_t).where(contacts_t.c.id == gone)
                     .values(deleted_at=dt.datetime.now(dt.timezone.utc)))
        conn.execute(Erasure.__table__.insert().values(contact_id=erased, reason="request", actor="t"))
        conn.execute(update(ContactIdentity.__table__).where(ContactIdentity.__table__.c.contact_id == shared)
                     .values(shared="common"))
        keys: list[identity.ContactKey] = [anna, boris, gone, erased, ("shop", "a1"), ("shop", "b1"), ("shop", "g1"),
                                           ("shop", "nope"), "+79165550002", "anna@mail.ru", "+79165550003",
                                           "+79165550005", "nobody@mail.ru", 0, 2**31, MAX_ROW_ID, 10**6]
        assert identity.find_contacts(conn, keys) == [anna, anna, None, None, anna, anna, None, None, anna, anna,
                                                      None, None, None, None, None, None, None]


OFFICE_PHONE, OFFICE_EMAIL = "+7 495 123-45-67", "office@firma.ru"


def office(db: HubDB) -> list[int]:
    """Three people who give the same switchboard and mailbox: the values are marked shared."""
    with db.engine.begin() as conn:
        result = write_contacts(conn, [ContactRecord(source="crm", external_id=f"office-{n}", first_name=first,
                                                     last_name=last, phones=[OFFICE_PHONE], emails=[OFFICE_EMAIL])
                                       for n, (first, last) in enumerate([("Анна", "Петрова"), ("Иван", "Сидоров"),
                                                                          ("Олег", "Козлов")])],
                                db.settings, Counts())
    assert ("phone", "+74951234567") in result.shared and ("email", OFFICE_EMAIL) in result.shared
    return [cid for cid in result.contact_ids if cid is not None]


def test_nul_and_control_characters_in_properties_are_422_by_pointer_and_nothing_is_stored(
        hub_db: HubDB, client: Any, key: str) -> None:
    cid = add_contact(hub_db, email="ivan@mail.ru")
    for props, field in (({"u": "a\u0000b"}, "/events/1/properties/u"),
                         ({"tags": ["ok", "a\u0000b"]}, "/events/1/properties/tags/1"),
                         ({"u": "a\u001bb"}, "/events/1/properties/u"),
                         ({"a\u0000b": 1}, "/events/1/properties/a\u0000b"),
                         ({"a b": 1}, "/events/1/properties/a b")):
        doc = is_problem(post(client, key, {"events": [
            {"id": "n:0", "name": "page_viewed", "contact_id": cid},
            {"id": "n:1", "name": "page_viewed", "contact_id": cid, "properties": props}]}), 422)
        assert [(e["field"], e.get("index")) for e in doc["errors"]] == [(field, 1)], (props, doc)
    assert rows(hub_db) == []
    # free text keeps its tabs and line breaks
    r = post(client, key, {"id": "n:2", "name": "page_viewed", "contact_id": cid,
                           "properties": {"note": "две\nстроки\tи таб", "list": ["a\nb"]}})
    assert r.status_code == 200 and r.get_json()["items"][0]["status"] == "stored"
    assert rows(hub_db)[0].properties == {"note": "две\nстроки\tи таб", "list": ["a\nb"]}


def test_an_unknown_reference_is_refused_and_only_a_new_phone_or_email_makes_a_contact(
        hub_db: HubDB, client: Any, key: str) -> None:
    doc = post(client, key, {"events": [
        {"name": "page_viewed", "reference": {"source": "site", "external_id": "u-new"}},
        {"name": "page_viewed", "reference": {"source": "site", "external_id": "u-new"}, "email": "fresh@mail.ru"},
    ]}).get_json()
    assert [(i["status"], [p["field"] for p in i["problems"]]) for i in doc["items"]] == [
        ("refused", ["/events/0/reference"]), ("stored", [])]
    assert doc["items"][0]["contact_id"] is None
    made = doc["items"][1]["contact_id"]
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(contacts_t.c.id)).scalars().all() == [made]
        assert identity.find_contacts(conn, [("site", "u-new"), "fresh@mail.ru"]) == [None, made]


def test_a_shared_phone_or_email_is_refused_as_naming_nobody_not_a_new_contact_each_time(
        hub_db: HubDB, client: Any, key: str) -> None:
    people = office(hub_db)
    for _ in range(2):
        doc = post(client, key, {"events": [{"name": "page_viewed", "phone": "8 (495) 123-45-67"},
                                            {"name": "page_viewed", "email": "OFFICE@firma.ru"}]}).get_json()
        assert [i["status"] for i in doc["items"]] == ["refused", "refused"]
        assert [p["field"] for i in doc["items"] for p in i["problems"]] == ["/events/0/phone", "/events/1/email"]
        assert all("several people share" in i["problems"][0]["detail"] for i in doc["items"])
    with hub_db.engine.connect() as conn:
        assert sorted(conn.execute(select(contacts_t.c.id)).scalars()) == sorted(people)
    assert rows(hub_db) == []
    # a shared phone beside a contact_id is no problem: the id names the person
    doc = post(client, key, {"name": "page_viewed", "contact_id": people[1], "phone": OFFICE_PHONE}).get_json()
    assert doc["items"][0]["status"] == "stored" and doc["items"][0]["contact_id"] == people[1]


def test_answers_name_the_contact_of_stored_and_duplicate_events(hub_db: HubDB, client: Any, key: str) -> None:
    cid = add_contact(hub_db, email="ivan@mail.ru")
    first = post(client, key, {"id": "c:1", "name": "page_viewed", "email": "IVAN@mail.ru"}).get_json()["items"][0]
    assert (first["status"], first["contact_id"]) == ("stored", cid)
    again = post(client, key, {"id": "c:1", "name": "page_viewed", "email": "other@mail.ru"}).get_json()["items"][0]
    assert (again["status"], again["event_id"], again["contact_id"]) == ("duplicate", first["event_id"], cid)


def test_a_bad_name_shows_an_example(hub_db: HubDB, client: Any, key: str) -> None:
    doc = is_problem(post(client, key, {"name": "Cart Abandoned", "contact_id": 1}), 422)
    assert doc["errors"][0]["field"] == "/name" and "cart_abandoned" in doc["errors"][0]["detail"]
