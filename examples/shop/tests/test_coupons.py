"""The `shop_coupon` step: options checked when the workflow is added, coupons the checkout accepts, no doubles."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from hub_shop.client import ShopError
from hub_shop.emulator import CheckoutRefused, ShopEmulator
from workflows.steps import StepFailed

pytestmark = pytest.mark.hub_plugins("shop", "workflows")


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("body, error", [
    ("[{shop_coupon: {}}]", ("steps[0].shop_coupon: needs a promo_code step before it: the coupon is the run's "
                             "promo code")),
    ("[{promo_code: {discount: 10%, valid_for: 14d}}, {shop_coupon: {max_uses: 0}}]",
     "steps[1].shop_coupon.max_uses: 0: give a whole number from 1"),
    ("[{promo_code: {discount: 10%, valid_for: 14d}}, {shop_coupon: {max_use: 2}}]",
     "steps[1].shop_coupon.max_use: unknown option; did you mean 'max_uses'?"),
    ("[{promo_code: {discount: 10%, valid_for: 14d}}, {shop_coupon: {min_total: lots}}]",
     "steps[1].shop_coupon.min_total: 'lots': give an amount in roubles, e.g. 1000 or 999.90"),
])
def test_bad_options_are_refused_when_the_workflow_is_added(hub_cli: Any, tmp_path: Path, body: str, error: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_LANGUAGE", "en")  # Hub's own part of the message, in the words it is written in
    path = write(tmp_path, "coupons.yaml", f"name: coupons\ntrigger: {{segment: never_bought}}\nsteps: {body}\n")
    result = hub_cli("workflows", "add", path, expect_exit=1)
    assert result.output == f"Error: coupons.yaml: {error}\n"


def test_the_options_errors_are_in_russian_by_default(hub_cli: Any, tmp_path: Path) -> None:
    body = "[{promo_code: {discount: 10%, valid_for: 14d}}, {shop_coupon: {min_total: lots}}]"
    path = write(tmp_path, "coupons.yaml", f"name: coupons\ntrigger: {{segment: never_bought}}\nsteps: {body}\n")
    result = hub_cli("workflows", "add", path, expect_exit=1)
    assert "steps[1].shop_coupon.min_total: 'lots': укажите сумму в рублях, например 1000 или 999.90" in result.output


def test_a_campaign_registers_each_runs_code_and_the_checkout_takes_it(connected: ShopEmulator, hub_cli: Any,
                                                                       hub_database: Any, contact_of: Any,
                                                                       tmp_path: Path) -> None:
    shop = connected
    hub_cli.json("sync", "shop")
    hub_cli.json("segments", "add", write(tmp_path, "promo_buyers.yaml",
                                          "name: promo_buyers\nrule: {field: shop.promo_orders, op: gte, value: 1}\n"))
    hub_cli.json("workflows", "add", write(tmp_path, "thanks.yaml", """
name: promo_thanks
trigger: {segment: promo_buyers}
steps:
  - promo_code: {discount: 10%, valid_for: 14d, prefix: SHOP}
  - shop_coupon: {min_total: 500}
