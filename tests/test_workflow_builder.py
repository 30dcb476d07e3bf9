"""The workflow builder's pages and JSON: check, write, save (new and changed), problems by path, roles, hostile input.

The page is exercised through Flask's test client here; the clicking is in
tests/test_workflow_builder_browser.py. Saving goes through the real store, so
a changed workflow becomes a new version with who saved it, on both databases.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from hub.models import AuditEntry
from tests.support.admin import AdminEnv, client_as, csrf_token, plain, post, text
from workflows import builder_model, store
from workflows.models import WorkflowRow, WorkflowVersion

REACTIVATION = store.library_documents()["reactivation_90d"]


def mine(**changes: Any) -> dict[str, Any]:
    """The shipped reactivation workflow under a name of one's own."""
    return {**json.loads(json.dumps(REACTIVATION)), "name": "my_reactivation", **changes}


def json_post(client: Any, path: str, body: Any, token: str) -> Any:
    return client.post(path, headers={"X-CSRFToken": token}, json=body)


def marketer_with_token(env: AdminEnv) -> tuple[Any, str]:
    client = client_as(env, "marketer")
    return client, csrf_token(client, "/workflows/new")


def versions_of(env: AdminEnv, name: str) -> list[tuple[int, str | None]]:
    with env.engine.connect() as conn:
        wid = conn.execute(select(WorkflowRow.id).where(WorkflowRow.name == name)).scalar_one()
        return [(int(r[0]), r[1]) for r in conn.execute(select(WorkflowVersion.version, WorkflowVersion.created_by)
                                               .where(WorkflowVersion.workflow_id == wid)
                                               .order_by(WorkflowVersion.version))]


def test_the_new_page_carries_the_builder_its_data_and_a_text_form_that_works_alone(admin_env: AdminEnv) -> None:
    page = client_as(admin_env, "marketer").get("/workflows/new")
    assert page.status_code == 200
    body = text(page)
    for hook in ('id="workflow-form"', 'id="workflow-document"', 'id="workflow-builder"', 'id="wf-save"',
                 'id="wf-problems"', "workflow-builder.js", "rule-builder.js"):
        assert hook in body, hook
    assert "<script>" not in body and " style=" not in body  # CSP: data only in application/json blocks
    data = json.loads(body.split('id="workflow-builder-data">')[1].split("</script>")[0])
    kinds = {k["kind"]: k for k in data["kinds"]}
    assert {"send", "promo_code", "wait", "crm_task", "crm_comment", "crm_field", "webhook", "tag"} <= set(kinds)
    assert [f["key"] for f in kinds["send"]["form"]] == ["channel", "template", "purpose", "on_cap",
                                                         "quiet_hours"]
    assert kinds["wait"]["title"] == "Подождать"
    # Nothing the marketer did not ask for: no example name, title or step
    assert data["model"] == {"other": {}, "reentry": "never", "steps": []}
    assert "my_workflow" not in body and "Мой сценарий" not in body
    assert data["texts"]["title_placeholder"] and data["texts"]["settings"] == "Цель и ограничения"
    # A task's text offers the contact's and the promo code's variables, in words
    offered = {v["snippet"]: v for v in data["variables"]}
    assert offered["{{ contact.first_name }}"]["title"] == "имя" and "{{ promo.code }}" in offered
    assert not any("unsubscribe_url" in s for s in offered)
    assert any(t["name"] == "reactivation_sms" and not t["email"] for t in data["templates"])
    assert "transactional" in [p["value"] for p in data["purposes"]]
    script = client_as(admin_env, "marketer").get("/workflows/static/workflow-builder.js")
    assert script.status_code == 200 and b"WorkflowBuilder" in script.data


