"""An `if:` rule in words, for pages that show a workflow without a run (the library, versions compared).

The words are the segment pages' own: field descriptions from the field
registry, operators and values as hub.segments.explain words them, choices
by the titles the rule builder offers («не спрашивали», «ждёт
подтверждения»). `run.started_at` has no date here, so it reads «момент
входа в сценарий». A trace of one run words its rule with the run's date
instead (workflows.trial).
"""

from __future__ import annotations

from typing import Any

from hub.api import N_, Settings, consent_channel_title, consent_purpose_title, gettext
# not in hub.api on purpose: a rule is worded the way the segment pages word it
from hub.segments.explain import op_title, value_text
# not in hub.api on purpose: conditions are written in the segment rule language itself
from hub.segments.rules import AllOf, AnyOf, Condition, Node, Not, SegmentRef
from workflows.conditions import RunRule

LIST_OPS = ("in", "not_in")
_RUN_STARTED = {"after": N_("after the moment of entering the workflow"),
                "before": N_("before the moment of entering the workflow")}


def rule_words(rule: RunRule, settings: Settings) -> str:
    """«когда закрыт последний выигранный заказ после момента входа в сценарий»."""
    return _node(rule.node, rule.run_paths, settings)


def _node(node: Node, run_paths: frozenset[str], settings: Settings) -> str:
    if isinstance(node, Condition):
        return _condition(node, run_paths, settings)
    if isinstance(node, AllOf):
        return gettext("all of: %(items)s", items="; ".join(_node(i, run_paths, settings) for i in node.items))
    if isinstance(node, AnyOf):
        return gettext("any of: %(items)s", items="; ".join(_node(i, run_paths, settings) for i in node.items))
    if isinstance(node, Not):
        return gettext("not (%(rule)s)", rule=_node(node.item, run_paths, settings))
    assert isinstance(node, SegmentRef)
    return gettext("in the segment %(segment)s", segment=node.name)


def field_title(cond: Condition) -> str:
    """The field as the rule builder names it; a consent field by its channel and purpose."""
    params = cond.field.params
    if "channel" in params and "purpose" in params:
        return gettext("consent (%(channel)s, %(purpose)s)", channel=consent_channel_title(params["channel"]),
                       purpose=consent_purpose_title(params["purpose"]))
    description = cond.field.field.description
    return gettext(description) if description else cond.field.name


def _value(cond: Condition, value: Any, settings: Settings) -> str:
    titles = cond.field.field.choice_titles
    if isinstance(value, list):
        return ", ".join(_value(cond, v, settings) for v in value)
    if isinstance(value, str) and value in titles:
        return gettext(titles[value])
    return value_text(value, settings.tz)


def _condition(cond: Condition, run_paths: frozenset[str], settings: Settings) -> str:
    field = field_title(cond)
    if cond.path in run_paths and cond.op in _RUN_STARTED:
        return f"{field} {gettext(_RUN_STARTED[cond.op])}"
    op = op_title(cond.op)
    if cond.written is None:
        return f"{field} {op}"
    shown = _value(cond, cond.written, settings)
    return f"{field} {op}: {shown}" if cond.op in LIST_OPS else f"{field} {op} {shown}"
