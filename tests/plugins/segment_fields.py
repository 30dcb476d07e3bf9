"""A sample third-party plugin that adds segment fields and an operator.

It does what the mailing and workflows plugins do for `messages.last_sent_at`
and `workflow.<name>.status`:

- `visits.last_at`: a fixed name, read from a table the plugin keeps itself
  (plugin_visits), as a correlated subquery on the contact being tested;
- `survey.<question>.answer`: a family; the question is written in the rule,
  checked against the allowed ones, and reaches SQL only as a bound parameter;
- `starts_with`: an operator for text fields.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table, func, select

from hub.db import UTCDateTime
from hub.hookspecs import hookimpl
from hub.segments.fields import FieldContext, SegmentField, SegmentOperator

metadata = MetaData()
visits = Table("plugin_visits", metadata, Column("id", Integer, primary_key=True),
               Column("contact_id", Integer, nullable=False), Column("at", UTCDateTime(), nullable=False))
QUESTIONS = ("nps", "kids")


def last_visit(ctx: FieldContext) -> Any:
    return select(func.max(visits.c.at)).where(visits.c.contact_id == ctx.contact_id).scalar_subquery()


def survey_answer(ctx: FieldContext) -> Any:
    return ctx.contacts.c.attributes[f"survey_{ctx.params['question']}"].as_string()


@hookimpl
def register_segment_fields(register: Any) -> None:
    register("visits.last_at", SegmentField("datetime", last_visit, "last visit to the shop's website"))
    register("survey.<question>.answer", SegmentField(
        "text", survey_answer, "answer to a survey question", params={"question": lambda settings: QUESTIONS},
        tracked=True))


@hookimpl
def register_segment_operators(register: Any) -> None:
    register("starts_with", SegmentOperator(
        types=("text",), sql=lambda expr, value: expr.startswith(value, autoescape=True),
        python=lambda seen, value: seen.startswith(value), description="text begins with the value"))