def test_check_reads_text_into_the_tree_and_write_turns_it_back(admin_env: AdminEnv) -> None:
    client, token = marketer_with_token(admin_env)
    typed = builder_model.to_text(mine())
    answer = json_post(client, "/workflows/builder/check", {"document": typed, "model": True}, token).get_json()
    assert answer["ok"] is True and answer["problems"] == [] and "7" in answer["summary"]
    tree = answer["model"]
    assert tree["trigger"] == {"kind": "segment", "segment": "dormant_90d"}
    assert tree["steps"][3]["kind"] == "if" and tree["steps"][3]["then_one"] is True
    tree["steps"][2]["options"]["for"] = "5d"
    written = json_post(client, "/workflows/builder/write", {"model": tree}, token).get_json()
    assert written["ok"] is True and "- wait: 5d\n" in written["document"]
    assert builder_model.from_text(written["document"]) == mine(steps=[
        *REACTIVATION["steps"][:2], {"wait": "5d"}, *REACTIVATION["steps"][3:]])


def test_problems_name_the_step_and_field_in_russian(admin_env: AdminEnv) -> None:
    client, token = marketer_with_token(admin_env)
    tree = builder_model.to_model(mine())
    assert tree is not None
    tree["steps"][4]["options"]["template"] = "reactivation_email"  # an email template on the SMS step
    answer = json_post(client, "/workflows/builder/write", {"model": tree}, token).get_json()
    assert answer["ok"] is False
    assert any(p.startswith("steps[4].send.template: ") and "email" in p for p in answer["problems"]), answer
    tree = builder_model.to_model(mine(name="reactivation_90d"))
    answer = json_post(client, "/workflows/builder/write", {"model": tree}, token).get_json()
    assert any(p.startswith("name: ") and "поставля" in p for p in answer["problems"]), answer
    tree = builder_model.to_model(mine(name="new"))
    answer = json_post(client, "/workflows/builder/write", {"model": tree}, token).get_json()
    assert any(p.startswith("name: 'new'") and "адрес страницы" in p for p in answer["problems"]), answer


@pytest.mark.both_databases
def test_saving_a_new_workflow_then_a_changed_one_makes_versions_with_who_saved(admin_env: AdminEnv) -> None:
    client = client_as(admin_env, "marketer")
    saved = post(client, "/workflows/new", {"document": builder_model.to_text(mine())}, token_from="/workflows/new")
    assert saved.status_code == 302 and saved.headers["Location"].endswith("/workflows/my_reactivation")
    with admin_env.engine.connect() as conn:
        row = conn.execute(select(WorkflowRow).where(WorkflowRow.name == "my_reactivation")).one()
        assert row.origin == store.ADMIN_ORIGIN and row.enabled is False
        audit = conn.execute(select(AuditEntry.action, AuditEntry.actor).order_by(AuditEntry.id.desc())).first()
    assert audit is not None and audit.action == "workflow_saved" and "marketer@shop.example" in audit.actor
    again = post(client, "/workflows/new", {"document": builder_model.to_text(mine())}, token_from="/workflows/new")
    assert again.status_code == 400 and "уже есть" in plain(again)  # a second «new» does not overwrite it
    page = client.get("/workflows/my_reactivation/edit")
    assert page.status_code == 200 and "my_reactivation" in text(page)
    changed = mine(holdout="20%")
    saved = post(client, "/workflows/my_reactivation/edit", {"document": builder_model.to_text(changed)},
                 token_from="/workflows/my_reactivation/edit")
    assert saved.status_code == 302
    by = [b for _, b in versions_of(admin_env, "my_reactivation")]
    assert len(by) == 2 and all(b and "marketer@shop.example" in b for b in by)
    edit_page = text(client.get("/workflows/my_reactivation/edit"))
    assert '<label class="wf-check"><input type="checkbox" name="move_runs" value="1" id="wf-move-runs"' in edit_page
    moved = post(client, "/workflows/my_reactivation/edit",
                 {"document": builder_model.to_text(mine(holdout="15%")), "move_runs": "1"},
                 token_from="/workflows/my_reactivation/edit", follow_redirects=True)
    assert "версия 3" in plain(moved) and "переведено на неё: 0" in plain(moved)
    assert 'id="wf-move-runs"' not in text(client.get("/workflows/new"))
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(WorkflowRow.definition).where(WorkflowRow.name == "my_reactivation")
                            ).scalar_one() == mine(holdout="15%")


