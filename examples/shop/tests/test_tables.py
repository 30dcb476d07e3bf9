"""The plugin's own table: created by `hub init` through register_migrations, and kept in step with the person."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from hub_shop.emulator import ShopEmulator

pytestmark = pytest.mark.hub_plugins("shop", "workflows", "gdpr")


def test_hub_init_creates_the_table_and_records_the_plugins_revision(hub_cli: Any, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    monkeypatch.setenv("HUB_LANGUAGE", "en")  # `hub init` says it in Hub's words; the revisions are what is checked
    created = hub_cli("init").output
    assert ": created (schema " in created and "shop 0001" in created
    assert ": already up to date (schema " in hub_cli("init").output  # running it again changes nothing

    engine = create_engine(url)
    try:
        found = inspect(engine)
        assert {c["name"] for c in found.get_columns("shop_coupons")} == {
            "id", "step_key", "code", "contact_id", "coupon_id", "customer_id", "workflow", "created_at"}
        assert [(fk["referred_table"], fk["referred_columns"], fk["options"].get("ondelete"))
                for fk in found.get_foreign_keys("shop_coupons")] == [("contacts", ["id"], "CASCADE")]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version_shop")).scalar() == "0001"
    finally:
        engine.dispose()


def test_the_test_database_has_it_too(hub_database: Any) -> None:
    """hub.testing migrates every installed plugin, so a plugin's tests find its tables there."""
    assert hub_database.scalar("SELECT count(*) FROM shop_coupons") == 0


def test_a_merge_moves_the_coupons_to_the_survivor_and_an_erasure_forgets_them(
        connected: ShopEmulator, coupon_call: Any, hub_cli: Any, hub_database: Any, contact_of: Any) -> None:
    one, two = contact_of(1), contact_of(2)
    for customer, key, code in ((1, "workflow:7:1", "SHOP-ONE"), (2, "workflow:8:1", "SHOP-TWO")):
        step, call = coupon_call(None, key=key, code=code, customer=customer)
        with hub_database.connect() as conn:
            call.conn = conn
            assert step.run(call).status == "done"
    owners = "SELECT code, contact_id FROM shop_coupons ORDER BY code"

    hub_cli("dedupe", "--merge", str(one), str(two))
    with hub_database.connect() as conn:
        assert conn.execute(text(owners)).all() == [("SHOP-ONE", one), ("SHOP-TWO", one)]

    hub_cli("gdpr", "erase", str(one), "--yes")
    assert hub_database.scalar("SELECT count(*) FROM shop_coupons") == 0
