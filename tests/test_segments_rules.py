"""The rule language on its own: what is accepted, what is refused and how the refusal reads.

No database here: parsing, checking, relative times and birthday windows.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Iterator

import pytest

from hub import i18n, plugins
from hub.config import Settings
from hub.hookspecs import hookimpl
from hub.segments import fields, store
from hub.segments.compile import birthday_ranges
from hub.segments.rules import AllOf, Condition, Moment, Not, Parser, RuleError, SegmentError, Span, \
    check_references, parse_moment, read_document
from tests.plugins import segment_fields


@pytest.fixture(autouse=True)
def english(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """These tests read messages in English, as the code writes them (tests/test_admin_russian.py reads Russian)."""
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    with i18n.use_language("en"):
        yield

UTC = dt.timezone.utc
MOSCOW = Settings(plugins=()).tz


@pytest.fixture(scope="module")
def registry() -> fields.Registry:
    settings = Settings(plugins=())
    return fields.build(settings, plugins.build(settings))


def problems(registry: fields.Registry, rule: object) -> list[str]:
    parser = Parser(registry)
    parser.rule(rule, "rule")
    return parser.problems


def test_the_issue_example_parses_into_the_tree_it_says(registry: fields.Registry) -> None:
    definition = store.parse({
        "name": "dormant_90d", "title": "Bought before, nothing for 90 days, email allowed",
        "rule": {"all": [
            {"field": "orders.count", "op": "gte", "value": 1},
            {"field": "orders.last_at", "op": "before", "value": "-90d"},
            {"field": "consent.email.marketing", "op": "eq", "value": "granted"},
            {"any": [{"field": "contact.city", "op": "in", "value": ["Москва", "Санкт-Петербург"]},
                     {"not": {"field": "contact.tags", "op": "contains", "value": "opt-out-city"}}]},
        ]}}, registry)
    rule = definition.rule
    assert isinstance(rule, AllOf) and len(rule.items) == 4
    last = rule.items[1]
    assert isinstance(last, Condition) and last.value == Moment(offset=Span(90, "d"), sign=-1)
    assert last.path == "rule.all[1]" and last.written == "-90d"
    consent = rule.items[2]
    assert isinstance(consent, Condition) and consent.field.params == {"channel": "email", "purpose": "marketing"}
    nested = rule.items[3].items[1]  # type: ignore[union-attr]
    assert isinstance(nested, Not) and nested.path == "rule.all[3].any[1].not"


def test_a_misspelt_operator_is_named_with_its_path_and_a_suggestion(registry: fields.Registry) -> None:
    rule = {"all": [{"field": "orders.count", "op": "gte", "value": 1},
                    {"field": "orders.last_at", "op": "befor", "value": "-90d"}]}
    assert problems(registry, rule) == [
        "rule.all[1].op: 'befor' is not an operator for orders.last_at; did you mean 'before'?"]


def test_problems_are_told_in_russian_by_default_with_paths_fields_and_operators_as_written(
        registry: fields.Registry) -> None:
    rule = {"all": [{"field": "orders.cnt", "op": "gte", "value": 1},
                    {"field": "orders.last_at", "op": "befor", "value": "90d"}]}
    with i18n.use_language("ru"):
        assert problems(registry, rule) == [
            "rule.all[0].field: 'orders.cnt' — нет такого поля; может быть, 'orders.count'?",
            "rule.all[1].op: 'befor' — не оператор для orders.last_at; может быть, 'before'?"]
        assert problems(registry, {"field": "orders.last_at", "op": "before", "value": "90d"}) == [
            "rule.value: у '90d' нет знака: пишите -90d — 90 дней назад, +90d — через 90 дней"]


@pytest.mark.parametrize("rule, expected", [
    ({"field": "orders.cnt", "op": "gte", "value": 1},
     "rule.field: 'orders.cnt' is not a field; did you mean 'orders.count'?"),
    ({"field": "orders.count", "op": "before", "value": "-1d"},
     "rule.op: 'before' is not an operator for orders.count; use one of: eq, ne, gt, gte, lt, lte, in, not_in, "
     "is_null, not_null"),
    ({"field": "consent.emial.marketing", "op": "eq", "value": "granted"},
     "rule.field: 'emial' is not a channel of consent.<channel>.<purpose>; did you mean 'email'?"),
    ({"field": "consent.email.marketing", "op": "eq", "value": "yes"},
     "rule.value: 'yes' is not a value of consent.email.marketing; use one of: granted, withdrawn, pending, none"),
    ({"field": "orders.last_at", "op": "before", "value": "90d"},
     "rule.value: '90d' needs a sign: -90d for 90 days ago, +90d for 90 days ahead"),
    ({"field": "orders.last_at", "op": "before", "value": "-90x"},
     "rule.value: '-90x' is not a date (2024-01-31) or a relative time like -90d, -6m, +7d"),
    ({"field": "orders.last_at", "op": "within_last", "value": "-30d"},
     "rule.value: '-30d': 'within_last' takes a length without a sign, like 30d"),
    ({"field": "contact.birthday", "op": "birthday_within", "value": 7},
     "rule.value: 7 is not a length of time; write it with a unit, like 7d"),
    ({"field": "orders.revenue", "op": "gte", "value": "10.005"},
     "rule.value: '10.005' has more than two decimal places (money is counted in kopecks)"),
    ({"field": "orders.count", "op": "eq", "value": 1.5}, "rule.value: 1.5 is not a whole number"),
    ({"field": "orders.count", "op": "eq", "value": "many"}, "rule.value: 'many' is not a number"),
    ({"field": "contact.city", "op": "in", "value": "Москва"},
     "rule.value: 'in' needs a list of values, like [a, b]; found text"),
    ({"field": "contact.city", "op": "is_null", "value": "x"}, "rule.value: 'is_null' takes no value"),
    ({"field": "contact.city", "op": "eq"}, "rule.value: missing; 'eq' needs a value"),
    ({"field": "contact.city", "op": "eq", "vaule": "x"}, "rule: unknown key 'vaule'; did you mean 'value'?"),
    ({"field": "contact.lifecycle", "op": "eq", "value": "loyal"},
     "rule.value: 'loyal' is not a value of contact.lifecycle; use one of: potential, working, regular, vip, "
     "inactive, dead"),
    ({"field": "messages.last_sent_at", "op": "before", "value": "-30d"},
     "rule.field: 'messages.last_sent_at' is not a field; messages.last_sent_at comes from the mailing plugin, "
     "which is not loaded"),
    ({"field": "workflow.welcome.status", "op": "eq", "value": "done"},
     "rule.field: 'workflow.welcome.status' is not a field; workflow.<name>.status comes from the workflows plugin, "
     "which is not loaded"),
    ({"all": []}, "rule.all: the group is empty: add at least one condition"),
    ({"any": {"field": "orders.count"}}, "rule.any: expected a list of at least one rule, found a mapping"),
    ({"all": [{"field": "orders.count", "op": "gte", "value": 1}], "any": []},
     "rule: a 'all' group stands alone; found also any (put conditions inside the group)"),
    (["orders.count"], "rule: expected a rule like {field: ..., op: ..., value: ...} or {all: [...]}, found a list"),
    ({"segment": "Dormant 90"}, "rule.segment: 'Dormant 90' is not a segment name"),
    ({"field": "contact.birthday", "op": "before", "value": "2024-01-01T10:00:00"},
     "rule.value: '2024-01-01T10:00:00' is not a date (2024-01-31) or a relative time like -90d, -6m, +7d"),
])
def test_bad_rules_get_one_clear_problem_each(registry: fields.Registry, rule: object, expected: str) -> None:
    assert problems(registry, rule) == [expected]


def test_every_problem_is_reported_at_once_and_the_error_names_the_file(registry: fields.Registry) -> None:
    document = {"name": "Bad Name", "titel": "x", "rule": {"any": [
        {"field": "orders.count", "op": "gte", "value": "x"}, {"field": "contact.citi", "op": "eq", "value": "a"}]}}
    with pytest.raises(RuleError) as caught:
        store.parse(document, registry, origin="bad.yaml")
    assert caught.value.problems == [
        "titel: unknown key; did you mean 'title'?",
        "name: 'Bad Name' is not a segment name: use lower-case latin letters, digits and _, starting with a letter "
        "(e.g. dormant_90d)",
        "rule.any[0].value: 'x' is not a number",
        "rule.any[1].field: 'contact.citi' is not a field; did you mean 'contact.city'?",
    ]
    assert str(caught.value).startswith("bad.yaml: titel: unknown key")


def test_yaml_dates_and_numbers_are_taken_as_written(registry: fields.Registry, tmp_path: Path) -> None:
    path = tmp_path / "since.yaml"
    path.write_text("name: since_2024\nrule:\n  all:\n    - {field: contact.created_at, op: after, value: 2024-01-01}\n"
                    "    - {field: orders.revenue, op: gte, value: 1500.50}\n"
                    "    - {field: contact.city, op: eq, value: 2024}\n", encoding="utf-8")
    definition = store.parse(read_document(path), registry)
    after, revenue, city = definition.rule.items  # type: ignore[union-attr]
    assert after.value == Moment(absolute=dt.date(2024, 1, 1))
    assert str(revenue.value) == "1500.5" and city.value == "2024"
    assert definition.document["rule"]["all"][0]["value"] == "2024-01-01"  # stored as JSON


def test_unreadable_files_say_where(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nrule: {field: a, op: [\n", encoding="utf-8")
    with pytest.raises(SegmentError, match=r"^broken.yaml: not valid YAML \(.* at line 3, column 1\)$"):
        read_document(broken)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"name": "x",}', encoding="utf-8")
    with pytest.raises(SegmentError, match=r"^bad.json: not valid JSON \(Expecting property name enclosed in double "
                                           r"quotes at line 1, column 14\)$"):
        read_document(bad_json)


def test_references_must_exist_and_never_loop(registry: fields.Registry) -> None:
    def segment(name: str, rule: object) -> object:
        return store.parse({"name": name, "rule": rule}, registry)

    a = segment("a", {"segment": "b"})
    b = segment("b", {"any": [{"field": "orders.count", "op": "eq", "value": 0}, {"segment": "c"}]})
    c = segment("c", {"field": "contact.city", "op": "eq", "value": "Тула"})
    check_references(a, {"b": b, "c": c})  # fine
    loop = segment("c", {"not": {"segment": "a"}})
    with pytest.raises(RuleError) as caught:
        check_references(loop, {"a": a, "b": b, "c": c})
    assert caught.value.problems == ["rule.not.segment: c → a → b → c: a segment cannot contain itself"]
    with pytest.raises(RuleError, match=r"rule.segment: 'dormant_9d' is not a segment; did you mean 'dormant_90d'\?"):
        check_references(segment("x", {"segment": "dormant_9d"}), {"dormant_90d": c})


@pytest.mark.parametrize("written, now, expected", [
    ("-90d", dt.datetime(2025, 6, 1, 12, tzinfo=UTC), dt.datetime(2025, 3, 3, 12, tzinfo=UTC)),
    ("-6m", dt.datetime(2025, 8, 31, 8, tzinfo=UTC), dt.datetime(2025, 2, 28, 8, tzinfo=UTC)),
    ("-1y", dt.datetime(2024, 2, 29, 0, tzinfo=UTC), dt.datetime(2023, 2, 28, 0, tzinfo=UTC)),
    ("+7d", dt.datetime(2025, 12, 28, 0, tzinfo=UTC), dt.datetime(2026, 1, 4, 0, tzinfo=UTC)),
    ("-2w", dt.datetime(2025, 1, 10, 0, tzinfo=UTC), dt.datetime(2024, 12, 27, 0, tzinfo=UTC)),
    # a date alone is its midnight where the business is (Moscow: UTC+3)
    ("2024-01-31", dt.datetime(2025, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 30, 21, tzinfo=UTC)),
    ("2024-01-31T10:00:00+05:00", dt.datetime(2025, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 31, 5, tzinfo=UTC)),
])
def test_moments_for_datetime_fields(written: str, now: dt.datetime, expected: dt.datetime) -> None:
    assert parse_moment(written, "datetime").at(now, MOSCOW) == expected


def test_moments_for_date_fields_count_from_the_local_date() -> None:
    assert parse_moment("-1y", "date").day(dt.date(2024, 2, 29)) == dt.date(2023, 2, 28)
    assert parse_moment("+1m", "date").day(dt.date(2025, 1, 31)) == dt.date(2025, 2, 28)
    assert parse_moment("2020-02-29", "date").day(dt.date(2025, 1, 1)) == dt.date(2020, 2, 29)


@pytest.mark.parametrize("today, span, expected", [
    (dt.date(2025, 6, 1), "7d", [(601, 608)]),
    (dt.date(2025, 6, 1), "0d", [(601, 601)]),
    # across the new year: two ranges
    (dt.date(2025, 12, 28), "7d", [(101, 104), (1228, 1231)]),
    # a non-leap February: those born on the 29th celebrate on the 28th
    (dt.date(2025, 2, 25), "3d", [(225, 229)]),
    (dt.date(2025, 2, 28), "0d", [(228, 229)]),
    (dt.date(2025, 3, 1), "2d", [(301, 303)]),
    # a leap February has its own 29th
    (dt.date(2024, 2, 25), "3d", [(225, 228)]),
    (dt.date(2024, 2, 25), "4d", [(225, 229)]),
    (dt.date(2025, 6, 1), "1y", [(101, 1231)]),
    (dt.date(2025, 6, 1), "1m", [(601, 701)]),
])
def test_birthday_windows(today: dt.date, span: str, expected: list[tuple[int, int]]) -> None:
    amount, unit = int(span[:-1]), span[-1]
    assert birthday_ranges(today, Span(amount, unit)) == expected


def test_plugin_fields_and_operators_join_the_registry() -> None:
    # hook:register_segment_fields
    # hook:register_segment_operators
    settings = Settings(plugins=())
    pm = plugins.build(settings)
    pm.register(segment_fields)
    registry = fields.build(settings, pm)
    assert registry.resolve("visits.last_at").field.type == "datetime"
    survey = registry.resolve("survey.kids.answer")
    assert survey.pattern == "survey.<question>.answer" and survey.params == {"question": "kids"}
    assert "starts_with" in registry.operator_names("text")
    with pytest.raises(fields.FieldError,
                       match="'pets' is not a question of survey.<question>.answer; one of: nps, kids"):
        registry.resolve("survey.pets.answer")
    parser = Parser(registry)
    parser.rule({"field": "survey.nps.answer", "op": "starts_with", "value": "9"}, "rule")
    parser.rule({"field": "orders.count", "op": "starts_with", "value": "9"}, "rule")
    assert len(parser.problems) == 1
    assert parser.problems[0].startswith("rule.op: 'starts_with' is not an operator for orders.count; use one of:")
    described = {f["field"]: f for f in registry.describe()}
    assert described["survey.<question>.answer"]["operators"][-1] == "starts_with"
    assert "survey.kids.answer" in registry.examples()


def test_a_plugin_cannot_take_over_a_core_field() -> None:
    class Clash:
        @hookimpl
        def register_segment_fields(self, register: Any) -> None:
            register("orders.count", fields.SegmentField("integer", lambda ctx: ctx.contacts.c.orders_count))

    settings = Settings(plugins=())
    pm = plugins.build(settings)
    pm.register(Clash())
    with pytest.raises(ValueError, match="a plugin registers segment field 'orders.count', which Hub already has"):
        fields.build(settings, pm)