def test_a_save_with_problems_keeps_the_typed_text_and_shows_them(admin_env: AdminEnv) -> None:
    client = client_as(admin_env, "marketer")
    bad = builder_model.to_text(mine(steps=[{"send": {"channel": "sms", "template": "reactivation_email"}}]))
    answer = post(client, "/workflows/new", {"document": bad}, token_from="/workflows/new")
    assert answer.status_code == 400
    body = plain(answer)
    assert "steps[0].send.template:" in body and "reactivation_email" in body
    assert bad in body  # the typed text stays
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(WorkflowRow.id).where(WorkflowRow.name == "my_reactivation")).first() is None


def test_a_saved_workflow_cannot_be_renamed_and_a_shipped_one_opens_read_only(admin_env: AdminEnv) -> None:
    client = client_as(admin_env, "marketer")
    post(client, "/workflows/new", {"document": builder_model.to_text(mine())}, token_from="/workflows/new")
    renamed = post(client, "/workflows/my_reactivation/edit", {"document": builder_model.to_text(mine(name="other"))},
                   token_from="/workflows/new")
    assert renamed.status_code == 400 and "переименовать" in plain(renamed)
    client.get("/workflows/")  # installs the library
    shipped = client.get("/workflows/reactivation_90d/edit")
    assert shipped.status_code == 200 and 'id="wf-save"' not in text(shipped) and "readonly" in text(shipped)
    refused = post(client, "/workflows/reactivation_90d/edit", {"document": builder_model.to_text(REACTIVATION)},
                   token_from="/workflows/new")
    assert refused.status_code == 400 and len(versions_of(admin_env, "reactivation_90d")) == 1
    assert client.get("/workflows/no_such/edit").status_code == 404


def test_a_viewer_sees_no_builder_buttons_and_cannot_check_write_or_save(admin_env: AdminEnv) -> None:
    viewer = client_as(admin_env, "viewer")
    assert viewer.get("/workflows/new").status_code == 403
    assert 'id="new-workflow"' not in text(viewer.get("/workflows/"))
    token = csrf_token(viewer, "/workflows/")
    assert json_post(viewer, "/workflows/builder/check", {"document": "name: x"}, token).status_code == 403
    assert json_post(viewer, "/workflows/builder/write", {"model": {}}, token).status_code == 403
    refused = viewer.post("/workflows/new", data={"csrf_token": token, "document": builder_model.to_text(mine())})
    assert refused.status_code == 403
    assert 'id="new-workflow"' in text(client_as(admin_env, "marketer").get("/workflows/"))


@pytest.mark.parametrize("body, message", [
    ({"model": "steps"}, "отправьте"),
    ({"model": {"steps": "send"}}, "steps: "),
    ({"model": {"steps": [{"kind": "send", "options": {"channel": ["email"]}}]}}, "steps[0].send.channel: "),
    ({"model": {"steps": [{"kind": "if", "rule": {"kind": "bogus"}, "then": []}]}}, "steps[0].if: "),
    ({"model": {"steps": [{"kind": "text", "text": "{a: ["}]}}, "steps[0]: "),
    ({"model": {"trigger": {"kind": "weather"}}}, "trigger: "),
    ({"model": {"other": {"x": 1}}}, "other: "),
    ({"model": {"name": 5}}, "name: "),
    ({"document": 5}, "отправьте"),
])
def test_a_hostile_tree_is_refused_in_words(admin_env: AdminEnv, body: Any, message: str) -> None:
    client, token = marketer_with_token(admin_env)
    path = "/workflows/builder/check" if "document" in body else "/workflows/builder/write"
    answer = json_post(client, path, body, token)
    assert answer.status_code == 400, answer.get_json()
    assert any(message in p for p in answer.get_json()["problems"]), answer.get_json()


