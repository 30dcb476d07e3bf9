"""The visual rule builder's server side: the field catalog, values from the base, and the tree ↔ YAML round trip.

The browser flows are in tests/test_segment_builder_browser.py; here the
endpoints are driven with Flask's test client, hostile input included, and the
promise that opening a segment in the builder never changes it is proved for
every shipped segment and for generated documents.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from sqlalchemy import update

from hub.admin import rule_model
from hub.models import Contact
from hub.segments import store
from hub.segments.rules import jsonable, read_yaml
from tests.support.admin import AdminEnv, client_as, csrf_token, post, text

LIBRARY = store.builtin_documents()


def json_post(client: Any, path: str, body: Any, token: str) -> Any:
    return client.post(path, headers={"X-CSRFToken": token}, json=body)


# --- the field catalog ------------------------------------------------------------------------

def test_the_catalog_lists_every_field_with_its_title_type_operators_and_choices(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    answer = viewer.get("/segments/builder/fields")
    assert answer.status_code == 200
    catalog = answer.get_json()
    fields = {f["pattern"]: f for g in catalog["groups"] for f in g["fields"]}
    groups = [g["title"] for g in catalog["groups"]]
    assert groups[:3] == ["Контакт", "Заказы", "Согласия"], groups
    city = fields["contact.city"]
    assert city["title"] == "город, как записан" and city["type_title"] == "текст" and city["suggest"] is True
    assert fields["contact.last_name"]["suggest"] is False
    assert fields["orders.count"]["operators"][:2] == ["eq", "ne"] and "gte" in fields["orders.count"]["operators"]
    ops = catalog["operators"]
    assert ops["after"] == {"title": "после", "value": "moment"}
    assert ops["within_last"] == {"title": "за последние", "value": "span"}
    assert ops["eq"]["title"] == "равно" and ops["in"] == {"title": "одно из", "value": "list"}
    assert ops["is_null"]["value"] == "none"
    consent = fields["consent.<channel>.<purpose>"]
    assert {"value": "granted", "title": "дано"} in consent["choices"]
    channel = [p for p in consent["parts"] if p.get("param") == "channel"][0]
    assert "email" in channel["options"] and channel["title"] == "канал"
    stages = {c["value"]: c["title"] for c in fields["contact.lifecycle"]["choices"]}
    assert stages["dead"] == "Потерянные"
    # Codes stay in the rule; the reader sees words: channels, purposes, genders, workflow states.
    assert channel["option_titles"] == {"email": "Email", "sms": "SMS", "phone": "Звонки"}
    purpose = [p for p in consent["parts"] if p.get("param") == "purpose"][0]
    assert purpose["option_titles"]["marketing"] == "Акции и специальные предложения"
    assert consent["title"] == "согласие: последний ответ по каналу и цели" and "none" not in consent["title"]
    gender = fields["contact.gender"]
    assert gender["title"] == "пол" and {c["title"] for c in gender["choices"]} == {"мужской", "женский"}
    states = {c["value"]: c["title"] for c in fields["workflow.<name>.status"]["choices"]}
    assert states["running"] == "выполняется" and states["none"] == "не входил" and states["exited"] != "exited"
    # The words a marketer searches by find the classic task's three fields.
    for words, pattern in (("город", "contact.city"), ("число заказов", "orders.count"),
                           ("последний заказ", "orders.last_at")):
        found = [f["pattern"] for f in fields.values()
                 if all(w in " ".join((f["title"], f["keywords"], f["pattern"])).lower() for w in words.split())]
        assert pattern in found, (words, found)
    assert catalog_texts(viewer)["operator"] == "Как сравнить" and catalog_texts(viewer)["value"] == "Значение"
    # plugins' fields are there, from the registry: the builder has no list of its own
    assert "messages.last_sent_at" in fields and "workflow.<name>.status" in fields
    post(viewer, "/language", {"language": "en"})
    english = viewer.get("/segments/builder/fields").get_json()
    assert english["operators"]["after"]["title"] == "after"
    assert english["groups"][0]["title"] == "Contact"


def catalog_texts(client: Any) -> dict[str, str]:
    page = text(client.get("/segments/dormant_90d"))
    return dict(json.loads(page.split('id="segment-builder-data">')[1].split("</script>")[0])["texts"])


def test_an_emptied_group_says_so_in_plain_words(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    token = csrf_token(marketer, "/segments/new")
    tree = {"order": ["name", "rule"], "other": {}, "name": "empty_group", "rule": {"kind": "all", "items": []}}
    answer = json_post(marketer, "/segments/write", {"model": tree}, token).get_json()
    assert answer["problems"] == ["rule.all: группа пуста: добавьте хотя бы одно условие"]


def test_the_edit_page_carries_the_builder_and_its_data(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    page = text(marketer.get("/segments/dormant_90d"))
    assert "segment-builder.js" in page and 'id="segment-builder-data"' in page
    data = json.loads(page.split('id="segment-builder-data">')[1].split("</script>")[0])
    assert data["model"]["rule"]["kind"] == "all" and data["texts"]["add_condition"] == "Добавить условие"
    assert data["hints"]["rule.all[1].value"] == "90 дней назад"
    viewer = client_as(admin_env, "viewer")
    viewer_page = text(viewer.get("/segments/dormant_90d"))
    assert 'data-readonly="1"' in viewer_page and "data-write-url" not in viewer_page
    post(viewer, "/language", {"language": "en"})
    english = text(viewer.get("/segments/dormant_90d"))
    data = json.loads(english.split('id="segment-builder-data">')[1].split("</script>")[0])
    assert data["texts"]["add_condition"] == "Add a condition" and data["hints"]["rule.all[1].value"] == "90 days ago"


# --- suggestions from the base ----------------------------------------------------------------

@pytest.mark.both_databases
def test_suggestions_are_the_spellings_in_the_base_most_frequent_first(admin_env: AdminEnv) -> None:
    with admin_env.engine.begin() as conn:  # a deleted contact's city is not suggested
        conn.execute(update(Contact).where(Contact.id == admin_env.ids["markup"])
                     .values(city="Мордор", deleted_at=Contact.created_at))
    marketer = client_as(admin_env, "marketer")
    every = marketer.get("/segments/builder/suggest", query_string={"field": "contact.city"}).get_json()
    assert every["values"] == [{"value": "Тула", "count": 2, "count_text": "2"},
                               {"value": "Москва", "count": 1, "count_text": "1"}]
    typed = marketer.get("/segments/builder/suggest", query_string={"field": "contact.city", "prefix": "мо"})
    assert [v["value"] for v in typed.get_json()["values"]] == ["Москва"]  # any case, Cyrillic too
    for hostile in ("%", "_", "' OR 1=1 --", "Москва'; DROP TABLE contacts; --", "\\"):
        answer = marketer.get("/segments/builder/suggest", query_string={"field": "contact.city", "prefix": hostile})
        assert answer.status_code == 200 and answer.get_json()["values"] == [], hostile
    assert marketer.get("/segments/builder/suggest", query_string={"field": "contact.city"}).get_json()["values"]


def test_suggestions_refuse_what_they_must_not_read(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")

    def refused(**query: str) -> str:
        answer = marketer.get("/segments/builder/suggest", query_string=query)
        assert answer.status_code == 400, (query, answer.status_code)
        return str(answer.get_json()["error"])

    assert "может быть, 'contact.city'" in refused(field="contact.cty")
    assert "не подсказываются" in refused(field="contact.last_name")  # names are personal: never listed
    assert "не подсказываются" in refused(field="orders.avg")
    assert "не подсказываются" in refused(field="consent.email.marketing")
    assert "слишком длинное" in refused(field="contact.city", prefix="М" * 5000)
    assert "слишком длинное" in refused(field="x" * 1000)
    assert "какого поля" in refused(field="")
    assert "какого поля" in refused()
    markup = marketer.get("/segments/builder/suggest", query_string={"field": "<script>alert(1)</script>"})
    assert markup.status_code == 400 and markup.mimetype == "application/json"  # JSON, never HTML
    viewer = client_as(admin_env, "viewer")
    assert viewer.get("/segments/builder/suggest", query_string={"field": "contact.city"}).status_code == 403


# --- the round trip ---------------------------------------------------------------------------

def through_the_builder(document: Any) -> Any:
    """A document as the builder would hold it (sent to the browser as JSON and back) and write it again."""
    tree = json.loads(json.dumps(rule_model.model(document), allow_nan=False))
    return rule_model.document(tree)


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_every_shipped_segment_survives_the_builder_unchanged(name: str) -> None:
    document = jsonable(LIBRARY[name])
    assert through_the_builder(document) == document
    assert read_yaml(rule_model.dump(through_the_builder(document))) == document
    assert "text" not in json.dumps(rule_model.model(document))  # every shipped rule is shown as a form


def test_yaml_to_builder_to_yaml_through_the_endpoints(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    token = csrf_token(marketer, "/segments/new")
    documents = [jsonable(d) for d in LIBRARY.values()] + [
        {"title": "Москва, двое", "name": "moscow_twice", "description": None,
         "rule": {"all": [{"value": "Москва", "op": "eq", "field": "contact.city"},
                          {"field": "orders.count", "op": "gte", "value": 2},
                          {"not": {"field": "orders.last_at", "op": "within_last", "value": "60d"}},
                          {"field": "contact.city", "op": "is_null"},
                          {"field": "contact.city", "op": "eq", "value": None},
                          {"segment": "vip"}, {"any": []}, {"feild": "contact.city", "op": "eq"},
                          {"field": "orders.revenue", "op": "gt", "value": 12345678901234567890},
                          {"field": "contact.city", "op": "in", "value": [{"nested": 1}]}]},
         "tittle": ["kept", "as", "text"]},
    ]
    for document in documents:
        yaml_text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
        checked = json_post(marketer, "/segments/check", {"document": yaml_text, "model": True}, token).get_json()
        written = json_post(marketer, "/segments/write", {"model": checked["model"]}, token)
        assert written.status_code == 200
        answer = written.get_json()
        assert yaml.safe_load(answer["document"]) == document
        assert list(yaml.safe_load(answer["document"])) == list(document)  # the keys keep their order
        again = json_post(marketer, "/segments/check", {"document": answer["document"], "model": True}, token)
        assert again.get_json()["model"] == checked["model"]


def test_the_builder_tree_shows_problems_by_path_and_values_in_words(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    token = csrf_token(marketer, "/segments/new")
    tree: dict[str, Any] = {"order": ["name", "rule"], "other": {}, "name": "moscow_twice", "rule": {
        "kind": "all", "items": [
        {"kind": "condition", "field": "contact.city", "op": "eq", "value": "Москва"},
        {"kind": "condition", "field": "orders.count", "op": "gte", "value": 2},
        {"kind": "condition", "field": "orders.last_at", "op": "before", "value": "60d"}]}}
    wrong = json_post(marketer, "/segments/write", {"model": tree}, token).get_json()
    assert wrong["ok"] is False
    assert any(p.startswith("rule.all[2].value: у '60d' нет знака: пишите -60d") for p in wrong["problems"]), wrong
    assert "field: orders.last_at\n    op: before\n    value: 60d" in wrong["document"]
    tree["rule"]["items"][2]["value"] = "-60d"
    right = json_post(marketer, "/segments/write", {"model": tree}, token).get_json()
    assert right["ok"] is True and right["count"] == 1 and right["summary"] == "1 контакт подходит сейчас"
    assert right["hints"] == {"rule.all[2].value": "60 дней назад"}
    plain_check = json_post(marketer, "/segments/check", {"document": right["document"]}, token).get_json()
    assert "model" not in plain_check  # only the builder asks for the tree
    broken = json_post(marketer, "/segments/check", {"document": "name: [x", "model": True}, token).get_json()
    assert broken["model"] is None and broken["ok"] is False
    listed = json_post(marketer, "/segments/check", {"document": "- a\n- b\n", "model": True}, token).get_json()
    assert listed["model"] is None


@pytest.mark.parametrize("body, message", [
    ({}, "отправьте"),
    ({"model": "name: x"}, "отправьте"),
    ({"model": {"rule": {"kind": "sql", "text": "DROP TABLE contacts"}}}, "rule: "),
    ({"model": {"rule": {"kind": "all", "items": "everything"}}}, "rule.all: "),
    ({"model": {"rule": {"kind": "all", "items": [{"kind": "text", "yaml": "{field: [unclosed"}]}}},
     "rule.all[0]: это не корректный YAML"),
    ({"model": {"rule": {"kind": "not"}}}, "rule.not: "),
    ({"model": {"rule": {"kind": "segment", "name": ["x"]}}}, "rule.segment: "),
    ({"model": {"rule": {"kind": "condition", "field": "contact.city", "op": "eq", "value": {"$gt": 1}}}}, "rule: "),
    ({"model": {"name": 5, "rule": {"kind": "condition"}}}, "name: "),
    ({"model": {"order": "name", "rule": {"kind": "condition"}}}, "order: "),
    ({"model": {"other": {"x": 1}}}, "other: "),
])
def test_a_hostile_tree_is_refused_in_words(admin_env: AdminEnv, body: Any, message: str) -> None:
    marketer = client_as(admin_env, "marketer")
    answer = json_post(marketer, "/segments/write", body, csrf_token(marketer, "/segments/new"))
    assert answer.status_code == 400
    problems = answer.get_json()["problems"]
    assert any(message in p for p in problems), problems


def test_a_tree_too_big_or_too_deep_is_refused_not_crashed(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    token = csrf_token(marketer, "/segments/new")
    deep: dict[str, Any] = {"kind": "condition", "field": "contact.city", "op": "is_null"}
    for _ in range(60):
        deep = {"kind": "not", "item": deep}
    answer = json_post(marketer, "/segments/write", {"model": {"name": "deep", "rule": deep}}, token)
    assert answer.status_code == 400 and "слишком глубоко" in answer.get_json()["problems"][0]
    nested = '{"model": ' + "[" * 50_000 + "]" * 50_000 + "}"
    answer = marketer.post("/segments/write", data=nested, content_type="application/json",
                           headers={"X-CSRFToken": token})
    assert answer.status_code == 400 and "отправьте" in answer.get_json()["problems"][0]
    for path, raw in (("/segments/write", '{"model": {"name": "' + "x" * 300_000 + '"}}'),
                      ("/segments/check", '{"document": "' + "x" * 300_000 + '"}')):
        answer = marketer.post(path, data=raw, content_type="application/json", headers={"X-CSRFToken": token})
        assert answer.status_code == 400 and "слишком длинный" in answer.get_json()["problems"][0]
    for n in (400, 2000):  # a text node holding hundreds of levels, and YAML typed that deep
        answer = json_post(marketer, "/segments/write",
                           {"model": {"name": "deep", "rule": {"kind": "text", "yaml": "[" * n + "]" * n}}}, token)
        assert answer.status_code in (200, 400) and answer.get_json()["ok"] is False
        typed = "name: deep\nrule: " + "{all: [" * n + "x" + "]}" * n
        checked = json_post(marketer, "/segments/check", {"document": typed[:20_000], "model": True}, token)
        assert checked.status_code == 200 and checked.get_json()["ok"] is False
    huge = {"model": {"name": "huge", "rule": {"kind": "any", "items": [
        {"kind": "condition", "field": "contact.city", "op": "eq", "value": "Москва" * 40} for _ in range(100)]}}}
    too_long = json_post(marketer, "/segments/write", huge, token).get_json()
    assert too_long["ok"] is False and "слишком длинный" in too_long["problems"][0]


def test_a_viewer_cannot_write_or_check(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    token = csrf_token(viewer, "/segments/dormant_90d")
    tree = {"name": "mine", "rule": {"kind": "condition", "field": "contact.city", "op": "eq", "value": "Тула"}}
    assert json_post(viewer, "/segments/write", {"model": tree}, token).status_code == 403
    assert json_post(viewer, "/segments/check", {"document": "name: x", "model": True}, token).status_code == 403


# --- generated documents ------------------------------------------------------------------------

FIELD_NAMES = st.sampled_from(["contact.city", "orders.count", "orders.last_at", "consent.email.marketing",
                               "contact.tags", "events.cart_abandoned.count.7d", "no.such.field"])
OPERATORS = st.sampled_from(["eq", "ne", "gte", "in", "before", "after", "within_last", "is_null", "matches",
                             "befor", "plugin_op"])
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(max_size=12) | st.sampled_from(["-60d", "30d", "2024-01-31", "Москва", "+7d"]))
VALUES = SCALARS | st.lists(SCALARS, max_size=4) | st.dictionaries(st.text(max_size=5), SCALARS, max_size=2)


def conditions() -> Any:
    keys = st.fixed_dictionaries({}, optional={"field": FIELD_NAMES | SCALARS, "op": OPERATORS | SCALARS,
                                               "value": VALUES})
    return keys.flatmap(lambda d: st.permutations(list(d.items())).map(dict)) | \
        st.dictionaries(st.text(max_size=6), VALUES, max_size=3)


RULES = st.recursive(
    conditions() | st.fixed_dictionaries({"segment": st.text(max_size=10) | SCALARS}) | SCALARS,
    lambda inner: (st.fixed_dictionaries({"all": st.lists(inner, max_size=4)})
                   | st.fixed_dictionaries({"any": st.lists(inner, max_size=4) | inner})
                   | st.fixed_dictionaries({"not": inner})
                   | st.fixed_dictionaries({"all": st.lists(inner, max_size=2), "field": FIELD_NAMES})),
    max_leaves=25)
DOCUMENTS = st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=10) | SCALARS, "title": st.text(max_size=10) | SCALARS, "rule": RULES,
    "description": SCALARS, "tittle": VALUES}).flatmap(lambda d: st.permutations(list(d.items())).map(dict))


@given(DOCUMENTS)
@hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_document_survives_the_builder_unchanged(document: dict[str, Any]) -> None:
    assert through_the_builder(document) == document
    written = rule_model.document(rule_model.model(document))
    assert list(written) == list(document)
    assert yaml.safe_load(rule_model.dump(written)) == document


@given(RULES)
@hypothesis_settings(max_examples=200, deadline=None)
def test_any_rule_tree_is_json_the_browser_reads_exactly(rule: Any) -> None:
    tree = rule_model.model({"rule": rule})
    sent = json.dumps(tree, allow_nan=False)  # inf and nan would not parse in a browser: they stay text
    for number in _numbers(json.loads(sent)):
        assert abs(number) <= rule_model.SAFE_INTEGER or isinstance(number, float)
    assert rule_model.document(json.loads(sent)) == {"rule": rule}


def _numbers(tree: Any) -> list[Any]:
    if isinstance(tree, dict):
        return [n for v in tree.values() for n in _numbers(v)]
    if isinstance(tree, list):
        return [n for v in tree for n in _numbers(v)]
    return [tree] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []
