"""Step numbers people read (1…N, the hidden jump after `then:` left out) and a trace in people's words."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner

import workflows
from hub import sync
from hub.db import utcnow
from hub.records import OrderRecord
from tests.support.admin import AdminEnv, admin_env, client_as, csrf_token, plain, post, text  # noqa: F401
from tests.support.cli import cli
from workflows import forecast, measure, names, store, trial

pytestmark = pytest.mark.both_databases

# Program: promo 0, wait 1, if 2, send 3 (yes), hidden goto 4, send 5 (no), crm_task 6 — people read 1…6.
DOCUMENT = {
    "name": "polish_steps", "title": "Polish steps", "trigger": {"segment": "never_bought"}, "reentry": "180d",
    "steps": [
        {"promo_code": {"discount": "15%", "valid_for": "14d", "prefix": "BACK"}},
        {"wait": "1d"},
        {"if": {"field": "orders.last_at", "op": "after", "value": "run.started_at"},
         "then": [{"send": {"channel": "email", "template": "reactivation_email", "purpose": "marketing"}}],
         "else": [{"send": {"channel": "email", "template": "reactivation_email", "purpose": "marketing"}}]},
        {"crm_task": {"title": "Позвонить клиенту {{ contact.first_name }}", "due_in": "2d"}},
    ],
}
SHOWN = [1, 2, 3, 4, 5, 6]
CLOSED = dt.datetime.combine(utcnow().date() - dt.timedelta(days=10), dt.time(), tzinfo=dt.timezone.utc)


def _setup(env: AdminEnv) -> None:
    """The workflow saved in the admin, and Anna's deal closed «on a date» (a CRM keeps it as UTC midnight)."""
    with env.engine.begin() as conn:
        store.add(conn, env.settings, DOCUMENT, by="marketer@shop.example", kind=store.ADMIN_ORIGIN)
        sync.write_orders(conn, [OrderRecord(source="bitrix24", external_id="o3", contact_external_id="101",
                                             amount=Decimal("900"), status="won", closed_at=CLOSED)], sync.Counts())


def _run(*args: str) -> Any:
    workflows.register_commands(cli)
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result


def test_steps_are_numbered_without_gaps_everywhere(admin_env: AdminEnv) -> None:  # noqa: F811
    _setup(admin_env)
    with admin_env.engine.connect() as conn:
        workflow = store.current(conn, admin_env.settings, "polish_steps")[1]
    assert [workflow.number(i.index) for i in workflow.steps()] == SHOWN
    assert len(workflow.program) == 7 and workflow.number(4) == 5  # the hidden jump: the step that comes next
    # the status report, the detail page's funnel and the command line
    report = measure.status(admin_env.engine, admin_env.settings, "polish_steps")
    assert [s["step"] for s in report["steps"]] == SHOWN and report["steps"][-1]["kind"] == "crm_task"
    page = client_as(admin_env, "viewer").get("/workflows/polish_steps")
    assert page.status_code == 200
    funnel = text(page).split('id="steps"', 1)[1].split("</table>", 1)[0]
    assert [int(n) for n in re.findall(r"<tr><td>(\d+)\. ", funnel)] == SHOWN
    status = json.loads(_run("workflows", "status", "polish_steps", "--json").output)
    assert [s["step"] for s in status["steps"]] == SHOWN
    shown = json.loads(_run("workflows", "show", "polish_steps", "--json").output)
    assert [s.split(".")[0] for s in shown["steps"]] == [str(n) for n in SHOWN]
    table = _run("workflows", "show", "polish_steps").output
    assert re.search(r"\b6\b.*crm_task", table) and not re.search(r"\b7\b.*crm_task", table)
    # the forecast: its steps and each sampled person's plan
    plan = forecast.forecast(admin_env.engine, admin_env.settings, "polish_steps", days=14)
    assert [s["step"] for s in plan["steps"]] == SHOWN
    names.add_titles(plan, workflow)  # what the forecast page shows: each numbered step's own words
    acted = {a["step"]: a for c in plan["contacts"] for a in c["actions"]}
    assert acted and set(acted) <= set(SHOWN) and acted[6]["what"] == "crm_task" and acted[6]["kind"] == "crm_task"
    assert [s["kind"] for s in plan["steps"]] == ["promo_code", "wait", "if", "send", "send", "crm_task"]
    # the trace: Anna bought before entering, so «no», then the task
    trace = trial.trial(admin_env.engine, admin_env.settings, "polish_steps", admin_env.ids["anna"])
    steps = {s["step"]: s for s in trace["steps"] if s.get("step")}
    assert list(steps) == [1, 2, 3, 5, 6]
    assert steps[3]["branch"] == "else" and steps[3]["next_step"] == 5
    assert steps[5]["kind"] == "send" and steps[6]["kind"] == "crm_task"
    tried = client_as(admin_env, "viewer").get("/workflows/polish_steps/try",
                                               query_string={"contact": admin_env.ids["anna"]})
    assert [int(n) for n in re.findall(r"<strong>(\d+)\. ", text(tried))] == [1, 2, 3, 5, 6]
    letter = client_as(admin_env, "viewer").get("/workflows/polish_steps/try/letter",
                                                query_string={"contact": admin_env.ids["anna"], "step": 5})
    assert letter.status_code == 200 and "Анна" in text(letter)


