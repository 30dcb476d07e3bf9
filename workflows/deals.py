"""The `deal` a workflow's texts may name: the deal that started the run, else the contact's longest stuck one.

A task for a manager says which deal to move («Сделка «Поставка стульев»
14 дней в этапе «Согласование КП»: позвоните клиенту»), so the crm_task,
crm_comment and crm_field texts get `deal.title`, `deal.pipeline`,
`deal.stage`, `deal.days_in_stage` and `deal.stage_entered_at` (the shop's
local time). A run started by `event: deal.stuck` names its own deal, so a
contact with two stuck deals gets a task for each; any other run names the
contact's open deal longest in its stage. A contact with no open deal gets
the same keys, empty, so a text that names the deal never fails for them:
the workflow's trigger is what picks the people with a stuck deal.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping

from sqlalchemy import Connection, select

from hub.api import Order, Settings, local_time, utcnow

orders_t = Order.__table__
KEYS = ("title", "pipeline", "stage", "days_in_stage", "stage_entered_at", "source", "id")


def empty() -> dict[str, Any]:
    return dict.fromkeys(KEYS)


def sample(settings: Settings) -> dict[str, Any]:
    """What a text is checked against before it is saved (and what previews show)."""
    entered = utcnow() - dt.timedelta(days=14)
    return {"title": "Поставка стульев", "pipeline": "Опт", "stage": "Согласование КП", "days_in_stage": 14,
            "stage_entered_at": local_time(settings, entered), "source": "bitrix24", "id": "1"}


def for_run(conn: Connection, settings: Settings, contact_id: int, context: Mapping[str, Any],
            now: dt.datetime) -> dict[str, Any]:
    """The deal a run's texts name: the one whose stage started the run (deal.stuck), else the longest stuck."""
    order_id = context.get("order_id") if context.get("event") == "deal.stuck" else None
    if isinstance(order_id, int):
        row = conn.execute(_DEAL.where(orders_t.c.id == order_id)).first()
        if row is not None:
            return _shown(settings, row, now)
    return stuck_deal(conn, settings, contact_id, now)


def stuck_deal(conn: Connection, settings: Settings, contact_id: int, now: dt.datetime) -> dict[str, Any]:
    """The contact's open deal longest in its stage (a deal without a stage date comes last), or empty keys."""
    o = orders_t.c
    row = conn.execute(_DEAL.where(o.contact_id == contact_id, o.status == "open")
                       .order_by(o.stage_entered_at.is_(None), o.stage_entered_at, o.id).limit(1)).first()
    return _shown(settings, row, now) if row is not None else empty()


_DEAL = select(orders_t.c.source, orders_t.c.external_id, orders_t.c.title, orders_t.c.pipeline, orders_t.c.stage,
               orders_t.c.stage_entered_at)


def _shown(settings: Settings, row: Any, now: dt.datetime) -> dict[str, Any]:
    entered = row.stage_entered_at
    if entered is not None and entered.tzinfo is None:
        entered = entered.replace(tzinfo=dt.timezone.utc)
    days = max(0, (now - entered).days) if entered is not None else None
    return {"title": row.title or row.external_id, "pipeline": row.pipeline, "stage": row.stage,
            "days_in_stage": days, "stage_entered_at": local_time(settings, entered) if entered else None,
            "source": row.source, "id": row.external_id}


def owner(conn: Connection, context: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """The CRM and manager of the deal a deal.stuck run is about (None for any other run)."""
    order_id = context.get("order_id") if context.get("event") == "deal.stuck" else None
    if not isinstance(order_id, int):
        return None
    row = conn.execute(select(orders_t.c.source, orders_t.c.responsible_id).where(orders_t.c.id == order_id)).first()
    return (row.source, row.responsible_id) if row is not None else None
