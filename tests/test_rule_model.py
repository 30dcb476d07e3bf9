"""The builder's tree keeps a page's own values: a workflow's `value: run.started_at` survives the round trip.

The rule editor offers a workflow's "the moment the run began" beside a date
field's relative time and stores its code as the condition's value. The tree
↔ rule conversion must keep that code as written, the hints must pass over it
without a word (and without failing), and the rule that comes back must be one
the workflow's condition check accepts.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from hub.admin import rule_model, segment_builder
from hub.config import load_settings
from hub.segments import fields
from workflows import conditions

BOUGHT_SINCE = {"field": "orders.last_at", "op": "after", "value": "run.started_at"}
RULE = {"all": [{"field": "contact.city", "op": "eq", "value": "Тула"},
                {"not": BOUGHT_SINCE},
                {"any": [{"field": "contact.birthday", "op": "before", "value": "run.started_at"},
                         {"field": "orders.first_at", "op": "after", "value": "-60d"}]}]}


def test_a_run_value_on_a_date_field_is_a_condition_node_kept_as_written() -> None:
    assert rule_model.node(BOUGHT_SINCE) == {"kind": "condition", **BOUGHT_SINCE}
    tree = rule_model.node(RULE)
    assert tree["items"][1] == {"kind": "not", "item": {"kind": "condition", **BOUGHT_SINCE}}
    sent = json.loads(json.dumps(tree))  # as the browser sends it back
    assert rule_model.rule(sent, "steps[3].if") == RULE
    assert rule_model.document(rule_model.model({"name": "x", "rule": RULE})) == {"name": "x", "rule": RULE}


def test_hints_pass_over_a_run_value_and_word_the_rest() -> None:
    tree = rule_model.node(RULE)
    settings = load_settings({})
    hints = segment_builder.hints(tree, settings, "steps[3].if")
    assert list(hints) == ["steps[3].if.all[2].any[1].value"] and "60" in hints["steps[3].if.all[2].any[1].value"]
    assert segment_builder.hints(rule_model.node(BOUGHT_SINCE), settings, "steps[0].if") == {}


@pytest.mark.parametrize("value", ["run.started_at", "run.started", "RUN.STARTED_AT", "", None, ["run.started_at"]])
def test_odd_values_beside_it_neither_fail_nor_lose_anything(value: Any) -> None:
    data = {"field": "orders.last_at", "op": "before", "value": value}
    tree = rule_model.node(data)
    assert rule_model.rule(tree, "steps[0].if") == data
    assert segment_builder.hints(tree, load_settings({}), "steps[0].if") == {}


def test_the_round_tripped_rule_is_a_workflow_condition() -> None:
    registry = fields.build(load_settings({}))
    back = rule_model.rule(json.loads(json.dumps(rule_model.node(RULE))), "steps[3].if")
    checked = conditions.parse(back, "steps[3].if", registry)
    assert checked.run_paths == {"steps[3].if.all[1].not", "steps[3].if.all[2].any[0]"}