def test_the_trace_names_the_crm_and_the_template_and_says_a_fact_once(admin_env: AdminEnv) -> None:  # noqa: F811
    _setup(admin_env)
    trace = trial.trial(admin_env.engine, admin_env.settings, "polish_steps", admin_env.ids["anna"])
    steps = {s["step"]: s for s in trace["steps"] if s.get("step")}
    task = steps[6]
    assert task["text"].endswith("в Битрикс24") and "bitrix24" not in task["text"] and "101" not in task["text"]
    assert task["crm"] == [{"source": "bitrix24", "title": "Битрикс24", "external_id": "101"}]
    assert steps[5]["phrase"] == "Отправить письмо: «Возвращайтесь (письмо)»"
    assert steps[5]["template_title"] == "Возвращайтесь (письмо)" and steps[5]["label"].endswith("reactivation_email")
    branch = steps[3]["text"]
    day = CLOSED.strftime("%d.%m.%Y")
    assert branch.count("последний выигранный заказ") == 1 and f"({day})" in branch  # the value beside its field
    assert f"{day} 03:00" not in branch and steps[3]["facts"][0]["value"] == day  # a date, not its UTC midnight
    page = plain(client_as(admin_env, "viewer").get("/workflows/polish_steps/try",
                                                    query_string={"contact": admin_env.ids["anna"]}))
    assert "в Битрикс24" in page and "bitrix24 (101)" not in page
    assert "Отправить письмо: «Возвращайтесь (письмо)»" in page and "send email reactivation_email" in page
    marketer = client_as(admin_env, "marketer")
    post(marketer, "/language", {"language": "en"})
    english = plain(marketer.get("/workflows/polish_steps/try", query_string={"contact": admin_env.ids["anna"]}))
    assert "Send an email: “Come back (email)”" in english and "in Bitrix24" in english
    assert CLOSED.strftime("%b") in english or CLOSED.strftime("%d") in english


def test_a_time_of_day_stays_with_a_moment() -> None:
    from hub.config import load_settings

    settings = load_settings()
    assert trial._value_text(dt.datetime(2026, 8, 8, tzinfo=dt.timezone.utc), settings) == "08.08.2026"
    assert trial._value_text(dt.datetime(2026, 8, 8), settings) == "08.08.2026"  # naive: read as UTC
    assert trial._value_text("2026-08-08T00:00:00+00:00", settings) == "08.08.2026"
    assert trial._value_text(dt.datetime(2026, 8, 8, 9, 30, tzinfo=dt.timezone.utc), settings) == "08.08.2026 12:30"


def test_the_builder_answers_carry_hints_for_each_condition(admin_env: AdminEnv) -> None:  # noqa: F811
    client = client_as(admin_env, "marketer")
    token = csrf_token(client, "/workflows/new")
    typed = ("name: hinted\ntrigger: {segment: dormant_90d}\nreentry: never\nsteps:\n  - wait: 1d\n"
             "  - if: {field: orders.last_at, op: after, value: -60d}\n    then: exit\n"
             "    else:\n      - if: {all: [{field: orders.last_at, op: within_last, value: 30d}]}\n"
             "        then: exit\n")
    answer = client.post("/workflows/builder/check", headers={"X-CSRFToken": token},
                         json={"document": typed, "model": True}).get_json()
    assert answer["ok"], answer
    assert answer["hints"]["steps[1].if.value"] == "60 дней назад"
    assert answer["hints"]["steps[1].else[0].if.all[0].value"].startswith("за последние 30")
    written = client.post("/workflows/builder/write", headers={"X-CSRFToken": token},
                          json={"model": answer["model"]}).get_json()
    assert written["hints"] == answer["hints"]
    page = client.get("/workflows/new")
    found = re.search(r'<script type="application/json" id="[^"]*builder[^"]*">(.*?)</script>', text(page), re.S)
    assert found is not None
    data = json.loads(found.group(1))
    assert data["hints"] == {}
    for hostile in ({"model": {"steps": [{"kind": "if", "rule": {"kind": "condition", "op": ["x"], "value": "-1d"},
                                          "then": "nope"}]}},
                    {"document": "steps: [{if: {field: orders.last_at, op: [1], value: -1d}, then: exit}]"}):
        path = "/workflows/builder/write" if "model" in hostile else "/workflows/builder/check"
        got = client.post(path, headers={"X-CSRFToken": token}, json=hostile)
        assert got.status_code in (200, 400) and "problems" in got.get_json()
    viewer = client_as(admin_env, "viewer")
    assert viewer.post("/workflows/builder/check", headers={"X-CSRFToken": csrf_token(viewer, "/workflows/")},
                       json={"document": typed}).status_code == 403
