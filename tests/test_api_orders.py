"""POST /api/v1/orders: upserts by key, the contact found every way, stats, promo redemption, refusals."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

import plugins.gdpr
from hub.admin.app import create_app
from hub.db import utcnow
from hub.models import Order
from tests.conftest import HubDB
from tests.support.shop import Person, make_shop, start, use_workflows
from tests.test_api_gate import auth, is_problem, make_key
from workflows import ticks
from workflows.models import PromoCode

pytestmark = pytest.mark.both_databases  # upserts, Money, the stats' UPDATE … FROM


@pytest.fixture
def client(hub_db: HubDB) -> Any:
    return create_app(hub_db.settings).test_client()


@pytest.fixture
def key(hub_db: HubDB) -> dict[str, str]:
    return auth(make_key(hub_db, "orders:write", "contacts:write", "contacts:read"), **{"Accept-Language": "en"})


def post(client: Any, headers: dict[str, str], path: str, body: Any) -> list[dict[str, Any]]:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return list(response.get_json()["items"])


def a_contact(client: Any, key: dict[str, str], **fields: Any) -> int:
    (item,) = post(client, key, "/api/v1/contacts", fields)
    return int(item["contact_id"])


def orders(db: HubDB) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(Order.__table__).order_by(Order.id)))


def test_an_order_finds_its_contact_every_way_and_the_stats_follow(hub_db: HubDB, client: Any,
                                                                   key: dict[str, str]) -> None:
    cid = a_contact(client, key, source="shop", external_id="c1", name="Иванова Мария",
                    phones=["+7 916 123-45-67"], emails=["masha@example.ru"])
    paid = (utcnow() - dt.timedelta(days=3)).replace(microsecond=0)
    items = post(client, key, "/api/v1/orders", {"orders": [
        {"source": "shop", "external_id": "o1", "contact_id": cid, "amount": 1500, "status": "won",
         "closed_at": paid.isoformat()},
        {"source": "shop", "external_id": "o2", "reference": {"source": "shop", "external_id": "c1"},
         "amount": "2500.50", "status": "won", "closed_at": paid.isoformat().replace("+00:00", "Z")},
        {"source": "shop", "external_id": "o3", "phone": "8 (916) 123-45-67", "amount": 99.99, "status": "open"},
        {"source": "shop", "external_id": "o4", "email": "MASHA@example.ru", "amount": "10", "status": "lost",
         "currency": "usd", "title": "<b>Букет</b>"},
    ]})
    assert [(i["index"], i["status"], i["contact_id"], i["problems"]) for i in items] == [
        (n, "created", cid, []) for n in range(4)]
    assert len({i["order_id"] for i in items}) == 4
    rows = {r.external_id: r for r in orders(hub_db)}
    assert rows["o2"].amount == Decimal("2500.50") and rows["o3"].amount == Decimal("99.99")
    assert rows["o4"].currency == "USD" and rows["o4"].closed_at is not None and rows["o3"].closed_at is None
    assert rows["o2"].contact_external_id == "c1"
    contact = client.get(f"/api/v1/contacts/{cid}", headers=key).get_json()
    assert contact["orders_count"] == 2 and contact["revenue"] == 4000.5
    assert contact["last_order_at"].startswith(paid.date().isoformat()) and contact["lifecycle"] == "working"

    # sent again: the same orders, updated; one lost now, so the stats drop
    again = post(client, key, "/api/v1/orders", {"source": "shop", "external_id": "o2", "contact_id": cid,
                                                  "amount": "2500.50", "status": "lost"})
    assert again == [{"index": 0, "order_id": items[1]["order_id"], "status": "updated", "contact_id": cid,
                      "problems": []}]
    contact = client.get(f"/api/v1/contacts/{cid}", headers=key).get_json()
    assert contact["orders_count"] == 1 and contact["revenue"] == 1500
    assert len(orders(hub_db)) == 4


def test_an_order_moved_to_another_contact_updates_both(hub_db: HubDB, client: Any, key: dict[str, str]) -> None:
    a = a_contact(client, key, first_name="Анна", phones=["+79160000001"])
    b = a_contact(client, key, first_name="Борис", phones=["+79160000002"])
    post(client, key, "/api/v1/orders", {"external_id": "x", "contact_id": a, "amount": 100, "status": "won"})
    post(client, key, "/api/v1/orders", {"external_id": "x", "contact_id": b, "amount": 100, "status": "won"})
    assert client.get(f"/api/v1/contacts/{a}", headers=key).get_json()["orders_count"] == 0
    assert client.get(f"/api/v1/contacts/{b}", headers=key).get_json()["orders_count"] == 1


def test_two_items_with_one_key_keep_the_last(hub_db: HubDB, client: Any, key: dict[str, str]) -> None:
    cid = a_contact(client, key, first_name="Анна", phones=["+79160000001"])
    items = post(client, key, "/api/v1/orders", {"orders": [
        {"external_id": "dup", "contact_id": cid, "amount": 1, "status": "open"},
        {"external_id": "dup", "contact_id": cid, "amount": 2, "status": "won"}]})
    assert [i["status"] for i in items] == ["created", "updated"] and items[0]["order_id"] == items[1]["order_id"]
    (row,) = orders(hub_db)
    assert (row.amount, row.status, row.source) == (Decimal("2.00"), "won", "api")


def test_an_order_whose_contact_is_not_found_is_refused(hub_db: HubDB, client: Any, key: dict[str, str]) -> None:
    cid = a_contact(client, key, first_name="Анна", phones=["+79160000001"])
    items = post(client, key, "/api/v1/orders", {"orders": [
        {"external_id": "1", "contact_id": 999999, "amount": 1, "status": "won"},
        {"external_id": "2", "reference": {"source": "shop", "external_id": "nobody"}, "amount": 1, "status": "won"},
        {"external_id": "3", "phone": "+79169999999", "amount": 1, "status": "won"},
        {"external_id": "4", "phone": "не помню", "amount": 1, "status": "won"},
        {"external_id": "5", "email": "nobody@example.ru", "amount": 1, "status": "won"},
        {"external_id": "6", "amount": 1, "status": "won"},
        {"external_id": "7", "contact_id": cid, "amount": 1, "status": "won", "closed_at": "2026-02-30T10:00:00Z"},
        {"external_id": "8", "contact_id": cid, "amount": 1, "status": "won"},
    ]})
    assert [i["status"] for i in items] == ["refused"] * 7 + ["created"]
    assert [i["problems"][0]["field"] for i in items[:7]] == [
        "/orders/0/contact_id", "/orders/1/reference", "/orders/2/phone", "/orders/3/phone", "/orders/4/email",
        "/orders/5", "/orders/6/closed_at"]
    assert all(i["order_id"] is None for i in items[:7]) and len(orders(hub_db)) == 1


def test_an_order_of_a_merged_away_contact_goes_to_the_survivor(hub_db: HubDB, client: Any,
                                                                key: dict[str, str]) -> None:
    a = a_contact(client, key, first_name="Пётр", last_name="Смирнов", phones=["+79165550001"])
    b = a_contact(client, key, first_name="Пётр", last_name="Смирнов", emails=["petr@example.ru"])
    a_contact(client, key, first_name="Пётр", last_name="Смирнов", phones=["+79165550001"],
              emails=["petr@example.ru"])
    (item,) = post(client, key, "/api/v1/orders", {"external_id": "m", "contact_id": max(a, b), "amount": 5,
                                                   "status": "won"})
    assert item["status"] == "created" and item["contact_id"] == min(a, b)


def test_an_erased_persons_order_is_refused(hub_db: HubDB, client: Any, key: dict[str, str],
                                            plugin_manager: Any) -> None:
    from plugins.gdpr import erasure

    plugin_manager.register(plugins.gdpr, name="gdpr")
    cid = a_contact(client, key, source="shop", external_id="c9", first_name="Анна", phones=["+79031112233"])
    erasure.erase(hub_db.engine, hub_db.settings, cid)
    items = post(client, key, "/api/v1/orders", {"orders": [
        {"source": "shop", "external_id": "e1", "reference": {"source": "shop", "external_id": "c9"}, "amount": 1,
         "status": "won"},
        {"source": "shop", "external_id": "e2", "contact_id": cid, "amount": 1, "status": "won"},
        {"source": "shop", "external_id": "e3", "phone": "+79031112233", "amount": 1, "status": "won"}]})
    assert [i["status"] for i in items] == ["refused"] * 3 and orders(hub_db) == []


def test_an_api_order_with_an_issued_code_redeems_it(hub_db: HubDB, plugin_manager: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    wf = use_workflows(hub_db, plugin_manager, monkeypatch)
    client = create_app(wf.settings).test_client()
    key = auth(make_key(wf, "orders:write"))
    t0 = (utcnow() - dt.timedelta(days=5)).replace(hour=7, minute=0, second=0, microsecond=0)
    people = [Person(f"p{i}", f"Имя{i}", f"+7916000000{i}", f"p{i}@example.ru") for i in range(4)]
    ids = make_shop(wf, people, now=t0)
    start(wf, "reactivation_90d", t0)
    with wf.engine.connect() as conn:
        issued = list(conn.execute(select(PromoCode.__table__).order_by(PromoCode.id)))
    code = issued[0]
    buyer = next(p for p in people if ids[p.key] == code.contact_id)
    (item,) = post(client, key, "/api/v1/orders", {
        "source": "site", "external_id": "w-1", "phone": buyer.phone, "amount": "4200", "status": "won",
        "promo_code": f" {code.code.lower()} ", "closed_at": (t0 + dt.timedelta(days=2)).isoformat()})
    assert item["status"] == "created" and item["contact_id"] == code.contact_id
    assert ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(days=2, hours=1)).redeemed == 1
    with wf.engine.connect() as conn:
        row = conn.execute(select(PromoCode.__table__).where(PromoCode.id == code.id)).one()
    assert row.order_id == item["order_id"] and row.redeemed_by == "order:site" and row.redeemed_at is not None
    assert ticks.tick(wf.engine, wf.settings, now=t0 + dt.timedelta(days=2, hours=2)).redeemed == 0


def test_bad_bodies_are_422_by_index_and_pointer(hub_db: HubDB, client: Any, key: dict[str, str]) -> None:
    ok = {"external_id": "1", "contact_id": 1, "amount": 1, "status": "won"}
    doc = is_problem(client.post("/api/v1/orders", json={"orders": [ok] * 1001}, headers=key), 422)
    assert "1000" in doc["detail"]
    doc = is_problem(client.post("/api/v1/orders", json={"orders": [
        ok, {**ok, "amount": "12,50"}, {**ok, "status": "paid"}, {**ok, "amount": -1}, {**ok, "currency": "рубль"},
        {**ok, "closed_at": "вчера"}, {"amount": 1, "status": "won"}]}, headers=key), 422)
    fields = {(e.get("index"), e["field"]) for e in doc["errors"]}
    assert {(1, "/orders/1/amount"), (2, "/orders/2/status"), (3, "/orders/3/amount"),
            (4, "/orders/4/currency"), (5, "/orders/5/closed_at"), (6, "/orders/6/external_id")} <= fields
    nan = client.post("/api/v1/orders", data=b'{"external_id": "1", "contact_id": 1, "amount": NaN, '
                                             b'"status": "won"}', headers=key, content_type="application/json")
    assert nan.status_code == 200  # Python's JSON reads NaN; the amount is refused, never stored
    assert nan.get_json()["items"][0] == {**nan.get_json()["items"][0], "status": "refused", "order_id": None}
    assert nan.get_json()["items"][0]["problems"][0]["field"] == "/amount"
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Order.__table__)).scalar_one() == 0


def test_scopes(hub_db: HubDB, client: Any) -> None:
    contacts_only = auth(make_key(hub_db, "contacts:write"), **{"Accept-Language": "en"})
    doc = is_problem(client.post("/api/v1/orders", json={"external_id": "1", "contact_id": 1, "amount": 1,
                                                         "status": "won"}, headers=contacts_only), 403)
    assert "orders:write" in doc["detail"]


@pytest.mark.parametrize("source", ["bitrix24", "amocrm", "import:deals.xlsx"])
def test_an_order_cannot_be_written_as_a_system_hub_reads_itself(hub_db: HubDB, client: Any, key: dict[str, str],
                                                                 plugin_manager: Any, source: str) -> None:
    """A synced deal is the CRM's: a key overwriting it under the CRM's name is refused, naming the field."""
    crms(plugin_manager)
    cid = a_contact(client, key, first_name="Анна", phones=["+79161110000"])
    (item,) = post(client, key, "/api/v1/orders", {"orders": [{"source": source, "external_id": "d1",
                                                               "amount": 100, "status": "won", "contact_id": cid}]})
    assert item["status"] == "refused" and [p["field"] for p in item["problems"]] == ["/orders/0/source"]
    assert orders(hub_db) == []


def crms(plugin_manager: Any) -> None:
    """The CRM plugins as an installed Hub has them: their sources are registered names."""
    import plugins.amocrm
    import plugins.bitrix24

    for plugin in (plugins.amocrm, plugins.bitrix24):
        if not plugin_manager.is_registered(plugin):
            plugin_manager.register(plugin)


def test_a_shared_phone_or_email_is_refused_as_naming_nobody(hub_db: HubDB, client: Any,
                                                              key: dict[str, str]) -> None:
    from tests.test_api_events import OFFICE_EMAIL, OFFICE_PHONE, office

    people = office(hub_db)
    items = post(client, key, "/api/v1/orders", {"orders": [
        {"external_id": "s1", "phone": OFFICE_PHONE, "amount": 1, "status": "won"},
        {"external_id": "s2", "email": OFFICE_EMAIL.upper(), "amount": 1, "status": "won"},
        {"external_id": "s3", "phone": "+74951234599", "amount": 1, "status": "won"},
        {"external_id": "s4", "contact_id": people[0], "amount": 1, "status": "won"},
    ]})
    assert [i["status"] for i in items] == ["refused", "refused", "refused", "created"]
    assert [(p["field"], "several people share" in p["detail"]) for i in items[:3] for p in i["problems"]] == [
        ("/orders/0/phone", True), ("/orders/1/email", True), ("/orders/2/phone", False)]
    assert "contact_id or reference" in items[0]["problems"][0]["detail"]


@pytest.mark.parametrize("amount", [1.005, "1.005", 0.001, "0.001", "4200.500001", 1e-7])
def test_a_fraction_of_a_kopeck_is_refused_alike_as_number_or_string(hub_db: HubDB, client: Any,
                                                                    key: dict[str, str], amount: Any) -> None:
    cid = a_contact(client, key, first_name="Анна", phones=["+79160000001"])
    (item,) = post(client, key, "/api/v1/orders", {"external_id": "k1", "contact_id": cid, "amount": amount,
                                                    "status": "won"})
    assert item["status"] == "refused" and item["problems"][0]["field"] == "/amount"
    assert "kopeck" in item["problems"][0]["detail"]
    assert orders(hub_db) == []


@pytest.mark.parametrize("amount, kept", [(1.5, "1.50"), ("1.50", "1.50"), ("1.500", "1.50"), (7, "7.00"),
                                          ("4200.50", "4200.50"), (0.07, "0.07")])
def test_whole_kopecks_are_kept_exactly(hub_db: HubDB, client: Any, key: dict[str, str], amount: Any,
                                        kept: str) -> None:
    cid = a_contact(client, key, first_name="Анна", phones=["+79160000001"])
    (item,) = post(client, key, "/api/v1/orders", {"external_id": "k1", "contact_id": cid, "amount": amount,
                                                    "status": "won"})
    assert item["status"] == "created" and orders(hub_db)[0].amount == Decimal(kept)


def test_a_bad_amount_or_time_shows_an_example(hub_db: HubDB, client: Any, key: dict[str, str]) -> None:
    for body, field, example in (({"amount": "12,50"}, "/amount", "4200.50"),
                                 ({"closed_at": "06.12.2026"}, "/closed_at", "2026-12-06T10:00:00+03:00"),
                                 ({"source": "my shop"}, "/source", "shop"),
                                 ({"currency": "рубль"}, "/currency", "RUB")):
        response = client.post("/api/v1/orders", json={"external_id": "e1", "contact_id": 1, "amount": 1,
                                                       "status": "won", **body}, headers=key)
        assert response.status_code == 422, response.get_data(as_text=True)
        error = response.get_json()["errors"][0]
        assert error["field"] == field and example in error["detail"], error