def test_oversized_non_json_and_deep_input_is_refused_never_a_500(admin_env: AdminEnv) -> None:
    client, token = marketer_with_token(admin_env)
    headers = {"X-CSRFToken": token}
    for path in ("/workflows/builder/check", "/workflows/builder/write"):
        for raw in ("not json", "[" * 50_000 + "]" * 50_000, '{"document": "' + "x" * 500_000 + '"}'):
            answer = client.post(path, data=raw, content_type="application/json", headers=headers)
            assert answer.status_code == 400, (path, raw[:20])
            assert answer.get_json()["ok"] is False and answer.get_json()["problems"]
    deep: dict[str, Any] = {"kind": "exit"}
    for _ in range(40):
        deep = {"kind": "if", "rule": {"kind": "condition", "field": "contact.city", "op": "is_null"}, "then": [deep]}
    answer = json_post(client, "/workflows/builder/write", {"model": {"steps": [deep]}}, token)
    assert answer.status_code == 400 and "глубоко" in answer.get_json()["problems"][0]
    typed = "name: deep\nsteps:\n- " + "{if: {field: contact.city, op: is_null}, then: [" * 200 + "exit" + "]}" * 200
    checked = json_post(client, "/workflows/builder/check", {"document": typed, "model": True}, token)
    assert checked.status_code == 200 and checked.get_json()["ok"] is False
    long_text = post(client, "/workflows/new", {"document": "x" * 60_000}, token_from="/workflows/new")
    assert long_text.status_code == 400 and "слишком" in plain(long_text)
    broken = post(client, "/workflows/new", {"document": "name: [unclosed"}, token_from="/workflows/new")
    assert broken.status_code == 400 and "YAML" in plain(broken)


def test_html_in_titles_and_names_is_shown_as_text(admin_env: AdminEnv) -> None:
    client, token = marketer_with_token(admin_env)
    hostile = mine(title="<script>alert(1)</script>", description="<img src=x onerror=alert(1)>")
    answer = json_post(client, "/workflows/builder/check", {"document": builder_model.to_text(hostile),
                                                            "model": True}, token).get_json()
    assert answer["model"]["title"] == "<script>alert(1)</script>"
    page = post(client, "/workflows/new", {"document": builder_model.to_text(
        mine(name="<b>x</b>", title="<script>alert(1)</script>"))}, token_from="/workflows/new")
    assert page.status_code == 400
    assert "<script>alert(1)</script>" not in text(page) and "<b>x</b>" not in text(page)


def test_a_viewer_opens_a_saved_workflow_read_only(admin_env: AdminEnv) -> None:
    post(client_as(admin_env, "marketer"), "/workflows/new", {"document": builder_model.to_text(mine())},
         token_from="/workflows/new")
    viewer = client_as(admin_env, "viewer")
    page = text(viewer.get("/workflows/my_reactivation/edit"))
    assert 'id="wf-save"' not in page and "data-check-url" not in page and "readonly" in page
    assert '"readonly": true' in page
    assert viewer.post("/workflows/my_reactivation/edit", data={"csrf_token": csrf_token(viewer, "/workflows/"),
                                                                "document": builder_model.to_text(mine())}
                       ).status_code == 403
    assert 'id="edit-workflow"' in text(viewer.get("/workflows/my_reactivation"))


def test_the_builder_speaks_english_to_who_reads_english(admin_env: AdminEnv) -> None:
    marketer = client_as(admin_env, "marketer")
    post(marketer, "/language", {"language": "en"})
    page = text(marketer.get("/workflows/new"))
    assert '<html lang="en">' in page and "New workflow" in page and "Save workflow" in page
    assert "Bought since entering" in page and "Сохранить" not in page
    russian = text(client_as(admin_env, "admin").get("/workflows/new"))
    assert "Сохранить сценарий" in russian and "Купил(а) после входа" in plain_json(russian)


def plain_json(page: str) -> str:
    """The builder's data block read back (the JSON escapes Cyrillic)."""
    return json.dumps(json.loads(page.split('id="workflow-builder-data">')[1].split("</script>")[0]),
                      ensure_ascii=False)


