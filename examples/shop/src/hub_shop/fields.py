"""`shop.promo_orders`: how many won orders from the shop a contact paid with a promo code.

A promo-code buyer responds to offers; a segment of them is where a coupon
campaign starts. The value is a correlated count over Hub's own orders table,
so it is always as current as the last sync.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from hub.api import FieldContext, Order, SegmentField

from hub_shop.client import NAME

orders = Order.__table__


def promo_orders(ctx: FieldContext) -> Any:
    return (select(func.count()).select_from(orders)
            .where(orders.c.contact_id == ctx.contact_id, orders.c.source == NAME, orders.c.status == "won",
                   orders.c.promo_code.is_not(None))
            .scalar_subquery())


FIELDS = {
    "shop.promo_orders": SegmentField("integer", promo_orders,
                                      "won orders from the shop paid with a promo code"),
}
