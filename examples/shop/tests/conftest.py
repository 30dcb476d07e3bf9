"""A running shop emulator and a Hub connected to it; Hub itself comes from hub.testing's fixtures."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Iterator

import pytest

from hub.api import utcnow
from hub_shop.emulator import ShopEmulator
from workflows.steps import Checking, RunInfo, StepCall


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


@pytest.fixture
def coupon_call(connected: ShopEmulator, hub_cli: Any, hub_database: Any, hub_settings: Any,
                contact_of: Any) -> Any:
    """`coupon_call(options)`: the `shop_coupon` step and its call as the engine makes them, for the contact
    of shop customer 1 (or `customer`), with a promo code of its run; settings in `extra` are added."""
    hub_cli.json("sync", "shop")
    now = utcnow()
    found: dict[str, Any] = {}
    hub_database.pm.hook.register_workflow_steps(register=found.__setitem__)

    def make(options: Any = None, *, key: str = "workflow:7:1", code: str = "SHOP-TEST1", customer: int = 1,
             **extra: Any) -> tuple[Any, Any]:
        settings = dataclasses.replace(hub_settings, extra={**hub_settings.extra, **extra})
        with hub_database.connect() as conn:
            checking = Checking(settings, conn, "promo_thanks")
            checking.promo = True  # as after a promo_code step
            step = found["shop_coupon"](options, checking)
        run = RunInfo(id=7, workflow="promo_thanks", workflow_id=1, contact_id=contact_of(customer), cycle=1,
                      started_at=now, trigger="manual")
        call = StepCall(run=run, index=1, key=key, now=now, settings=settings, engine=hub_database.engine,
                        promo={"id": 1, "code": code, "discount": 15, "expires_at": now + dt.timedelta(days=14)})
        return step, call

    return make