def test_the_builder_says_problems_in_peoples_words_and_the_text_keeps_the_syntax(admin_env: AdminEnv) -> None:
    client, token = marketer_with_token(admin_env)
    tree = {"name": "реактивация весна", "title": "Весенний возврат", "trigger": {"kind": "segment"}, "steps": [
        {"kind": "promo_code", "options": {"discount": "10%", "valid_for": "14d"}},
        {"kind": "wait", "options": {}, "short": True},
        {"kind": "if", "rule": {"kind": "condition", "field": "orders.count", "op": "gt"},
         "then": [{"kind": "exit"}], "then_one": True,
         "else": [{"kind": "send", "options": {}}, {"kind": "send", "options": {"channel": "email"}},
                  {"kind": "crm_task", "options": {}}]},
        {"kind": "if", "then": [{"kind": "exit"}], "then_one": True},
        {"kind": "if", "rule": {"kind": "condition"}, "then": [{"kind": "exit"}], "then_one": True},
    ]}
    answer = json_post(client, "/workflows/builder/write", {"model": tree}, token).get_json()
    said = {p.split(": ", 1)[0]: f"{s['where']}: {s['text']}" for p, s in zip(answer["problems"], answer["shown"],
                                                                                       strict=True)}
    assert len(answer["shown"]) == len(answer["problems"])
    assert said == {
        "name": "Имя: имя латиницей, например reaktivatsiya_vesna",
        "trigger": "Запуск: выберите сегмент",
        "steps[1].wait": "Шаг 2 «Подождать»: укажите, сколько ждать, или до какого времени",
        "steps[2].if.value": "Условие в шаге 3: укажите значение",
        "steps[2].else[0].send.channel": "Шаг 5 «Отправить сообщение»: не указан канал",
        "steps[2].else[1].send.template": "Шаг 6 «Отправить сообщение»: не указан шаблон",
        "steps[2].else[2].crm_task.title": "Шаг 7 «Задача в CRM»: заполните поле «Задача»",
        "steps[3].if": "Условие в шаге 8: выберите поле условия",
        "steps[4].if.field": "Условие в шаге 10: выберите поле условия",
    }, said
    # the text form (and the command line) keep the file's syntax
    assert any(p.startswith("steps[1].wait: ") and "wait: 7d" in p for p in answer["problems"])
    empty = json_post(client, "/workflows/builder/check", {"document": "steps: []\n"}, token).get_json()
    assert [f"{s['where']}: {s['text']}" for s in empty["shown"]] == [
        "Имя: укажите имя латиницей (буквы, цифры и _, первой — буква) или название: имя составится из него",
        "Запуск: выберите сегмент", "Шаги: добавьте хотя бы один шаг кнопкой «+ шаг»"]
    named = json_post(client, "/workflows/builder/check", {"document": "name: x\ntitle: Весенний возврат\n"
                                                           "trigger: {segment: dormant_90d}\nsteps: [{wait: 1d}]\n"
                                                           "holdout: 90%\n"}, token).get_json()
    assert [(s["where"], s["todo"]) for s in named["shown"]] == [("Контрольная группа", False)]  # an error
    taken = builder_model.to_text(mine(name="reactivation_90d"))
    kept = json_post(client, "/workflows/builder/check", {"document": taken}, token).get_json()
    assert "поставля" in kept["shown"][0]["text"]  # a name that is taken keeps saying so


def test_a_refused_save_shows_the_builder_words_beside_the_texts_syntax(admin_env: AdminEnv) -> None:
    client = client_as(admin_env, "marketer")
    bad = builder_model.to_text(mine(steps=[{"wait": {}}]))
    page = post(client, "/workflows/new", {"document": bad}, token_from="/workflows/new")
    assert page.status_code == 400 and "steps[0].wait:" in plain(page)  # without script: the syntax
    data = json.loads(text(page).split('id="workflow-builder-data">')[1].split("</script>")[0])
    assert data["shown"] == [{"where": "Шаг 1 «Подождать»", "text": "укажите, сколько ждать, или до какого времени",
                               "todo": True}]


@pytest.mark.parametrize("title, name", [
    ("Весенний возврат", "vesenniy_vozvrat"), ("Щедрый Юбилей-2026!", "shchedryy_yubiley_2026"),
    ("2026 весна", "w_2026_vesna"), ("  ", ""), ("Ёлка " * 30, ("elka_" * 13)[:64].rstrip("_")),
])
def test_a_name_is_made_from_the_title_by_transliteration(title: str, name: str) -> None:
    from workflows.builder_words import transliterate

    assert transliterate(title) == name
