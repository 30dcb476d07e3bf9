"""The `deal` a workflow's texts may name: the contact's open deal that has stood longest in its stage.

A task for a manager says which deal to move («Сделка «Поставка стульев»
14 дней в этапе «Согласование КП»: позвоните клиенту»), so the crm_task,
crm_comment and crm_field texts get `deal.title`, `deal.pipeline`,
`deal.stage`, `deal.days_in_stage` and `deal.stage_entered_at` (the shop's
local time). A contact with no open deal gets the same keys, empty, so a
text that names the deal never fails for them: the workflow's trigger is
what picks the people with a stuck deal.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

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


def stuck_deal(conn: Connection, settings: Settings, contact_id: int, now: dt.datetime) -> dict[str, Any]:
    """The contact's open deal longest in its stage (a deal without a stage date comes last), or empty keys."""
    o = orders_t.c
    row = conn.execute(select(o.source, o.external_id, o.title, o.pipeline, o.stage, o.stage_entered_at)
                       .where(o.contact_id == contact_id, o.status == "open")
                       .order_by(o.stage_entered_at.is_(None), o.stage_entered_at, o.id).limit(1)).first()
    if row is None:
        return empty()
    entered = row.stage_entered_at
    if entered is not None and entered.tzinfo is None:
        entered = entered.replace(tzinfo=dt.timezone.utc)
    days = max(0, (now - entered).days) if entered is not None else None
    return {"title": row.title or row.external_id, "pipeline": row.pipeline, "stage": row.stage,
            "days_in_stage": days, "stage_entered_at": local_time(settings, entered) if entered else None,
            "source": row.source, "id": row.external_id}
