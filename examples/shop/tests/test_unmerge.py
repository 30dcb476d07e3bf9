"""An undone merge gives the restored contact back the coupons of its own shop account."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from hub_shop.emulator import ShopEmulator

pytestmark = pytest.mark.hub_plugins("shop", "workflows", "gdpr")


def test_an_unmerge_gives_the_coupons_of_the_restored_account_back(
        connected: ShopEmulator, coupon_call: Any, hub_cli: Any, hub_database: Any, contact_of: Any) -> None:
    one, two = contact_of(1), contact_of(2)
    for customer, key, code in ((1, "workflow:7:1", "SHOP-ONE"), (2, "workflow:8:1", "SHOP-TWO")):
        step, call = coupon_call(None, key=key, code=code, customer=customer)
        with hub_database.connect() as conn:
            call.conn = conn
            assert step.run(call).status == "done"
    owners = "SELECT code, contact_id FROM shop_coupons ORDER BY code"
    hub_cli("dedupe", "--merge", str(one), str(two))
    merge_id = hub_database.scalar("SELECT id FROM contact_merges WHERE merged_id = :m", m=two)

    hub_cli("contacts", "unmerge", str(merge_id))
    with hub_database.connect() as conn:
        assert conn.execute(text(owners)).all() == [("SHOP-ONE", one), ("SHOP-TWO", two)]
