"""`shop.promo_orders` in segment rules: who bought from the shop with a promo code, kept current by syncs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import insert

from hub.api import Order, utcnow
from hub_shop.emulator import ShopEmulator


def promo_buyers(shop: ShopEmulator) -> dict[int, int]:
    """customer id → won orders with a promo code, from the shop's own data."""
    out: dict[int, int] = {}
    for order in shop.orders.values():
        if order["status"] == "paid" and order["promo_code"]:
            out[order["customer_id"]] = out.get(order["customer_id"], 0) + 1
    return out


def write(tmp_path: Path, name: str, rule: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nrule: {rule}\n", encoding="utf-8")
    return str(path)


def test_the_field_is_offered_with_its_type(hub_cli: Any) -> None:
    fields = {f["field"]: f for f in hub_cli.json("segments", "fields")}
    assert fields["shop.promo_orders"]["type"] == "integer"
    assert "gte" in fields["shop.promo_orders"]["operators"]


def test_a_rule_on_promo_orders_finds_exactly_the_promo_buyers(connected: ShopEmulator, hub_cli: Any,
                                                               contact_of: Any, tmp_path: Path) -> None:
    shop = connected
    hub_cli.json("sync", "shop")
    buyers = promo_buyers(shop)
    assert 0 < len(buyers) < len(shop.customers)  # the sample shop has both kinds of customer

    added = hub_cli.json("segments", "add", write(tmp_path, "promo_buyers",
                                                  "{field: shop.promo_orders, op: gte, value: 1}"))
    assert added["count"] == len(buyers)
    members = {c["id"] for c in hub_cli.json("contacts", "list", "--segment", "promo_buyers")}
    assert members == {contact_of(cid) for cid in buyers}

    twice = {cid for cid, n in buyers.items() if n >= 2}
    rule = "{field: shop.promo_orders, op: gte, value: 2}"
    fans = hub_cli.json("segments", "add", write(tmp_path, "promo_fans", rule))
    assert fans["count"] == len(twice)

    # A new promo purchase counts from the next sync on; a cancelled one never does.
    newcomer = next(cid for cid in shop.customers if cid not in buyers)
    shop.checkout(newcomer, "1200.00", promo_code="WELCOME10")
    hub_cli.json("sync", "shop")
    assert hub_cli.json("segments", "count", "promo_buyers")["count"] == len(buyers) + 1
    members = {c["id"] for c in hub_cli.json("contacts", "list", "--segment", "promo_buyers")}
    assert contact_of(newcomer) in members


def test_orders_from_other_sources_do_not_count(connected: ShopEmulator, hub_cli: Any, hub_database: Any,
                                                contact_of: Any, tmp_path: Path) -> None:
    hub_cli.json("sync", "shop")
    outsider = next(cid for cid in connected.customers if cid not in promo_buyers(connected))
    with hub_database.begin() as conn:
        conn.execute(insert(Order).values(source="other_shop", external_id="x1", contact_id=contact_of(outsider),
                                          amount=100, currency="RUB", status="won", promo_code="OTHER",
                                          created_at=utcnow(), updated_at=utcnow()))
    added = hub_cli.json("segments", "add", write(tmp_path, "promo_buyers",
                                                  "{field: shop.promo_orders, op: gte, value: 1}"))
    assert added["count"] == len(promo_buyers(connected))
