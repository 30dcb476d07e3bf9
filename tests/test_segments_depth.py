"""Rules nested absurdly deep get one clear problem, through the parser and the admin editor, never a 500."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from hub import i18n, plugins
from hub.config import Settings
from hub.segments import fields, store
from hub.segments.rules import MAX_DEPTH, MAX_EXPANDED_DEPTH, Parser, RuleError, SegmentError, check_references, \
    depth, read_document, read_yaml
from tests.support.admin import AdminEnv, client_as, csrf_token, post, text


@pytest.fixture(autouse=True)
def english(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """These tests read messages in English, as the code writes them (tests/test_admin_russian.py reads Russian)."""
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    with i18n.use_language("en"):
        yield

pytestmark = pytest.mark.both_databases  # deep rules compiled to each dialect's SQL

CITY = {"field": "contact.city", "op": "eq", "value": "Тула"}


@pytest.fixture(scope="module")
def registry() -> fields.Registry:
    settings = Settings(plugins=())
    return fields.build(settings, plugins.build(settings))


def nested(levels: int, inner: object = CITY, kind: str = "not") -> object:
    """A rule `levels` deep: groups around one condition (a condition alone is level 1)."""
    rule = inner
    for _ in range(levels - 1):
        rule = {kind: rule} if kind == "not" else {kind: [rule]}
    return rule


def problems(registry: fields.Registry, rule: object) -> list[str]:
    parser = Parser(registry)
    parser.rule(rule, "rule")
    return parser.problems


def test_the_deepest_allowed_rule_parses(registry: fields.Registry) -> None:
    rule = nested(MAX_DEPTH)
    assert problems(registry, rule) == []
    assert depth(store.parse({"name": "deep", "rule": rule}, registry).rule) == MAX_DEPTH


@pytest.mark.parametrize("kind", ["not", "all", "any"])
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 5000])
def test_a_deeper_rule_is_one_clear_problem(registry: fields.Registry, kind: str, levels: int) -> None:
    found = problems(registry, nested(levels, kind=kind))
    assert len(found) == 1 and f"more than {MAX_DEPTH} levels" in found[0], found
    with pytest.raises(RuleError, match="nested more than"):
        store.parse({"name": "deep", "rule": nested(levels, kind=kind)}, registry)


def test_yaml_and_json_nested_past_pythons_recursion_limit_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SegmentError, match="nested too deeply"):
        read_yaml("name: deep\nrule: " + "{not: " * 5000 + "{}" + "}" * 5000 + "\n")
    path = tmp_path / "deep.json"
    path.write_text('{"name": "deep", "rule": ' + '{"not": ' * 100_000 + "{}" + "}" * 100_001, encoding="utf-8")
    with pytest.raises(SegmentError, match="deep.json: nested too deeply"):
        read_document(path)


def test_segments_used_inside_segments_count_towards_the_depth(registry: fields.Registry) -> None:
    """Each segment is shallow, the chain of them is not: level_i is 15 + 14 * i deep once expanded."""
    known = {}
    previous = None
    for i in range(MAX_EXPANDED_DEPTH):
        rule = nested(15, {"segment": previous} if previous else CITY)
        definition = store.parse({"name": f"level_{i}", "rule": rule}, registry)
        if 15 + 14 * i <= MAX_EXPANDED_DEPTH:
            check_references(definition, known)
        else:
            with pytest.raises(RuleError, match="levels deep counting the segments it uses"):
                check_references(definition, known)
            break
        known[definition.name] = definition
        previous = definition.name
    assert len(known) == 7


def test_the_admin_editor_answers_a_deep_rule_with_a_problem_not_a_500(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    token = csrf_token(marketer, "/segments/new")
    too_deep = "name: deep\nrule: " + json.dumps(nested(MAX_DEPTH + 5), ensure_ascii=False) + "\n"
    past_python = "name: deep\nrule: " + "{not: " * 1500 + "{}" + "}" * 1500 + "\n"
    for document, problem in ((too_deep, f"more than {MAX_DEPTH} levels"), (past_python, "nested")):
        answer = marketer.post("/segments/check", headers={"X-CSRFToken": token}, json={"document": document})
        assert answer.status_code == 200
        body = answer.get_json()
        assert body["ok"] is False and any(problem in p for p in body["problems"]), body
        saved = post(marketer, "/segments/save", {"document": document})
        assert saved.status_code == 400 and problem in text(saved)
    fine = marketer.post("/segments/check", headers={"X-CSRFToken": token}, json={
        "document": "name: deep\nrule: " + json.dumps(nested(MAX_DEPTH), ensure_ascii=False) + "\n"}).get_json()
    assert fine["ok"] is True, fine