"""))
    started = hub_cli.json("workflows", "run", "promo_thanks")
    buyers = {o["customer_id"] for o in shop.orders.values() if o["status"] == "paid" and o["promo_code"]}
    assert started["started"] == len(buyers) > 0

    with hub_database.connect() as conn:
        issued = {code: contact for code, contact in conn.execute(text("SELECT code, contact_id FROM promo_codes"))}
    assert set(shop.coupons) == set(issued)
    recorded = {r["code"]: r for r in coupon_rows(hub_database)}  # the engine's runs wrote the plugin's table
    assert {code: r["contact_id"] for code, r in recorded.items()} == issued
    assert all(r["coupon_id"] == shop.coupons[code]["id"] and r["workflow"] == "promo_thanks"
               for code, r in recorded.items())
    customer_of = {contact_of(cid): cid for cid in shop.customers}
    for code, coupon in shop.coupons.items():
        assert coupon["customer_id"] == customer_of[issued[code]]  # bound to the contact's shop account
        assert (coupon["discount_percent"], coupon["max_uses"], coupon["min_total"]) == (Decimal(10), 1,
                                                                                        Decimal(500))
        assert coupon["expires_at"] > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=13)

    code, coupon = next(iter(shop.coupons.items()))
    owner = coupon["customer_id"]
    other = next(cid for cid in shop.customers if cid != owner)
    with pytest.raises(CheckoutRefused, match="выдан другому покупателю"):
        shop.checkout(other, "900.00", promo_code=code)
    with pytest.raises(CheckoutRefused, match="действует на заказы от 500"):
        shop.checkout(owner, "300.00", promo_code=code)
    order = shop.checkout(owner, "900.00", promo_code=code.lower())
    with pytest.raises(CheckoutRefused, match="уже использован"):
        shop.checkout(owner, "900.00", promo_code=code)

    hub_cli.json("sync", "shop")  # the order comes back with the code, and Hub sees it redeemed
    assert hub_database.scalar("SELECT promo_code FROM orders WHERE source = 'shop' AND external_id = :e",
                               e=str(order["id"])) == code
    hub_cli.json("workflows", "tick")
    assert hub_cli.json("promo", "show", code)["status"] == "redeemed"


def run(step: Any, call: Any, hub_database: Any) -> Any:
    with hub_database.connect() as conn:
        call.conn = conn
        return step.run(call)


def test_a_lost_answer_and_a_repeated_step_make_one_coupon(connected: ShopEmulator, coupon_call: Any,
                                                           hub_database: Any) -> None:
    shop = connected
    step, call = coupon_call(None)
    shop.drop_next_answer()  # the shop makes the coupon, the answer never arrives; the client asks again
    first = run(step, call, hub_database)
    again = run(step, call, hub_database)  # the whole step once more, as after a worker died

    assert first.status == again.status == "done"
    assert first.result == again.result == {"coupon_id": 1, "code": "SHOP-TEST1", "customer_id": 1}
    assert list(shop.coupons) == ["SHOP-TEST1"]
    assert shop.replayed == 1  # the client's own retry; the repeated step found its row and did not ask
    assert shop.coupons["SHOP-TEST1"]["discount_percent"] == Decimal(15)


def coupon_rows(hub_database: Any) -> list[dict[str, Any]]:
    with hub_database.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(
            "SELECT step_key, code, contact_id, coupon_id, customer_id, workflow FROM shop_coupons ORDER BY id"))]


def test_each_coupon_is_recorded_in_the_plugins_own_table(connected: ShopEmulator, coupon_call: Any,
                                                          hub_database: Any, contact_of: Any) -> None:
    assert coupon_rows(hub_database) == []
    step, call = coupon_call({"max_uses": 2})
    assert run(step, call, hub_database).status == "done"
    assert coupon_rows(hub_database) == [{"step_key": "workflow:7:1", "code": "SHOP-TEST1", "contact_id": contact_of(1),
                                          "coupon_id": 1, "customer_id": 1, "workflow": "promo_thanks"}]
    created = hub_database.scalar("SELECT created_at FROM shop_coupons")
    assert created is not None


def test_a_step_retried_after_the_shop_forgot_its_key_makes_no_second_coupon(connected: ShopEmulator,
                                                                             coupon_call: Any,
                                                                             hub_database: Any) -> None:
    shop = connected
    step, call = coupon_call(None)
    first = run(step, call, hub_database)
    shop.forget_idempotency_keys()  # days later: a parked run resumed, a worker's last attempt repeated
    asked = shop.requests
    again = run(step, call, hub_database)

    assert first.status == again.status == "done" and again.result == first.result
    assert len(shop.coupons) == 1 and shop.requests == asked  # the shop was not asked again
    assert len(coupon_rows(hub_database)) == 1


def test_without_its_row_the_shop_alone_would_refuse_the_retry(connected: ShopEmulator, coupon_call: Any,
                                                               hub_database: Any) -> None:
    """What the table saves the step from: a shop that forgot the key takes the retry for another coupon."""
    shop = connected
    step, call = coupon_call(None)
    run(step, call, hub_database)
    shop.forget_idempotency_keys()
    with hub_database.begin() as conn:
        conn.execute(text("DELETE FROM shop_coupons"))
    with pytest.raises(StepFailed, match="409, code_taken"):
        run(step, call, hub_database)
    assert len(shop.coupons) == 1


def test_a_refusal_parks_the_run_and_an_outage_is_tried_again(connected: ShopEmulator, coupon_call: Any,
                                                              hub_database: Any) -> None:
    shop = connected
    step, call = coupon_call(None)
    assert run(step, call, hub_database).status == "done"
    other, other_call = coupon_call(None, key="workflow:8:1")  # another run, the same code
    with pytest.raises(StepFailed, match="409, code_taken: coupon SHOP-TEST1 already exists"):
        run(other, other_call, hub_database)

    down, down_call = coupon_call(None, key="workflow:9:1", code="SHOP-TEST2", shop_retries=1)
    shop.fail_next(2)
    with pytest.raises(ShopError) as raised:  # not StepFailed: the engine retries it with backoff
        run(down, down_call, hub_database)
    assert not raised.value.permanent and "SHOP-TEST2" not in shop.coupons
    assert run(down, down_call, hub_database).status == "done"

    shop.token = "revoked"
    gone, gone_call = coupon_call(None, key="workflow:10:1", code="SHOP-TEST3")
    with pytest.raises(StepFailed, match="магазин не принял API-токен"):
        run(gone, gone_call, hub_database)


def test_a_run_without_a_promo_code_is_skipped(coupon_call: Any, hub_database: Any) -> None:
    step, call = coupon_call({"max_uses": 3})
    call.promo = None
    outcome = run(step, call, hub_database)
    assert outcome.status == "skipped" and outcome.detail == "the run holds no promo code"


def test_the_shipped_template_tells_the_code_by_telegram(connected: ShopEmulator, hub_cli: Any,
                                                         tmp_path: Path) -> None:
    added = hub_cli.json("workflows", "add", write(tmp_path, "thanks.yaml", """
name: promo_thanks
trigger: {segment: never_bought}
steps:
  - promo_code: {discount: 10%, valid_for: 14d, prefix: SHOP}
  - shop_coupon: {max_uses: 1, min_total: 1000}
  - send: {channel: shop_telegram, template: promo_telegram, purpose: marketing}
"""))
    assert added["workflow"] == "promo_thanks" and added["created"] is True
