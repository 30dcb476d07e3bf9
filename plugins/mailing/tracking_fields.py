"""Segment fields over clicks and opens, for rules and the lead-score model.

- ``email.last_click_at`` / ``email.last_open_at`` (date and time): with
  ``within_last: 30d`` "clicked (opened) a letter within 30 days",
  ``is_null`` "never".
- ``email.clicks`` (whole number): letters the contact clicked in, ever;
  ``email.clicks.<name>``: in the letters of one campaign or workflow (its
  name as in `hub campaigns list` / `hub workflows list`), so ``gte: 1`` reads
  "clicked in that campaign". A letter clicked many times counts once: mail
  scanners and double clicks do not make a reader keener.

Opens are shown with a warning: mail services load pictures themselves (Apple
Mail Privacy Protection, Gmail's and Yandex's image proxies), so an open does
not mean a person looked. Clicks are the signal to rely on.

Tests are semi-joins over message_events' (kind, at) index where the operator
allows ("who clicked within 30 days" reads the last 30 days of clicks, not every
contact's history); values are correlated subqueries through messages'
(contact_id) and message_events' (message_id, kind, at) indexes.
"""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import and_, func, not_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from hub.api import N_, FieldContext, Message, MessageEvent, SegmentField

messages_t = Message.__table__
events_t = MessageEvent.__table__
CAMPAIGN_PREFIX = "campaign_"  # a campaign's workflow is named so (workflows.campaigns)


def _joined() -> Any:
    return events_t.join(messages_t, messages_t.c.id == events_t.c.message_id)


def _last_at(kind: str) -> Callable[[FieldContext], ColumnElement[Any]]:
    def sql(ctx: FieldContext) -> ColumnElement[Any]:
        e, m = events_t.c, messages_t.c
        return (select(func.max(e.at)).select_from(_joined())
                .where(m.contact_id == ctx.contact_id, m.channel == "email", e.kind == kind).scalar_subquery())
    return sql


def _who(kind: str, *conditions: Any) -> Any:
    e, m = events_t.c, messages_t.c
    return (select(m.contact_id).select_from(_joined())
            .where(e.kind == kind, m.channel == "email", m.contact_id.is_not(None), *conditions))


def _moment_predicate(kind: str) -> Callable[[FieldContext, str, Any], ColumnElement[bool] | None]:
    def predicate(ctx: FieldContext, op: str, value: Any) -> ColumnElement[bool] | None:
        at = events_t.c.at
        if op == "within_last":
            return ctx.contact_id.in_(_who(kind, at >= value.shift(ctx.now, -1), at <= ctx.now))
        if op == "after":
            return ctx.contact_id.in_(_who(kind, at > value.at(ctx.now, ctx.settings.tz)))
        if op == "not_null":
            return ctx.contact_id.in_(_who(kind))
        if op == "is_null":
            return not_(ctx.contact_id.in_(_who(kind)))
        return None  # before: "the last one before X" needs the latest of each contact
    return predicate


def _clicks(ctx: FieldContext) -> ColumnElement[Any]:
    e, m = events_t.c, messages_t.c
    conditions = [m.contact_id == ctx.contact_id, m.channel == "email", e.kind == "click"]
    name = ctx.params.get("name")
    if name is not None:
        conditions.append(or_(m.origin == name, m.origin == CAMPAIGN_PREFIX + name))
    counted = select(func.count(func.distinct(e.message_id))).select_from(_joined()).where(and_(*conditions))
    return counted.scalar_subquery()


def fields() -> dict[str, SegmentField]:
    return {
        "email.last_click_at": SegmentField(
            "datetime", _last_at("click"), N_("when the contact last clicked a link in an email"),
            predicate=_moment_predicate("click")),
        "email.last_open_at": SegmentField(
            "datetime", _last_at("open"),
            N_("when the contact last opened an email (imprecise: mail services load pictures by themselves)"),
            predicate=_moment_predicate("open")),
        "email.clicks": SegmentField("integer", _clicks, N_("emails the contact clicked a link in, ever")),
        "email.clicks.<name>": SegmentField(
            "integer", _clicks, N_("emails of one campaign or workflow the contact clicked a link in")),
    }
