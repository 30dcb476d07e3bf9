"""A running shop emulator and a Hub connected to it; Hub itself comes from hub.testing's fixtures."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from hub_shop.emulator import ShopEmulator


@pytest.fixture
def shop(hub_database: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[ShopEmulator]:
    """The shop with 30 sample customers; retries pause milliseconds, not seconds."""
    monkeypatch.setenv("HUB_SHOP_BACKOFF", "0.01")
    emulator = ShopEmulator(people=30, seed=3).start()
    try:
        yield emulator
    finally:
        emulator.close()


@pytest.fixture
def connected(shop: ShopEmulator, hub_cli: Any) -> ShopEmulator:
    """The shop, connected the way a user connects it."""
    hub_cli("connect", "shop", "--url", shop.url, "--token", shop.token)
    return shop


@pytest.fixture
def contact_of(hub_database: Any) -> Any:
    """`contact_of(customer_id)`: the Hub contact holding that shop customer (None if none does)."""

    def find(customer_id: int) -> int | None:
        return hub_database.scalar("SELECT contact_id FROM external_refs WHERE source = 'shop' "
                                   "AND external_id = :e AND deleted_at IS NULL", e=str(customer_id))

    return find
