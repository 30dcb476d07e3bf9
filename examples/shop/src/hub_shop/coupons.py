"""The `shop_coupon` workflow step: the run's personal promo code becomes a coupon the shop's checkout accepts.

    steps:
      - promo_code: {discount: 10%, valid_for: 14d, prefix: SHOP}
      - shop_coupon: {max_uses: 1, min_total: 1000}

The code, discount and expiry are the promo code's; the coupon is bound to the
contact's customer in the shop when there is one (anyone may use it otherwise).
Made once, whatever happens. The request carries the run's step key as its
Idempotency-Key, so a retry after a lost answer or a worker that died mid-call
gets the same coupon back instead of a second one. The shop keeps those keys
for a while only, so every coupon it made is also recorded in the plugin's
table `shop_coupons` under the step key; a step run again finds its row and
is done without asking the shop at all, however much later that is. That is
why the step may be repeated. The rows also list the coupons in the admin's
Shop page.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from hub.api import ExternalRef
from hub.api import gettext as _
from workflows.steps import Checking, Options, Outcome, Step, StepCall, StepError, StepFailed

from hub_shop.client import NAME, ShopError, client_for
from hub_shop.models import IssuedCoupon

COUPONS = IssuedCoupon.__table__


class ShopCoupon(Step):
    """`shop_coupon: {max_uses: 1, min_total: 1000}` (both optional): register the promo code in the shop."""

    name = "shop_coupon"
    needs_contact = True  # for call.promo
    repeatable = True  # the shop answers a repeated Idempotency-Key with the coupon it made the first time

    def __init__(self, options: Any, checking: Checking) -> None:
        opts = Options({} if options is None else options, ("max_uses", "min_total"),
                       example="{max_uses: 1, min_total: 1000}")
        if not checking.promo:
            raise StepError(_("needs a promo_code step before it: the coupon is the run's promo code"))
        max_uses = opts.get("max_uses", 1)
        if not isinstance(max_uses, int) or isinstance(max_uses, bool) or max_uses < 1:
            raise StepError(_("%(value)r: give a whole number from 1", value=max_uses), "max_uses")
        self.max_uses = max_uses
        self.min_total: Decimal | None = None
        if opts.get("min_total") is not None:
            raw = opts.get("min_total")
            try:
                self.min_total = Decimal(str(raw).replace(" ", "").replace(",", "."))
            except InvalidOperation:
                self.min_total = Decimal(-1)
            whole_kopecks = self.min_total == self.min_total.quantize(Decimal("0.01"))
            if isinstance(raw, bool) or self.min_total < 0 or not whole_kopecks:
                raise StepError(_("%(value)r: give an amount in roubles, e.g. 1000 or 999.90", value=raw), "min_total")

    def label(self) -> str:
        return "shop_coupon" + (f" from {self.min_total:g} ₽" if self.min_total is not None else "")

    def run(self, call: StepCall) -> Outcome:
        if call.promo is None:
            return Outcome.skipped("the run holds no promo code")
        assert call.conn is not None
        made = call.conn.execute(select(COUPONS.c.coupon_id, COUPONS.c.code, COUPONS.c.customer_id)
                                 .where(COUPONS.c.step_key == call.key)).first()
        if made is not None:
            return Outcome.done({"coupon_id": made.coupon_id, "code": made.code, "customer_id": made.customer_id})
        body = {"code": call.promo["code"], "discount_percent": str(call.promo["discount"]),
                "expires_at": _aware(call.promo["expires_at"]).isoformat(),
                "customer_id": self._customer_id(call), "max_uses": self.max_uses,
                "min_total": None if self.min_total is None else f"{self.min_total:.2f}"}
        call.conn.rollback()  # no read transaction held open while the shop answers, nor while writing below
        try:
            client = client_for(call.settings, call.engine)
            try:
                coupon = client.post("/api/coupons", body, idempotency_key=call.key)
            finally:
                client.close()
        except ShopError as exc:
            if exc.permanent:
                raise StepFailed(str(exc)) from None
            raise  # an outage or a timeout: the run tries again later with the same key
        result = {"coupon_id": coupon.get("id"), "code": coupon.get("code") or body["code"],
                  "customer_id": body["customer_id"]}
        _record(call, result)
        return Outcome.done(result)

    def _customer_id(self, call: StepCall) -> int | None:
        """The contact's customer id in the shop (the lowest, if two shop accounts became one person)."""
        assert call.conn is not None
        refs = ExternalRef.__table__.c
        ids = call.conn.execute(select(refs.external_id).where(
            refs.contact_id == call.run.contact_id, refs.source == NAME, refs.deleted_at.is_(None))).scalars()
        numbers = sorted(int(i) for i in ids if str(i).isdigit())
        return numbers[0] if numbers else None


def _record(call: StepCall, result: dict[str, Any]) -> None:
    """Remember the coupon under the step's key; a row already there (a step run twice at once) is the same one."""
    try:
        with call.engine.begin() as conn:
            conn.execute(COUPONS.insert().values(
                step_key=call.key, code=result["code"], contact_id=call.run.contact_id,
                coupon_id=result["coupon_id"], customer_id=result["customer_id"], workflow=call.run.workflow))
    except IntegrityError:
        pass


def follow_merge(conn: Connection, survivor_id: int, merged_id: int) -> None:
    """Coupons made for a merged contact are the survivor's, as the runs that made them are."""
    conn.execute(update(COUPONS).where(COUPONS.c.contact_id == merged_id).values(contact_id=survivor_id))


def forget(conn: Connection, contact_id: int) -> None:
    """An erased person leaves no record of which coupons were theirs."""
    conn.execute(COUPONS.delete().where(COUPONS.c.contact_id == contact_id))


def _aware(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise StepFailed(f"the promo code's expiry {value!r} is not a time with a zone")
    return value
