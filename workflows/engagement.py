"""Clicks and opens of a campaign's or workflow's letters: what its reports show beside the sends.

The click rate is letters with at least one click over emails sent (a letter
clicked five times, or by a mail scanner and then its reader, counts once).
Opens come from a picture in the letter, which mail services load by
themselves (Apple Mail Privacy Protection, image proxies), so the open rate
is shown with that warning and only when opens are tracked; clicks are the
signal to go by.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, case, func, select

from hub.api import Message, MessageEvent, format_number, format_percent, gettext

messages_t = Message.__table__
events_t = MessageEvent.__table__


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def rates(conn: Connection, origin: str | None) -> dict[str, Any]:
    """Emails sent by the workflow named `origin`, how many were clicked and opened, and the rates."""
    m, e = messages_t.c, events_t.c
    emails = clicks = opens = 0
    if origin:
        emails = int(conn.execute(select(func.count()).select_from(messages_t)
                                  .where(m.origin == origin, m.channel == "email", m.status == "sent"))
                     .scalar_one())
        if emails:
            per_message = (select(e.message_id,
                                  func.max(case((e.kind == "click", 1), else_=0)).label("clicked"),
                                  func.max(case((e.kind == "open", 1), else_=0)).label("opened"))
                           .select_from(events_t.join(messages_t, m.id == e.message_id))
                           .where(m.origin == origin, m.channel == "email", m.status == "sent",
                                  e.kind.in_(("click", "open")))
                           .group_by(e.message_id).subquery())
            found = conn.execute(select(func.coalesce(func.sum(per_message.c.clicked), 0),
                                        func.coalesce(func.sum(per_message.c.opened), 0))).one()
            clicks, opens = int(found[0]), int(found[1])
    return {"emails": emails, "clicks": clicks, "click_rate": _rate(clicks, emails),
            "opens": opens, "open_rate": _rate(opens, emails), "opens_reliable": False}


def describe(data: dict[str, Any] | None) -> list[str]:
    """The figures as lines for the terminal (`hub campaigns show`, `hub workflows status`); none before any email."""
    if not data or not data.get("emails"):
        return []
    lines = [gettext("clicked: %(clicks)s of %(emails)s emails (%(rate)s)", clicks=format_number(data["clicks"]),
                     emails=format_number(data["emails"]), rate=format_percent(data["click_rate"] or 0))]
    if data.get("opens"):
        lines.append(gettext("opened: %(opens)s (%(rate)s); opens are imprecise: mail services load pictures by "
                             "themselves", opens=format_number(data["opens"]),
                             rate=format_percent(data["open_rate"] or 0)))
    return lines
