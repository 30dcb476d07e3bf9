"""Lifecycle stages of the customer-base model Russian CRM practice teaches.

potential (never bought) → working (1–2 orders) → regular (3+) → vip (revenue,
order count or a tag above the company's bar) → inactive (no order for 90
days) → dead (no order for 365 days). Thresholds come from settings so each
business sets its own bar for VIP.

The stage is worked out when it is asked for, never stored, so it moves with
time on its own. `stage` answers for one contact in Python (contact cards);
`stage_sql` is the same decision as one SQL expression, so segments on
`contact.lifecycle` count a million contacts without reading them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping

from sqlalchemy import Numeric, Table, case, func, literal, or_
from sqlalchemy.sql.elements import ColumnElement

from hub.db import UTCDateTime
from hub.i18n import N_, gettext

STAGES = ("potential", "working", "regular", "vip", "inactive", "dead")
# What each stage is called and means, in the words of the customer-base guides
# (потенциальные, рабочие, постоянные, VIP, неактивные, потерянные); the
# technical name stays what rules and --json use.
TITLES = {
    "potential": N_("Potential"),
    "working": N_("Working"),
    "regular": N_("Regular"),
    "vip": N_("VIP"),
    "inactive": N_("Inactive"),
    "dead": N_("Lost"),
}
DESCRIPTIONS = {
    "potential": N_("Know the brand, never bought: warm them up with offers and answers to their doubts."),
    "working": N_("Bought once or twice: the most fragile group, worth a personal offer on related goods."),
    "regular": N_("Three or more orders, recently: loyalty programme, cumulative discounts, bonuses."),
    "vip": N_("Above the company's bar for revenue, orders or the vip tag: privileges and a personal manager."),
    "inactive": N_("Bought before, no order for 90 days: remind them of the brand, e.g. with a promo code."),
    "dead": N_("Bought before, no order for a year: decide who is worth reviving."),
}


def title(stage: str) -> str:
    """A stage as people call it, in the reader's language ("Потенциальные"); an unknown one as it is."""
    return gettext(TITLES[stage]) if stage in TITLES else stage


def description(stage: str) -> str:
    """What a stage means and what a marketer does with it, in the reader's language."""
    return gettext(DESCRIPTIONS[stage]) if stage in DESCRIPTIONS else ""


@dataclass(frozen=True, slots=True)
class Thresholds:
    regular_orders: int = 3
    vip_orders: int = 10
    vip_revenue: Decimal = Decimal(100_000)
    vip_tag: str = "vip"
    inactive_days: int = 90
    dead_days: int = 365

    @classmethod
    def from_settings(cls, extra: Mapping[str, Any]) -> "Thresholds":
        table = dict(extra.get("lifecycle", {}) or {})
        kwargs: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name in table:
                kwargs[name] = type(getattr(cls(), name))(table[name])
        return cls(**kwargs)


def stage(orders_count: int, revenue: Decimal | float | int, last_order_at: dt.datetime | None,
          tags: Iterable[str] = (), *, now: dt.datetime, thresholds: Thresholds = Thresholds()) -> str:
    """The stage of one contact; silence beats loyalty (a VIP gone quiet is inactive)."""
    if not orders_count:
        return "potential"
    if last_order_at is not None:
        idle = now - last_order_at
        if idle >= dt.timedelta(days=thresholds.dead_days):
            return "dead"
        if idle >= dt.timedelta(days=thresholds.inactive_days):
            return "inactive"
    if (orders_count >= thresholds.vip_orders or Decimal(str(revenue)) >= thresholds.vip_revenue
            or thresholds.vip_tag in set(tags)):
        return "vip"
    if orders_count >= thresholds.regular_orders:
        return "regular"
    return "working"


def stage_sql(contacts: Table, *, now: dt.datetime, thresholds: Thresholds,
              has_tag: Callable[[ColumnElement[Any], str], ColumnElement[bool]]) -> ColumnElement[str]:
    """`stage` as a SQL CASE over a contacts row, checked in the same order."""
    count = func.coalesce(contacts.c.orders_count, 0)
    last = contacts.c.last_order_at

    def days_ago(days: int) -> ColumnElement[dt.datetime]:
        return literal(now - dt.timedelta(days=days), UTCDateTime())

    revenue = func.round(contacts.c.revenue, 2, type_=Numeric(14, 2))
    return case(
        (count == 0, "potential"),
        (last <= days_ago(thresholds.dead_days), "dead"),
        (last <= days_ago(thresholds.inactive_days), "inactive"),
        (or_(count >= thresholds.vip_orders, revenue >= literal(thresholds.vip_revenue, Numeric(14, 2)),
             has_tag(contacts.c.tags, thresholds.vip_tag)), "vip"),
        (count >= thresholds.regular_orders, "regular"),
        else_="working",
    )
