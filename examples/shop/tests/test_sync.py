"""Connecting the shop and syncing it: everything arrives, then only what changed, and failures say what is wrong."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from hub.api import Contact, Order, people
from hub_shop.emulator import ShopEmulator


def rows(hub_database: Any, sql: str, **params: Any) -> list[Any]:
    with hub_database.connect() as conn:
        return conn.execute(text(sql), params).all()


def phones_of(hub_database: Any, contact_id: int) -> set[str]:
    return {r[0] for r in rows(hub_database, "SELECT value FROM contact_identities WHERE contact_id = :c "
                                             "AND kind = 'phone' AND valid", c=contact_id)}


# --- connecting --------------------------------------------------------------------------------

def test_connect_checks_the_token_and_stores_it_encrypted(shop: ShopEmulator, hub_cli: Any,
                                                          hub_database: Any) -> None:
    count = len(shop.customers)
    refused = hub_cli("connect", "shop", "--url", shop.url, "--token", "not-the-token", expect_exit=1)
    assert "магазин не принял API-токен (401)" in refused.output
    assert "not-the-token" not in refused.output
    assert hub_database.scalar("SELECT count(*) FROM credentials WHERE name = 'shop'") == 0

    done = hub_cli("connect", "shop", "--url", shop.url + "/", "--token", shop.token)
    assert f"Подключено: Демо-магазин, {shop.url} ({count} покупател" in done.output
    assert f", {len(shop.orders)} заказ" in done.output and "). Синхронизировать: hub sync shop" in done.output
    secret = hub_database.scalar("SELECT secret FROM credentials WHERE name = 'shop'")
    assert secret and shop.token.encode() not in bytes(secret)


def test_connect_refuses_a_wrong_address_and_says_so(shop: ShopEmulator, hub_cli: Any) -> None:
    wrong = hub_cli("connect", "shop", "--url", shop.url + "/shop-api", "--token", shop.token, expect_exit=1)
    assert f"не найдено (404); {shop.url}/shop-api — точно адрес API магазина?" in wrong.output
    bad = hub_cli("connect", "shop", "--url", "ftp://shop.example.ru", "--token", "t", expect_exit=2)
    assert "'ftp://shop.example.ru' — не адрес магазина" in bad.output
    secret_in_url = hub_cli("connect", "shop", "--url", "https://user:pw@shop.example.ru", "--token", "t",
                            expect_exit=2)
    assert "в адресе не должно быть имени пользователя или пароля" in secret_in_url.output


def test_connect_speaks_english_when_chosen(shop: ShopEmulator, hub_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    refused = hub_cli("connect", "shop", "--url", shop.url, "--token", "not-the-token", expect_exit=1)
    assert "the shop refused the API token (401)" in refused.output
    done = hub_cli("connect", "shop", "--url", shop.url, "--token", shop.token)
    assert f"Connected to Демо-магазин at {shop.url} ({len(shop.customers)} customers" in done.output


def test_sync_without_a_connection_says_how_to_connect(hub_cli: Any) -> None:
    result = hub_cli("sync", "shop", expect_exit=1)
    assert "магазин не подключён; выполните `hub connect shop --url URL --token TOKEN`" in result.output


# --- a full sync --------------------------------------------------------------------------------

def test_full_sync_brings_every_customer_phone_and_order(connected: ShopEmulator, hub_cli: Any,
                                                         hub_database: Any, contact_of: Any) -> None:
    shop = connected
    count = len(shop.customers)
    report = hub_cli.json("sync", "shop")

    assert report["kind"] == "full"
    assert report["contacts"]["created"] == count and report["contacts"]["merged"] == 0
    assert report["orders"]["created"] == len(shop.orders) and report["errors"] == 0
    assert report["requests"] >= 4 and report["rate_limited"] == 0

    truth = {p.person_id: p for p in people(count, shop.seed)}
    contacts = {cid: contact_of(cid) for cid in shop.customers}
    assert None not in contacts.values() and len(set(contacts.values())) == count  # one contact each
    messy = 0
    for cid, customer in shop.customers.items():
        person = truth[shop.person_of[cid]]
        assert phones_of(hub_database, contacts[cid]) == set(person.phones)  # "8 (916) …" became +7916…
        messy += sum(1 for raw in customer["phones"] if raw not in person.phones)
        with hub_database.connect() as conn:
            attributes = conn.execute(select(Contact.attributes).where(Contact.id == contacts[cid])).scalar()
        chat = customer["telegram_chat_id"]
        assert attributes["telegram_chat_id"] == (str(chat) if chat else None)
    assert messy > count // 2  # the shop really wrote them messily

    with hub_database.connect() as conn:
        in_hub = {r.external_id: r for r in conn.execute(select(
            Order.external_id, Order.contact_id, Order.amount, Order.status, Order.promo_code).where(
            Order.source == "shop"))}
    status = {"paid": "won", "cancelled": "lost", "new": "open"}
    for oid, order in shop.orders.items():
        got = in_hub[str(oid)]
        assert (got.contact_id, got.status, got.promo_code) == (
            contacts[order["customer_id"]], status[order["status"]], order["promo_code"])
        assert got.amount == order["total"]
    won = sum(1 for o in shop.orders.values() if o["status"] == "paid")
    assert hub_database.scalar("SELECT sum(orders_count) FROM contacts") == won


def test_the_registered_emulator_holds_the_people_it_is_asked_for(hub_sandbox: Any, hub_cli: Any,
                                                                   hub_database: Any) -> None:
    box = hub_sandbox("shop", people=8, first_person=5, seed=3)
    truth = box.truth()
    assert box.source == "shop" and sorted(truth.values()) == list(range(6, 14))

    report = hub_cli.json("sync", "shop")  # start() stored the connection: nothing else to do
    assert report["contacts"]["created"] == 8
    everyone = {p.person_id: p for p in people(13, 3)}
    for customer_id, person_id in truth.items():
        contact = hub_database.scalar("SELECT contact_id FROM external_refs WHERE source = 'shop' "
                                      "AND external_id = :e", e=customer_id)
        assert phones_of(hub_database, contact) == set(everyone[person_id].phones)


# --- incremental syncs --------------------------------------------------------------------------

def test_incremental_sync_reads_only_what_changed(connected: ShopEmulator, hub_cli: Any, hub_database: Any,
                                                  contact_of: Any) -> None:
    shop = connected
    hub_cli.json("sync", "shop")
    taken = {p for person in people(len(shop.customers), shop.seed) for p in person.phones}
    assert "+79990001122" not in taken

    shop.update_customer(1, name="Мария Кузнецова", phones=["8 (999) 000-11-22"])
    new = shop.add_customer("Олег Петров", phones=["+7 903 555 01 02"], emails=["OLEG@example.ru "])
    order = shop.checkout(2, "2500.00", promo_code="WELCOME10")
    shop.delete_customer(3)
    report = hub_cli.json("sync", "shop")

    assert report["kind"] == "incremental"
    assert report["contacts"] == {"created": 1, "updated": 1, "deleted": 1, "merged": 0, "refused": 0}
    assert report["orders"]["created"] == 1 and report["orders"]["updated"] == 0
    assert "+79990001122" in phones_of(hub_database, contact_of(1))
    assert hub_database.scalar("SELECT first_name FROM contacts WHERE id = :c", c=contact_of(1)) == "Мария"
    assert phones_of(hub_database, contact_of(new["id"])) == {"+79035550102"}
    assert contact_of(3) is None  # the shop's tombstone reached Hub
    assert hub_database.scalar("SELECT promo_code FROM orders WHERE source = 'shop' AND external_id = :e",
                               e=str(order["id"])) == "WELCOME10"

    again = hub_cli.json("sync", "shop")
    assert again["contacts"] == {"created": 0, "updated": 0, "deleted": 0, "merged": 0, "refused": 0}
    assert again["orders"] == {"created": 0, "updated": 0, "deleted": 0, "refused": 0}


def test_reconcile_finds_customers_the_shop_lost_without_a_trace(connected: ShopEmulator, hub_cli: Any,
                                                                 contact_of: Any) -> None:
    shop = connected
    hub_cli.json("sync", "shop")
    del shop.customers[5]  # gone from the database, no tombstone in the change feed
    assert hub_cli.json("sync", "shop")["contacts"]["deleted"] == 0
    assert hub_cli.json("sync", "shop", "--reconcile")["contacts"]["deleted"] == 1
    assert contact_of(5) is None and contact_of(6) is not None


def test_fetch_returns_the_records_that_still_exist(connected: ShopEmulator, hub_plugins: Any,
                                                    hub_settings: Any) -> None:
    found: dict[str, Any] = {}
    hub_plugins.hook.register_sources(register=found.__setitem__)
    source = found["shop"](hub_settings)
    connected.delete_customer(2)
    records = source.fetch("contacts", ["1", "2", "999"])
    assert [r.external_id for r in records] == ["1"]
    assert records[0].phones == connected.customers[1]["phones"]
    orders = source.fetch("orders", ["1"])
    assert orders[0].contact_external_id == str(connected.orders[1]["customer_id"])


# --- when things go wrong -------------------------------------------------------------------------

def test_an_outage_is_ridden_out_with_retries(connected: ShopEmulator, hub_cli: Any) -> None:
    connected.fail_next(2, status=503)
    report = hub_cli.json("sync", "shop")
    assert report["contacts"]["created"] == len(connected.customers)


def test_a_long_outage_fails_the_sync_and_the_next_run_resumes(connected: ShopEmulator, hub_cli: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_SHOP_RETRIES", "2")
    monkeypatch.setenv("HUB_SHOP_PAGE_SIZE", "10")
    shop = connected
    hub_cli.json("sync", "shop")
    for cid in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12):
        shop.update_customer(cid, name=f"Покупатель {cid}")
    original = shop.handle

    def flaky(*args: Any) -> Any:  # the first page goes through, then the shop goes down
        shop.handle = original  # type: ignore[method-assign]
        shop.fail_next(3)
        return original(*args)

    shop.handle = flaky  # type: ignore[method-assign]
    failed = hub_cli("sync", "shop", expect_exit=1)
    assert "магазин ответил 503 Service Unavailable столько раз подряд: 3" in failed.output
    assert "следующий запуск продолжит с последней сохранённой страницы" in failed.output
    shop.handle = original  # type: ignore[method-assign]
    resumed = hub_cli.json("sync", "shop")
    assert resumed["contacts"]["updated"] == 2  # 12 changed, 10 were saved before the outage


def test_a_refused_token_and_a_page_that_is_not_json_are_named(connected: ShopEmulator, hub_cli: Any) -> None:
    shop = connected
    shop.garble_next()
    garbled = hub_cli("sync", "shop", expect_exit=1)
    assert "магазин ответил HTTP 200, но не в JSON (text/html" in garbled.output

    old = shop.token
    shop.token = "rotated-by-the-shop-admin"
    refused = hub_cli("sync", "shop", expect_exit=1)
    assert "не принял API-токен (401); выполните `hub connect shop --url URL --token TOKEN`" in refused.output
    assert old not in refused.output and shop.token not in refused.output


def test_the_shop_rate_limit_is_respected(connected: ShopEmulator, hub_cli: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    shop = connected
    shop.rate, shop.burst = 4.0, 2
    monkeypatch.setenv("HUB_SHOP_RATE", "3")
    monkeypatch.setenv("HUB_SHOP_BURST", "1")
    paced = hub_cli.json("sync", "shop", "--full")
    assert paced["rate_limited"] == 0 and shop.rate_limited == 0  # Hub paced itself under the shop's limit

    monkeypatch.setenv("HUB_SHOP_RATE", "1000")
    monkeypatch.setenv("HUB_SHOP_BURST", "1000")
    shop.rate, shop.burst = 2.0, 1
    pushed = hub_cli.json("sync", "shop", "--full")
    assert pushed["rate_limited"] == shop.rate_limited > 0  # 429s were waited out, not failures
    assert pushed["contacts"]["updated"] == 0 and pushed["errors"] == 0
