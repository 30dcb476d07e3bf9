"""A workflow document ⇄ the builder's tree ⇄ its text, without losing anything (workflows/builder_model.py).

Every shipped workflow and any generated list of steps — known kinds with
their forms, conditions with branches written as one step or a list, kinds the
builder has no form for, odd shapes — comes back equal from the tree and from
the text; a hostile tree is refused with the path of what is wrong.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from workflows import builder_model, store
from workflows.crm import CrmComment, CrmField, CrmTask
from workflows.promo import PromoCodeStep
from workflows.send import Send
from workflows.steps import Exit, Step, Tag, Untag, Wait
from workflows.webhook import Webhook

KINDS: dict[str, type[Step]] = {c.name: c for c in (Send, PromoCodeStep, Wait, Exit, Tag, Untag, CrmTask, CrmComment,
                                                    CrmField, Webhook)}
LIBRARY = store.library_documents()


def model(document: Any) -> Any:
    """The tree as the browser gets it and sends it back: JSON."""
    return json.loads(json.dumps(builder_model.to_model(document, KINDS), allow_nan=False))


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_every_shipped_workflow_survives_the_builder_and_the_text(name: str) -> None:
    document = LIBRARY[name]
    assert builder_model.to_document(model(document)) == document
    text = builder_model.to_text(document)
    assert builder_model.from_text(text) == document
    assert list(yaml.safe_load(text)) == [k for k in builder_model.KEYS if k in document]


def test_the_text_looks_like_the_library_files() -> None:
    text = builder_model.to_text(LIBRARY["reactivation_90d"])
    assert "trigger: {segment: dormant_90d}\n" in text
    assert "- send: {channel: email, template: reactivation_email, purpose: marketing}\n" in text
    assert "- wait: 7d\n" in text and "  then: exit\n" in text
    assert "Позвонить клиенту" in text  # Cyrillic as it is, not escaped
    welcome = builder_model.to_text(LIBRARY["welcome"])
    assert "- if: {field: consent.email.marketing, op: in, value: [none, pending]}\n  then:\n  - send:" in welcome


def test_the_tree_has_forms_conditions_branches_and_the_trigger_kind() -> None:
    tree = model(LIBRARY["reactivation_90d"])
    assert tree["trigger"] == {"kind": "segment", "segment": "dormant_90d"}
    steps = tree["steps"]
    assert steps[0] == {"kind": "promo_code", "options": {"discount": "15%", "valid_for": "14d", "prefix": "BACK"}}
    assert steps[2] == {"kind": "wait", "options": {"for": "7d"}, "short": True}
    assert steps[3] == {"kind": "if", "rule": {"kind": "condition", "field": "orders.last_at", "op": "after",
                                                "value": "run.started_at"},
                        "then": [{"kind": "exit"}], "then_one": True}
    for trigger, kind in (({"event": "order.won"}, "event"), ({"event": "cart_abandoned"}, "event"),
                          ({"date": "contact.birthday", "before": "7d", "at": "10:00"}, "date"),
                          ({"schedule": "0 10 * * *", "segment": "vip"}, "schedule"),
                          ({"segment": "vip", "on": "exit"}, "segment_exit"), ({"segment": "vip"}, "segment")):
        tree = model({"name": "x", "trigger": trigger})
        assert tree["trigger"] == {"kind": kind, **trigger}
        assert builder_model.to_document(tree) == {"name": "x", "trigger": trigger}


def test_what_the_builder_cannot_show_is_kept_as_text_verbatim() -> None:
    odd = [{"plugin_step": {"a": 1}}, {"send": {"channel": "email", "template": "x", "colour": "red"}},
           {"send": {"channel": ["email"]}}, {"wait": 7, "tag": "x"}, {"if": {"field": "a"}, "than": "exit"},
           {"tag": ["a", "b"]}, "wait", 5, None, {"crm_task": None}]
    document = {"name": "odd", "steps": odd, "trigger": [1, 2], "colour": {"deep": [1]}}
    tree = model(document)
    assert [n["kind"] for n in tree["steps"]] == ["text"] * len(odd)
    assert yaml.safe_load(tree["steps"][0]["text"]) == {"plugin_step": {"a": 1}}
    assert set(tree["other"]) == {"trigger", "colour"}
    assert builder_model.to_document(tree) == document
    assert builder_model.from_text(builder_model.to_text(document)) == document


@pytest.mark.parametrize("tree, path", [
    ("steps", ""),
    ({"steps": {"kind": "exit"}}, "steps: "),
    ({"steps": [{"kind": "wait", "options": {"for": {"x": 1}}}]}, "steps[0].wait.for: "),
    ({"steps": [{"kind": "wait", "options": "7d"}]}, "steps[0].wait: "),
    ({"steps": [{"kind": "if", "rule": {"kind": "?"}, "then": []}]}, "steps[0].if: "),
    ({"steps": [{"kind": "if", "rule": {"kind": "condition", "field": "a", "op": "is_null"}}]}, "steps[0].then: "),
    ({"steps": [{"kind": "if", "rule": {"kind": "condition", "field": "a", "op": "is_null"},
                 "then": [{"kind": "exit"}], "else": [{"kind": 5}]}]}, "steps[0].else[0]: "),
    ({"steps": [{"kind": "text", "text": "{a: ["}]}, "steps[0]: "),
    ({"steps": [{"kind": "text"}]}, "steps[0]: "),
    ({"trigger": {"kind": "weather"}}, "trigger: "),
    ({"trigger": {"kind": "event", "event": ["order.won"]}}, "trigger.event: "),
    ({"goal": [1]}, "goal: "),
    ({"holdout": {"x": 1}}, "holdout: "),
    ({"title": 5}, "title: "),
    ({"other": {"colour": 5}}, "other: "),
    ({"other": {"name": "x"}, "name": "y"}, "name: "),
    ({"bogus": 1}, "bogus: "),
])
def test_a_malformed_tree_is_refused_naming_the_path(tree: Any, path: str) -> None:
    with pytest.raises(builder_model.ModelError) as caught:
        builder_model.to_document(tree)
    assert str(caught.value).startswith(path), str(caught.value)


def test_a_condition_not_chosen_yet_is_written_for_the_check_to_name() -> None:
    tree = {"steps": [{"kind": "if", "then": [{"kind": "exit"}], "then_one": True}]}
    assert builder_model.to_document(tree) == {"steps": [{"if": None, "then": "exit"}]}
    assert builder_model.to_document(model({"steps": [{"if": None, "then": "exit"}]})) == \
        {"steps": [{"if": None, "then": "exit"}]}


def test_a_tree_nested_too_deeply_is_refused_and_a_deep_document_is_not_drawn() -> None:
    deep: dict[str, Any] = {"kind": "exit"}
    for _ in range(40):
        deep = {"kind": "if", "rule": {"kind": "condition", "field": "a", "op": "is_null"}, "then": [deep]}
    with pytest.raises(builder_model.ModelError, match="steps"):
        builder_model.to_document({"steps": [deep]})
    document: Any = "exit"
    for _ in range(400):
        document = {"if": {"field": "a", "op": "is_null"}, "then": [document]}
    assert builder_model.to_model({"steps": [document]}, KINDS) is None


# --- any list of steps -------------------------------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-10 ** 6, max_value=10 ** 6)
           | st.floats(allow_nan=False, allow_infinity=False, width=32) | st.text(max_size=12))
WORDS = st.text(max_size=12) | st.sampled_from(["7d", "14d", "15%", "10:00", "email", "sms", "{{ promo.code }}",
                                                "Позвонить {{ contact.first_name }}", "yes", "null", "- x", "a: b",
                                                "line\nbreak", "\u2028", "#"])
VALUES = SCALARS | WORDS | st.lists(SCALARS, max_size=3) | st.dictionaries(st.text(max_size=5), SCALARS, max_size=2)


def _options(cls: type[Step]) -> st.SearchStrategy[Any]:
    keys = [f.key for f in cls.form]
    return st.fixed_dictionaries({}, optional={k: SCALARS | WORDS for k in keys})


def _named(name: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda value: {name: value}, values)


FORM_STEPS = st.one_of(*[_named(name, _options(cls)) for name, cls in KINDS.items() if cls.form])
SHORT_STEPS = st.one_of(*[_named(name, st.one_of(SCALARS, WORDS).filter(lambda v: v is not None))
                          for name, cls in KINDS.items() if cls.shorthand])
ODD_STEPS = (st.dictionaries(st.text(max_size=8), VALUES, max_size=3) | SCALARS
             | st.sampled_from(["exit", {"exit": None}, {"exit": 1}, {"if": 1, "then": "exit", "x": 2}]))
RULES = st.fixed_dictionaries({"field": st.sampled_from(["orders.last_at", "contact.city"]),
                               "op": st.sampled_from(["after", "eq", "is_null"])},
                              optional={"value": SCALARS | WORDS}) | VALUES


def _if(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    branch = st.lists(inner, max_size=3) | inner
    return st.fixed_dictionaries({"if": RULES, "then": branch}, optional={"else": branch})


STEPS = st.recursive(FORM_STEPS | SHORT_STEPS | ODD_STEPS, _if, max_leaves=12)


@given(st.lists(STEPS, max_size=6), st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=8) | SCALARS, "title": WORDS | SCALARS, "reentry": SCALARS, "holdout": SCALARS,
    "goal": VALUES, "trigger": VALUES, "extra": VALUES}))
@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_list_of_steps_survives_the_builder_and_the_text(steps: list[Any], top: dict[str, Any]) -> None:
    document = {**top, "steps": steps}
    assert builder_model.to_document(model(document)) == document
    assert builder_model.from_text(builder_model.to_text(document)) == document
