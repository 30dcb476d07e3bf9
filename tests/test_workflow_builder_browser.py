"""The workflow builder in headless Chromium, as a marketer: a reactivation workflow built by clicking only.

Promo code 15 % for 14 days → email → wait 7 days → «Купил(а) после входа»:
then leave / else an SMS and a call task in the CRM. Before that, a template
of the wrong channel is reported next to its step before anything is saved,
and a save that the server refuses keeps what was built. The YAML beside the
builder follows every click; the saved definition is exactly the document meant.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tests.browser import Browser
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in
from workflows.models import WorkflowRow

pytestmark = pytest.mark.both_databases

EXPECTED = {
    "name": "comeback_clicks", "title": "Возвращаем уснувших", "trigger": {"segment": "dormant_90d"},
    "reentry": "never", "holdout": "10%", "goal": {"event": "order.created", "within": "30d"},
    "steps": [
        {"promo_code": {"discount": "15%", "valid_for": "14d", "prefix": "BACK"}},
        {"send": {"channel": "email", "template": "reactivation_email", "purpose": "marketing"}},
        {"wait": "7d"},
        {"if": {"field": "orders.last_at", "op": "after", "value": "run.started_at"}, "then": "exit",
         "else": [{"send": {"channel": "sms", "template": "reactivation_sms", "purpose": "marketing"}},
                  {"crm_task": {"title": "Позвонить {{ contact.first_name }}", "due_in": "2d"}}]},
    ],
}


def step(path: str) -> str:
    return f'.wf-step[data-path="{path}"]'


def add(browser: Browser, at: str, kind: str) -> None:
    browser.click(f'.wf-add[data-at="{at}"]')
    browser.click(f'.wf-add[data-at="{at}"] ~ .wf-menu button[data-add-kind="{kind}"]')
    browser.wait(lambda: browser.exists(f'{step(at)}[data-kind="{kind}"]'), f"a {kind} step at {at}")


def option(path: str, key: str, control: str = "input") -> str:
    return f'{step(path)} > .wf-body > [data-option="{key}"] {control}'


def saved(env: AdminEnv, name: str) -> Any:
    with env.engine.connect() as conn:
        return conn.execute(select(WorkflowRow.definition).where(WorkflowRow.name == name)).scalar()


def test_a_marketer_builds_the_reactivation_workflow_by_clicking(admin_env: AdminEnv, live: str,
                                                                 browser: Browser) -> None:
    sign_in(browser, live, "marketer", "/workflows/new")
    browser.wait(lambda: browser.exists(step("steps[0]")), "the builder to draw the example")
    browser.fill("#wf-name", "comeback_clicks")
    browser.fill("#wf-title", "Возвращаем уснувших")
    browser.select("#wf-trigger-kind", "segment")
    browser.select("#workflow-builder [data-part=segment] select", "dormant_90d")
    browser.click(f"{step('steps[0]')} .wf-remove")  # the example's wait goes
    browser.wait(lambda: not browser.exists(step("steps[0]")), "the example step to go")

    add(browser, "steps[0]", "promo_code")
    browser.fill(option("steps[0]", "discount"), "15")
    browser.fill(option("steps[0]", "valid_for", "input[type=number]"), "14")
    browser.select(option("steps[0]", "valid_for", "select"), "d")
    browser.fill(option("steps[0]", "prefix"), "BACK")

    add(browser, "steps[1]", "send")
    # a text template on the email channel: the mistake is shown next to the step before saving
    browser.select(option("steps[1]", "channel", "select"), "sms")
    browser.select(option("steps[1]", "template", "select"), "reactivation_sms")
    browser.select(option("steps[1]", "channel", "select"), "email")
    browser.select(option("steps[1]", "purpose", "select"), "marketing")
    problem = browser.wait_text(f"{step('steps[1]')} > .node-problems", "reactivation_sms")
    assert "email" in problem
    browser.wait(lambda: "template: reactivation_sms" in browser.find("#workflow-document").get_attribute("value"),
                 "the text to follow the clicks")
    browser.click("#wf-save")
    browser.wait_text("#wf-problems", "steps[1].send.template")
    assert saved(admin_env, "comeback_clicks") is None  # refused: nothing saved
    browser.wait(lambda: browser.exists(f"{step('steps[1]')}.has-problem"), "the problem placed after the refusal")
    browser.select(option("steps[1]", "template", "select"), "reactivation_email")

    add(browser, "steps[2]", "wait")
    browser.fill(option("steps[2]", "for", "input[type=number]"), "7")
    browser.select(option("steps[2]", "for", "select"), "d")

    add(browser, "steps[3]", "if")
    browser.wait(lambda: browser.find(f"{step('steps[3]')} > .node-problems").text, "the empty condition named")
    browser.click(f"{step('steps[3]')} button.wf-preset-bought-since")
    browser.wait(lambda: browser.exists(f'{step("steps[3]")} [data-extra="run.started_at"]'), "the preset drawn")
    assert browser.exists(f'{step("steps[3]")} .wf-branch[data-branch=then] {step("steps[3].then")}[data-kind=exit]')

    add(browser, "steps[3].else[0]", "send")
    browser.select(option("steps[3].else[0]", "channel", "select"), "sms")
    browser.select(option("steps[3].else[0]", "template", "select"), "reactivation_sms")
    browser.select(option("steps[3].else[0]", "purpose", "select"), "marketing")
    add(browser, "steps[3].else[1]", "crm_task")
    browser.fill(option("steps[3].else[1]", "title"), "Позвонить {{ contact.first_name }}")
    browser.fill(option("steps[3].else[1]", "due_in", "input[type=number]"), "2")

    browser.select("#wf-goal-event", "order.created")
    browser.wait(lambda: browser.exists("#wf-goal-within input[type=number]"), "the goal's window")
    browser.fill("#wf-holdout", "10")
    browser.select("#wf-reentry", "never")
    browser.wait(lambda: "crm_task" in browser.find("#workflow-document").get_attribute("value")
                 and "holdout: 10%" in browser.find("#workflow-document").get_attribute("value"),
                 "the text to hold every click")
    browser.wait(lambda: browser.find("#wf-problems").get_attribute("data-state") == "ok", "no problems left")
    browser.click("#wf-save")
    browser.wait(lambda: browser.url.endswith("/workflows/comeback_clicks"), "the workflow's page after saving")
    assert saved(admin_env, "comeback_clicks") == EXPECTED
