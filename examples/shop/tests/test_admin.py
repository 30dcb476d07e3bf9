"""The Shop page in Hub's admin: signed-in only, read by everyone, changed by admins, CSRF-checked."""

from __future__ import annotations

from typing import Any

import pytest

from hub_shop.emulator import ShopEmulator


def test_the_page_needs_a_signed_in_user(hub_admin: Any) -> None:
    nobody = hub_admin.signed_in_as(None)
    answer = nobody.get("/shop/")
    assert answer.status_code == 302 and answer.location.startswith("/login?next=")
    assert nobody.post("/shop/disconnect", token_from="/login").status_code == 401


def test_everyone_reads_it_and_finds_it_in_the_menu(hub_admin: Any, connected: ShopEmulator, hub_cli: Any) -> None:
    hub_cli("sync", "shop")
    viewer = hub_admin.signed_in_as("viewer")
    page = viewer.get("/shop/").get_data(as_text=True)
    assert "Подключено к <strong>127.0.0.1" in page and connected.token not in page
    assert 'id="shop-orders"' in page and "Заказов из магазина пока нет" not in page
    assert "₽" in page.split('id="shop-orders"')[1]  # amounts as money
    assert 'id="shop-disconnect"' not in page  # no button for what the role cannot do
    assert 'href="/shop/"' in viewer.get("/").get_data(as_text=True).split("</nav>")[0]
    assert 'href="/shop/"' in viewer.get("/connections/").get_data(as_text=True)  # the source's own page


def test_only_an_admin_disconnects_and_only_with_the_forms_token(hub_admin: Any, connected: ShopEmulator,
                                                                 hub_database: Any) -> None:
    marketer = hub_admin.signed_in_as("marketer")
    refused = marketer.post("/shop/disconnect", token_from="/shop/")
    assert refused.status_code == 403
    no_token = hub_admin.client.post("/shop/disconnect")
    assert no_token.status_code == 400 and "токен безопасности отсутствует" in no_token.get_data(as_text=True)
    assert hub_database.scalar("SELECT count(*) FROM credentials WHERE name = 'shop'") == 1
    done = hub_admin.post("/shop/disconnect", token_from="/shop/", follow_redirects=True)
    assert "Магазин отключён: его токен забыт" in done.get_data(as_text=True)
    assert hub_database.scalar("SELECT count(*) FROM credentials WHERE name = 'shop'") == 0
    assert hub_database.scalar("SELECT count(*) FROM audit_log WHERE action = 'shop.disconnected'") == 1


@pytest.mark.hub_plugins("shop", "workflows")
def test_the_coupons_issued_are_listed_for_the_signed_in_only(hub_admin: Any, coupon_call: Any,
                                                              hub_database: Any, contact_of: Any) -> None:
    viewer = hub_admin.signed_in_as("viewer")
    assert "Купонов пока нет" in viewer.get("/shop/").get_data(as_text=True)
    step, call = coupon_call(None, code="SHOP-SEEN1")
    with hub_database.connect() as conn:
        call.conn = conn
        assert step.run(call).status == "done"

    page = viewer.get("/shop/").get_data(as_text=True)
    coupons = page.split('id="shop-coupons"')[1].split("</table>")[0]
    assert "<code>SHOP-SEEN1</code>" in coupons and f"#{contact_of(1)}" in coupons and "promo_thanks" in coupons
    nobody = hub_admin.signed_in_as(None).get("/shop/")
    assert nobody.status_code == 302 and "SHOP-SEEN1" not in nobody.get_data(as_text=True)
